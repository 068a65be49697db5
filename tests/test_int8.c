/* test_int8.c - int8 products and quantized models: every int8 kernel set
 * against exact integer sums (shapes past every block), the same floats
 * from every set and thread count, the quantization rules of the file
 * format, the int8 LSTM against a plain re-computation of the scheme, the
 * step API against the sequence, and the files (round trip, bad files). */
#include "check.h"
#include "internal.h"
#include "nn.h"

#include <stdint.h>
#include <string.h>

static uint64_t rs = 88172645463325252ull;
static uint32_t rnd(void) {
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (uint32_t)(rs >> 11);
}
static int8_t rq(void) { /* extremes often */
    uint32_t r = rnd() % 8;
    return r == 0 ? 127 : r == 1 ? -127 : (int8_t)((int)(rnd() % 255) - 127);
}
static float rf(void) { return (float)((double)(rnd() % 2000001) / 1e6 - 1.0); }

static void test_kernels(void) {
    const int Ns[] = {1, 15, 16, 17, 33, 64, 100};
    const int Ks[] = {1, 3, 4, 5, 63, 257, 1030};
    const int Ms[] = {1, 2, 3, 4, 5, 9, 70};
    for (int ni = 0; ni < 7; ni++)
        for (int ki = 0; ki < 7; ki++) {
            int N = Ns[ni], K = Ks[ki], M = Ms[(ni + ki) % 7];
            int8_t *q = malloc((size_t)N * K);
            float *scale = malloc(sizeof(float) * N);
            for (int i = 0; i < N * K; i++)
                q[i] = rq();
            for (int n = 0; n < N; n++)
                scale[n] = rf() * 0.01f + 0.011f;
            void *buf = lstm_alloc_aligned(nn_q8_mat_size(N, K));
            nn_q8_mat w;
            nn_q8_mat_pack(&w, buf, q, scale, N, K);
            int8_t *qa = calloc((size_t)M, (size_t)w.Kp);
            float *sa = malloc(sizeof(float) * M);
            for (int m = 0; m < M; m++) {
                for (int k = 0; k < K; k++)
                    qa[(size_t)m * w.Kp + k] = rq();
                sa[m] = rf() * 0.1f + 0.2f;
            }
            int64_t *want = malloc(sizeof(int64_t) * M * N);
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++) {
                    int64_t s = 0;
                    for (int k = 0; k < K; k++)
                        s += (int64_t)qa[(size_t)m * w.Kp + k] * q[(size_t)n * K + k];
                    want[(size_t)m * N + n] = s;
                }
            int32_t *acc = malloc(sizeof(int32_t) * M * w.Np);
            float *C0 = malloc(sizeof(float) * M * N), *C = malloc(sizeof(float) * M * N);
            float *base = malloc(sizeof(float) * M * N);
            for (int i = 0; i < M * N; i++)
                base[i] = rf();
            int8_t *qu = malloc((size_t)M * w.Kp); /* as a u8 set stores them */
            for (size_t i = 0; i < (size_t)M * w.Kp; i++)
                qu[i] = (int8_t)(qa[i] ^ 0x80);
            for (int s = 0; nn_q8_kernels_at(s); s++) {
                const nn_q8_kernels *k = nn_q8_kernels_at(s);
                const int8_t *qk = k->u8 ? qu : qa;
                nn_q8_gemm_args a = {M, qk, w.Kp, sa, &w, acc, w.Np, NULL, 0, 0};
                k->gemm(&a, 0, w.Np / 16);
                int bad = 0;
                for (int m = 0; m < M; m++)
                    for (int n = 0; n < N; n++)
                        bad += acc[(size_t)m * w.Np + n] != want[(size_t)m * N + n];
                CHECK(bad == 0, "%s: %d of %d int32 sums differ from the exact ones (M %d N %d K %d)",
                      k->name, bad, M * N, M, N, K);
                for (int accu = 0; accu < 2; accu++) {
                    memcpy(C, base, sizeof(float) * M * N);
                    a = (nn_q8_gemm_args){M, qk, w.Kp, sa, &w, NULL, 0, C, N, accu};
                    k->gemm(&a, 0, w.Np / 16);
                    if (s == 0 && accu == 1)
                        memcpy(C0, C, sizeof(float) * M * N);
                    if (accu == 1) { /* every set writes the bits of the first */
                        CHECK(memcmp(C, C0, sizeof(float) * M * N) == 0,
                              "%s: floats differ from %s (M %d N %d K %d)", k->name,
                              nn_q8_kernels_at(0)->name, M, N, K);
                    }
                    float v = (float)want[0] * (sa[0] * scale[0]);
                    float e = accu ? base[0] + v : v;
                    CHECK(C[0] == e, "%s: C[0] = %g, want %g", k->name, (double)C[0], (double)e);
                }
            }
            free(q), free(scale), lstm_free_aligned(buf), free(qa), free(qu), free(sa), free(want);
            free(acc), free(C0), free(C), free(base);
        }
}

