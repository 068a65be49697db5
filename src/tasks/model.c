/*
 * model.c - the network every task shares: the embeddings of a token's
 * features side by side, an nn.LSTM, mean pooling over the real steps
 * (tasks with one prediction per sequence), a linear decoder and the
 * cross-entropy loss; forward and backward of a batch; making a model and
 * its parameters. What differs between tasks (features, vocabularies,
 * data, batches, figures) is in task_*.c behind task_ops.
 *
 * Dropout (training only) on the embeddings, between LSTM layers and on
 * the LSTM's output.
 */
#include "task.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const task_specials[2] = {"<pad>", "<unk>"};

/* ------------------------------------------------------------------ */
/* Configuration. */

lstm_model_config lstm_model_defaults(lstm_task task) {
    lstm_model_config c = {0};
    lstm_train_config unused = {0};
    c.task = task;
    const task_ops *ops = task_find(task);
    if (ops)
        ops->defaults(&c, &unused);
    return c;
}

lstm_status model_check_config(const lstm_model_config *c, lstm_error *err) {
    const task_ops *ops = task_find(c->task);
    if (!ops)
        return lstm_fail(err, LSTM_ERR_INVALID, "unknown task %d", (int)c->task);
    if (c->embedding < 1 || c->embedding > 4096 || c->hidden < 1 || c->hidden > 8192 ||
        c->layers < 1 || c->layers > 16)
        return lstm_fail(err, LSTM_ERR_INVALID,
                         "embedding %d, hidden %d, layers %d: out of range (1..4096, 1..8192, 1..16)",
                         c->embedding, c->hidden, c->layers);
    if (!(c->dropout >= 0 && c->dropout < 1))
        return lstm_fail(err, LSTM_ERR_INVALID, "dropout %g is not in [0, 1)", (double)c->dropout);
    if (ops->sequential && c->bidirectional)
        return lstm_fail(err, LSTM_ERR_INVALID, "%s cannot be bidirectional: it would see the future",
                         ops->title);
    if (c->proj < 0 || c->proj >= c->hidden)
        return lstm_fail(err, LSTM_ERR_INVALID, "proj %d must be 0 or less than hidden %d",
                         c->proj, c->hidden);
    if (c->suffixes < 0 || c->suffixes > TAG_MAX_SUFFIXES || c->prefixes < 0 ||
        c->prefixes > TAG_MAX_PREFIXES)
        return lstm_fail(err, LSTM_ERR_INVALID,
                         "suffixes %d must be 1 to %d (0: 3), prefixes %d 0 to %d", c->suffixes,
                         TAG_MAX_SUFFIXES, c->prefixes, TAG_MAX_PREFIXES);
    if (c->vocab_size < 0 || c->min_count < 0 || c->max_length < 0)
        return lstm_fail(err, LSTM_ERR_INVALID, "vocab_size, min_count, max_length must be >= 0");
    if ((c->bidirectional | 1) != 1 || (c->byte_tokens | 1) != 1 || (c->char_features | 1) != 1 ||
        (c->peephole | 1) != 1 || (c->input_forget | 1) != 1 || (c->crf | 1) != 1)
        return lstm_fail(err, LSTM_ERR_INVALID, "flags must be 0 or 1");
    if (c->crf && (ops->pooled || !ops->label))
        return lstm_fail(err, LSTM_ERR_INVALID,
                         "crf: only a tagger scores sequences of tags, not %s", ops->title);
    if (!(c->cell_clip >= 0 && c->cell_clip <= 1e30f))
        return lstm_fail(err, LSTM_ERR_INVALID, "cell_clip %g is not 0 (off) or a positive threshold",
                         (double)c->cell_clip);
    return LSTM_OK;
}

