/*
 * test_kernels.c - every fast kernel set (generic, and where the processor
 * has them avx2, avx512, avx512bf16), one function of its table at a time,
 * against the exact product.
 *
 * What they promise: every product is the exact product of its operands
 * (for avx512bf16, of its operands rounded to bfloat16, to nearest even),
 * summed in float in some order. So each result here is compared with that
 * product computed in double, from operands rounded by this file's own
 * rounding for bfloat16, within the worst-case bound of a float sum of K
 * terms in any order, (K + 2) 2^-24 sum_k |a_k b_k|. A lost block of K past
 * the cache block, a panel off by one, a wrong tail, rounding by truncation
 * or a pair in the wrong half of its word each miss that bound by orders of
 * magnitude. The shapes reach past every blocking size (KC = 1024 of K,
 * NC = 2048 columns, 4 * MC rows, the bfloat16 conversion block of 2048).
 * The gates and the backward's pointwise part are float in every set and
 * are held to float tolerances. Two threads must give the bits of one.
 */
#include "check.h"
#include "lstm.h"
#include "nn.h"

#include <stdint.h>
#include <string.h>

extern const nn_kernels nn_kernels_generic;
#ifdef LSTM_X86_KERNELS
extern const nn_kernels nn_kernels_avx2, nn_kernels_avx512, nn_kernels_avx512bf16;
#endif

static const nn_kernels *KS; /* the set under test */
static const char *kname;    /* its name, in every message */
static int bf;               /* whether it rounds operands to bfloat16 */
static lstm_rng rng;

/* x as the set under test multiplies it: itself for the float sets;
 * rounded to bfloat16 (nearest even, subnormals to zero) for bf16. */
static double rb(float x) {
    if (!bf)
        return x;
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000) == 0)
        return 0;
    uint32_t low = u & 0xffff, keep = u & 0xffff0000;
    if (low > 0x8000 || (low == 0x8000 && (keep & 0x10000)))
        keep += 0x10000;
    float r;
    memcpy(&r, &keep, 4);
    return r;
}

static float *randn(size_t n, float scale) {
    float *v = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        v[i] = scale * lstm_rng_normal(&rng);
    return v;
}

static float *packed(size_t floats) { return calloc(floats ? floats : 1, sizeof(float)); }

static double gamma_k(int K) { return (K + 2) * 0x1p-24; }

/* Largest |got - want| / bound over n values (<= 1 passes). */
static double worst_ratio(const float *got, const double *want, const double *bound, size_t n) {
    double w = 0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs(got[i] - want[i]) / (bound[i] + 1e-30);
        if (!(r <= w))
            w = r;
    }
    return w;
}

/* ------------------------------------------------------------------ */
/* gemm and gemm_tn2: C = alpha op(A) op(B) + beta C. */

