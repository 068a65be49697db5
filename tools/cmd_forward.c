/* cmd_forward.c - lstm forward: runs one nn.LSTM, given as a safetensors
 * state_dict, on the tensors of an input file; writes output, h_n, c_n. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef LSTM_HAVE_ONNX
#include "onnx.h"
#endif

static const char *V = "forward";

/* MODEL.onnx: imported (as lstm convert does) into a state_dict in memory;
 * *batch_first becomes the graph's layout. NULL after an error message. */
static lstm_st *open_onnx(const char *path, int *batch_first) {
#ifdef LSTM_HAVE_ONNX
    char *buf;
    size_t len;
    void *st_buf = NULL;
    lstm_error err;
    onnx_import imp;
    lstm_st *st = NULL;
    if (lstm_read_file(path, &buf, &len, &err)) {
        cli_error(V, "%s", err.msg);
        return NULL;
    }
    lstm_status s = onnx_import_lstm(buf, len, path, NULL, 0, &imp, &err);
    free(buf);
    if (!s && !(s = lstm_st_writer_to_memory(imp.weights, &st_buf, &len, &err)))
        st = lstm_st_from_memory(st_buf, len, path, &err);
    if (!s)
        *batch_first = imp.cfg.batch_first;
    free(st_buf);
    onnx_import_free(&imp);
    if (!st)
        cli_error(V, "%s", err.msg);
    return st;
#else
    (void)batch_first;
    cli_error(V, "%s: this build lacks ONNX support (libprotobuf-c, protoc-c)", path);
    return NULL;
#endif
}

/* Reads a float tensor of exactly the given shape. */
static float *read_tensor(const lstm_st *st, const char *name, int ndim, const int64_t *shape,
                          const char *dims, int required) {
    const lstm_st_tensor *t = lstm_st_find(st, name);
    if (!t) {
        if (required)
            cli_error(V, "%s: missing tensor '%s' %s", lstm_st_name(st), name, dims);
        return NULL;
    }
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == shape[i];
    if (!ok) {
        char got[160] = "(";
        for (int i = 0; i < t->ndim; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "",
                     (long long)t->shape[i]);
        strcat(got, ")");
        cli_error(V, "%s: tensor '%s' has shape %s, expected %s", lstm_st_name(st), name, got, dims);
        return (float *)-1;
    }
    float *v = malloc(sizeof(float) * (t->numel ? t->numel : 1));
    lstm_error err;
    if (!v || lstm_st_read_f32(st, t, v, t->numel, &err)) {
        cli_error(V, "%s", v ? err.msg : "out of memory");
        free(v);
        return (float *)-1;
    }
    return v;
}

