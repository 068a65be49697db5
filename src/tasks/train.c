/*
 * train.c - the training loop every task shares: batches from the task
 * (task_ops), the optimizer with clipping and the learning-rate schedule
 * (lstm_schedule), validation with the best model kept, early stopping, a
 * time limit that includes validation, and atomic checkpoints from which a
 * run resumes to the same result as an uninterrupted one.
 *
 * Everything random is derived from the seed: the initialisation, the
 * order of batches in epoch e (from seed and e alone, so a resumed run
 * finds it again), and dropout (an rng saved in checkpoints).
 */
#include "task.h"

#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

lstm_train_config lstm_train_defaults(lstm_task task) {
    lstm_train_config c = {0};
    c.batch = 32;
    c.seq_len = 100;
    c.optim = lstm_optim_defaults(LSTM_OPT_ADAM);
    c.schedule = LSTM_SCHED_COSINE;
    c.lr_min = 0.05f;
    c.decay = 0.5f;
    c.clip = 5;
    c.seed = 1;
    c.log_every = 50;
    c.valid_streams = 64;
    c.checkpoint_every = 300;
    lstm_model_config unused = {0};
    const task_ops *ops = task_find(task);
    if (ops)
        ops->defaults(&unused, &c);
    return c;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* FNV-1a of the training data, to recognise the data a checkpoint was made on. */
static uint64_t data_hash(const lstm_dataset *ds) {
    uint64_t h = ds_fnv(DS_FNV_BASIS, &ds->task, sizeof ds->task);
    return task_find(ds->task)->hash(ds, h);
}

static double elapsed(const trainer *t) { return t->elapsed_before + now() - t->t0; }

static void emit(trainer *t, lstm_event *ev) {
    if (!t->tc.on_event || t->rank != 0) /* one voice for the job */
        return;
    /* the epoch under way, or at an epoch's end the one just finished */
    ev->epoch = t->epoch + (t->batch_in_epoch > 0 || t->epoch == 0);
    ev->step = t->step;
    ev->elapsed = elapsed(t);
    ev->steps_planned = t->tc.epochs > 0 ? t->tc.epochs * t->steps_per_epoch : 0;
    if (t->tc.epochs > 0)
        ev->progress = ev->steps_planned ? (double)t->step / (double)ev->steps_planned : 0;
    else
        ev->progress = t->tc.time_limit > 0 ? ev->elapsed / t->tc.time_limit : 0;
    if (ev->progress > 1)
        ev->progress = 1;
    t->tc.on_event(ev, t->tc.event_arg);
}

/* The learning rate now: lstm_schedule_rate with the warm-up over the
 * first steps and the decay over the planned training. How far along is
 * measured by steps, or by the clock when a time limit ends the run
 * sooner, so the rate anneals by whichever ends first. The schedule's
 * clock: the fraction of the run (cosine, total 1), the epoch (step: a
 * factor per epoch), or the fraction in epochs (exponential). */
static float current_lr(const trainer *t) {
    const lstm_train_config *c = &t->tc;
    double progress = 0;
    if (c->epochs > 0)
        progress = (double)t->step / (double)(c->epochs * t->steps_per_epoch);
    double now_s = t->nranks > 1 ? t->clock : elapsed(t); /* one clock for every rank */
    if (c->time_limit > 0 && now_s / c->time_limit > progress)
        progress = now_s / c->time_limit;
    if (progress > 1)
        progress = 1;
    lstm_schedule s = {.type = c->schedule, .lr = c->optim.lr, .gamma = c->decay, .step_size = 1,
                       .total = 1, .min_lr = c->optim.lr * c->lr_min, .warmup = c->warmup};
    double at = progress;
    if (c->schedule == LSTM_SCHED_STEP)
        at = t->epoch;
    else if (c->schedule == LSTM_SCHED_EXPONENTIAL)
        at = progress * (c->epochs > 0 ? c->epochs : 1);
    return lstm_schedule_rate(&s, at, t->step);
}

/* The gradients summed over the ranks while the backward runs: each stage
 * (model_grad_stages) is started as soon as the backward has finished it,
 * in the stages' order on every rank (a rank with an empty share starts
 * them all at once), and the step waits for them after the backward. */
typedef struct {
    trainer *t;
    size_t from[MODEL_MAX_STAGES], to[MODEL_MAX_STAGES];
    int n, started, failed;
} overlap;

static void overlap_ready(void *arg, int stage) {
    overlap *o = arg;
    const lstm_comm *c = o->t->tc.comm;
    float *g = lstm_params_grad_all(o->t->m->p);
    double c0 = now();
    for (; o->started <= stage && o->started < o->n; o->started++) {
        size_t a = o->from[o->started], b = o->to[o->started];
        if (b > a && !o->failed && c->start_allreduce_float(g + a, b - a, c->arg))
            o->failed = 1;
    }
    o->t->comm_secs += now() - c0;
}

static void overlap_progress(void *arg) {
    overlap *o = arg;
    const lstm_comm *c = o->t->tc.comm;
    double c0 = now();
    if (!o->failed && c->progress(c->arg))
        o->failed = 1;
    o->t->comm_secs += now() - c0;
}

/* One optimizer step on batch k of the current epoch; returns its stats. */
static lstm_status train_batch(trainer *t, long k, batch_stats *st, long *tokens,
                               lstm_error *err) {
    lstm_model *m = t->m;
    const task_ops *ops = m->ops;
    lstm_status s;
    model_batch b;
    lstm_params_zero_grad(m->p);
    memset(st, 0, sizeof *st);
    /* the dropout masks of a step come from the seed, the step and the rank
     * alone: a resumed run draws what the uninterrupted one drew, with any
     * number of ranks, and nothing of the generator needs saving */
    lstm_rng_seed(&t->drop, t->tc.seed * 0xD1B54A32D192ED03ULL ^
                                (uint64_t)t->step * 0x9E3779B97F4A7C15ULL ^
                                (uint64_t)t->rank * 0xC2B2AE3D27D4EB4FULL ^ 0x5851F42D4C957F2DULL);
    const lstm_comm *c = t->nranks > 1 ? t->tc.comm : NULL;
    overlap ov = {.t = t};
    model_hooks hooks = {overlap_ready, overlap_progress, &ov};
    int overlapped = c && c->start_allreduce_float;
    if (overlapped)
        ov.n = model_grad_stages(m, ov.from, ov.to);
    if ((s = ops->train_batch(t, k, &b, tokens, err)) ||
        (b.B > 0 && (s = model_batch_run(m, t->ctx, &b, 1, &t->drop, overlapped ? &hooks : NULL,
                                         st, err))))
        return s;
    if (c) { /* the sum over the ranks of the gradients and the counts */
        double sums[3] = {st->loss_sum, (double)st->count, (double)st->correct};
        int bad;
        if (overlapped) {
            overlap_ready(&ov, ov.n - 1); /* what the backward did not start */
            double c0 = now();
            bad = ov.failed || c->wait_all(c->arg);
            t->comm_secs += now() - c0;
        } else {
            double c0 = now();
            bad = c->allreduce_float(lstm_params_grad_all(m->p), lstm_params_size(m->p), c->arg);
            t->comm_secs += now() - c0;
        }
        double c0 = now();
        bad = bad || c->allreduce_double(sums, 3, c->arg);
        t->comm_secs += now() - c0;
        if (bad)
            return lstm_fail(err, LSTM_ERR_IO, "step %ld: summing the gradients over the ranks "
                                               "failed", t->step + 1);
        st->loss_sum = sums[0], st->count = (long)sums[1], st->correct = (long)sums[2];
    }
    if (ops->train_after)
        ops->train_after(t);
    /* the norm before clipping (max_norm 0: measured, not clipped) */
    float norm = lstm_clip_grad_norm(m->p, t->tc.clip > 0 ? t->tc.clip : 0);
    if (!isfinite(st->loss_sum) || !isfinite(norm))
        return lstm_fail(err, LSTM_ERR_NONFINITE,
                         "step %ld: the %s is %s: training diverged (try a lower --lr or "
                         "--clip); the step was not applied",
                         t->step + 1, isfinite(st->loss_sum) ? "gradient norm" : "loss",
                         isnan(isfinite(st->loss_sum) ? norm : st->loss_sum) ? "NaN" : "infinite");
    lstm_optim_step(t->opt, m->p, current_lr(t));
    t->step++;
    if (t->ema) {
        float d = (1.0f + (float)t->step) / (10.0f + (float)t->step);
        return lstm_params_ema(t->ema, m->p, d < t->tc.ema ? d : t->tc.ema, err);
    }
    return LSTM_OK;
}

/* ------------------------------------------------------------------ */
/* Validation. */

static int better(const trainer *t, double value, double loss) {
    if (!isfinite(value) || !isfinite(loss))
        return 0;
    if (!t->have_best)
        return 1;
    if (t->m->ops->lower_is_better)
        return value < t->best_value;
    return value > t->best_value || (value == t->best_value && loss < t->best_loss);
}

/* The figure a task is selected on, from an evaluation. */
static double metric_value(const trainer *t, const lstm_eval *e) {
    return t->m->ops->lower_is_better ? e->bpc : e->accuracy;
}

static lstm_status save_checkpoint(trainer *t, lstm_error *err);

/* Before a save: the weights are all finite (a finite but huge update can
 * overflow them, and a file that holds them is of no use). */
static lstm_status weights_finite(const trainer *t, lstm_error *err) {
    const float *w = lstm_params_data_all(t->m->p);
    size_t n = lstm_params_size(t->m->p);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(w[i]))
            return lstm_fail(err, LSTM_ERR_NONFINITE,
                             "step %ld: the weights are no longer finite: training diverged (try "
                             "a lower --lr or --clip); nothing was saved from this step",
                             t->step);
    return LSTM_OK;
}

