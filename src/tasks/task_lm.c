/* task_lm.c - the character language model: any file, as bytes; B
 * parallel streams over the text trained with truncated backpropagation,
 * the state carried from one unroll to the next; validation in bits per
 * character; sampling text one byte at a time.
 *
 *   byte -> embedding -> LSTM -> linear -> next byte
 */
#include "task.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* tuned on Brown text for ten minutes on two cores: README */
static void defaults(lstm_model_config *c, lstm_train_config *tc) {
    c->embedding = 64;
    c->hidden = 512;
    c->layers = 2;
    c->dropout = 0;
    tc->epochs = 3;
    tc->batch = 32;
    tc->seq_len = 50;
    tc->optim.lr = 4.5e-3f;
    tc->optim.beta2 = 0.99f;
    tc->warmup = 100;
    tc->clip = 1;
    tc->valid_every = 4000;
    tc->ema = 0.999f; /* issue 15: docs/QUALITY.md */
}

/* ------------------------------------------------------------------ */
/* Data */

static lstm_status parse(lstm_dataset *ds, size_t len, lstm_error *err) {
    if (len == 0)
        return lstm_fail(err, LSTM_ERR_FORMAT, NAME_FMT ": empty: no text", ds->name);
    ds->bytes = (unsigned char *)ds->store;
    ds->nbytes = len;
    ds->store[len] = 0;
    return LSTM_OK;
}

static size_t count(const lstm_dataset *ds) { return ds->nbytes; }

/* A new lm data set of bytes[begin, end). */
static lstm_dataset *range(const lstm_dataset *ds, size_t begin, size_t end, const char *name) {
    lstm_dataset *out = ds_create(ds->task, name, ds->labelled);
    if (!out || !(out->store = malloc(end - begin + 1))) {
        lstm_dataset_free(out);
        return NULL;
    }
    memcpy(out->store, ds->bytes + begin, end - begin);
    out->store[end - begin] = 0;
    out->bytes = (unsigned char *)out->store;
    out->nbytes = end - begin;
    return out;
}

/* The part is the end of the text (a random choice of bytes would cut it
 * to pieces); the seed is not needed. */
static int split(const lstm_dataset *ds, size_t k, uint64_t seed, const char *rest_name,
                 const char *part_name, lstm_dataset **rest, lstm_dataset **part) {
    (void)seed;
    *rest = range(ds, 0, ds->nbytes - k, rest_name);
    *part = range(ds, ds->nbytes - k, ds->nbytes, part_name);
    return *rest && *part ? 0 : -1;
}

static uint64_t hash(const lstm_dataset *ds, uint64_t h) {
    return ds_fnv(h, ds->bytes, ds->nbytes);
}

/* ------------------------------------------------------------------ */
/* Features: the byte */

static void features(lstm_model *m) {
    feature *f = &m->feat[0];
    snprintf(f->name, sizeof f->name, "byte");
    f->kind = 0, f->k = 0, f->dim = m->cfg.embedding, f->param = -1;
    m->nfeat = 1;
}

/* The bytes that occur, in byte order, after <pad> and <unk>. */
static lstm_status vocabs(lstm_model *m, const lstm_dataset *ds, lstm_error *err) {
    feature *f = &m->feat[0];
    int seen[256] = {0};
    for (size_t i = 0; i < ds->nbytes; i++)
        seen[ds->bytes[i]] = 1;
    f->vocab = vocab_create();
    int ok = f->vocab && vocab_add(f->vocab, task_specials[0], strlen(task_specials[0])) >= 0 &&
             vocab_add(f->vocab, task_specials[1], strlen(task_specials[1])) >= 0;
    for (int b = 0; ok && b < 256; b++) {
        char ch = (char)b;
        if (seen[b])
            ok = vocab_add(f->vocab, &ch, 1) >= 0;
    }
    return ok ? LSTM_OK : lstm_fail(err, LSTM_ERR_NOMEM, "out of memory building vocabularies");
}

