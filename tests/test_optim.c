/*
 * test_optim.c - optimizers, gradient clipping, learning-rate schedules and
 * the loss and pooling layers against PyTorch fixtures (tests/gen_fixtures.py).
 *
 * Tolerances: optimizer parameters after each of 6 steps 1e-6 + 1e-6 |want|
 * (the fixtures are float64; our float32 updates differ by rounding only);
 * clipping 1e-6 + 1e-5 |want|; schedules 1e-6 relative; layers 1e-5.
 *
 * The fixtures leave some hyper-parameters at torch's defaults (beta1,
 * beta2, eps, alpha), so a library that ignored them would pass: those are
 * checked against torch.optim's update rules written out here in double
 * precision, which first must reproduce every fixture.
 */
#include "check.h"
#include "lstm.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[256] = "tests/fixtures";

static lstm_st *open_fixture(const char *name) {
    char path[512];
    lstm_error err;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    lstm_st *st = lstm_st_open(path, &err);
    CHECK(st != NULL, "%s", err.msg);
    return st;
}

static float *get(const lstm_st *st, const char *name, size_t *n) {
    const lstm_st_tensor *t = lstm_st_find(st, name);
    CHECK(t != NULL, "fixture tensor %s", name);
    if (!t)
        return calloc(1, sizeof(float));
    float *v = malloc(sizeof(float) * (t->numel ? t->numel : 1));
    lstm_st_read_f32(st, t, v, t->numel, NULL);
    if (n)
        *n = t->numel;
    return v;
}

static float meta_f(const lstm_st *st, const char *key, float dflt) {
    const char *v = lstm_st_meta(st, key);
    if (!v)
        return dflt;
    if (strcmp(v, "True") == 0)
        return 1;
    if (strcmp(v, "False") == 0)
        return 0;
    return strtof(v, NULL);
}

static void test_optimizer(const char *file) {
    lstm_st *st = open_fixture(file);
    if (!st)
        return;
    const char *name = lstm_st_meta(st, "optimizer");
    int type = name ? lstm_optimizer_parse(name) : -1;
    CHECK(type >= 0, "%s: optimizer name %s", file, name ? name : "(none)");
    if (type < 0) {
        lstm_st_free(st);
        return;
    }
    lstm_optim_config c = lstm_optim_defaults((lstm_optimizer)type);
    c.lr = meta_f(st, "lr", c.lr);
    c.momentum = meta_f(st, "momentum", c.momentum);
    c.dampening = meta_f(st, "dampening", c.dampening);
    c.nesterov = (int)meta_f(st, "nesterov", 0);
    c.weight_decay = meta_f(st, "weight_decay", c.weight_decay);
    c.beta1 = meta_f(st, "beta1", c.beta1);
    c.beta2 = meta_f(st, "beta2", c.beta2);
    c.eps = meta_f(st, "eps", c.eps);
    c.alpha = meta_f(st, "alpha", c.alpha);
    c.centered = (int)meta_f(st, "centered", 0);
    c.rho = meta_f(st, "rho", c.rho);
    int steps = (int)meta_f(st, "steps", 6);

    lstm_error err;
    lstm_params *p = lstm_params_create();
    int64_t s0[2] = {4, 3}, s1[1] = {5};
    int i0 = lstm_params_declare(p, "p0", 2, s0, &err);
    int i1 = lstm_params_declare(p, "p1", 1, s1, &err);
    lstm_params_alloc(p, &err);
    float *v = get(st, "init.p0", NULL);
    memcpy(lstm_params_data(p, i0), v, sizeof(float) * 12);
    free(v);
    v = get(st, "init.p1", NULL);
    memcpy(lstm_params_data(p, i1), v, sizeof(float) * 5);
    free(v);
    lstm_optim *o = lstm_optim_create(&c, p, &err);
    CHECK(o != NULL, "%s: create: %s", file, err.msg);
    for (int k = 0; o && k < steps; k++) {
        char n[64];
        for (int which = 0; which < 2; which++) {
            snprintf(n, sizeof n, "grad.%d.p%d", k, which);
            v = get(st, n, NULL);
            memcpy(lstm_params_grad(p, which ? i1 : i0), v, sizeof(float) * (which ? 5 : 12));
            free(v);
        }
        lstm_optim_step(o, p, c.lr);
        for (int which = 0; which < 2; which++) {
            snprintf(n, sizeof n, "after.%d.p%d", k, which);
            v = get(st, n, NULL);
            CHECK_CLOSE(lstm_params_data(p, which ? i1 : i0), v, which ? 5u : 12u, 1e-6, 1e-6,
                        "%s: step %d, p%d", file, k, which);
            free(v);
        }
    }
    CHECK(o && lstm_optim_steps(o) == steps, "%s: step count", file);

    /* the state survives a round trip through safetensors (checkpoints) */
    lstm_st_writer *w = lstm_st_writer_create();
    void *buf;
    size_t len;
    lstm_optim_write(o, w, "optim.", &err);
    lstm_st_writer_to_memory(w, &buf, &len, &err);
    lstm_st *back = lstm_st_from_memory(buf, len, "optimizer state", &err);
    lstm_optim *o2 = lstm_optim_create(&c, p, &err);
    CHECK(lstm_optim_read(o2, back, "optim.", &err) == LSTM_OK && lstm_optim_steps(o2) == steps,
          "%s: optimizer state reloads: %s", file, err.msg);
    free(buf);
    lstm_st_free(back);
    lstm_st_writer_free(w);
    lstm_optim_free(o2);

    lstm_optim_free(o);
    lstm_params_free(p);
    lstm_st_free(st);
}


