/*
 * kernels_simd.c - the fast kernels, written once with GCC/Clang vector
 * extensions and compiled once per instruction set (KERNEL_ISA = generic,
 * avx2, avx512); ctx.c picks one at run time. Float only.
 *
 * One microkernel does all the multiplying: C (MR rows, NR = 4 vectors) +=
 * A (MR, K) B, with A read in place (broadcast one value at a time) and B
 * packed into panels of NR columns, k-major, so each k is 4 vector loads.
 *   - pgemm: products with few rows and weights packed once (one step).
 *   - cell_forward: the same product against W_hh packed so that a panel
 *     holds the four gates (i, f, g, o) of VL hidden units; the gate
 *     nonlinearities and the state update then run on the accumulators,
 *     still in registers. Threads take disjoint hidden units, so a step
 *     needs no synchronisation inside.
 *   - gemm: packs B panels block by block, for builds without a BLAS.
 *
 * The avx512bf16 set (chosen only on request: it is not PyTorch's float
 * arithmetic) multiplies in bfloat16 with float sums (VDPBF16PS), twice the
 * products per instruction and half the bytes of weights: its panels hold
 * pairs of k (k, k+1) of each column in one 32-bit word, A's rows are
 * rounded to bfloat16 (to nearest even) a block at a time on the stack, and
 * everything else - the gates, the state, the backward's pointwise part,
 * the sums - stays in float.
 */
#include "simd.h"

/* ------------------------------------------------------------------ */
/* The microkernel: acc[r][q] = sum_k A[r][k] P[k][q*VL .. q*VL+VL), over
 * two A segments (K1 columns of A1, then K2 of A2) and one packed panel P.
 * A[r][k] is at A[r*rs + k*ks]. mr is a constant after inlining. */
INLINE void mk1(vf acc[MR][4], const float *A1, long ks1, int K1, const float *A2, long ks2,
                int K2, const float *P);

INLINE void mk(const int mr, vf acc[MR][4], const float *A1, long rs1, long ks1, int K1,
               const float *A2, long rs2, long ks2, int K2, const float *P) {
    if (mr == 1) {
        mk1(acc, A1, ks1, K1, A2, ks2, K2, P);
        return;
    }
    for (int r = 0; r < mr; r++)
        for (int q = 0; q < 4; q++)
            acc[r][q] = vset(0);
    for (int k = 0; k < K1; k++, P += NR) {
        vf w0 = vload(P), w1 = vload(P + VL), w2 = vload(P + 2 * VL), w3 = vload(P + 3 * VL);
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            vf a = vset(A1[r * rs1 + k * ks1]);
            acc[r][0] += a * w0;
            acc[r][1] += a * w1;
            acc[r][2] += a * w2;
            acc[r][3] += a * w3;
        }
    }
    for (int k = 0; k < K2; k++, P += NR) {
        vf w0 = vload(P), w1 = vload(P + VL), w2 = vload(P + 2 * VL), w3 = vload(P + 3 * VL);
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            vf a = vset(A2[r * rs2 + k * ks2]);
            acc[r][0] += a * w0;
            acc[r][1] += a * w1;
            acc[r][2] += a * w2;
            acc[r][3] += a * w3;
        }
    }
}

/* One row (a batch of one, streaming): four accumulators would wait on
 * the adder's latency, so even and odd k go to two sets, summed at the end. */
INLINE void mk1(vf acc[MR][4], const float *A1, long ks1, int K1, const float *A2, long ks2,
                int K2, const float *P) {
    vf e0 = vset(0), e1 = vset(0), e2 = vset(0), e3 = vset(0);
    vf o0 = vset(0), o1 = vset(0), o2 = vset(0), o3 = vset(0);
    for (int seg = 0; seg < 2; seg++) {
        const float *A = seg ? A2 : A1;
        long ks = seg ? ks2 : ks1;
        int K = seg ? K2 : K1, k = 0;
        for (; k + 1 < K; k += 2, P += 2 * NR) {
            vf a = vset(A[k * ks]), b = vset(A[(k + 1) * ks]);
            e0 += a * vload(P), e1 += a * vload(P + VL);
            e2 += a * vload(P + 2 * VL), e3 += a * vload(P + 3 * VL);
            o0 += b * vload(P + NR), o1 += b * vload(P + NR + VL);
            o2 += b * vload(P + NR + 2 * VL), o3 += b * vload(P + NR + 3 * VL);
        }
        if (k < K) {
            vf a = vset(A[k * ks]);
            e0 += a * vload(P), e1 += a * vload(P + VL);
            e2 += a * vload(P + 2 * VL), e3 += a * vload(P + 3 * VL);
            P += NR;
        }
    }
    acc[0][0] = e0 + o0, acc[0][1] = e1 + o1, acc[0][2] = e2 + o2, acc[0][3] = e3 + o3;
}

#if SIMD_BF16
/* ------------------------------------------------------------------ */
/* bfloat16. A packed panel is (ceil(K/2), NR) 32-bit words: word
 * [kk][col] holds column col's values at k = 2kk (low half) and 2kk + 1
 * (high half, zero past K). A's rows are converted the same way, so one
 * 32-bit broadcast of A meets four panel vectors in four VDPBF16PS. */
#include <immintrin.h>

/* Rounded to nearest even, subnormals to zero (as VCVTNEPS2BF16 and
 * VDPBF16PS treat them), NaN kept a NaN. */
