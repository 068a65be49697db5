/*
 * test_lstm.c - the LSTM module against PyTorch (fixtures written by
 * tests/gen_fixtures.py), every kernel set against the reference kernels,
 * the step API against the sequence API, and its argument checks.
 *
 * Tolerances. The fixtures are float64 computations on float32 inputs;
 * PyTorch's own float32 run lands within 8e-7 of them. We allow
 * |got - want| <= 1e-5 + 1e-4 |want| for outputs and gradients, and
 * require exact zeros where PyTorch has them (padding).
 */
#define _GNU_SOURCE /* RTLD_NEXT (dlfcn.h) for the counted cblas_sgemm, on glibc before 2.34 */
#include "check.h"
#include "lstm.h"

#include <dirent.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <time.h>

#define ATOL 1e-5
#define RTOL 1e-4

#ifdef LSTM_HAVE_OPENBLAS
#include <dlfcn.h>

/* OpenBLAS's cblas_sgemm, counted: this definition in the program takes
 * the library's calls (a symbol of the executable wins over the shared
 * library's) and hands them on to OpenBLAS's. It tells whether a context
 * multiplies with the BLAS without relying on the BLAS to give other bits
 * than the built-in GEMM: OpenBLAS's generic x86 kernel (the one it picks
 * on a processor it does not know, without OPENBLAS_CORETYPE) sums as the
 * built-in generic kernel does, bit for bit. The prototype is cblas.h's
 * with its enums as int and blasint as int (Debian's 32-bit-index
 * OpenBLAS); cblas.h itself is not included, for its complex.h defines I. */
typedef void sgemm_fn(int, int, int, int, int, int, float, const float *, int, const float *, int,
                      float, float *, int);
sgemm_fn cblas_sgemm;
static long blas_calls;

void cblas_sgemm(int order, int ta, int tb, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    static sgemm_fn *real;
    sgemm_fn *f = __atomic_load_n(&real, __ATOMIC_ACQUIRE);
    if (!f) {
        void *sym = dlsym(RTLD_NEXT, "cblas_sgemm");
        if (!sym) { /* a BLAS linked statically: nothing after this program */
            fprintf(stderr, "test_lstm: no cblas_sgemm after the program's own\n");
            abort();
        }
        memcpy(&f, &sym, sizeof f);
        __atomic_store_n(&real, f, __ATOMIC_RELEASE);
    }
    __atomic_fetch_add(&blas_calls, 1, __ATOMIC_RELAXED);
    f(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
#endif

static const char *fixtures = "tests/fixtures";

/* A float copy of a fixture tensor, or NULL when absent. */
static float *get(const lstm_st *st, const char *name, size_t *n) {
    const lstm_st_tensor *t = lstm_st_find(st, name);
    if (!t)
        return NULL;
    float *v = malloc(sizeof(float) * (t->numel ? t->numel : 1));
    lstm_error err;
    if (lstm_st_read_f32(st, t, v, t->numel, &err)) {
        printf("cannot read %s: %s\n", name, err.msg);
        free(v);
        return NULL;
    }
    if (n)
        *n = t->numel;
    return v;
}

static int meta_int(const lstm_st *st, const char *key) {
    const char *v = lstm_st_meta(st, key);
    return v ? atoi(v) : -1;
}

typedef struct {
    lstm_kernels kernels;
    int threads;
    lstm_blas blas;
    const char *name;
} variant;

static variant variants[16];
static int nvariants;

static void add_variant(lstm_kernels k, int threads, lstm_blas blas, const char *name) {
    lstm_ctx_config cc = {threads, k, blas};
    lstm_ctx *ctx = lstm_ctx_create(&cc, NULL);
    if (!ctx) {
        printf("ok skipping %s: not supported here\n", name);
        return;
    }
    lstm_ctx_free(ctx);
    if (blas == LSTM_BLAS_ON && strcmp(lstm_blas_name(), "none") == 0) {
        printf("ok skipping %s: no BLAS linked in\n", name);
        return;
    }
    variants[nvariants++] = (variant){k, threads, blas, name};
}

static int all_zero_past_lengths(const float *v, const int *len, int T, int B, int F, int bf) {
    for (int b = 0; b < B; b++)
        for (int t = len[b]; t < T; t++)
            for (int f = 0; f < F; f++) {
                size_t row = bf ? (size_t)b * T + t : (size_t)t * B + b;
                if (v[row * F + f] != 0)
                    return 0;
            }
    return 1;
}

static void run_fixture(const char *path, const variant *var) {
    lstm_error err;
    lstm_st *st = lstm_st_open(path, &err);
    CHECK(st != NULL, "%s: %s", path, err.msg);
    if (!st)
        return;
    lstm_rnn_config cfg;
    CHECK(lstm_rnn_config_infer(&cfg, st, "", &err) == LSTM_OK, "%s: infer: %s", path, err.msg);
    cfg.batch_first = meta_int(st, "batch_first");
    CHECK(cfg.hidden_size == meta_int(st, "hidden_size") &&
              cfg.num_layers == meta_int(st, "num_layers") &&
              cfg.proj_size == meta_int(st, "proj_size") &&
              cfg.bidirectional == meta_int(st, "bidirectional") &&
              cfg.bias == meta_int(st, "bias") && cfg.input_size == meta_int(st, "input_size"),
          "%s: configuration inferred from the tensors", path);
    int T = meta_int(st, "T"), B = meta_int(st, "B");
    int D = cfg.bidirectional ? 2 : 1;
    int Ho = cfg.proj_size ? cfg.proj_size : cfg.hidden_size;

    lstm_ctx_config cc = {var->threads, var->kernels, var->blas};
    lstm_ctx *ctx = lstm_ctx_create(&cc, &err);
    lstm_params *p = lstm_params_create();
    lstm_rnn *rnn = lstm_rnn_create(&cfg, p, "", &err);
    CHECK(rnn != NULL, "%s: create: %s", path, err.msg);
    lstm_params_alloc(p, &err);
    CHECK(lstm_params_read(p, st, "", 0, &err) == LSTM_OK, "%s: read: %s", path, err.msg);

    size_t nx, ny, nh, nc;
    float *x = get(st, "input", &nx), *h0 = get(st, "h0", NULL), *c0 = get(st, "c0", NULL);
    float *want_y = get(st, "output", &ny), *want_hn = get(st, "h_n", &nh);
    float *want_cn = get(st, "c_n", &nc);
    float *gy = get(st, "grad_output", NULL), *ghn = get(st, "grad_h_n", NULL);
    float *gcn = get(st, "grad_c_n", NULL);
    int *len = NULL;
    const lstm_st_tensor *lt = lstm_st_find(st, "lengths");
    if (lt) {
        int64_t l64[64];
        lstm_st_read_i64(st, lt, l64, lt->numel, &err);
        len = malloc(sizeof(int) * B);
        for (int b = 0; b < B; b++)
            len[b] = (int)l64[b];
    }
    float *y = calloc(ny, sizeof(float)), *hn = calloc(nh, sizeof(float));
    float *cn = calloc(nc, sizeof(float));
    lstm_rnn_io io = {T, B, x, len, h0, c0, y, hn, cn};
    CHECK(lstm_rnn_forward(rnn, ctx, p, &io, 1, NULL, &err) == LSTM_OK, "%s: forward: %s", path,
          err.msg);
    CHECK_CLOSE(y, want_y, ny, ATOL, RTOL, "%s [%s]: output", path, var->name);
    CHECK_CLOSE(hn, want_hn, nh, ATOL, RTOL, "%s [%s]: h_n", path, var->name);
    CHECK_CLOSE(cn, want_cn, nc, ATOL, RTOL, "%s [%s]: c_n", path, var->name);
    if (len)
        CHECK(all_zero_past_lengths(y, len, T, B, D * Ho, cfg.batch_first),
              "%s: output exactly zero past each length", path);

    float *dx = calloc(nx, sizeof(float)), *dh0 = calloc(nh, sizeof(float));
    float *dc0 = calloc(nc, sizeof(float));
    lstm_rnn_grads g = {.dy = gy, .dhn = ghn, .dcn = gcn, .dx = dx, .dh0 = h0 ? dh0 : NULL, .dc0 = h0 ? dc0 : NULL};
    CHECK(lstm_rnn_backward(rnn, ctx, p, &g, &err) == LSTM_OK, "%s: backward: %s", path, err.msg);
    float *want = get(st, "grad.input", NULL);
    CHECK_CLOSE(dx, want, nx, ATOL, RTOL, "%s [%s]: grad input", path, var->name);
    free(want);
    if (len)
        CHECK(all_zero_past_lengths(dx, len, T, B, cfg.input_size, cfg.batch_first),
              "%s: input gradient exactly zero past each length", path);
    if (h0) {
        want = get(st, "grad.h0", NULL);
        CHECK_CLOSE(dh0, want, nh, ATOL, RTOL, "%s [%s]: grad h0", path, var->name);
        free(want);
        want = get(st, "grad.c0", NULL);
        CHECK_CLOSE(dc0, want, nc, ATOL, RTOL, "%s [%s]: grad c0", path, var->name);
        free(want);
    }
    for (int i = 0; i < lstm_params_count(p); i++) {
        char name[300];
        snprintf(name, sizeof name, "grad.%s", lstm_params_name(p, i));
        want = get(st, name, NULL);
        CHECK(want != NULL, "%s: fixture has %s", path, name);
        if (want)
            CHECK_CLOSE(lstm_params_grad(p, i), want, lstm_params_numel(p, i), ATOL, RTOL,
                        "%s [%s]: %s", path, var->name, name);
        free(want);
    }

    free(x), free(h0), free(c0), free(want_y), free(want_hn), free(want_cn), free(gy), free(ghn);
    free(gcn), free(len), free(y), free(hn), free(cn), free(dx), free(dh0), free(dc0);
    lstm_rnn_free(rnn);
    lstm_params_free(p);
    lstm_ctx_free(ctx);
    lstm_st_free(st);
}

static void test_fixtures(void) {
    DIR *dir = opendir(fixtures);
    CHECK(dir != NULL, "fixture directory %s (run from the repository root)", fixtures);
    if (!dir)
        return;
    char *names[128];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) && n < 128)
        if (strncmp(e->d_name, "lstm_", 5) == 0 && strstr(e->d_name, ".safetensors"))
            names[n++] = strdup(e->d_name);
    closedir(dir);
    CHECK(n >= 20, "found %d LSTM fixtures", n);
    for (int i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", fixtures, names[i]);
        for (int v = 0; v < nvariants; v++)
            run_fixture(path, &variants[v]);
        free(names[i]);
    }
}