/* With an average (tc.ema), the model holds it from here to ema_out: it
 * is what is validated, selected and saved; the trained weights wait in
 * t->raw. */
static lstm_status ema_in(trainer *t, lstm_error *err) {
    lstm_status s;
    if (t->ema && ((s = lstm_params_copy(t->raw, t->m->p, err)) ||
                   (s = lstm_params_copy(t->m->p, t->ema, err))))
        return s;
    return LSTM_OK;
}

static lstm_status ema_out(trainer *t, lstm_error *err) {
    return t->ema ? lstm_params_copy(t->m->p, t->raw, err) : LSTM_OK;
}

static lstm_status validate_model(trainer *t, int *stop, lstm_error *err);

static lstm_status validate(trainer *t, int *stop, lstm_error *err) {
    lstm_status s = ema_in(t, err);
    if (s)
        return s;
    s = validate_model(t, stop, err);
    lstm_status s2 = ema_out(t, s ? NULL : err);
    if (s)
        return s;
    if (s2)
        return s2;
    if (t->tc.checkpoint) /* with the trained weights in the model */
        return save_checkpoint(t, err);
    return LSTM_OK;
}

static lstm_status validate_model(trainer *t, int *stop, lstm_error *err) {
    double t0 = now();
    lstm_eval e;
    lstm_ctx *ctx = t->tc.valid_ctx ? t->tc.valid_ctx : t->ctx;
    /* the ranks of a job share the validation and sum their figures */
    memset(&e, 0, sizeof e);
    e.task = t->m->cfg.task;
    lstm_status s = t->m->ops->evaluate(t->m, ctx, t->valid, t->tc.valid_streams,
                                        t->nranks > 1 ? t->tc.comm : NULL, &e, err);
    if (s)
        return s;
    double value = metric_value(t, &e), loss = e.loss;
    size_t skipped = e.skipped, scored = e.tokens;
    lstm_eval_free(&e);
    if (scored == 0) /* no figure (NaN): not a divergence, the data */
        return skipped ? lstm_fail(err, LSTM_ERR_INVALID,
                                   "%s: none of its %ss occurs in the training data: no "
                                   "figure can be measured", lstm_dataset_name(t->valid),
                                   t->ops->label)
                       : lstm_fail(err, LSTM_ERR_INVALID,
                                   "%s: nothing in it to score: no figure can be measured",
                                   lstm_dataset_name(t->valid));
    if (!isfinite(loss))
        return lstm_fail(err, LSTM_ERR_NONFINITE,
                         "step %ld: the validation loss is %s: training diverged (try a lower "
                         "--lr or --clip)",
                         t->step, isnan(loss) ? "NaN" : "infinite");
    int is_best = better(t, value, loss);
    if (is_best) {
        if ((s = weights_finite(t, err)) || (s = lstm_params_copy(t->best, t->m->p, err)) ||
            (t->tc.out && t->rank == 0 && (s = lstm_model_save(t->m, t->tc.out, err))))
            return s;
        t->have_best = 1;
        t->best_value = value;
        t->best_loss = loss;
        t->bad_valids = 0;
    } else {
        t->bad_valids++;
        if (t->tc.patience > 0 && t->bad_valids >= t->tc.patience)
            *stop = 1;
    }
    lstm_event ev = {.type = LSTM_EV_VALID, .loss = loss, .lr = current_lr(t),
                     .metric = t->m->ops->metric, .value = value, .best = is_best};
    t->valid_secs = now() - t0;
    emit(t, &ev);
    return LSTM_OK;
}