static inline uint16_t bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7f800000) == 0)
        return (uint16_t)((u >> 16) & 0x8000);
    if ((u & 0x7fffffff) > 0x7f800000)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static inline uint32_t bf16_pair(float lo, float hi) {
    return bf16(lo) | (uint32_t)bf16(hi) << 16;
}

/* n floats from s to bfloat16 at byte offset 2*at of d. */
static void to_bf16(uint32_t *d, long at, const float *s, int n) {
    char *o = (char *)d + 2 * at;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256bh b = _mm512_cvtneps_pbh(_mm512_loadu_ps(s + i));
        memcpy(o + 2 * i, &b, sizeof b);
    }
    for (; i < n; i++) {
        uint16_t b = bf16(s[i]);
        memcpy(o + 2 * i, &b, sizeof b);
    }
}

/* Columns [k0, k0+kn) of rows [0, mr) of [A1 (K1 columns) | A2 (K2)], row
 * strides rs1 and rs2, as pair rows of (kn + 1) / 2 words, row stride rd
 * words, the odd half-word zero. */
static void rows_to_bf16(uint32_t *dst, long rd, int mr, const float *A1, long rs1, int K1,
                         const float *A2, long rs2, int k0, int kn) {
    for (int r = 0; r < mr; r++) {
        uint32_t *d = dst + r * rd;
        int k = k0, e = k0 + kn;
        if (k < K1) {
            int n = (e < K1 ? e : K1) - k;
            to_bf16(d, 0, A1 + r * rs1 + k, n);
            k += n;
        }
        if (k < e)
            to_bf16(d, k - k0, A2 + r * rs2 + (k - K1), e - k);
        if (kn & 1)
            memset((char *)d + 2 * kn, 0, 2);
    }
}

/* Sixteen pair words (lo[i], hi[i]) of two rows (hi NULL: zeros). */
INLINE __m512i pairs16(const float *lo, const float *hi) {
    __m512i l = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(lo)));
    if (!hi)
        return l;
    __m512i h = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(hi)));
    return _mm512_or_si512(l, _mm512_slli_epi32(h, 16));
}

/* Words [0, n) of pair rows lo/hi (n columns each; hi NULL: zeros) into
 * d[0, n): vectors where whole, scalar at the end. */
static void pairs_row(uint32_t *d, const float *lo, const float *hi, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_si512(d + i, pairs16(lo + i, hi ? hi + i : NULL));
    for (; i < n; i++)
        d[i] = bf16_pair(lo[i], hi ? hi[i] : 0);
}

INLINE vf vdot(vf acc, __m512i a, __m512i w) {
    return (vf)_mm512_dpbf16_ps((__m512)acc, (__m512bh)a, (__m512bh)w);
}

/* acc (+)= A P over kp pairs of k: A's pair kk of row r is the word
 * A[r*rs + kk*ks]; P a bfloat16 panel. */
INLINE void mkb(const int mr, vf acc[MR][4], const uint32_t *A, long rs, long ks, int kp,
                const uint32_t *P, int init) {
    if (init)
        for (int r = 0; r < mr; r++)
            for (int q = 0; q < 4; q++)
                acc[r][q] = vset(0);
    if (mr == 1) { /* a batch of one: two sets of sums hide the latency */
        vf e[4] = {acc[0][0], acc[0][1], acc[0][2], acc[0][3]};
        vf o[4] = {vset(0), vset(0), vset(0), vset(0)};
        int kk = 0;
        for (; kk + 1 < kp; kk += 2, P += 2 * NR) {
            __m512i a = _mm512_set1_epi32((int)A[kk * ks]);
            __m512i b = _mm512_set1_epi32((int)A[(kk + 1) * ks]);
            for (int q = 0; q < 4; q++) {
                e[q] = vdot(e[q], a, _mm512_loadu_si512(P + q * VL));
                o[q] = vdot(o[q], b, _mm512_loadu_si512(P + NR + q * VL));
            }
        }
        if (kk < kp) {
            __m512i a = _mm512_set1_epi32((int)A[kk * ks]);
            for (int q = 0; q < 4; q++)
                e[q] = vdot(e[q], a, _mm512_loadu_si512(P + q * VL));
        }
        for (int q = 0; q < 4; q++)
            acc[0][q] = e[q] + o[q];
        return;
    }
    for (int kk = 0; kk < kp; kk++, P += NR) {
        __m512i w0 = _mm512_loadu_si512(P), w1 = _mm512_loadu_si512(P + VL);
        __m512i w2 = _mm512_loadu_si512(P + 2 * VL), w3 = _mm512_loadu_si512(P + 3 * VL);
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            __m512i a = _mm512_set1_epi32((int)A[r * rs + kk * ks]);
            acc[r][0] = vdot(acc[r][0], a, w0);
            acc[r][1] = vdot(acc[r][1], a, w1);
            acc[r][2] = vdot(acc[r][2], a, w2);
            acc[r][3] = vdot(acc[r][3], a, w3);
        }
    }
}

/* Columns of A converted at a time (on the stack: MR * BKC / 2 words). */
#define BKC 2048
#endif

/* ------------------------------------------------------------------ */
/* Packing. A panel is (K, NR) k-major: panel p holds columns
 * [p*NR, p*NR + NR), zero past N. */

#if SIMD_BF16
/* Sizes are in floats (one float holds one pair). */
static size_t simd_pack_size(int N, int K) { return (size_t)(N + NR - 1) / NR * NR * ((K + 1) / 2); }

