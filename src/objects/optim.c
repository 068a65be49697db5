/* optim.c - torch.optim's SGD, Adam, AdamW, RMSprop and Adadelta (as in
 * PyTorch 1.13), clip_grad_norm_, and learning-rate schedules. */
#include "internal.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BUFS 3

struct lstm_optim {
    lstm_optim_config cfg;
    size_t n;            /* floats per buffer: lstm_params_size */
    int nbufs;
    float *buf[MAX_BUFS];
    long steps;
};

lstm_optim_config lstm_optim_defaults(lstm_optimizer type) {
    lstm_optim_config c = {0};
    c.type = type;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.alpha = 0.99f;
    c.rho = 0.9f;
    switch (type) {
    case LSTM_OPT_SGD: c.lr = 1e-2f; break;
    case LSTM_OPT_ADAM: c.lr = 1e-3f; c.eps = 1e-8f; break;
    case LSTM_OPT_ADAMW: c.lr = 1e-3f; c.eps = 1e-8f; c.weight_decay = 1e-2f; break;
    case LSTM_OPT_RMSPROP: c.lr = 1e-2f; c.eps = 1e-8f; break;
    case LSTM_OPT_ADADELTA: c.lr = 1.0f; c.eps = 1e-6f; break;
    }
    return c;
}

static const char *const opt_names[] = {"sgd", "adam", "adamw", "rmsprop", "adadelta"};

int lstm_optimizer_parse(const char *name) {
    for (int i = 0; i < 5; i++)
        if (strcmp(name, opt_names[i]) == 0)
            return i;
    return -1;
}

const char *lstm_optimizer_name(lstm_optimizer type) {
    return (unsigned)type < 5 ? opt_names[type] : "unknown";
}

/* The state buffers each optimizer keeps. */
static int buffers_needed(const lstm_optim_config *c) {
    switch (c->type) {
    case LSTM_OPT_SGD: return c->momentum != 0;             /* momentum */
    case LSTM_OPT_ADAM:
    case LSTM_OPT_ADAMW: return 2;                          /* exp_avg, exp_avg_sq */
    case LSTM_OPT_RMSPROP: return 1 + (c->centered != 0) + (c->momentum > 0); /* square_avg, grad_avg, momentum */
    case LSTM_OPT_ADADELTA: return 2;                       /* square_avg, acc_delta */
    }
    return 0;
}

lstm_optim *lstm_optim_create(const lstm_optim_config *cfg, const lstm_params *p,
                              lstm_error *err) {
    if ((unsigned)cfg->type > LSTM_OPT_ADADELTA) {
        lstm_fail(err, LSTM_ERR_INVALID, "unknown optimizer %d", (int)cfg->type);
        return NULL;
    }
    if (!(cfg->lr >= 0) || !(cfg->weight_decay >= 0) || !(cfg->momentum >= 0) ||
        !(cfg->eps >= 0) || !(cfg->beta1 >= 0 && cfg->beta1 < 1) ||
        !(cfg->beta2 >= 0 && cfg->beta2 < 1) || !(cfg->rho >= 0 && cfg->rho <= 1) ||
        !(cfg->alpha >= 0)) {
        lstm_fail(err, LSTM_ERR_INVALID, "optimizer settings out of range");
        return NULL;
    }
    if (cfg->nesterov && (cfg->momentum <= 0 || cfg->dampening != 0)) {
        lstm_fail(err, LSTM_ERR_INVALID, "Nesterov momentum requires a momentum and zero dampening");
        return NULL;
    }
    lstm_optim *o = calloc(1, sizeof *o);
    if (!o) {
        lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
        return NULL;
    }
    o->cfg = *cfg;
    o->n = lstm_params_size(p);
    o->nbufs = buffers_needed(cfg);
    for (int i = 0; i < o->nbufs; i++) {
        o->buf[i] = lstm_alloc_aligned(lstm_mul_size(o->n ? o->n : 1, sizeof(float)));
        if (!o->buf[i]) {
            lstm_optim_free(o);
            lstm_fail(err, LSTM_ERR_NOMEM, "out of memory for optimizer state");
            return NULL;
        }
        memset(o->buf[i], 0, sizeof(float) * o->n);
    }
    lstm_ok(err);
    return o;
}

