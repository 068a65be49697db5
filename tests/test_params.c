/*
 * test_params.c - every public way of writing parameter values marks an
 * LSTM's packed weights stale: after a forward, backward and step have
 * packed the weights for the fast kernels, each write (lstm_params_set,
 * _read, _copy, _ema, lstm_optim_step, lstm_rnn_reset_parameters, and a raw
 * write followed by lstm_params_touch) must be seen by the next forward,
 * backward and step, which are compared with the reference kernels run on a
 * fresh copy of the new values. Also lstm_params_set's argument checks and
 * lstm_params_ema's arithmetic and errors.
 */
#include "check.h"
#include "lstm.h"

#include <stdlib.h>
#include <string.h>

/* the fast kernels against the reference over whole passes (as test_lstm) */
#define FAST_ATOL 2e-5
#define FAST_RTOL 2e-4

enum { T = 4, B = 3, I = 5, H = 12 };

/* What one round of forward, backward and step computes. */
typedef struct {
    float *y, *hn, *cn; /* forward */
    float *dx, *grad;   /* backward: input gradient, every parameter's gradient */
    float *h;           /* T steps of the step API from zero state (D = 1) */
    size_t ny, nh, nc, nx, ngrad;
} results;

static void results_free(results *r) {
    free(r->y);
    free(r->hn);
    free(r->cn);
    free(r->dx);
    free(r->grad);
    free(r->h);
    memset(r, 0, sizeof *r);
}

/* Forward (training), backward with dy, then the step API over the same x:
 * each of them packs weights (or uses the packs) in its own way. */
static results run_all(lstm_rnn *rnn, lstm_ctx *ctx, lstm_params *p, const float *x,
                       const float *dy, const char *what) {
    const lstm_rnn_config *c = lstm_rnn_get_config(rnn);
    int D = c->bidirectional ? 2 : 1, L = c->num_layers, Ho = c->proj_size ? c->proj_size : H;
    results r = {0};
    r.ny = (size_t)T * B * D * Ho;
    r.nh = (size_t)L * D * B * Ho;
    r.nc = (size_t)L * D * B * H;
    r.nx = (size_t)T * B * I;
    r.ngrad = lstm_params_size(p);
    r.y = calloc(r.ny, sizeof(float));
    r.hn = calloc(r.nh, sizeof(float));
    r.cn = calloc(r.nc, sizeof(float));
    r.dx = calloc(r.nx, sizeof(float));
    r.grad = calloc(r.ngrad, sizeof(float));
    lstm_error err;
    lstm_rnn_io io = {.T = T, .B = B, .x = x, .y = r.y, .hn = r.hn, .cn = r.cn};
    CHECK(lstm_rnn_forward(rnn, ctx, p, &io, 1, NULL, &err) == LSTM_OK, "%s: forward: %s", what,
          err.msg);
    lstm_params_zero_grad(p);
    lstm_rnn_grads g = {.dy = dy, .dx = r.dx};
    CHECK(lstm_rnn_backward(rnn, ctx, p, &g, &err) == LSTM_OK, "%s: backward: %s", what,
          err.msg);
    memcpy(r.grad, lstm_params_grad_all(p), sizeof(float) * r.ngrad);
    if (D == 1) {
        r.h = calloc(r.nh, sizeof(float));
        float *cs = calloc(r.nc, sizeof(float));
        for (int t = 0; t < T; t++)
            CHECK(lstm_rnn_step(rnn, ctx, p, B, x + (size_t)t * B * I, r.h, cs, NULL, &err) ==
                      LSTM_OK,
                  "%s: step: %s", what, err.msg);
        free(cs);
    }
    return r;
}

/* The same on the reference kernels, in a new params object holding a copy
 * of p's values: nothing was packed for it before. */
