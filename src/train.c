/*
 * train.c - the training loop of the task models: batches (parallel
 * streams with the state carried for lm, length-grouped batches for
 * classify and tag), the optimizer with clipping and a decaying learning
 * rate, validation with the best model kept, early stopping, a time limit
 * that includes validation, and atomic checkpoints from which a run
 * resumes to the same result as an uninterrupted one.
 *
 * Everything random is derived from the seed: the initialisation, the
 * order of batches in epoch e (from seed and e alone, so a resumed run
 * finds it again), and dropout (an rng saved in checkpoints).
 */
#include "model.h"

#include <jansson.h>
#include <math.h>
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
    switch (task) {
    case LSTM_TASK_LM: /* tuned on Brown text (README, "Quality in ten minutes") */
        c.epochs = 3;
        c.batch = 32;
        c.seq_len = 50;
        c.optim.lr = 4.5e-3f;
        c.optim.beta2 = 0.99f;
        c.warmup = 100;
        c.clip = 1;
        c.valid_every = 4000;
        break;
    case LSTM_TASK_CLASSIFY:
        c.epochs = 20;
        c.patience = 5;
        c.optim.lr = 2e-3f;
        c.log_every = 20;
        break;
    case LSTM_TASK_TAG:
        c.epochs = 20;
        c.patience = 5;
        c.optim.lr = 2e-3f;
        break;
    }
    return c;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* FNV-1a, to recognise the training data a checkpoint was made on. */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static uint64_t data_hash(const lstm_dataset *ds) {
    uint64_t h = 0xcbf29ce484222325ULL;
    h = fnv(h, &ds->task, sizeof ds->task);
    if (ds->task == LSTM_TASK_LM)
        return fnv(h, ds->bytes, ds->nbytes);
    for (size_t i = 0; i < ds->ndocs; i++) {
        h = fnv(h, ds->doc_text[i], ds->doc_len[i]);
        h = fnv(h, ds->labels[ds->doc_label[i]], strlen(ds->labels[ds->doc_label[i]]) + 1);
    }
    for (size_t i = 0; i < ds->nwords; i++) {
        h = fnv(h, ds->words[i], strlen(ds->words[i]) + 1);
        h = fnv(h, ds->labels[ds->word_tag[i]], strlen(ds->labels[ds->word_tag[i]]) + 1);
    }
    return fnv(h, ds->sent_start, sizeof(size_t) * (ds->nsent ? ds->nsent + 1 : 0));
}

typedef struct {
    lstm_model *m;
    lstm_ctx *ctx;
    lstm_train_config tc;
    const lstm_dataset *train, *valid;
    lstm_optim *opt;
    lstm_params *best;
    int have_best;
    double best_value, best_loss;
    int bad_valids;
    int epoch;         /* 0-based, the epoch under way */
    long step;         /* optimizer steps so far */
    long batch_in_epoch;
    long steps_per_epoch;
    lstm_rng drop;
    double t0, elapsed_before;
    double valid_secs; /* how long the last validation took (0: none yet) */
    double last_checkpoint; /* elapsed() at the last checkpoint */
    double train_secs, train_tokens; /* for an estimate of the first validation's time */
    double valid_tokens;             /* (in the model's tokens) */
    uint64_t hash;
    /* lm */
    int32_t *ids;
    size_t nids;
    float *h, *c, *h2, *c2;
    int32_t *in;
    /* classify, tag */
    encoded_set enc;
    float *unk_p[MAX_FEATURES]; /* per id: the chance a training token becomes <unk> */
    size_t *order;    /* the current epoch's examples, batch after batch */
    long order_epoch; /* the epoch `order` was made for (-1: none) */
    void *scratch;
    size_t cap;
    /* events */
    double ev_loss;
    long ev_tokens, ev_count;
    double ev_time;
} trainer;

static double elapsed(const trainer *t) { return t->elapsed_before + now() - t->t0; }

