/* ctx.c - the context: which kernels compute (chosen at run time from what
 * the processor supports), which matrix product, and the thread pool. */
#include "internal.h"
#include "nn.h"

#include <stdlib.h>
#include <string.h>

#ifdef LSTM_HAVE_OPENBLAS
#include <cblas.h>
#endif

#ifdef LSTM_X86_KERNELS
extern const nn_kernels nn_kernels_avx512, nn_kernels_avx512bf16, nn_kernels_avx2;
#endif
extern const nn_kernels nn_kernels_generic;

struct lstm_ctx {
    nn_ctx nn;
    nn_kernels table; /* the chosen kernels, with the chosen matrix product */
    nn_scratch scratch;
    int blas;         /* large products by the BLAS */
};

#ifdef LSTM_HAVE_OPENBLAS
typedef struct {
    int tA, tB, M, N, K;
    float alpha, beta;
    const float *A, *B;
    float *C;
    int lda, ldb, ldc;
} blas_job;

/* Each thread computes a block of rows of C (or of columns when C is
 * wide and short), with OpenBLAS itself on one thread. */
static void blas_part(void *arg, int tid, int n) {
    const blas_job *j = arg;
    int lo, hi;
    if (j->M >= j->N) {
        nn_split(j->M, 16, tid, n, &lo, &hi);
        if (lo >= hi)
            return;
        const float *A = j->tA ? j->A + lo : j->A + (size_t)lo * j->lda;
        cblas_sgemm(CblasRowMajor, j->tA ? CblasTrans : CblasNoTrans,
                    j->tB ? CblasTrans : CblasNoTrans, hi - lo, j->N, j->K, j->alpha, A, j->lda,
                    j->B, j->ldb, j->beta, j->C + (size_t)lo * j->ldc, j->ldc);
    } else {
        nn_split(j->N, 16, tid, n, &lo, &hi);
        if (lo >= hi)
            return;
        const float *B = j->tB ? j->B + (size_t)lo * j->ldb : j->B + lo;
        cblas_sgemm(CblasRowMajor, j->tA ? CblasTrans : CblasNoTrans,
                    j->tB ? CblasTrans : CblasNoTrans, j->M, hi - lo, j->K, j->alpha, j->A,
                    j->lda, B, j->ldb, j->beta, j->C + lo, j->ldc);
    }
}

static void blas_gemm_tn2(const nn_ctx *ctx, int M, int K, const float *A, int lda, int N1,
                          const float *B1, int ldb1, float *C1, int ldc1, int N2, const float *B2,
                          int ldb2, float *C2, int ldc2);

static void blas_gemm(const nn_ctx *ctx, int tA, int tB, int M, int N, int K, float alpha,
                      const float *A, int lda, const float *B, int ldb, float beta, float *C,
                      int ldc) {
    if (M <= 0 || N <= 0)
        return;
    blas_job j = {tA, tB, M, N, K, alpha, beta, A, B, C, lda, ldb, ldc};
    /* small products are not worth waking the other threads for */
    if ((double)M * N * K < 32768.0)
        blas_part(&j, 0, 1);
    else
        nn_pool_run(ctx->pool, blas_part, &j);
}

static void blas_gemm_tn2(const nn_ctx *ctx, int M, int K, const float *A, int lda, int N1,
                          const float *B1, int ldb1, float *C1, int ldc1, int N2, const float *B2,
                          int ldb2, float *C2, int ldc2) {
    blas_gemm(ctx, 1, 0, M, N1, K, 1, A, lda, B1, ldb1, 1, C1, ldc1);
    blas_gemm(ctx, 1, 0, M, N2, K, 1, A, lda, B2, ldb2, 1, C2, ldc2);
}
#endif

const char *lstm_blas_name(void) {
#ifdef LSTM_HAVE_OPENBLAS
    return "openblas";
#else
    return "none";
#endif
}

const char *lstm_ctx_gemm(const lstm_ctx *ctx) { return ctx->blas ? lstm_blas_name() : "builtin"; }