/* A row of W is a column of the panel: its pairs are consecutive floats,
 * converted BKC at a time and spread down the column. */
static void simd_pack_nt(float *dst, const float *W, int N, int K) {
    uint32_t *d = (uint32_t *)dst, row[BKC / 2];
    int kp = (K + 1) / 2;
    for (int p = 0; p < (N + NR - 1) / NR; p++)
        for (int j = 0; j < NR; j++) {
            int n = p * NR + j;
            uint32_t *col = d + (size_t)p * kp * NR + j;
            for (int k0 = 0; k0 < K; k0 += BKC) {
                int kn = K - k0 < BKC ? K - k0 : BKC;
                if (n < N)
                    rows_to_bf16(row, 0, 1, W + (size_t)n * K, 0, K, NULL, 0, k0, kn);
                for (int kk = 0; kk < (kn + 1) / 2; kk++)
                    col[(size_t)(k0 / 2 + kk) * NR] = n < N ? row[kk] : 0;
            }
        }
}

/* Rows k and k+1 of W, sixteen columns at a time. */
static void simd_pack_nn(float *dst, const float *W, int K, int N) {
    uint32_t *d = (uint32_t *)dst;
    int kp = (K + 1) / 2;
    for (int p = 0; p < (N + NR - 1) / NR; p++) {
        int n0 = p * NR, n = N - n0 < NR ? N - n0 : NR;
        for (int kk = 0; kk < kp; kk++) {
            uint32_t *o = d + ((size_t)p * kp + kk) * NR;
            const float *lo = W + (size_t)(2 * kk) * N + n0;
            pairs_row(o, lo, 2 * kk + 1 < K ? lo + N : NULL, n);
            memset(o + n, 0, sizeof(uint32_t) * (NR - n));
        }
    }
}
#else
static size_t simd_pack_size(int N, int K) { return (size_t)(N + NR - 1) / NR * NR * K; }

static void simd_pack_nt(float *dst, const float *W, int N, int K) {
    for (int p = 0; p < (N + NR - 1) / NR; p++)
        for (int j = 0; j < NR; j++) { /* a row of W becomes a column of the panel */
            int n = p * NR + j;
            float *d = dst + (size_t)p * K * NR + j;
            for (int k = 0; k < K; k++)
                d[(size_t)k * NR] = n < N ? W[(size_t)n * K + k] : 0;
        }
}

static void simd_pack_nn(float *dst, const float *W, int K, int N) {
    for (int p = 0; p < (N + NR - 1) / NR; p++)
        for (int k = 0; k < K; k++) {
            float *d = dst + ((size_t)p * K + k) * NR;
            for (int j = 0; j < NR; j++) {
                int n = p * NR + j;
                d[j] = n < N ? W[(size_t)k * N + n] : 0;
            }
        }
}
#endif

#if SIMD_BF16
/* Rows [m0, m1) of C, against panels [p0, p1), k from k0 to k0 + kc (k0
 * even): each block of rows is converted once for all the panels. */
static void pgemm_block(const pgemm_job *j, int m0, int m1, int p0, int p1, int k0, int kc) {
    uint32_t abuf[MR * BKC / 2];
    int kpall = (j->K + 1) / 2;
    for (int m = m0, mr; m < m1; m += mr) {
        mr = row_block(m1 - m);
        for (int kb = k0; kb < k0 + kc; kb += BKC) {
            int kn = k0 + kc - kb < BKC ? k0 + kc - kb : BKC, kp = (kn + 1) / 2;
            float beta = kb == 0 ? j->beta : 1;
            rows_to_bf16(abuf, kp, mr, j->A + (size_t)m * j->lda, j->lda, j->K, NULL, 0, kb, kn);
            for (int p = p0; p < p1; p++) {
                const uint32_t *P = (const uint32_t *)j->Wp + ((size_t)p * kpall + kb / 2) * NR;
                int ncols = j->N - p * NR < NR ? j->N - p * NR : NR;
                vf acc[MR][4];
                MK_CASES(mkb(m_, acc, abuf, kp, 1, kp, P, 1));
                store_tile(mr, acc, j->C + (size_t)m * j->ldc + p * NR, j->ldc, ncols, 1, beta);
            }
        }
    }
}
#else
/* Rows [m0, m1) of C, against panels [p0, p1), k from k0 to k0 + kc. */
static void pgemm_block(const pgemm_job *j, int m0, int m1, int p0, int p1, int k0, int kc) {
    float beta = k0 == 0 ? j->beta : 1;
    for (int p = p0; p < p1; p++) {
        const float *P = j->Wp + ((size_t)p * j->K + k0) * NR;
        int ncols = j->N - p * NR < NR ? j->N - p * NR : NR;
        for (int m = m0, mr; m < m1; m += mr) {
            mr = row_block(m1 - m);
            vf acc[MR][4];
            const float *A = j->A + (size_t)m * j->lda + k0;
            MK_CASES(mk(m_, acc, A, j->lda, 1, kc, NULL, 0, 0, 0, P));
            store_tile(mr, acc, j->C + (size_t)m * j->ldc + p * NR, j->ldc, ncols, 1, beta);
        }
    }
}
#endif