void lstm_optim_free(lstm_optim *o) {
    if (!o)
        return;
    for (int i = 0; i < MAX_BUFS; i++)
        lstm_free_aligned(o->buf[i]);
    free(o);
}

long lstm_optim_steps(const lstm_optim *o) { return o->steps; }

/* Optimizer state that decays toward zero (the moments of an embedding
 * row that no batch uses) turns subnormal after some hundred steps, and
 * arithmetic on subnormals runs many times slower on x86 (the tagger lost
 * a third of its speed to it). Such values are stored as zero instead:
 * what that changes lies below FLT_MIN (1.2e-38), and it costs nothing
 * measurable. The caller's floating-point mode is left alone. */
static inline float flush(float x) { return fabsf(x) < FLT_MIN ? 0.0f : x; }

static void sgd(const lstm_optim_config *c, float *w, const float *g, float *mom, size_t n,
                float lr, int first) {
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + c->weight_decay * w[i];
        if (mom) {
            mom[i] = flush(first ? d : c->momentum * mom[i] + (1 - c->dampening) * d);
            d = c->nesterov ? d + c->momentum * mom[i] : mom[i];
        }
        w[i] -= lr * d;
    }
}

static void adam(const lstm_optim_config *c, float *w, const float *g, float *m, float *v,
                 size_t n, float lr, long step, int decoupled) {
    double bc1 = 1 - pow(c->beta1, (double)step), bc2 = 1 - pow(c->beta2, (double)step);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    float l2 = decoupled ? 0 : c->weight_decay;
    float shrink = decoupled ? 1 - lr * c->weight_decay : 1;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + l2 * w[i];
        w[i] *= shrink;
        m[i] = flush(m[i] + (gi - m[i]) * (1 - c->beta1));
        v[i] = flush(c->beta2 * v[i] + (1 - c->beta2) * gi * gi);
        float denom = sqrtf(v[i]) / bc2_sqrt + c->eps;
        w[i] -= step_size * m[i] / denom;
    }
}

static void rmsprop(const lstm_optim_config *c, float *w, const float *g, float *sq,
                    float *gavg, float *mom, size_t n, float lr) {
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + c->weight_decay * w[i];
        sq[i] = flush(c->alpha * sq[i] + (1 - c->alpha) * gi * gi);
        float avg;
        if (gavg) {
            gavg[i] = flush(c->alpha * gavg[i] + (1 - c->alpha) * gi);
            avg = sqrtf(sq[i] - gavg[i] * gavg[i]) + c->eps;
        } else {
            avg = sqrtf(sq[i]) + c->eps;
        }
        if (mom) {
            mom[i] = flush(c->momentum * mom[i] + gi / avg);
            w[i] -= lr * mom[i];
        } else {
            w[i] -= lr * gi / avg;
        }
    }
}

static void adadelta(const lstm_optim_config *c, float *w, const float *g, float *sq,
                     float *acc, size_t n, float lr) {
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + c->weight_decay * w[i];
        sq[i] = flush(c->rho * sq[i] + (1 - c->rho) * gi * gi);
        float std = sqrtf(sq[i] + c->eps);
        float delta = sqrtf(acc[i] + c->eps) / std * gi;
        acc[i] = flush(c->rho * acc[i] + (1 - c->rho) * delta * delta);
        w[i] -= lr * delta;
    }
}

/* Whether a row of n gradients holds anything but zeros (a sign bit
 * alone counts as zero): an or of the bits, which vectorizes. */
static int row_used(const float *g, size_t n) {
    uint32_t any = 0;
    for (size_t j = 0; j < n; j++) {
        uint32_t b;
        memcpy(&b, &g[j], sizeof b);
        any |= b & 0x7fffffffu;
    }
    return any != 0;
}