/* ------------------------------------------------------------------ */
/* ONNX's options against ONNX Runtime (tests/gen_onnx_fixtures.py): the
 * configuration, clip and input_forget included, is inferred from the file
 * as `lstm forward` infers it. Forward only: ONNX Runtime has no backward
 * for LSTM (test_grad checks it by finite differences). */

static void run_onnx_fixture(const char *path, const variant *var) {
    lstm_error err;
    lstm_st *st = lstm_st_open(path, &err);
    CHECK(st != NULL, "%s: %s", path, err.msg);
    if (!st)
        return;
    lstm_rnn_config cfg;
    CHECK(lstm_rnn_config_infer(&cfg, st, "", &err) == LSTM_OK, "%s: infer: %s", path, err.msg);
    const char *clip = lstm_st_meta(st, "lstm.clip");
    CHECK(cfg.peephole == meta_int(st, "peephole") &&
              cfg.clip == (clip ? strtof(clip, NULL) : 0) &&
              cfg.input_forget == (lstm_st_meta(st, "lstm.input_forget") != NULL) &&
              cfg.reverse == (lstm_st_meta(st, "lstm.reverse") != NULL) &&
              cfg.bidirectional == meta_int(st, "bidirectional"),
          "%s: peephole, clip, input_forget, reverse inferred (%d %g %d %d)", path, cfg.peephole,
          (double)cfg.clip, cfg.input_forget, cfg.reverse);
    int T = meta_int(st, "T"), B = meta_int(st, "B");
    lstm_ctx_config cc = {var->threads, var->kernels, var->blas};
    lstm_ctx *ctx = lstm_ctx_create(&cc, &err);
    lstm_params *p = lstm_params_create();
    lstm_rnn *rnn = lstm_rnn_create(&cfg, p, "", &err);
    CHECK(rnn != NULL, "%s: create: %s", path, err.msg);
    lstm_params_alloc(p, &err);
    CHECK(lstm_params_read(p, st, "", 0, &err) == LSTM_OK, "%s: read: %s", path, err.msg);
    size_t ny, nh, nc;
    float *x = get(st, "input", NULL), *h0 = get(st, "h0", NULL), *c0 = get(st, "c0", NULL);
    float *want_y = get(st, "output", &ny), *want_hn = get(st, "h_n", &nh);
    float *want_cn = get(st, "c_n", &nc);
    int len[64], *lp = NULL;
    const lstm_st_tensor *lt = lstm_st_find(st, "lengths");
    if (lt) {
        int64_t l64[64];
        lstm_st_read_i64(st, lt, l64, lt->numel, &err);
        for (int b = 0; b < B; b++)
            len[b] = (int)l64[b];
        lp = len;
    }
    float *y = calloc(ny, sizeof(float)), *hn = calloc(nh, sizeof(float));
    float *cn = calloc(nc, sizeof(float));
    lstm_rnn_io io = {T, B, x, lp, h0, c0, y, hn, cn};
    CHECK(lstm_rnn_forward(rnn, ctx, p, &io, 0, NULL, &err) == LSTM_OK, "%s: forward: %s", path,
          err.msg);
    /* ONNX Runtime's sigmoid and tanh are approximations (MLAS) */
    CHECK_CLOSE(y, want_y, ny, 2e-5, 1e-4, "%s [%s]: output", path, var->name);
    CHECK_CLOSE(hn, want_hn, nh, 2e-5, 1e-4, "%s [%s]: h_n", path, var->name);
    CHECK_CLOSE(cn, want_cn, nc, 2e-5, 1e-4, "%s [%s]: c_n", path, var->name);
    free(x), free(h0), free(c0), free(want_y), free(want_hn), free(want_cn);
    free(y), free(hn), free(cn);
    lstm_rnn_free(rnn);
    lstm_params_free(p);
    lstm_ctx_free(ctx);
    lstm_st_free(st);
}

static void test_onnx_fixtures(void) {
    static const char *const names[] = {"peephole",
                                        "clip",
                                        "input_forget",
                                        "peephole_clip_input_forget",
                                        "peephole_bidir_lengths",
                                        "reverse",
                                        "reverse_lengths_h0",
                                        "reverse_peephole_clip_input_forget"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/onnx_lstm_%s.safetensors", fixtures, names[i]);
        for (int v = 0; v < nvariants; v++)
            run_onnx_fixture(path, &variants[v]);
    }
}

/* The metadata that carries clip and input_forget: written by
 * lstm_rnn_config_write_meta, read back by lstm_rnn_config_infer; bad
 * values and unknown "lstm." keys refused by name. */
static lstm_status infer_with_meta(const lstm_rnn_config *opts, const char *key, const char *value,
                                   lstm_rnn_config *out, lstm_error *err) {
    lstm_st_writer *w = lstm_st_writer_create();
    float wih[4 * 2 * 3] = {0}, whh[4 * 2 * 2] = {0}, pp[3 * 2] = {0};
    int64_t s_ih[2] = {8, 3}, s_hh[2] = {8, 2}, s_p[1] = {6};
    lstm_st_writer_add(w, "weight_ih_l0", LSTM_DT_F32, 2, s_ih, wih, NULL);
    lstm_st_writer_add(w, "weight_hh_l0", LSTM_DT_F32, 2, s_hh, whh, NULL);
    if (opts && opts->peephole)
        lstm_st_writer_add(w, "weight_peephole_l0", LSTM_DT_F32, 1, s_p, pp, NULL);
    if (opts)
        lstm_rnn_config_write_meta(opts, w, NULL);
    if (key)
        lstm_st_writer_meta(w, key, value, NULL);
    lstm_st_writer_meta(w, "lstm.task", "lm", NULL); /* a model file's key: passed over */
    void *buf;
    size_t n;
    lstm_st_writer_to_memory(w, &buf, &n, NULL);
    lstm_st_writer_free(w);
    lstm_st *st = lstm_st_from_memory(buf, n, "meta.safetensors", NULL);
    lstm_status s = lstm_rnn_config_infer(out, st, "", err);
    lstm_st_free(st);
    free(buf);
    return s;
}