/* Each byte's id, or `unknown` for a byte the model never saw. */
static void byte_map(const lstm_model *m, int32_t map[256], int32_t unknown) {
    for (int b = 0; b < 256; b++) {
        char ch = (char)b;
        int id = vocab_find(m->feat[0].vocab, &ch, 1);
        map[b] = id >= 2 ? id : unknown; /* not "<pad>"/"<unk>" themselves */
    }
}

/* The bytes as ids; *unknown counts those outside the vocabulary. */
static int32_t *encode_bytes(const lstm_model *m, const unsigned char *bytes, size_t n,
                             size_t *unknown) {
    int32_t map[256];
    byte_map(m, map, UNK_ID);
    int32_t *ids = malloc(sizeof(int32_t) * (n ? n : 1));
    size_t unk = 0;
    for (size_t i = 0; ids && i < n; i++) {
        ids[i] = map[bytes[i]];
        unk += ids[i] == UNK_ID;
    }
    if (unknown)
        *unknown = unk;
    return ids;
}

/* ------------------------------------------------------------------ */
/* Training: B streams, stream j reading the j-th B-th of the text; batch k
 * of an epoch is unroll k of every stream. Each epoch starts from a zero
 * state; within it the state is carried (not its gradient). In a
 * data-parallel job of N ranks, rank r runs streams [r B/N, (r+1) B/N). */

typedef struct {
    int32_t *ids;
    size_t nids;
    int B, first;           /* this rank's streams: B of them, from stream `first` */
    float *h, *c, *h2, *c2; /* (L,B,H): room for the h of a projection too */
    int32_t *in;            /* a batch's inputs and targets */
} lm_state;

static size_t state_size(const trainer *t) {
    const lm_state *q = t->task;
    return (size_t)t->m->cfg.layers * q->B * t->m->cfg.hidden;
}

static lstm_status train_setup(trainer *t, lstm_error *err) {
    const lstm_train_config *c = &t->tc;
    lm_state *q = calloc(1, sizeof *q);
    if (!q)
        return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
    t->task = q;
    if (c->batch % t->nranks != 0)
        return lstm_fail(err, LSTM_ERR_INVALID,
                         "%d streams (--batch) cannot be shared evenly by %d ranks: give a "
                         "batch that %d divides",
                         c->batch, t->nranks, t->nranks);
    q->B = c->batch / t->nranks;
    q->first = t->rank * q->B;
    q->ids = encode_bytes(t->m, t->train->bytes, t->train->nbytes, NULL);
    q->nids = t->train->nbytes;
    size_t seg = q->nids / (size_t)c->batch;
    if (!q->ids)
        return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
    if (seg < (size_t)c->seq_len + 1)
        return lstm_fail(err, LSTM_ERR_INVALID,
                         "%s: %zu bytes are too few for %d streams of %d steps (need %zu)",
                         t->train->name, q->nids, c->batch, c->seq_len,
                         (size_t)c->batch * (c->seq_len + 1));
    t->steps_per_epoch = (long)((seg - 1) / (size_t)c->seq_len);
    size_t n = state_size(t);
    q->h = calloc(n, sizeof(float)), q->c = calloc(n, sizeof(float));
    q->h2 = calloc(n, sizeof(float)), q->c2 = calloc(n, sizeof(float));
    q->in = malloc(sizeof(int32_t) * 2 * (size_t)c->seq_len * q->B);
    if (!q->h || !q->c || !q->h2 || !q->c2 || !q->in)
        return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
    return LSTM_OK;
}

static lstm_status train_epoch(trainer *t, lstm_error *err) {
    (void)err;
    lm_state *q = t->task;
    if (t->batch_in_epoch == 0) { /* each epoch starts from a zero state */
        memset(q->h, 0, sizeof(float) * state_size(t));
        memset(q->c, 0, sizeof(float) * state_size(t));
    }
    return LSTM_OK;
}

