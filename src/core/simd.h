/*
 * simd.h - what the fast kernels of both precisions share: kernels_f32.c
 * (the float kernel sets) and kernels_bf16.c (the bfloat16 products of the
 * avx512bf16 set). Each is compiled once per instruction set it serves,
 * with KERNEL_ISA set to generic, avx2, avx512 or avx512bf16 (see the
 * Makefile); this header turns that into the vector width VL, the rows of
 * a tile MR, and the set's name and table.
 *
 * One microkernel design does all the multiplying, in both precisions: a
 * tile of C, MR rows by NR = 4 vectors, accumulates A (MR, K) B with A read
 * in place (broadcast one value at a time) and B packed into panels of NR
 * columns, k-major, so each k (each pair of k in bfloat16) is 4 vector
 * loads.
 *   - pgemm: products with few rows and weights packed once (one step).
 *   - cell_forward: the same product against W_hh packed so that a panel
 *     holds the four gates (i, f, g, o) of VL hidden units; the gate
 *     nonlinearities and the state update then run on the accumulators,
 *     still in registers. Threads take disjoint pieces (panels of units,
 *     blocks of rows), so a step needs no synchronisation inside.
 *   - gemm: packs B panels block by block, for builds without a BLAS.
 *
 * Here: the vector type, its loads and stores, the polynomial exp, sigmoid
 * and tanh; what drives a microkernel (blocks of rows, the dispatch on a
 * tile's rows, the store of a tile); the cache blocking and the jobs the
 * products run as; the cell's pointwise parts, float in both precisions,
 * which each file's cell must inline (the accumulators stay in registers).
 * All of it is static: every compile has its own copy, built for its
 * instruction set. The entry points that run the products on the threads
 * are in simd_entry.h.
 */
#ifndef LSTM_SIMD_H
#define LSTM_SIMD_H

#include "nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if !defined(KERNEL_ISA)
#error "compile with -DKERNEL_ISA=generic|avx2|avx512|avx512bf16"
#endif

#define generic 1
#define avx2 2
#define avx512 3
#define avx512bf16 4
#if KERNEL_ISA == avx512
#define VL 16
#define MR 6
#elif KERNEL_ISA == avx512bf16
#define VL 16
#define MR 6
#define SIMD_BF16 1 /* bfloat16 products (kernels_bf16.c) */
#elif KERNEL_ISA == avx2
#define VL 8
#define MR 3
#elif KERNEL_ISA == generic
#define VL 4
#define MR 2
#else
#error "KERNEL_ISA is one of generic, avx2, avx512, avx512bf16"
#endif
#undef generic
#undef avx2
#undef avx512
#undef avx512bf16
#ifndef SIMD_BF16
#define SIMD_BF16 0
#endif

/* The set's name ("avx2"), its table (nn_kernels_avx2), and SIMD_FN(f),
 * f's name in this compile (f_avx2), for what one file gives another. */
#define SIMD_STR_(x) #x
#define SIMD_STR(x) SIMD_STR_(x)
#define SIMD_CAT_(a, b) a##b
#define SIMD_CAT(a, b) SIMD_CAT_(a, b)
#define SIMD_NAME SIMD_STR(KERNEL_ISA)
#define SIMD_TABLE SIMD_CAT(nn_kernels_, KERNEL_ISA)
#define SIMD_FN(f) SIMD_CAT(f##_, KERNEL_ISA)

/* On the static functions below that not every compile calls (the
 * avx512bf16 compile of kernels_f32.c has only the loss kernels). */
#define MAYBE_UNUSED __attribute__((unused))

#define NR (4 * VL) /* columns of a panel: four vectors */

typedef float vf __attribute__((vector_size(VL * 4)));
typedef int32_t vi __attribute__((vector_size(VL * 4)));

#define INLINE static inline __attribute__((always_inline))