static void test_options_meta(void) {
    lstm_rnn_config opts = lstm_rnn_config_default(3, 2), got;
    lstm_error err;
    opts.peephole = 1;
    opts.clip = 0.1f; /* not exact in binary: must come back as the same float */
    opts.input_forget = 1;
    CHECK(infer_with_meta(&opts, NULL, NULL, &got, &err) == LSTM_OK && got.peephole == 1 &&
              got.clip == 0.1f && got.input_forget == 1 && got.bias == 0,
          "options written and inferred back: %s", err.msg);
    CHECK(infer_with_meta(NULL, NULL, NULL, &got, &err) == LSTM_OK && !got.peephole &&
              got.clip == 0 && !got.input_forget && !got.reverse,
          "no options without their tensor and keys");
    lstm_rnn_config rev = lstm_rnn_config_default(3, 2);
    rev.reverse = 1;
    CHECK(infer_with_meta(&rev, NULL, NULL, &got, &err) == LSTM_OK && got.reverse == 1 &&
              !got.bidirectional && !got.input_forget,
          "reverse written and inferred back: %s", err.msg);
    CHECK(infer_with_meta(NULL, "lstm.reverse", "0", &got, &err) == LSTM_OK && !got.reverse,
          "lstm.reverse = \"0\" read: %s", err.msg);
    static const struct {
        const char *key, *value;
    } bad[] = {{"lstm.clip", "abc"},        {"lstm.clip", "-1"},     {"lstm.clip", "3x"},
               {"lstm.clip", "nan"},        {"lstm.clip", ""},       {"lstm.input_forget", "2"},
               {"lstm.input_forget", "yes"}, {"lstm.peephole", "1"}, {"lstm.clipp", "3"},
               {"lstm.reverse", "2"},        {"lstm.reverse", ""},    {"lstm.reverse", "true"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        lstm_status s = infer_with_meta(NULL, bad[i].key, bad[i].value, &got, &err);
        CHECK(s == LSTM_ERR_FORMAT && strstr(err.msg, bad[i].key) &&
                  strstr(err.msg, "meta.safetensors"),
              "metadata %s = \"%s\" refused by name: %s", bad[i].key, bad[i].value, err.msg);
    }
    CHECK(infer_with_meta(NULL, "lstm.clip", "3", &got, &err) == LSTM_OK && got.clip == 3,
          "lstm.clip = \"3\" read: %s", err.msg);
    lstm_rnn_config c = lstm_rnn_config_default(3, 2);
    c.clip = -1;
    CHECK(lstm_rnn_config_check(&c, &err) == LSTM_ERR_INVALID, "a negative clip is refused");
    c.clip = 0;
    c.peephole = 2;
    CHECK(lstm_rnn_config_check(&c, &err) == LSTM_ERR_INVALID, "peephole 2 is refused");
    c.peephole = 0;
    c.reverse = 1;
    c.bidirectional = 1;
    CHECK(lstm_rnn_config_check(&c, &err) == LSTM_ERR_INVALID && strstr(err.msg, "reverse"),
          "reverse with bidirectional is refused: %s", err.msg);
    /* a file with a bidirectional LSTM's tensors and lstm.reverse = "1" */
    lstm_st_writer *w = lstm_st_writer_create();
    float wih[8 * 3] = {0}, whh[8 * 2] = {0};
    int64_t s_ih[2] = {8, 3}, s_hh[2] = {8, 2};
    lstm_st_writer_add(w, "weight_ih_l0", LSTM_DT_F32, 2, s_ih, wih, NULL);
    lstm_st_writer_add(w, "weight_hh_l0", LSTM_DT_F32, 2, s_hh, whh, NULL);
    lstm_st_writer_add(w, "weight_ih_l0_reverse", LSTM_DT_F32, 2, s_ih, wih, NULL);
    lstm_st_writer_add(w, "weight_hh_l0_reverse", LSTM_DT_F32, 2, s_hh, whh, NULL);
    lstm_st_writer_meta(w, "lstm.reverse", "1", NULL);
    void *buf;
    size_t n;
    lstm_st_writer_to_memory(w, &buf, &n, NULL);
    lstm_st_writer_free(w);
    lstm_st *st = lstm_st_from_memory(buf, n, "bidir.safetensors", NULL);
    CHECK(lstm_rnn_config_infer(&got, st, "", &err) == LSTM_ERR_FORMAT &&
              strstr(err.msg, "bidir.safetensors") && strstr(err.msg, "lstm.reverse"),
          "lstm.reverse on a bidirectional LSTM's tensors is refused: %s", err.msg);
    lstm_st_free(st);
    free(buf);
}

/* ------------------------------------------------------------------ */
/* Every kernel set against the reference on random, larger configurations. */

typedef struct {
    lstm_rnn_config cfg;
    int T, B, use_len, use_h0;
} random_case;

typedef struct {
    float *y, *hn, *cn, *dx, *dh0, *dc0, *grad;
    size_t ny, nh, nc, nx, ngrad;
} run_result;

/* A value put into one operand before a run: where (x, h0, c0, dy, or a
 * tensor of the module by name), which element, what. */
typedef struct {
    const char *where;
    size_t at;
    float value;
} poison;

static const poison *cur_poison; /* for run_random; NULL: none */

static void put_poison(const char *where, float *v, size_t n) {
    if (cur_poison && strcmp(cur_poison->where, where) == 0)
        v[cur_poison->at % n] = cur_poison->value;
}

static void run_random(const random_case *rc, const variant *v, run_result *out) {
    lstm_error err;
    lstm_ctx_config cc = {v->threads, v->kernels, v->blas};
    lstm_ctx *ctx = lstm_ctx_create(&cc, &err);
    lstm_params *p = lstm_params_create();
    lstm_rnn *rnn = lstm_rnn_create(&rc->cfg, p, "lstm.", &err);
    lstm_params_alloc(p, &err);
    lstm_rng rng;
    lstm_rng_seed(&rng, 99);
    lstm_rnn_reset_parameters(rnn, p, &rng);
    int D = rc->cfg.bidirectional ? 2 : 1, L = rc->cfg.num_layers, H = rc->cfg.hidden_size;
    int Ho = rc->cfg.proj_size ? rc->cfg.proj_size : H;
    out->nx = (size_t)rc->T * rc->B * rc->cfg.input_size;
    out->ny = (size_t)rc->T * rc->B * D * Ho;
    out->nh = (size_t)L * D * rc->B * Ho;
    out->nc = (size_t)L * D * rc->B * H;
    float *x = malloc(sizeof(float) * out->nx), *h0 = malloc(sizeof(float) * out->nh);
    float *c0 = malloc(sizeof(float) * out->nc), *gy = malloc(sizeof(float) * out->ny);
    for (size_t i = 0; i < out->nx; i++)
        x[i] = lstm_rng_normal(&rng);
    for (size_t i = 0; i < out->nh; i++)
        h0[i] = lstm_rng_uniform(&rng) - 0.5f;
    for (size_t i = 0; i < out->nc; i++)
        c0[i] = lstm_rng_uniform(&rng) - 0.5f;
    for (size_t i = 0; i < out->ny; i++)
        gy[i] = lstm_rng_normal(&rng);
    put_poison("x", x, out->nx);
    put_poison("h0", h0, out->nh);
    put_poison("c0", c0, out->nc);
    put_poison("dy", gy, out->ny);
    if (cur_poison) {
        int i = lstm_params_find(p, cur_poison->where);
        if (i >= 0) {
            float w;
            const float *d = lstm_params_data(p, i);
            size_t n = lstm_params_numel(p, i), at = cur_poison->at % n;
            float *copy = malloc(sizeof(float) * n);
            memcpy(copy, d, sizeof(float) * n);
            w = cur_poison->value;
            copy[at] = w;
            lstm_params_set(p, i, copy, n, NULL);
            free(copy);
        }
    }
    int *len = malloc(sizeof(int) * rc->B);
    for (int b = 0; b < rc->B; b++)
        len[b] = 1 + (int)lstm_rng_below(&rng, (uint64_t)rc->T);
    len[0] = rc->T;
    out->y = calloc(out->ny, sizeof(float));
    out->hn = calloc(out->nh, sizeof(float));
    out->cn = calloc(out->nc, sizeof(float));
    out->dx = calloc(out->nx, sizeof(float));
    out->dh0 = calloc(out->nh, sizeof(float));
    out->dc0 = calloc(out->nc, sizeof(float));
    lstm_rnn_io io = {rc->T, rc->B, x, rc->use_len ? len : NULL, rc->use_h0 ? h0 : NULL,
                      rc->use_h0 ? c0 : NULL, out->y, out->hn, out->cn};
    lstm_rng drop;
    lstm_rng_seed(&drop, 5);
    CHECK(lstm_rnn_forward(rnn, ctx, p, &io, 1, &drop, &err) == LSTM_OK, "forward: %s", err.msg);
    lstm_rnn_grads g = {.dy = gy, .dhn = out->hn, .dcn = out->cn, .dx = out->dx, .dh0 = out->dh0, .dc0 = out->dc0};
    CHECK(lstm_rnn_backward(rnn, ctx, p, &g, &err) == LSTM_OK, "backward: %s", err.msg);
    out->ngrad = lstm_params_size(p);
    out->grad = malloc(sizeof(float) * out->ngrad);
    memcpy(out->grad, lstm_params_grad_all(p), sizeof(float) * out->ngrad);
    free(x), free(h0), free(c0), free(gy), free(len);
    lstm_rnn_free(rnn);
    lstm_params_free(p);
    lstm_ctx_free(ctx);
}

static void free_result(run_result *r) {
    free(r->y), free(r->hn), free(r->cn), free(r->dx), free(r->dh0), free(r->dc0), free(r->grad);
}

/* Fast kernels accumulate in float in another order than the reference
 * (which sums in double); their gate functions are within a few ulp. */
#define FAST_ATOL 2e-5
#define FAST_RTOL 2e-4

static void compare_results(const char *what, const run_result *a, const run_result *b,
                            double atol, double rtol) {
    CHECK_CLOSE(a->y, b->y, a->ny, atol, rtol, "%s: output", what);
    CHECK_CLOSE(a->hn, b->hn, a->nh, atol, rtol, "%s: h_n", what);
    CHECK_CLOSE(a->cn, b->cn, a->nc, atol, rtol, "%s: c_n", what);
    CHECK_CLOSE(a->dx, b->dx, a->nx, atol, rtol, "%s: dx", what);
    CHECK_CLOSE(a->dh0, b->dh0, a->nh, atol, rtol, "%s: dh0", what);
    CHECK_CLOSE(a->dc0, b->dc0, a->nc, atol, rtol, "%s: dc0", what);
    CHECK_CLOSE(a->grad, b->grad, a->ngrad, atol, rtol, "%s: weight gradients", what);
}

static void test_fast_vs_reference(void) {
    random_case cases[] = {
        {{37, 70, 2, 1, 0, 1, 0, 0, 0, 0, 0, 0}, 11, 9, 1, 1},
        {{20, 64, 1, 1, 0, 0, 24, 0, 0, 0, 0, 0}, 7, 13, 0, 1},
        {{16, 16, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0}, 5, 1, 0, 0},
        {{33, 129, 2, 1, 0, 0, 0, 0.25f, 0, 0, 0, 0}, 6, 7, 1, 1},
        {{8, 48, 3, 0, 0, 1, 17, 0, 0, 0, 0, 0}, 4, 20, 1, 0},
        {{128, 128, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0}, 9, 32, 0, 1},
        /* ONNX's options: peephole, clip, input_forget */
        {{37, 70, 2, 1, 0, 1, 0, 0, 1, 0.5f, 1, 0}, 11, 9, 1, 1},
        {{20, 64, 1, 1, 0, 0, 24, 0, 1, 0, 0, 0}, 7, 13, 0, 1},
        {{33, 129, 2, 1, 0, 0, 0, 0.25f, 0, 0.5f, 0, 0}, 6, 7, 1, 1},
        {{16, 16, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0}, 5, 1, 0, 0},
        {{8, 48, 3, 0, 0, 1, 17, 0, 1, 0.3f, 0, 0}, 4, 20, 1, 0},
        /* ..., reverse */
        {{37, 70, 2, 1, 0, 0, 0, 0, 0, 0, 0, 1}, 11, 9, 1, 1},
        {{20, 64, 3, 1, 1, 0, 24, 0.25f, 0, 0, 0, 1}, 7, 13, 1, 1},
        {{16, 16, 1, 1, 0, 0, 0, 0, 1, 0.5f, 1, 1}, 5, 3, 0, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        run_result ref;
        variant refv = {LSTM_KERNELS_REFERENCE, 1, LSTM_BLAS_AUTO, "reference"};
        run_random(&cases[c], &refv, &ref);
        for (int v = 0; v < nvariants; v++) {
            if (variants[v].kernels == LSTM_KERNELS_REFERENCE)
                continue;
            run_result fast;
            run_random(&cases[c], &variants[v], &fast);
            char what[128];
            snprintf(what, sizeof what, "random case %zu, %s vs reference", c, variants[v].name);
            compare_results(what, &fast, &ref, FAST_ATOL, FAST_RTOL);
            free_result(&fast);
        }
        /* the thread count changes only the order of float sums (OpenBLAS
         * sums differently for the smaller blocks each thread gets) */
        run_result one, two;
        variant v1 = {LSTM_KERNELS_AUTO, 1, LSTM_BLAS_AUTO, "auto"}, v2 = v1;
        v2.threads = 2;
        run_random(&cases[c], &v1, &one);
        run_random(&cases[c], &v2, &two);
        char what[128];
        snprintf(what, sizeof what, "random case %zu, 2 threads vs 1", c);
        compare_results(what, &two, &one, FAST_ATOL, FAST_RTOL);
        free_result(&one), free_result(&two);
        /* with the built-in product every value is computed by one thread,
         * in the same order whatever the thread count: identical bits */
        v1.blas = v2.blas = LSTM_BLAS_OFF;
        run_random(&cases[c], &v1, &one);
        run_random(&cases[c], &v2, &two);
        snprintf(what, sizeof what, "random case %zu, built-in product, 2 threads vs 1", c);
        compare_results(what, &two, &one, 0, 0);
        free_result(&one), free_result(&two), free_result(&ref);
    }
}

/* ------------------------------------------------------------------ */
/* lstm_ctx_config takes effect. kernels: the context reports the set asked
 * for, and each fast set's float sums give other bits than the reference
 * (so its products really run there); blas: the product the context
 * reports, and OpenBLAS's bits differ from the built-in product's;
 * threads: the workers exist (threads - 1 of them in /proc/self/task). */

static int os_threads(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* The process's thread count once it is `want`, waiting up to a second:
 * OpenBLAS's own threads (started by earlier tests) may come and go in the
 * background, so a single reading can be off by them. */
static int threads_settle(int want) {
    int n = os_threads();
    for (int i = 0; i < 100 && n != want; i++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
        n = os_threads();
    }
    return n;
}

static int same_bits(const run_result *a, const run_result *b) {
    return memcmp(a->y, b->y, sizeof(float) * a->ny) == 0 &&
           memcmp(a->grad, b->grad, sizeof(float) * a->ngrad) == 0;
}

static void test_ctx_config(void) {
    static const struct {
        lstm_kernels k;
        const char *name;
    } sets[] = {{LSTM_KERNELS_REFERENCE, "reference"}, {LSTM_KERNELS_GENERIC, "generic"},
                {LSTM_KERNELS_AVX2, "avx2"},           {LSTM_KERNELS_AVX512, "avx512"},
                {LSTM_KERNELS_AVX512_BF16, "avx512bf16"}};
    random_case rc = {{48, 64, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0}, 6, 5, 0, 0};
    run_result ref;
    variant refv = {LSTM_KERNELS_REFERENCE, 1, LSTM_BLAS_OFF, "reference"};
    run_random(&rc, &refv, &ref);
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++) {
        lstm_error err;
        lstm_ctx_config cc = {1, sets[i].k, LSTM_BLAS_OFF};
        lstm_ctx *ctx = lstm_ctx_create(&cc, &err);
        if (!ctx) {
            CHECK(err.status == LSTM_ERR_UNSUPPORTED, "%s: refused only as unsupported: %s",
                  sets[i].name, err.msg);
            continue;
        }
        CHECK(strcmp(lstm_ctx_kernels(ctx), sets[i].name) == 0 &&
                  strcmp(lstm_ctx_gemm(ctx), "builtin") == 0,
              "kernels %s, blas off: the context reports %s, %s", sets[i].name,
              lstm_ctx_kernels(ctx), lstm_ctx_gemm(ctx));
        lstm_ctx_free(ctx);
        if (sets[i].k == LSTM_KERNELS_REFERENCE)
            continue;
        run_result r;
        variant v = {sets[i].k, 1, LSTM_BLAS_OFF, sets[i].name};
        run_random(&rc, &v, &r);
        CHECK(!same_bits(&r, &ref), "kernels %s compute: other bits than the reference's",
              sets[i].name);
        free_result(&r);
    }
    free_result(&ref);

    /* the product: with the generic kernels AUTO takes the BLAS when one
     * is linked in, ON takes it, OFF never does */
    int have_blas = strcmp(lstm_blas_name(), "none") != 0;
    lstm_blas modes[3] = {LSTM_BLAS_AUTO, LSTM_BLAS_ON, LSTM_BLAS_OFF};
    const char *want[3] = {have_blas ? lstm_blas_name() : "builtin",
                           have_blas ? lstm_blas_name() : "builtin", "builtin"};
    for (int i = 0; i < 3; i++) {
        lstm_ctx_config cc = {1, LSTM_KERNELS_GENERIC, modes[i]};
        lstm_ctx *ctx = lstm_ctx_create(&cc, NULL);
        CHECK(ctx && strcmp(lstm_ctx_gemm(ctx), want[i]) == 0, "generic kernels, blas %d: %s",
              (int)modes[i], ctx ? lstm_ctx_gemm(ctx) : "(no context)");
        lstm_ctx_free(ctx);
    }
#ifdef LSTM_HAVE_OPENBLAS
    if (have_blas) {
        run_result on, off;
        variant von = {LSTM_KERNELS_GENERIC, 1, LSTM_BLAS_ON, "generic, BLAS"}, voff = von;
        voff.blas = LSTM_BLAS_OFF;
        long before = blas_calls;
        run_random(&rc, &von, &on);
        long with_on = blas_calls - before;
        run_random(&rc, &voff, &off);
        long with_off = blas_calls - before - with_on;
        CHECK(with_on > 0 && with_off == 0,
              "blas on multiplies with cblas_sgemm, off never: %ld and %ld calls", with_on,
              with_off);
        compare_results("blas on against off", &on, &off, FAST_ATOL, FAST_RTOL);
        free_result(&on), free_result(&off);
    }
#endif

    /* threads: the caller and threads - 1 workers, gone with the context */
    int before = os_threads();
    lstm_ctx_config cc = {3, LSTM_KERNELS_GENERIC, LSTM_BLAS_OFF};
    lstm_ctx *ctx = lstm_ctx_create(&cc, NULL);
    int during = threads_settle(before + 2);
    CHECK(ctx && lstm_ctx_threads(ctx) == 3, "threads 3: the context has 3");
    if (before > 0)
        CHECK(during == before + 2, "threads 3: two worker threads started (%d -> %d)", before,
              during);
    lstm_ctx_free(ctx);
    int after = threads_settle(before);
    if (before > 0)
        CHECK(after == before, "threads 3: the workers end with the context (%d -> %d)", before,
              after);
    cc.threads = 0;
    ctx = lstm_ctx_create(&cc, NULL);
    CHECK(ctx && lstm_ctx_threads(ctx) == 1 && threads_settle(before) == before,
          "threads 0: the caller alone");
    lstm_ctx_free(ctx);
}

/* ------------------------------------------------------------------ */
/* The bfloat16 kernels (products of bfloat16 operands, 8 significant bits,
 * summed in float) against the reference: each output and gradient tensor
 * within a relative distance ||got - want|| / ||want|| of 1e-2, about three
 * bfloat16 roundings (the worst measured here is 4.9e-3); and with two
 * threads the bits of one. */

static double rel_dist(const float *a, const float *b, size_t n) {
    double d = 0, w = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        w += (double)b[i] * b[i];
    }
    return w > 0 ? sqrt(d / w) : sqrt(d);
}

#define BF16_REL 1e-2

/* Whether this build and processor have the AVX-512 BF16 kernels. */
static int have_bf16(void) {
    lstm_ctx_config cc = {1, LSTM_KERNELS_AVX512_BF16, LSTM_BLAS_OFF};
    lstm_ctx *ctx = lstm_ctx_create(&cc, NULL);
    lstm_ctx_free(ctx);
    return ctx != NULL;
}

/* Which of finite, NaN, +inf, -inf x is. */
static int fclass(float x) { return isnan(x) ? 1 : isinf(x) ? (x > 0 ? 2 : 3) : 0; }

/* a and b hold the same non-finite values at the same places, and close
 * finite ones elsewhere; the number of non-finite values in *bad. */
static double nf_atol = FAST_ATOL, nf_rtol = FAST_RTOL; /* for the finite values */

static void check_same_nonfinite(const char *what, const char *name, const float *a,
                                 const float *b, size_t n, size_t *bad) {
    size_t wrong = 0, first = n;
    for (size_t i = 0; i < n; i++) {
        int ca = fclass(a[i]), cb = fclass(b[i]);
        *bad += cb != 0;
        if (ca != cb || (ca == 0 && !(fabs(a[i] - b[i]) <= nf_atol + nf_rtol * fabs(b[i])))) {
            wrong++;
            if (first == n)
                first = i;
        }
    }
    CHECK(wrong == 0, "%s: %s: %zu values differ from the reference in kind or value, the first "
                      "at %zu (%g against %g)",
          what, name, wrong, first, first < n ? (double)a[first] : 0.0,
          first < n ? (double)b[first] : 0.0);
}

/* A NaN or an infinity in any operand (the input, the initial state, the
 * output's gradient, each weight and bias) comes out where the reference
 * kernels put it, in every fast set: forward and backward. The fast exp
 * once clamped a NaN away, so that sigmoid(NaN) was 1 and a NaN input gave
 * finite, plausible outputs. */
static void test_nonfinite(void) {
    random_case cases[] = {
        {{12, 37, 2, 1, 0, 1, 0, 0, 0, 0, 0, 0}, 6, 5, 1, 1},
        {{9, 24, 1, 1, 0, 0, 10, 0, 0, 0, 0, 0}, 5, 3, 1, 1},
    };
    const char *where[] = {"x", "h0", "c0", "dy", "lstm.weight_ih_l0", "lstm.weight_hh_l0",
                           "lstm.bias_ih_l0", "lstm.bias_hh_l0", "lstm.weight_hh_l1_reverse",
                           "lstm.weight_hr_l0"};
    float values[] = {NAN, INFINITY, -INFINITY};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (size_t w = 0; w < sizeof where / sizeof *where; w++)
            for (size_t k = 0; k < 3; k++) {
                poison pz = {where[w], 7 + 13 * w, values[k]};
                cur_poison = &pz;
                run_result ref;
                variant refv = {LSTM_KERNELS_REFERENCE, 1, LSTM_BLAS_AUTO, "reference"};
                run_random(&cases[c], &refv, &ref);
                for (int v = 0; v <= nvariants; v++) {
                    /* the float sets, then bfloat16 where the processor has it:
                     * NaN only (its products round the operands to bfloat16,
                     * subnormals to zero, so an infinite weight meets other
                     * values than in float), finite values to 5% */
                    variant bfv = {LSTM_KERNELS_AVX512_BF16, 2, LSTM_BLAS_OFF, "avx512bf16"};
                    const variant *var = v < nvariants ? &variants[v] : &bfv;
                    if (var->kernels == LSTM_KERNELS_REFERENCE ||
                        (v == nvariants && (k > 0 || !have_bf16())))
                        continue;
                    nf_atol = v < nvariants ? FAST_ATOL : 5e-2;
                    nf_rtol = v < nvariants ? FAST_RTOL : 5e-2;
                    run_result fast;
                    run_random(&cases[c], var, &fast);
                    char what[192];
                    snprintf(what, sizeof what, "case %zu, %g in %s, %s", c, (double)values[k],
                             where[w], var->name);
                    size_t bad = 0;
                    check_same_nonfinite(what, "output", fast.y, ref.y, ref.ny, &bad);
                    check_same_nonfinite(what, "h_n", fast.hn, ref.hn, ref.nh, &bad);
                    check_same_nonfinite(what, "c_n", fast.cn, ref.cn, ref.nc, &bad);
                    check_same_nonfinite(what, "dx", fast.dx, ref.dx, ref.nx, &bad);
                    check_same_nonfinite(what, "dh0", fast.dh0, ref.dh0, ref.nh, &bad);
                    check_same_nonfinite(what, "dc0", fast.dc0, ref.dc0, ref.nc, &bad);
                    check_same_nonfinite(what, "weight gradients", fast.grad, ref.grad,
                                         ref.ngrad, &bad);
                    /* the poison reached the results (a tensor this case lacks aside) */
                    int present = strncmp(where[w], "lstm.", 5) != 0 ||
                                  (cases[c].cfg.proj_size ? !strstr(where[w], "_l1")
                                                          : !strstr(where[w], "weight_hr"));
                    CHECK(!present || k > 0 || bad > 0, "%s: the NaN reached no result", what);
                    free_result(&fast);
                }
                free_result(&ref);
                cur_poison = NULL;
            }
}

static void test_bf16(void) {
    variant bf = {LSTM_KERNELS_AVX512_BF16, 1, LSTM_BLAS_OFF, "avx512bf16"};
    lstm_ctx_config cc = {1, bf.kernels, bf.blas};
    lstm_ctx *probe = lstm_ctx_create(&cc, NULL);
    if (!probe) {
        printf("ok skipping the bfloat16 comparison: not supported here\n");
        return;
    }
    lstm_ctx_free(probe);
    random_case cases[] = {
        {{37, 70, 2, 1, 0, 1, 0, 0, 0, 0, 0, 0}, 11, 9, 1, 1},
        {{20, 64, 1, 1, 0, 0, 24, 0, 0, 0, 0, 0}, 7, 13, 0, 1},
        {{64, 384, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0}, 25, 16, 0, 0},
        {{8, 48, 3, 0, 0, 1, 17, 0, 0, 0, 0, 0}, 4, 20, 1, 0},
    };
    double worst = 0;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        run_result ref, got, two;
        variant refv = {LSTM_KERNELS_REFERENCE, 1, LSTM_BLAS_AUTO, "reference"};
        run_random(&cases[c], &refv, &ref);
        run_random(&cases[c], &bf, &got);
        const float *g[] = {got.y, got.hn, got.cn, got.dx, got.dh0, got.dc0, got.grad};
        const float *w[] = {ref.y, ref.hn, ref.cn, ref.dx, ref.dh0, ref.dc0, ref.grad};
        size_t n[] = {got.ny, got.nh, got.nc, got.nx, got.nh, got.nc, got.ngrad};
        static const char *names[] = {"output", "h_n", "c_n", "dx", "dh0", "dc0", "weight gradients"};
        for (int t = 0; t < 7; t++) {
            double r = rel_dist(g[t], w[t], n[t]);
            worst = r > worst ? r : worst;
            CHECK(r <= BF16_REL, "random case %zu, avx512bf16: %s within %g of the reference (%.3g)",
                  c, names[t], BF16_REL, r);
        }
        variant bf2 = bf;
        bf2.threads = 2;
        run_random(&cases[c], &bf2, &two);
        char what[128];
        snprintf(what, sizeof what, "random case %zu, avx512bf16, 2 threads vs 1", c);
        compare_results(what, &two, &got, 0, 0);
        free_result(&ref), free_result(&got), free_result(&two);
    }
    printf("ok bfloat16 against the reference: worst relative distance %.3g\n", worst);
}