static lstm_status train_batch(trainer *t, long k, model_batch *b, long *tokens,
                               lstm_error *err) {
    (void)err;
    lm_state *q = t->task;
    int T = t->tc.seq_len, B = q->B;
    size_t seg = q->nids / (size_t)t->tc.batch;
    memset(b, 0, sizeof *b);
    b->T = T;
    b->B = B;
    b->ids[0] = q->in;
    b->targets = q->in + (size_t)T * B;
    for (int tt = 0; tt < T; tt++)
        for (int j = 0; j < B; j++) {
            size_t pos = (size_t)(q->first + j) * seg + (size_t)k * T + tt;
            q->in[(size_t)tt * B + j] = q->ids[pos];
            b->targets[(size_t)tt * B + j] = q->ids[pos + 1];
        }
    b->h0 = q->h, b->c0 = q->c, b->hn = q->h2, b->cn = q->c2;
    b->loss_count = (long)T * t->tc.batch; /* every stream's targets */
    *tokens = (long)T * t->tc.batch;
    return LSTM_OK;
}

/* carry the state (not its gradient) */
static void train_after(trainer *t) {
    lm_state *q = t->task;
    memcpy(q->h, q->h2, sizeof(float) * state_size(t));
    memcpy(q->c, q->c2, sizeof(float) * state_size(t));
}

/* The state of all B streams (L,B,F) from each rank's (L,Bl,F): each rank
 * puts its rows in a zeroed buffer, and the sum over the ranks is the whole. */
static int gather_state(const trainer *t, const float *mine, float *all, int F) {
    const lm_state *q = t->task;
    int L = t->m->cfg.layers, B = t->tc.batch;
    memset(all, 0, sizeof(float) * (size_t)L * B * F);
    for (int l = 0; l < L; l++)
        memcpy(all + ((size_t)l * B + q->first) * F, mine + (size_t)l * q->B * F,
               sizeof(float) * (size_t)q->B * F);
    const lstm_comm *comm = t->tc.comm;
    return t->nranks > 1 ? comm->allreduce_float(all, (size_t)L * B * F, comm->arg) : 0;
}

/* The carried state of all streams, train.h (L,B,Hout) and train.c (L,B,H),
 * gathered from the ranks; added to w on the rank that writes (w not NULL). */
static lstm_status train_save(const trainer *t, lstm_st_writer *w, lstm_error *err) {
    const lm_state *q = t->task;
    const lstm_model_config *mc = &t->m->cfg;
    int Ho = mc->proj ? mc->proj : mc->hidden;
    int64_t hs[3] = {mc->layers, t->tc.batch, Ho};
    int64_t cs[3] = {mc->layers, t->tc.batch, mc->hidden};
    float *h = malloc(sizeof(float) * (size_t)mc->layers * t->tc.batch * Ho);
    float *c = malloc(sizeof(float) * (size_t)mc->layers * t->tc.batch * mc->hidden);
    lstm_status s = h && c ? LSTM_OK : lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
    if (!s && (gather_state(t, q->h, h, Ho) || gather_state(t, q->c, c, mc->hidden)))
        s = lstm_fail(err, LSTM_ERR_IO, "gathering the carried state from the ranks failed");
    if (!s && w)
        s = lstm_st_writer_add(w, "train.h", LSTM_DT_F32, 3, hs, h, err);
    if (!s && w)
        s = lstm_st_writer_add(w, "train.c", LSTM_DT_F32, 3, cs, c, err);
    free(h), free(c);
    return s;
}

/* This rank's streams of the checkpoint's carried state (written with any
 * number of ranks: it holds every stream). */
static lstm_status train_load(trainer *t, const lstm_st *st, lstm_error *err) {
    lm_state *q = t->task;
    const lstm_model_config *mc = &t->m->cfg;
    int L = mc->layers, B = t->tc.batch, Ho = mc->proj ? mc->proj : mc->hidden, H = mc->hidden;
    const lstm_st_tensor *ht = lstm_st_find(st, "train.h"), *ct = lstm_st_find(st, "train.c");
    float *h = malloc(sizeof(float) * (size_t)L * B * Ho), *c = malloc(sizeof(float) * (size_t)L * B * H);
    lstm_status s = h && c ? LSTM_OK : lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
    if (!s && (!ht || !ct || (s = lstm_st_read_f32(st, ht, h, (size_t)L * B * Ho, err)) ||
               (s = lstm_st_read_f32(st, ct, c, (size_t)L * B * H, err)))) {
        if (!s)
            s = lstm_fail(err, LSTM_ERR_FORMAT, "%s: no carried state (train.h, train.c)",
                          lstm_st_name(st));
    }
    for (int l = 0; !s && l < L; l++) {
        memcpy(q->h + (size_t)l * q->B * Ho, h + ((size_t)l * B + q->first) * Ho,
               sizeof(float) * (size_t)q->B * Ho);
        memcpy(q->c + (size_t)l * q->B * H, c + ((size_t)l * B + q->first) * H,
               sizeof(float) * (size_t)q->B * H);
    }
    free(h), free(c);
    return s;
}