#if !SIMD_BF16
/* Work "panels x blocks of rows" for few rows: the M rows cut into blocks
 * by row_block (as a single thread cuts them), the pieces numbered panel by
 * panel. A thread's share (nn_split of panels * blocks) may begin or end
 * inside a panel, so that a few panels (the backward's step product has
 * N/NR: 5 at H = 320, 11 at H = 650) still split evenly; a piece's rows
 * are whole blocks, which row_block cuts again into the same blocks, so
 * every row is computed as one thread would (mk1, for a block of one row,
 * sums in another order). */
typedef struct {
    int M, blocks, i, i1;
} row_share;

static row_share row_share_of(int M, int panels, int tid, int nt) {
    row_share r = {M, 0, 0, 0};
    for (int m = 0; m < M; m += row_block(M - m))
        r.blocks++;
    nn_split(panels * r.blocks, 1, tid, nt, &r.i, &r.i1);
    return r;
}

/* The next piece of the share: panel *p, rows [*m0, *m1); 0 when done. */
static int next_piece(row_share *r, int *p, int *m0, int *m1) {
    if (r->i >= r->i1)
        return 0;
    *p = r->i / r->blocks;
    int b0 = r->i % r->blocks, b1 = b0 + (r->i1 - r->i) < r->blocks ? b0 + (r->i1 - r->i) : r->blocks;
    r->i += b1 - b0;
    int m = 0;
    for (int b = 0; b < b1; b++) {
        if (b == b0)
            *m0 = m;
        m += row_block(r->M - m);
    }
    *m1 = m;
    return 1;
}
#endif

/* Few rows (one step): threads take equal shares of panels x rows. In
 * float each panel is taken KC rows of K at a time, so the block (256 KiB)
 * stays in L2 while every block of rows meets it: a whole panel of the
 * backward's W_hh (K = 4H = 4096, 1 MiB) does not, and was read from L3
 * once per block of rows. bfloat16 panels are half the size and its rows
 * are converted once for all of a thread's panels, so it takes whole
 * panels, all of K at once. Many rows (all steps): threads take rows, in
 * blocks of MC rows and KC columns of A, so each block of A stays in L2
 * while it meets every panel. */
static void pgemm_part(void *arg, int tid, int nt) {
    const pgemm_job *j = arg;
    int panels = (j->N + NR - 1) / NR;
    if (j->M < 4 * MC) {
#if SIMD_BF16
        int p0, p1;
        nn_split(panels, 1, tid, nt, &p0, &p1);
        pgemm_block(j, 0, j->M, p0, p1, 0, j->K);
#else
        row_share r = row_share_of(j->M, panels, tid, nt);
        int p, m0, m1;
        while (next_piece(&r, &p, &m0, &m1))
            for (int k0 = 0; k0 < j->K; k0 += KC)
                pgemm_block(j, m0, m1, p, p + 1, k0, j->K - k0 < KC ? j->K - k0 : KC);
#endif
        return;
    }
    int m0, m1;
    nn_split(j->M, MR, tid, nt, &m0, &m1);
    for (int k0 = 0; k0 < j->K; k0 += KC) {
        int kc = j->K - k0 < KC ? j->K - k0 : KC;
        for (int mb = m0; mb < m1; mb += MC)
            pgemm_block(j, mb, mb + MC < m1 ? mb + MC : m1, 0, panels, k0, kc);
    }
}

static void simd_pgemm(const nn_ctx *ctx, int M, int N, int K, const float *A, int lda,
                       const float *Wp, float beta, float *C, int ldc) {
    pgemm_job j = {M, N, K, lda, ldc, A, Wp, C, beta};
    if ((long)M * N * K < PARALLEL_MIN)
        pgemm_part(&j, 0, 1);
    else
        nn_pool_run(ctx->pool, pgemm_part, &j);
}


#if SIMD_BF16
static size_t simd_cell_pack_size(int H, int K1, int K2) {
    return (size_t)(H + VL - 1) / VL * NR * ((K1 + K2 + 1) / 2);
}

/* Each panel column is the row [W_ih | W_hh] of one gate and unit,
 * converted BKC values at a time (rows_to_bf16 joins the two) and spread
 * down the column. */
static void simd_cell_pack(float *dst, const float *w_ih, const float *w_hh, int H, int K1,
                           int K2) {
    uint32_t *d = (uint32_t *)dst, row[BKC / 2];
    int K = K1 + K2, kp = (K + 1) / 2;
    for (int p = 0; p < (H + VL - 1) / VL; p++)
        for (int q = 0; q < 4; q++)
            for (int lane = 0; lane < VL; lane++) {
                int u = p * VL + lane;
                uint32_t *col = d + (size_t)p * kp * NR + q * VL + lane;
                const float *r1 = u < H && K1 ? w_ih + (size_t)(q * H + u) * K1 : NULL;
                const float *r2 = u < H ? w_hh + (size_t)(q * H + u) * K2 : NULL;
                for (int k0 = 0; k0 < K; k0 += BKC) {
                    int kn = K - k0 < BKC ? K - k0 : BKC;
                    if (u < H)
                        rows_to_bf16(row, 0, 1, r1, 0, K1, r2, 0, k0, kn);
                    for (int kk = 0; kk < (kn + 1) / 2; kk++)
                        col[(size_t)(k0 / 2 + kk) * NR] = u < H ? row[kk] : 0;
                }
            }
}
#else
static size_t simd_cell_pack_size(int H, int K1, int K2) {
    return (size_t)(H + VL - 1) / VL * NR * (K1 + K2);
}