/* ------------------------------------------------------------------ */
/* The step API gives what the sequence API gives. */

static void test_step(void) {
    /* ..., dropout, peephole, clip, input_forget */
    lstm_rnn_config cfgs[] = {
        {5, 12, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0},    {7, 33, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0},
        {4, 20, 2, 0, 0, 0, 6, 0, 0, 0, 0, 0},    {5, 12, 2, 1, 0, 0, 0, 0, 1, 0.5f, 1, 0},
        {7, 33, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0},    {4, 20, 2, 0, 0, 0, 6, 0, 0, 0.4f, 1, 0}};
    for (size_t c = 0; c < sizeof cfgs / sizeof *cfgs; c++)
        for (int v = 0; v < nvariants; v++) {
            lstm_error err;
            lstm_rnn_config *cfg = &cfgs[c];
            int T = 6, B = 3, L = cfg->num_layers, H = cfg->hidden_size, I = cfg->input_size;
            int Ho = cfg->proj_size ? cfg->proj_size : H;
            lstm_ctx_config cc = {variants[v].threads, variants[v].kernels, variants[v].blas};
            lstm_ctx *ctx = lstm_ctx_create(&cc, &err);
            lstm_params *p = lstm_params_create();
            lstm_rnn *rnn = lstm_rnn_create(cfg, p, "", &err);
            lstm_params_alloc(p, &err);
            lstm_rng rng;
            lstm_rng_seed(&rng, 11);
            lstm_rnn_reset_parameters(rnn, p, &rng);
            float x[6 * 3 * 7], y[6 * 3 * 33], hn[2 * 3 * 33], cn[2 * 3 * 33];
            float h[2 * 3 * 33], cc_[2 * 3 * 33], ys[3 * 33];
            for (int i = 0; i < T * B * I; i++)
                x[i] = lstm_rng_normal(&rng);
            for (int i = 0; i < L * B * Ho; i++)
                h[i] = lstm_rng_uniform(&rng) - 0.5f;
            for (int i = 0; i < L * B * H; i++)
                cc_[i] = lstm_rng_uniform(&rng) - 0.5f;
            lstm_rnn_io io = {T, B, x, NULL, h, cc_, y, hn, cn};
            lstm_rnn_forward(rnn, ctx, p, &io, 0, NULL, &err);
            int ok = 1;
            for (int t = 0; t < T; t++) {
                ok &= lstm_rnn_step(rnn, ctx, p, B, x + (size_t)t * B * I, h, cc_, ys, &err) ==
                      LSTM_OK;
                CHECK_CLOSE(ys, y + (size_t)t * B * Ho, (size_t)B * Ho, FAST_ATOL, FAST_RTOL,
                            "step %d of config %zu [%s] equals the sequence output", t, c,
                            variants[v].name);
            }
            CHECK(ok, "steps ran: %s", err.msg);
            CHECK_CLOSE(h, hn, (size_t)L * B * Ho, FAST_ATOL, FAST_RTOL, "step h = h_n [%s]",
                        variants[v].name);
            CHECK_CLOSE(cc_, cn, (size_t)L * B * H, FAST_ATOL, FAST_RTOL, "step c = c_n [%s]",
                        variants[v].name);
            lstm_rnn_free(rnn);
            lstm_params_free(p);
            lstm_ctx_free(ctx);
        }
}