static results reference(const lstm_rnn_config *cfg, lstm_ctx *ref, lstm_params *p,
                         const float *x, const float *dy, const char *what) {
    lstm_error err;
    lstm_params *q = lstm_params_create();
    lstm_rnn *rnn = lstm_rnn_create(cfg, q, "", &err);
    CHECK(rnn && lstm_params_alloc(q, &err) == LSTM_OK, "%s: reference setup: %s", what,
          err.msg);
    memcpy(lstm_params_data_all(q), lstm_params_data_all(p), sizeof(float) * lstm_params_size(p));
    results r = run_all(rnn, ref, q, x, dy, what);
    lstm_rnn_free(rnn);
    lstm_params_free(q);
    return r;
}

static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)a[i] - b[i]) > m)
            m = fabs((double)a[i] - b[i]);
    return m;
}

static void fill(float *v, size_t n, lstm_rng *rng, float scale) {
    for (size_t i = 0; i < n; i++)
        v[i] = (2 * lstm_rng_uniform(rng) - 1) * scale;
}

/* The public ways of writing values. */
enum { SET, READ, COPY, EMA, OPTIM_STEP, RESET, RAW_TOUCH, NPATHS };
static const char *const path_names[NPATHS] = {
    "lstm_params_set",           "lstm_params_read", "lstm_params_copy",
    "lstm_params_ema",           "lstm_optim_step",  "lstm_rnn_reset_parameters",
    "raw write + lstm_params_touch"};

/* Another params object of the same tensors, with other random values. */
static lstm_params *other_values(const lstm_rnn_config *cfg, uint64_t seed, lstm_rnn **rnn) {
    lstm_error err;
    lstm_params *q = lstm_params_create();
    *rnn = lstm_rnn_create(cfg, q, "", &err);
    lstm_params_alloc(q, &err);
    lstm_rng rng;
    lstm_rng_seed(&rng, seed);
    lstm_rnn_reset_parameters(*rnn, q, &rng);
    return q;
}

static void write_values(int path, const lstm_rnn_config *cfg, lstm_rnn *rnn, lstm_params *p,
                         lstm_optim *opt, lstm_rng *rng) {
    lstm_error err;
    const char *what = path_names[path];
    switch (path) {
    case SET:
        for (int i = 0; i < lstm_params_count(p); i++) {
            size_t n = lstm_params_numel(p, i);
            float *v = malloc(sizeof(float) * n);
            fill(v, n, rng, 0.4f);
            CHECK(lstm_params_set(p, i, v, n, &err) == LSTM_OK, "%s: %s", what, err.msg);
            free(v);
        }
        break;
    case READ: {
        lstm_rnn *orn;
        lstm_params *q = other_values(cfg, lstm_rng_next(rng), &orn);
        lstm_st_writer *w = lstm_st_writer_create();
        void *buf = NULL;
        size_t len = 0;
        CHECK(lstm_params_write(q, w, "", &err) == LSTM_OK &&
                  lstm_st_writer_to_memory(w, &buf, &len, &err) == LSTM_OK,
              "%s: writing the file: %s", what, err.msg);
        lstm_st *st = lstm_st_from_memory(buf, len, "other", &err);
        CHECK(st && lstm_params_read(p, st, "", 1, &err) == LSTM_OK, "%s: %s", what, err.msg);
        lstm_st_free(st);
        free(buf);
        lstm_st_writer_free(w);
        lstm_rnn_free(orn);
        lstm_params_free(q);
        break;
    }
    case COPY: {
        lstm_rnn *orn;
        lstm_params *q = other_values(cfg, lstm_rng_next(rng), &orn);
        CHECK(lstm_params_copy(p, q, &err) == LSTM_OK, "%s: %s", what, err.msg);
        lstm_rnn_free(orn);
        lstm_params_free(q);
        break;
    }
    case EMA: {
        lstm_rnn *orn;
        lstm_params *q = other_values(cfg, lstm_rng_next(rng), &orn);
        CHECK(lstm_params_ema(p, q, 0.25f, &err) == LSTM_OK, "%s: %s", what, err.msg);
        lstm_rnn_free(orn);
        lstm_params_free(q);
        break;
    }
    case OPTIM_STEP:
        fill(lstm_params_grad_all(p), lstm_params_size(p), rng, 1.0f);
        lstm_optim_step(opt, p, 0.3f);
        break;
    case RESET:
        lstm_rnn_reset_parameters(rnn, p, rng);
        break;
    case RAW_TOUCH:
        for (int i = 0; i < lstm_params_count(p); i++)
            fill(lstm_params_data(p, i), lstm_params_numel(p, i), rng, 0.4f);
        lstm_params_touch(p);
        break;
    }
}