static void simd_cell_pack(float *dst, const float *w_ih, const float *w_hh, int H, int K1,
                           int K2) {
    int K = K1 + K2;
    for (int p = 0; p < (H + VL - 1) / VL; p++)
        for (int q = 0; q < 4; q++)
            for (int lane = 0; lane < VL; lane++) { /* a row of [W_ih | W_hh] */
                int u = p * VL + lane;
                float *d = dst + (size_t)p * K * NR + q * VL + lane;
                const float *r1 = u < H && K1 ? w_ih + (size_t)(q * H + u) * K1 : NULL;
                const float *r2 = u < H ? w_hh + (size_t)(q * H + u) * K2 : NULL;
                for (int k = 0; k < K1; k++)
                    d[(size_t)k * NR] = r1 ? r1[k] : 0;
                for (int k = 0; k < K2; k++)
                    d[(size_t)(K1 + k) * NR] = r2 ? r2[k] : 0;
            }
}
#endif

#if SIMD_BF16
/* Each block of rows of [x | hp] is converted once for all of this
 * thread's panels; a K beyond BKC (rare) is converted per panel, a block
 * of columns at a time, the sums carried in registers. */
static void cell_forward_part(void *arg, int tid, int nt) {
    const nn_cell_fwd *a = arg;
    int panels = (a->H + VL - 1) / VL, p0, p1;
    int K = a->K1 + a->K2, kpall = (K + 1) / 2;
    uint32_t abuf[MR * BKC / 2];
    nn_split(panels, 1, tid, nt, &p0, &p1);
    for (int m = 0, mr; m < a->M; m += mr) {
        mr = row_block(a->M - m);
        const float *x = a->K1 ? a->x + (size_t)m * a->ldx : NULL;
        const float *hp = a->hp + (size_t)m * a->K2;
        if (K <= BKC)
            rows_to_bf16(abuf, kpall, mr, x, a->ldx, a->K1, hp, a->K2, 0, K);
        for (int p = p0; p < p1; p++) {
            const uint32_t *P = (const uint32_t *)a->w + (size_t)p * kpall * NR;
            int u = p * VL, n = a->H - u < VL ? a->H - u : VL;
            vf acc[MR][4];
            if (K <= BKC) {
                MK_CASES(mkb(m_, acc, abuf, kpall, 1, kpall, P, 1));
            } else {
                for (int kb = 0; kb < K; kb += BKC) {
                    int kn = K - kb < BKC ? K - kb : BKC, kp = (kn + 1) / 2;
                    rows_to_bf16(abuf, kp, mr, x, a->ldx, a->K1, hp, a->K2, kb, kn);
                    MK_CASES(mkb(m_, acc, abuf, kp, 1, kp, P + (size_t)kb / 2 * NR, kb == 0));
                }
            }
            cell_epilogue(a, m, mr, acc, u, n);
        }
    }
    int u0 = p0 * VL, u1 = p1 * VL < a->H ? p1 * VL : a->H;
    if (u1 > u0)
        prefetch_units(a->gin_next, (size_t)4 * a->H, a->M_next, a->H, 4, u0, u1 - u0);
}
#else
/* Threads take equal shares of panels x rows (next_piece). */
static void cell_forward_part(void *arg, int tid, int nt) {
    const nn_cell_fwd *a = arg;
    int panels = (a->H + VL - 1) / VL;
    int K = a->K1 + a->K2;
    row_share r = row_share_of(a->M, panels, tid, nt);
    int p, m0, m1;
    while (next_piece(&r, &p, &m0, &m1)) {
        const float *P = a->w + (size_t)p * K * NR;
        int u = p * VL, n = a->H - u < VL ? a->H - u : VL;
        for (int m = m0, mr; m < m1; m += mr) {
            mr = row_block(a->M - m);
            vf acc[MR][4];
            const float *x = a->K1 ? a->x + (size_t)m * a->ldx : NULL;
            const float *hp = a->hp + (size_t)m * a->K2;
            MK_CASES(mk(m_, acc, x, a->ldx, 1, a->K1, hp, a->K2, 1, a->K2, P));
            cell_epilogue(a, m, mr, acc, u, n);
        }
        int next = (a->M_next < m1 ? a->M_next : m1) - m0; /* the same rows, next step */
        if (a->gin_next && next > 0)
            prefetch_units(a->gin_next + (size_t)m0 * 4 * a->H, (size_t)4 * a->H, next, a->H, 4,
                           u, n);
    }
}
#endif

static void simd_cell_forward(const nn_ctx *ctx, const nn_cell_fwd *a) {
    if ((long)a->M * 4 * a->H * (a->K1 + a->K2) < PARALLEL_MIN)
        cell_forward_part((void *)a, 0, 1);
    else
        nn_pool_run(ctx->pool, cell_forward_part, (void *)a);
}

typedef struct {
    const nn_cell_bwd *a;
    nn_pool *pool;
} cell_bwd_job;

static void cell_backward_job(void *arg, int tid, int nt) {
    const cell_bwd_job *j = arg;
    const nn_cell_bwd *a = j->a;
    int u0, u1;
    nn_split(a->H, VL, tid, nt, &u0, &u1);
    cell_backward_pointwise(a, u0, u1);
    nn_pool_barrier(j->pool, tid, nt); /* dhp needs every unit's gradient */
    /* while the product runs, fetch what this thread's units need next */
    prefetch_units(a->g_next, (size_t)4 * a->H, a->M_next, a->H, 4, u0, u1 - u0);
    prefetch_units(a->cp_next, (size_t)a->H, a->M_next, a->H, 1, u0, u1 - u0);
    prefetch_units(a->dy_next, (size_t)a->ldy, a->M_next, a->H, 1, u0, u1 - u0);
    pgemm_job pj = {a->M, a->Hout, 4 * a->H, 4 * a->H, a->Hout, a->g, a->w, a->dhp, 0};
    pgemm_part(&pj, tid, nt);
}