/* Every set's vector quantization gives the scalar rule's bits. */
static void test_quantize_sets(void) {
    for (int K = 1; K < 70; K += 3) {
        float a[70];
        for (int k = 0; k < K; k++) /* ties after scaling: halves of 127ths */
            a[k] = (rnd() % 3 == 0) ? (float)((int)(rnd() % 255) - 127) / 2 : rf();
        int Kp = (K + 3) / 4 * 4;
        int8_t want[72], got[72];
        float sw = nn_q8_quantize_row(want, a, K, Kp);
        for (int s = 0; nn_q8_kernels_at(s); s++) {
            memset(got, 55, sizeof got);
            float sg = nn_q8_kernels_at(s)->quantize_row(got, a, K, Kp);
            for (int k = 0; nn_q8_kernels_at(s)->u8 && k < Kp; k++)
                got[k] = (int8_t)(got[k] ^ 0x80); /* stored as q + 128 */
            CHECK(sg == sw && memcmp(got, want, (size_t)Kp) == 0,
                  "%s: quantize_row of K %d differs from the rule", nn_q8_kernels_at(s)->name, K);
        }
    }
}

static void test_quantize_rules(void) {
    float a[7] = {0.5f, -1.0f, 0.25f, 0.0f, 1.0f / 254, -0.75f, 3.0f / 254};
    int8_t q[8];
    float s = nn_q8_quantize_row(q, a, 7, 8);
    CHECK(s == 1.0f / 127, "s_a %g", (double)s);
    /* 0.5 * 127 = 63.5 -> 64 (even), 1/254 * 127 = 0.5 -> 0, 3/254 * 127 = 1.5 -> 2 */
    CHECK(q[0] == 64 && q[1] == -127 && q[2] == 32 && q[3] == 0 && q[4] == 0 && q[5] == -95 &&
              q[6] == 2 && q[7] == 0,
          "q = %d %d %d %d %d %d %d %d", q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7]);
    float z[3] = {0, 0, 0};
    CHECK(nn_q8_quantize_row(q, z, 3, 4) == 0 && q[0] == 0, "zero row");
    float n[3] = {1, NAN, 2};
    CHECK(isnan(nn_q8_quantize_row(q, n, 3, 4)), "a NaN row gives a NaN scale");
    float w[2 * 3] = {0.254f, -0.127f, 0.0f, 0, 0, 0};
    float sc[2];
    nn_q8_quantize_weights(q, sc, w, 2, 3);
    CHECK(sc[0] == 0.254f / 127 && sc[1] == 0, "scales %g %g", (double)sc[0], (double)sc[1]);
    CHECK(q[0] == 127 && q[1] == -64 && q[2] == 0 && q[3] == 0 && q[5] == 0,
          "q %d %d %d (0.127/0.002 = 63.5 -> 64)", q[0], q[1], q[2]);
}

/* The scheme re-computed plainly: one sequence (len steps) through an
 * LSTM of L layers, D directions, with the reference pointwise cell. */
