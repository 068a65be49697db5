/* sequences.c - what the sequence tasks (classify, tag) share: data sets
 * encoded as ids, batches of examples of similar length padded to the
 * longest, the shuffled order of each epoch, word dropout, and batched
 * evaluation and prediction. The tasks differ in how they encode (their
 * encode_fn) and in whether a prediction is per example (pooled) or per
 * position. */
#include "task.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Encoded sets */

void encoded_free(encoded_set *e) {
    free(e->start);
    for (int i = 0; i < MAX_FEATURES; i++)
        free(e->ids[i]);
    free(e->targets);
    free(e->unseen);
    memset(e, 0, sizeof *e);
}

lstm_status encoded_alloc(encoded_set *e, size_t n, size_t total, int nfeat, int per_position,
                          int with_unseen, const char *name, lstm_error *err) {
    e->n = n;
    for (int fi = 0; fi < nfeat; fi++)
        if (!(e->ids[fi] = malloc(sizeof(int32_t) * (total ? total : 1))))
            goto nomem;
    if (!(e->targets = malloc(sizeof(int32_t) * ((per_position ? total : n) + 1))))
        goto nomem;
    if (with_unseen && !(e->unseen = malloc(total + 1)))
        goto nomem;
    return LSTM_OK;
nomem:
    encoded_free(e);
    return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory encoding %s", name);
}

int *encoded_map_labels(const lstm_model *m, const lstm_dataset *ds) {
    int *map = malloc(sizeof(int) * (size_t)(ds->nlabels ? ds->nlabels : 1));
    for (int i = 0; map && i < ds->nlabels; i++) {
        map[i] = -1;
        for (int j = 0; j < m->nlabels; j++)
            if (strcmp(ds->labels[i], m->labels[j]) == 0)
                map[i] = j;
    }
    return map;
}

typedef struct {
    size_t len, index;
} length_key;

