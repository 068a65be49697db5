/*
 * kernels_f32.c - the float kernels: the generic, avx2 and avx512 sets
 * whole, and the loss kernels of all four sets. What the two precisions
 * share (vectors, exp/tanh, the cell's pointwise parts) is in simd.h, the
 * entry points over the products in simd_entry.h.
 *
 * Compiled once per instruction set (KERNEL_ISA, see the Makefile); ctx.c
 * picks a set at run time. For generic, avx2 and avx512 a compile is the
 * whole set, its table nn_kernels_<isa> at the end. The avx512bf16 compile
 * builds only the loss kernels, which come first: that set multiplies in
 * bfloat16 (kernels_bf16.c) and does everything else in float, so its table
 * takes these, compiled for its processor (-mavx512bw -mavx512vl ... give
 * other code than the avx512 compile's).
 */
#include "simd.h"

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

void SIMD_FN(nn_log_softmax)(const nn_ctx *ctx, float *out, const float *z, int N, int C) {
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

void SIMD_FN(nn_xent_backward)(const nn_ctx *ctx, float *d, const float *logp,
                                const int32_t *targets, int N, int C, int ignore, float scale) {
    rows_job j = {d, logp, targets, N, C, ignore, scale};
    if ((long)N * C < PARALLEL_MIN)
        xent_backward_part(&j, 0, 1);
    else
        nn_pool_run(ctx->pool, xent_backward_part, &j);
}

#if !SIMD_BF16 /* the float sets; the avx512bf16 compile ends here */

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

/* ------------------------------------------------------------------ */
/* Packing: (K, NR) panels (simd.h). */

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

/* Few rows (one step): threads take equal shares of panels x rows, each
 * panel KC rows of K at a time, so the block (256 KiB) stays in L2 while
 * every block of rows meets it: a whole panel of the backward's W_hh (K =
 * 4H = 4096, 1 MiB) does not, and was read from L3 once per block of rows.
 * Many rows (all steps): threads take rows, in blocks of MC rows and KC
 * columns of A, so each block of A stays in L2 while it meets every panel. */
static void pgemm_part(void *arg, int tid, int nt) {
    const pgemm_job *j = arg;
    int panels = (j->N + NR - 1) / NR;
    if (j->M < 4 * MC) {
        row_share r = row_share_of(j->M, panels, tid, nt);
        int p, m0, m1;
        while (next_piece(&r, &p, &m0, &m1))
            for (int k0 = 0; k0 < j->K; k0 += KC)
                pgemm_block(j, m0, m1, p, p + 1, k0, j->K - k0 < KC ? j->K - k0 : KC);
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
/* The cell: panels of the four gates of VL units (simd.h). */

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

/* Threads take equal shares of panels x rows (next_piece). */
static void cell_forward_part(void *arg, int tid, int nt) {
    const nn_cell_fwd *a = arg;
    int panels = (a->H + VL - 1) / VL;
    int K = a->K1 + a->K2;
    row_share r = row_share_of(a->M, panels, tid, nt);
    int opts = nn_cell_opts_on(&a->opt); /* ONNX's options: the variant epilogue */
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
            if (opts)
                cell_epilogue_opts(a, m, mr, acc, u, n);
            else
                cell_epilogue(a, m, mr, acc, u, n);
        }
        int next = (a->M_next < m1 ? a->M_next : m1) - m0; /* the same rows, next step */
        if (a->gin_next && next > 0)
            prefetch_units(a->gin_next + (size_t)m0 * 4 * a->H, (size_t)4 * a->H, next, a->H, 4,
                           u, n);
    }
}

/* ------------------------------------------------------------------ */
/* The general product (simd.h): (kc, NR) panels of op(B), MR-row panels
 * of op(A) where A is transposed. */

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

/* ------------------------------------------------------------------ */
/* The entry points over pgemm_part, cell_forward_part and gemm_part. */
#include "simd_entry.h"

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
    .log_softmax = SIMD_FN(nn_log_softmax),
    .xent_backward = SIMD_FN(nn_xent_backward),
};
#endif
