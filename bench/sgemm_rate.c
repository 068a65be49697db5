/* sgemm_rate.c - the machine's single-precision GEMM rate with OpenBLAS, one and two
 * threads, so a benchmark table can say how close to the hardware it runs.
 *
 *   cc -O2 bench/sgemm_rate.c -o build/bench/sgemm_rate $(pkg-config --cflags --libs openblas)
 *   build/bench/sgemm_rate [N]     # C (N x N) = A (N x N) B (N x N), N = 2048
 *
 * Prints the best of 3 timed runs (after one warm-up) per thread count; the last line
 * is JSON: {"n":N,"gflops_1":..,"gflops_2":..,"core":"..."}.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Best GFLOP/s of 3 runs of an n x n x n sgemm on `threads` threads. */
static double rate(int n, int threads, const float *a, const float *b, float *c) {
    openblas_set_num_threads(threads);
    double best = 0;
    for (int it = -1; it < 3; it++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double g = 2.0 * n * n * n / (now() - t0) * 1e-9;
        if (it >= 0 && g > best)
            best = g;
    }
    return best;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 2048;
    if (n < 1) {
        fprintf(stderr, "usage: sgemm_rate [N]\n");
        return 2;
    }
    size_t nn = (size_t)n * n;
    float *a = malloc(nn * sizeof *a), *b = malloc(nn * sizeof *b), *c = malloc(nn * sizeof *c);
    if (!a || !b || !c) {
        fprintf(stderr, "sgemm_rate: out of memory\n");
        return 1;
    }
    unsigned s = 1;
    for (size_t i = 0; i < nn; i++) {
        s = s * 1664525u + 1013904223u;
        a[i] = (float)(s >> 8) / (1 << 24) - 0.5f;
        b[i] = (float)(s >> 9) / (1 << 23) - 0.5f;
        c[i] = 0;
    }
    double g1 = rate(n, 1, a, b, c), g2 = rate(n, 2, a, b, c);
    printf("sgemm %dx%dx%d (OpenBLAS %s): 1 thread %.1f GFLOP/s, 2 threads %.1f GFLOP/s\n", n, n, n,
           openblas_get_corename(), g1, g2);
    printf("{\"n\":%d,\"gflops_1\":%.3f,\"gflops_2\":%.3f,\"core\":\"%s\"}\n", n, g1, g2, openblas_get_corename());
    free(a), free(b), free(c);
    return 0;
}
