/* fuzz_onnx.c - libFuzzer target: any bytes as an ONNX model to import, and
 * as a TensorProto; what imports must also run as an LSTM. */
#include "lstm.h"

#include <stdint.h>
#include <stdlib.h>

#ifdef LSTM_HAVE_ONNX
#include "onnx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    onnx_tensor t;
    if (onnx_tensor_read(data, size, "fuzz.pb", &t, NULL) == LSTM_OK)
        onnx_tensor_free(&t);
    onnx_import imp;
    lstm_error err;
    if (onnx_import_lstm(data, size, "fuzz.onnx", NULL, 0, &imp, &err) != LSTM_OK)
        return 0;
    /* the state_dict it made loads into an nn.LSTM of its configuration */
    void *buf;
    size_t len;
    lstm_st *st = NULL;
    if (lstm_st_writer_to_memory(imp.weights, &buf, &len, NULL) == LSTM_OK) {
        st = lstm_st_from_memory(buf, len, "imported", NULL);
        free(buf);
    }
    lstm_params *p = lstm_params_create();
    lstm_rnn *rnn = st ? lstm_rnn_create(&imp.cfg, p, "", NULL) : NULL;
    if (rnn && (lstm_params_alloc(p, NULL) || lstm_params_read(p, st, "", 1, NULL)))
        abort(); /* an import whose weights do not fit its own configuration */
    if (rnn && (size_t)imp.cfg.input_size * imp.cfg.hidden_size < 4096) {
        int T = 2, B = 1, D = imp.cfg.bidirectional ? 2 : 1;
        float *x = calloc((size_t)T * B * imp.cfg.input_size, sizeof(float));
        float *y = calloc((size_t)T * B * D * imp.cfg.hidden_size, sizeof(float));
        lstm_ctx *ctx = lstm_ctx_create(NULL, NULL);
        lstm_rnn_io io = {.T = T, .B = B, .x = x, .y = y};
        lstm_rnn_forward(rnn, ctx, p, &io, 0, NULL, NULL);
        lstm_ctx_free(ctx);
        free(x);
        free(y);
    }
    lstm_rnn_free(rnn);
    lstm_params_free(p);
    lstm_st_free(st);
    onnx_import_free(&imp);
    return 0;
}
#else
/* Built without ONNX support: nothing to fuzz. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    (void)data, (void)size;
    return 0;
}
#endif
