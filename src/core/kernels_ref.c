/* kernels_ref.c - the reference kernels: plain loops, sums in double. Every
 * fast kernel is tested against these. Compiled in float and in double. */
#include "nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static inline real sigmoid(real x) { return (real)(1.0 / (1.0 + exp(-(double)x))); }
static inline real tanh_r(real x) { return (real)tanh((double)x); }

/* C (M,N) = alpha op(A) op(B) + beta C. With beta == 0, C is not read. */
static void ref_gemm(const nn_ctx *ctx, int tA, int tB, int M, int N, int K, real alpha,
                     const real *A, int lda, const real *B, int ldb, real beta, real *C,
                     int ldc) {
    (void)ctx;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) {
                double a = tA ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                double b = tB ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += a * b;
            }
            real *c = &C[(size_t)i * ldc + j];
            *c = (real)(alpha * s + (beta == 0 ? 0.0 : (double)beta * *c));
        }
}

static void ref_gemm_tn2(const nn_ctx *ctx, int M, int K, const real *A, int lda, int N1,
                         const real *B1, int ldb1, real *C1, int ldc1, int N2, const real *B2,
                         int ldb2, real *C2, int ldc2) {
    ref_gemm(ctx, 1, 0, M, N1, K, 1, A, lda, B1, ldb1, 1, C1, ldc1);
    ref_gemm(ctx, 1, 0, M, N2, K, 1, A, lda, B2, ldb2, 1, C2, ldc2);
}

/* The reference "packing" is the plain (K,N) matrix. */
static size_t ref_pack_size(int N, int K) { return (size_t)N * K; }

static void ref_pack_nt(real *dst, const real *W, int N, int K) {
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++)
            dst[(size_t)k * N + n] = W[(size_t)n * K + k];
}

static void ref_pack_nn(real *dst, const real *W, int K, int N) {
    memcpy(dst, W, sizeof(real) * (size_t)K * N);
}

static void ref_pgemm(const nn_ctx *ctx, int M, int N, int K, const real *A, int lda,
                      const real *Wp, real beta, real *C, int ldc) {
    ref_gemm(ctx, 0, 0, M, N, K, 1, A, lda, Wp, N, beta, C, ldc);
}

/* Cell weights as one (4H, K1+K2) matrix: row r is [W_ih[r] | W_hh[r]]. */
static size_t ref_cell_pack_size(int H, int K1, int K2) { return (size_t)4 * H * (K1 + K2); }

static void ref_cell_pack(real *dst, const real *w_ih, const real *w_hh, int H, int K1, int K2) {
    for (int r = 0; r < 4 * H; r++) {
        real *row = dst + (size_t)r * (K1 + K2);
        if (K1)
            memcpy(row, w_ih + (size_t)r * K1, sizeof(real) * K1);
        memcpy(row + K1, w_hh + (size_t)r * K2, sizeof(real) * K2);
    }
}

void nn_cell_pointwise_forward(int M, int H, real *g, const real *cp, real *c, real *h, int u0,
                               int u1) {
    for (int m = 0; m < M; m++) {
        real *gm = g + (size_t)m * 4 * H;
        for (int u = u0; u < u1; u++) {
            real i = sigmoid(gm[u]), f = sigmoid(gm[H + u]);
            real gg = tanh_r(gm[2 * H + u]), o = sigmoid(gm[3 * H + u]);
            real cn = f * cp[(size_t)m * H + u] + i * gg;
            c[(size_t)m * H + u] = cn;
            h[(size_t)m * H + u] = o * tanh_r(cn);
            gm[u] = i;
            gm[H + u] = f;
            gm[2 * H + u] = gg;
            gm[3 * H + u] = o;
        }
    }
}

void nn_cell_pointwise_backward(const nn_cell_bwd *a, int u0, int u1) {
    int H = a->H;
    for (int m = 0; m < a->M; m++) {
        real *gm = a->g + (size_t)m * 4 * H;
        for (int u = u0; u < u1; u++) {
            size_t k = (size_t)m * H + u;
            real dh = a->dr[k] + (a->dy ? a->dy[(size_t)m * a->ldy + u] : 0);
            real i = gm[u], f = gm[H + u], gg = gm[2 * H + u], o = gm[3 * H + u];
            real tc = tanh_r(a->c[k]);
            real d = a->dc[k] + dh * o * (1 - tc * tc);
            gm[u] = d * gg * i * (1 - i);
            gm[H + u] = d * a->cp[k] * f * (1 - f);
            gm[2 * H + u] = d * i * (1 - gg * gg);
            gm[3 * H + u] = dh * tc * o * (1 - o);
            a->dc[k] = d * f;
            if (a->db)
                for (int q = 0; q < 4; q++)
                    a->db[q * H + u] += gm[q * H + u];
        }
    }
}