static void test_gemm(nn_ctx *one, nn_ctx *two) {
    int shapes[][3] = {{1, 17, 3},   {7, 70, 33},   {13, 130, 515},
                       {100, 64, 2}, {5, 33, 1201}, {3, 1100, 40},
                       {20, 70, 2500}, {4, 2200, 30}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int tA = 0; tA < 2; tA++)
            for (int tB = 0; tB < 2; tB++) {
                int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                float alpha = 0.5f, beta = tA ? 0.75f : 0;
                float *A = randn((size_t)M * K, 1), *B = randn((size_t)K * N, 1);
                float *C0 = randn((size_t)M * N, 1);
                float *C1 = malloc(sizeof(float) * M * N), *C2 = malloc(sizeof(float) * M * N);
                double *want = malloc(sizeof(double) * M * N), *bound = malloc(sizeof(double) * M * N);
                int lda = tA ? M : K, ldb = tB ? K : N;
                for (int m = 0; m < M; m++)
                    for (int n = 0; n < N; n++) {
                        double sum = 0, mag = 0;
                        for (int k = 0; k < K; k++) {
                            double a = rb(tA ? A[(size_t)k * lda + m] : A[(size_t)m * lda + k]);
                            double b = rb(tB ? B[(size_t)n * ldb + k] : B[(size_t)k * ldb + n]);
                            sum += a * b, mag += fabs(a * b);
                        }
                        double c0 = beta ? C0[(size_t)m * N + n] : 0;
                        want[(size_t)m * N + n] = alpha * sum + beta * c0;
                        bound[(size_t)m * N + n] =
                            gamma_k(K) * alpha * mag + 0x1p-22 * fabs(beta * c0) + 1e-30;
                    }
                memcpy(C1, C0, sizeof(float) * M * N);
                memcpy(C2, C0, sizeof(float) * M * N);
                KS->gemm(one, tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C1, N);
                KS->gemm(two, tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C2, N);
                double r = worst_ratio(C1, want, bound, (size_t)M * N);
                CHECK(r <= 1, "%s: gemm tA=%d tB=%d M=%d N=%d K=%d: error %.3g of the bound", kname, tA, tB,
                      M, N, K, r);
                CHECK(memcmp(C1, C2, sizeof(float) * M * N) == 0,
                      "%s: gemm tA=%d tB=%d M=%d N=%d K=%d: 2 threads give the bits of 1", kname, tA, tB, M,
                      N, K);
                free(A), free(B), free(C0), free(C1), free(C2), free(want), free(bound);
            }

    /* gemm_tn2: C1 += A^T B1, C2 += A^T B2 with A (K,M) */
    int M = 37, K = 301, N1 = 40, N2 = 19;
    float *A = randn((size_t)K * M, 1), *B1 = randn((size_t)K * N1, 1), *B2 = randn((size_t)K * N2, 1);
    float *C1 = randn((size_t)M * N1, 1), *C2 = randn((size_t)M * N2, 1);
    double *w1 = malloc(sizeof(double) * M * N1), *b1 = malloc(sizeof(double) * M * N1);
    double *w2 = malloc(sizeof(double) * M * N2), *b2 = malloc(sizeof(double) * M * N2);
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N1 + N2; n++) {
            const float *B = n < N1 ? B1 : B2;
            int nn = n < N1 ? n : n - N1, ld = n < N1 ? N1 : N2;
            double sum = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                double a = rb(A[(size_t)k * M + m]) * rb(B[(size_t)k * ld + nn]);
                sum += a, mag += fabs(a);
            }
            float c = n < N1 ? C1[m * N1 + nn] : C2[m * N2 + nn];
            (n < N1 ? w1 : w2)[m * ld + nn] = c + sum;
            (n < N1 ? b1 : b2)[m * ld + nn] = gamma_k(K) * mag + 0x1p-22 * fabs(c);
        }
    }
    KS->gemm_tn2(two, M, K, A, M, N1, B1, N1, C1, N1, N2, B2, N2, C2, N2);
    CHECK(worst_ratio(C1, w1, b1, (size_t)M * N1) <= 1 && worst_ratio(C2, w2, b2, (size_t)M * N2) <= 1,
          "%s: gemm_tn2: both products within the bound (%.3g, %.3g)", kname,
          worst_ratio(C1, w1, b1, (size_t)M * N1), worst_ratio(C2, w2, b2, (size_t)M * N2));
    free(A), free(B1), free(B2), free(C1), free(C2), free(w1), free(b1), free(w2), free(b2);
}

/* ------------------------------------------------------------------ */
/* pgemm against weights packed by pack_nt (W (N,K), C = A W^T) and by
 * pack_nn (W (K,N), C = A W); few rows (split by panels) and many (split
 * by rows, K in blocks), K past the cache block and the conversion block
 * of 2048. */