/* ------------------------------------------------------------------ */
/* Checkpoints: the model, the best parameters, the optimizer, the dropout
 * rng and the task's state (lm: the carried state) as tensors; the
 * counters and the training configuration in the metadata (lstm.train),
 * a JSON object with the named fields of ckpt_fields (the optimizer's in
 * an object "optim"), and "elapsed" and "data_hash". */

typedef enum { F_INT, F_LONG, F_U64, F_FLOAT, F_DOUBLE, F_BOOL } field_type;

#define TR(f) offsetof(trainer, f)
#define TC(f) (offsetof(trainer, tc) + offsetof(lstm_train_config, f))
#define OPT(f) (offsetof(trainer, tc) + offsetof(lstm_train_config, optim) + \
                offsetof(lstm_optim_config, f))
static const struct {
    const char *key;
    size_t offset; /* in the trainer */
    field_type type;
    int optim;     /* in the "optim" object */
    double lo, hi; /* the values a file may hold */
    int optional;  /* absent from older checkpoints: then 0 */
} ckpt_fields[] = {
    {"epoch", TR(epoch), F_INT, 0, 0, 1e9, 0},
    {"step", TR(step), F_LONG, 0, 0, 1e18, 0},
    {"batch_in_epoch", TR(batch_in_epoch), F_LONG, 0, 0, 1e18, 0},
    {"have_best", TR(have_best), F_BOOL, 0, 0, 1, 0},
    {"best_value", TR(best_value), F_DOUBLE, 0, -INFINITY, INFINITY, 0},
    {"best_loss", TR(best_loss), F_DOUBLE, 0, -INFINITY, INFINITY, 0},
    {"bad_valids", TR(bad_valids), F_INT, 0, 0, 1e9, 0},
    {"seed", TC(seed), F_U64, 0, 0, 1.8446744073709552e19, 0},
    {"epochs", TC(epochs), F_INT, 0, 0, 1e9, 0},
    {"batch", TC(batch), F_INT, 0, 1, 1e6, 0},
    {"seq_len", TC(seq_len), F_INT, 0, 1, 1e7, 0},
    {"clip", TC(clip), F_FLOAT, 0, 0, INFINITY, 0},
    {"ema", TC(ema), F_FLOAT, 0, 0, 1, 1},
    {"schedule", TC(schedule), F_INT, 0, 0, LSTM_SCHED_COSINE, 0},
    {"lr_min", TC(lr_min), F_FLOAT, 0, 0, 1, 0},
    {"decay", TC(decay), F_FLOAT, 0, -INFINITY, INFINITY, 0},
    {"warmup", TC(warmup), F_LONG, 0, 0, 1e18, 0},
    {"time_limit", TC(time_limit), F_DOUBLE, 0, 0, INFINITY, 0},
    {"valid_every", TC(valid_every), F_LONG, 0, 0, 1e18, 0},
    {"patience", TC(patience), F_INT, 0, 0, 1e9, 0},
    {"valid_streams", TC(valid_streams), F_INT, 0, 0, 1e9, 0},
    {"type", OPT(type), F_INT, 1, 0, LSTM_OPT_ADADELTA, 0},
    {"lr", OPT(lr), F_FLOAT, 1, -INFINITY, INFINITY, 0},
    {"momentum", OPT(momentum), F_FLOAT, 1, -INFINITY, INFINITY, 0},
    {"dampening", OPT(dampening), F_FLOAT, 1, -INFINITY, INFINITY, 0},
    {"nesterov", OPT(nesterov), F_BOOL, 1, 0, 1, 0},
    {"beta1", OPT(beta1), F_FLOAT, 1, -INFINITY, INFINITY, 0},
    {"beta2", OPT(beta2), F_FLOAT, 1, -INFINITY, INFINITY, 0},
    {"eps", OPT(eps), F_FLOAT, 1, -INFINITY, INFINITY, 0},
    {"alpha", OPT(alpha), F_FLOAT, 1, -INFINITY, INFINITY, 0},
    {"centered", OPT(centered), F_BOOL, 1, 0, 1, 0},
    {"rho", OPT(rho), F_FLOAT, 1, -INFINITY, INFINITY, 0},
    {"weight_decay", OPT(weight_decay), F_FLOAT, 1, -INFINITY, INFINITY, 0},
    {"lazy", OPT(lazy), F_BOOL, 1, 0, 1, 1},
};
#undef TR
#undef TC
#undef OPT
#define NCKPT (sizeof ckpt_fields / sizeof ckpt_fields[0])