/* ------------------------------------------------------------------ */
/* torch.optim's update rules (PyTorch 1.13, single-tensor, no amsgrad,
 * maximize off), in double: the reference for hyper-parameters the
 * fixtures keep at their defaults. */

typedef struct {
    double m[32], v[32], b[32]; /* state per value: first/second moments, extra */
} ref_state;

static void ref_step(const lstm_optim_config *c, double *w, const double *g0, ref_state *s,
                     int n, double lr, long step) {
    for (int i = 0; i < n; i++) {
        double g = g0[i];
        switch (c->type) {
        case LSTM_OPT_SGD: {
            double d = g + c->weight_decay * w[i];
            if (c->momentum != 0) {
                s->m[i] = step == 1 ? d : c->momentum * s->m[i] + (1 - c->dampening) * d;
                d = c->nesterov ? d + c->momentum * s->m[i] : s->m[i];
            }
            w[i] -= lr * d;
            break;
        }
        case LSTM_OPT_ADAM:
        case LSTM_OPT_ADAMW: {
            if (c->type == LSTM_OPT_ADAMW)
                w[i] *= 1 - lr * c->weight_decay;
            else
                g += c->weight_decay * w[i];
            s->m[i] = c->beta1 * s->m[i] + (1 - c->beta1) * g;
            s->v[i] = c->beta2 * s->v[i] + (1 - c->beta2) * g * g;
            double bc1 = 1 - pow(c->beta1, (double)step), bc2 = 1 - pow(c->beta2, (double)step);
            w[i] -= lr / bc1 * s->m[i] / (sqrt(s->v[i]) / sqrt(bc2) + c->eps);
            break;
        }
        case LSTM_OPT_RMSPROP: {
            g += c->weight_decay * w[i];
            s->v[i] = c->alpha * s->v[i] + (1 - c->alpha) * g * g;
            double avg;
            if (c->centered) {
                s->m[i] = c->alpha * s->m[i] + (1 - c->alpha) * g;
                avg = sqrt(s->v[i] - s->m[i] * s->m[i]) + c->eps;
            } else {
                avg = sqrt(s->v[i]) + c->eps;
            }
            if (c->momentum > 0) {
                s->b[i] = c->momentum * s->b[i] + g / avg;
                w[i] -= lr * s->b[i];
            } else {
                w[i] -= lr * g / avg;
            }
            break;
        }
        case LSTM_OPT_ADADELTA: {
            g += c->weight_decay * w[i];
            s->v[i] = c->rho * s->v[i] + (1 - c->rho) * g * g;
            double delta = sqrt(s->m[i] + c->eps) / sqrt(s->v[i] + c->eps) * g;
            s->m[i] = c->rho * s->m[i] + (1 - c->rho) * delta * delta;
            w[i] -= lr * delta;
            break;
        }
        }
    }
}

