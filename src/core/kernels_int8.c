/*
 * kernels_int8.c - int8 products for quantized models: weights int8 with a
 * float scale per row, activations quantized per row as they come, exact
 * int32 sums (nn.h, "int8 products"; the file format: docs/DESIGN.md).
 *
 * Compiled twice over. Plain: quantization, packing, the driver that
 * quantizes the activations and splits the blocks between threads, and
 * the reference kernel (scalar loops). With KERNEL_ISA (see the Makefile):
 * one microkernel per instruction set over the same packed layout:
 *   avx512vnni  VPDPBUSD on 512 bits: 16 rows x 4 columns per instruction
 *   avxvnni     VPDPBUSD on 256 bits (VEX), two per 16 rows
 *   avx2        VPMADDUBSW + VPMADDWD, two per 16 rows
 * VPDPBUSD multiplies unsigned bytes by signed ones: the activation goes in
 * as q_a + 128 (q_a xor 0x80) and 128 * rowsum(q) comes off the sums, in
 * 32-bit arithmetic that wraps, which is exact whenever the true sum fits
 * (|sum| <= 127 * 127 * K: K <= NN_Q8_MAX_K). AVX2's VPMADDUBSW saturates
 * its 16-bit pair sums, so there the signs move from the activation onto
 * the weight (|q_a| times sign(q_a) q): each pair is then at most
 * 2 * 127 * 127 = 32258 and nothing saturates. Every set writes its sums
 * through nn_q8_store, so all give the same bits.
 * Sizes: M rows, N output rows (W's), K columns.
 */
#include "nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(LSTM_X86_KERNELS) && defined(__GNUC__)
#include <cpuid.h>
#endif

/* One finished 16-row piece of row m: raw sums, or scaled into C. */
static inline void emit(const nn_q8_gemm_args *a, int m, int b, const int32_t *s) {
    const nn_q8_mat *w = a->w;
    if (a->acc) {
        memcpy(a->acc + (size_t)m * a->ldacc + (size_t)b * 16, s, sizeof(int32_t) * 16);
        return;
    }
    int n = w->N - b * 16 < 16 ? w->N - b * 16 : 16;
    nn_q8_store(a->C + (size_t)m * a->ldc + (size_t)b * 16, s, a->sa[m], w->scale + b * 16, n,
                a->accumulate);
}

#ifndef KERNEL_ISA

static inline size_t up(size_t n, size_t a) { return (n + a - 1) / a * a; }

size_t nn_q8_mat_size(int N, int K) {
    size_t Np = up((size_t)N, 16), Kp = up((size_t)K, 4);
    return 2 * up(Np * 4, 64) + up(Np * Kp, 64);
}

void nn_q8_mat_pack(nn_q8_mat *m, void *buf, const int8_t *q, const float *scale, int N, int K) {
    size_t Np = up((size_t)N, 16), Kp = up((size_t)K, 4);
    float *sc = buf;
    int32_t *rs = (int32_t *)((char *)buf + up(Np * 4, 64));
    int8_t *bl = (int8_t *)((char *)buf + 2 * up(Np * 4, 64));
    memset(bl, 0, Np * Kp);
    for (size_t n = 0; n < Np; n++) {
        sc[n] = n < (size_t)N ? scale[n] : 0;
        int32_t s = 0;
        for (size_t k = 0; n < (size_t)N && k < (size_t)K; k++) {
            int8_t v = q[n * K + k];
            bl[(n / 16) * 16 * Kp + (k / 4) * 64 + (n % 16) * 4 + k % 4] = v;
            s += v;
        }
        rs[n] = s;
    }
    *m = (nn_q8_mat){N, K, (int)Np, (int)Kp, sc, rs, bl};
}