static int cpu_has(const char *feature) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    if (strcmp(feature, "avx512") == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
    if (strcmp(feature, "avx512bf16") == 0)
        return cpu_has("avx512") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
    if (strcmp(feature, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    (void)feature;
#endif
    return 0;
}

static const nn_kernels *pick_kernels(lstm_kernels want, lstm_error *err) {
    switch (want) {
    case LSTM_KERNELS_REFERENCE:
        return &nn_kernels_ref;
    case LSTM_KERNELS_GENERIC:
        return &nn_kernels_generic;
    case LSTM_KERNELS_AVX2:
    case LSTM_KERNELS_AVX512:
    case LSTM_KERNELS_AVX512_BF16:
#ifdef LSTM_X86_KERNELS
        if (want == LSTM_KERNELS_AVX512_BF16 && cpu_has("avx512bf16"))
            return &nn_kernels_avx512bf16;
        if (want == LSTM_KERNELS_AVX512 && cpu_has("avx512"))
            return &nn_kernels_avx512;
        if (want == LSTM_KERNELS_AVX2 && cpu_has("avx2"))
            return &nn_kernels_avx2;
        lstm_fail(err, LSTM_ERR_UNSUPPORTED, "this processor lacks %s",
                  want == LSTM_KERNELS_AVX512_BF16 ? "AVX-512 BF16 (and F/DQ/BW/VL)"
                  : want == LSTM_KERNELS_AVX512    ? "AVX-512F/DQ"
                                                   : "AVX2 and FMA");
#else
        lstm_fail(err, LSTM_ERR_UNSUPPORTED, "x86 kernels are not built in");
#endif
        return NULL;
    case LSTM_KERNELS_AUTO:
#ifdef LSTM_X86_KERNELS
        if (cpu_has("avx512"))
            return &nn_kernels_avx512;
        if (cpu_has("avx2"))
            return &nn_kernels_avx2;
#endif
        return &nn_kernels_generic;
    }
    lstm_fail(err, LSTM_ERR_INVALID, "unknown kernel choice %d", (int)want);
    return NULL;
}

/* The int8 products of quantized models go with the float kernels chosen:
 * the reference with the reference (and the portable set), AVX2 with
 * AVX2, else the best the processor has (AVX-512 VNNI, AVX-VNNI, AVX2). */
static const nn_q8_kernels *pick_q8(lstm_kernels want) {
    if (want == LSTM_KERNELS_REFERENCE || want == LSTM_KERNELS_GENERIC)
        return &nn_q8_kernels_ref;
    const nn_q8_kernels *best = nn_q8_kernels_at(0);
    if (want == LSTM_KERNELS_AVX2)
        for (int i = 0; nn_q8_kernels_at(i); i++)
            if (strcmp(nn_q8_kernels_at(i)->name, "avx2") == 0)
                return nn_q8_kernels_at(i);
    return best;
}

#ifdef LSTM_HAVE_OPENBLAS
static int is_avx512(const nn_kernels *k) {
#ifdef LSTM_X86_KERNELS
    return k == &nn_kernels_avx512 || k == &nn_kernels_avx512bf16;
#else
    (void)k;
    return 0;
#endif
}
#endif

lstm_ctx *lstm_ctx_create(const lstm_ctx_config *cfg, lstm_error *err) {
    lstm_ctx_config c = {.threads = 1, .kernels = LSTM_KERNELS_AUTO, .blas = LSTM_BLAS_AUTO};
    if (cfg)
        c = *cfg;
    if (c.threads <= 0)
        c.threads = 1;
    if (c.threads > 256) {
        lstm_fail(err, LSTM_ERR_INVALID, "%d threads is too many (at most 256)", c.threads);
        return NULL;
    }
    const nn_kernels *k = pick_kernels(c.kernels, err);
    if (!k)
        return NULL;
    lstm_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
        return NULL;
    }
    ctx->table = *k;
    if ((unsigned)c.blas > LSTM_BLAS_ON) {
        free(ctx);
        lstm_fail(err, LSTM_ERR_INVALID, "unknown BLAS choice %d", (int)c.blas);
        return NULL;
    }
#ifdef LSTM_HAVE_OPENBLAS
    /* The AVX-512 kernels' own packed product beats OpenBLAS (measured with
     * bench/kernels: about 340 against 200 GFLOP/s on two Zen 5 cores, or
     * the same when OpenBLAS may use its own AVX-512 kernels); with AVX2 or
     * generic vectors OpenBLAS is the faster. OpenBLAS runs one thread per
     * pool thread (this sets its thread count for the whole process). */
    if (k != &nn_kernels_ref &&
        (c.blas == LSTM_BLAS_ON || (c.blas == LSTM_BLAS_AUTO && !is_avx512(k)))) {
        openblas_set_num_threads(1);
        ctx->table.gemm = blas_gemm;
        ctx->table.gemm_tn2 = blas_gemm_tn2;
        ctx->blas = 1;
    }
#endif
#ifdef LSTM_X86_KERNELS
    if (ctx->table.gemm == nn_kernels_avx512bf16.gemm)
        ctx->table.gemm_float = nn_kernels_avx512.gemm;
#endif
    if (k != &nn_kernels_ref && c.threads > 1) {
        ctx->nn.pool = nn_pool_create(c.threads);
        if (!ctx->nn.pool) {
            free(ctx);
            lstm_fail(err, LSTM_ERR_NOMEM, "could not start %d threads", c.threads);
            return NULL;
        }
    }
    ctx->nn.k = &ctx->table;
    ctx->nn.scratch = &ctx->scratch;
    ctx->nn.q8 = pick_q8(c.kernels);
    lstm_ok(err);
    return ctx;
}

void lstm_ctx_free(lstm_ctx *ctx) {
    if (!ctx)
        return;
    nn_pool_free(ctx->nn.pool);
    free(ctx->scratch.p);
    free(ctx);
}

const char *lstm_ctx_kernels(const lstm_ctx *ctx) { return ctx->table.name; }
const char *lstm_ctx_int8_kernels(const lstm_ctx *ctx) { return ctx->nn.q8->name; }
int lstm_ctx_threads(const lstm_ctx *ctx) { return nn_pool_size(ctx->nn.pool); }

/* For the library's own sources: the numeric context inside. */
const nn_ctx *lstm_ctx_nn(const lstm_ctx *ctx) { return &ctx->nn; }
