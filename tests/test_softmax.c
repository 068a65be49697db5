/*
 * test_softmax.c - the decoder's loss kernels (log-softmax rows and the
 * cross-entropy gradient) of every kernel set against the reference, which
 * sums its exponentials in double: within 2e-6 + 2e-6 |x| (float sums of
 * up to 300 exponentials, each within a few ulp), on one and two threads,
 * with row lengths that are and are not multiples of the vector width.
 */
#include "check.h"
#include "internal.h"
#include "lstm.h"
#include "nn.h"

#include <math.h>
#include <string.h>

static void test_set(lstm_kernels kset, int threads, const char *name) {
    lstm_ctx_config cc = {threads, kset, LSTM_BLAS_OFF};
    lstm_ctx *lc = lstm_ctx_create(&cc, NULL);
    if (!lc) {
        printf("ok skipping %s: not supported here\n", name);
        return;
    }
    const nn_ctx *ctx = lstm_ctx_nn(lc);
    int shapes[][2] = {{1, 5}, {3, 16}, {7, 37}, {300, 256}, {129, 300}};
    lstm_rng rng;
    lstm_rng_seed(&rng, 7);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int N = shapes[s][0], C = shapes[s][1];
        size_t n = (size_t)N * C;
        float *z = malloc(sizeof(float) * n), *got = malloc(sizeof(float) * n);
        float *want = malloc(sizeof(float) * n), *dg = malloc(sizeof(float) * n);
        float *dw = malloc(sizeof(float) * n);
        int32_t *t = malloc(sizeof(int32_t) * N);
        for (size_t i = 0; i < n; i++)
            z[i] = 4 * lstm_rng_normal(&rng);
        for (int r = 0; r < N; r++)
            t[r] = r % 5 == 3 ? -100 : (int32_t)lstm_rng_below(&rng, (uint64_t)C);
        nn_kernels_ref.log_softmax(NULL, want, z, N, C);
        ctx->k->log_softmax(ctx, got, z, N, C);
        CHECK_CLOSE(got, want, n, 2e-6, 2e-6, "%s: log-softmax of %d rows of %d", name, N, C);
        memcpy(got, z, sizeof(float) * n);
        ctx->k->log_softmax(ctx, got, got, N, C);
        CHECK_CLOSE(got, want, n, 2e-6, 2e-6, "%s: log-softmax in place, %d x %d", name, N, C);
        for (size_t i = 0; i < n; i++)
            dg[i] = dw[i] = lstm_rng_normal(&rng);
        nn_kernels_ref.xent_backward(NULL, dw, want, t, N, C, -100, 0.25f);
        ctx->k->xent_backward(ctx, dg, want, t, N, C, -100, 0.25f);
        CHECK_CLOSE(dg, dw, n, 2e-6, 2e-6, "%s: cross-entropy gradient, %d x %d", name, N, C);
        free(z), free(got), free(want), free(dg), free(dw), free(t);
    }
    /* NaN and the infinities: in one element of a row (first, middle, a
     * vector's tail), each kernel gives what the reference gives, value by
     * value: NaN where it gives NaN, the same infinities, close finite values */
    float bad[] = {NAN, INFINITY, -INFINITY};
    for (int b = 0; b < 3; b++)
        for (int C = 5; C <= 37; C += 16) {
            int N = 3;
            size_t n = (size_t)N * C;
            float z[3 * 37], got[3 * 37], want[3 * 37], dg[3 * 37], dw[3 * 37];
            int32_t t[3] = {0, 2, 4};
            for (size_t i = 0; i < n; i++)
                z[i] = lstm_rng_normal(&rng);
            z[0] = z[C + C / 2] = z[2 * C + C - 1] = bad[b];
            nn_kernels_ref.log_softmax(NULL, want, z, N, C);
            ctx->k->log_softmax(ctx, got, z, N, C);
            for (size_t i = 0; i < n; i++)
                dg[i] = dw[i] = 0.5f;
            nn_kernels_ref.xent_backward(NULL, dw, want, t, N, C, -100, 0.25f);
            ctx->k->xent_backward(ctx, dg, want, t, N, C, -100, 0.25f);
            int same = 1;
            for (size_t i = 0; i < n; i++) {
                same &= isnan(got[i]) == isnan(want[i]) && isnan(dg[i]) == isnan(dw[i]);
                same &= isnan(want[i]) || (isinf(want[i]) ? got[i] == want[i]
                                                          : fabsf(got[i] - want[i]) <= 1e-5f);
                same &= isnan(dw[i]) || (isinf(dw[i]) ? dg[i] == dw[i]
                                                      : fabsf(dg[i] - dw[i]) <= 1e-5f);
            }
            CHECK(same, "%s: log-softmax and its gradient with %g in rows of %d: as the reference",
                  name, (double)bad[b], C);
        }
    lstm_ctx_free(lc);
}

int main(void) {
    test_set(LSTM_KERNELS_GENERIC, 1, "generic");
    test_set(LSTM_KERNELS_AVX2, 2, "avx2, 2 threads");
    test_set(LSTM_KERNELS_AVX512, 1, "avx512");
    test_set(LSTM_KERNELS_AVX512, 2, "avx512, 2 threads");
    test_set(LSTM_KERNELS_AVX512_BF16, 2, "avx512bf16, 2 threads");
    return check_summary();
}