typedef struct {
    int I, H, P, L, D, T, B;
    const int *lengths;
} cfg_t;

static void q8_row_product(float *out, const float *a, int K, const int8_t *q, const float *sc,
                           int N, int accumulate) {
    int8_t *qa = malloc((size_t)K + 4);
    float s = nn_q8_quantize_row(qa, a, K, K);
    for (int n = 0; n < N; n++) {
        int32_t acc = 0;
        for (int k = 0; k < K; k++)
            acc += (int32_t)qa[k] * q[(size_t)n * K + k];
        float v = (float)acc * (s * sc[n]);
        out[n] = accumulate ? out[n] + v : v;
    }
    free(qa);
}

static void emulate(const cfg_t *c, lstm_params *p, const float *x, float *y) {
    int H = c->H, Ho = c->P ? c->P : H, W = c->D * Ho;
    int I0 = c->I;
    float *in = malloc(sizeof(float) * (size_t)c->T * (I0 > W ? I0 : W));
    float *out = malloc(sizeof(float) * (size_t)c->T * W);
    float *g = malloc(sizeof(float) * 4 * H), *h = malloc(sizeof(float) * H);
    float *cc = malloc(sizeof(float) * H), *hp = malloc(sizeof(float) * Ho);
    float *r = malloc(sizeof(float) * H), *cn = malloc(sizeof(float) * H);
    for (int b = 0; b < c->B; b++) {
        int len = c->lengths ? c->lengths[b] : c->T, In = I0;
        for (int t = 0; t < len; t++)
            memcpy(in + (size_t)t * In, x + ((size_t)t * c->B + b) * I0, sizeof(float) * I0);
        for (int l = 0; l < c->L; l++) {
            for (int d = 0; d < c->D; d++) {
                char nm[64];
                const char *sf = d ? "_reverse" : "";
#define Q(kind, var, svar)                                                        \
    snprintf(nm, sizeof nm, kind "%d%s", l, sf);                                 \
    int var##i = lstm_params_find(p, nm), var##f;                                \
    const nn_q8_mat *var##m = lstm_params_q8(p, var##i, &var##f);                \
    (void)var##m;
                Q("weight_ih_l", wih, sih)
                Q("weight_hh_l", whh, shh)
                snprintf(nm, sizeof nm, "bias_ih_l%d%s", l, sf);
                const float *bi = lstm_params_data(p, lstm_params_find(p, nm));
                snprintf(nm, sizeof nm, "bias_hh_l%d%s", l, sf);
                const float *bh = lstm_params_data(p, lstm_params_find(p, nm));
                /* q and scales back from the floats (scale * q): exact */
                int8_t *qih = malloc((size_t)4 * H * In), *qhh = malloc((size_t)4 * H * Ho);
                float *sih = malloc(sizeof(float) * 4 * H), *shh = malloc(sizeof(float) * 4 * H);
                nn_q8_quantize_weights(qih, sih, lstm_params_data(p, wihi), 4 * H, In);
                nn_q8_quantize_weights(qhh, shh, lstm_params_data(p, whhi), 4 * H, Ho);
                int8_t *qhr = NULL;
                float *shr = NULL;
                if (c->P) {
                    snprintf(nm, sizeof nm, "weight_hr_l%d%s", l, sf);
                    qhr = malloc((size_t)c->P * H);
                    shr = malloc(sizeof(float) * c->P);
                    nn_q8_quantize_weights(qhr, shr, lstm_params_data(p, lstm_params_find(p, nm)),
                                           c->P, H);
                }
                memset(hp, 0, sizeof(float) * Ho);
                memset(cc, 0, sizeof(float) * H);
                for (int s = 0; s < len; s++) {
                    int t = d ? len - 1 - s : s;
                    q8_row_product(g, in + (size_t)t * In, In, qih, sih, 4 * H, 0);
                    q8_row_product(g, hp, Ho, qhh, shh, 4 * H, 1);
                    for (int j = 0; j < 4 * H; j++)
                        g[j] = g[j] + (bi[j] + bh[j]);
                    nn_cell_pointwise_forward(1, H, g, cc, cn, r, 0, H);
                    memcpy(cc, cn, sizeof(float) * H);
                    if (c->P)
                        q8_row_product(hp, r, H, qhr, shr, c->P, 0);
                    else
                        memcpy(hp, r, sizeof(float) * H);
                    memcpy(out + (size_t)t * W + d * Ho, hp, sizeof(float) * Ho);
                }
                free(qih), free(qhh), free(sih), free(shh), free(qhr), free(shr);
            }
            In = W;
            memcpy(in, out, sizeof(float) * (size_t)len * W);
        }
        for (int t = 0; t < c->T; t++)
            for (int j = 0; j < W; j++)
                y[((size_t)t * c->B + b) * W + j] = t < len ? out[(size_t)t * W + j] : 0;
    }
    free(in), free(out), free(g), free(h), free(cc), free(hp), free(r), free(cn);
}