static inline int8_t clamp127(float v) {
    long r = lrintf(v); /* the current rounding: to nearest, ties to even */
    return (int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
}

void nn_q8_quantize_weights(int8_t *q, float *scale, const float *w, int N, int K) {
    for (int n = 0; n < N; n++) {
        const float *row = w + (size_t)n * K;
        float m = 0;
        for (int k = 0; k < K; k++)
            m = fabsf(row[k]) > m ? fabsf(row[k]) : m;
        float s = m / 127.0f;
        scale[n] = s;
        for (int k = 0; k < K; k++)
            q[(size_t)n * K + k] = m == 0 ? 0 : clamp127(row[k] / s);
    }
}

float nn_q8_quantize_row(int8_t *q, const float *a, int K, int Kp) {
    float m = 0;
    int bad = 0;
    for (int k = 0; k < K; k++) {
        float v = fabsf(a[k]);
        bad |= !(v <= 3.4028235e38f); /* NaN or infinite */
        m = v > m ? v : m;
    }
    if (bad || m == 0) {
        memset(q, 0, (size_t)Kp);
        return bad ? NAN : 0;
    }
    float inv = 127.0f / m;
    for (int k = 0; k < K; k++)
        q[k] = clamp127(a[k] * inv);
    memset(q + K, 0, (size_t)(Kp - K));
    return m / 127.0f;
}

void nn_q8_store(float *C, const int32_t *acc, float sa, const float *scale, int n,
                 int accumulate) {
    for (int r = 0; r < n; r++) {
        float v = (float)acc[r] * (sa * scale[r]);
        C[r] = accumulate ? C[r] + v : v;
    }
}

/* The reference: one exact sum per output, straight from the layout. */
static void ref_gemm(const nn_q8_gemm_args *a, int b0, int b1) {
    const nn_q8_mat *w = a->w;
    int Kp = w->Kp;
    for (int m = 0; m < a->M; m++)
        for (int b = b0; b < b1; b++) {
            int32_t s[16];
            const int8_t *x = a->qa + (size_t)m * a->lda;
            const int8_t *blk = w->blocks + (size_t)b * 16 * Kp;
            for (int r = 0; r < 16; r++) {
                int32_t t = 0;
                for (int k = 0; k < Kp; k++)
                    t += (int32_t)x[k] * blk[(k / 4) * 64 + r * 4 + k % 4];
                s[r] = t;
            }
            emit(a, m, b, s);
        }
}

const nn_q8_kernels nn_q8_kernels_ref = {"reference", ref_gemm, nn_q8_quantize_row, 0};

#ifdef LSTM_X86_KERNELS
extern const nn_q8_kernels nn_q8_kernels_avx512vnni, nn_q8_kernels_avxvnni, nn_q8_kernels_avx2,
    nn_q8_kernels_avxvnni_evex;
#endif

#if defined(LSTM_X86_KERNELS) && defined(__GNUC__)
/* AVX-VNNI (the VEX form of VPDPBUSD): CPUID leaf 7, sub-leaf 1, EAX bit 4
 * (Intel's Software Developer's Manual, vol. 2A, CPUID). Read directly:
 * clang before 16 has no "avxvnni" for __builtin_cpu_supports. The caller
 * checks AVX2 first, which covers the operating system's YMM state. */
static int cpu_has_avxvnni(void) {
    unsigned a, b, c, d;
    return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a >> 4 & 1);
}
#endif

