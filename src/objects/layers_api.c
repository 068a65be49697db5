/* layers_api.c - the public layer functions: float entry points into the
 * numeric core (which is also compiled in double for the gradient tests). */
#include "internal.h"
#include "nn.h"

void lstm_embedding_forward(float *out, const int32_t *ids, const float *table, int N, int E) {
    nn_embedding_forward(out, ids, table, N, E);
}
void lstm_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int N, int E) {
    nn_embedding_backward(dtable, dout, ids, N, E);
}
void lstm_linear_forward(lstm_ctx *ctx, float *out, const float *in, const float *w,
                         const float *b, int N, int K, int O) {
    nn_linear_forward(lstm_ctx_nn(ctx), out, in, w, b, N, K, O);
}
void lstm_linear_backward(lstm_ctx *ctx, float *din, float *dw, float *db, const float *dout,
                          const float *in, const float *w, int N, int K, int O) {
    nn_linear_backward(lstm_ctx_nn(ctx), din, dw, db, dout, in, w, N, K, O);
}
double lstm_cross_entropy_forward(lstm_ctx *ctx, float *logp, const float *logits,
                                  const int32_t *targets, int N, int C, int ignore_index,
                                  int *count) {
    return nn_cross_entropy_forward(ctx ? lstm_ctx_nn(ctx) : NULL, logp, logits, targets, N, C,
                                    ignore_index, count);
}
void lstm_cross_entropy_backward(lstm_ctx *ctx, float *dlogits, const float *logp,
                                 const int32_t *targets, int N, int C, int ignore_index,
                                 float scale) {
    nn_cross_entropy_backward(ctx ? lstm_ctx_nn(ctx) : NULL, dlogits, logp, targets, N, C,
                              ignore_index, scale);
}
double lstm_mse_forward(const float *a, const float *b, size_t n) { return nn_mse_forward(a, b, n); }
void lstm_mse_backward(float *da, const float *a, const float *b, size_t n, float scale) {
    nn_mse_backward(da, a, b, n, scale);
}
void lstm_mean_pool_forward(float *out, const float *x, const int *lengths, int T, int B, int F) {
    nn_mean_pool_forward(out, x, lengths, T, B, F);
}
void lstm_mean_pool_backward(float *dx, const float *dout, const int *lengths, int T, int B,
                             int F) {
    nn_mean_pool_backward(dx, dout, lengths, T, B, F);
}
void lstm_last_pool_forward(float *out, const float *x, const int *lengths, int T, int B, int F) {
    nn_last_pool_forward(out, x, lengths, T, B, F);
}
void lstm_last_pool_backward(float *dx, const float *dout, const int *lengths, int T, int B,
                             int F) {
    nn_last_pool_backward(dx, dout, lengths, T, B, F);
}
void lstm_dropout_forward(float *out, float *mask, const float *x, size_t n, float p,
                          lstm_rng *rng) {
    nn_dropout_forward(out, mask, x, n, p, rng);
}
void lstm_dropout_backward(float *dx, const float *dout, const float *mask, size_t n) {
    nn_dropout_backward(dx, dout, mask, n);
}

size_t lstm_crf_work_size(int T, int B, int K) { return nn_crf_work_size(T, B, K); }
double lstm_crf(lstm_ctx *ctx, const lstm_crf_args *a, void *work, int *count) {
    nn_crf_args n = {a->T, a->B, a->K, a->emissions, a->lengths, a->tags, a->transitions,
                     a->start_transitions, a->end_transitions, a->marginals, a->d_emissions,
                     a->d_transitions, a->d_start_transitions, a->d_end_transitions, a->scale, 0};
    return nn_crf(ctx ? lstm_ctx_nn(ctx) : NULL, &n, work, count);
}

lstm_status lstm_params_linear_forward(lstm_ctx *ctx, lstm_params *p, int w, int b, float *out,
                                       const float *in, int N, lstm_error *err) {
    int n = lstm_params_count(p);
    if (w < 0 || w >= n || b >= n || lstm_params_ndim(p, w) != 2 ||
        (b >= 0 && (lstm_params_ndim(p, b) != 1 ||
                    lstm_params_shape(p, b)[0] != lstm_params_shape(p, w)[0])))
        return lstm_fail(err, LSTM_ERR_INVALID,
                         "lstm_params_linear_forward: tensor %d is not a matrix (O,K) with a "
                         "bias %d of (O)",
                         w, b);
    const float *W = lstm_params_data(p, w), *B = b >= 0 ? lstm_params_data(p, b) : NULL;
    if (!W)
        return lstm_fail(err, LSTM_ERR_STATE, "parameters not allocated");
    int O = (int)lstm_params_shape(p, w)[0], K = (int)lstm_params_shape(p, w)[1];
    int failed;
    const nn_q8_mat *q = lstm_params_q8(p, w, &failed);
    if (!q) {
        nn_linear_forward(lstm_ctx_nn(ctx), out, in, W, B, N, K, O);
        return lstm_ok(err);
    }
    nn_q8_term t = {in, K, q};
    nn_q8_matmul(lstm_ctx_nn(ctx), out, O, 0, N, &t, 1);
    for (int r = 0; B && r < N; r++)
        for (int o = 0; o < O; o++)
            out[(size_t)r * O + o] += B[o];
    return lstm_ok(err);
}