static void test_lstm(void) {
    static const int lens[4] = {5, 2, 7, 1};
    const cfg_t cfgs[] = {
        {5, 20, 0, 2, 1, 7, 3, NULL}, {6, 33, 7, 2, 1, 6, 2, NULL},
        {4, 17, 0, 2, 2, 7, 4, lens}, {3, 40, 9, 1, 2, 5, 1, NULL},
    };
    for (size_t ci = 0; ci < sizeof cfgs / sizeof *cfgs; ci++) {
        const cfg_t *c = &cfgs[ci];
        lstm_error err;
        lstm_params *p = lstm_params_create();
        lstm_rnn_config rc = lstm_rnn_config_default(c->I, c->H);
        rc.num_layers = c->L;
        rc.bidirectional = c->D == 2;
        rc.proj_size = c->P;
        lstm_rnn *rnn = lstm_rnn_create(&rc, p, "", &err);
        CHECK(rnn && !lstm_params_alloc(p, &err), "create: %s", err.msg);
        lstm_rng rng;
        lstm_rng_seed(&rng, 7 + ci);
        lstm_rnn_reset_parameters(rnn, p, &rng);
        for (int i = 0; i < lstm_params_count(p); i++)
            if (lstm_params_ndim(p, i) == 2)
                CHECK(!lstm_params_quantize(p, i, &err), "quantize: %s", err.msg);
        int Ho = c->P ? c->P : c->H, W = c->D * Ho;
        size_t nx = (size_t)c->T * c->B * c->I, ny = (size_t)c->T * c->B * W;
        float *x = malloc(sizeof(float) * nx), *y = malloc(sizeof(float) * ny);
        float *want = malloc(sizeof(float) * ny), *y0 = malloc(sizeof(float) * ny);
        for (size_t i = 0; i < nx; i++)
            x[i] = lstm_rng_normal(&rng);
        emulate(c, p, x, want);
        lstm_rnn_io io = {.T = c->T, .B = c->B, .x = x, .y = y, .lengths = c->lengths};
        for (int ki = 0; ki < 3; ki++) {
            lstm_kernels kk[3] = {LSTM_KERNELS_REFERENCE, LSTM_KERNELS_AUTO, LSTM_KERNELS_AUTO};
            lstm_ctx_config cc = {ki == 2 ? 2 : 1, kk[ki], LSTM_BLAS_AUTO};
            lstm_ctx *ctx = lstm_ctx_create(&cc, &err);
            CHECK(lstm_rnn_forward(rnn, ctx, p, &io, 1, &rng, &err) == LSTM_ERR_UNSUPPORTED,
                  "training an int8 LSTM is refused");
            CHECK(!lstm_rnn_forward(rnn, ctx, p, &io, 0, NULL, &err), "forward: %s", err.msg);
            /* a row quantized right at a rounding tie may go either way
             * after the float sums' order: one quantum of one input */
            CHECK_CLOSE(y, want, ny, 2e-3, 0, "cfg %zu on %s/%s: int8 LSTM against the scheme",
                        ci, lstm_ctx_kernels(ctx), lstm_ctx_int8_kernels(ctx));
            if (ki == 1)
                memcpy(y0, y, sizeof(float) * ny);
            if (ki == 2)
                CHECK(memcmp(y, y0, sizeof(float) * ny) == 0, "2 threads give the bits of 1");
            if (c->D == 1 && !c->lengths) { /* the step API: the same bits */
                float *h = calloc((size_t)c->L * c->B * Ho, sizeof(float));
                float *cs = calloc((size_t)c->L * c->B * c->H, sizeof(float));
                float *ys = malloc(sizeof(float) * ny);
                for (int t = 0; t < c->T; t++)
                    CHECK(!lstm_rnn_step(rnn, ctx, p, c->B, x + (size_t)t * c->B * c->I, h, cs,
                                         ys + (size_t)t * c->B * W, &err),
                          "step: %s", err.msg);
                CHECK(memcmp(ys, y, sizeof(float) * ny) == 0,
                      "cfg %zu on %s: step API and sequence give the same bits", ci,
                      lstm_ctx_int8_kernels(ctx));
                free(h), free(cs), free(ys);
            }
            lstm_ctx_free(ctx);
        }
        free(x), free(y), free(want), free(y0);
        lstm_rnn_free(rnn);
        lstm_params_free(p);
    }
}