const nn_q8_kernels *nn_q8_kernels_at(int i) {
    const nn_q8_kernels *have[5];
    int n = 0;
#if defined(LSTM_X86_KERNELS) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
        have[n++] = &nn_q8_kernels_avx512vnni;
    if (__builtin_cpu_supports("avx2") && cpu_has_avxvnni())
        have[n++] = &nn_q8_kernels_avxvnni;
    if (__builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
        have[n++] = &nn_q8_kernels_avxvnni_evex; /* for the tests; never first */
    if (__builtin_cpu_supports("avx2"))
        have[n++] = &nn_q8_kernels_avx2;
#endif
    have[n++] = &nn_q8_kernels_ref;
    return i >= 0 && i < n ? have[i] : NULL;
}

/* ------------------------------------------------------------------ */
/* The driver. */

#define CHUNK 64 /* rows of A per pass over a thread's blocks */

typedef struct {
    const nn_q8_kernels *k;
    float *C;
    int ldc, accumulate, M, nterms;
    const nn_q8_term *terms;
    int8_t **qa;
    float **sa;
} q8_job;

static void q8_part(void *arg, int tid, int nt) {
    const q8_job *j = arg;
    int lo, hi;
    nn_split(j->terms[0].w->Np / 16, 1, tid, nt, &lo, &hi);
    if (lo >= hi)
        return;
    for (int m0 = 0; m0 < j->M; m0 += CHUNK) {
        int mc = j->M - m0 < CHUNK ? j->M - m0 : CHUNK;
        for (int t = 0; t < j->nterms; t++) {
            const nn_q8_mat *w = j->terms[t].w;
            nn_q8_gemm_args a = {.M = mc, .qa = j->qa[t] + (size_t)m0 * w->Kp, .lda = w->Kp,
                                 .sa = j->sa[t] + m0, .w = w,
                                 .C = j->C + (size_t)m0 * j->ldc, .ldc = j->ldc,
                                 .accumulate = j->accumulate || t > 0};
            j->k->gemm(&a, lo, hi);
        }
    }
}

#define MAX_TERMS 4

void nn_q8_matmul(const nn_ctx *ctx, real *C, int ldc, int accumulate, int M,
                  const nn_q8_term *terms, int nterms) {
    if (M <= 0 || nterms <= 0)
        return;
    if (nterms > MAX_TERMS)
        nterms = MAX_TERMS; /* callers pass at most two */
    size_t need = 0;
    for (int t = 0; t < nterms; t++)
        need += up((size_t)M * terms[t].w->Kp, 64) + up((size_t)M * sizeof(float), 64);
    char *buf = nn_scratch_get(ctx, need);
    if (!buf) { /* out of memory: say so loudly in the result */
        for (int m = 0; m < M; m++)
            for (int n = 0; n < terms[0].w->N; n++)
                C[(size_t)m * ldc + n] = NAN;
        return;
    }
    const nn_q8_kernels *kq = ctx->q8 ? ctx->q8 : &nn_q8_kernels_ref;
    int8_t *qa[MAX_TERMS];
    float *sa[MAX_TERMS];
    char *p = buf;
    double work = 0;
    for (int t = 0; t < nterms; t++) {
        const nn_q8_mat *w = terms[t].w;
        qa[t] = (int8_t *)p;
        p += up((size_t)M * w->Kp, 64);
        sa[t] = (float *)p;
        p += up((size_t)M * sizeof(float), 64);
        for (int m = 0; m < M; m++)
            sa[t][m] = kq->quantize_row(qa[t] + (size_t)m * w->Kp,
                                        terms[t].A + (size_t)m * terms[t].lda, w->K, w->Kp);
        work += (double)M * w->Np * w->Kp;
    }
    q8_job j = {kq, C, ldc, accumulate, M, nterms, terms,
                qa, sa};
    if (work < (1 << 18))
        q8_part(&j, 0, 1);
    else
        nn_pool_run(ctx->pool, q8_part, &j);
    nn_scratch_release(ctx, buf);
}

#else /* KERNEL_ISA: one instruction set's microkernel */

#include <immintrin.h>

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define STR_(x) #x
#define STR(x) STR_(x)

static inline int32_t load32(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

#if defined(__AVX512VNNI__) && !defined(Q8_VNNI256_EVEX)
typedef __m512i vi;
#define NV 1 /* vectors per 16 rows */
#define OFFSET 1
/* the activations are stored as q_a + 128 already (isa_quantize_row) */
static inline vi bcast(const int8_t *p) { return _mm512_set1_epi32(load32(p)); }
static inline vi loadw(const int8_t *p) { return _mm512_loadu_si512((const void *)p); }
static inline vi dot(vi acc, vi a, vi w) { return _mm512_dpbusd_epi32(acc, a, w); }
static inline vi zero(void) { return _mm512_setzero_si512(); }
static inline void storev(int32_t *d, vi v) { _mm512_storeu_si512((void *)d, v); }
static inline vi vadd(vi x, vi y) { return _mm512_add_epi32(x, y); }
#define MR4_NB 4 /* 16 accumulators: 4 broadcasts and 4 loads feed 16 products */
#define HAVE_VSTORE 1
/* nn_q8_store's operations, 16 lanes at once: the same bits */
static inline void vstore_out(const nn_q8_gemm_args *a, int m, int b, vi acc) {
    int n = a->w->N - b * 16 < 16 ? a->w->N - b * 16 : 16;
    __mmask16 k = (__mmask16)((1u << n) - 1);
    float *C = a->C + (size_t)m * a->ldc + (size_t)b * 16;
    __m512 s = _mm512_mul_ps(_mm512_set1_ps(a->sa[m]), _mm512_loadu_ps(a->w->scale + b * 16));
    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), s);
    if (a->accumulate)
        v = _mm512_add_ps(_mm512_maskz_loadu_ps(k, C), v);
    _mm512_mask_storeu_ps(C, k, v);
}
/* nn_q8_quantize_row's operations, 16 lanes at once: the same bits */
static float isa_quantize_row(int8_t *q, const float *a, int K, int Kp) {
    __m512 mx = _mm512_setzero_ps(), big = _mm512_set1_ps(3.4028235e38f);
    __mmask16 bad = 0;
    for (int k = 0; k < K; k += 16) {
        __mmask16 km = K - k >= 16 ? 0xffff : (__mmask16)((1u << (K - k)) - 1);
        __m512 v = _mm512_abs_ps(_mm512_maskz_loadu_ps(km, a + k));
        bad |= _mm512_mask_cmp_ps_mask(km, v, big, _CMP_NLE_UQ);
        mx = _mm512_max_ps(mx, v);
    }
    float m = _mm512_reduce_max_ps(mx);
    if (bad || m == 0) {
        memset(q, 0x80, (size_t)Kp);
        return bad ? NAN : 0;
    }
    __m512 inv = _mm512_set1_ps(127.0f / m);
    __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    for (int k = 0; k < K; k += 16) {
        __mmask16 km = K - k >= 16 ? 0xffff : (__mmask16)((1u << (K - k)) - 1);
        __m512i r = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(km, a + k), inv));
        r = _mm512_min_epi32(_mm512_max_epi32(r, lo), hi);
        __m128i b = _mm_xor_si128(_mm512_cvtepi32_epi8(r), _mm_set1_epi8((char)0x80));
        _mm_mask_storeu_epi8(q + k, km, b);
    }
    memset(q + K, 0x80, (size_t)(Kp - K));
    return m / 127.0f;
}
#elif defined(__AVXVNNI__) || defined(Q8_VNNI256_EVEX)
/* AVX-VNNI; or the same code with the EVEX form of the instruction
 * (AVX-512 VNNI + VL), which lets a processor without AVX-VNNI test it */