INLINE vf vload(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}
INLINE void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }
/* A broadcast. ((vf){0} + a would cost an addition: 0 + -0 is +0.) */
#if VL == 16
#define VSET(a) {a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a}
#elif VL == 8
#define VSET(a) {a, a, a, a, a, a, a, a}
#else
#define VSET(a) {a, a, a, a}
#endif
INLINE vf vset(float a) { return (vf)VSET(a); }
/* Loads n < VL floats, the rest zero. */
INLINE vf vload_n(const float *p, int n) {
    float t[VL] = {0};
    memcpy(t, p, sizeof(float) * n);
    return vload(t);
}
INLINE void vstore_n(float *p, vf v, int n) {
    float t[VL];
    vstore(t, v);
    memcpy(p, t, sizeof(float) * n);
}
INLINE vf vsel(vi mask, vf a, vf b) { return (vf)((mask & (vi)a) | (~mask & (vi)b)); }
INLINE vf vmin(vf a, vf b) { return vsel(a < b, a, b); }
INLINE vf vmax(vf a, vf b) { return vsel(a > b, a, b); }

/* e^x for x clamped to [-87.3, 88.37], about 1 ulp: e^x = 2^n e^r with
 * |r| <= ln2/2 and Cephes' polynomial for e^r. NaN and the infinities go
 * on as in libm (NaN, 0, inf): the clamp keeps a NaN (vmax(lo, x) and
 * vmin(hi, .) return their second operand when a comparison with NaN
 * fails), and the infinities are put back after it. A NaN clamped away
 * would have made sigmoid(NaN) = 1 and hidden it. */