static int by_length(const void *a, const void *b) {
    const length_key *x = a, *y = b;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* Orders examples by length, so batches waste little padding. */
size_t *encoded_length_order(const encoded_set *e) {
    size_t *order = malloc(sizeof(size_t) * (e->n ? e->n : 1));
    length_key *keys = malloc(sizeof(length_key) * (e->n ? e->n : 1));
    if (!order || !keys) {
        free(order);
        free(keys);
        return NULL;
    }
    for (size_t i = 0; i < e->n; i++)
        keys[i] = (length_key){e->start[i + 1] - e->start[i], i};
    qsort(keys, e->n, sizeof *keys, by_length);
    for (size_t i = 0; i < e->n; i++)
        order[i] = keys[i].index;
    free(keys);
    return order;
}

lstm_status encoded_make_batch(const lstm_model *m, const encoded_set *e, const size_t *order,
                               int B, model_batch *b, void **scratch, size_t *cap,
                               lstm_error *err) {
    int T = 0;
    for (int j = 0; j < B; j++) {
        size_t len = e->start[order[j] + 1] - e->start[order[j]];
        if ((int)len > T)
            T = (int)len;
    }
    if (T < 1)
        T = 1;
    int per_position = !m->ops->pooled;
    size_t N = (size_t)T * B;
    size_t need = sizeof(int32_t) * N * (m->nfeat + 1) + sizeof(int) * B + sizeof(int32_t) * B + 64;
    if (need > *cap) {
        void *p = realloc(*scratch, need);
        if (!p)
            return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory for a batch");
        *scratch = p;
        *cap = need;
    }
    int32_t *at = *scratch;
    memset(b, 0, sizeof *b);
    b->T = T;
    b->B = B;
    for (int fi = 0; fi < m->nfeat; fi++, at += N)
        b->ids[fi] = at;
    b->targets = at;
    at += per_position ? N : (size_t)B;
    b->lengths = (int *)at;
    for (int j = 0; j < B; j++) {
        size_t s = e->start[order[j]], len = e->start[order[j] + 1] - s;
        b->lengths[j] = len ? (int)len : 1;
        for (int t = 0; t < T; t++) {
            size_t pos = (size_t)t * B + j;
            for (int fi = 0; fi < m->nfeat; fi++)
                b->ids[fi][pos] = (size_t)t < len ? e->ids[fi][s + t] : (t == 0 ? UNK_ID : PAD_ID);
            if (per_position)
                b->targets[pos] = (size_t)t < len && e->targets[s + t] >= 0 ? e->targets[s + t]
                                                                             : -100;
        }
        if (!per_position)
            b->targets[j] = e->targets[order[j]] >= 0 ? e->targets[order[j]] : -100;
    }
    return LSTM_OK;
}

lstm_status encoded_run(lstm_model *m, lstm_ctx *ctx, const encoded_set *e, int B,
                        batch_stats *total, batch_visit visit, void *arg, lstm_error *err) {
    return encoded_run_share(m, ctx, e, B, 0, 1, total, visit, arg, err);
}

lstm_status encoded_run_share(lstm_model *m, lstm_ctx *ctx, const encoded_set *e, int B, int rank,
                              int nranks, batch_stats *total, batch_visit visit, void *arg,
                              lstm_error *err) {
    size_t *order = encoded_length_order(e);
    void *scratch = NULL;
    size_t cap = 0;
    lstm_status s = order ? LSTM_OK : lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
    memset(total, 0, sizeof *total);
    for (size_t i = 0; !s && i < e->n; i += (size_t)B) {
        if ((i / (size_t)B) % (size_t)nranks != (size_t)rank)
            continue;
        int nb = e->n - i < (size_t)B ? (int)(e->n - i) : B;
        model_batch b;
        batch_stats st;
        if (!(s = encoded_make_batch(m, e, order + i, nb, &b, &scratch, &cap, err)) &&
            !(s = model_batch_run(m, ctx, &b, 0, NULL, NULL, &st, err))) {
            total->loss_sum += st.loss_sum;
            total->count += st.count;
            total->correct += st.correct;
            if (visit)
                visit(m, &b, order + i, m->logits, arg);
        }
    }
    free(order);
    free(scratch);
    return s;
}

/* ------------------------------------------------------------------ */
/* Evaluation and prediction */

typedef struct {
    const encoded_set *e;
    eval_visit visit;
    lstm_eval *out;
} eval_arg;

static void eval_batch(const lstm_model *m, const model_batch *b, const size_t *order,
                       const float *logp, void *arg) {
    eval_arg *a = arg;
    a->visit(m, a->e, b, order, logp, a->out);
}

/* The labels of ds that the model does not know, with their counts, into out. */
static lstm_status unknown_labels(const lstm_model *m, const lstm_dataset *ds,
                                  const int *ds_labels, size_t n, lstm_eval *out,
                                  lstm_error *err) {
    int *map = encoded_map_labels(m, ds);
    size_t *count = calloc(ds->nlabels ? (size_t)ds->nlabels : 1, sizeof *count);
    int nu = 0;
    if (map && count) {
        for (size_t i = 0; i < n; i++)
            if (ds_labels[i] >= 0 && map[ds_labels[i]] < 0)
                count[ds_labels[i]]++, out->skipped++;
        for (int l = 0; l < ds->nlabels; l++)
            nu += count[l] > 0;
    }
    if (nu > 0) {
        out->unknown_labels = calloc((size_t)nu, sizeof(char *));
        out->unknown_counts = calloc((size_t)nu, sizeof(size_t));
        for (int l = 0; out->unknown_labels && out->unknown_counts && l < ds->nlabels; l++)
            if (count[l] > 0) {
                out->unknown_counts[out->nunknown_labels] = count[l];
                if (!(out->unknown_labels[out->nunknown_labels++] = strdup(ds->labels[l])))
                    break;
            }
    }
    int ok = map && count && (nu == 0 || (out->nunknown_labels == nu &&
                                          out->unknown_labels[nu - 1]));
    free(map);
    free(count);
    return ok ? LSTM_OK : lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
}

lstm_status seq_evaluate(lstm_model *m, lstm_ctx *ctx, const lstm_dataset *ds,
                         const int *ds_labels, size_t n, eval_visit visit, const lstm_comm *comm,
                         lstm_eval *out, lstm_error *err) {
    encoded_set e;
    lstm_status s = unknown_labels(m, ds, ds_labels, n, out, err);
    if (s || (s = m->ops->encode(m, ds, &e, err))) {
        lstm_eval_free(out);
        return s;
    }
    batch_stats total;
    eval_arg a = {&e, visit, out};
    int rank = comm ? comm->rank : 0, nranks = comm ? comm->size : 1;
    s = encoded_run_share(m, ctx, &e, 64, rank, nranks, &total, eval_batch, &a, err);
    encoded_free(&e);
    if (!s && nranks > 1) { /* every rank's share summed: the counts, the task's figures */
        size_t nc = out->confusion ? (size_t)out->nlabels * out->nlabels : 0;
        double *x = malloc(sizeof(double) * (2 + nc));
        if (!x)
            s = lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
        else {
            x[0] = (double)out->unseen_tokens, x[1] = out->unseen_accuracy;
            for (size_t i = 0; i < nc; i++)
                x[2 + i] = (double)out->confusion[i];
            s = task_sum_stats(comm, &total, x, 2 + nc, err);
            out->unseen_tokens = (size_t)x[0], out->unseen_accuracy = x[1];
            for (size_t i = 0; i < nc; i++)
                out->confusion[i] = (long)x[2 + i];
            free(x);
        }
    }
    if (s) {
        lstm_eval_free(out);
        return s;
    }
    /* every figure covers the examples whose label the model knows; over
     * none, nothing was measured: NaN */
    out->tokens = (size_t)total.count;
    out->loss = total.count ? total.loss_sum / (double)total.count : NAN;
    out->accuracy = total.count ? (double)total.correct / (double)total.count : NAN;
    return lstm_ok(err);
}

typedef struct {
    const encoded_set *e;
    int *labels;
    float *probs;
} predict_arg;

static void predict_visit(const lstm_model *m, const model_batch *b, const size_t *order,
                          const float *logp, void *arg) {
    predict_arg *a = arg;
    int per_position = !m->ops->pooled;
    for (int j = 0; j < b->B; j++) {
        size_t ex = order[j], s = a->e->start[ex];
        size_t len = a->e->start[ex + 1] - s;
        for (size_t t = 0; t < (per_position ? len : 1); t++) {
            size_t row = per_position ? t * b->B + j : (size_t)j;
            const float *lp = logp + row * m->nout;
            int best = task_argmax(lp, m->nout);
            size_t at = per_position ? s + t : ex;
            a->labels[at] = best;
            a->probs[at] = expf(lp[best]);
        }
    }
}

lstm_status seq_predict(lstm_model *m, lstm_ctx *ctx, const lstm_dataset *ds, int *labels,
                        float *probs, lstm_error *err) {
    encoded_set e;
    lstm_status s = m->ops->encode(m, ds, &e, err);
    if (s)
        return s;
    /* an empty sentence runs as one <unk> word whose prediction is dropped */
    predict_arg a = {&e, labels, probs};
    batch_stats total;
    s = encoded_run(m, ctx, &e, 64, &total, predict_visit, &a, err);
    encoded_free(&e);
    return s;
}

/* ------------------------------------------------------------------ */
/* Training */

typedef struct {
    encoded_set enc;
    float *unk_p[MAX_FEATURES]; /* per id: the chance a training token becomes <unk> */
    size_t *order;              /* the current epoch's examples, batch after batch */
    long order_epoch;           /* the epoch `order` was made for (-1: none) */
    void *scratch;
    size_t cap;
} seq_state;

const encoded_set *seq_train_encoded(const trainer *t) {
    return &((const seq_state *)t->task)->enc;
}

lstm_status seq_train_setup(trainer *t, lstm_error *err) {
    lstm_model *m = t->m;
    seq_state *q = calloc(1, sizeof *q);
    if (!q)
        return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
    t->task = q;
    lstm_status s = m->ops->encode(m, t->train, &q->enc, err);
    if (s)
        return s;
    q->order = malloc(sizeof(size_t) * (q->enc.n ? q->enc.n : 1));
    if (!q->order)
        return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
    /* <unk> with probability a / (a + count), a = 0.25 (Kiperwasser and
     * Goldberg's word dropout): a word seen once 20% of the time */
    for (int fi = 0; fi < m->nfeat; fi++) {
        int V = vocab_size(m->feat[fi].vocab);
        long *count = calloc((size_t)V, sizeof(long));
        q->unk_p[fi] = malloc(sizeof(float) * (size_t)V);
        if (!count || !q->unk_p[fi]) {
            free(count);
            return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
        }
        for (size_t i = 0; i < q->enc.start[q->enc.n]; i++)
            count[q->enc.ids[fi][i]]++;
        for (int id = 0; id < V; id++)
            q->unk_p[fi][id] = 0.25f / (0.25f + (float)count[id]);
        free(count);
    }
    q->order_epoch = -1;
    t->steps_per_epoch = (long)((q->enc.n + (size_t)t->tc.batch - 1) / (size_t)t->tc.batch);
    return LSTM_OK;
}

/* The order of examples in the epoch under way: shuffled, then sorted by
 * length within pools of 50 batches, cut into batches, and the batches
 * shuffled. It depends on the seed and the epoch alone, so a resumed run
 * finds it again. */
lstm_status seq_train_epoch(trainer *t, lstm_error *err) {
    seq_state *q = t->task;
    int epoch = t->epoch;
    if (q->order_epoch == epoch)
        return LSTM_OK;
    size_t n = q->enc.n, B = (size_t)t->tc.batch;
    const size_t *start = q->enc.start;
    lstm_rng r;
    lstm_rng_seed(&r, t->tc.seed * 0x9E3779B97F4A7C15ULL + (uint64_t)epoch + 1);
    size_t *o = q->order;
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
            size_t v = o[i], lv = start[v + 1] - start[v], j = i;
            for (; j > at && start[o[j - 1] + 1] - start[o[j - 1]] > lv; j--)
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
    q->order_epoch = epoch;
    return LSTM_OK;
}

/* Batch k of the epoch is examples order[kB, kB + nb); in a data-parallel
 * job of N ranks, rank r takes the slice [r nb/N, (r+1) nb/N) of them,
 * which may be empty for a short last batch. The loss is the mean over the
 * targets of the whole batch, so that the ranks' gradients add up to the
 * one-process gradient. */
lstm_status seq_train_batch(trainer *t, long k, model_batch *b, long *tokens, lstm_error *err) {
    seq_state *q = t->task;
    const lstm_model *m = t->m;
    const encoded_set *e = &q->enc;
    size_t B = (size_t)t->tc.batch, at = (size_t)k * B;
    size_t nb = e->n - at < B ? e->n - at : B;
    size_t lo = nb * (size_t)t->rank / (size_t)t->nranks;
    size_t hi = nb * (size_t)(t->rank + 1) / (size_t)t->nranks;
    long count = 0;
    *tokens = 0;
    for (size_t j = at; j < at + nb; j++) { /* the whole batch's targets and tokens */
        size_t ex = q->order[j], s0 = e->start[ex], len = e->start[ex + 1] - s0;
        *tokens += len ? (long)len : 1;
        if (m->ops->pooled)
            count += e->targets[ex] >= 0;
        else
            for (size_t i = 0; i < len; i++)
                count += e->targets[s0 + i] >= 0;
    }
    if (hi == lo) {
        memset(b, 0, sizeof *b);
        return LSTM_OK;
    }
    lstm_status s = encoded_make_batch(m, e, q->order + at + lo, (int)(hi - lo), b, &q->scratch,
                                       &q->cap, err);
    if (s)
        return s;
    b->loss_count = count;
    /* word dropout: rare words sometimes become <unk>, so that <unk>
     * (every word unseen in training) gets an embedding worth having. The
     * draws of an example come from the seed, the step and its place in
     * the epoch, so that they do not depend on which rank runs it (nor on
     * the examples before it): N ranks draw what one process draws. */
    for (int j = 0; j < b->B; j++) {
        lstm_rng r;
        lstm_rng_seed(&r, t->tc.seed * 0xD6E8FEB86659FD93ULL ^ (uint64_t)t->step * 0x9E3779B97F4A7C15ULL ^
                              (uint64_t)(at + lo + (size_t)j) * 0xC2B2AE3D27D4EB4FULL);
        for (int fi = 0; fi < m->nfeat; fi++)
            for (int tt = 0; q->unk_p[fi] && tt < b->lengths[j]; tt++) {
                size_t i = (size_t)tt * b->B + (size_t)j;
                int32_t id = b->ids[fi][i];
                if (id > UNK_ID && lstm_rng_uniform(&r) < q->unk_p[fi][id])
                    b->ids[fi][i] = UNK_ID;
            }
    }
    return LSTM_OK;
}

void seq_train_free(trainer *t) {
    seq_state *q = t->task;
    if (!q)
        return;
    encoded_free(&q->enc);
    for (int i = 0; i < MAX_FEATURES; i++)
        free(q->unk_p[i]);
    free(q->order);
    free(q->scratch);
    free(q);
    t->task = NULL;
}