lstm_status task_sum_stats(const lstm_comm *comm, batch_stats *st, double *extra, size_t n,
                           lstm_error *err) {
    double *v = malloc(sizeof(double) * (3 + n));
    if (!v)
        return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
    v[0] = st->loss_sum, v[1] = (double)st->count, v[2] = (double)st->correct;
    for (size_t i = 0; i < n; i++)
        v[3 + i] = extra[i];
    int bad = comm->allreduce_double(v, 3 + n, comm->arg);
    st->loss_sum = v[0], st->count = (long)v[1], st->correct = (long)v[2];
    for (size_t i = 0; i < n; i++)
        extra[i] = v[3 + i];
    free(v);
    return bad ? lstm_fail(err, LSTM_ERR_IO, "summing figures over the ranks failed") : LSTM_OK;
}

int task_argmax(const float *x, int n) {
    int best = 0;
    for (int c = 1; c < n; c++)
        if (x[c] > x[best])
            best = c;
    return best;
}

lstm_status task_prune_vocab(feature *f, const lstm_vocab *raw, int limit, long min_count,
                             lstm_error *err) {
    f->vocab = vocab_prune(raw, task_specials, 2, min_count > 0 ? min_count : 1,
                           limit > 0 ? limit + 2 : 0);
    return f->vocab ? LSTM_OK : lstm_fail(err, LSTM_ERR_NOMEM, "out of memory building vocabularies");
}

/* ------------------------------------------------------------------ */
/* Making a model. */

lstm_model *model_new(const lstm_model_config *cfg, lstm_error *err) {
    lstm_model *m = calloc(1, sizeof *m);
    if (!m) {
        lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
        return NULL;
    }
    m->ops = task_find(cfg->task);
    m->cfg = *cfg;
    m->ops->features(m);
    m->in_dim = 0;
    for (int i = 0; i < m->nfeat; i++)
        m->in_dim += m->feat[i].dim;
    return m;
}

lstm_status model_declare(lstm_model *m, lstm_error *err) {
    const lstm_model_config *c = &m->cfg;
    m->p = lstm_params_create();
    if (!m->p)
        return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < m->nfeat; i++) {
        feature *f = &m->feat[i];
        char name[64];
        snprintf(name, sizeof name, "embedding.%s.weight", f->name);
        int64_t shape[2] = {vocab_size(f->vocab), f->dim};
        if ((f->param = lstm_params_declare(m->p, name, 2, shape, err)) < 0)
            return err ? err->status : LSTM_ERR_INVALID;
        lstm_params_set_sparse(m->p, f->param, 1); /* a batch reads a few of its rows */
    }
    lstm_rnn_config rc = lstm_rnn_config_default(m->in_dim, c->hidden);
    rc.num_layers = c->layers;
    rc.bidirectional = c->bidirectional;
    rc.dropout = c->layers > 1 ? c->dropout : 0;
    rc.proj_size = c->proj;
    rc.peephole = c->peephole;
    rc.clip = c->cell_clip;
    rc.input_forget = c->input_forget;
    m->rnn = lstm_rnn_create(&rc, m->p, "lstm.", err);
    if (!m->rnn)
        return err ? err->status : LSTM_ERR_INVALID;
    m->out_dim = (c->bidirectional ? 2 : 1) * (c->proj ? c->proj : c->hidden);
    /* the outputs are the labels, or (lm) the input vocabulary itself */
    m->nout = m->ops->label ? m->nlabels : vocab_size(m->feat[0].vocab);
    int64_t ws[2] = {m->nout, m->out_dim}, bs[1] = {m->nout};
    if ((m->dec_w = lstm_params_declare(m->p, "decoder.weight", 2, ws, err)) < 0 ||
        (m->dec_b = lstm_params_declare(m->p, "decoder.bias", 1, bs, err)) < 0)
        return err ? err->status : LSTM_ERR_INVALID;
    m->crf_t = m->crf_s = m->crf_e = -1;
    int64_t ts[2] = {m->nout, m->nout};
    if (c->crf && ((m->crf_t = lstm_params_declare(m->p, "crf.transitions", 2, ts, err)) < 0 ||
                   (m->crf_s = lstm_params_declare(m->p, "crf.start_transitions", 1, bs, err)) < 0 ||
                   (m->crf_e = lstm_params_declare(m->p, "crf.end_transitions", 1, bs, err)) < 0))
        return err ? err->status : LSTM_ERR_INVALID;
    return LSTM_OK;
}