static void test_pgemm(nn_ctx *one, nn_ctx *two) {
    int shapes[][3] = {{1, 5, 3}, {6, 64, 33}, {7, 100, 2101}, {64, 70, 384},
                      {32, 300, 1500}, /* 5 panels of 64 (avx512): split inside one */
                      {400, 33, 101}, {400, 20, 1500}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int nn = 0; nn < 2; nn++)
            for (int bi = 0; bi < 2; bi++) {
                int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                float beta = bi ? 1 : 0;
                int lda = K + 3;
                float *A = randn((size_t)M * lda, 1), *W = randn((size_t)N * K, 1);
                float *C0 = randn((size_t)M * N, 1);
                float *Wp = packed(KS->pack_size(N, K));
                if (nn)
                    KS->pack_nn(Wp, W, K, N);
                else
                    KS->pack_nt(Wp, W, N, K);
                double *want = malloc(sizeof(double) * M * N), *bound = malloc(sizeof(double) * M * N);
                for (int m = 0; m < M; m++)
                    for (int n = 0; n < N; n++) {
                        double sum = 0, mag = 0;
                        for (int k = 0; k < K; k++) {
                            double w = rb(nn ? W[(size_t)k * N + n] : W[(size_t)n * K + k]);
                            double p = rb(A[(size_t)m * lda + k]) * w;
                            sum += p, mag += fabs(p);
                        }
                        double c0 = beta * C0[(size_t)m * N + n];
                        want[(size_t)m * N + n] = sum + c0;
                        bound[(size_t)m * N + n] = gamma_k(K) * mag + 0x1p-22 * fabs(c0) + 1e-30;
                    }
                float *C1 = malloc(sizeof(float) * M * N), *C2 = malloc(sizeof(float) * M * N);
                memcpy(C1, C0, sizeof(float) * M * N);
                memcpy(C2, C0, sizeof(float) * M * N);
                KS->pgemm(one, M, N, K, A, lda, Wp, beta, C1, N);
                KS->pgemm(two, M, N, K, A, lda, Wp, beta, C2, N);
                double r = worst_ratio(C1, want, bound, (size_t)M * N);
                CHECK(r <= 1, "%s: pgemm (%s) M=%d N=%d K=%d beta=%g: error %.3g of the bound", kname,
                      nn ? "nn" : "nt", M, N, K, beta, r);
                CHECK(memcmp(C1, C2, sizeof(float) * M * N) == 0,
                      "%s: pgemm (%s) M=%d N=%d K=%d: 2 threads give the bits of 1", kname, nn ? "nn" : "nt",
                      M, N, K);
                free(A), free(W), free(C0), free(Wp), free(want), free(bound), free(C1), free(C2);
            }
}

/* ------------------------------------------------------------------ */
/* The cell: forward with and without the fused input product, and the
 * backward (pointwise part in float, dh_prev a product). */

static double sigm(double x) { return 1 / (1 + exp(-x)); }