static void simd_cell_backward(const nn_ctx *ctx, const nn_cell_bwd *a) {
    cell_bwd_job j = {a, ctx->pool};
    if ((long)a->M * 4 * a->H * a->Hout < PARALLEL_MIN)
        cell_backward_job(&j, 0, 1);
    else
        nn_pool_run(ctx->pool, cell_backward_job, &j);
}

#if SIMD_BF16
/* Micro-panels [p0, p1) of op(B) rows [k0, k0+kc) into dst as bfloat16
 * pair panels ((kc+1)/2, NR), zero past the block's last column and row;
 * dst holds panels from pbase on. */
static void pack_b(const gemm_job *j, float *dst, int pbase, int k0, int kc, int p0, int p1) {
    int kp = (kc + 1) / 2;
    uint32_t row[KC / 2 + 1];
    for (int p = p0; p < p1; p++) {
        const gemm_cols *cb = panel_cols(j, p);
        int c0 = (p - cb->p0) * NR, n = cb->N - c0 < NR ? cb->N - c0 : NR;
        uint32_t *d = (uint32_t *)dst + (size_t)(p - pbase) * kp * NR;
        if (!cb->tB) { /* rows k and k+1 of B, sixteen columns at a time */
            for (int kk = 0; kk < kp; kk++) {
                const float *lo = cb->B + (size_t)(k0 + 2 * kk) * cb->ldb + c0;
                pairs_row(d + (size_t)kk * NR, lo, 2 * kk + 1 < kc ? lo + cb->ldb : NULL, n);
                memset(d + (size_t)kk * NR + n, 0, sizeof(uint32_t) * (NR - n));
            }
        } else { /* a row of B is a column: consecutive pairs */
            for (int c = 0; c < NR; c++) {
                if (c < n)
                    rows_to_bf16(row, 0, 1, cb->B + (size_t)(c0 + c) * cb->ldb, 0, k0 + kc, NULL,
                                 0, k0, kc);
                for (int kk = 0; kk < kp; kk++)
                    d[(size_t)kk * NR + c] = c < n ? row[kk] : 0;
            }
        }
    }
}

/* op(A)[m0..m0+mc, k0..k0+kc) for A transposed (A is (K, M)) as pairs,
 * pair-major: word [kk][m], so that each row of A is read in order and
 * converted sixteen values at a time. */
static void pack_at(const gemm_job *j, uint32_t *dst, int m0, int mc, int k0, int kc) {
    for (int kk = 0; kk < (kc + 1) / 2; kk++) {
        const float *lo = j->A + (size_t)(k0 + 2 * kk) * j->lda + m0;
        pairs_row(dst + (size_t)kk * mc, lo, 2 * kk + 1 < kc ? lo + j->lda : NULL, mc);
    }
}

static void gemm_part(void *arg, int tid, int nt) {
    const gemm_job *j = arg;
    uint32_t *apack = (uint32_t *)(j->apack + (size_t)tid * MC * (j->K < KC ? j->K : KC));
    int m0, m1;
    nn_split(j->M, MR, tid, nt, &m0, &m1);
    for (int pb = 0; pb < j->panels; pb += NC / NR) {
        int pe = j->panels - pb < NC / NR ? j->panels : pb + NC / NR;
        for (int k0 = 0; k0 < j->K; k0 += KC) {
            int kc = j->K - k0 < KC ? j->K - k0 : KC, kp = (kc + 1) / 2;
            int p0, p1;
            nn_split(pe - pb, 1, tid, nt, &p0, &p1);
            pack_b(j, j->bpack, pb, k0, kc, pb + p0, pb + p1);
            nn_pool_barrier(j->pool, tid, nt);
            float beta = k0 == 0 ? j->beta : 1;
            for (int mb = m0; mb < m1; mb += MC) {
                int mc = m1 - mb < MC ? m1 - mb : MC;
                long rs = j->tA ? 1 : kp, ks = j->tA ? mc : 1;
                if (j->tA)
                    pack_at(j, apack, mb, mc, k0, kc);
                else
                    rows_to_bf16(apack, kp, mc, j->A + (size_t)mb * j->lda, j->lda, j->K, NULL, 0,
                                 k0, kc);
                for (int p = pb; p < pe; p++) {
                    const gemm_cols *cb = panel_cols(j, p);
                    const uint32_t *Bp = (const uint32_t *)j->bpack + (size_t)(p - pb) * kp * NR;
                    int c0 = (p - cb->p0) * NR, n = cb->N - c0 < NR ? cb->N - c0 : NR;
                    for (int m = 0; m < mc; m += MR) {
                        int mr = mc - m < MR ? mc - m : MR;
                        vf acc[MR][4];
                        MK_CASES(mkb(m_, acc, apack + m * rs, rs, ks, kp, Bp, 1));
                        store_tile(mr, acc, cb->C + (size_t)(mb + m) * cb->ldc + c0, cb->ldc, n,
                                   j->alpha, beta);
                    }
                }
            }
            nn_pool_barrier(j->pool, tid, nt); /* the B pack is reused */
        }
    }
}
#else
/* Micro-panels [p0, p1) of op(B) rows [k0, k0+kc) into dst, each (kc, NR),
 * zero past the block's last column; dst holds panels from pbase on. */
