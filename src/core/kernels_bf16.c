/*
 * kernels_bf16.c - the products of the avx512bf16 set: bfloat16 multiplies
 * with float sums (VDPBF16PS), compiled only for avx512bf16. The set is
 * chosen only on request: it is not PyTorch's float arithmetic.
 *
 * VDPBF16PS multiplies pairs of bfloat16 values and adds both products to a
 * float lane: twice the products per instruction of an FMA, and half the
 * bytes of weights to stream. Its panels hold pairs of k (k, k+1) of each
 * column in one 32-bit word; A's rows are rounded to bfloat16 (to nearest
 * even) a block at a time on the stack, once for all of a thread's panels.
 * Everything else stays float: the sums, the gates and the state (the
 * cell's pointwise parts in simd.h), and the loss, which the table at the
 * end takes from kernels_f32.c compiled for avx512bf16.
 */
#include "simd.h"

#include <immintrin.h>

#if !SIMD_BF16
#error "kernels_bf16.c is the avx512bf16 set: compile it with -DKERNEL_ISA=avx512bf16"
#endif

/* ------------------------------------------------------------------ */
/* bfloat16 pairs. A's rows are converted to pair words as the panels are
 * (simd.h), so one 32-bit broadcast of A meets four panel vectors in four
 * VDPBF16PS. */

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

/* ------------------------------------------------------------------ */
/* Packing: ((K+1)/2, NR) panels of pairs (simd.h). Sizes are in floats
 * (one float holds one pair). */

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

/* Few rows (one step): threads take equal shares of the panels, whole, all
 * of K at once: bfloat16 panels are half the size of float ones, and the
 * rows are converted once for all of a thread's panels. Many rows (all
 * steps): threads take rows, in blocks of MC rows and KC columns of A, so
 * each block of A stays in L2 while it meets every panel. */
static void pgemm_part(void *arg, int tid, int nt) {
    const pgemm_job *j = arg;
    int panels = (j->N + NR - 1) / NR;
    if (j->M < 4 * MC) {
        int p0, p1;
        nn_split(panels, 1, tid, nt, &p0, &p1);
        pgemm_block(j, 0, j->M, p0, p1, 0, j->K);
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

/* ------------------------------------------------------------------ */
/* The cell: panels of the four gates of VL units (simd.h), as pairs. */

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

/* Each block of rows of [x | hp] is converted once for all of this
 * thread's panels; a K beyond BKC (rare) is converted per panel, a block
 * of columns at a time, the sums carried in registers. */
static void cell_forward_part(void *arg, int tid, int nt) {
    const nn_cell_fwd *a = arg;
    int panels = (a->H + VL - 1) / VL, p0, p1;
    int K = a->K1 + a->K2, kpall = (K + 1) / 2;
    uint32_t abuf[MR * BKC / 2];
    nn_split(panels, 1, tid, nt, &p0, &p1);
    int opts = nn_cell_opts_on(&a->opt); /* ONNX's options: the variant epilogue */
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
            if (opts)
                cell_epilogue_opts(a, m, mr, acc, u, n);
            else
                cell_epilogue(a, m, mr, acc, u, n);
        }
    }
    int u0 = p0 * VL, u1 = p1 * VL < a->H ? p1 * VL : a->H;
    if (u1 > u0)
        prefetch_units(a->gin_next, (size_t)4 * a->H, a->M_next, a->H, 4, u0, u1 - u0);
}

/* ------------------------------------------------------------------ */
/* The general product (simd.h), as pairs. */

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

/* ------------------------------------------------------------------ */
/* The entry points over pgemm_part, cell_forward_part and gemm_part. */
#include "simd_entry.h"

const nn_kernels nn_kernels_avx512bf16 = {
    .name = "avx512bf16",
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
    /* float: kernels_f32.c compiled for avx512bf16 */
    .log_softmax = nn_log_softmax_avx512bf16,
    .xent_backward = nn_xent_backward_avx512bf16,
};