static void test_cell(nn_ctx *one, nn_ctx *two) {
    int cases[][4] = {/* M, H, K1, K2 */
                      {1, 5, 0, 5},   {7, 16, 3, 16}, {64, 40, 33, 40},
                      {6, 20, 2100, 20}, {13, 33, 0, 17}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int M = cases[c][0], H = cases[c][1], K1 = cases[c][2], K2 = cases[c][3];
        int G = 4 * H, K = K1 + K2, ldx = K1 + 1;
        float *x = randn((size_t)M * ldx, 1), *hp = randn((size_t)M * K2, 0.5f);
        float *cp = randn((size_t)M * H, 0.5f), *gin = randn((size_t)M * G, 0.5f);
        float *bias = randn(G, 0.1f);
        float *wih = randn((size_t)G * (K1 ? K1 : 1), 1.0f / sqrtf(K)), *whh = randn((size_t)G * K2, 1.0f / sqrtf(K));
        float *wp = packed(KS->cell_pack_size(H, K1, K2));
        KS->cell_pack(wp, K1 ? wih : NULL, whh, H, K1, K2);
        double *pre = malloc(sizeof(double) * M * G), *err = malloc(sizeof(double) * M * G);
        for (int m = 0; m < M; m++)
            for (int r = 0; r < G; r++) {
                double s = (double)gin[(size_t)m * G + r] + bias[r], mag = fabs(s);
                for (int k = 0; k < K1; k++) {
                    double p = rb(x[(size_t)m * ldx + k]) * rb(wih[(size_t)r * K1 + k]);
                    s += p, mag += fabs(p);
                }
                for (int k = 0; k < K2; k++) {
                    double p = rb(hp[(size_t)m * K2 + k]) * rb(whh[(size_t)r * K2 + k]);
                    s += p, mag += fabs(p);
                }
                pre[(size_t)m * G + r] = s;
                err[(size_t)m * G + r] = gamma_k(K + 2) * mag;
            }
        /* the reference gates, c and h, and their error bounds */
        double *wg = malloc(sizeof(double) * M * G), *bg = malloc(sizeof(double) * M * G);
        double *wc = malloc(sizeof(double) * M * H), *bc = malloc(sizeof(double) * M * H);
        double *wh = malloc(sizeof(double) * M * H), *bh = malloc(sizeof(double) * M * H);
        for (int m = 0; m < M; m++)
            for (int u = 0; u < H; u++) {
                size_t o = (size_t)m * G + u;
                double i = sigm(pre[o]), f = sigm(pre[o + H]), g = tanh(pre[o + 2 * H]),
                       og = sigm(pre[o + 3 * H]);
                double ei = err[o] / 4, ef = err[o + H] / 4, eg = err[o + 2 * H], eo = err[o + 3 * H] / 4;
                wg[o] = i, wg[o + H] = f, wg[o + 2 * H] = g, wg[o + 3 * H] = og;
                bg[o] = ei + 4e-6, bg[o + H] = ef + 4e-6, bg[o + 2 * H] = eg + 4e-6,
                bg[o + 3 * H] = eo + 4e-6;
                double cc = f * cp[(size_t)m * H + u] + i * g;
                double ec = fabs(cp[(size_t)m * H + u]) * bg[o + H] + fabs(g) * bg[o] + fabs(i) * bg[o + 2 * H] + 4e-6;
                wc[(size_t)m * H + u] = cc, bc[(size_t)m * H + u] = ec;
                wh[(size_t)m * H + u] = og * tanh(cc);
                bh[(size_t)m * H + u] = fabs(tanh(cc)) * bg[o + 3 * H] + og * ec + 4e-6;
            }
        float *out[2][3];
        for (int t = 0; t < 2; t++) {
            out[t][0] = malloc(sizeof(float) * M * G);
            out[t][1] = malloc(sizeof(float) * M * H);
            out[t][2] = malloc(sizeof(float) * M * H);
            nn_cell_fwd a = {M, H, K1, K2, K1 ? x : NULL, ldx, hp, cp, gin, bias, wp,
                             out[t][0], out[t][1], out[t][2], NULL, 0, NULL, 0, {0}};
            KS->cell_forward(t ? two : one, &a);
        }
        CHECK(worst_ratio(out[0][0], wg, bg, (size_t)M * G) <= 1 &&
                  worst_ratio(out[0][1], wc, bc, (size_t)M * H) <= 1 &&
                  worst_ratio(out[0][2], wh, bh, (size_t)M * H) <= 1,
              "%s: cell forward M=%d H=%d K1=%d K2=%d: gates, c, h within the bounds "
              "(%.3g, %.3g, %.3g)", kname, M, H, K1, K2, worst_ratio(out[0][0], wg, bg, (size_t)M * G),
              worst_ratio(out[0][1], wc, bc, (size_t)M * H), worst_ratio(out[0][2], wh, bh, (size_t)M * H));
        int same = 1;
        for (int q = 0; q < 3; q++)
            same &= memcmp(out[0][q], out[1][q], sizeof(float) * M * (q ? H : G)) == 0;
        CHECK(same, "%s: cell forward M=%d H=%d K1=%d K2=%d: 2 threads give the bits of 1", kname, M, H, K1, K2);

        /* backward from these activations, K2 = Hout */
        if (K1 == 0) {
            float *dr = randn((size_t)M * H, 1), *dc_in = randn((size_t)M * H, 1);
            float *whn = packed(KS->pack_size(K2, G));
            KS->pack_nn(whn, whh, G, K2);
            float *gb[2], *dcb[2], *dhp[2], *db[2];
            for (int t = 0; t < 2; t++) {
                gb[t] = malloc(sizeof(float) * M * G);
                memcpy(gb[t], out[0][0], sizeof(float) * M * G);
                dcb[t] = malloc(sizeof(float) * M * H);
                memcpy(dcb[t], dc_in, sizeof(float) * M * H);
                dhp[t] = malloc(sizeof(float) * M * K2);
                db[t] = calloc(G, sizeof(float));
                nn_cell_bwd b = {M, H, K2, gb[t], out[0][1], cp, dr, NULL, 0, dcb[t], dhp[t], whn,
                                 db[t], NULL, NULL, NULL, 0, {0}, NULL};
                KS->cell_backward(t ? two : one, &b);
            }
            /* pointwise, in double from the kernel's own activations */
            double *wd = malloc(sizeof(double) * M * G), *wdc = malloc(sizeof(double) * M * H);
            double *wdb = calloc(G, sizeof(double));
            for (int m = 0; m < M; m++)
                for (int u = 0; u < H; u++) {
                    const float *gm = out[0][0] + (size_t)m * G;
                    double i = gm[u], f = gm[H + u], g = gm[2 * H + u], o = gm[3 * H + u];
                    double cc = out[0][1][(size_t)m * H + u], tc = tanh(cc);
                    double dh = dr[(size_t)m * H + u];
                    double d = dc_in[(size_t)m * H + u] + dh * o * (1 - tc * tc);
                    double v[4] = {d * g * i * (1 - i), d * cp[(size_t)m * H + u] * f * (1 - f),
                                   d * i * (1 - g * g), dh * tc * o * (1 - o)};
                    for (int q = 0; q < 4; q++) {
                        wd[(size_t)m * G + q * H + u] = v[q];
                        wdb[q * H + u] += v[q];
                    }
                    wdc[(size_t)m * H + u] = d * f;
                }
            CHECK_CLOSE(gb[0], wd, (size_t)M * G, 1e-5, 1e-4, "%s: cell backward M=%d H=%d: dL/dpre", kname, M, H);
            CHECK_CLOSE(dcb[0], wdc, (size_t)M * H, 1e-5, 1e-4, "%s: cell backward M=%d H=%d: dc", kname, M, H);
            CHECK_CLOSE(db[0], wdb, (size_t)G, 1e-5 * M, 1e-4, "%s: cell backward M=%d H=%d: bias gradient", kname, M, H);
            /* dh_prev = dL/dpre (as the kernel left it) W_hh */
            double *wdh = malloc(sizeof(double) * M * K2), *bdh = malloc(sizeof(double) * M * K2);
            for (int m = 0; m < M; m++)
                for (int n = 0; n < K2; n++) {
                    double s = 0, mag = 0;
                    for (int j = 0; j < G; j++) {
                        double p = rb(gb[0][(size_t)m * G + j]) * rb(whh[(size_t)j * K2 + n]);
                        s += p, mag += fabs(p);
                    }
                    wdh[(size_t)m * K2 + n] = s, bdh[(size_t)m * K2 + n] = gamma_k(G) * mag + 1e-30;
                }
            double r = worst_ratio(dhp[0], wdh, bdh, (size_t)M * K2);
            CHECK(r <= 1, "%s: cell backward M=%d H=%d: dh_prev error %.3g of the bound", kname, M, H, r);
            CHECK(memcmp(gb[0], gb[1], sizeof(float) * M * G) == 0 &&
                      memcmp(dhp[0], dhp[1], sizeof(float) * M * K2) == 0 &&
                      memcmp(db[0], db[1], sizeof(float) * G) == 0,
                  "%s: cell backward M=%d H=%d: 2 threads give the bits of 1", kname, M, H);
            for (int t = 0; t < 2; t++)
                free(gb[t]), free(dcb[t]), free(dhp[t]), free(db[t]);
            free(dr), free(dc_in), free(whn), free(wd), free(wdc), free(wdb), free(wdh), free(bdh);
        }
        for (int t = 0; t < 2; t++)
            for (int q = 0; q < 3; q++)
                free(out[t][q]);
        free(x), free(hp), free(cp), free(gin), free(bias), free(wih), free(whh), free(wp);
        free(pre), free(err), free(wg), free(bg), free(wc), free(bc), free(wh), free(bh);
    }
}