/* The reference must reproduce the torch fixture it is given. */
static void check_reference(const char *file) {
    lstm_st *st = open_fixture(file);
    if (!st)
        return;
    const char *name = lstm_st_meta(st, "optimizer");
    lstm_optim_config c = lstm_optim_defaults((lstm_optimizer)lstm_optimizer_parse(name));
    c.lr = meta_f(st, "lr", c.lr);
    c.momentum = meta_f(st, "momentum", c.momentum);
    c.dampening = meta_f(st, "dampening", c.dampening);
    c.nesterov = (int)meta_f(st, "nesterov", 0);
    c.weight_decay = meta_f(st, "weight_decay", c.weight_decay);
    c.beta1 = meta_f(st, "beta1", c.beta1);
    c.beta2 = meta_f(st, "beta2", c.beta2);
    c.eps = meta_f(st, "eps", c.eps);
    c.alpha = meta_f(st, "alpha", c.alpha);
    c.centered = (int)meta_f(st, "centered", 0);
    c.rho = meta_f(st, "rho", c.rho);
    int steps = (int)meta_f(st, "steps", 6);
    double w[17], g[17];
    ref_state rs;
    memset(&rs, 0, sizeof rs);
    float *v0 = get(st, "init.p0", NULL), *v1 = get(st, "init.p1", NULL);
    for (int i = 0; i < 17; i++)
        w[i] = i < 12 ? v0[i] : v1[i - 12];
    free(v0), free(v1);
    char n0[64], n1[64];
    for (int k = 0; k < steps; k++) {
        snprintf(n0, sizeof n0, "grad.%d.p0", k);
        snprintf(n1, sizeof n1, "grad.%d.p1", k);
        v0 = get(st, n0, NULL), v1 = get(st, n1, NULL);
        for (int i = 0; i < 17; i++)
            g[i] = i < 12 ? v0[i] : v1[i - 12];
        free(v0), free(v1);
        ref_step(&c, w, g, &rs, 17, c.lr, k + 1);
    }
    snprintf(n0, sizeof n0, "after.%d.p0", steps - 1);
    float *want0 = get(st, n0, NULL);
    snprintf(n0, sizeof n0, "after.%d.p1", steps - 1);
    float *want1 = get(st, n0, NULL);
    float want[17];
    for (int i = 0; i < 17; i++)
        want[i] = i < 12 ? want0[i] : want1[i - 12];
    CHECK_CLOSE(w, want, 17u, 1e-6, 1e-6, "%s: the double reference reproduces torch", file);
    free(want0), free(want1);
    lstm_st_free(st);
}

/* Hyper-parameters far from torch's defaults, one optimizer each: the
 * library against the reference over 6 steps, 1e-6 + 1e-6 |want| as for
 * the fixtures (float32 updates, rounding only). */
/* One tensor "w" of n floats and an optimizer c over it; NULL (a failed
 * check, nothing to free) when either cannot be made. */
static lstm_optim *one_tensor(const lstm_optim_config *c, const char *what, int n,
                              lstm_params **pp, float **w, float **g) {
    lstm_error err = {0};
    lstm_params *p = lstm_params_create();
    int64_t shape[1] = {n};
    int ip = p ? lstm_params_declare(p, "w", 1, shape, &err) : -1;
    lstm_optim *o = ip >= 0 && lstm_params_alloc(p, &err) == LSTM_OK
                        ? lstm_optim_create(c, p, &err) : NULL;
    CHECK(o != NULL, "%s: create: %s", what, err.msg);
    if (!o) {
        lstm_params_free(p);
        return NULL;
    }
    *pp = p, *w = lstm_params_data(p, ip), *g = lstm_params_grad(p, ip);
    return o;
}