/* The sparse tensors of p that lie within the first n floats, one at a
 * time: *i is the index to look from (start at 0), advanced past the one
 * found; its offset, element count and row length in off, numel, cols.
 * Returns 0 when there is none left. The tensors lie in the buffer in the
 * order of their indices. */
static int next_sparse(lstm_params *p, int *i, size_t n, size_t *off, size_t *numel,
                       size_t *cols) {
    const float *base = lstm_params_data_all(p);
    for (; *i < lstm_params_count(p); (*i)++) {
        if (!lstm_params_sparse(p, *i))
            continue;
        *off = (size_t)(lstm_params_data(p, *i) - base), *numel = lstm_params_numel(p, *i);
        *cols = (size_t)lstm_params_shape(p, *i)[1];
        if (*off + *numel <= n && *cols > 0) {
            (*i)++;
            return 1;
        }
    }
    return 0;
}

/* Adam over the whole buffer, except that the rows of the tensors marked
 * sparse whose gradient is zero are skipped (lstm_optim_config.lazy). */
static void lazy_adam(const lstm_optim_config *c, lstm_params *p, float *w, const float *g,
                      float *m, float *v, size_t n, float lr, long step, int decoupled) {
    size_t at = 0, off, numel, cols;
    for (int i = 0; next_sparse(p, &i, n, &off, &numel, &cols); at = off + numel) {
        adam(c, w + at, g + at, m + at, v + at, off - at, lr, step, decoupled);
        for (size_t r = off; r < off + numel; r += cols)
            if (row_used(g + r, cols))
                adam(c, w + r, g + r, m + r, v + r, cols, lr, step, decoupled);
    }
    adam(c, w + at, g + at, m + at, v + at, n - at, lr, step, decoupled);
}

void lstm_optim_step(lstm_optim *o, lstm_params *p, float lr) {
    float *w = lstm_params_data_all_mut(p), *g = lstm_params_grad_all(p);
    size_t n = o->n < lstm_params_size(p) ? o->n : lstm_params_size(p);
    const lstm_optim_config *c = &o->cfg;
    o->steps++;
    switch (c->type) {
    case LSTM_OPT_SGD:
        sgd(c, w, g, o->nbufs ? o->buf[0] : NULL, n, lr, o->steps == 1);
        break;
    case LSTM_OPT_ADAM:
    case LSTM_OPT_ADAMW:
        if (c->lazy)
            lazy_adam(c, p, w, g, o->buf[0], o->buf[1], n, lr, o->steps,
                      c->type == LSTM_OPT_ADAMW);
        else
            adam(c, w, g, o->buf[0], o->buf[1], n, lr, o->steps, c->type == LSTM_OPT_ADAMW);
        break;
    case LSTM_OPT_RMSPROP: {
        int b = 1;
        float *gavg = c->centered ? o->buf[b++] : NULL;
        float *mom = c->momentum > 0 ? o->buf[b++] : NULL;
        rmsprop(c, w, g, o->buf[0], gavg, mom, n, lr);
        break;
    }
    case LSTM_OPT_ADADELTA:
        adadelta(c, w, g, o->buf[0], o->buf[1], n, lr);
        break;
    }
}

lstm_status lstm_optim_write(const lstm_optim *o, lstm_st_writer *w, const char *prefix,
                             lstm_error *err) {
    char name[512];
    int64_t steps = o->steps, shape1 = (int64_t)o->n;
    snprintf(name, sizeof name, "%sstep", prefix);
    lstm_status s = lstm_st_writer_add(w, name, LSTM_DT_I64, 0, NULL, &steps, err);
    for (int i = 0; !s && i < o->nbufs; i++) {
        snprintf(name, sizeof name, "%sstate%d", prefix, i);
        s = lstm_st_writer_add(w, name, LSTM_DT_F32, 1, &shape1, o->buf[i], err);
    }
    return s;
}