static double valid_tokens(const trainer *t, const lstm_dataset *valid) {
    (void)t;
    return (double)lstm_dataset_tokens(valid);
}

static void train_free(trainer *t) {
    lm_state *q = t->task;
    if (!q)
        return;
    free(q->ids);
    free(q->h), free(q->c), free(q->h2), free(q->c2), free(q->in);
    free(q);
    t->task = NULL;
}

/* ------------------------------------------------------------------ */
/* Evaluation */

/* lm: S streams over the ids, each carrying its state; the summed NLL. */
/* S streams over the ids, each carrying its state; the summed NLL of
 * streams [s0, s1) (a rank's share when the ranks of a job share the
 * validation: the rest after the last full segment goes with stream S-1). */
static lstm_status eval_lm(lstm_model *m, lstm_ctx *ctx, const int32_t *ids, size_t n, int S,
                           int s0, int s1, batch_stats *total, lstm_error *err) {
    memset(total, 0, sizeof *total);
    if (n < 2)
        return LSTM_OK;
    size_t preds = n - 1;
    if ((size_t)S > preds)
        S = (int)preds;
    if (S < 1)
        S = 1;
    if (s1 > S)
        s1 = S;
    if (s0 >= s1)
        return LSTM_OK; /* no stream for this rank */
    int Sl = s1 - s0;
    size_t seg = preds / (size_t)S; /* every stream predicts seg bytes; the last also the rest */
    int L = m->cfg.layers, H = m->cfg.hidden, Ho = m->cfg.proj ? m->cfg.proj : H;
    const int chunk = 128;
    float *h = calloc((size_t)L * Sl * Ho, sizeof(float)), *c = calloc((size_t)L * Sl * H, sizeof(float));
    float *h2 = calloc((size_t)L * Sl * Ho, sizeof(float)), *c2 = calloc((size_t)L * Sl * H, sizeof(float));
    int32_t *in = malloc(sizeof(int32_t) * (size_t)chunk * Sl * 2);
    lstm_status s = h && c && h2 && c2 && in ? LSTM_OK : lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
    size_t done = 0; /* predictions made by each stream */
    while (!s && done < seg) {
        int T = seg - done < (size_t)chunk ? (int)(seg - done) : chunk;
        model_batch b = {.T = T, .B = Sl, .targets = in + (size_t)chunk * Sl, .h0 = h, .c0 = c,
                         .hn = h2, .cn = c2};
        b.ids[0] = in;
        for (int t = 0; t < T; t++)
            for (int j = 0; j < Sl; j++) {
                size_t pos = (size_t)(s0 + j) * seg + done + t;
                in[(size_t)t * Sl + j] = ids[pos];
                b.targets[(size_t)t * Sl + j] = ids[pos + 1];
            }
        batch_stats st;
        if (!(s = model_batch_run(m, ctx, &b, 0, NULL, NULL, &st, err))) {
            total->loss_sum += st.loss_sum;
            total->count += st.count;
            total->correct += st.correct;
            memcpy(h, h2, sizeof(float) * (size_t)L * Sl * Ho);
            memcpy(c, c2, sizeof(float) * (size_t)L * Sl * H);
        }
        done += (size_t)T;
    }
    /* the rest, on the last stream: its state is row Sl-1 of each layer */
    size_t rest_at = (size_t)S * seg, rest = s1 == S ? preds - rest_at : 0;
    if (!s && rest) {
        for (int l = 0; l < L; l++) {
            memcpy(h2 + (size_t)l * Ho, h + ((size_t)l * Sl + Sl - 1) * Ho, sizeof(float) * Ho);
            memcpy(c2 + (size_t)l * H, c + ((size_t)l * Sl + Sl - 1) * H, sizeof(float) * H);
        }
        for (size_t at = 0; !s && at < rest; at += (size_t)chunk) {
            int T = rest - at < (size_t)chunk ? (int)(rest - at) : chunk;
            model_batch b = {.T = T, .B = 1, .targets = in + chunk, .h0 = h2, .c0 = c2,
                             .hn = h, .cn = c};
            b.ids[0] = in;
            for (int t = 0; t < T; t++) {
                in[t] = ids[rest_at + at + t];
                b.targets[t] = ids[rest_at + at + t + 1];
            }
            batch_stats st;
            if (!(s = model_batch_run(m, ctx, &b, 0, NULL, NULL, &st, err))) {
                total->loss_sum += st.loss_sum;
                total->count += st.count;
                total->correct += st.correct;
                memcpy(h2, h, sizeof(float) * (size_t)L * Ho);
                memcpy(c2, c, sizeof(float) * (size_t)L * H);
            }
        }
    }
    free(h), free(c), free(h2), free(c2), free(in);
    return s;
}