/* The field's value in t as JSON. The enums (schedule, optimizer type)
 * are ints. */
static json_t *field_json(const trainer *t, size_t i) {
    const void *p = (const char *)t + ckpt_fields[i].offset;
    switch (ckpt_fields[i].type) {
    case F_INT: return json_integer(*(const int *)p);
    case F_LONG: return json_integer(*(const long *)p);
    case F_U64: return json_integer((json_int_t) * (const uint64_t *)p);
    case F_FLOAT: return json_real((double)*(const float *)p);
    case F_DOUBLE: return json_real(*(const double *)p);
    case F_BOOL: return json_boolean(*(const int *)p);
    }
    return NULL;
}

/* Sets the field in t from v (a number, or a boolean for F_BOOL); -1 when
 * v is not one or lies outside the field's range. */
static int field_set(trainer *t, size_t i, json_t *v) {
    void *p = (char *)t + ckpt_fields[i].offset;
    double x;
    if (json_is_boolean(v) && ckpt_fields[i].type == F_BOOL)
        x = json_is_true(v);
    else if (json_is_number(v))
        x = json_number_value(v);
    else
        return -1;
    /* a u64 is written as a signed 64-bit integer: any integer is one */
    if (ckpt_fields[i].type == F_U64 ? !json_is_integer(v)
                                     : !(x >= ckpt_fields[i].lo && x <= ckpt_fields[i].hi))
        return -1;
    switch (ckpt_fields[i].type) {
    case F_INT: *(int *)p = (int)x; break;
    case F_LONG: *(long *)p = (long)x; break;
    case F_U64: *(uint64_t *)p = (uint64_t)json_integer_value(v); break;
    case F_FLOAT: *(float *)p = (float)x; break;
    case F_DOUBLE: *(double *)p = x; break;
    case F_BOOL: *(int *)p = x != 0; break;
    }
    return 0;
}