/* The cell with ONNX's options (nn_cell_opts) against the reference
 * kernels' pointwise variants, for every combination. The weights are zero,
 * so the product is exactly 0 in every set and pre = gin + bias: what is
 * compared is the pointwise part alone (float in every set, polynomial exp
 * and tanh against libm). gin is wide enough that a clip of 1 acts on
 * about a third of the pre-activations. */
static void test_cell_opts(nn_ctx *one, nn_ctx *two) {
    static const nn_ctx ref = {.k = &nn_kernels_ref};
    static const int shapes[][2] = {{1, 37}, {5, 16}, {13, 70}};
    for (int combo = 1; combo < 8; combo++)
        for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++) {
            int M = shapes[sh][0], H = shapes[sh][1], G = 4 * H, K2 = 5;
            float *peep = randn((size_t)3 * H, 0.7f), *gin = randn((size_t)M * G, 1.6f);
            float *bias = randn(G, 0.3f), *cp = randn((size_t)M * H, 1);
            float *zw = calloc((size_t)G * K2, sizeof(float)), *hp = randn((size_t)M * K2, 1);
            nn_cell_opts op = {combo & 1 ? peep : NULL, combo & 2 ? 1.0f : 0, (combo & 4) != 0};
            float *wf = packed(KS->cell_pack_size(H, 0, K2));
            float *wr = packed(nn_kernels_ref.cell_pack_size(H, 0, K2));
            KS->cell_pack(wf, NULL, zw, H, 0, K2);
            nn_kernels_ref.cell_pack(wr, NULL, zw, H, 0, K2);
            float *o[3][3]; /* ref, one thread, two threads: g, c, h */
            for (int t = 0; t < 3; t++) {
                o[t][0] = malloc(sizeof(float) * M * G);
                o[t][1] = malloc(sizeof(float) * M * H);
                o[t][2] = malloc(sizeof(float) * M * H);
                nn_cell_fwd a = {.M = M, .H = H, .K2 = K2, .hp = hp, .cp = cp, .gin = gin,
                                 .bias = bias, .w = t ? wf : wr, .g = o[t][0], .c = o[t][1],
                                 .h = o[t][2], .opt = op};
                (t ? KS : &nn_kernels_ref)->cell_forward(t == 0 ? &ref : t == 1 ? one : two, &a);
            }
            int clamped = 0;
            for (int j = 0; j < M * G; j++)
                clamped += fabsf(o[0][0][j]) > 1;
            CHECK_CLOSE(o[1][0], o[0][0], (size_t)M * G, 1e-6, 1e-6,
                        "%s: cell forward, options %d, M=%d H=%d: pre-activations", kname, combo,
                        M, H);
            CHECK_CLOSE(o[1][1], o[0][1], (size_t)M * H, 2e-6, 1e-5,
                        "%s: cell forward, options %d, M=%d H=%d: c", kname, combo, M, H);
            CHECK_CLOSE(o[1][2], o[0][2], (size_t)M * H, 2e-6, 1e-5,
                        "%s: cell forward, options %d, M=%d H=%d: h", kname, combo, M, H);
            CHECK(!(combo & 2) || (clamped > 0 && clamped < M * G),
                  "%s: options %d: the clip acts on some pre-activations (%d of %d)", kname,
                  combo, clamped, M * G);
            int same = 1;
            for (int q = 0; q < 3; q++)
                same &= memcmp(o[1][q], o[2][q], sizeof(float) * M * (q ? H : G)) == 0;
            CHECK(same, "%s: cell forward, options %d: 2 threads give the bits of 1", kname,
                  combo);

            /* backward from the reference's pre-activations */
            float *whh = randn((size_t)G * K2, 0.5f);
            float *whf = packed(KS->pack_size(K2, G)), *whr = packed(nn_kernels_ref.pack_size(K2, G));
            KS->pack_nn(whf, whh, G, K2);
            nn_kernels_ref.pack_nn(whr, whh, G, K2);
            float *dr = randn((size_t)M * H, 1), *dc_in = randn((size_t)M * H, 1);
            float *gb[2], *dcb[2], *dhp[2], *db[2], *dp[2];
            for (int t = 0; t < 2; t++) {
                gb[t] = malloc(sizeof(float) * M * G);
                memcpy(gb[t], o[0][0], sizeof(float) * M * G);
                dcb[t] = malloc(sizeof(float) * M * H);
                memcpy(dcb[t], dc_in, sizeof(float) * M * H);
                dhp[t] = malloc(sizeof(float) * M * K2);
                db[t] = calloc(G, sizeof(float));
                dp[t] = calloc((size_t)3 * H, sizeof(float));
                nn_cell_bwd b = {.M = M, .H = H, .Hout = K2, .g = gb[t], .c = o[0][1], .cp = cp,
                                 .dr = dr, .dc = dcb[t], .dhp = dhp[t], .w = t ? whf : whr,
                                 .db = db[t], .opt = op, .dpeep = dp[t]};
                (t ? KS : &nn_kernels_ref)->cell_backward(t ? one : &ref, &b);
            }
            CHECK_CLOSE(gb[1], gb[0], (size_t)M * G, 1e-5, 1e-4,
                        "%s: cell backward, options %d, M=%d H=%d: dL/dpre", kname, combo, M, H);
            CHECK_CLOSE(dcb[1], dcb[0], (size_t)M * H, 1e-5, 1e-4,
                        "%s: cell backward, options %d, M=%d H=%d: dc", kname, combo, M, H);
            CHECK_CLOSE(db[1], db[0], (size_t)G, 1e-5 * M, 1e-4,
                        "%s: cell backward, options %d, M=%d H=%d: bias gradient", kname, combo,
                        M, H);
            CHECK_CLOSE(dp[1], dp[0], (size_t)3 * H, 1e-5 * M, 1e-4,
                        "%s: cell backward, options %d, M=%d H=%d: peephole gradient", kname,
                        combo, M, H);
            CHECK_CLOSE(dhp[1], dhp[0], (size_t)M * K2, bf ? 2e-2 : 1e-5, bf ? 2e-2 : 1e-4,
                        "%s: cell backward, options %d, M=%d H=%d: dh_prev", kname, combo, M, H);
            for (int t = 0; t < 2; t++)
                free(gb[t]), free(dcb[t]), free(dhp[t]), free(db[t]), free(dp[t]);
            for (int t = 0; t < 3; t++)
                for (int q = 0; q < 3; q++)
                    free(o[t][q]);
            free(peep), free(gin), free(bias), free(cp), free(zw), free(hp), free(wf), free(wr);
            free(whh), free(whf), free(whr), free(dr), free(dc_in);
        }
}

