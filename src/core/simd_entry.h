/*
 * simd_entry.h - a kernel set's entry points, the same in both precisions.
 * kernels_f32.c and kernels_bf16.c each define three parts over their own
 * microkernel and then include this file:
 *     pgemm_part(pgemm_job *, tid, nt)          packed product (pgemm)
 *     cell_forward_part(nn_cell_fwd *, tid, nt) fused cell step (cell_forward)
 *     gemm_part(gemm_job *, tid, nt)            general product (gemm, gemm_tn2)
 * The entry points run a part on the pool, or on the calling thread when
 * the work is small. The cell's backward is the pointwise part (simd.h),
 * then the product dh_prev = dG W_hh by pgemm_part.
 */
#ifndef LSTM_SIMD_ENTRY_H
#define LSTM_SIMD_ENTRY_H

static void simd_pgemm(const nn_ctx *ctx, int M, int N, int K, const float *A, int lda,
                       const float *Wp, float beta, float *C, int ldc) {
    pgemm_job j = {M, N, K, lda, ldc, A, Wp, C, beta};
    if ((long)M * N * K < PARALLEL_MIN)
        pgemm_part(&j, 0, 1);
    else
        nn_pool_run(ctx->pool, pgemm_part, &j);
}

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
    if (nn_cell_opts_on(&a->opt))
        cell_backward_pointwise_opts(a, u0, u1);
    else
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

#endif