/* PyTorch's initialisation: embeddings N(0, 1), the LSTM and the linear
 * layer U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
static void init_params(lstm_model *m, lstm_rng *rng) {
    for (int i = 0; i < m->nfeat; i++) {
        float *w = lstm_params_data(m->p, m->feat[i].param);
        size_t n = lstm_params_numel(m->p, m->feat[i].param);
        for (size_t j = 0; j < n; j++)
            w[j] = lstm_rng_normal(rng);
        memset(w, 0, sizeof(float) * m->feat[i].dim); /* <pad> is the zero vector */
    }
    lstm_rnn_reset_parameters(m->rnn, m->p, rng);
    if (m->cfg.forget_bias != 0) /* the rows H..2H of each bias_ih are the forget gate's */
        for (int i = 0; i < lstm_params_count(m->p); i++)
            if (strncmp(lstm_params_name(m->p, i), "lstm.bias_ih_l", 14) == 0) {
                float *b = lstm_params_data(m->p, i);
                for (int u = 0; u < m->cfg.hidden; u++)
                    b[m->cfg.hidden + u] += m->cfg.forget_bias;
            }
    float bound = 1.0f / sqrtf((float)m->out_dim);
    float *w = lstm_params_data(m->p, m->dec_w), *b = lstm_params_data(m->p, m->dec_b);
    for (size_t j = 0; j < lstm_params_numel(m->p, m->dec_w); j++)
        w[j] = (2 * lstm_rng_uniform(rng) - 1) * bound;
    for (int j = 0; j < m->nout; j++)
        b[j] = (2 * lstm_rng_uniform(rng) - 1) * bound;
    int crf[3] = {m->crf_t, m->crf_s, m->crf_e}; /* pytorch-crf's U(-0.1, 0.1) */
    for (int i = 0; m->cfg.crf && i < 3; i++) {
        float *x = lstm_params_data(m->p, crf[i]);
        for (size_t j = 0; j < lstm_params_numel(m->p, crf[i]); j++)
            x[j] = (2 * lstm_rng_uniform(rng) - 1) * 0.1f;
    }
    lstm_params_touch(m->p);
}

lstm_model *model_create(const lstm_model_config *cfg, const lstm_dataset *train, lstm_rng *rng,
                         lstm_error *err) {
    if (model_check_config(cfg, err))
        return NULL;
    if (train->task != cfg->task) {
        lstm_fail(err, LSTM_ERR_INVALID, "%s: a %s data set, not %s", train->name,
                  lstm_task_name(train->task), lstm_task_name(cfg->task));
        return NULL;
    }
    lstm_model *m = model_new(cfg, err);
    if (!m)
        return NULL;
    if (m->ops->label) {
        m->nlabels = train->nlabels;
        m->labels = calloc((size_t)(m->nlabels ? m->nlabels : 1), sizeof(char *));
        for (int i = 0; m->labels && i < m->nlabels; i++)
            if (!(m->labels[i] = strdup(train->labels[i])))
                m->nlabels = i;
        if (!m->labels || m->nlabels != train->nlabels) {
            lstm_model_free(m);
            lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
            return NULL;
        }
        if (m->nlabels < 2) {
            lstm_fail(err, LSTM_ERR_INVALID, "%s: only one %s (%s): nothing to learn",
                      train->name, m->ops->label,
                      train->nlabels ? train->labels[0] : "none");
            lstm_model_free(m);
            return NULL;
        }
    }
    if (m->ops->vocabs(m, train, err) || model_declare(m, err) || lstm_params_alloc(m->p, err)) {
        lstm_model_free(m);
        return NULL;
    }
    init_params(m, rng);
    lstm_ok(err);
    return m;
}