static void compare(const results *got, const results *want, const char *what) {
    CHECK_CLOSE(got->y, want->y, got->ny, FAST_ATOL, FAST_RTOL, "%s: output", what);
    CHECK_CLOSE(got->hn, want->hn, got->nh, FAST_ATOL, FAST_RTOL, "%s: h_n", what);
    CHECK_CLOSE(got->cn, want->cn, got->nc, FAST_ATOL, FAST_RTOL, "%s: c_n", what);
    CHECK_CLOSE(got->dx, want->dx, got->nx, FAST_ATOL, FAST_RTOL, "%s: grad input", what);
    CHECK_CLOSE(got->grad, want->grad, got->ngrad, FAST_ATOL, FAST_RTOL, "%s: weight grads",
                what);
    if (got->h)
        CHECK_CLOSE(got->h, want->h, got->nh, FAST_ATOL, FAST_RTOL, "%s: step", what);
}

static void test_writes_seen(lstm_ctx *fast, lstm_ctx *ref, int layers, int bidirectional,
                             int proj) {
    lstm_error err;
    lstm_rnn_config cfg = lstm_rnn_config_default(I, H);
    cfg.num_layers = layers;
    cfg.bidirectional = bidirectional;
    cfg.proj_size = proj;
    char name[96];
    snprintf(name, sizeof name, "L=%d D=%d P=%d [%s]", layers, bidirectional ? 2 : 1, proj,
             lstm_ctx_kernels(fast));
    lstm_params *p = lstm_params_create();
    lstm_rnn *rnn = lstm_rnn_create(&cfg, p, "", &err);
    CHECK(rnn && lstm_params_alloc(p, &err) == LSTM_OK, "%s: setup: %s", name, err.msg);
    lstm_rng rng;
    lstm_rng_seed(&rng, 11);
    lstm_rnn_reset_parameters(rnn, p, &rng);
    lstm_optim_config oc = lstm_optim_defaults(LSTM_OPT_SGD);
    lstm_optim *opt = lstm_optim_create(&oc, p, &err);

    int D = bidirectional ? 2 : 1, Ho = proj ? proj : H;
    size_t nx = (size_t)T * B * I, ny = (size_t)T * B * D * Ho;
    float *x = malloc(sizeof(float) * nx), *dy = malloc(sizeof(float) * ny);
    fill(x, nx, &rng, 1.0f);
    fill(dy, ny, &rng, 1.0f);

    /* packs everything: forward, backward and step */
    results before = run_all(rnn, fast, p, x, dy, name);
    for (int path = 0; path < NPATHS; path++) {
        char what[192];
        snprintf(what, sizeof what, "%s: %s", name, path_names[path]);
        /* a forward before the write, whose backward must then be refused */
        float *y = malloc(sizeof(float) * ny);
        lstm_rnn_io io = {.T = T, .B = B, .x = x, .y = y};
        CHECK(lstm_rnn_forward(rnn, fast, p, &io, 1, NULL, &err) == LSTM_OK, "%s: forward: %s",
              what, err.msg);
        uint64_t v0 = lstm_params_version(p);
        write_values(path, &cfg, rnn, p, opt, &rng);
        CHECK(lstm_params_version(p) != v0, "%s: the version did not change", what);
        lstm_rnn_grads g = {.dy = dy};
        CHECK(lstm_rnn_backward(rnn, fast, p, &g, &err) == LSTM_ERR_STATE,
              "%s: a backward through the forward of the old weights was not refused", what);
        free(y);

        results got = run_all(rnn, fast, p, x, dy, what);
        results want = reference(&cfg, ref, p, x, dy, what);
        /* the write changed the results, so stale packed weights would show */
        CHECK(max_diff(got.y, before.y, got.ny) > 1e-3, "%s: the output did not change", what);
        compare(&got, &want, what);
        results_free(&want);
        results_free(&before);
        before = got;
    }
    results_free(&before);
    free(x);
    free(dy);
    lstm_optim_free(opt);
    lstm_rnn_free(rnn);
    lstm_params_free(p);
}