static void pack_b(const gemm_job *j, float *dst, int pbase, int k0, int kc, int p0, int p1) {
    for (int p = p0; p < p1; p++) {
        const gemm_cols *cb = panel_cols(j, p);
        int c0 = (p - cb->p0) * NR, n = cb->N - c0 < NR ? cb->N - c0 : NR;
        float *d = dst + (size_t)(p - pbase) * kc * NR;
        if (!cb->tB) {
            for (int k = 0; k < kc; k++) {
                memcpy(d + (size_t)k * NR, cb->B + (size_t)(k0 + k) * cb->ldb + c0,
                       sizeof(float) * n);
                memset(d + (size_t)k * NR + n, 0, sizeof(float) * (NR - n));
            }
        } else {
            for (int c = 0; c < NR; c++) {
                const float *b = cb->B + (size_t)(c0 + c) * cb->ldb + k0;
                for (int k = 0; k < kc; k++)
                    d[(size_t)k * NR + c] = c < n ? b[k] : 0;
            }
        }
    }
}

/* op(A)[m0..m0+mc, k0..k0+kc) into micro-panels of MR rows, k-major, for
 * A transposed: the MR values of one k are contiguous in A already, so each
 * row of A is read once, in order. */
static void pack_at(const gemm_job *j, float *dst, int m0, int mc, int k0, int kc) {
    for (int k = 0; k < kc; k++) {
        const float *a = j->A + (size_t)(k0 + k) * j->lda + m0;
        for (int m = 0; m < mc; m += MR) {
            float *d = dst + (size_t)m * kc + (size_t)k * MR;
            if (mc - m >= MR)
                memcpy(d, a + m, sizeof(float) * MR);
            else
                for (int r = 0; r < MR; r++)
                    d[r] = m + r < mc ? a[m + r] : 0;
        }
    }
}

static void gemm_part(void *arg, int tid, int nt) {
    const gemm_job *j = arg;
    float *apack = j->apack + (size_t)tid * MC * (j->K < KC ? j->K : KC);
    int m0, m1;
    nn_split(j->M, MR, tid, nt, &m0, &m1);
    for (int pb = 0; pb < j->panels; pb += NC / NR) {
        int pe = j->panels - pb < NC / NR ? j->panels : pb + NC / NR;
        for (int k0 = 0; k0 < j->K; k0 += KC) {
            int kc = j->K - k0 < KC ? j->K - k0 : KC;
            int p0, p1;
            nn_split(pe - pb, 1, tid, nt, &p0, &p1);
            pack_b(j, j->bpack, pb, k0, kc, pb + p0, pb + p1);
            nn_pool_barrier(j->pool, tid, nt);
            float beta = k0 == 0 ? j->beta : 1;
            for (int mb = m0; mb < m1; mb += MC) {
                int mc = m1 - mb < MC ? m1 - mb : MC;
                if (j->tA) /* columns of A: pack them into rows of MR */
                    pack_at(j, apack, mb, mc, k0, kc);
                for (int p = pb; p < pe; p++) {
                    const gemm_cols *cb = panel_cols(j, p);
                    const float *Bp = j->bpack + (size_t)(p - pb) * kc * NR;
                    int c0 = (p - cb->p0) * NR, n = cb->N - c0 < NR ? cb->N - c0 : NR;
                    for (int m = 0; m < mc; m += MR) {
                        int mr = mc - m < MR ? mc - m : MR;
                        vf acc[MR][4];
                        const float *Ap = j->tA ? apack + (size_t)m * kc
                                                : j->A + (size_t)(mb + m) * j->lda + k0;
                        long rs = j->tA ? 1 : j->lda, ks = j->tA ? MR : 1;
                        MK_CASES(mk(m_, acc, Ap, rs, ks, kc, NULL, 0, 0, 0, Bp));
                        store_tile(mr, acc, cb->C + (size_t)(mb + m) * cb->ldc + c0, cb->ldc, n,
                                   j->alpha, beta);
                    }
                }
            }
            nn_pool_barrier(j->pool, tid, nt); /* the B pack is reused */
        }
    }
}
#endif

static void run_gemm(const nn_ctx *ctx, gemm_job *j) {
    j->panels = 0;
    for (int i = 0; i < j->ncols; i++) {
        j->cols[i].p0 = j->panels;
        j->panels += (j->cols[i].N + NR - 1) / NR;
    }
    double work = (double)j->M * j->panels * NR * j->K;
    int nt = work < PARALLEL_MIN ? 1 : nn_pool_size(ctx->pool);
    size_t kmax = j->K < KC ? j->K : KC, nmax = j->panels * NR < NC ? j->panels * NR : NC;
    size_t nb = kmax * nmax, na = MC * kmax * nt;
    float *buf = nn_scratch_get(ctx, sizeof(float) * (nb + na));
    if (!buf) { /* out of memory: the reference needs none */
        for (int i = 0; i < j->ncols; i++) {
            const gemm_cols *c = &j->cols[i];
            nn_kernels_ref.gemm(ctx, j->tA, c->tB, j->M, c->N, j->K, j->alpha, j->A, j->lda, c->B,
                                c->ldb, j->beta, c->C, c->ldc);
        }
        return;
    }
    j->bpack = buf;
    j->apack = buf + nb;
    j->pool = ctx->pool;
    if (nt == 1)
        gemm_part(j, 0, 1);
    else
        nn_pool_run(ctx->pool, gemm_part, j);
    nn_scratch_release(ctx, buf);
}

