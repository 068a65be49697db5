/* sgemm_rate.c - the machine's single-precision GEMM rate with OpenBLAS, and the
 * processor's multiply-add peak, one and two threads, so a benchmark table can say
 * how close to the hardware it runs.
 *
 *   cc -O2 -pthread bench/sgemm_rate.c -o build/bench/sgemm_rate $(pkg-config --cflags --libs openblas)
 *   build/bench/sgemm_rate [N]     # C (N x N) = A (N x N) B (N x N), N = 2048
 *
 * Prints the best of 3 timed runs (after one warm-up) per thread count, then (best of
 * 3 each) the peak: twelve independent chains of vector FMAs (and of VDPBF16PS where the processor has
 * AVX-512 BF16) in registers, nothing loaded, counted as lstm bench counts (2 flops per
 * multiply-add); and the time two threads take to read 8 MiB each at once, the float
 * weights of a 2-layer I=H=512 LSTM, which bound a streaming step (every step reads
 * them all). The last line is JSON: {"n":N,"gflops_1":..,"gflops_2":..,"core":"..",
 * "peak_1":..,"peak_2":..,"peak_bf16_1":..,"peak_bf16_2":..,"read_16mib_us":..}
 * (0 where not measured: the peaks need AVX2 or AVX-512, the read AVX-512).
 */
#include <cblas.h>
#include <pthread.h>
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

/* ---- the multiply-add peak ---- */

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define PEAK_ITERS 100000000L
#define CHAINS(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9) F(10) F(11)

/* Flops of the loop per second: 12 chains x (16 lanes x 2) a round. */
__attribute__((target("avx512f"))) static double peak_avx512(void) {
    __m512 x = _mm512_set1_ps(1.0000001f), y = _mm512_set1_ps(1e-7f);
#define DECL(i) __m512 a##i = _mm512_set1_ps((float)i);
    CHAINS(DECL)
    double t0 = now();
    for (long k = 0; k < PEAK_ITERS; k++) {
#define FMA(i) a##i = _mm512_fmadd_ps(a##i, x, y);
        CHAINS(FMA)
    }
    double t = now() - t0;
#define SUM(i) + a##i
    volatile float keep = _mm512_reduce_add_ps(_mm512_setzero_ps() CHAINS(SUM));
    (void)keep;
    return PEAK_ITERS * 12 * 32.0 / t * 1e-9;
}

__attribute__((target("avx2,fma"))) static double peak_avx2(void) {
    __m256 x = _mm256_set1_ps(1.0000001f), y = _mm256_set1_ps(1e-7f);
#define DECL8(i) __m256 a##i = _mm256_set1_ps((float)i);
    CHAINS(DECL8)
    double t0 = now();
    for (long k = 0; k < PEAK_ITERS; k++) {
#define FMA8(i) a##i = _mm256_fmadd_ps(a##i, x, y);
        CHAINS(FMA8)
    }
    double t = now() - t0;
    float out[8];
    _mm256_storeu_ps(out, _mm256_setzero_ps() CHAINS(SUM));
    volatile float keep = out[0];
    (void)keep;
    return PEAK_ITERS * 12 * 16.0 / t * 1e-9;
}

/* VDPBF16PS: 16 lanes x 2 products x 2 flops an instruction. */
__attribute__((target("avx512f,avx512bf16"))) static double peak_bf16(void) {
    __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80), y = x;
#define DECLB(i) __m512 a##i = _mm512_set1_ps((float)i);
    CHAINS(DECLB)
    double t0 = now();
    for (long k = 0; k < PEAK_ITERS; k++) {
#define DPB(i) a##i = _mm512_dpbf16_ps(a##i, x, y);
        CHAINS(DPB)
    }
    double t = now() - t0;
    volatile float keep = _mm512_reduce_add_ps(_mm512_setzero_ps() CHAINS(SUM));
    (void)keep;
    return PEAK_ITERS * 12 * 64.0 / t * 1e-9;
}

/* Sums n floats (n a multiple of 128) reps times: a read of n * 4 bytes a pass, eight
 * independent sums so that the loads, not the adds, set the pace. */
__attribute__((target("avx512f"))) static float read_avx512(const float *p, size_t n, int reps) {
    __m512 s[8];
    for (int j = 0; j < 8; j++)
        s[j] = _mm512_setzero_ps();
    for (int r = 0; r < reps; r++)
        for (size_t i = 0; i < n; i += 128)
            for (int j = 0; j < 8; j++)
                s[j] = _mm512_add_ps(s[j], _mm512_loadu_ps(p + i + 16 * j));
    for (int j = 1; j < 8; j++)
        s[0] = _mm512_add_ps(s[0], s[j]);
    return _mm512_reduce_add_ps(s[0]);
}