static void test_set_errors(void) {
    lstm_error err;
    lstm_params *p = lstm_params_create();
    int64_t shape[2] = {2, 3};
    int i = lstm_params_declare(p, "w", 2, shape, &err);
    float v[6] = {1, 2, 3, 4, 5, 6};
    CHECK(lstm_params_set(p, i, v, 6, &err) == LSTM_ERR_STATE && strstr(err.msg, "'w'"),
          "set before alloc is refused: %s", err.msg);
    lstm_params_alloc(p, &err);
    uint64_t v0 = lstm_params_version(p);
    CHECK(lstm_params_set(p, 1, v, 6, &err) == LSTM_ERR_INVALID, "index 1 of 1 is refused: %s",
          err.msg);
    CHECK(lstm_params_set(p, -1, v, 6, &err) == LSTM_ERR_INVALID, "index -1 is refused: %s",
          err.msg);
    CHECK(lstm_params_set(p, i, v, 5, &err) == LSTM_ERR_SHAPE && strstr(err.msg, "5 values") &&
              strstr(err.msg, "expected 6"),
          "a wrong count is refused: %s", err.msg);
    CHECK(lstm_params_set(p, i, NULL, 6, &err) == LSTM_ERR_INVALID, "NULL src is refused: %s",
          err.msg);
    const float zeros[6] = {0};
    CHECK(lstm_params_version(p) == v0 && memcmp(lstm_params_data(p, i), zeros, sizeof zeros) == 0,
          "refused sets change neither the values nor the version");
    CHECK(lstm_params_set(p, i, v, 6, &err) == LSTM_OK && err.status == LSTM_OK, "set: %s",
          err.msg);
    CHECK(memcmp(lstm_params_data(p, i), v, sizeof v) == 0 && lstm_params_version(p) != v0,
          "set copies the values and bumps the version");
    lstm_params_free(p);
}

/* avg = decay * avg + (1 - decay) * p, value by value, in float; the
 * bounds of decay; what is refused leaves avg as it was. */