static inline real clamp_r(real x, real b) { return b > 0 ? (x > b ? b : x < -b ? -b : x) : x; }
/* 1 where the clamp lets the gradient through (|x| <= b), else 0. */
static inline real pass_r(real x, real b) { return b > 0 && (x > b || x < -b) ? 0 : 1; }

void nn_cell_pointwise_forward_opts(int M, int H, const nn_cell_opts *opt, real *g,
                                    const real *cp, real *c, real *h, int u0, int u1) {
    const real *pp = opt->peep;
    real b = opt->clip;
    for (int m = 0; m < M; m++) {
        real *gm = g + (size_t)m * 4 * H;
        for (int u = u0; u < u1; u++) {
            real cpu = cp[(size_t)m * H + u];
            real pi = gm[u], pf = gm[H + u], pg = gm[2 * H + u], po = gm[3 * H + u];
            if (pp) {
                pi += pp[u] * cpu;
                pf += pp[H + u] * cpu;
            }
            real i = sigmoid(clamp_r(pi, b));
            real f = opt->cifg ? 1 - i : sigmoid(clamp_r(pf, b));
            real gg = tanh_r(clamp_r(pg, b));
            real cn = f * cpu + i * gg;
            if (pp)
                po += pp[2 * H + u] * cn;
            real o = sigmoid(clamp_r(po, b));
            c[(size_t)m * H + u] = cn;
            h[(size_t)m * H + u] = o * tanh_r(cn);
            gm[u] = pi;
            gm[H + u] = pf;
            gm[2 * H + u] = pg;
            gm[3 * H + u] = po;
        }
    }
}

/* From the pre-activations kept by the forward:
 *     i, f, g, o again; mask = 1 where the clamp passed
 *     do = dh * tanh(c) * o (1 - o) * mask_o
 *     dc += dh * o * (1 - tanh(c)^2) + do * p_o        (o saw c)
 *     di = (dc * g - [cifg] dc * cp) * i (1 - i) * mask_i
 *     df = [!cifg] dc * cp * f (1 - f) * mask_f
 *     dg = dc * i * (1 - g^2) * mask_g
 *     dc_prev = dc * f + di * p_i + df * p_f
 *     dp_i += di * cp, dp_f += df * cp, dp_o += do * c             */
void nn_cell_pointwise_backward_opts(const nn_cell_bwd *a, int u0, int u1) {
    int H = a->H;
    const real *pp = a->opt.peep;
    real b = a->opt.clip;
    for (int m = 0; m < a->M; m++) {
        real *gm = a->g + (size_t)m * 4 * H;
        for (int u = u0; u < u1; u++) {
            size_t k = (size_t)m * H + u;
            real dh = a->dr[k] + (a->dy ? a->dy[(size_t)m * a->ldy + u] : 0);
            real pi = gm[u], pf = gm[H + u], pg = gm[2 * H + u], po = gm[3 * H + u];
            real i = sigmoid(clamp_r(pi, b));
            real f = a->opt.cifg ? 1 - i : sigmoid(clamp_r(pf, b));
            real gg = tanh_r(clamp_r(pg, b)), o = sigmoid(clamp_r(po, b));
            real cpk = a->cp[k], ck = a->c[k];
            real tc = tanh_r(ck);
            real dO = dh * tc * o * (1 - o) * pass_r(po, b);
            real d = a->dc[k] + dh * o * (1 - tc * tc);
            if (pp)
                d += dO * pp[2 * H + u];
            real dia = d * gg, dfa = d * cpk;
            real di, df;
            if (a->opt.cifg) {
                di = (dia - dfa) * i * (1 - i) * pass_r(pi, b);
                df = 0;
            } else {
                di = dia * i * (1 - i) * pass_r(pi, b);
                df = dfa * f * (1 - f) * pass_r(pf, b);
            }
            real dg = d * i * (1 - gg * gg) * pass_r(pg, b);
            gm[u] = di;
            gm[H + u] = df;
            gm[2 * H + u] = dg;
            gm[3 * H + u] = dO;
            real dcp = d * f;
            if (pp) {
                dcp += di * pp[u] + df * pp[H + u];
                if (a->dpeep) {
                    a->dpeep[u] += di * cpk;
                    a->dpeep[H + u] += df * cpk;
                    a->dpeep[2 * H + u] += dO * ck;
                }
            }
            a->dc[k] = dcp;
            if (a->db)
                for (int q = 0; q < 4; q++)
                    a->db[q * H + u] += gm[q * H + u];
        }
    }
}