/* Runs every check on one set; skipped (and said so) where the processor
 * lacks it. */
static void test_set(const nn_kernels *k, lstm_kernels which, const char *name, int is_bf16) {
    lstm_ctx_config cc = {1, which, LSTM_BLAS_OFF};
    lstm_error e;
    lstm_ctx *probe = lstm_ctx_create(&cc, &e);
    if (!probe) {
        printf("ok skipping the %s kernels: %s\n", name, e.msg);
        return;
    }
    lstm_ctx_free(probe);
    KS = k, kname = name, bf = is_bf16;
    lstm_rng_seed(&rng, 2026);
    nn_scratch s1 = {0}, s2 = {0};
    nn_ctx one = {k, NULL, &s1, NULL}, two = {k, nn_pool_create(2), &s2, NULL};
    test_gemm(&one, &two);
    test_pgemm(&one, &two);
    test_cell(&one, &two);
    test_cell_opts(&one, &two);
    nn_pool_free(two.pool);
    free(s1.p), free(s2.p);
}

int main(void) {
    test_set(&nn_kernels_generic, LSTM_KERNELS_GENERIC, "generic", 0);
#ifdef LSTM_X86_KERNELS
    test_set(&nn_kernels_avx2, LSTM_KERNELS_AVX2, "avx2", 0);
    test_set(&nn_kernels_avx512, LSTM_KERNELS_AVX512, "avx512", 0);
    test_set(&nn_kernels_avx512bf16, LSTM_KERNELS_AVX512_BF16, "avx512bf16", 1);
#endif
    return check_summary();
}