static lstm_status evaluate(lstm_model *m, lstm_ctx *ctx, const lstm_dataset *ds, int streams,
                            const lstm_comm *comm, lstm_eval *out, lstm_error *err) {
    batch_stats total;
    size_t unknown;
    int32_t *ids = encode_bytes(m, ds->bytes, ds->nbytes, &unknown);
    if (!ids)
        return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
    /* the ranks of a job share the streams, then sum their figures */
    int S = streams > 0 ? streams : 1, r = comm ? comm->rank : 0, N = comm ? comm->size : 1;
    lstm_status s = eval_lm(m, ctx, ids, ds->nbytes, S, (int)((long)S * r / N),
                            (int)((long)S * (r + 1) / N), &total, err);
    free(ids);
    if (s)
        return s;
    if (N > 1 && (s = task_sum_stats(comm, &total, NULL, 0, err)))
        return s;
    out->unknown = unknown;
    out->tokens = (size_t)total.count;
    /* a text of one byte predicts none: nothing was measured, NaN */
    out->loss = total.count ? total.loss_sum / (double)total.count : NAN;
    out->bpc = out->loss / log(2.0);
    out->perplexity = exp(out->loss);
    out->accuracy = total.count ? (double)total.correct / (double)total.count : NAN;
    return lstm_ok(err);
}

/* ------------------------------------------------------------------ */
/* Sampling */

/* Draws an id from softmax(logits) restricted to the top_k largest (0:
 * all), ids 0 and 1 (<pad>, <unk>) excluded. The logits are in double, so
 * that a tiny temperature (1e-38) gives huge but finite values and the
 * draw becomes the argmax instead of a NaN. idx: V ints of scratch. */
static int draw(const double *logits, int V, int top_k, lstm_rng *rng, int *idx) {
    int n = V - 2; /* the candidates: ids 2..V-1 */
    for (int v = 0; v < n; v++)
        idx[v] = v + 2;
    int keep = top_k > 0 && top_k < n ? top_k : n;
    for (int a = 0; a < keep; a++) { /* partial selection sort: keep is small */
        int best = a;
        for (int b = a + 1; b < n; b++)
            if (logits[idx[b]] > logits[idx[best]])
                best = b;
        int t = idx[a];
        idx[a] = idx[best];
        idx[best] = t;
    }
    double mx = logits[idx[0]], sum = 0;
    for (int a = 0; a < keep; a++)
        sum += exp(logits[idx[a]] - mx);
    double r = (double)lstm_rng_uniform(rng) * sum, acc = 0;
    for (int a = 0; a < keep; a++) {
        acc += exp(logits[idx[a]] - mx);
        if (r < acc)
            return idx[a];
    }
    return idx[0];
}

/* The text is drawn one byte at a time with the state carried. Generation
 * starts from a state the model knows: the zero state then a newline (a
 * line's start, as training sees it every few dozen bytes; from the zero
 * state alone the first bytes of a primed sample were junk), then the
 * prime. A text without newlines starts from the zero state. */