static void test_hyperparameters(void) {
    struct {
        const char *what;
        lstm_optim_config c;
    } cases[] = {
        /* type, lr, momentum, dampening, nesterov, beta1, beta2, eps, alpha, centered, rho, wd, lazy */
        {"adam beta1 0.5 beta2 0.8 eps 0.1", {LSTM_OPT_ADAM, 0.05f, 0, 0, 0, 0.5f, 0.8f, 0.1f, 0, 0, 0, 0, 0}},
        {"adam beta1 0.3 beta2 0.95 eps 1e-3 weight_decay 0.2",
         {LSTM_OPT_ADAM, 0.05f, 0, 0, 0, 0.3f, 0.95f, 1e-3f, 0, 0, 0, 0.2f, 0}},
        {"adamw beta1 0.6 beta2 0.7 eps 0.05 weight_decay 0.3",
         {LSTM_OPT_ADAMW, 0.05f, 0, 0, 0, 0.6f, 0.7f, 0.05f, 0, 0, 0, 0.3f, 0}},
        {"rmsprop alpha 0.5 eps 0.1", {LSTM_OPT_RMSPROP, 0.05f, 0, 0, 0, 0, 0, 0.1f, 0.5f, 0, 0, 0, 0}},
        {"rmsprop centered alpha 0.7 eps 1e-3 momentum 0.3",
         {LSTM_OPT_RMSPROP, 0.05f, 0.3f, 0, 0, 0, 0, 1e-3f, 0.7f, 1, 0, 0, 0}},
        {"adadelta rho 0.5 eps 0.01 lr 0.7", {LSTM_OPT_ADADELTA, 0.7f, 0, 0, 0, 0, 0, 0.01f, 0, 0, 0.5f, 0, 0}},
        {"sgd momentum 0.5 dampening 0.5 weight_decay 0.1",
         {LSTM_OPT_SGD, 0.1f, 0.5f, 0.5f, 0, 0, 0, 0, 0, 0, 0, 0.1f, 0}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const lstm_optim_config *c = &cases[k].c;
        lstm_params *p;
        float *w, *g;
        lstm_optim *o = one_tensor(c, cases[k].what, 9, &p, &w, &g);
        if (!o)
            continue;
        lstm_rng rng;
        lstm_rng_seed(&rng, 100 + k);
        double wd[9], gd[9];
        ref_state rs;
        memset(&rs, 0, sizeof rs);
        for (int i = 0; i < 9; i++)
            wd[i] = w[i] = lstm_rng_normal(&rng);
        for (int step = 1; step <= 6; step++) {
            for (int i = 0; i < 9; i++)
                gd[i] = g[i] = lstm_rng_normal(&rng) * (i % 3 == 0 ? 0.01f : 1.0f);
            lstm_optim_step(o, p, c->lr);
            ref_step(c, wd, gd, &rs, 9, c->lr, step);
        }
        CHECK_CLOSE(w, wd, 9u, 1e-6, 1e-6, "%s: 6 steps as torch.optim", cases[k].what);
        lstm_optim_free(o);
        lstm_params_free(p);
    }
}

/* Optimizer state that decays toward zero is stored as zero once it falls
 * below FLT_MIN (optim.c, flush): subnormals made the tagger's Adam a
 * third slower. A gradient on the first steps, then 3000 zero ones: every
 * kind of state must decay past FLT_MIN, hold no subnormal at any point,
 * and the weights must still follow torch.optim's rule. */
static int state_subnormals(const lstm_optim *o, int n) {
    lstm_error err;
    lstm_st_writer *w = lstm_st_writer_create();
    void *buf = NULL;
    size_t len = 0;
    int bad = -1;
    if (lstm_optim_write(o, w, "optim.", &err) == LSTM_OK &&
        lstm_st_writer_to_memory(w, &buf, &len, &err) == LSTM_OK) {
        lstm_st *st = lstm_st_from_memory(buf, len, "optimizer state", &err);
        bad = 0;
        char name[32];
        for (int b = 0; st && b < 4; b++) {
            snprintf(name, sizeof name, "optim.state%d", b);
            const lstm_st_tensor *t = lstm_st_find(st, name);
            float v[64];
            if (!t)
                break;
            if (t->numel < (size_t)n || t->numel > 64 ||
                lstm_st_read_f32(st, t, v, t->numel, &err) != LSTM_OK) {
                bad = -1;
                break;
            }
            for (int i = 0; i < n; i++)
                bad += fpclassify(v[i]) == FP_SUBNORMAL;
        }
        lstm_st_free(st);
    }
    free(buf);
    lstm_st_writer_free(w);
    return bad;
}

static void test_subnormal_state(void) {
    struct {
        const char *what;
        lstm_optim_config c;
    } cases[] = {
        /* type, lr, momentum, dampening, nesterov, beta1, beta2, eps, alpha, centered, rho, wd, lazy */
        {"adam", {LSTM_OPT_ADAM, 1e-3f, 0, 0, 0, 0.9f, 0.97f, 1e-8f, 0, 0, 0, 0, 0}},
        /* lr * weight_decay = 2^-14: the float shrink factor is exact, so
           3000 steps of it do not drift from the double reference */
        {"adamw", {LSTM_OPT_ADAMW, 0x1p-10f, 0, 0, 0, 0.9f, 0.97f, 1e-8f, 0, 0, 0, 0x1p-4f, 0}},
        {"sgd momentum 0.9", {LSTM_OPT_SGD, 0.01f, 0.9f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
        {"rmsprop centered momentum 0.9",
         {LSTM_OPT_RMSPROP, 1e-3f, 0.9f, 0, 0, 0, 0, 1e-8f, 0.97f, 1, 0, 0, 0}},
        {"adadelta rho 0.95", {LSTM_OPT_ADADELTA, 1.0f, 0, 0, 0, 0, 0, 1e-6f, 0, 0, 0.95f, 0, 0}},
    };
    enum { N = 8, STEPS = 3000 };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const lstm_optim_config *c = &cases[k].c;
        lstm_params *p;
        float *w, *g;
        lstm_optim *o = one_tensor(c, cases[k].what, N, &p, &w, &g);
        if (!o)
            continue;
        double wd[N], gd[N];
        ref_state rs;
        memset(&rs, 0, sizeof rs);
        for (int i = 0; i < N; i++)
            wd[i] = w[i] = 0.5f - 0.1f * (float)i;
        int subnormal_steps = 0, unreadable = 0;
        for (int step = 1; step <= STEPS; step++) {
            for (int i = 0; i < N; i++)
                gd[i] = g[i] = step <= 3 ? 0.3f * (float)(i + 1) : 0.0f;
            lstm_optim_step(o, p, c->lr);
            ref_step(c, wd, gd, &rs, N, c->lr, step);
            int bad = state_subnormals(o, N);
            unreadable += bad < 0;
            subnormal_steps += bad > 0;
        }
        CHECK(unreadable == 0, "%s: the state could not be read on %d steps", cases[k].what,
              unreadable);
        CHECK(subnormal_steps == 0, "%s: optimizer state held subnormals on %d of %d steps",
              cases[k].what, subnormal_steps, STEPS);
        /* the state the double reference ends with lies below FLT_MIN, so
           the flush was exercised, not merely never needed */
        double least = INFINITY;
        for (int i = 0; i < N; i++)
            least = fmin(least, fabs(rs.m[i]));
        CHECK(least < FLT_MIN, "%s: the reference state decays below FLT_MIN (%g)",
              cases[k].what, least);
        CHECK_CLOSE(w, wd, (unsigned)N, 1e-6, 1e-5, "%s: %d steps as torch.optim", cases[k].what,
                    STEPS);
        lstm_optim_free(o);
        lstm_params_free(p);
    }
}

static void test_clip(void) {
    lstm_st *st = open_fixture("clip.safetensors");
    if (!st)
        return;
    for (int k = 0; k < 3; k++) {
        lstm_error err;
        lstm_params *p = lstm_params_create();
        int64_t sa[2] = {3, 4}, sb[1] = {7};
        int ia = lstm_params_declare(p, "a", 2, sa, &err);
        int ib = lstm_params_declare(p, "b", 1, sb, &err);
        lstm_params_alloc(p, &err);
        char n[64];
        snprintf(n, sizeof n, "case%d.a", k);
        float *v = get(st, n, NULL);
        memcpy(lstm_params_grad(p, ia), v, sizeof(float) * 12);
        free(v);
        snprintf(n, sizeof n, "case%d.b", k);
        v = get(st, n, NULL);
        memcpy(lstm_params_grad(p, ib), v, sizeof(float) * 7);
        free(v);
        snprintf(n, sizeof n, "case%d.max_norm", k);
        float max_norm = meta_f(st, n, -1);
        float norm = lstm_clip_grad_norm(p, max_norm);
        snprintf(n, sizeof n, "case%d.norm", k);
        v = get(st, n, NULL);
        CHECK_CLOSE(&norm, v, 1, 1e-6, 1e-6, "clip case %d: norm", k);
        free(v);
        snprintf(n, sizeof n, "case%d.clipped.a", k);
        v = get(st, n, NULL);
        CHECK_CLOSE(lstm_params_grad(p, ia), v, 12, 1e-6, 1e-5, "clip case %d: a", k);
        free(v);
        snprintf(n, sizeof n, "case%d.clipped.b", k);
        v = get(st, n, NULL);
        CHECK_CLOSE(lstm_params_grad(p, ib), v, 7, 1e-6, 1e-5, "clip case %d: b", k);
        free(v);
        lstm_params_free(p);
    }
    lstm_st_free(st);
}

/* lstm_clip_grad_norm beyond the fixtures: below max_norm (even just
 * below), with max_norm 0 or negative (off) and with zero gradients the
 * gradients stay bit for bit; above, each is scaled by
 * max_norm / (norm + 1e-6), to within a float rounding of the product. */
static void test_clip_exact(void) {
    struct {
        const char *what;
        double norm;      /* the gradients' norm */
        double max_norm;  /* as a multiple of norm (0: 0) */
        float max_abs;    /* max_norm itself when norm is 0 */
        int clipped;
    } cases[] = {
        {"norm 0.5, max_norm 1", 0.5, 2, 0, 0},
        {"norm just below max_norm (1 - 1e-4)", 3.0, 1.0001, 0, 0},
        {"max_norm 0 (off), norm 40", 40, 0, 0, 0},
        {"max_norm -1 (off), norm 40", 40, -1.0 / 40, 0, 0},
        {"zero gradients, max_norm 1", 0, 0, 1, 0},
        {"norm 40, max_norm 0.5", 40, 0.5 / 40, 0, 1},
        {"norm 2, max_norm 1.999", 2, 0.9995, 0, 1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        lstm_error err;
        lstm_params *p = lstm_params_create();
        int64_t sa[2] = {5, 3}, sb[1] = {11};
        int ia = lstm_params_declare(p, "a", 2, sa, &err);
        int ib = lstm_params_declare(p, "b", 1, sb, &err);
        lstm_params_alloc(p, &err);
        lstm_rng rng;
        lstm_rng_seed(&rng, 40 + k);
        float *ga = lstm_params_grad(p, ia), *gb = lstm_params_grad(p, ib);
        float before[26];
        double ss = 0;
        for (int i = 0; i < 26; i++) {
            before[i] = lstm_rng_normal(&rng);
            ss += (double)before[i] * before[i];
        }
        for (int i = 0; i < 26; i++) /* scaled to the case's norm */
            before[i] = (float)(before[i] * (cases[k].norm / sqrt(ss)));
        ss = 0;
        for (int i = 0; i < 26; i++)
            ss += (double)before[i] * before[i];
        double norm = sqrt(ss);
        memcpy(ga, before, sizeof(float) * 15);
        memcpy(gb, before + 15, sizeof(float) * 11);
        float max_norm = cases[k].norm > 0 ? (float)(cases[k].max_norm * norm) : cases[k].max_abs;
        float got = lstm_clip_grad_norm(p, max_norm);
        CHECK(fabs(got - norm) <= 1e-6 * norm, "clip %s: returns the norm before clipping: %g, want %g",
              cases[k].what, (double)got, norm);
        float after[26];
        memcpy(after, ga, sizeof(float) * 15);
        memcpy(after + 15, gb, sizeof(float) * 11);
        if (!cases[k].clipped) {
            CHECK(memcmp(after, before, sizeof after) == 0, "clip %s: gradients untouched",
                  cases[k].what);
        } else {
            double coef = max_norm / (norm + 1e-6), want[26], ss2 = 0;
            for (int i = 0; i < 26; i++) {
                want[i] = before[i] * coef;
                ss2 += (double)after[i] * after[i];
            }
            /* one float rounding of the product: 2^-24 relative, 2^-23 allowed */
            CHECK_CLOSE(after, want, 26u, 0, 1.2e-7, "clip %s: scaled by max_norm / (norm + 1e-6)",
                        cases[k].what);
            CHECK(fabs(sqrt(ss2) - max_norm * norm / (norm + 1e-6)) <= 1e-6 * max_norm,
                  "clip %s: the norm after is max_norm (%g)", cases[k].what, sqrt(ss2));
        }
        lstm_params_free(p);
    }
}

/* lazy Adam (lstm_optim_config.lazy): over 6 steps of Adam and AdamW, the
 * rows of a tensor marked sparse whose gradient is zero keep their weights
 * bit for bit (and their moments: the next update of such a row is the
 * reference's with the state it had); every other value follows torch's
 * Adam (the double reference above) with the global step count. A 2-D
 * tensor not marked sparse is updated whole, zero rows included. The norm
 * of lstm_clip_grad_norm, which skips the zero rows of a sparse tensor, is
 * the sum over every gradient in order, bit for bit. */
static void test_lazy(void) {
    for (int type = LSTM_OPT_ADAM; type <= LSTM_OPT_ADAMW; type++) {
        lstm_error err;
        lstm_params *p = lstm_params_create();
        int64_t se[2] = {6, 3}, sd[2] = {2, 3}, sb[1] = {5};
        int ie = lstm_params_declare(p, "emb", 2, se, &err);
        int id = lstm_params_declare(p, "dense", 2, sd, &err);
        int ib = lstm_params_declare(p, "bias", 1, sb, &err);
        CHECK(lstm_params_alloc(p, &err) == LSTM_OK, "lazy: alloc: %s", err.msg);
        lstm_params_set_sparse(p, ie, 1);
        lstm_params_set_sparse(p, ib, 1); /* 1-D: ignored */
        CHECK(lstm_params_sparse(p, ie) == 1 && lstm_params_sparse(p, id) == 0 &&
                  lstm_params_sparse(p, ib) == 0 && lstm_params_sparse(p, 9) == 0,
              "lazy: only a 2-D tensor can be marked sparse");
        const int idx[3] = {ie, id, ib}, cnt[3] = {18, 6, 5};
        lstm_optim_config c = lstm_optim_defaults((lstm_optimizer)type);
        c.lr = 0.05f, c.weight_decay = 0.1f, c.lazy = 1;
        lstm_rng rng;
        lstm_rng_seed(&rng, 70 + type);
        double w[29], g[29];
        for (int t = 0, at = 0; t < 3; t++)
            for (int i = 0; i < cnt[t]; i++, at++) {
                w[at] = lstm_rng_normal(&rng);
                float f = (float)w[at];
                lstm_params_data(p, idx[t])[i] = f;
                w[at] = f;
            }
        lstm_params_touch(p);
        lstm_optim *o = lstm_optim_create(&c, p, &err);
        ref_state rs;
        memset(&rs, 0, sizeof rs);
        float row5[3], row2_before[3], dense1[3];
        memcpy(row5, lstm_params_data(p, ie) + 15, sizeof row5);
        memcpy(dense1, lstm_params_data(p, id) + 3, sizeof dense1);
        for (int k = 0; k < 6; k++) {
            lstm_params_zero_grad(p);
            double ss = 0;
            for (int t = 0, at = 0; t < 3; t++)
                for (int i = 0; i < cnt[t]; i++, at++) {
                    int row = i / 3;
                    /* emb: row 5 never used, row 2 not at step 3, row k % 5 not either;
                     * dense: row 1 zero at every step */
                    int zero = (t == 0 && (row == 5 || (row == 2 && k == 3) || row == k % 5)) ||
                               (t == 1 && row == 1);
                    float f = zero ? 0 : (float)lstm_rng_normal(&rng);
                    lstm_params_grad(p, idx[t])[i] = f;
                    g[at] = f;
                    ss += (double)f * f;
                }
            float norm = lstm_clip_grad_norm(p, 0);
            float want_norm = (float)sqrt(ss);
            CHECK(memcmp(&norm, &want_norm, sizeof norm) == 0,
                  "lazy %s step %d: the norm skips zero rows and is the same sum (%.9g, want %.9g)",
                  lstm_optimizer_name(c.type), k + 1, (double)norm, (double)want_norm);
            if (k == 3)
                memcpy(row2_before, lstm_params_data(p, ie) + 6, sizeof row2_before);
            lstm_optim_step(o, p, c.lr);
            /* the reference, value by value with its own moments; a value of a
             * zero row of emb is skipped */
            for (int i = 0; i < 29; i++) {
                int r = i / 3, used = i >= 18;
                if (!used)
                    for (int j = 0; j < 3; j++)
                        used |= g[r * 3 + j] != 0;
                if (!used)
                    continue;
                ref_state one;
                memset(&one, 0, sizeof one);
                one.m[0] = rs.m[i], one.v[0] = rs.v[i];
                ref_step(&c, w + i, g + i, &one, 1, c.lr, k + 1);
                rs.m[i] = one.m[0], rs.v[i] = one.v[0];
            }
            float got[29];
            for (int t = 0, at = 0; t < 3; t++)
                for (int i = 0; i < cnt[t]; i++, at++)
                    got[at] = lstm_params_data(p, idx[t])[i];
            CHECK_CLOSE(got, w, 29u, 1e-6, 1e-6, "lazy %s step %d: the used rows follow Adam, "
                        "the unused rows of emb stay", lstm_optimizer_name(c.type), k + 1);
            if (k == 3)
                CHECK(memcmp(lstm_params_data(p, ie) + 6, row2_before, sizeof row2_before) == 0,
                      "lazy %s: a row unused at step 4 keeps its weights bit for bit",
                      lstm_optimizer_name(c.type));
        }
        CHECK(memcmp(lstm_params_data(p, ie) + 15, row5, sizeof row5) == 0,
              "lazy %s: a row never used keeps its weights bit for bit",
              lstm_optimizer_name(c.type));
        CHECK(memcmp(lstm_params_data(p, id) + 3, dense1, sizeof dense1) != 0,
              "lazy %s: a zero row of a tensor not marked sparse moves (its weight decay)",
              lstm_optimizer_name(c.type));
        lstm_optim_free(o);
        lstm_params_free(p);
    }
}

static void test_schedules(void) {
    lstm_st *st = open_fixture("schedules.safetensors");
    if (!st)
        return;
    struct {
        const char *name;
        lstm_schedule s;
    } cases[] = {
        {"step", {LSTM_SCHED_STEP, 0.1f, 0.5f, 3, 1, 0, 0, 0}},
        {"exponential", {LSTM_SCHED_EXPONENTIAL, 0.1f, 0.9f, 1, 0, 0, 0, 0}},
        {"cosine", {LSTM_SCHED_COSINE, 0.1f, 0, 0, 0, 8, 0.001f, 0}},
    };
    for (int c = 0; c < 3; c++) {
        size_t n;
        float *want = get(st, cases[c].name, &n);
        float got[64];
        for (size_t t = 0; t < n && t < 64; t++)
            got[t] = lstm_schedule_lr(&cases[c].s, (long)t);
        CHECK_CLOSE(got, want, n, 0, 1e-6, "schedule %s", cases[c].name);
        free(want);
    }
    lstm_st_free(st);
    /* staircase exponential decay, as the char-rnn tutorial's
     * tf.train.exponential_decay(0.002, step, 1000, 0.97, staircase=True) */
    lstm_schedule s = {LSTM_SCHED_EXPONENTIAL, 0.002f, 0.97f, 1000, 1, 0, 0, 0};
    CHECK(lstm_schedule_lr(&s, 999) == 0.002f, "staircase: constant within a stair");
    CHECK(fabsf(lstm_schedule_lr(&s, 2500) - 0.002f * 0.97f * 0.97f) < 1e-9f,
          "staircase: two stairs down at 2500");
    s.staircase = 0;
    CHECK(fabsf(lstm_schedule_lr(&s, 500) - 0.002f * powf(0.97f, 0.5f)) < 1e-9f,
          "smooth exponential decay");
    lstm_schedule wu = {LSTM_SCHED_CONSTANT, 0.01f, 0, 0, 0, 0, 0, 4};
    CHECK(fabsf(lstm_schedule_lr(&wu, 0) - 0.0025f) < 1e-9f && lstm_schedule_lr(&wu, 4) == 0.01f,
          "linear warm-up");
    CHECK(fabsf(lstm_schedule_lr(&wu, 2) - 0.0075f) < 1e-9f, "warm-up: 3/4 of the rate at t = 2 of 4");
    /* the warm-up scales whatever the schedule gives */
    lstm_schedule sw = {LSTM_SCHED_STEP, 0.1f, 0.5f, 1, 0, 0, 0, 3};
    CHECK(fabsf(lstm_schedule_lr(&sw, 1) - 0.1f * 0.5f * 2 / 3) < 1e-8f,
          "warm-up on a step schedule: 2/3 of 0.05 at t = 1");
    /* cosine stays at min_lr after total */
    lstm_schedule cs = {LSTM_SCHED_COSINE, 0.1f, 0, 0, 0, 8, 0.001f, 0};
    CHECK(fabsf(lstm_schedule_lr(&cs, 20) - 0.001f) < 1e-9f, "cosine: min_lr after total (t = 20 of 8)");
    CHECK(fabsf(lstm_schedule_lr(&cs, 4) - 0.0505f) < 1e-8f, "cosine: halfway at t = total / 2");
}

static void test_layers(void) {
    lstm_st *st = open_fixture("layers.safetensors");
    if (!st)
        return;
    float *logits = get(st, "ce.logits", NULL), *want_logp = get(st, "ce.logp", NULL);
    float *want_sum = get(st, "ce.loss_sum", NULL), *want_grad = get(st, "ce.grad_logits", NULL);
    int64_t t64[6];
    lstm_st_read_i64(st, lstm_st_find(st, "ce.targets"), t64, 6, NULL);
    int32_t targets[6];
    for (int i = 0; i < 6; i++)
        targets[i] = (int32_t)t64[i];
    float logp[30], grad[30] = {0};
    int count;
    float loss = (float)lstm_cross_entropy_forward(NULL, logp, logits, targets, 6, 5, -100, &count);
    CHECK_CLOSE(logp, want_logp, 30, 1e-5, 1e-5, "log_softmax");
    CHECK_CLOSE(&loss, want_sum, 1, 1e-5, 1e-5, "summed NLL over rows not ignored");
    CHECK(count == 5, "one row ignored: counted %d", count);
    lstm_cross_entropy_backward(NULL, grad, logp, targets, 6, 5, -100, 1);
    CHECK_CLOSE(grad, want_grad, 30, 1e-5, 1e-5, "cross-entropy gradient");
    free(logits), free(want_logp), free(want_sum), free(want_grad);

    float *x = get(st, "pool.x", NULL), *want_mean = get(st, "pool.mean", NULL);
    float *want_last = get(st, "pool.last", NULL);
    int len[3] = {4, 1, 2};
    float out[6];
    lstm_mean_pool_forward(out, x, len, 4, 3, 2);
    CHECK_CLOSE(out, want_mean, 6, 1e-6, 1e-6, "mean pooling over real steps");
    lstm_last_pool_forward(out, x, len, 4, 3, 2);
    CHECK_CLOSE(out, want_last, 6, 0, 0, "last-step pooling");
    free(x), free(want_mean), free(want_last);
    lstm_st_free(st);
}

int main(int argc, char **argv) {
    if (argc > 1)
        snprintf(dir, sizeof dir, "%s", argv[1]);
    const char *opt[] = {"optim_sgd.safetensors",       "optim_sgd_momentum.safetensors",
                         "optim_sgd_nesterov.safetensors", "optim_adam.safetensors",
                         "optim_adam_wd.safetensors",   "optim_adamw.safetensors",
                         "optim_rmsprop.safetensors",   "optim_rmsprop_centered.safetensors",
                         "optim_adadelta.safetensors",  "optim_adadelta_wd.safetensors"};
    for (size_t i = 0; i < sizeof opt / sizeof *opt; i++)
        test_optimizer(opt[i]);
    for (size_t i = 0; i < sizeof opt / sizeof *opt; i++)
        check_reference(opt[i]);
    test_hyperparameters();
    test_clip();
    test_clip_exact();
    test_lazy();
    test_subnormal_state();
    test_schedules();
    test_layers();
    return check_summary();
}