static void test_ema(void) {
    lstm_error err;
    int64_t s23[2] = {2, 3}, s3[1] = {3}, s4[1] = {4};
    lstm_params *a = lstm_params_create(), *p = lstm_params_create(), *q = lstm_params_create();
    lstm_params_declare(a, "w", 2, s23, &err);
    lstm_params_declare(a, "b", 1, s3, &err);
    /* the same names in another order: matched by name */
    lstm_params_declare(p, "b", 1, s3, &err);
    lstm_params_declare(p, "w", 2, s23, &err);
    lstm_params_declare(q, "w", 2, s23, &err);
    lstm_params_declare(q, "b", 1, s4, &err);
    CHECK(lstm_params_ema(a, p, 0.5f, &err) == LSTM_ERR_STATE, "ema before alloc is refused: %s",
          err.msg);
    lstm_params_alloc(a, &err);
    lstm_params_alloc(p, &err);
    lstm_params_alloc(q, &err);
    float w0[6] = {1, -2, 3.5f, 0, 1e-3f, -7}, b0[3] = {0.25f, 9, -1};
    float pw[6] = {3, 2, -1.5f, 8, 1e3f, 7}, pb[3] = {-0.75f, 1, 1};
    lstm_params_set(a, 0, w0, 6, &err);
    lstm_params_set(a, 1, b0, 3, &err);
    lstm_params_set(p, lstm_params_find(p, "w"), pw, 6, &err);
    lstm_params_set(p, lstm_params_find(p, "b"), pb, 3, &err);
    const float d = 0.9f;
    uint64_t v0 = lstm_params_version(a);
    CHECK(lstm_params_ema(a, p, d, &err) == LSTM_OK, "ema: %s", err.msg);
    int exact = 1;
    for (int k = 0; k < 6; k++)
        exact &= lstm_params_data(a, 0)[k] == d * w0[k] + (1 - d) * pw[k];
    for (int k = 0; k < 3; k++)
        exact &= lstm_params_data(a, 1)[k] == d * b0[k] + (1 - d) * pb[k];
    CHECK(exact, "ema: every value is decay * avg + (1 - decay) * p, matched by name");
    CHECK(lstm_params_version(a) != v0, "ema bumps the average's version");
    CHECK(lstm_params_ema(a, p, 0, &err) == LSTM_OK &&
              memcmp(lstm_params_data(a, 0), pw, sizeof pw) == 0 &&
              memcmp(lstm_params_data(a, 1), pb, sizeof pb) == 0,
          "ema with decay 0 is a copy of p");
    lstm_params_set(a, 0, w0, 6, &err);
    lstm_params_set(a, 1, b0, 3, &err);
    CHECK(lstm_params_ema(a, p, 1, &err) == LSTM_OK &&
              memcmp(lstm_params_data(a, 0), w0, sizeof w0) == 0 &&
              memcmp(lstm_params_data(a, 1), b0, sizeof b0) == 0,
          "ema with decay 1 keeps the average");
    float bad[] = {-0.1f, 1.5f, 0.0f / 0.0f};
    for (int k = 0; k < 3; k++)
        CHECK(lstm_params_ema(a, p, bad[k], &err) == LSTM_ERR_INVALID && strstr(err.msg, "decay"),
              "ema with decay %g is refused: %s", (double)bad[k], err.msg);
    CHECK(lstm_params_ema(a, q, 0.5f, &err) == LSTM_ERR_SHAPE && strstr(err.msg, "'b'") &&
              memcmp(lstm_params_data(a, 0), w0, sizeof w0) == 0,
          "ema of another shape is refused before any value changes: %s", err.msg);
    lstm_params_free(a);
    lstm_params_free(p);
    lstm_params_free(q);
}

int main(void) {
    lstm_ctx_config rc = {1, LSTM_KERNELS_REFERENCE, LSTM_BLAS_OFF};
    lstm_ctx *ref = lstm_ctx_create(&rc, NULL);
    /* packed products of the built-in kernels (a BLAS product would read
     * the weights unpacked) */
    lstm_kernels fast_sets[2] = {LSTM_KERNELS_GENERIC, LSTM_KERNELS_AUTO};
    for (int s = 0; s < 2; s++) {
        lstm_ctx_config fc = {1, fast_sets[s], LSTM_BLAS_OFF};
        lstm_ctx *fast = lstm_ctx_create(&fc, NULL);
        if (!fast) {
            printf("ok skipping kernel set %d: not built in\n", (int)fast_sets[s]);
            continue;
        }
        if (s == 0 || strcmp(lstm_ctx_kernels(fast), "generic") != 0) {
            test_writes_seen(fast, ref, 2, 0, 0);
            test_writes_seen(fast, ref, 2, 0, 5);
            test_writes_seen(fast, ref, 1, 1, 0);
        }
        lstm_ctx_free(fast);
    }
    test_set_errors();
    test_ema();
    lstm_ctx_free(ref);
    return check_summary();
}