lstm_status lstm_optim_read(lstm_optim *o, const lstm_st *st, const char *prefix,
                            lstm_error *err) {
    char name[512];
    snprintf(name, sizeof name, "%sstep", prefix);
    const lstm_st_tensor *t = lstm_st_find(st, name);
    int64_t steps;
    if (!t || t->numel != 1)
        return lstm_fail(err, LSTM_ERR_SHAPE, "%s: missing optimizer tensor '%s'",
                         lstm_st_name(st), name);
    lstm_status s = lstm_st_read_i64(st, t, &steps, 1, err);
    if (s)
        return s;
    if (steps < 0)
        return lstm_fail(err, LSTM_ERR_FORMAT, "%s: negative optimizer step count",
                         lstm_st_name(st));
    for (int i = 0; i < o->nbufs; i++) {
        snprintf(name, sizeof name, "%sstate%d", prefix, i);
        t = lstm_st_find(st, name);
        if (!t || t->ndim != 1 || (size_t)t->shape[0] != o->n)
            return lstm_fail(err, LSTM_ERR_SHAPE,
                             "%s: optimizer state '%s' missing or not of %zu values",
                             lstm_st_name(st), name, o->n);
    }
    for (int i = 0; i < o->nbufs; i++) {
        snprintf(name, sizeof name, "%sstate%d", prefix, i);
        if ((s = lstm_st_read_f32(st, lstm_st_find(st, name), o->buf[i], o->n, err)))
            return s;
    }
    o->steps = (long)steps;
    return lstm_ok(err);
}

/* The sum of squares of g[0, n) in order, onto ss. */
static double sum_squares(double ss, const float *g, size_t n) {
    for (size_t i = 0; i < n; i++)
        ss += (double)g[i] * g[i];
    return ss;
}

float lstm_clip_grad_norm(lstm_params *p, float max_norm) {
    float *g = lstm_params_grad_all(p);
    size_t n = lstm_params_size(p), at = 0, off, numel, cols;
    double ss = 0;
    /* the sum in the order of the buffer; the zero rows of a sparse tensor
     * add nothing and are skipped (the same sum, bit for bit) */
    for (int i = 0; next_sparse(p, &i, n, &off, &numel, &cols); at = off + numel) {
        ss = sum_squares(ss, g + at, off - at);
        for (size_t r = off; r < off + numel; r += cols)
            if (row_used(g + r, cols))
                ss = sum_squares(ss, g + r, cols);
    }
    ss = sum_squares(ss, g + at, n - at);
    double norm = sqrt(ss);
    if (max_norm > 0) {
        double coef = max_norm / (norm + 1e-6);
        if (coef < 1)
            for (size_t i = 0; i < n; i++)
                g[i] = (float)(g[i] * coef);
    }
    return (float)norm;
}

float lstm_schedule_rate(const lstm_schedule *s, double t, long step) {
    double lr = s->lr;
    if (!(t > 0))
        t = 0;
    switch (s->type) {
    case LSTM_SCHED_CONSTANT:
        break;
    case LSTM_SCHED_STEP:
        if (s->step_size > 0)
            lr *= pow(s->gamma, floor(t / (double)s->step_size));
        break;
    case LSTM_SCHED_EXPONENTIAL: {
        double e = s->step_size > 0 ? t / (double)s->step_size : t;
        lr *= pow(s->gamma, s->staircase ? floor(e) : e);
        break;
    }
    case LSTM_SCHED_COSINE: {
        double tt = s->total > 0 && t > (double)s->total ? (double)s->total : t;
        double frac = s->total > 0 ? tt / (double)s->total : 1;
        double lo = s->min_lr;
        lr = lo + (s->lr - lo) * (1 + cos(3.14159265358979323846 * frac)) / 2;
        break;
    }
    }
    if (s->warmup > 0 && step >= 0 && step < s->warmup)
        lr *= (double)(step + 1) / (double)s->warmup;
    return (float)lr;
}

float lstm_schedule_lr(const lstm_schedule *s, long t) {
    return lstm_schedule_rate(s, (double)(t < 0 ? 0 : t), t < 0 ? 0 : t);
}