typedef struct {
    const float *p;
    size_t n;
    int reps;
    pthread_barrier_t *start;
    double seconds;
} read_job;

static void *read_thread(void *arg) {
    read_job *j = arg;
    read_avx512(j->p, j->n, 2); /* into the caches */
    pthread_barrier_wait(j->start);
    double t0 = now();
    volatile float keep = read_avx512(j->p, j->n, j->reps);
    (void)keep;
    j->seconds = now() - t0;
    return NULL;
}

/* Microseconds per pass of two threads each reading its own `bytes` at once. */
static double read_time(size_t bytes) {
    size_t n = bytes / sizeof(float) / 128 * 128;
    float *buf = aligned_alloc(64, 2 * n * sizeof(float));
    if (!buf)
        return 0;
    for (size_t i = 0; i < 2 * n; i++)
        buf[i] = 1e-3f;
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    int reps = (int)(2e9 / (double)bytes) + 1;
    read_job j[2] = {{buf, n, reps, &start, 0}, {buf + n, n, reps, &start, 0}};
    pthread_t t;
    if (pthread_create(&t, NULL, read_thread, &j[1]) != 0)
        return 0;
    read_thread(&j[0]);
    pthread_join(t, NULL);
    pthread_barrier_destroy(&start);
    free(buf);
    double s = j[0].seconds > j[1].seconds ? j[0].seconds : j[1].seconds;
    return s / reps * 1e6;
}

static double (*peak_fn)(void);

static void *peak_thread(void *out) {
    *(double *)out = peak_fn();
    return NULL;
}

/* The loop's rate on one thread and the sum over two running at once, the best of 3
 * (another process on these cores only ever lowers it). */
static void peak(double (*fn)(void), double *one, double *two) {
    peak_fn = fn;
    *one = *two = 0;
    for (int it = 0; it < 3; it++) {
        double r1 = fn(), r[2];
        pthread_t t;
        if (pthread_create(&t, NULL, peak_thread, &r[1]) != 0)
            return;
        r[0] = fn();
        pthread_join(t, NULL);
        *one = r1 > *one ? r1 : *one;
        *two = r[0] + r[1] > *two ? r[0] + r[1] : *two;
    }
}
#endif

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
    double p1 = 0, p2 = 0, b1 = 0, b2 = 0;
    const char *isa = "none";
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx512f"))
        peak(peak_avx512, &p1, &p2), isa = "AVX-512";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        peak(peak_avx2, &p1, &p2), isa = "AVX2";
    if (__builtin_cpu_supports("avx512bf16"))
        peak(peak_bf16, &b1, &b2);
#endif
    double rd = 0, rd4 = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    for (int it = 0; it < 3 && __builtin_cpu_supports("avx512f"); it++) {
        double t = read_time((size_t)8 << 20);
        rd = rd == 0 || (t > 0 && t < rd) ? t : rd;
    }
    /* the bytes of the int8 step (lstm bench --precision int8): a quarter */
    for (int it = 0; it < 3 && __builtin_cpu_supports("avx512f"); it++) {
        double t = read_time((size_t)2 << 20);
        rd4 = rd4 == 0 || (t > 0 && t < rd4) ? t : rd4;
    }
#endif
    if (p1 > 0)
        printf("multiply-add peak (%s FMA, in registers): 1 thread %.1f GFLOP/s, 2 threads %.1f GFLOP/s\n",
               isa, p1, p2);
    if (b1 > 0)
        printf("multiply-add peak (VDPBF16PS, in registers): 1 thread %.1f GFLOP/s, 2 threads %.1f GFLOP/s\n",
               b1, b2);
    if (rd > 0)
        printf("reading 16 MiB of floats (8 MiB per thread, 2 threads, from cache): %.1f us, %.1f GB/s\n", rd,
               16.0 * 1048576 / rd * 1e-3);
    if (rd4 > 0)
        printf("reading 4 MiB (the int8 step's weights; 2 MiB per thread, 2 threads, from cache): "
               "%.1f us, %.1f GB/s\n", rd4, 4.0 * 1048576 / rd4 * 1e-3);
    printf("{\"n\":%d,\"gflops_1\":%.3f,\"gflops_2\":%.3f,\"core\":\"%s\",\"peak_1\":%.3f,"
           "\"peak_2\":%.3f,\"peak_bf16_1\":%.3f,\"peak_bf16_2\":%.3f,\"read_16mib_us\":%.3f}\n",
           n, g1, g2, openblas_get_corename(), p1, p2, b1, b2, rd);
    free(a), free(b), free(c);
    return 0;
}