static lstm_status save_checkpoint(trainer *t, lstm_error *err) {
    lstm_status fin = weights_finite(t, err);
    if (fin)
        return fin;
    if (t->rank != 0) { /* only rank 0 writes; the others give their part of the state */
        lstm_status s = t->m->ops->train_save ? t->m->ops->train_save(t, NULL, err) : LSTM_OK;
        t->last_checkpoint = elapsed(t);
        return s;
    }
    lstm_st_writer *w = lstm_st_writer_create();
    if (!w)
        return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
    lstm_status s = model_write(t->m, w, err);
    if (!s && t->have_best)
        s = lstm_params_write(t->best, w, "best.", err);
    if (!s && t->ema)
        s = lstm_params_write(t->ema, w, "ema.", err);
    if (!s)
        s = lstm_optim_write(t->opt, w, "optim.", err);
    int64_t four = 4;
    if (!s)
        s = lstm_st_writer_add(w, "train.rng", LSTM_DT_U64, 1, &four, t->drop.s, err);
    if (!s && t->m->ops->train_save)
        s = t->m->ops->train_save(t, w, err);
    if (!s) {
        char hash[24];
        snprintf(hash, sizeof hash, "%016llx", (unsigned long long)t->hash);
        json_t *j = json_object(), *o = json_object();
        for (size_t i = 0; j && o && i < NCKPT; i++)
            json_object_set_new(ckpt_fields[i].optim ? o : j, ckpt_fields[i].key,
                                field_json(t, i));
        if (j && o) {
            json_object_set_new(j, "elapsed", json_real(elapsed(t)));
            json_object_set_new(j, "data_hash", json_string(hash));
            json_object_set(j, "optim", o);
        }
        json_decref(o);
        char *js = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(j);
        s = js ? lstm_st_writer_meta(w, "lstm.train", js, err)
               : lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
        free(js);
    }
    if (!s)
        s = lstm_st_writer_save(w, t->tc.checkpoint, err);
    lstm_st_writer_free(w);
    t->last_checkpoint = elapsed(t);
    return s;
}

static lstm_status check_train_config(const lstm_train_config *c, lstm_error *err);

/* Restores the training state from a checkpoint into t (whose model has
 * been loaded from the same file). A time limit given now replaces the
 * checkpoint's. */
static lstm_status load_checkpoint(trainer *t, const lstm_st *st, lstm_error *err) {
    const char *file = lstm_st_name(st);
    const char *js = lstm_st_meta(st, "lstm.train");
    json_error_t je;
    json_t *j = js ? json_loads(js, JSON_REJECT_DUPLICATES, &je) : NULL;
    if (!json_is_object(j)) {
        json_decref(j);
        return lstm_fail(err, LSTM_ERR_FORMAT,
                         "%s: not a checkpoint (no lstm.train object in its metadata)", file);
    }
    double given_limit = t->tc.time_limit;
    json_t *o = json_object_get(j, "optim"), *el = json_object_get(j, "elapsed");
    const char *hash = json_string_value(json_object_get(j, "data_hash"));
    char mine[24];
    snprintf(mine, sizeof mine, "%016llx", (unsigned long long)t->hash);
    lstm_status s = LSTM_OK;
    for (size_t i = 0; !s && i < NCKPT; i++) {
        json_t *v = json_object_get(ckpt_fields[i].optim ? o : j, ckpt_fields[i].key);
        if (!v && ckpt_fields[i].optional) { /* a checkpoint from before the field */
            memset((char *)t + ckpt_fields[i].offset, 0,
                   ckpt_fields[i].type == F_FLOAT ? sizeof(float) : sizeof(int));
            continue;
        }
        if (field_set(t, i, v))
            s = lstm_fail(err, LSTM_ERR_FORMAT,
                          "%s: lstm.train: %s'%s' missing, not a number or out of range", file,
                          ckpt_fields[i].optim ? "optimizer " : "", ckpt_fields[i].key);
    }
    if (!s && !json_is_number(el))
        s = lstm_fail(err, LSTM_ERR_FORMAT, "%s: lstm.train: 'elapsed' missing or not a number",
                      file);
    if (!s)
        t->elapsed_before = json_number_value(el);
    if (!s && t->train && !(hash && strcmp(hash, mine) == 0))
        s = lstm_fail(err, LSTM_ERR_INVALID,
                      "%s: the checkpoint was made on other training data than %s", file,
                      t->train->name);
    json_decref(j);
    if (s)
        return s;
    if (given_limit > 0)
        t->tc.time_limit = given_limit;
    lstm_error bad;
    if (check_train_config(&t->tc, &bad))
        return lstm_fail(err, LSTM_ERR_FORMAT, "%s: lstm.train: %s", file, bad.msg);
    if (!t->train) /* only the configuration is wanted */
        return LSTM_OK;
    const lstm_st_tensor *rt = lstm_st_find(st, "train.rng");
    if (!rt || rt->dtype != LSTM_DT_U64 || rt->numel != 4)
        return lstm_fail(err, LSTM_ERR_FORMAT, "%s: no dropout rng state (train.rng)", file);
    memcpy(t->drop.s, rt->data, sizeof t->drop.s);
    return LSTM_OK;
}