/* ------------------------------------------------------------------ */
/* Argument checks and call order. */

/* lstm_rnn_grads' hooks: layer_done(l) comes for l = L-1 down to 0, and
 * at that moment layer l's gradients are already the final ones (a copy
 * taken then equals them after the backward); progress comes between
 * steps, and with no hooks the gradients are the same bits. */
typedef struct {
    lstm_params *p;
    int L, D, calls, order_ok, progress;
    float *snap;       /* the whole gradient buffer, per layer_done call */
    int snapped[8];
} hook_log;

static void on_layer(void *arg, int layer) {
    hook_log *h = arg;
    h->order_ok &= layer == h->L - 1 - h->calls;
    if (layer >= 0 && layer < 8) {
        memcpy(h->snap + (size_t)layer * lstm_params_size(h->p), lstm_params_grad_all(h->p),
               sizeof(float) * lstm_params_size(h->p));
        h->snapped[layer] = 1;
    }
    h->calls++;
}

static void on_progress(void *arg) { ((hook_log *)arg)->progress++; }

static void test_backward_hooks(void) {
    lstm_error err;
    for (int bidir = 0; bidir < 2; bidir++) {
        int T = 6, B = 3, I = 5, H = 7, L = 3, D = bidir + 1;
        lstm_ctx_config cc = {0};
        cc.threads = 1;
        lstm_ctx *ctx = lstm_ctx_create(&cc, &err);
        lstm_params *p = lstm_params_create();
        lstm_rnn_config cfg = lstm_rnn_config_default(I, H);
        cfg.num_layers = L;
        cfg.bidirectional = bidir;
        cfg.proj_size = 4;
        lstm_rnn *rnn = lstm_rnn_create(&cfg, p, "", &err);
        lstm_params_alloc(p, &err);
        lstm_rng rng;
        lstm_rng_seed(&rng, 11);
        lstm_rnn_reset_parameters(rnn, p, &rng);
        size_t nx = (size_t)T * B * I, ny = (size_t)T * B * D * 4, np = lstm_params_size(p);
        float *x = malloc(sizeof(float) * nx), *y = malloc(sizeof(float) * ny);
        float *dy = malloc(sizeof(float) * ny), *dx = malloc(sizeof(float) * nx);
        float *plain = malloc(sizeof(float) * np);
        for (size_t i = 0; i < nx; i++)
            x[i] = (float)sin(0.37 * (double)i);
        for (size_t i = 0; i < ny; i++)
            dy[i] = (float)cos(0.21 * (double)i);
        int len[3] = {6, 2, 4};
        hook_log h = {.p = p, .L = L, .D = D, .order_ok = 1};
        h.snap = malloc(sizeof(float) * np * L);
        for (int hooked = 0; hooked < 2; hooked++) {
            lstm_params_zero_grad(p);
            lstm_rnn_io io = {T, B, x, len, NULL, NULL, y, NULL, NULL};
            lstm_rnn_grads g = {.dy = dy, .dx = dx};
            if (hooked)
                g.layer_done = on_layer, g.progress = on_progress, g.hook_arg = &h;
            CHECK(lstm_rnn_forward(rnn, ctx, p, &io, 1, &rng, &err) == LSTM_OK &&
                      lstm_rnn_backward(rnn, ctx, p, &g, &err) == LSTM_OK,
                  "hooks (bidirectional %d): forward and backward: %s", bidir, err.msg);
            if (!hooked)
                memcpy(plain, lstm_params_grad_all(p), sizeof(float) * np);
        }
        const float *gr = lstm_params_grad_all(p);
        CHECK(h.calls == L && h.order_ok, "hooks (bidirectional %d): layer_done for L-1..0, "
              "%d calls", bidir, h.calls);
        CHECK(h.progress >= T * D, "hooks (bidirectional %d): progress between steps (%d calls)",
              bidir, h.progress);
        CHECK(memcmp(plain, gr, sizeof(float) * np) == 0,
              "hooks (bidirectional %d): the same gradients with and without them", bidir);
        for (int l = 0; l < L; l++) {
            int final = h.snapped[l];
            for (int dir = 0; dir < D && final; dir++) {
                static const char *const kinds[] = {"weight_ih_l", "weight_hh_l", "bias_ih_l",
                                                    "bias_hh_l", "weight_hr_l"};
                for (int k = 0; k < 5 && final; k++) {
                    char name[64];
                    snprintf(name, sizeof name, "%s%d%s", kinds[k], l, dir ? "_reverse" : "");
                    int i = lstm_params_find(p, name);
                    size_t off = (size_t)(lstm_params_grad(p, i) - gr);
                    final = i >= 0 &&
                            memcmp(h.snap + (size_t)l * np + off, gr + off,
                                   sizeof(float) * lstm_params_numel(p, i)) == 0;
                    /* and not all zero: the layer had been computed by then */
                    int any = 0;
                    for (size_t e = 0; final && e < lstm_params_numel(p, i); e++)
                        any |= h.snap[(size_t)l * np + off + e] != 0;
                    final = final && any;
                }
            }
            CHECK(final, "hooks (bidirectional %d): at layer_done(%d) its gradients are final",
                  bidir, l);
        }
        free(h.snap), free(x), free(y), free(dy), free(dx), free(plain);
        lstm_rnn_free(rnn);
        lstm_params_free(p);
        lstm_ctx_free(ctx);
    }
}

