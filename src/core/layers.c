/* layers.c - embedding, linear, losses, pooling and dropout as
 * forward/backward pairs. Compiled in float and in double. */
#include "nn.h"

#include <math.h>
#include <string.h>

/* out (N,E) = table[ids[n]] */
void nn_embedding_forward(real *out, const int32_t *ids, const real *table, int N, int E) {
    for (int n = 0; n < N; n++)
        memcpy(out + (size_t)n * E, table + (size_t)ids[n] * E, sizeof(real) * E);
}

/* dtable[ids[n]] += dout[n] */
void nn_embedding_backward(real *dtable, const real *dout, const int32_t *ids, int N, int E) {
    for (int n = 0; n < N; n++) {
        real *d = dtable + (size_t)ids[n] * E;
        const real *s = dout + (size_t)n * E;
        for (int e = 0; e < E; e++)
            d[e] += s[e];
    }
}

/* out (N,O) = in (N,K) w^T + b */
void nn_linear_forward(const nn_ctx *ctx, real *out, const real *in, const real *w,
                       const real *b, int N, int K, int O) {
    ctx->k->gemm(ctx, 0, 1, N, O, K, 1, in, K, w, K, 0, out, O);
    if (b)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < O; o++)
                out[(size_t)n * O + o] += b[o];
}

/* din (N,K) += dout w;  dw (O,K) += dout^T in;  db (O) += sum_n dout */
void nn_linear_backward(const nn_ctx *ctx, real *din, real *dw, real *db, const real *dout,
                        const real *in, const real *w, int N, int K, int O) {
    if (din)
        ctx->k->gemm(ctx, 0, 0, N, K, O, 1, dout, O, w, K, 1, din, K);
    if (dw)
        ctx->k->gemm(ctx, 1, 0, O, K, N, 1, dout, O, in, K, 1, dw, K);
    if (db)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < O; o++)
                db[o] += dout[(size_t)n * O + o];
}

/* logp = log_softmax(logits) row by row; returns sum of -logp[target]
 * over rows whose target is not ignore_index. */
double nn_cross_entropy_forward(const nn_ctx *ctx, real *logp, const real *logits,
                                const int32_t *targets, int N, int C, int ignore_index,
                                int *count) {
    const nn_kernels *k = ctx ? ctx->k : &nn_kernels_ref;
    k->log_softmax(ctx, logp, logits, N, C);
    double loss = 0;
    int counted = 0;
    for (int n = 0; targets && n < N; n++)
        if (targets[n] != ignore_index) {
            loss -= logp[(size_t)n * C + targets[n]];
            counted++;
        }
    if (count)
        *count = counted;
    return loss;
}

/* dlogits += scale * (softmax - onehot(target)) for counted rows */
void nn_cross_entropy_backward(const nn_ctx *ctx, real *dlogits, const real *logp,
                               const int32_t *targets, int N, int C, int ignore_index,
                               real scale) {
    const nn_kernels *k = ctx ? ctx->k : &nn_kernels_ref;
    k->xent_backward(ctx, dlogits, logp, targets, N, C, ignore_index, scale);
}

double nn_mse_forward(const real *a, const real *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)a[i] - b[i];
        s += e * e;
    }
    return n ? s / (double)n : 0;
}

void nn_mse_backward(real *da, const real *a, const real *b, size_t n, real scale) {
    for (size_t i = 0; i < n; i++)
        da[i] += scale * 2 * (a[i] - b[i]) / (real)n;
}

/* out (B,F) = mean over t < len_b of x (T,B,F) */
void nn_mean_pool_forward(real *out, const real *x, const int *lengths, int T, int B, int F) {
    for (int b = 0; b < B; b++) {
        int len = lengths ? lengths[b] : T;
        real *o = out + (size_t)b * F;
        for (int f = 0; f < F; f++) {
            double s = 0;
            for (int t = 0; t < len; t++)
                s += x[((size_t)t * B + b) * F + f];
            o[f] = (real)(s / len);
        }
    }
}

void nn_mean_pool_backward(real *dx, const real *dout, const int *lengths, int T, int B, int F) {
    for (int b = 0; b < B; b++) {
        int len = lengths ? lengths[b] : T;
        const real *d = dout + (size_t)b * F;
        for (int t = 0; t < len; t++)
            for (int f = 0; f < F; f++)
                dx[((size_t)t * B + b) * F + f] += d[f] / (real)len;
    }
}

void nn_last_pool_forward(real *out, const real *x, const int *lengths, int T, int B, int F) {
    for (int b = 0; b < B; b++) {
        int t = (lengths ? lengths[b] : T) - 1;
        memcpy(out + (size_t)b * F, x + ((size_t)t * B + b) * F, sizeof(real) * F);
    }
}

void nn_last_pool_backward(real *dx, const real *dout, const int *lengths, int T, int B, int F) {
    for (int b = 0; b < B; b++) {
        int t = (lengths ? lengths[b] : T) - 1;
        real *d = dx + ((size_t)t * B + b) * F;
        for (int f = 0; f < F; f++)
            d[f] += dout[(size_t)b * F + f];
    }
}

/* Inverted dropout: keep with probability 1-p and scale by 1/(1-p). */
void nn_dropout_forward(real *out, real *mask, const real *x, size_t n, real p, lstm_rng *rng) {
    real scale = 1 / (1 - p);
    for (size_t i = 0; i < n; i++) {
        mask[i] = lstm_rng_uniform(rng) < p ? 0 : scale;
        out[i] = x[i] * mask[i];
    }
}

void nn_dropout_backward(real *dx, const real *dout, const real *mask, size_t n) {
    for (size_t i = 0; i < n; i++)
        dx[i] += dout[i] * mask[i];
}