typedef __m256i vi;
#define NV 2
#define OFFSET 1
static inline vi bcast(const int8_t *p) {
    return _mm256_xor_si256(_mm256_set1_epi32(load32(p)), _mm256_set1_epi32((int)0x80808080));
}
static inline vi loadw(const int8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
#ifdef Q8_VNNI256_EVEX
static inline vi dot(vi acc, vi a, vi w) { return _mm256_dpbusd_epi32(acc, a, w); }
#else
static inline vi dot(vi acc, vi a, vi w) { return _mm256_dpbusd_avx_epi32(acc, a, w); }
#endif
static inline vi zero(void) { return _mm256_setzero_si256(); }
static inline void storev(int32_t *d, vi v) { _mm256_storeu_si256((__m256i *)d, v); }
static inline vi vadd(vi x, vi y) { return _mm256_add_epi32(x, y); }
#define MR4_NB 1
#else /* AVX2 */
typedef __m256i vi;
#define NV 2
#define OFFSET 0
static inline vi bcast(const int8_t *p) { return _mm256_set1_epi32(load32(p)); }
static inline vi loadw(const int8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline vi dot(vi acc, vi a, vi w) {
    __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(a), _mm256_sign_epi8(w, a));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}
static inline vi zero(void) { return _mm256_setzero_si256(); }
static inline void storev(int32_t *d, vi v) { _mm256_storeu_si256((__m256i *)d, v); }
static inline vi vadd(vi x, vi y) { return _mm256_add_epi32(x, y); }
#define MR4_NB 1
#endif

/* the tile loops have constant trips: registers, not memory */
#define UNROLL _Pragma("GCC unroll 16")

/* The sums of row m, block b (NV vectors): the u8 offset taken off, then
 * written as raw sums or scaled floats. */
static inline __attribute__((always_inline)) void finish(const nn_q8_gemm_args *a, int m, int b,
                                                         const vi *acc) {
    const nn_q8_mat *w = a->w;
#ifdef HAVE_VSTORE
    if (!a->acc) {
        vi rsum = _mm512_loadu_si512((const void *)(w->rowsum + b * 16));
        vstore_out(a, m, b, _mm512_sub_epi32(acc[0], _mm512_slli_epi32(rsum, 7)));
        return;
    }
#endif
    int32_t s[16];
    UNROLL for (int v = 0; v < NV; v++)
        storev(s + v * 16 / NV, acc[v]);
#if OFFSET
    const int32_t *rs = w->rowsum + b * 16;
    for (int i = 0; i < 16; i++) /* wraps: exact when the true sum fits */
        s[i] = (int32_t)((uint32_t)s[i] - 128u * (uint32_t)rs[i]);
#else
    (void)w;
#endif
    emit(a, m, b, s);
}

/* Rows [m, m+mr) times blocks [b, b+nb): mr * nb * NV accumulators. */
static inline __attribute__((always_inline)) void tile(const nn_q8_gemm_args *a, int m, int mr,
                                                       int b, int nb) {
    const nn_q8_mat *w = a->w;
    int Kp = w->Kp, G = Kp / 4;
    vi acc[4][4][NV];
    UNROLL for (int r = 0; r < mr; r++)
        UNROLL for (int j = 0; j < nb; j++)
            UNROLL for (int v = 0; v < NV; v++)
                acc[r][j][v] = zero();
    const int8_t *W = w->blocks + (size_t)b * 16 * Kp;
    const int8_t *x = a->qa + (size_t)m * a->lda;
    for (int g = 0; g < G; g++) {
        vi av[4];
        UNROLL for (int r = 0; r < mr; r++)
            av[r] = bcast(x + (size_t)r * a->lda + 4 * g);
        UNROLL for (int j = 0; j < nb; j++)
            UNROLL for (int v = 0; v < NV; v++) {
                vi wv = loadw(W + (size_t)j * 16 * Kp + (size_t)g * 64 + v * 64 / NV);
                UNROLL for (int r = 0; r < mr; r++)
                    acc[r][j][v] = dot(acc[r][j][v], av[r], wv);
            }
    }
    UNROLL for (int r = 0; r < mr; r++)
        UNROLL for (int j = 0; j < nb; j++)
            finish(a, m + r, b + j, acc[r][j]);
}

/* One row by one block, the columns in four interleaved sums: the block's
 * bytes are read as one sequential stream (a step's product is a read of
 * the weights from L3, and one stream per thread keeps the prefetcher
 * simplest). */
static void tile_row(const nn_q8_gemm_args *a, int m, int b) {
    const nn_q8_mat *w = a->w;
    int G = w->Kp / 4;
    vi acc[4][NV];
    UNROLL for (int u = 0; u < 4; u++)
        UNROLL for (int v = 0; v < NV; v++)
            acc[u][v] = zero();
    const int8_t *W = w->blocks + (size_t)b * 16 * w->Kp;
    const int8_t *x = a->qa + (size_t)m * a->lda;
    int g = 0;
    for (; g + 4 <= G; g += 4)
        UNROLL for (int u = 0; u < 4; u++) {
            vi av = bcast(x + 4 * (g + u));
            UNROLL for (int v = 0; v < NV; v++)
                acc[u][v] = dot(acc[u][v], av, loadw(W + (size_t)(g + u) * 64 + v * 64 / NV));
        }
    for (; g < G; g++) {
        vi av = bcast(x + 4 * g);
        UNROLL for (int v = 0; v < NV; v++)
            acc[0][v] = dot(acc[0][v], av, loadw(W + (size_t)g * 64 + v * 64 / NV));
    }
    UNROLL for (int v = 0; v < NV; v++) /* integers: any order gives the same sum */
        acc[0][v] = vadd(vadd(acc[0][v], acc[1][v]), vadd(acc[2][v], acc[3][v]));
    finish(a, m, b, acc[0]);
}

/* A block tile's weights stay in L1 while every row goes past them. */
static void isa_gemm(const nn_q8_gemm_args *a, int b0, int b1) {
    int b = b0;
    if (a->M < 4) { /* a step's few rows: block after block */
        for (; b < b1; b++)
            for (int m = 0; m < a->M; m++)
                tile_row(a, m, b);
        return;
    }
    for (; b < b1; b += MR4_NB) {
        int nb = b1 - b < MR4_NB ? b1 - b : MR4_NB;
        if (nb == MR4_NB) {
            int m = 0;
            for (; m + 4 <= a->M; m += 4)
                tile(a, m, 4, b, MR4_NB);
            for (; m < a->M; m++)
                tile(a, m, 1, b, MR4_NB);
        } else { /* the last blocks, one at a time */
            for (int j = 0; j < nb; j++) {
                int m = 0;
                for (; m + 4 <= a->M; m += 4)
                    tile(a, m, 4, b + j, 1);
                for (; m < a->M; m++)
                    tile(a, m, 1, b + j, 1);
            }
        }
    }
}

#ifndef HAVE_VSTORE
#define isa_quantize_row nn_q8_quantize_row
#endif
#if defined(__AVX512VNNI__) && !defined(Q8_VNNI256_EVEX)
#define U8 1 /* isa_quantize_row stores q_a + 128 */
#else
#define U8 0
#endif
const nn_q8_kernels CAT(nn_q8_kernels_, KERNEL_ISA) = {STR(KERNEL_ISA), isa_gemm,
                                                       isa_quantize_row, U8};

#endif