/* Files: the int8 form round trip, and each malformed int8 tensor refused. */
static void test_files(void) {
    lstm_error err;
    lstm_params *p = lstm_params_create();
    int64_t sh[2] = {5, 9}, bs[1] = {5};
    int wi = lstm_params_declare(p, "dec.weight", 2, sh, &err);
    int bi = lstm_params_declare(p, "dec.bias", 1, bs, &err);
    lstm_params_alloc(p, &err);
    float w[45], b[5];
    for (int i = 0; i < 45; i++)
        w[i] = rf();
    for (int i = 0; i < 5; i++)
        b[i] = rf();
    w[9 * 2 + 3] = 0; /* keep one row all zero */
    for (int k = 0; k < 9; k++)
        w[9 * 2 + k] = 0;
    lstm_params_set(p, wi, w, 45, &err);
    lstm_params_set(p, bi, b, 5, &err);
    CHECK(!lstm_params_quantize(p, wi, &err) && lstm_params_is_int8(p, wi) &&
              !lstm_params_is_int8(p, bi),
          "quantize: %s", err.msg);
    CHECK(lstm_params_quantize(p, bi, &err) == LSTM_ERR_SHAPE, "a vector is not quantized");
    const float *dq = lstm_params_data(p, wi);
    int within = 1;
    for (int n = 0; n < 5; n++) {
        float m = 0;
        for (int k = 0; k < 9; k++)
            m = fabsf(w[n * 9 + k]) > m ? fabsf(w[n * 9 + k]) : m;
        for (int k = 0; k < 9; k++)
            within &= fabsf(dq[n * 9 + k] - w[n * 9 + k]) <= m / 254 * 1.0001f;
    }
    CHECK(within, "each weight within half a step of its row's scale");
    lstm_st_writer *wr = lstm_st_writer_create();
    void *buf = NULL;
    size_t len = 0;
    CHECK(!lstm_params_write(p, wr, "", &err) && !lstm_st_writer_to_memory(wr, &buf, &len, &err),
          "write: %s", err.msg);
    lstm_st *st = lstm_st_from_memory(buf, len, "q.st", &err);
    CHECK(st && lstm_st_find(st, "dec.weight.int8") && lstm_st_find(st, "dec.weight.scale") &&
              !lstm_st_find(st, "dec.weight") && lstm_st_find(st, "dec.bias") &&
              lstm_st_meta(st, "lstm.quantization") &&
              strcmp(lstm_st_meta(st, "lstm.quantization"), "int8-rowwise") == 0,
          "the file holds NAME.int8, NAME.scale, the float bias and the metadata");
    const lstm_st_tensor *qt = lstm_st_find(st, "dec.weight.int8");
    CHECK(qt && qt->dtype == LSTM_DT_I8 && qt->shape[0] == 5 && qt->shape[1] == 9, "I8 (5, 9)");
    lstm_params *p2 = lstm_params_create();
    lstm_params_declare(p2, "dec.weight", 2, sh, &err);
    lstm_params_declare(p2, "dec.bias", 1, bs, &err);
    lstm_params_alloc(p2, &err);
    CHECK(!lstm_params_read(p2, st, "", 1, &err) && lstm_params_is_int8(p2, 0),
          "read back (strict): %s", err.msg);
    CHECK(memcmp(lstm_params_data(p2, 0), dq, sizeof(float) * 45) == 0, "the same scale * q");
    /* the linear layer in int8 against the scheme */
    lstm_ctx *ctx = lstm_ctx_create(NULL, &err);
    float in[2 * 9], out[2 * 5], ref[2 * 5];
    for (int i = 0; i < 18; i++)
        in[i] = rf();
    CHECK(!lstm_params_linear_forward(ctx, p2, 0, 1, out, in, 2, &err), "linear: %s", err.msg);
    int8_t q[45];
    float sc[5];
    nn_q8_quantize_weights(q, sc, dq, 5, 9);
    for (int r = 0; r < 2; r++) {
        q8_row_product(ref + r * 5, in + r * 9, 9, q, sc, 5, 0);
        for (int o = 0; o < 5; o++)
            ref[r * 5 + o] += b[o];
    }
    CHECK(memcmp(out, ref, sizeof out) == 0, "int8 linear layer: the scheme's bits");
    lstm_ctx_free(ctx);
    lstm_st_free(st);
    free(buf);
    lstm_st_writer_free(wr);

    /* malformed: -128, a wrong dtype, a missing or negative scale */
    int8_t bad[45];
    memset(bad, 1, sizeof bad);
    float scl[5] = {1, 1, 1, 1, 1};
    for (int c = 0; c < 4; c++) {
        lstm_st_writer *ww = lstm_st_writer_create();
        int8_t qq[45];
        memcpy(qq, bad, sizeof qq);
        float ss[5];
        memcpy(ss, scl, sizeof ss);
        if (c == 0)
            qq[7] = -128;
        if (c == 3)
            ss[2] = -1;
        lstm_st_writer_add(ww, "dec.weight.int8", c == 1 ? LSTM_DT_U8 : LSTM_DT_I8, 2, sh, qq,
                           &err);
        if (c != 2)
            lstm_st_writer_add(ww, "dec.weight.scale", LSTM_DT_F32, 1, bs, ss, &err);
        lstm_st_writer_add(ww, "dec.bias", LSTM_DT_F32, 1, bs, b, &err);
        lstm_st_writer_to_memory(ww, &buf, &len, &err);
        lstm_st *s2 = lstm_st_from_memory(buf, len, "bad.st", &err);
        lstm_status s = lstm_params_read(p2, s2, "", 1, &err);
        CHECK(s == (c == 0 || c == 3 ? LSTM_ERR_FORMAT : LSTM_ERR_SHAPE) &&
                  strstr(err.msg, "bad.st"),
              "malformed case %d refused: %s", c, err.msg);
        lstm_st_free(s2);
        free(buf);
        lstm_st_writer_free(ww);
    }
    lstm_params_free(p2);
    lstm_params_free(p);
}

int main(void) {
    for (int s = 0; nn_q8_kernels_at(s); s++)
        printf("ok int8 kernel set %s\n", nn_q8_kernels_at(s)->name);
    if (strcmp(nn_q8_kernels_at(0)->name, "avxvnni") != 0 &&
        (nn_q8_kernels_at(1) == NULL || strcmp(nn_q8_kernels_at(1)->name, "avxvnni") != 0))
        printf("ok skipping: avxvnni (this processor lacks AVX-VNNI)\n");
    test_quantize_rules();
    test_quantize_sets();
    test_kernels();
    test_lstm();
    test_files();
    return check_summary();
}