lstm_status lstm_checkpoint_config(const char *path, lstm_model_config *mc,
                                   lstm_train_config *tc, lstm_error *err) {
    lstm_st *st = lstm_st_open(path, err);
    if (!st)
        return err ? err->status : LSTM_ERR_IO;
    trainer t;
    memset(&t, 0, sizeof t);
    t.tc = *tc;
    lstm_status s = model_read_config(st, mc, err);
    if (!s)
        s = load_checkpoint(&t, st, err);
    if (!s)
        *tc = t.tc;
    lstm_st_free(st);
    return s;
}

/* ------------------------------------------------------------------ */

/* A new params object with p's names and shapes, allocated. */
static lstm_params *params_like(lstm_params *p, lstm_error *err) {
    lstm_params *q = lstm_params_create();
    if (!q) {
        lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
        return NULL;
    }
    for (int i = 0; i < lstm_params_count(p); i++)
        if (lstm_params_declare(q, lstm_params_name(p, i), lstm_params_ndim(p, i),
                                lstm_params_shape(p, i), err) < 0)
            goto fail;
    if (lstm_params_alloc(q, err) == LSTM_OK)
        return q;
fail:
    lstm_params_free(q);
    return NULL;
}

static void trainer_free(trainer *t) {
    lstm_optim_free(t->opt);
    lstm_params_free(t->best);
    lstm_params_free(t->ema);
    lstm_params_free(t->raw);
    if (t->ops)
        t->ops->train_free(t);
}

lstm_status lstm_train_config_check(const lstm_train_config *tc, lstm_error *err) {
    lstm_status s = check_train_config(tc, err);
    return s ? s : lstm_ok(err);
}

static lstm_status check_train_config(const lstm_train_config *c, lstm_error *err) {
    if (c->epochs < 0 || c->time_limit < 0 || (c->epochs == 0 && c->time_limit <= 0))
        return lstm_fail(err, LSTM_ERR_INVALID, "give a number of epochs, a time limit, or both");
    if (c->batch < 1 || c->batch > 65536 || c->seq_len < 1 || c->seq_len > 1000000)
        return lstm_fail(err, LSTM_ERR_INVALID, "batch %d and sequence length %d must be >= 1",
                         c->batch, c->seq_len);
    const float finite[] = {c->optim.lr, c->optim.momentum, c->optim.dampening, c->optim.beta1,
                            c->optim.beta2, c->optim.eps, c->optim.alpha, c->optim.rho,
                            c->optim.weight_decay, c->clip, c->lr_min, c->decay, c->ema};
    for (size_t i = 0; i < sizeof finite / sizeof finite[0]; i++)
        if (!isfinite(finite[i]))
            return lstm_fail(err, LSTM_ERR_INVALID,
                             "a rate, a factor or a bound of the training is not finite");
    if (!(c->time_limit >= 0) || c->time_limit == INFINITY)
        return lstm_fail(err, LSTM_ERR_INVALID, "the time limit is not a finite number of seconds");
    if (!(c->ema >= 0 && c->ema < 1))
        return lstm_fail(err, LSTM_ERR_INVALID, "the average's decay (ema) %g is not in [0, 1)",
                         (double)c->ema);
    if (!(c->optim.lr > 0) || !(c->clip >= 0) || !(c->lr_min >= 0 && c->lr_min <= 1) ||
        c->warmup < 0 || c->patience < 0 || c->valid_every < 0 || c->valid_streams < 0)
        return lstm_fail(err, LSTM_ERR_INVALID,
                         "learning rate, clipping, warm-up, patience out of range");
    return LSTM_OK;
}