INLINE vf vexp(vf x) {
    vf in = x;
    x = vmin(vset(88.37f), vmax(vset(-87.3f), x));
    vf t = x * 1.44269504088896341f;
    vf nf = (t + 12582912.0f) - 12582912.0f; /* round to nearest */
    vf r = x - nf * 0.693359375f;
    r = r - nf * -2.12194440e-4f;
    vf p = vset(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    vi n = __builtin_convertvector(nf, vi);
    vf e = p * (vf)((n + 127) << 23);
    e = vsel(in == vset(-INFINITY), vset(0), e);
    return vsel(in == vset(INFINITY), vset(INFINITY), e);
}

INLINE vf vsigmoid(vf x) { return 1.0f / (1.0f + vexp(-x)); }

/* tanh: an odd polynomial near zero (Cephes), 1 - 2/(e^2|x| + 1) beyond. */
INLINE vf vtanh(vf x) {
    vf ax = (vf)((vi)x & 0x7fffffff);
    vf z = x * x;
    vf small = vset(-5.70498872745e-3f);
    small = small * z + 2.06390887954e-2f;
    small = small * z - 5.37397155531e-2f;
    small = small * z + 1.33314422036e-1f;
    small = small * z - 3.33332819422e-1f;
    small = small * z * x + x;
    vf big = 1.0f - 2.0f / (vexp(2.0f * ax) + 1.0f);
    big = (vf)((vi)big | ((vi)x & (int32_t)0x80000000)); /* sign of x */
    return vsel(ax < 0.625f, small, big);
}

/* ------------------------------------------------------------------ */
/* Driving a microkernel (kernels_f32.c's mk, kernels_bf16.c's mkb): a
 * tile's rows, the call for each row count, the store of the sums. */

/* The rows of the next tile: blocks as even as possible, at most MR, so
 * that 32 rows are 6+6+5+5+5+5 rather than 6+6+6+6+6+2. */
static inline int row_block(int remaining) {
    int blocks = (remaining + MR - 1) / MR;
    return (remaining + blocks - 1) / blocks;
}

/* Dispatches a row count 1..MR to the microkernel compiled for it. */
#define MK_CASES(body)                                                                            \
    switch (mr) {                                                                                 \
    case 1: { const int m_ = 1; body; } break;                                                    \
    case 2: { const int m_ = 2; body; } break;                                                    \
    case 3: { const int m_ = MR >= 3 ? 3 : 1; body; } break;                                      \
    case 4: { const int m_ = MR >= 4 ? 4 : 1; body; } break;                                      \
    case 5: { const int m_ = MR >= 5 ? 5 : 1; body; } break;                                      \
    default: { const int m_ = MR; body; } break;                                                  \
    }

/* Stores rows of acc into C (columns c0 .. c0+ncols of a panel), C = acc + beta C. */
static MAYBE_UNUSED void store_tile(int mr, vf acc[MR][4], float *C, long ldc, int ncols,
                                    float alpha, float beta) {
    for (int r = 0; r < mr; r++)
        for (int q = 0; q < 4; q++) {
            int n = ncols - q * VL;
            if (n <= 0)
                break;
            float *c = C + r * ldc + q * VL;
            vf v = acc[r][q] * alpha;
            if (n >= VL) {
                if (beta != 0)
                    v += beta * vload(c);
                vstore(c, v);
            } else {
                if (beta != 0)
                    v += beta * vload_n(c, n);
                vstore_n(c, v, n);
            }
        }
}

/* ------------------------------------------------------------------ */
/* Packed weights. A panel holds NR columns of the right-hand matrix,
 * k-major: panel p holds columns [p*NR, p*NR + NR), zero past N. In float
 * it is (K, NR) floats; in bfloat16 ((K+1)/2, NR) 32-bit words, word
 * [kk][col] holding column col's values at k = 2kk (low half) and 2kk + 1
 * (high half, zero past K). Packed sizes are counted in floats (one float
 * holds one pair). */

/* Cache blocking of the large products: KC columns of A by MC rows stay in
 * L2; a KC x NC block of packed B is shared by the threads (see gemm). */
#ifndef KC
#define KC 1024
#endif
#ifndef MC
#define MC (16 * MR)
#endif
#ifndef NC
#define NC 2048 /* wide: the weight gradients' A (dG, all steps) packed once */
#endif

/* Work below this many multiply-adds is done on the calling thread. */
#define PARALLEL_MIN (1 << 15)

typedef struct {
    int M, N, K, lda, ldc;
    const float *A, *Wp;
    float *C;
    float beta;
} pgemm_job;

/* A general product, blocked for the caches as BLIS does: op(B) is packed
 * KC x NC at a time into NR-column micro-panels (shared by the threads,
 * kept in L2), op(A) MC x KC at a time into MR-row micro-panels (private to
 * each thread); each micro-panel of B then stays in L1 while the
 * microkernel runs down the rows of the A block. Threads split the rows. */

/* One block of columns of C: C (M, N) += A op(B). A product may have two,
 * sharing A (the two weight gradients of one LSTM direction). */
typedef struct {
    const float *B;
    float *C;
    int N, ldb, ldc, tB;
    int p0; /* its first micro-panel in the job's numbering */
} gemm_cols;

typedef struct {
    int tA, M, K, lda;
    float alpha, beta;
    const float *A;
    gemm_cols cols[2];
    int ncols, panels; /* column blocks; micro-panels over all of them */
    float *bpack;      /* min(K, KC) * min(N, NC) */
    float *apack;      /* per thread: MC * min(K, KC) */
    nn_pool *pool;
} gemm_job;

static MAYBE_UNUSED const gemm_cols *panel_cols(const gemm_job *j, int p) {
    return j->ncols > 1 && p >= j->cols[1].p0 ? &j->cols[1] : &j->cols[0];
}

/* ------------------------------------------------------------------ */
/* The cell. Panel p holds units [p*VL, p*VL + VL) of all four gates:
 * column q*VL + lane is row q*H + p*VL + lane of [W_ih | W_hh]. Its
 * pointwise parts are float in both precisions. */

/* Gate epilogue for rows [m, m+mr) and units [u, u+n), n <= VL. */
static MAYBE_UNUSED void cell_epilogue(const nn_cell_fwd *a, int m, int mr, vf acc[MR][4], int u,
                                       int n) {
    int H = a->H;
    size_t G = (size_t)4 * H;
    for (int r = 0; r < mr; r++) {
        size_t row = (size_t)(m + r);
        vf pre[4];
        for (int q = 0; q < 4; q++) {
            pre[q] = acc[r][q];
            size_t off = (size_t)q * H + u;
            if (a->gin)
                pre[q] += n == VL ? vload(a->gin + row * G + off) : vload_n(a->gin + row * G + off, n);
            if (a->bias)
                pre[q] += n == VL ? vload(a->bias + off) : vload_n(a->bias + off, n);
        }
        vf i = vsigmoid(pre[0]), f = vsigmoid(pre[1]), g = vtanh(pre[2]), o = vsigmoid(pre[3]);
        const float *cp = a->cp + row * H + u;
        vf c = f * (n == VL ? vload(cp) : vload_n(cp, n)) + i * g;
        vf h = o * vtanh(c);
        float *gr = a->g + row * G + u;
        if (n == VL) {
            vstore(gr, i);
            vstore(gr + H, f);
            vstore(gr + 2 * H, g);
            vstore(gr + 3 * H, o);
            vstore(a->c + row * H + u, c);
            vstore(a->h + row * H + u, h);
            if (a->y)
                vstore(a->y + row * a->ldy + u, h);
        } else {
            vstore_n(gr, i, n);
            vstore_n(gr + H, f, n);
            vstore_n(gr + 2 * H, g, n);
            vstore_n(gr + 3 * H, o, n);
            vstore_n(a->c + row * H + u, c, n);
            vstore_n(a->h + row * H + u, h, n);
            if (a->y)
                vstore_n(a->y + row * a->ldy + u, h, n);
        }
    }
}

/* The clamp of ONNX's clip (b > 0), and the mask of where it let the
 * gradient through (|x| <= b: 1, else 0). */
INLINE vf vclamp(vf x, float b) { return b > 0 ? vmin(vset(b), vmax(vset(-b), x)) : x; }
INLINE vf vpass(vf x, float b) {
    if (!(b > 0))
        return vset(1);
    vf ax = (vf)((vi)x & 0x7fffffff);
    return vsel(ax <= vset(b), vset(1), vset(0));
}

/* cell_epilogue with the options of ONNX's LSTM (nn_cell_opts, nn.h): g
 * keeps the pre-activations. A separate function, so that the cell without
 * options runs the code it always ran. */
static MAYBE_UNUSED void cell_epilogue_opts(const nn_cell_fwd *a, int m, int mr, vf acc[MR][4],
                                            int u, int n) {
    int H = a->H;
    size_t G = (size_t)4 * H;
    const nn_cell_opts *op = &a->opt;
    float b = op->clip;
#define LD(p) (n == VL ? vload(p) : vload_n((p), n))
#define ST(p, v) (n == VL ? vstore((p), (v)) : vstore_n((p), (v), n))
    vf p_i = vset(0), p_f = vset(0), p_o = vset(0);
    if (op->peep) {
        p_i = LD(op->peep + u);
        p_f = LD(op->peep + H + u);
        p_o = LD(op->peep + 2 * H + u);
    }
    for (int r = 0; r < mr; r++) {
        size_t row = (size_t)(m + r);
        vf pre[4];
        for (int q = 0; q < 4; q++) {
            pre[q] = acc[r][q];
            size_t off = (size_t)q * H + u;
            if (a->gin)
                pre[q] += LD(a->gin + row * G + off);
            if (a->bias)
                pre[q] += LD(a->bias + off);
        }
        vf cp = LD(a->cp + row * H + u);
        if (op->peep) {
            pre[0] += p_i * cp;
            pre[1] += p_f * cp;
        }
        vf i = vsigmoid(vclamp(pre[0], b));
        vf f = op->cifg ? 1.0f - i : vsigmoid(vclamp(pre[1], b));
        vf g = vtanh(vclamp(pre[2], b));
        vf c = f * cp + i * g;
        if (op->peep)
            pre[3] += p_o * c;
        vf o = vsigmoid(vclamp(pre[3], b));
        vf h = o * vtanh(c);
        float *gr = a->g + row * G + u;
        ST(gr, pre[0]);
        ST(gr + H, pre[1]);
        ST(gr + 2 * H, pre[2]);
        ST(gr + 3 * H, pre[3]);
        ST(a->c + row * H + u, c);
        ST(a->h + row * H + u, h);
        if (a->y)
            ST(a->y + row * a->ldy + u, h);
    }
#undef LD
#undef ST
}

/* Asks for rows [0, M) of the columns [u, u+n) of each of the `blocks`
 * blocks of H columns of X (row stride ld) to be brought into cache: what
 * this thread reads at the next step, which was written long ago. */
static MAYBE_UNUSED void prefetch_units(const float *X, size_t ld, int M, int H, int blocks,
                                        int u, int n) {
    if (!X)
        return;
    for (int m = 0; m < M; m++)
        for (int q = 0; q < blocks; q++)
            for (int i = 0; i < n; i += 16)
                __builtin_prefetch(X + m * ld + (size_t)q * H + u + i, 0, 3);
}

/* Pointwise backward for units [u0, u1) of all rows, vectorised; a block
 * of units at a time, so the bias gradient sums stay in registers. */
static MAYBE_UNUSED void cell_backward_pointwise(const nn_cell_bwd *a, int u0, int u1) {
    int H = a->H;
    size_t G = (size_t)4 * H;
    for (int u = u0; u < u1; u += VL) {
        int n = u1 - u < VL ? u1 - u : VL;
#define LD(p) (n == VL ? vload(p) : vload_n((p), n))
#define ST(p, v) (n == VL ? vstore((p), (v)) : vstore_n((p), (v), n))
        vf db0 = vset(0), db1 = vset(0), db2 = vset(0), db3 = vset(0);
        for (int m = 0; m < a->M; m++) {
            float *gm = a->g + m * G;
            size_t base = (size_t)m * H;
            vf i = LD(gm + u), f = LD(gm + H + u), g = LD(gm + 2 * H + u), o = LD(gm + 3 * H + u);
            vf c = LD(a->c + base + u), cp = LD(a->cp + base + u), dh = LD(a->dr + base + u);
            if (a->dy)
                dh += LD(a->dy + (size_t)m * a->ldy + u);
            vf tc = vtanh(c);
            vf d = LD(a->dc + base + u) + dh * o * (1.0f - tc * tc);
            vf di = d * g * i * (1.0f - i), df = d * cp * f * (1.0f - f);
            vf dg = d * i * (1.0f - g * g), dO = dh * tc * o * (1.0f - o);
            ST(gm + u, di);
            ST(gm + H + u, df);
            ST(gm + 2 * H + u, dg);
            ST(gm + 3 * H + u, dO);
            ST(a->dc + base + u, d * f);
            db0 += di, db1 += df, db2 += dg, db3 += dO;
        }
        if (a->db) {
            ST(a->db + u, LD(a->db + u) + db0);
            ST(a->db + H + u, LD(a->db + H + u) + db1);
            ST(a->db + 2 * H + u, LD(a->db + 2 * H + u) + db2);
            ST(a->db + 3 * H + u, LD(a->db + 3 * H + u) + db3);
        }
#undef LD
#undef ST
    }
}

/* cell_backward_pointwise with the options of ONNX's LSTM: the equations
 * of nn_cell_pointwise_backward_opts (kernels_ref.c), from the kept
 * pre-activations; the peephole gradients summed in registers like db. */
static MAYBE_UNUSED void cell_backward_pointwise_opts(const nn_cell_bwd *a, int u0, int u1) {
    int H = a->H;
    size_t G = (size_t)4 * H;
    const nn_cell_opts *op = &a->opt;
    float b = op->clip;
    for (int u = u0; u < u1; u += VL) {
        int n = u1 - u < VL ? u1 - u : VL;
#define LD(p) (n == VL ? vload(p) : vload_n((p), n))
#define ST(p, v) (n == VL ? vstore((p), (v)) : vstore_n((p), (v), n))
        vf p_i = vset(0), p_f = vset(0), p_o = vset(0);
        if (op->peep) {
            p_i = LD(op->peep + u);
            p_f = LD(op->peep + H + u);
            p_o = LD(op->peep + 2 * H + u);
        }
        vf db0 = vset(0), db1 = vset(0), db2 = vset(0), db3 = vset(0);
        vf dp0 = vset(0), dp1 = vset(0), dp2 = vset(0);
        for (int m = 0; m < a->M; m++) {
            float *gm = a->g + m * G;
            size_t base = (size_t)m * H;
            vf pi = LD(gm + u), pf = LD(gm + H + u), pg = LD(gm + 2 * H + u);
            vf po = LD(gm + 3 * H + u);
            vf i = vsigmoid(vclamp(pi, b));
            vf f = op->cifg ? 1.0f - i : vsigmoid(vclamp(pf, b));
            vf g = vtanh(vclamp(pg, b)), o = vsigmoid(vclamp(po, b));
            vf c = LD(a->c + base + u), cp = LD(a->cp + base + u), dh = LD(a->dr + base + u);
            if (a->dy)
                dh += LD(a->dy + (size_t)m * a->ldy + u);
            vf tc = vtanh(c);
            vf dO = dh * tc * o * (1.0f - o) * vpass(po, b);
            vf d = LD(a->dc + base + u) + dh * o * (1.0f - tc * tc) + dO * p_o;
            vf di, df;
            if (op->cifg) {
                di = d * (g - cp) * i * (1.0f - i) * vpass(pi, b);
                df = vset(0);
            } else {
                di = d * g * i * (1.0f - i) * vpass(pi, b);
                df = d * cp * f * (1.0f - f) * vpass(pf, b);
            }
            vf dg = d * i * (1.0f - g * g) * vpass(pg, b);
            ST(gm + u, di);
            ST(gm + H + u, df);
            ST(gm + 2 * H + u, dg);
            ST(gm + 3 * H + u, dO);
            ST(a->dc + base + u, d * f + di * p_i + df * p_f);
            db0 += di, db1 += df, db2 += dg, db3 += dO;
            dp0 += di * cp, dp1 += df * cp, dp2 += dO * c;
        }
        if (a->db) {
            ST(a->db + u, LD(a->db + u) + db0);
            ST(a->db + H + u, LD(a->db + H + u) + db1);
            ST(a->db + 2 * H + u, LD(a->db + 2 * H + u) + db2);
            ST(a->db + 3 * H + u, LD(a->db + 3 * H + u) + db3);
        }
        if (op->peep && a->dpeep) {
            ST(a->dpeep + u, LD(a->dpeep + u) + dp0);
            ST(a->dpeep + H + u, LD(a->dpeep + H + u) + dp1);
            ST(a->dpeep + 2 * H + u, LD(a->dpeep + 2 * H + u) + dp2);
        }
#undef LD
#undef ST
    }
}

/* ------------------------------------------------------------------ */
/* The loss kernels (kernels_f32.c), in every compile of it, under the
 * instruction set's name: the avx512bf16 set's table (kernels_bf16.c) takes
 * nn_log_softmax_avx512bf16 and nn_xent_backward_avx512bf16. */
void SIMD_FN(nn_log_softmax)(const nn_ctx *ctx, float *out, const float *z, int N, int C);
void SIMD_FN(nn_xent_backward)(const nn_ctx *ctx, float *d, const float *logp,
                                const int32_t *targets, int N, int C, int ignore, float scale);

#endif