/* ------------------------------------------------------------------ */
/* A reverse LSTM (ONNX's direction="reverse") over a batch equals, per
 * sequence, a forward LSTM with the same weights over the sequence
 * reversed within its length, its output reversed back: forward and
 * backward (dx reversed the same way; the weight gradients, h0/c0's
 * gradients equal), every kernel set. PyTorch's fixtures and ONNX
 * Runtime's check the forward LSTM and the reverse one from outside; this
 * ties the two together for the options and kernels those do not cover. */

typedef struct {
    float *y, *hn, *cn, *dx, *dh0, *dc0, *grad;
    size_t ngrad;
} rev_run;

static void rev_pass(const lstm_rnn_config *cfg, const variant *v, int T, int B, const float *x,
                     const int *len, const float *h0, const float *c0, const float *dy,
                     const float *dhn, const float *dcn, rev_run *out) {
    lstm_error err;
    lstm_ctx_config cc = {v->threads, v->kernels, v->blas};
    lstm_ctx *ctx = lstm_ctx_create(&cc, &err);
    lstm_params *p = lstm_params_create();
    lstm_rnn *rnn = lstm_rnn_create(cfg, p, "", &err);
    CHECK(rnn != NULL, "create: %s", err.msg);
    lstm_params_alloc(p, &err);
    lstm_rng rng;
    lstm_rng_seed(&rng, 17); /* the same weights, forward or reverse */
    lstm_rnn_reset_parameters(rnn, p, &rng);
    int L = cfg->num_layers, H = cfg->hidden_size, Ho = cfg->proj_size ? cfg->proj_size : H;
    size_t nx = (size_t)T * B * cfg->input_size, ny = (size_t)T * B * Ho;
    size_t nh = (size_t)L * B * Ho, nc = (size_t)L * B * H;
    out->y = calloc(ny, sizeof(float)), out->hn = calloc(nh, sizeof(float));
    out->cn = calloc(nc, sizeof(float)), out->dx = calloc(nx, sizeof(float));
    out->dh0 = calloc(nh, sizeof(float)), out->dc0 = calloc(nc, sizeof(float));
    lstm_rnn_io io = {T, B, x, len, h0, c0, out->y, out->hn, out->cn};
    CHECK(lstm_rnn_forward(rnn, ctx, p, &io, 1, &rng, &err) == LSTM_OK, "forward: %s", err.msg);
    lstm_rnn_grads g = {.dy = dy, .dhn = dhn, .dcn = dcn, .dx = out->dx, .dh0 = out->dh0,
                        .dc0 = out->dc0};
    CHECK(lstm_rnn_backward(rnn, ctx, p, &g, &err) == LSTM_OK, "backward: %s", err.msg);
    out->ngrad = lstm_params_size(p);
    out->grad = malloc(sizeof(float) * out->ngrad);
    memcpy(out->grad, lstm_params_grad_all(p), sizeof(float) * out->ngrad);
    lstm_rnn_free(rnn);
    lstm_params_free(p);
    lstm_ctx_free(ctx);
}