void *nn_scratch_get(const nn_ctx *ctx, size_t n) {
    nn_scratch *s = ctx->scratch;
    void *p = NULL;
    if (s && n <= s->cap)
        return s->p;
    if (posix_memalign(&p, 64, n ? n : 64) != 0)
        return NULL;
    if (s) {
        free(s->p);
        s->p = p;
        s->cap = n;
    }
    return p;
}

void nn_scratch_release(const nn_ctx *ctx, void *p) {
    if (!ctx->scratch || ctx->scratch->p != p)
        free(p);
}

static void ref_cell_forward(const nn_ctx *ctx, const nn_cell_fwd *a) {
    (void)ctx;
    int G = 4 * a->H, K = a->K1 + a->K2;
    for (int m = 0; m < a->M; m++)
        for (int r = 0; r < G; r++) {
            const real *w = a->w + (size_t)r * K;
            double s = a->gin ? a->gin[(size_t)m * G + r] : 0;
            if (a->bias)
                s += a->bias[r];
            for (int k = 0; k < a->K1; k++)
                s += (double)a->x[(size_t)m * a->ldx + k] * w[k];
            for (int k = 0; k < a->K2; k++)
                s += (double)a->hp[(size_t)m * a->K2 + k] * w[a->K1 + k];
            a->g[(size_t)m * G + r] = (real)s;
        }
    if (nn_cell_opts_on(&a->opt))
        nn_cell_pointwise_forward_opts(a->M, a->H, &a->opt, a->g, a->cp, a->c, a->h, 0, a->H);
    else
        nn_cell_pointwise_forward(a->M, a->H, a->g, a->cp, a->c, a->h, 0, a->H);
    if (a->y)
        for (int m = 0; m < a->M; m++)
            memcpy(a->y + (size_t)m * a->ldy, a->h + (size_t)m * a->H, sizeof(real) * a->H);
}

static void ref_cell_backward(const nn_ctx *ctx, const nn_cell_bwd *a) {
    if (nn_cell_opts_on(&a->opt))
        nn_cell_pointwise_backward_opts(a, 0, a->H);
    else
        nn_cell_pointwise_backward(a, 0, a->H);
    ref_gemm(ctx, 0, 0, a->M, a->Hout, 4 * a->H, 1, a->g, 4 * a->H, a->w, a->Hout, 0, a->dhp,
             a->Hout);
}

/* Sums of exponentials in double. */
static void ref_log_softmax(const nn_ctx *ctx, real *out, const real *z, int N, int C) {
    (void)ctx;
    for (int n = 0; n < N; n++) {
        const real *zr = z + (size_t)n * C;
        real *o = out + (size_t)n * C;
        real mx = zr[0];
        for (int c = 1; c < C; c++)
            if (zr[c] > mx)
                mx = zr[c];
        double s = 0;
        for (int c = 0; c < C; c++)
            s += exp((double)(zr[c] - mx));
        real lse = mx + (real)log(s);
        for (int c = 0; c < C; c++)
            o[c] = zr[c] - lse;
    }
}

static void ref_xent_backward(const nn_ctx *ctx, real *d, const real *logp,
                              const int32_t *targets, int N, int C, int ignore, real scale) {
    (void)ctx;
    for (int n = 0; n < N; n++) {
        if (targets[n] == ignore)
            continue;
        const real *lp = logp + (size_t)n * C;
        real *dr = d + (size_t)n * C;
        for (int c = 0; c < C; c++)
            dr[c] += scale * (real)exp((double)lp[c]);
        dr[targets[n]] -= scale;
    }
}

const nn_kernels nn_kernels_ref = {
    .name = "reference",
    .gemm = ref_gemm,
    .gemm_tn2 = ref_gemm_tn2,
    .pack_size = ref_pack_size,
    .pack_nt = ref_pack_nt,
    .pack_nn = ref_pack_nn,
    .pgemm = ref_pgemm,
    .cell_pack_size = ref_cell_pack_size,
    .cell_pack = ref_cell_pack,
    .cell_forward = ref_cell_forward,
    .cell_backward = ref_cell_backward,
    .log_softmax = ref_log_softmax,
    .xent_backward = ref_xent_backward,
};