static void emit(trainer *t, lstm_event *ev) {
    if (!t->tc.on_event)
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

/* The learning rate now: warm-up, then the schedule over the planned
 * steps (or, under a time limit alone, over the time). */
static float current_lr(const trainer *t) {
    const lstm_train_config *c = &t->tc;
    /* how far along: by steps, or by the clock when a time limit ends the
     * run sooner, so the schedule anneals by whichever ends first */
    double progress = 0;
    if (c->epochs > 0)
        progress = (double)t->step / (double)(c->epochs * t->steps_per_epoch);
    if (c->time_limit > 0 && elapsed(t) / c->time_limit > progress)
        progress = elapsed(t) / c->time_limit;
    if (progress > 1)
        progress = 1;
    double lr = c->optim.lr;
    switch (c->schedule) {
    case LSTM_SCHED_CONSTANT:
        break;
    case LSTM_SCHED_COSINE: {
        double lo = c->optim.lr * c->lr_min;
        lr = lo + (c->optim.lr - lo) * (1 + cos(3.14159265358979323846 * progress)) / 2;
        break;
    }
    case LSTM_SCHED_STEP:
        lr *= pow(c->decay, (double)t->epoch);
        break;
    case LSTM_SCHED_EXPONENTIAL:
        lr *= pow(c->decay, progress * (c->epochs > 0 ? c->epochs : 1));
        break;
    }
    if (c->warmup > 0 && t->step < c->warmup)
        lr *= (double)(t->step + 1) / (double)c->warmup;
    return (float)lr;
}

/* ------------------------------------------------------------------ */
/* Batches. */

/* The order of examples in epoch e: shuffled, then sorted by length within
 * pools of 50 batches, cut into batches, and the batches shuffled. */
static lstm_status epoch_order(trainer *t, int epoch, lstm_error *err) {
    if (t->order_epoch == epoch)
        return LSTM_OK;
    size_t n = t->enc.n, B = (size_t)t->tc.batch;
    lstm_rng r;
    lstm_rng_seed(&r, t->tc.seed * 0x9E3779B97F4A7C15ULL + (uint64_t)epoch + 1);
    size_t *o = t->order;
    for (size_t i = 0; i < n; i++)
        o[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = lstm_rng_below(&r, i), tmp = o[i - 1];
        o[i - 1] = o[j];
        o[j] = tmp;
    }
    size_t pool = 50 * B;
    for (size_t at = 0; at < n; at += pool) { /* insertion sort by length within a pool */
        size_t end = at + pool < n ? at + pool : n;
        for (size_t i = at + 1; i < end; i++) {
            size_t v = o[i], lv = t->enc.start[v + 1] - t->enc.start[v], j = i;
            for (; j > at && t->enc.start[o[j - 1] + 1] - t->enc.start[o[j - 1]] > lv; j--)
                o[j] = o[j - 1];
            o[j] = v;
        }
    }
    size_t nb = (n + B - 1) / B;
    size_t *bo = malloc(sizeof(size_t) * (nb ? nb : 1)), *copy = malloc(sizeof(size_t) * (n ? n : 1));
    if (!bo || !copy) {
        free(bo), free(copy);
        return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < nb; i++)
        bo[i] = i;
    /* the batches are shuffled, but a short last one stays last, so that
     * every batch is a run of B examples of `o` */
    size_t full = n % B ? nb - 1 : nb;
    for (size_t i = full; i > 1; i--) {
        size_t j = lstm_rng_below(&r, i), tmp = bo[i - 1];
        bo[i - 1] = bo[j];
        bo[j] = tmp;
    }
    memcpy(copy, o, sizeof(size_t) * n);
    size_t at = 0;
    for (size_t i = 0; i < nb; i++) {
        size_t s = bo[i] * B, e = s + B < n ? s + B : n;
        memcpy(o + at, copy + s, sizeof(size_t) * (e - s));
        at += e - s;
    }
    free(bo), free(copy);
    t->order_epoch = epoch;
    return LSTM_OK;
}

/* One optimizer step on batch k of the current epoch; returns its stats. */
static lstm_status train_batch(trainer *t, long k, batch_stats *st, long *tokens,
                               lstm_error *err) {
    lstm_model *m = t->m;
    lstm_status s;
    model_batch b;
    lstm_params_zero_grad(m->p);
    if (m->cfg.task == LSTM_TASK_LM) {
        int T = t->tc.seq_len, B = t->tc.batch;
        size_t seg = t->nids / (size_t)B;
        memset(&b, 0, sizeof b);
        b.T = T;
        b.B = B;
        b.ids[0] = t->in;
        b.targets = t->in + (size_t)T * B;
        for (int tt = 0; tt < T; tt++)
            for (int j = 0; j < B; j++) {
                size_t pos = (size_t)j * seg + (size_t)k * T + tt;
                t->in[(size_t)tt * B + j] = t->ids[pos];
                b.targets[(size_t)tt * B + j] = t->ids[pos + 1];
            }
        b.h0 = t->h, b.c0 = t->c, b.hn = t->h2, b.cn = t->c2;
        *tokens = (long)T * B;
    } else {
        size_t B = (size_t)t->tc.batch, at = (size_t)k * B;
        int nb = t->enc.n - at < B ? (int)(t->enc.n - at) : (int)B;
        if ((s = model_make_batch(m, &t->enc, t->order + at, nb, &b, &t->scratch, &t->cap, err)))
            return s;
        *tokens = 0;
        for (int j = 0; j < nb; j++)
            *tokens += b.lengths[j];
        /* word dropout: rare words sometimes become <unk>, so that <unk>
         * (every word unseen in training) gets an embedding worth having */
        size_t N = (size_t)b.T * b.B;
        for (int fi = 0; fi < m->nfeat; fi++)
            for (size_t i = 0; t->unk_p[fi] && i < N; i++) {
                int32_t id = b.ids[fi][i];
                if (id > UNK_ID && lstm_rng_uniform(&t->drop) < t->unk_p[fi][id])
                    b.ids[fi][i] = UNK_ID;
            }
    }
    if ((s = model_batch_run(m, t->ctx, &b, 1, &t->drop, st, err)))
        return s;
    if (m->cfg.task == LSTM_TASK_LM) { /* carry the state (not its gradient) */
        size_t n = (size_t)m->cfg.layers * t->tc.batch * m->cfg.hidden;
        memcpy(t->h, t->h2, sizeof(float) * n);
        memcpy(t->c, t->c2, sizeof(float) * n);
    }
    if (t->tc.clip > 0)
        lstm_clip_grad_norm(m->p, t->tc.clip);
    lstm_optim_step(t->opt, m->p, current_lr(t));
    t->step++;
    return LSTM_OK;
}

/* ------------------------------------------------------------------ */
/* Validation. */

static int better(const trainer *t, double value, double loss) {
    if (!t->have_best)
        return 1;
    if (t->m->cfg.task == LSTM_TASK_LM)
        return value < t->best_value;
    return value > t->best_value || (value == t->best_value && loss < t->best_loss);
}

static lstm_status save_checkpoint(trainer *t, lstm_error *err);

static lstm_status validate(trainer *t, int *stop, lstm_error *err) {
    double t0 = now();
    lstm_eval e;
    lstm_ctx *ctx = t->tc.valid_ctx ? t->tc.valid_ctx : t->ctx;
    lstm_status s = lstm_model_evaluate(t->m, ctx, t->valid, t->tc.valid_streams, &e, err);
    if (s)
        return s;
    int lm = t->m->cfg.task == LSTM_TASK_LM;
    double value = lm ? e.bpc : e.accuracy;
    int is_best = better(t, value, e.loss);
    if (is_best) {
        if ((s = lstm_params_copy(t->best, t->m->p, err))) {
            lstm_eval_free(&e);
            return s;
        }
        t->have_best = 1;
        t->best_value = value;
        t->best_loss = e.loss;
        t->bad_valids = 0;
    } else {
        t->bad_valids++;
        if (t->tc.patience > 0 && t->bad_valids >= t->tc.patience)
            *stop = 1;
    }
    lstm_event ev = {.type = LSTM_EV_VALID, .loss = e.loss, .lr = current_lr(t),
                     .metric = lm ? "bpc" : "accuracy", .value = value, .best = is_best};
    lstm_eval_free(&e);
    t->valid_secs = now() - t0;
    emit(t, &ev);
    if (t->tc.checkpoint)
        return save_checkpoint(t, err);
    return LSTM_OK;
}

/* ------------------------------------------------------------------ */
/* Checkpoints: the model, the best parameters, the optimizer, the carried
 * state and the dropout rng as tensors; the rest in metadata. */

static lstm_status save_checkpoint(trainer *t, lstm_error *err) {
    lstm_st_writer *w = lstm_st_writer_create();
    if (!w)
        return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
    lstm_status s = model_write(t->m, w, err);
    if (!s && t->have_best)
        s = lstm_params_write(t->best, w, "best.", err);
    if (!s)
        s = lstm_optim_write(t->opt, w, "optim.", err);
    int64_t four = 4;
    if (!s)
        s = lstm_st_writer_add(w, "train.rng", LSTM_DT_U64, 1, &four, t->drop.s, err);
    if (!s && t->h) {
        const lstm_model_config *mc = &t->m->cfg;
        int64_t hs[3] = {mc->layers, t->tc.batch, mc->proj ? mc->proj : mc->hidden};
        int64_t cs[3] = {mc->layers, t->tc.batch, mc->hidden};
        s = lstm_st_writer_add(w, "train.h", LSTM_DT_F32, 3, hs, t->h, err);
        if (!s)
            s = lstm_st_writer_add(w, "train.c", LSTM_DT_F32, 3, cs, t->c, err);
    }
    if (!s) {
        const lstm_train_config *c = &t->tc;
        char hash[24];
        snprintf(hash, sizeof hash, "%016llx", (unsigned long long)t->hash);
        json_t *j = json_pack(
            "{s:i, s:I, s:I, s:b, s:f, s:f, s:i, s:f, s:s, s:I, s:i, s:i, s:i, s:f, s:i, s:f, "
            "s:f, s:I, s:f, s:I, s:i, s:i, s:o}",
            "epoch", t->epoch, "step", (json_int_t)t->step, "batch_in_epoch",
            (json_int_t)t->batch_in_epoch, "have_best", t->have_best, "best_value", t->best_value,
            "best_loss", t->best_loss, "bad_valids", t->bad_valids, "elapsed", elapsed(t),
            "data_hash", hash, "seed", (json_int_t)c->seed, "epochs", c->epochs, "batch",
            c->batch, "seq_len", c->seq_len, "clip", (double)c->clip, "schedule", (int)c->schedule,
            "lr_min", (double)c->lr_min, "decay", (double)c->decay, "warmup",
            (json_int_t)c->warmup, "time_limit", c->time_limit, "valid_every",
            (json_int_t)c->valid_every, "patience", c->patience, "valid_streams",
            c->valid_streams, "optim",
            json_pack("{s:i, s:f, s:f, s:f, s:b, s:f, s:f, s:f, s:f, s:b, s:f, s:f}", "type",
                      (int)c->optim.type, "lr", (double)c->optim.lr, "momentum",
                      (double)c->optim.momentum, "dampening", (double)c->optim.dampening,
                      "nesterov", c->optim.nesterov, "beta1", (double)c->optim.beta1, "beta2",
                      (double)c->optim.beta2, "eps", (double)c->optim.eps, "alpha",
                      (double)c->optim.alpha, "centered", c->optim.centered, "rho",
                      (double)c->optim.rho, "weight_decay", (double)c->optim.weight_decay));
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

static int jnum(json_t *o, const char *k, double *out) {
    json_t *v = json_object_get(o, k);
    if (!json_is_number(v))
        return -1;
    *out = json_number_value(v);
    return 0;
}

/* Restores the training state from a checkpoint into t (whose model has
 * been loaded from the same file). */
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
    double v[24];
    const char *keys[] = {"epoch",      "step",       "batch_in_epoch", "best_value", "best_loss",
                          "bad_valids", "elapsed",    "seed",           "epochs",     "batch",
                          "seq_len",    "clip",       "schedule",       "lr_min",     "decay",
                          "warmup",     "time_limit", "valid_every",    "patience",   "valid_streams"};
    int n = (int)(sizeof keys / sizeof *keys);
    for (int i = 0; i < n; i++)
        if (jnum(j, keys[i], &v[i])) {
            json_decref(j);
            return lstm_fail(err, LSTM_ERR_FORMAT, "%s: lstm.train: '%s' missing or not a number",
                             file, keys[i]);
        }
    json_t *o = json_object_get(j, "optim");
    double ov[12];
    const char *okeys[] = {"type", "lr", "momentum", "dampening", "nesterov", "beta1",
                           "beta2", "eps", "alpha", "centered", "rho", "weight_decay"};
    for (int i = 0; i < 12; i++) {
        json_t *x = json_object_get(o, okeys[i]);
        if (json_is_boolean(x))
            ov[i] = json_is_true(x);
        else if (json_is_number(x))
            ov[i] = json_number_value(x);
        else {
            json_decref(j);
            return lstm_fail(err, LSTM_ERR_FORMAT, "%s: lstm.train: optimizer '%s' missing", file,
                             okeys[i]);
        }
    }
    const char *hash = json_string_value(json_object_get(j, "data_hash"));
    char mine[24];
    snprintf(mine, sizeof mine, "%016llx", (unsigned long long)t->hash);
    int have_best = json_is_true(json_object_get(j, "have_best"));
    int hash_ok = hash && strcmp(hash, mine) == 0;
    json_decref(j);
    if (!hash_ok)
        return lstm_fail(err, LSTM_ERR_INVALID,
                         "%s: the checkpoint was made on other training data than %s", file,
                         t->train->name);
    if (v[9] < 1 || v[9] > 1e6 || v[10] < 1 || v[10] > 1e7 || v[0] < 0 || v[1] < 0 ||
        v[2] < 0 || ov[0] < 0 || ov[0] > LSTM_OPT_ADADELTA || v[12] < 0 ||
        v[12] > LSTM_SCHED_COSINE)
        return lstm_fail(err, LSTM_ERR_FORMAT, "%s: lstm.train: values out of range", file);
    lstm_train_config *c = &t->tc;
    t->epoch = (int)v[0], t->step = (long)v[1], t->batch_in_epoch = (long)v[2];
    t->best_value = v[3], t->best_loss = v[4], t->bad_valids = (int)v[5];
    t->elapsed_before = v[6];
    c->seed = (uint64_t)v[7], c->epochs = (int)v[8], c->batch = (int)v[9];
    c->seq_len = (int)v[10], c->clip = (float)v[11], c->schedule = (lstm_schedule_type)v[12];
    c->lr_min = (float)v[13], c->decay = (float)v[14], c->warmup = (long)v[15];
    if (c->time_limit <= 0) /* a time limit given now replaces the old one */
        c->time_limit = v[16];
    c->valid_every = (long)v[17], c->patience = (int)v[18], c->valid_streams = (int)v[19];
    c->optim.type = (lstm_optimizer)ov[0], c->optim.lr = (float)ov[1];
    c->optim.momentum = (float)ov[2], c->optim.dampening = (float)ov[3];
    c->optim.nesterov = (int)ov[4], c->optim.beta1 = (float)ov[5], c->optim.beta2 = (float)ov[6];
    c->optim.eps = (float)ov[7], c->optim.alpha = (float)ov[8], c->optim.centered = (int)ov[9];
    c->optim.rho = (float)ov[10], c->optim.weight_decay = (float)ov[11];
    t->have_best = have_best;
    const lstm_st_tensor *rt = lstm_st_find(st, "train.rng");
    if (!rt || rt->dtype != LSTM_DT_U64 || rt->numel != 4)
        return lstm_fail(err, LSTM_ERR_FORMAT, "%s: no dropout rng state (train.rng)", file);
    memcpy(t->drop.s, rt->data, sizeof t->drop.s);
    return LSTM_OK;
}

/* ------------------------------------------------------------------ */

static void trainer_free(trainer *t) {
    lstm_optim_free(t->opt);
    lstm_params_free(t->best);
    free(t->ids);
    free(t->h), free(t->c), free(t->h2), free(t->c2), free(t->in);
    encoded_free(&t->enc);
    for (int i = 0; i < MAX_FEATURES; i++)
        free(t->unk_p[i]);
    free(t->order);
    free(t->scratch);
}

static lstm_status setup_data(trainer *t, lstm_error *err) {
    lstm_model *m = t->m;
    const lstm_train_config *c = &t->tc;
    if (m->cfg.task == LSTM_TASK_LM) {
        t->ids = model_encode_bytes(m, t->train->bytes, t->train->nbytes, NULL);
        t->nids = t->train->nbytes;
        size_t seg = t->nids / (size_t)c->batch;
        if (!t->ids)
            return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
        if (seg < (size_t)c->seq_len + 1)
            return lstm_fail(err, LSTM_ERR_INVALID,
                             "%s: %zu bytes are too few for %d streams of %d steps (need %zu)",
                             t->train->name, t->nids, c->batch, c->seq_len,
                             (size_t)c->batch * (c->seq_len + 1));
        t->steps_per_epoch = (long)((seg - 1) / (size_t)c->seq_len);
        size_t n = (size_t)m->cfg.layers * c->batch * m->cfg.hidden; /* >= the h of a projection */
        t->h = calloc(n, sizeof(float)), t->c = calloc(n, sizeof(float));
        t->h2 = calloc(n, sizeof(float)), t->c2 = calloc(n, sizeof(float));
        t->in = malloc(sizeof(int32_t) * 2 * (size_t)c->seq_len * c->batch);
        if (!t->h || !t->c || !t->h2 || !t->c2 || !t->in)
            return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
        return LSTM_OK;
    }
    lstm_status s = model_encode(m, t->train, &t->enc, err);
    if (s)
        return s;
    t->order = malloc(sizeof(size_t) * (t->enc.n ? t->enc.n : 1));
    if (!t->order)
        return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
    /* <unk> with probability a / (a + count), a = 0.25 (Kiperwasser and
     * Goldberg's word dropout): a word seen once 20% of the time */
    for (int fi = 0; fi < m->nfeat; fi++) {
        int V = vocab_size(m->feat[fi].vocab);
        long *count = calloc((size_t)V, sizeof(long));
        t->unk_p[fi] = malloc(sizeof(float) * (size_t)V);
        if (!count || !t->unk_p[fi]) {
            free(count);
            return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
        }
        for (size_t i = 0; i < t->enc.start[t->enc.n]; i++)
            count[t->enc.ids[fi][i]]++;
        for (int id = 0; id < V; id++)
            t->unk_p[fi][id] = 0.25f / (0.25f + (float)count[id]);
        free(count);
    }
    t->order_epoch = -1;
    t->steps_per_epoch = (long)((t->enc.n + (size_t)c->batch - 1) / (size_t)c->batch);
    return LSTM_OK;
}

static lstm_status check_train_config(const lstm_train_config *c, lstm_error *err) {
    if (c->epochs < 0 || c->time_limit < 0 || (c->epochs == 0 && c->time_limit <= 0))
        return lstm_fail(err, LSTM_ERR_INVALID, "give a number of epochs, a time limit, or both");
    if (c->batch < 1 || c->batch > 65536 || c->seq_len < 1 || c->seq_len > 1000000)
        return lstm_fail(err, LSTM_ERR_INVALID, "batch %d and sequence length %d must be >= 1",
                         c->batch, c->seq_len);
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
    if (train->task != t.m->cfg.task || (valid && valid->task != t.m->cfg.task)) {
        s = lstm_fail(err, LSTM_ERR_INVALID, "the data sets are not for a %s model",
                      lstm_task_name(t.m->cfg.task));
        goto fail;
    }
    if (!(t.opt = lstm_optim_create(&t.tc.optim, t.m->p, err)) ||
        !(t.best = lstm_params_create()))
        goto fail;
    for (int i = 0; i < lstm_params_count(t.m->p); i++)
        if (lstm_params_declare(t.best, lstm_params_name(t.m->p, i), lstm_params_ndim(t.m->p, i),
                                lstm_params_shape(t.m->p, i), err) < 0)
            goto fail;
    if ((s = lstm_params_alloc(t.best, err)) || (s = setup_data(&t, err)))
        goto fail;
    if (resume) {
        if ((s = lstm_optim_read(t.opt, resume, "optim.", err)) ||
            (t.have_best && (s = lstm_params_read(t.best, resume, "best.", 0, err))))
            goto fail;
        if (t.h) {
            const lstm_model_config *mc = &t.m->cfg;
            size_t n = (size_t)mc->layers * t.tc.batch * mc->hidden;
            size_t nh = (size_t)mc->layers * t.tc.batch * (mc->proj ? mc->proj : mc->hidden);
            const lstm_st_tensor *ht = lstm_st_find(resume, "train.h"),
                                 *ct = lstm_st_find(resume, "train.c");
            if (!ht || !ct || (s = lstm_st_read_f32(resume, ht, t.h, nh, err)) ||
                (s = lstm_st_read_f32(resume, ct, t.c, n, err))) {
                if (!s)
                    s = lstm_fail(err, LSTM_ERR_FORMAT, "%s: no carried state (train.h, train.c)",
                                  tc->resume);
                goto fail;
            }
        }
        lstm_st_free(resume);
        resume = NULL;
    } else {
        lstm_params_copy(t.best, t.m->p, NULL);
    }

    if (valid) { /* the model's tokens in valid: bytes, words, or a text's tokens */
        t.valid_tokens = (double)lstm_dataset_tokens(valid);
        if (t.m->cfg.task == LSTM_TASK_CLASSIFY && lstm_dataset_tokens(train) > 0)
            t.valid_tokens *= (double)t.enc.start[t.enc.n] / (double)lstm_dataset_tokens(train);
    }
    t.t0 = now();
    t.ev_time = elapsed(&t);
    t.last_checkpoint = elapsed(&t);
    char msg[256];
    snprintf(msg, sizeof msg, "%s model, %zu parameters, %ld steps per epoch%s",
             lstm_task_name(t.m->cfg.task), lstm_model_size(t.m), t.steps_per_epoch,
             tc->resume ? " (resumed)" : "");
    lstm_event start = {.type = LSTM_EV_START, .message = msg};
    emit(&t, &start);

    int stop = 0, lm = t.m->cfg.task == LSTM_TASK_LM;
    long since_valid = 0;
    double step_secs = 0; /* a running estimate of one step's time */
    while (!stop && (t.tc.epochs == 0 || t.epoch < t.tc.epochs)) {
        if (!lm && (s = epoch_order(&t, t.epoch, err)))
            goto fail;
        if (lm && t.batch_in_epoch == 0) { /* each epoch starts from a zero state */
            size_t n = (size_t)t.m->cfg.layers * t.tc.batch * t.m->cfg.hidden;
            memset(t.h, 0, sizeof(float) * n);
            memset(t.c, 0, sizeof(float) * n);
        }
        while (!stop && t.batch_in_epoch < t.steps_per_epoch) {
            /* stop in time for a last validation and the save */
            if (t.tc.time_limit > 0) {
                /* before the first validation, guess it from the training speed:
                 * a forward costs about a third of a training step per token */
                double vsecs = t.valid_secs;
                if (valid && vsecs == 0 && t.train_tokens > 0)
                    vsecs = 0.4 * t.valid_tokens * t.train_secs / t.train_tokens;
                double reserve = (valid ? vsecs * 1.2 + 1 : 0.5) + step_secs * 1.5;
                if (elapsed(&t) + reserve >= t.tc.time_limit) {
                    stop = 2;
                    break;
                }
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
                double e = elapsed(&t);
                lstm_event ev = {.type = LSTM_EV_TRAIN,
                                 .loss = t.ev_count ? t.ev_loss / t.ev_count : 0,
                                 .lr = current_lr(&t),
                                 .tokens_per_s = e > t.ev_time ? t.ev_tokens / (e - t.ev_time) : 0};
                emit(&t, &ev);
                t.ev_loss = 0, t.ev_count = 0, t.ev_tokens = 0, t.ev_time = e;
            }
            if (t.tc.checkpoint && t.tc.checkpoint_every > 0 &&
                elapsed(&t) - t.last_checkpoint >= t.tc.checkpoint_every &&
                (s = save_checkpoint(&t, err)))
                goto fail;
            if (valid && lm && t.tc.valid_every > 0 && since_valid >= t.tc.valid_every) {
                since_valid = 0;
                if ((s = validate(&t, &stop, err)))
                    goto fail;
            }
        }
        if (stop == 2)
            break;
        t.epoch++;
        t.batch_in_epoch = 0;
        /* the end of each epoch (lm: only when it has no valid_every) */
        if (valid && since_valid > 0 && !(lm && t.tc.valid_every > 0)) {
            since_valid = 0;
            if ((s = validate(&t, &stop, err)))
                goto fail;
        }
    }
    if (valid && since_valid > 0 && (s = validate(&t, &stop, err)))
        goto fail;
    if (!valid && t.tc.checkpoint && (s = save_checkpoint(&t, err)))
        goto fail;
    if (valid && t.have_best) /* the model that did best on valid */
        lstm_params_copy(t.m->p, t.best, NULL);
    lstm_event end = {.type = LSTM_EV_END, .metric = valid ? (lm ? "bpc" : "accuracy") : NULL,
                      .value = t.best_value,
                      .message = stop == 2 ? "time limit reached" : stop ? "early stop" : "done"};
    emit(&t, &end);
    lstm_model *m = t.m;
    t.m = NULL;
    trainer_free(&t);
    lstm_ok(err);
    return m;
fail:
    lstm_st_free(resume);
    lstm_model_free(t.m);
    trainer_free(&t);
    return NULL;
}