/* Row (t, b) of a (T,B,F) or (B,T,F) tensor reversed within length n:
 * dst's row t is src's row n-1-t, zero from n on. */
static void flip_rows(float *dst, const float *src, int T, int B, int F, int bf, const int *len) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int n = len ? len[b] : T;
            float *d = dst + (bf ? (size_t)b * T + t : (size_t)t * B + b) * F;
            int u = n - 1 - t;
            if (u >= 0)
                memcpy(d, src + (bf ? (size_t)b * T + u : (size_t)u * B + b) * F,
                       sizeof(float) * F);
            else
                memset(d, 0, sizeof(float) * F);
        }
}

static void test_reverse_identity(void) {
    /* I, H, L, bias, batch_first, bidirectional, proj, dropout, peephole,
     * clip, input_forget, reverse */
    static const struct {
        lstm_rnn_config cfg;
        int T, B, use_len, use_h0;
    } cases[] = {
        {{5, 8, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1}, 6, 3, 0, 0},
        {{7, 19, 2, 1, 1, 0, 0, 0, 0, 0, 0, 1}, 9, 5, 1, 1},
        {{4, 33, 3, 0, 0, 0, 13, 0, 0, 0, 0, 1}, 7, 6, 1, 1},
        {{6, 12, 2, 1, 0, 0, 0, 0, 1, 0.6f, 1, 1}, 8, 4, 1, 1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        lstm_rnn_config rc = cases[k].cfg, fc = rc;
        fc.reverse = 0;
        int T = cases[k].T, B = cases[k].B, bf = rc.batch_first, L = rc.num_layers;
        int H = rc.hidden_size, Ho = rc.proj_size ? rc.proj_size : H, I = rc.input_size;
        size_t nx = (size_t)T * B * I, ny = (size_t)T * B * Ho, nh = (size_t)L * B * Ho;
        size_t nc = (size_t)L * B * H;
        lstm_rng rng;
        lstm_rng_seed(&rng, 300 + k);
        int len[16];
        for (int b = 0; b < B; b++)
            len[b] = 1 + (int)lstm_rng_below(&rng, (uint64_t)T);
        len[B / 2] = T;
        const int *lp = cases[k].use_len ? len : NULL;
        float *x = malloc(sizeof(float) * nx), *dy = malloc(sizeof(float) * ny);
        float *h0 = malloc(sizeof(float) * nh), *c0 = malloc(sizeof(float) * nc);
        float *dhn = malloc(sizeof(float) * nh), *dcn = malloc(sizeof(float) * nc);
        float *xf = malloc(sizeof(float) * nx), *dyf = malloc(sizeof(float) * ny);
        float *back = malloc(sizeof(float) * (nx > ny ? nx : ny));
        for (size_t i = 0; i < nx; i++)
            x[i] = lstm_rng_normal(&rng);
        for (size_t i = 0; i < ny; i++)
            dy[i] = lstm_rng_normal(&rng);
        for (size_t i = 0; i < nh; i++)
            h0[i] = lstm_rng_uniform(&rng) - 0.5f, dhn[i] = lstm_rng_normal(&rng);
        for (size_t i = 0; i < nc; i++)
            c0[i] = lstm_rng_uniform(&rng) - 0.5f, dcn[i] = lstm_rng_normal(&rng);
        /* dy past a length is ignored by both: zero it so flipping keeps it */
        flip_rows(dyf, dy, T, B, Ho, bf, lp);
        flip_rows(dy, dyf, T, B, Ho, bf, lp);
        flip_rows(xf, x, T, B, I, bf, lp);
        const float *s0 = cases[k].use_h0 ? h0 : NULL, *s1 = cases[k].use_h0 ? c0 : NULL;
        for (int v = 0; v < nvariants; v++) {
            rev_run r, f;
            rev_pass(&rc, &variants[v], T, B, x, lp, s0, s1, dy, dhn, dcn, &r);
            rev_pass(&fc, &variants[v], T, B, xf, lp, s0, s1, dyf, dhn, dcn, &f);
            char what[160];
            snprintf(what, sizeof what, "reverse case %zu [%s]: reverse = forward over the flipped sequences",
                     k, variants[v].name);
            flip_rows(back, f.y, T, B, Ho, bf, lp);
            CHECK_CLOSE(r.y, back, ny, FAST_ATOL, FAST_RTOL, "%s: y", what);
            CHECK_CLOSE(r.hn, f.hn, nh, FAST_ATOL, FAST_RTOL, "%s: h_n", what);
            CHECK_CLOSE(r.cn, f.cn, nc, FAST_ATOL, FAST_RTOL, "%s: c_n", what);
            flip_rows(back, f.dx, T, B, I, bf, lp);
            CHECK_CLOSE(r.dx, back, nx, FAST_ATOL, FAST_RTOL, "%s: dx", what);
            CHECK_CLOSE(r.dh0, f.dh0, nh, FAST_ATOL, FAST_RTOL, "%s: dh0", what);
            CHECK_CLOSE(r.dc0, f.dc0, nc, FAST_ATOL, FAST_RTOL, "%s: dc0", what);
            CHECK(r.ngrad == f.ngrad, "%s: the same tensors", what);
            if (r.ngrad == f.ngrad)
                CHECK_CLOSE(r.grad, f.grad, r.ngrad, FAST_ATOL, FAST_RTOL, "%s: weight gradients",
                            what);
            rev_run *rs[2] = {&r, &f};
            for (int j = 0; j < 2; j++) {
                free(rs[j]->y), free(rs[j]->hn), free(rs[j]->cn), free(rs[j]->dx);
                free(rs[j]->dh0), free(rs[j]->dc0), free(rs[j]->grad);
            }
        }
        free(x), free(dy), free(h0), free(c0), free(dhn), free(dcn), free(xf), free(dyf);
        free(back);
    }
}

static void test_errors(void) {
    lstm_error err;
    lstm_ctx *ctx = lstm_ctx_create(NULL, &err);
    lstm_params *p = lstm_params_create();
    lstm_rnn_config cfg = lstm_rnn_config_default(3, 4);
    cfg.bidirectional = 1;
    lstm_rnn *rnn = lstm_rnn_create(&cfg, p, "", &err);
    lstm_params_alloc(p, &err);
    float x[2 * 2 * 3] = {0}, y[2 * 2 * 8], h[2 * 2 * 4] = {0}, c[2 * 2 * 4] = {0};
    CHECK(lstm_rnn_step(rnn, ctx, p, 2, x, h, c, NULL, &err) == LSTM_ERR_UNSUPPORTED &&
              strstr(err.msg, "bidirectional"),
          "step on a bidirectional LSTM is refused: %s", err.msg);
    {
        lstm_params *pr = lstm_params_create();
        lstm_rnn_config rc = lstm_rnn_config_default(3, 4);
        rc.reverse = 1;
        lstm_rnn *rr = lstm_rnn_create(&rc, pr, "", &err);
        lstm_params_alloc(pr, &err);
        CHECK(lstm_rnn_step(rr, ctx, pr, 2, x, h, c, NULL, &err) == LSTM_ERR_UNSUPPORTED &&
                  strstr(err.msg, "reverse"),
              "step on a reverse LSTM is refused: %s", err.msg);
        lstm_rnn_free(rr);
        lstm_params_free(pr);
    }
    int bad_len[2] = {2, 3};
    lstm_rnn_io io = {2, 2, x, bad_len, NULL, NULL, y, NULL, NULL};
    CHECK(lstm_rnn_forward(rnn, ctx, p, &io, 0, NULL, &err) == LSTM_ERR_INVALID &&
              strstr(err.msg, "lengths[1] = 3"),
          "a length beyond T is refused: %s", err.msg);
    bad_len[1] = 0;
    CHECK(lstm_rnn_forward(rnn, ctx, p, &io, 0, NULL, &err) == LSTM_ERR_INVALID,
          "a length of 0 is refused: %s", err.msg);
    lstm_rnn_grads g = {.dy = y};
    CHECK(lstm_rnn_backward(rnn, ctx, p, &g, &err) == LSTM_ERR_STATE,
          "backward after a failed forward is refused: %s", err.msg);
    io.lengths = NULL;
    CHECK(lstm_rnn_forward(rnn, ctx, p, &io, 1, NULL, &err) == LSTM_OK, "forward: %s", err.msg);
    lstm_params_touch(p);
    CHECK(lstm_rnn_backward(rnn, ctx, p, &g, &err) == LSTM_ERR_STATE,
          "backward after the weights changed is refused: %s", err.msg);
    lstm_params *other = lstm_params_create();
    CHECK(lstm_rnn_forward(rnn, ctx, other, &io, 0, NULL, &err) == LSTM_ERR_INVALID,
          "another params object is refused: %s", err.msg);
    lstm_params_free(other);
    io.T = 0;
    CHECK(lstm_rnn_forward(rnn, ctx, p, &io, 0, NULL, &err) == LSTM_ERR_INVALID, "T = 0: %s",
          err.msg);

    lstm_rnn_config bad = lstm_rnn_config_default(3, 4);
    bad.proj_size = 4;
    CHECK(lstm_rnn_config_check(&bad, &err) == LSTM_ERR_INVALID && strstr(err.msg, "proj_size"),
          "proj_size >= hidden_size is refused: %s", err.msg);
    bad = lstm_rnn_config_default(3, 4);
    bad.dropout = 1;
    CHECK(lstm_rnn_config_check(&bad, &err) == LSTM_ERR_INVALID, "dropout 1 is refused: %s",
          err.msg);
    bad = lstm_rnn_config_default(0, 4);
    CHECK(lstm_rnn_create(&bad, p, "", &err) == NULL && err.status == LSTM_ERR_INVALID,
          "input_size 0 is refused: %s", err.msg);
    lstm_params *q = lstm_params_create();
    lstm_rnn *r2 = lstm_rnn_create(&cfg, q, "", &err);
    CHECK(lstm_rnn_create(&cfg, q, "", &err) == NULL && strstr(err.msg, "declared twice"),
          "two LSTMs under one name are refused: %s", err.msg);
    lstm_rnn_free(r2);
    lstm_params_free(q);

    /* dropout: training differs from evaluation, and a seed repeats */
    lstm_rnn_config dc = lstm_rnn_config_default(3, 4);
    dc.num_layers = 2;
    dc.dropout = 0.5f;
    lstm_params *pd = lstm_params_create();
    lstm_rnn *rd = lstm_rnn_create(&dc, pd, "", &err);
    lstm_params_alloc(pd, &err);
    lstm_rng rng;
    lstm_rng_seed(&rng, 1);
    lstm_rnn_reset_parameters(rd, pd, &rng);
    float xs[4 * 2 * 3], ya[4 * 2 * 4], yb[4 * 2 * 4], ye[4 * 2 * 4];
    for (int i = 0; i < 24; i++)
        xs[i] = lstm_rng_normal(&rng);
    lstm_rnn_io dio = {4, 2, xs, NULL, NULL, NULL, ya, NULL, NULL};
    CHECK(lstm_rnn_forward(rd, ctx, pd, &dio, 1, NULL, &err) == LSTM_ERR_INVALID,
          "training with dropout and no rng is refused: %s", err.msg);
    lstm_rng_seed(&rng, 5);
    lstm_rnn_forward(rd, ctx, pd, &dio, 1, &rng, &err);
    dio.y = yb;
    lstm_rng_seed(&rng, 5);
    lstm_rnn_forward(rd, ctx, pd, &dio, 1, &rng, &err);
    CHECK(memcmp(ya, yb, sizeof ya) == 0, "the same seed gives the same dropout");
    dio.y = ye;
    lstm_rnn_forward(rd, ctx, pd, &dio, 0, NULL, &err);
    CHECK(memcmp(ya, ye, sizeof ya) != 0, "evaluation has no dropout");
    lstm_rnn_free(rd);
    lstm_params_free(pd);

    lstm_rnn_free(rnn);
    lstm_params_free(p);
    lstm_ctx_free(ctx);
}

int main(int argc, char **argv) {
    if (argc > 1)
        fixtures = argv[1];
    add_variant(LSTM_KERNELS_REFERENCE, 1, LSTM_BLAS_AUTO, "reference");
    add_variant(LSTM_KERNELS_GENERIC, 1, LSTM_BLAS_OFF, "generic");
    add_variant(LSTM_KERNELS_GENERIC, 2, LSTM_BLAS_ON, "generic, BLAS, 2 threads");
    add_variant(LSTM_KERNELS_AVX2, 1, LSTM_BLAS_OFF, "avx2");
    add_variant(LSTM_KERNELS_AVX2, 2, LSTM_BLAS_OFF, "avx2, 2 threads");
    add_variant(LSTM_KERNELS_AVX2, 2, LSTM_BLAS_ON, "avx2, BLAS, 2 threads");
    add_variant(LSTM_KERNELS_AVX512, 1, LSTM_BLAS_OFF, "avx512");
    add_variant(LSTM_KERNELS_AVX512, 2, LSTM_BLAS_OFF, "avx512, 2 threads");
    add_variant(LSTM_KERNELS_AVX512, 3, LSTM_BLAS_ON, "avx512, BLAS, 3 threads");
    test_fixtures();
    test_onnx_fixtures();
    test_options_meta();
    test_fast_vs_reference();
    test_reverse_identity();
    test_nonfinite();
    test_bf16();
    /* the step API fuses the input product into the step's sum, the
     * sequence API sums it beforehand: with bfloat16 products too the two
     * differ only in the order of float sums */
    add_variant(LSTM_KERNELS_AVX512_BF16, 2, LSTM_BLAS_OFF, "avx512bf16, 2 threads");
    test_step();
    test_errors();
    test_backward_hooks();
    test_ctx_config();
    return check_summary();
}