int cmd_forward(int argc, char **argv) {
    int batch_first = 0, threads = 0;
    const char *prefix = NULL;
    cli_opt opts[] = {
        {"batch-first", OPT_FLAG, &batch_first, NULL, "input and output are (B, T, .)"},
        {"prefix", OPT_STR, &prefix, "P", "the LSTM's tensors are P + weight_ih_l0 ... (default: found)"},
        {"threads", OPT_INT, &threads, "N", "threads (default: all processors)"},
        OPT_END};
    const char *pos[3];
    int npos;
    int r = cli_parse(V, "lstm forward MODEL.safetensors INPUT.safetensors OUTPUT.safetensors [options]",
                      "Runs the nn.LSTM whose state_dict is in MODEL (its configuration read from\n"
                      "the tensor names and shapes) on INPUT's tensors: input (T,B,I), or (B,T,I)\n"
                      "with --batch-first; optional h0 (L*D,B,Hout), c0 (L*D,B,H), lengths (B) as\n"
                      "pack_padded_sequence takes them. Writes output, h_n and c_n to OUTPUT.\n"
                      "MODEL may be an ONNX model of LSTM nodes (MODEL.onnx, see lstm convert): then\n"
                      "the input is batch-first when the graph's is.",
                      opts, argc, argv, pos, 3, &npos);
    if (r)
        return r == 2 ? 0 : 1;
    if (npos != 3)
        return cli_error(V, "expected MODEL INPUT OUTPUT (see lstm forward --help)");

    int status = 1;
    lstm_error err;
    lstm_st *model = NULL, *in = NULL;
    lstm_params *p = NULL;
    lstm_rnn *rnn = NULL;
    lstm_ctx *ctx = NULL;
    float *x = NULL, *h0 = NULL, *c0 = NULL, *y = NULL, *hn = NULL, *cn = NULL;
    int *lengths = NULL;
    lstm_st_writer *w = NULL;
    char pbuf[512];

    size_t ml = strlen(pos[0]);
    if (ml > 5 && strcmp(pos[0] + ml - 5, ".onnx") == 0) {
        if (!(model = open_onnx(pos[0], &batch_first)))
            goto out;
    } else if (!(model = lstm_st_open(pos[0], &err))) {
        cli_error(V, "%s", err.msg);
        goto out;
    }
    if (!(in = lstm_st_open(pos[1], &err))) {
        cli_error(V, "%s", err.msg);
        goto out;
    }
    if (!prefix && !(prefix = cli_lstm_prefix(V, model, pbuf, sizeof pbuf)))
        goto out;
    lstm_rnn_config cfg;
    if (lstm_rnn_config_infer(&cfg, model, prefix, &err)) {
        cli_error(V, "%s", err.msg);
        goto out;
    }
    cfg.batch_first = batch_first;
    p = lstm_params_create();
    if (!(rnn = lstm_rnn_create(&cfg, p, prefix, &err)) || lstm_params_alloc(p, &err) ||
        lstm_params_read(p, model, "", 0, &err)) {
        cli_error(V, "%s", err.msg);
        goto out;
    }
    /* strict within the prefix: anything else there is not an nn.LSTM tensor */
    for (size_t i = 0; i < lstm_st_count(model); i++) {
        const char *n = lstm_st_tensor_at(model, i)->name;
        if (strncmp(n, prefix, strlen(prefix)) == 0 && lstm_params_find(p, n) < 0 &&
            !cli_int8_part(p, n)) {
            cli_error(V, "%s: unexpected tensor '%s' for an LSTM of %d layer(s)%s%s", pos[0], n,
                      cfg.num_layers, cfg.bidirectional ? ", bidirectional" : "",
                      cfg.proj_size ? ", with projection" : "");
            goto out;
        }
    }

    const lstm_st_tensor *xt = lstm_st_find(in, "input");
    if (!xt || xt->ndim != 3 || xt->shape[2] != cfg.input_size || xt->shape[0] < 1 ||
        xt->shape[1] < 1 || xt->shape[0] * xt->shape[1] > (1 << 30)) {
        cli_error(V, "%s: %s: expected a tensor 'input' of shape %s with input_size %d", pos[1],
                  xt ? "tensor 'input' has the wrong shape" : "missing tensor 'input'",
                  batch_first ? "(B, T, I)" : "(T, B, I)", cfg.input_size);
        goto out;
    }
    int T = (int)(batch_first ? xt->shape[1] : xt->shape[0]);
    int B = (int)(batch_first ? xt->shape[0] : xt->shape[1]);
    int D = cfg.bidirectional ? 2 : 1, LD = cfg.num_layers * D, H = cfg.hidden_size;
    int Ho = cfg.proj_size ? cfg.proj_size : H;
    char dims[128];
    x = read_tensor(in, "input", 3, xt->shape, "", 1);
    if (x == (float *)-1 || !x) {
        x = NULL;
        goto out;
    }
    int64_t sh[3] = {LD, B, Ho}, sc[3] = {LD, B, H};
    snprintf(dims, sizeof dims, "(L*D, B, Hout) = (%d, %d, %d)", LD, B, Ho);
    h0 = read_tensor(in, "h0", 3, sh, dims, 0);
    snprintf(dims, sizeof dims, "(L*D, B, H) = (%d, %d, %d)", LD, B, H);
    c0 = read_tensor(in, "c0", 3, sc, dims, 0);
    if (h0 == (float *)-1 || c0 == (float *)-1) {
        h0 = h0 == (float *)-1 ? NULL : h0;
        c0 = c0 == (float *)-1 ? NULL : c0;
        goto out;
    }
    const lstm_st_tensor *lt = lstm_st_find(in, "lengths");
    if (lt) {
        int64_t *l64 = malloc(sizeof(int64_t) * (size_t)B);
        lengths = malloc(sizeof(int) * (size_t)B);
        if (lt->ndim != 1 || lt->shape[0] != B) {
            cli_error(V, "%s: tensor 'lengths' must have shape (B) = (%d)", pos[1], B);
            free(l64);
            goto out;
        }
        if (lstm_st_read_i64(in, lt, l64, (size_t)B, &err)) {
            cli_error(V, "%s", err.msg);
            free(l64);
            goto out;
        }
        for (int b = 0; b < B; b++) {
            if (l64[b] < 1 || l64[b] > T) {
                cli_error(V, "%s: lengths[%d] = %lld is not in [1, T = %d]", pos[1], b,
                          (long long)l64[b], T);
                free(l64);
                goto out;
            }
            lengths[b] = (int)l64[b];
        }
        free(l64);
    }
    size_t ny = (size_t)T * B * D * Ho;
    y = malloc(sizeof(float) * ny);
    hn = malloc(sizeof(float) * (size_t)LD * B * Ho);
    cn = malloc(sizeof(float) * (size_t)LD * B * H);
    if (!(ctx = cli_ctx(V, threads)))
        goto out;
    lstm_rnn_io io = {T, B, x, lengths, h0, c0, y, hn, cn};
    if (!y || !hn || !cn || lstm_rnn_forward(rnn, ctx, p, &io, 0, NULL, &err)) {
        cli_error(V, "%s", y && hn && cn ? err.msg : "out of memory");
        goto out;
    }
    int64_t oshape[3] = {batch_first ? B : T, batch_first ? T : B, D * Ho};
    w = lstm_st_writer_create();
    if (lstm_st_writer_add(w, "output", LSTM_DT_F32, 3, oshape, y, &err) ||
        lstm_st_writer_add(w, "h_n", LSTM_DT_F32, 3, sh, hn, &err) ||
        lstm_st_writer_add(w, "c_n", LSTM_DT_F32, 3, sc, cn, &err) ||
        lstm_st_writer_save(w, pos[2], &err)) {
        cli_error(V, "%s", err.msg);
        goto out;
    }
    status = 0;
out:
    lstm_st_writer_free(w);
    free(x), free(h0), free(c0), free(y), free(hn), free(cn), free(lengths);
    lstm_rnn_free(rnn);
    lstm_params_free(p);
    lstm_ctx_free(ctx);
    lstm_st_free(model);
    lstm_st_free(in);
    return status;
}
