/*
 * kernels.c - times each kernel of the fast path on the shapes a training
 * step of `lstm bench` uses, for every kernel set and thread count, so a
 * change to one kernel can be measured alone.
 *
 *   build/bench/kernels [I H B T threads [generic|avx2|avx512|avx512bf16|openblas]]
 *                                          (defaults: 256 256 32 150 2, all sets)
 *
 * A kernel alone is not the kernel in the step: here every array is its own
 * page-aligned allocation, hot in cache, so rows of different arrays share
 * their addresses modulo 4 KiB far more than in lstm_core.c's workspace. A
 * change that wins only here (the backward's pointwise part walking rows
 * instead of columns: -7% "cell bwd" at H=1024, but +4-7% on `lstm bench`
 * training at H=256 and 512) is checked with `lstm bench` before it stays.
 */
#include "lstm.h"
#include "nn.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static float *rnd(size_t n, lstm_rng *rng) {
    float *p = lstm_alloc_aligned(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = lstm_rng_uniform(rng) - 0.5f;
    return p;
}

/* Best of `reps` timings of fn(arg), in seconds. */
#define TIME(reps, stmt)                                                                          \
    ({                                                                                            \
        double best_ = 1e30;                                                                      \
        for (int r_ = 0; r_ < (reps); r_++) {                                                     \
            double t0_ = now();                                                                   \
            stmt;                                                                                 \
            double dt_ = now() - t0_;                                                             \
            if (dt_ < best_)                                                                      \
                best_ = dt_;                                                                      \
        }                                                                                         \
        best_;                                                                                    \
    })

int main(int argc, char **argv) {
    int I = argc > 1 ? atoi(argv[1]) : 256, H = argc > 2 ? atoi(argv[2]) : 256;
    int B = argc > 3 ? atoi(argv[3]) : 32, T = argc > 4 ? atoi(argv[4]) : 150;
    int threads = argc > 5 ? atoi(argv[5]) : 2;
    int TB = T * B, G = 4 * H;
    lstm_rng rng;
    lstm_rng_seed(&rng, 1);
    float *X = rnd((size_t)TB * I, &rng), *W = rnd((size_t)G * I, &rng);
    float *Whh = rnd((size_t)G * H, &rng), *Gm = rnd((size_t)TB * G, &rng);
    float *C = rnd((size_t)TB * G, &rng), *dW = rnd((size_t)G * (I > H ? I : H), &rng);
    float *hp = rnd((size_t)B * H, &rng), *cp = rnd((size_t)B * H, &rng);
    float *c = rnd((size_t)B * H, &rng), *h = rnd((size_t)B * H, &rng);
    float *g = rnd((size_t)B * G, &rng), *gin = rnd((size_t)B * G, &rng);
    float *dc = rnd((size_t)B * H, &rng), *dhp = rnd((size_t)B * H, &rng);
    printf("I=%d H=%d B=%d T=%d threads=%d (GFLOP/s, best of several)\n", I, H, B, T, threads);
    printf("%-10s %12s %12s %12s %12s %12s %12s\n", "kernels", "X Wih^T", "dG^T [X|X]", "dG Wih",
           "cell fwd", "cell bwd", "step pgemm");
    /* each kernel set with its own packed product; then with OpenBLAS's */
    lstm_kernels sets[] = {LSTM_KERNELS_GENERIC, LSTM_KERNELS_AVX2, LSTM_KERNELS_AVX512,
                           LSTM_KERNELS_AVX512_BF16, LSTM_KERNELS_AVX2};
    lstm_blas blas[] = {LSTM_BLAS_OFF, LSTM_BLAS_OFF, LSTM_BLAS_OFF, LSTM_BLAS_OFF, LSTM_BLAS_ON};
    const char *only = argc > 6 ? argv[6] : NULL;
    static const char *set_names[] = {"generic", "avx2", "avx512", "avx512bf16", "openblas"};
    for (int s = 0; s < 5; s++) {
        if (only && strcmp(only, set_names[s]) != 0)
            continue;
        lstm_ctx_config cc = {threads, sets[s], blas[s]};
        lstm_ctx *ctx = lstm_ctx_create(&cc, NULL);
        if (!ctx || (blas[s] == LSTM_BLAS_ON && strcmp(lstm_ctx_gemm(ctx), "builtin") == 0)) {
            lstm_ctx_free(ctx);
            continue;
        }
        const nn_ctx *nc = lstm_ctx_nn(ctx);
        const nn_kernels *k = nc->k;
        double f_proj = 2.0 * TB * G * I, f_dw = 2.0 * G * I * TB, f_dx = 2.0 * TB * I * G;
        /* as lstm_core.c does: W_ih packed once, dW_ih and dW_hh in one pass */
        float *wnt = lstm_alloc_aligned(k->pack_size(G, I) * sizeof(float));
        float *wnn = lstm_alloc_aligned(k->pack_size(I, G) * sizeof(float));
        k->pack_nt(wnt, W, G, I);
        k->pack_nn(wnn, W, G, I);
        double t1 = TIME(5, k->pgemm(nc, TB, G, I, X, I, wnt, 0, C, G));
        double t2 = TIME(5, k->gemm_tn2(nc, G, TB, Gm, G, I, X, I, dW, I, I, X, I, dW, I)) / 2;
        double t3 = TIME(5, k->pgemm(nc, TB, I, G, Gm, G, wnn, 0, C, I));
        lstm_free_aligned(wnt);
        lstm_free_aligned(wnn);
        float *pk = lstm_alloc_aligned(k->cell_pack_size(H, 0, H) * sizeof(float));
        k->cell_pack(pk, NULL, Whh, H, 0, H);
        float *pn = lstm_alloc_aligned(k->pack_size(H, G) * sizeof(float));
        k->pack_nn(pn, Whh, G, H);
        /* the gates in place of the input projection, as lstm_core.c has them */
        memcpy(g, gin, sizeof(float) * B * G);
        nn_cell_fwd cf = {.M = B, .H = H, .K2 = H, .hp = hp, .cp = cp, .gin = g, .w = pk,
                          .g = g, .c = c, .h = h};
        double t4 = TIME(50, for (int i = 0; i < 20; i++) k->cell_forward(nc, &cf)) / 20;
        nn_cell_bwd cb = {.M = B, .H = H, .Hout = H, .g = g, .c = c, .cp = cp, .dr = h,
                          .dc = dc, .dhp = dhp, .w = pn};
        double t5 = TIME(50, for (int i = 0; i < 20; i++) k->cell_backward(nc, &cb)) / 20;
        double t6 = TIME(50, for (int i = 0; i < 20; i++)
                                 k->pgemm(nc, B, H, G, g, G, pn, 0, dhp, H)) / 20;
        double f_cell = 2.0 * B * G * H;
        printf("%-10s %12.1f %12.1f %12.1f %12.1f %12.1f %12.1f\n", set_names[s], f_proj / t1 * 1e-9,
               f_dw / t2 * 1e-9, f_dx / t3 * 1e-9, f_cell / t4 * 1e-9, f_cell / t5 * 1e-9,
               f_cell / t6 * 1e-9);
        printf("%-10s %10.2fms %10.2fms %10.2fms %10.1fus %10.1fus %10.1fus\n", "", t1 * 1e3,
               t2 * 1e3, t3 * 1e3, t4 * 1e6, t5 * 1e6, t6 * 1e6);
        lstm_free_aligned(pk);
        lstm_free_aligned(pn);
        lstm_ctx_free(ctx);
    }
    return 0;
}