static lstm_status sample(lstm_model *m, lstm_ctx *ctx, const char *prime, size_t prime_len,
                         size_t length, float temperature, int top_k, lstm_rng *rng,
                         void (*emit)(unsigned char byte, void *arg), void *arg,
                         lstm_error *err) {
    const feature *f = &m->feat[0];
    int32_t map[256];
    byte_map(m, map, -1);
    for (size_t i = 0; i < prime_len; i++)
        if (map[(unsigned char)prime[i]] < 0)
            return lstm_fail(err, LSTM_ERR_INVALID,
                             "the prime text's byte %zu (0x%02x) never occurs in the model's "
                             "training text, so the model cannot read it",
                             i, (unsigned char)prime[i]);
    /* what is fed before the first draw: newline, prime (or byte id 2) */
    size_t nfeed = (map['\n'] >= 0) + prime_len;
    int L = m->cfg.layers, H = m->cfg.hidden, Ho = m->out_dim, V = m->nout, E = f->dim;
    float *h = calloc((size_t)L * Ho, sizeof(float)), *c = calloc((size_t)L * H, sizeof(float));
    float *y = malloc(sizeof(float) * Ho), *x = malloc(sizeof(float) * E);
    double *logits = malloc(sizeof(double) * V);
    float *zf = malloc(sizeof(float) * V); /* a quantized decoder's output */
    int *idx = malloc(sizeof(int) * V), *feed = malloc(sizeof(int) * (nfeed + 1));
    lstm_status s = h && c && y && logits && zf && x && idx && feed
                        ? LSTM_OK
                        : lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
    if (!s) {
        nfeed = 0;
        if (map['\n'] >= 0)
            feed[nfeed++] = map['\n'];
        for (size_t i = 0; i < prime_len; i++)
            feed[nfeed++] = map[(unsigned char)prime[i]];
        if (nfeed == 0)
            feed[nfeed++] = 2; /* the model's first byte */
    }
    const float *table = lstm_params_data(m->p, f->param);
    const float *W = lstm_params_data(m->p, m->dec_w), *bias = lstm_params_data(m->p, m->dec_b);
    for (size_t i = 0; !s && i < nfeed + length; i++) {
        int id = i < nfeed ? feed[i] : draw(logits, V, top_k, rng, idx);
        if (i >= nfeed) {
            size_t len;
            if (emit)
                emit((unsigned char)vocab_string(f->vocab, id, &len)[0], arg);
            if (i + 1 == nfeed + length)
                break;
        }
        memcpy(x, table + (size_t)id * E, sizeof(float) * E);
        if ((s = lstm_rnn_step(m->rnn, ctx, m->p, 1, x, h, c, y, err)))
            break;
        if (lstm_params_is_int8(m->p, m->dec_w)) { /* a quantized model's decoder */
            if ((s = lstm_params_linear_forward(ctx, m->p, m->dec_w, m->dec_b, zf, y, 1, err)))
                break;
            for (int v = 0; v < V; v++)
                logits[v] = (double)zf[v] / temperature;
            continue;
        }
        for (int v = 0; v < V; v++) { /* the next byte's logits / temperature */
            double z = bias[v];
            for (int k = 0; k < Ho; k++)
                z += (double)W[(size_t)v * Ho + k] * y[k];
            logits[v] = z / temperature;
        }
    }
    free(h), free(c), free(y), free(logits), free(zf), free(x), free(idx), free(feed);
    return s ? s : lstm_ok(err);
}

const task_ops task_lm = {
    .task = LSTM_TASK_LM,
    .name = "lm",
    .title = "a language model",
    .example = "byte",
    .metric = "bpc",
    .lower_is_better = 1,
    .sequential = 1,
    .defaults = defaults,
    .parse = parse,
    .count = count,
    .tokens = count,
    .split = split,
    .hash = hash,
    .features = features,
    .vocabs = vocabs,
    .train_setup = train_setup,
    .train_epoch = train_epoch,
    .train_batch = train_batch,
    .train_after = train_after,
    .train_save = train_save,
    .train_load = train_load,
    .valid_tokens = valid_tokens,
    .train_free = train_free,
    .evaluate = evaluate,
    .sample = sample,
};