void lstm_model_free(lstm_model *m) {
    if (!m)
        return;
    for (int i = 0; i < m->nfeat; i++)
        vocab_free(m->feat[i].vocab);
    for (int i = 0; i < m->nlabels; i++)
        free(m->labels[i]);
    free(m->labels);
    lstm_rnn_free(m->rnn);
    lstm_params_free(m->p);
    free(m->buf);
    free(m->crf_work);
    free(m);
}

lstm_task lstm_model_task(const lstm_model *m) { return m->cfg.task; }
const lstm_model_config *lstm_model_get_config(const lstm_model *m) { return &m->cfg; }
int lstm_model_labels(const lstm_model *m) { return m->nlabels; }
const char *lstm_model_label(const lstm_model *m, int i) {
    return i >= 0 && i < m->nlabels ? m->labels[i] : NULL;
}

int lstm_model_features(const lstm_model *m) { return m->nfeat; }

const char *lstm_model_feature(const lstm_model *m, int i, int *dim) {
    if (i < 0 || i >= m->nfeat)
        return NULL;
    if (dim)
        *dim = m->feat[i].dim;
    return m->feat[i].name;
}

size_t lstm_model_size(const lstm_model *m) {
    size_t n = 0;
    for (int i = 0; i < lstm_params_count(m->p); i++)
        n += lstm_params_numel(m->p, i);
    return n;
}

/* ------------------------------------------------------------------ */
/* Forward and backward of a batch. */

/* Makes room for N positions of B sequences. */
static lstm_status reserve(lstm_model *m, size_t N, int B, lstm_error *err) {
    size_t in = N * m->in_dim, out = N * m->out_dim, pooled = (size_t)B * m->out_dim;
    size_t rows = N > (size_t)B ? N : (size_t)B, lg = rows * m->nout;
    size_t sizes[10] = {in, in, out, out, pooled, lg, lg, pooled, out, in};
    size_t total = 0;
    for (int i = 0; i < 10; i++)
        total += (sizes[i] + 15) / 16 * 16;
    if (total > m->cap) {
        size_t bytes = task_mul_size(total, sizeof(float)); /* a multiple of 64 */
        float *b = bytes != (size_t)-1 ? aligned_alloc(64, bytes ? bytes : 64) : NULL;
        if (!b)
            return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory for a batch of %zu tokens", N);
        free(m->buf);
        m->buf = b;
        m->cap = total;
    }
    float **ptrs[10] = {&m->X,      &m->Xmask,   &m->Y,       &m->Ymask, &m->pooled,
                        &m->logits, &m->dlogits, &m->dpooled, &m->dY,    &m->dX};
    float *at = m->buf;
    for (int i = 0; i < 10; i++) {
        *ptrs[i] = at;
        at += (sizes[i] + 15) / 16 * 16;
    }
    return LSTM_OK;
}

/* The input of the LSTM: each position's feature embeddings side by side. */
static void embed(lstm_model *m, const model_batch *b, size_t N) {
    int off = 0;
    for (int fi = 0; fi < m->nfeat; fi++) {
        const feature *f = &m->feat[fi];
        const float *table = lstm_params_data(m->p, f->param);
        for (size_t i = 0; i < N; i++)
            memcpy(m->X + i * m->in_dim + off, table + (size_t)b->ids[fi][i] * f->dim,
                   sizeof(float) * f->dim);
        off += f->dim;
    }
}

static void embed_backward(lstm_model *m, const model_batch *b, size_t N) {
    int off = 0;
    for (int fi = 0; fi < m->nfeat; fi++) {
        const feature *f = &m->feat[fi];
        float *g = lstm_params_grad(m->p, f->param);
        for (size_t i = 0; i < N; i++) {
            int32_t id = b->ids[fi][i];
            if (id == PAD_ID)
                continue;
            float *row = g + (size_t)id * f->dim;
            const float *d = m->dX + i * m->in_dim + off;
            for (int e = 0; e < f->dim; e++)
                row[e] += d[e];
        }
        off += f->dim;
    }
}

