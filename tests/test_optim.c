/*
 * test_optim.c - optimizers, gradient clipping, learning-rate schedules and
 * the loss and pooling layers against PyTorch fixtures (tests/gen_fixtures.py).
 *
 * Tolerances: optimizer parameters after each of 6 steps 1e-6 + 1e-6 |want|
 * (the fixtures are float64; our float32 updates differ by rounding only);
 * clipping 1e-6 + 1e-5 |want|; schedules 1e-6 relative; layers 1e-5.
 */
#include "check.h"
#include "lstm.h"

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
    test_clip();
    test_schedules();
    test_layers();
    return check_summary();
}