lstm_model *lstm_train(const lstm_model_config *mc, const lstm_train_config *tc, lstm_ctx *ctx,
                       const lstm_dataset *train, const lstm_dataset *valid, lstm_error *err) {
    trainer t;
    memset(&t, 0, sizeof t);
    t.ctx = ctx;
    t.tc = *tc;
    t.train = train;
    t.valid = valid;
    t.hash = data_hash(train);
    lstm_status s = LSTM_OK;
    lstm_st *resume = NULL;
    if (tc->resume) {
        if (!(resume = lstm_st_open(tc->resume, err)) || !(t.m = model_from_st(resume, 0, err)) ||
            (s = load_checkpoint(&t, resume, err)))
            goto fail;
    } else {
        if ((s = check_train_config(tc, err)))
            goto fail;
        lstm_rng init;
        lstm_rng_seed(&init, tc->seed);
        if (!(t.m = model_create(mc, train, &init, err)))
            goto fail;
        lstm_rng_seed(&t.drop, tc->seed ^ 0xD1B54A32D192ED03ULL);
    }
    t.ops = t.m->ops;
    t.nranks = 1;
    if (tc->comm) {
        const lstm_comm *c = tc->comm;
        int nb = !!c->start_allreduce_float + !!c->progress + !!c->wait_all;
        if (c->size < 1 || c->rank < 0 || c->rank >= c->size || !c->allreduce_float ||
            !c->allreduce_double || (nb != 0 && nb != 3)) {
            s = lstm_fail(err, LSTM_ERR_INVALID,
                          "lstm_train: comm: rank %d of %d, a NULL allreduce, or some but not "
                          "all of the overlap functions", c->rank, c->size);
            goto fail;
        }
        t.rank = c->rank, t.nranks = c->size;
        /* every rank must run the same job: same data (its hash), model,
         * batches and files asked for, or the collectives below would not
         * match (a hang or a wrong sum). The sum of each value over the ranks
         * is N times it on every rank exactly when they agree. */
        if (t.nranks > 1) {
            double mine[6] = {(double)(t.hash & 0xffffff), (double)(t.hash >> 40),
                              (double)lstm_model_size(t.m), (double)t.tc.batch * 1e3 + t.tc.seq_len,
                              (double)(valid != NULL) + 2.0 * (t.tc.checkpoint != NULL),
                              (double)(tc->resume != NULL)};
            double sum[6];
            memcpy(sum, mine, sizeof sum);
            if (c->allreduce_double(sum, 6, c->arg)) {
                s = lstm_fail(err, LSTM_ERR_IO, "the ranks could not compare their jobs");
                goto fail;
            }
            for (int i = 0; i < 6; i++)
                if (sum[i] != mine[i] * t.nranks) {
                    s = lstm_fail(err, LSTM_ERR_INVALID,
                                  "rank %d of %d: the ranks do not run the same job (%s differ): "
                                  "give every rank the same data, options and files",
                                  t.rank, t.nranks,
                                  i < 2 ? "the training data" : i == 2 ? "the models"
                                  : i == 3 ? "the batches" : i == 4 ? "--valid or --checkpoint"
                                  : "--resume");
                    goto fail;
                }
        }
    }
    if (train->task != t.m->cfg.task || (valid && valid->task != t.m->cfg.task)) {
        s = lstm_fail(err, LSTM_ERR_INVALID, "the data sets are not for a %s model",
                      lstm_task_name(t.m->cfg.task));
        goto fail;
    }
    if (!(t.opt = lstm_optim_create(&t.tc.optim, t.m->p, err)) ||
        !(t.best = params_like(t.m->p, err)) ||
        (t.tc.ema > 0 && (!(t.ema = params_like(t.m->p, err)) ||
                          !(t.raw = params_like(t.m->p, err)))))
        goto fail;
    if ((s = t.ops->train_setup(&t, err)))
        goto fail;
    if (resume) {
        if ((s = lstm_optim_read(t.opt, resume, "optim.", err)) ||
            (t.have_best && (s = lstm_params_read(t.best, resume, "best.", 0, err))) ||
            (t.ema && (s = lstm_params_read(t.ema, resume, "ema.", 0, err))))
            goto fail;
        if (t.ops->train_load && (s = t.ops->train_load(&t, resume, err)))
            goto fail;
        lstm_st_free(resume);
        resume = NULL;
    } else {
        lstm_params_copy(t.best, t.m->p, NULL);
        if (t.ema)
            lstm_params_copy(t.ema, t.m->p, NULL);
    }

    if (valid) /* the model's tokens in valid: bytes, words, or a text's tokens */
        t.valid_tokens = t.ops->valid_tokens(&t, valid);
    t.t0 = now();
    t.ev_time = 0; /* training seconds (t.train_secs) at the last TRAIN event */
    t.last_checkpoint = elapsed(&t);
    char msg[256];
    snprintf(msg, sizeof msg, "%s model, %zu parameters, %ld steps per epoch%s",
             t.ops->name, lstm_model_size(t.m), t.steps_per_epoch,
             tc->resume ? " (resumed)" : "");
    lstm_event start = {.type = LSTM_EV_START, .message = msg};
    emit(&t, &start);

    int stop = 0;
    long since_valid = 0;
    double step_secs = 0; /* a running estimate of one step's time */
    while (!stop && (t.tc.epochs == 0 || t.epoch < t.tc.epochs)) {
        if ((s = t.ops->train_epoch(&t, err)))
            goto fail;
        while (!stop && t.batch_in_epoch < t.steps_per_epoch) {
            /* stop in time for a last validation and the save */
            int time_up = 0, ckpt_due = 0;
            if (t.tc.time_limit > 0) {
                /* before the first validation, guess it from the training speed:
                 * a forward costs about a third of a training step per token */
                double vsecs = t.valid_secs;
                if (valid && vsecs == 0 && t.train_tokens > 0)
                    vsecs = 0.4 * t.valid_tokens * t.train_secs / t.train_tokens;
                double reserve = (valid ? vsecs * 1.2 + 1 : 0.5) + step_secs * 1.5;
                time_up = elapsed(&t) + reserve >= t.tc.time_limit;
            }
            if (t.nranks > 1) {
                /* decisions taken together: rank 0's clock (the time limit,
                 * checkpoints, the schedule), any rank's signal */
                const lstm_comm *c = t.tc.comm;
                double d[4] = {t.rank == 0 ? time_up : 0,
                               t.tc.should_stop && t.tc.should_stop(t.tc.event_arg),
                               t.rank == 0 && t.tc.checkpoint && t.tc.checkpoint_every > 0 &&
                                   elapsed(&t) - t.last_checkpoint >= t.tc.checkpoint_every,
                               t.rank == 0 ? elapsed(&t) : 0};
                if (c->allreduce_double(d, 4, c->arg)) {
                    s = lstm_fail(err, LSTM_ERR_IO, "step %ld: the ranks could not agree on "
                                                    "whether to go on", t.step + 1);
                    goto fail;
                }
                time_up = d[0] > 0, ckpt_due = d[2] > 0, t.clock = d[3];
                if (d[1] > 0) {
                    stop = 3;
                    break;
                }
            }
            if (time_up) {
                stop = 2;
                break;
            }
            double b0 = now();
            batch_stats st;
            long tokens;
            if ((s = train_batch(&t, t.batch_in_epoch, &st, &tokens, err)))
                goto fail;
            double dt = now() - b0;
            step_secs = step_secs ? 0.9 * step_secs + 0.1 * dt : dt;
            t.train_secs += dt;
            t.train_tokens += (double)tokens;
            t.batch_in_epoch++;
            since_valid++;
            t.ev_loss += st.loss_sum;
            t.ev_count += st.count;
            t.ev_tokens += tokens;
            if (t.tc.log_every > 0 && t.step % t.tc.log_every == 0) {
                /* tokens per second of training: validations and
                 * checkpoints between two events are not counted */
                double e = t.train_secs;
                lstm_event ev = {.type = LSTM_EV_TRAIN,
                                 .loss = t.ev_count ? t.ev_loss / t.ev_count : 0,
                                 .lr = current_lr(&t),
                                 .tokens_per_s = e > t.ev_time ? t.ev_tokens / (e - t.ev_time) : 0,
                                 .comm_seconds = t.comm_secs};
                emit(&t, &ev);
                t.ev_loss = 0, t.ev_count = 0, t.ev_tokens = 0, t.ev_time = e;
            }
            if (t.tc.checkpoint && t.tc.checkpoint_every > 0 &&
                (t.nranks > 1 ? ckpt_due
                              : elapsed(&t) - t.last_checkpoint >= t.tc.checkpoint_every) &&
                (s = save_checkpoint(&t, err)))
                goto fail;
            /* at every multiple of valid_every: where an uninterrupted run
             * validates, whatever step a resumed one started from */
            if (valid && t.tc.valid_every > 0 && t.step % t.tc.valid_every == 0) {
                since_valid = 0;
                if ((s = validate(&t, &stop, err)))
                    goto fail;
            }
            /* a signal ends the run after the step's validation, if it has
             * one, so that a resumed run misses none (several ranks agree on
             * it before each step instead) */
            if (t.nranks == 1 && t.tc.should_stop && t.tc.should_stop(t.tc.event_arg)) {
                stop = 3;
                break;
            }
        }
        if (stop >= 2) /* time limit, interrupted: within the epoch */
            break;
        t.epoch++;
        t.batch_in_epoch = 0;
        /* the end of each epoch, unless validating every valid_every steps */
        if (valid && since_valid > 0 && t.tc.valid_every == 0) {
            since_valid = 0;
            if ((s = validate(&t, &stop, err)))
                goto fail;
        }
    }
    int interrupted = stop == 3;
    if (valid && since_valid > 0 && !interrupted && (s = validate(&t, &stop, err)))
        goto fail;
    if ((!valid || interrupted) && t.tc.checkpoint && (s = save_checkpoint(&t, err)))
        goto fail;
    if (valid && t.have_best) /* the model that did best on valid */
        lstm_params_copy(t.m->p, t.best, NULL);
    else if (t.ema) /* nothing selected: the average */
        lstm_params_copy(t.m->p, t.ema, NULL);
    /* a figure only if one was measured */
    char why[128];
    snprintf(why, sizeof why, "%s%s",
             interrupted ? "interrupted" : stop == 2 ? "time limit reached" : stop ? "early stop" : "done",
             valid && !t.have_best ? " before the first validation: no figure was measured" : "");
    lstm_event end = {.type = LSTM_EV_END, .comm_seconds = t.comm_secs, .metric = valid && t.have_best ? t.ops->metric : NULL,
                      .value = t.have_best ? t.best_value : NAN, .message = why};
    emit(&t, &end);
    lstm_model *m = t.m;
    t.m = NULL;
    trainer_free(&t);
    lstm_ok(err);
    return m;
fail:
    lstm_st_free(resume);
    trainer_free(&t);
    lstm_model_free(t.m);
    return NULL;
}