static void mul_inplace(float *x, const float *mask, size_t n) {
    for (size_t i = 0; i < n; i++)
        x[i] *= mask[i];
}

/* The tensors lie in the buffer in the order declared (embeddings, the
 * LSTM's layers, the decoder); the backward finishes them in the opposite
 * order. */
int model_grad_stages(const lstm_model *m, size_t *from, size_t *to) {
    lstm_params *p = m->p;
    const float *base = lstm_params_grad_all(p);
    int L = m->cfg.layers, n = 0;
    size_t end = lstm_params_size(p);
    for (int l = L; l >= -1; l--) { /* L: the decoder; -1: the embeddings */
        size_t at = 0;
        if (l == L)
            at = (size_t)(lstm_params_grad(p, m->dec_w) - base);
        else if (l >= 0) {
            char name[64];
            snprintf(name, sizeof name, "lstm.weight_ih_l%d", l);
            at = (size_t)(lstm_params_grad(p, lstm_params_find(p, name)) - base);
        }
        from[n] = at;
        to[n] = end;
        end = at;
        n++;
    }
    return n;
}

typedef struct {
    const model_hooks *hk;
    int L;
} layer_hook;

static void on_layer_done(void *arg, int layer) {
    const layer_hook *h = arg;
    h->hk->ready(h->hk->arg, h->L - layer); /* stage 1 is the top layer */
}

static void on_progress(void *arg) {
    const layer_hook *h = arg;
    h->hk->progress(h->hk->arg);
}

/* The CRF over the decoder's scores in m->logits (per position): the loss
 * summed over the sentences in *loss, the logits replaced by the log
 * marginals; with grad, dlogits and the CRF's gradients from the mean
 * over denom targets. */
static lstm_status crf_run(lstm_model *m, lstm_ctx *ctx, const model_batch *b, int grad,
                           long denom, double *loss, lstm_error *err) {
    int T = b->T, B = b->B, K = m->nout;
    size_t need = lstm_crf_work_size(T, B, K) + sizeof(int) * (size_t)B; /* + lengths */
    if (need > m->crf_cap) {
        void *w = malloc(need);
        if (!w)
            return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory for the CRF of a batch of %d x %d",
                             T, B);
        free(m->crf_work);
        m->crf_work = w;
        m->crf_cap = need;
    }
    lstm_params *p = m->p;
    int *lengths = b->lengths; /* none: every sequence has all T steps */
    if (!lengths) {
        lengths = (int *)(void *)((char *)m->crf_work + lstm_crf_work_size(T, B, K));
        for (int j = 0; j < B; j++)
            lengths[j] = T;
    }
    lstm_crf_args a = {.T = T, .B = B, .K = K, .emissions = m->logits, .lengths = lengths,
                       .tags = b->targets, .transitions = lstm_params_data(p, m->crf_t),
                       .start_transitions = lstm_params_data(p, m->crf_s),
                       .end_transitions = lstm_params_data(p, m->crf_e), .marginals = m->logits,
                       .scale = denom > 0 ? 1.0f / (float)denom : 0};
    if (grad) {
        memset(m->dlogits, 0, sizeof(float) * (size_t)T * B * K);
        a.d_emissions = m->dlogits;
        a.d_transitions = lstm_params_grad(p, m->crf_t);
        a.d_start_transitions = lstm_params_grad(p, m->crf_s);
        a.d_end_transitions = lstm_params_grad(p, m->crf_e);
    }
    *loss = lstm_crf(ctx, &a, m->crf_work, NULL);
    return LSTM_OK;
}