static void simd_gemm(const nn_ctx *ctx, int tA, int tB, int M, int N, int K, float alpha,
                      const float *A, int lda, const float *B, int ldb, float beta, float *C,
                      int ldc) {
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) {
        for (int i = 0; i < M; i++)
            for (int n = 0; n < N; n++)
                C[(size_t)i * ldc + n] = beta == 0 ? 0 : beta * C[(size_t)i * ldc + n];
        return;
    }
    gemm_job j = {.tA = tA, .M = M, .K = K, .lda = lda, .alpha = alpha, .beta = beta, .A = A,
                  .cols = {{B, C, N, ldb, ldc, tB, 0}}, .ncols = 1};
    run_gemm(ctx, &j);
}

static void simd_gemm_tn2(const nn_ctx *ctx, int M, int K, const float *A, int lda, int N1,
                          const float *B1, int ldb1, float *C1, int ldc1, int N2, const float *B2,
                          int ldb2, float *C2, int ldc2) {
    if (M <= 0 || K <= 0)
        return;
    gemm_job j = {.tA = 1, .M = M, .K = K, .lda = lda, .alpha = 1, .beta = 1, .A = A,
                  .cols = {{B1, C1, N1, ldb1, ldc1, 0, 0}, {B2, C2, N2, ldb2, ldc2, 0, 0}},
                  .ncols = 2};
    run_gemm(ctx, &j);
}

/* ------------------------------------------------------------------ */
/* Softmax rows (the decoder's loss): vectorised exponentials with float
 * sums, rows split across the threads. */

typedef struct {
    float *out;
    const float *in;
    const int32_t *targets;
    int N, C, ignore;
    float scale;
} rows_job;

static void log_softmax_part(void *arg, int tid, int nt) {
    const rows_job *j = arg;
    int r0, r1, C = j->C;
    nn_split(j->N, 1, tid, nt, &r0, &r1);
    for (int n = r0; n < r1; n++) {
        const float *z = j->in + (size_t)n * C;
        float *o = j->out + (size_t)n * C;
        float t[VL], mx = -INFINITY, sum = 0;
        int c = 0;
        vf m = vset(-INFINITY), s = vset(0);
        for (; c + VL <= C; c += VL)
            m = vmax(m, vload(z + c));
        vstore(t, m);
        for (int i = 0; i < VL; i++)
            mx = t[i] > mx ? t[i] : mx;
        for (; c < C; c++)
            mx = z[c] > mx ? z[c] : mx;
        for (c = 0; c + VL <= C; c += VL)
            s += vexp(vload(z + c) - mx);
        if (c < C)
            vstore_n(t, vexp(vload_n(z + c, C - c) - mx), C - c);
        for (int i = 0; i < C - c; i++)
            sum += t[i];
        vstore(t, s);
        for (int i = 0; i < VL; i++)
            sum += t[i];
        float lse = mx + logf(sum);
        for (c = 0; c + VL <= C; c += VL)
            vstore(o + c, vload(z + c) - lse);
        for (; c < C; c++)
            o[c] = z[c] - lse;
    }
}

static void simd_log_softmax(const nn_ctx *ctx, float *out, const float *z, int N, int C) {
    rows_job j = {out, z, NULL, N, C, 0, 0};
    if ((long)N * C < PARALLEL_MIN)
        log_softmax_part(&j, 0, 1);
    else
        nn_pool_run(ctx->pool, log_softmax_part, &j);
}

static void xent_backward_part(void *arg, int tid, int nt) {
    const rows_job *j = arg;
    int r0, r1, C = j->C;
    nn_split(j->N, 1, tid, nt, &r0, &r1);
    for (int n = r0; n < r1; n++) {
        if (j->targets[n] == j->ignore)
            continue;
        const float *lp = j->in + (size_t)n * C;
        float *d = j->out + (size_t)n * C;
        int c = 0;
        for (; c + VL <= C; c += VL)
            vstore(d + c, vload(d + c) + j->scale * vexp(vload(lp + c)));
        if (c < C)
            vstore_n(d + c, vload_n(d + c, C - c) + j->scale * vexp(vload_n(lp + c, C - c)), C - c);
        d[j->targets[n]] -= j->scale;
    }
}

static void simd_xent_backward(const nn_ctx *ctx, float *d, const float *logp,
                               const int32_t *targets, int N, int C, int ignore, float scale) {
    rows_job j = {d, logp, targets, N, C, ignore, scale};
    if ((long)N * C < PARALLEL_MIN)
        xent_backward_part(&j, 0, 1);
    else
        nn_pool_run(ctx->pool, xent_backward_part, &j);
}

const nn_kernels SIMD_TABLE = {
    .name = SIMD_NAME,
    .gemm = simd_gemm,
    .gemm_tn2 = simd_gemm_tn2,
    .pack_size = simd_pack_size,
    .pack_nt = simd_pack_nt,
    .pack_nn = simd_pack_nn,
    .pgemm = simd_pgemm,
    .cell_pack_size = simd_cell_pack_size,
    .cell_pack = simd_cell_pack,
    .cell_forward = simd_cell_forward,
    .cell_backward = simd_cell_backward,
    .log_softmax = simd_log_softmax,
    .xent_backward = simd_xent_backward,
};