lstm_status model_batch_run(lstm_model *m, lstm_ctx *ctx, const model_batch *b, int training,
                            lstm_rng *rng, const model_hooks *hooks, batch_stats *st,
                            lstm_error *err) {
    int T = b->T, B = b->B;
    size_t N = (size_t)T * B;
    int pooled = m->ops->pooled;
    lstm_status s;
    if ((s = reserve(m, N, B, err)))
        return s;
    float p = training ? m->cfg.dropout : 0;

    embed(m, b, N);
    if (p > 0)
        lstm_dropout_forward(m->X, m->Xmask, m->X, N * m->in_dim, p, rng);
    lstm_rnn_io io = {T, B, m->X, b->lengths, b->h0, b->c0, m->Y, b->hn, b->cn};
    if ((s = lstm_rnn_forward(m->rnn, ctx, m->p, &io, training, rng, err)))
        return s;
    if (p > 0)
        lstm_dropout_forward(m->Y, m->Ymask, m->Y, N * m->out_dim, p, rng);

    const float *dw = lstm_params_data(m->p, m->dec_w);
    int rows = pooled ? B : (int)N;
    const float *feats = m->Y;
    if (pooled) {
        lstm_mean_pool_forward(m->pooled, m->Y, b->lengths, T, B, m->out_dim);
        feats = m->pooled;
    }
    /* the decoder: in int8 when the model is quantized */
    if ((s = lstm_params_linear_forward(ctx, m->p, m->dec_w, m->dec_b, m->logits, feats, rows,
                                        err)))
        return s;
    int count = 0;
    for (int r = 0; r < rows; r++)
        count += b->targets[r] >= 0;
    long denom = b->loss_count > 0 ? b->loss_count : count;
    double loss = 0;
    if (m->cfg.crf) { /* the logits become log P(tag | sentence) */
        if ((s = crf_run(m, ctx, b, training && count > 0, denom, &loss, err)))
            return s;
    } else
        loss = lstm_cross_entropy_forward(ctx, m->logits, m->logits, b->targets, rows, m->nout,
                                          -100, &count);
    long correct = 0;
    for (int r = 0; r < rows; r++) {
        if (b->targets[r] < 0)
            continue;
        correct += task_argmax(m->logits + (size_t)r * m->nout, m->nout) == b->targets[r];
    }
    st->loss_sum = loss;
    st->count = count;
    st->correct = correct;
    if (!training || count == 0)
        return LSTM_OK;

    /* backward of the mean loss (the CRF's gradient is in dlogits already) */
    if (!m->cfg.crf) {
        memset(m->dlogits, 0, sizeof(float) * (size_t)rows * m->nout);
        lstm_cross_entropy_backward(ctx, m->dlogits, m->logits, b->targets, rows, m->nout, -100,
                                    1.0f / (float)denom);
    }
    float *din = pooled ? m->dpooled : m->dY;
    memset(din, 0, sizeof(float) * (size_t)rows * m->out_dim);
    lstm_linear_backward(ctx, din, lstm_params_grad(m->p, m->dec_w),
                         lstm_params_grad(m->p, m->dec_b), m->dlogits, feats, dw, rows, m->out_dim,
                         m->nout);
    if (hooks)
        hooks->ready(hooks->arg, 0);
    if (pooled) {
        memset(m->dY, 0, sizeof(float) * N * m->out_dim);
        lstm_mean_pool_backward(m->dY, m->dpooled, b->lengths, T, B, m->out_dim);
    }
    if (p > 0)
        mul_inplace(m->dY, m->Ymask, N * m->out_dim);
    layer_hook lh = {hooks, m->cfg.layers};
    lstm_rnn_grads g = {.dy = m->dY, .dx = m->dX};
    if (hooks) {
        g.layer_done = on_layer_done;
        g.progress = hooks->progress ? on_progress : NULL;
        g.hook_arg = &lh;
    }
    if ((s = lstm_rnn_backward(m->rnn, ctx, m->p, &g, err)))
        return s;
    if (p > 0)
        mul_inplace(m->dX, m->Xmask, N * m->in_dim);
    embed_backward(m, b, N);
    if (hooks)
        hooks->ready(hooks->arg, m->cfg.layers + 1);
    return LSTM_OK;
}
