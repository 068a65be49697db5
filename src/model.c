/*
 * model.c - the task models: embeddings of one or more features of each
 * token, an nn.LSTM, mean pooling (classify), a linear decoder and the
 * cross-entropy loss; their files; evaluation, prediction and sampling.
 *
 *   lm:       byte -> embedding -> LSTM -> linear -> next byte
 *   classify: tokens -> embedding -> LSTM -> mean over the real steps ->
 *             linear -> label
 *   tag:      [word | suffixes | shape] embeddings -> BiLSTM -> linear -> tag
 * Dropout (training only) on the embeddings, between LSTM layers and on
 * the LSTM's output.
 */
#include "model.h"
#include "nn.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Defaults. */

lstm_model_config lstm_model_defaults(lstm_task task) {
    lstm_model_config c = {0};
    c.task = task;
    switch (task) {
    case LSTM_TASK_LM: /* tuned on Brown text for ten minutes on two cores: README */
        c.embedding = 64;
        c.hidden = 512;
        c.layers = 2;
        c.dropout = 0;
        break;
    case LSTM_TASK_CLASSIFY:
        c.embedding = 64;
        c.hidden = 128;
        c.layers = 1;
        c.bidirectional = 1;
        c.dropout = 0.3f;
        c.vocab_size = 30000;
        c.min_count = 2;
        c.max_length = 400;
        break;
    case LSTM_TASK_TAG:
        c.embedding = 100;
        c.hidden = 128;
        c.layers = 1;
        c.bidirectional = 1;
        c.dropout = 0.3f;
        c.min_count = 1;
        c.char_features = 1;
        break;
    }
    return c;
}

static lstm_status check_config(const lstm_model_config *c, lstm_error *err) {
    if ((unsigned)c->task > LSTM_TASK_TAG)
        return lstm_fail(err, LSTM_ERR_INVALID, "unknown task %d", (int)c->task);
    if (c->embedding < 1 || c->embedding > 4096 || c->hidden < 1 || c->hidden > 8192 ||
        c->layers < 1 || c->layers > 16)
        return lstm_fail(err, LSTM_ERR_INVALID,
                         "embedding %d, hidden %d, layers %d: out of range (1..4096, 1..8192, 1..16)",
                         c->embedding, c->hidden, c->layers);
    if (!(c->dropout >= 0 && c->dropout < 1))
        return lstm_fail(err, LSTM_ERR_INVALID, "dropout %g is not in [0, 1)", (double)c->dropout);
    if (c->task == LSTM_TASK_LM && c->bidirectional)
        return lstm_fail(err, LSTM_ERR_INVALID,
                         "a language model cannot be bidirectional: it would see the future");
    if (c->proj < 0 || c->proj >= c->hidden)
        return lstm_fail(err, LSTM_ERR_INVALID, "proj %d must be 0 or less than hidden %d",
                         c->proj, c->hidden);
    if (c->vocab_size < 0 || c->min_count < 0 || c->max_length < 0)
        return lstm_fail(err, LSTM_ERR_INVALID, "vocab_size, min_count, max_length must be >= 0");
    if ((c->bidirectional | 1) != 1 || (c->byte_tokens | 1) != 1 || (c->char_features | 1) != 1)
        return lstm_fail(err, LSTM_ERR_INVALID, "flags must be 0 or 1");
    return LSTM_OK;
}

/* ------------------------------------------------------------------ */
/* Tokens and features. */

static int is_word_byte(unsigned char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch >= 0x80;
}

static int is_space(unsigned char ch) {
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

static unsigned char lower(unsigned char ch) { return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch; }

/* Calls fn for each token of a text: with words, maximal runs of letters,
 * digits and non-ASCII bytes (lowercased), and every other byte that is
 * not white space on its own; with bytes, every byte. Stops after max
 * tokens (0: no limit). Returns the number of tokens. */
typedef int (*token_fn)(const char *tok, size_t len, void *arg);

static size_t tokenize(const char *text, size_t len, int bytes, int max, token_fn fn, void *arg) {
    char buf[64];
    size_t n = 0;
    for (size_t i = 0; i < len && (max == 0 || n < (size_t)max);) {
        unsigned char ch = (unsigned char)text[i];
        if (bytes) {
            buf[0] = (char)ch;
            if (fn(buf, 1, arg))
                return n;
            n++, i++;
        } else if (is_space(ch)) {
            i++;
        } else if (is_word_byte(ch)) {
            size_t j = i, k = 0;
            while (j < len && is_word_byte((unsigned char)text[j])) {
                if (k < sizeof buf) /* long runs are cut to 64 bytes */
                    buf[k++] = (char)lower((unsigned char)text[j]);
                j++;
            }
            if (fn(buf, k, arg))
                return n;
            n++, i = j;
        } else {
            buf[0] = (char)ch;
            if (fn(buf, 1, arg))
                return n;
            n++, i++;
        }
    }
    return n;
}

/* A word's shape: its class (number, capitalised, all capitals, lower,
 * punctuation, other) and flags for digits and hyphens. */
static size_t word_shape(const char *w, char *out) {
    size_t len = strlen(w), up = 0, low = 0, dig = 0, alpha_hi = 0, hyphen = 0, other = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)w[i];
        if (ch >= 'A' && ch <= 'Z')
            up++;
        else if (ch >= 'a' && ch <= 'z')
            low++;
        else if (ch >= '0' && ch <= '9')
            dig++;
        else if (ch >= 0x80)
            alpha_hi++;
        else if (ch == '-')
            hyphen++;
        else
            other++;
    }
    size_t n = 0;
    if (dig && !up && !low && !alpha_hi)
        out[n++] = '0';
    else if (up && !low && len > 1)
        out[n++] = 'A', out[n++] = 'A';
    else if (w[0] >= 'A' && w[0] <= 'Z')
        out[n++] = 'A', out[n++] = 'a';
    else if (low || alpha_hi)
        out[n++] = 'a';
    else
        out[n++] = '.';
    if (dig && (up || low || alpha_hi))
        out[n++] = '0';
    if (hyphen)
        out[n++] = '-';
    if (other && (up || low || dig))
        out[n++] = '.';
    out[n] = 0;
    return n;
}

/* The key of a word for a tag feature, in buf; its length. */
static size_t feature_key(const feature *f, const char *word, char *buf, size_t cap) {
    size_t len = strlen(word);
    switch (f->kind) {
    case FEAT_WORD: {
        size_t n = len < cap ? len : cap;
        for (size_t i = 0; i < n; i++)
            buf[i] = (char)lower((unsigned char)word[i]);
        return n;
    }
    case FEAT_SUFFIX: {
        size_t k = (size_t)f->k < len ? (size_t)f->k : len;
        for (size_t i = 0; i < k; i++)
            buf[i] = (char)lower((unsigned char)word[len - k + i]);
        return k;
    }
    case FEAT_SHAPE:
        return word_shape(word, buf);
    default:
        return 0;
    }
}

/* The features of each task (dims of the tag features beside the word's). */
static void setup_features(lstm_model *m) {
    const lstm_model_config *c = &m->cfg;
    m->nfeat = 0;
#define ADD(nm, kd, kk, d)                                                                        \
    do {                                                                                          \
        feature *f = &m->feat[m->nfeat++];                                                        \
        snprintf(f->name, sizeof f->name, "%s", nm);                                              \
        f->kind = kd, f->k = kk, f->dim = d, f->param = -1;                                      \
    } while (0)
    switch (c->task) {
    case LSTM_TASK_LM:
        ADD("byte", FEAT_BYTE, 0, c->embedding);
        break;
    case LSTM_TASK_CLASSIFY:
        ADD("token", FEAT_TOKEN, 0, c->embedding);
        break;
    case LSTM_TASK_TAG:
        ADD("word", FEAT_WORD, 0, c->embedding);
        if (c->char_features) {
            ADD("suffix1", FEAT_SUFFIX, 1, 8);
            ADD("suffix2", FEAT_SUFFIX, 2, 16);
            ADD("suffix3", FEAT_SUFFIX, 3, 32);
            ADD("shape", FEAT_SHAPE, 0, 8);
        }
        break;
    }
#undef ADD
    m->in_dim = 0;
    for (int i = 0; i < m->nfeat; i++)
        m->in_dim += m->feat[i].dim;
}

static const char *const specials[2] = {"<pad>", "<unk>"};

typedef struct {
    lstm_vocab *v;
    int failed;
} count_arg;

static int count_token(const char *tok, size_t len, void *arg) {
    count_arg *a = arg;
    if (vocab_add(a->v, tok, len) < 0)
        a->failed = 1;
    return a->failed;
}

/* Builds each feature's vocabulary from the training data. */
static lstm_status build_vocabs(lstm_model *m, const lstm_dataset *ds, lstm_error *err) {
    const lstm_model_config *c = &m->cfg;
    for (int fi = 0; fi < m->nfeat; fi++) {
        feature *f = &m->feat[fi];
        if (f->kind == FEAT_BYTE) { /* the bytes that occur, in byte order */
            int seen[256] = {0};
            for (size_t i = 0; i < ds->nbytes; i++)
                seen[ds->bytes[i]] = 1;
            f->vocab = vocab_create();
            int ok = f->vocab && vocab_add(f->vocab, specials[0], strlen(specials[0])) >= 0 &&
                     vocab_add(f->vocab, specials[1], strlen(specials[1])) >= 0;
            for (int b = 0; ok && b < 256; b++) {
                char ch = (char)b;
                if (seen[b])
                    ok = vocab_add(f->vocab, &ch, 1) >= 0;
            }
            if (!ok)
                return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory building vocabularies");
            continue;
        }
        lstm_vocab *raw = vocab_create();
        count_arg ca = {raw, !raw};
        if (f->kind == FEAT_TOKEN) {
            for (size_t d = 0; d < ds->ndocs && !ca.failed; d++)
                tokenize(ds->doc_text[d], ds->doc_len[d], c->byte_tokens, c->max_length,
                         count_token, &ca);
        } else {
            char key[128];
            for (size_t w = 0; w < ds->nwords && !ca.failed; w++) {
                size_t n = feature_key(f, ds->words[w], key, sizeof key);
                ca.failed = vocab_add(raw, key, n) < 0;
            }
        }
        if (ca.failed) {
            vocab_free(raw);
            return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory building vocabularies");
        }
        int limit = f->kind == FEAT_WORD || f->kind == FEAT_TOKEN ? c->vocab_size : 0;
        long min_count = f->kind == FEAT_WORD || f->kind == FEAT_TOKEN ? c->min_count : 1;
        f->vocab = vocab_prune(raw, specials, 2, min_count > 0 ? min_count : 1,
                               limit > 0 ? limit + 2 : 0);
        vocab_free(raw);
        if (!f->vocab)
            return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory building vocabularies");
    }
    return LSTM_OK;
}

/* ------------------------------------------------------------------ */
/* Parameters. */

static lstm_status declare_params(lstm_model *m, lstm_error *err) {
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
    }
    lstm_rnn_config rc = lstm_rnn_config_default(m->in_dim, c->hidden);
    rc.num_layers = c->layers;
    rc.bidirectional = c->bidirectional;
    rc.dropout = c->layers > 1 ? c->dropout : 0;
    rc.proj_size = c->proj;
    m->rnn = lstm_rnn_create(&rc, m->p, "lstm.", err);
    if (!m->rnn)
        return err ? err->status : LSTM_ERR_INVALID;
    m->out_dim = (c->bidirectional ? 2 : 1) * (c->proj ? c->proj : c->hidden);
    m->nout = c->task == LSTM_TASK_LM ? vocab_size(m->feat[0].vocab) : m->nlabels;
    int64_t ws[2] = {m->nout, m->out_dim}, bs[1] = {m->nout};
    if ((m->dec_w = lstm_params_declare(m->p, "decoder.weight", 2, ws, err)) < 0 ||
        (m->dec_b = lstm_params_declare(m->p, "decoder.bias", 1, bs, err)) < 0)
        return err ? err->status : LSTM_ERR_INVALID;
    return LSTM_OK;
}

/* Before allocating what a file's metadata describes: every tensor is in
 * the file with its shape, so a few bytes cannot ask for gigabytes. */
static lstm_status check_tensors(const lstm_model *m, const lstm_st *st, lstm_error *err) {
    for (int i = 0; i < lstm_params_count(m->p); i++) {
        const char *name = lstm_params_name(m->p, i);
        const lstm_st_tensor *t = lstm_st_find(st, name);
        int ndim = lstm_params_ndim(m->p, i);
        if (!t || t->ndim != ndim ||
            memcmp(t->shape, lstm_params_shape(m->p, i), sizeof(int64_t) * ndim) != 0)
            return lstm_fail(err, LSTM_ERR_SHAPE,
                             "%s: tensor '%s' %s: it does not fit the configuration in the "
                             "metadata",
                             lstm_st_name(st), name, t ? "has the wrong shape" : "is missing");
    }
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
    lstm_params_touch(m->p);
}

lstm_model *model_create(const lstm_model_config *cfg, const lstm_dataset *train, lstm_rng *rng,
                         lstm_error *err) {
    if (check_config(cfg, err))
        return NULL;
    if (train->task != cfg->task) {
        lstm_fail(err, LSTM_ERR_INVALID, "%s: a %s data set, not %s", train->name,
                  lstm_task_name(train->task), lstm_task_name(cfg->task));
        return NULL;
    }
    lstm_model *m = calloc(1, sizeof *m);
    if (!m) {
        lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
        return NULL;
    }
    m->cfg = *cfg;
    if (cfg->task != LSTM_TASK_LM) {
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
            lstm_model_free(m);
            lstm_fail(err, LSTM_ERR_INVALID, "%s: only one %s (%s): nothing to learn",
                      train->name, cfg->task == LSTM_TASK_TAG ? "tag" : "label",
                      train->nlabels ? train->labels[0] : "none");
            return NULL;
        }
    }
    setup_features(m);
    if (build_vocabs(m, train, err) || declare_params(m, err) || lstm_params_alloc(m->p, err)) {
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
    free(m);
}

lstm_task lstm_model_task(const lstm_model *m) { return m->cfg.task; }
const lstm_model_config *lstm_model_get_config(const lstm_model *m) { return &m->cfg; }
int lstm_model_labels(const lstm_model *m) { return m->cfg.task == LSTM_TASK_LM ? 0 : m->nlabels; }
const char *lstm_model_label(const lstm_model *m, int i) {
    return i >= 0 && i < m->nlabels ? m->labels[i] : NULL;
}

size_t lstm_model_size(const lstm_model *m) {
    size_t n = 0;
    for (int i = 0; i < lstm_params_count(m->p); i++)
        n += lstm_params_numel(m->p, i);
    return n;
}

/* ------------------------------------------------------------------ */
/* Files: the tensors, and the configuration, vocabularies and labels as
 * JSON strings in the metadata. */

static lstm_status meta_json(lstm_st_writer *w, const char *key, json_t *j, lstm_error *err) {
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    if (!s)
        return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
    lstm_status st = lstm_st_writer_meta(w, key, s, err);
    free(s);
    return st;
}

lstm_status model_write(const lstm_model *m, lstm_st_writer *w, lstm_error *err) {
    const lstm_model_config *c = &m->cfg;
    lstm_status s;
    if ((s = lstm_params_write(m->p, w, "", err)) ||
        (s = lstm_st_writer_meta(w, "format", "pt", err)) ||
        (s = lstm_st_writer_meta(w, "lstm.version", LSTM_VERSION, err)) ||
        (s = lstm_st_writer_meta(w, "lstm.task", lstm_task_name(c->task), err)))
        return s;
    json_t *cfg = json_pack("{s:i, s:i, s:i, s:i, s:b, s:f, s:i, s:i, s:b, s:i, s:b}",
                            "embedding", c->embedding, "hidden", c->hidden, "proj", c->proj,
                            "layers", c->layers,
                            "bidirectional", c->bidirectional, "dropout", (double)c->dropout,
                            "vocab_size", c->vocab_size, "min_count", c->min_count, "byte_tokens",
                            c->byte_tokens, "max_length", c->max_length, "char_features",
                            c->char_features);
    if ((s = meta_json(w, "lstm.config", cfg, err)))
        return s;
    for (int i = 0; i < m->nfeat; i++) {
        char key[64], *js = vocab_to_json(m->feat[i].vocab);
        snprintf(key, sizeof key, "lstm.vocab.%s", m->feat[i].name);
        s = js ? lstm_st_writer_meta(w, key, js, err)
               : lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
        free(js);
        if (s)
            return s;
    }
    if (c->task != LSTM_TASK_LM) {
        lstm_vocab *lv = vocab_create();
        for (int i = 0; lv && i < m->nlabels; i++)
            vocab_add(lv, m->labels[i], strlen(m->labels[i]));
        char *js = lv ? vocab_to_json(lv) : NULL;
        vocab_free(lv);
        s = js ? lstm_st_writer_meta(w, "lstm.labels", js, err)
               : lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
        free(js);
        if (s)
            return s;
    }
    return LSTM_OK;
}

lstm_status lstm_model_save(const lstm_model *m, const char *path, lstm_error *err) {
    lstm_st_writer *w = lstm_st_writer_create();
    if (!w)
        return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
    lstm_status s = model_write(m, w, err);
    if (!s)
        s = lstm_st_writer_save(w, path, err);
    lstm_st_writer_free(w);
    return s;
}

/* An integer field of the configuration, checked to lie in [lo, hi]. */
static int cfg_int(json_t *o, const char *key, int lo, int hi, int *out, const char *file,
                   lstm_error *err) {
    json_t *v = json_object_get(o, key);
    if (json_is_boolean(v) && lo == 0 && hi == 1) {
        *out = json_is_true(v);
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        lstm_fail(err, LSTM_ERR_FORMAT, "%s: lstm.config: '%s' missing or not an integer in [%d, %d]",
                  file, key, lo, hi);
        return -1;
    }
    *out = (int)json_integer_value(v);
    return 0;
}

lstm_model *model_from_st(const lstm_st *st, int strict, lstm_error *err) {
    const char *file = lstm_st_name(st);
    const char *task = lstm_st_meta(st, "lstm.task"), *cfgs = lstm_st_meta(st, "lstm.config");
    if (!task || !cfgs) {
        lstm_fail(err, LSTM_ERR_FORMAT,
                  "%s: not an lstm model file (no lstm.task / lstm.config in its metadata)", file);
        return NULL;
    }
    int t = lstm_task_parse(task);
    if (t < 0) {
        lstm_fail(err, LSTM_ERR_FORMAT, "%s: unknown task '%s'", file, task);
        return NULL;
    }
    json_error_t je;
    json_t *o = json_loads(cfgs, JSON_REJECT_DUPLICATES, &je);
    lstm_model_config c = {0};
    c.task = (lstm_task)t;
    int ok = json_is_object(o);
    if (!ok)
        lstm_fail(err, LSTM_ERR_FORMAT, "%s: lstm.config is not a JSON object", file);
    ok = ok && !cfg_int(o, "embedding", 1, 4096, &c.embedding, file, err) &&
         !cfg_int(o, "hidden", 1, 8192, &c.hidden, file, err) &&
         !cfg_int(o, "layers", 1, 16, &c.layers, file, err) &&
         !cfg_int(o, "bidirectional", 0, 1, &c.bidirectional, file, err) &&
         !cfg_int(o, "vocab_size", 0, 1 << 30, &c.vocab_size, file, err) &&
         !cfg_int(o, "min_count", 0, 1 << 30, &c.min_count, file, err) &&
         !cfg_int(o, "byte_tokens", 0, 1, &c.byte_tokens, file, err) &&
         !cfg_int(o, "max_length", 0, 1 << 30, &c.max_length, file, err) &&
         !cfg_int(o, "char_features", 0, 1, &c.char_features, file, err);
    if (ok && json_object_get(o, "proj")) /* files before proj existed lack it */
        ok = !cfg_int(o, "proj", 0, 8191, &c.proj, file, err);
    if (ok) {
        json_t *d = json_object_get(o, "dropout");
        ok = json_is_number(d);
        c.dropout = ok ? (float)json_number_value(d) : 0;
        if (!ok)
            lstm_fail(err, LSTM_ERR_FORMAT, "%s: lstm.config: 'dropout' is not a number", file);
    }
    json_decref(o);
    if (!ok || check_config(&c, err)) {
        if (err && err->status == LSTM_ERR_INVALID) /* the file's values, not the caller's */
            err->status = LSTM_ERR_FORMAT;
        return NULL;
    }
    lstm_model *m = calloc(1, sizeof *m);
    if (!m) {
        lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
        return NULL;
    }
    m->cfg = c;
    setup_features(m);
    for (int i = 0; i < m->nfeat; i++) {
        char key[64];
        snprintf(key, sizeof key, "lstm.vocab.%s", m->feat[i].name);
        const char *js = lstm_st_meta(st, key);
        char what[300];
        snprintf(what, sizeof what, "%s: %s", file, key);
        if (!js) {
            lstm_fail(err, LSTM_ERR_FORMAT, "%s: no %s in the metadata", file, key);
            lstm_model_free(m);
            return NULL;
        }
        if (!(m->feat[i].vocab = vocab_from_json(js, what, err))) {
            lstm_model_free(m);
            return NULL;
        }
        if (vocab_size(m->feat[i].vocab) < 2) {
            lstm_fail(err, LSTM_ERR_FORMAT, "%s: %s has fewer than the two special entries", file,
                      key);
            lstm_model_free(m);
            return NULL;
        }
    }
    if (c.task != LSTM_TASK_LM) {
        const char *js = lstm_st_meta(st, "lstm.labels");
        char what[300];
        snprintf(what, sizeof what, "%s: lstm.labels", file);
        lstm_vocab *lv = js ? vocab_from_json(js, what, err) : NULL;
        if (!js)
            lstm_fail(err, LSTM_ERR_FORMAT, "%s: no lstm.labels in the metadata", file);
        if (lv && vocab_size(lv) < 2) {
            lstm_fail(err, LSTM_ERR_FORMAT, "%s: lstm.labels has fewer than two labels", file);
            vocab_free(lv);
            lv = NULL;
        }
        if (!lv) {
            lstm_model_free(m);
            return NULL;
        }
        m->nlabels = vocab_size(lv);
        m->labels = calloc((size_t)m->nlabels, sizeof(char *));
        for (int i = 0; m->labels && i < m->nlabels; i++) {
            size_t len;
            const char *s = vocab_string(lv, i, &len);
            if ((m->labels[i] = malloc(len + 1))) {
                memcpy(m->labels[i], s, len);
                m->labels[i][len] = 0;
            }
        }
        vocab_free(lv);
    }
    if (declare_params(m, err) || check_tensors(m, st, err) || lstm_params_alloc(m->p, err) ||
        lstm_params_read(m->p, st, "", strict, err)) {
        lstm_model_free(m);
        return NULL;
    }
    lstm_ok(err);
    return m;
}

lstm_model *lstm_model_from_memory(const void *buf, size_t len, const char *name,
                                   lstm_error *err) {
    lstm_st *st = lstm_st_from_memory(buf, len, name, err);
    if (!st)
        return NULL;
    lstm_model *m = model_from_st(st, 1, err);
    lstm_st_free(st);
    return m;
}

lstm_model *lstm_model_load(const char *path, lstm_error *err) {
    lstm_st *st = lstm_st_open(path, err);
    if (!st)
        return NULL;
    lstm_model *m = model_from_st(st, 1, err);
    lstm_st_free(st);
    return m;
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
        float *b = lstm_alloc_aligned(lstm_mul_size(total, sizeof(float)));
        if (!b)
            return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory for a batch of %zu tokens", N);
        lstm_free_aligned(m->buf);
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

lstm_status model_batch_run(lstm_model *m, lstm_ctx *ctx, const model_batch *b, int training,
                            lstm_rng *rng, batch_stats *st, lstm_error *err) {
    int T = b->T, B = b->B;
    size_t N = (size_t)T * B;
    int classify = m->cfg.task == LSTM_TASK_CLASSIFY;
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

    const float *dw = lstm_params_data(m->p, m->dec_w), *db = lstm_params_data(m->p, m->dec_b);
    int rows = classify ? B : (int)N;
    const float *feats = m->Y;
    if (classify) {
        lstm_mean_pool_forward(m->pooled, m->Y, b->lengths, T, B, m->out_dim);
        feats = m->pooled;
    }
    lstm_linear_forward(ctx, m->logits, feats, dw, db, rows, m->out_dim, m->nout);
    int count;
    double loss = nn_cross_entropy_forward(lstm_ctx_nn(ctx), m->logits, m->logits, b->targets,
                                           rows, m->nout, -100, &count);
    long correct = 0;
    for (int r = 0; r < rows; r++) {
        if (b->targets[r] < 0)
            continue;
        const float *lp = m->logits + (size_t)r * m->nout;
        int best = 0;
        for (int c = 1; c < m->nout; c++)
            if (lp[c] > lp[best])
                best = c;
        correct += best == b->targets[r];
    }
    st->loss_sum = loss;
    st->count = count;
    st->correct = correct;
    if (!training || count == 0)
        return LSTM_OK;

    /* backward of the mean loss */
    memset(m->dlogits, 0, sizeof(float) * (size_t)rows * m->nout);
    nn_cross_entropy_backward(lstm_ctx_nn(ctx), m->dlogits, m->logits, b->targets, rows, m->nout,
                              -100, 1.0f / (float)count);
    float *din = classify ? m->dpooled : m->dY;
    memset(din, 0, sizeof(float) * (size_t)rows * m->out_dim);
    lstm_linear_backward(ctx, din, lstm_params_grad(m->p, m->dec_w),
                         lstm_params_grad(m->p, m->dec_b), m->dlogits, feats, dw, rows, m->out_dim,
                         m->nout);
    if (classify) {
        memset(m->dY, 0, sizeof(float) * N * m->out_dim);
        lstm_mean_pool_backward(m->dY, m->dpooled, b->lengths, T, B, m->out_dim);
    }
    if (p > 0)
        mul_inplace(m->dY, m->Ymask, N * m->out_dim);
    lstm_rnn_grads g = {.dy = m->dY, .dx = m->dX};
    if ((s = lstm_rnn_backward(m->rnn, ctx, m->p, &g, err)))
        return s;
    if (p > 0)
        mul_inplace(m->dX, m->Xmask, N * m->in_dim);
    embed_backward(m, b, N);
    return LSTM_OK;
}

/* ------------------------------------------------------------------ */
/* Encoding data sets as ids. */

void encoded_free(encoded_set *e) {
    free(e->start);
    for (int i = 0; i < MAX_FEATURES; i++)
        free(e->ids[i]);
    free(e->targets);
    free(e->unseen);
    memset(e, 0, sizeof *e);
}

/* The model's label index of each data-set label (-1: unknown to it). */
static int *map_labels(const lstm_model *m, const lstm_dataset *ds) {
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
    const lstm_vocab *v;
    int32_t *out;
    size_t n;
} id_arg;

static int put_id(const char *tok, size_t len, void *arg) {
    id_arg *a = arg;
    int id = vocab_find(a->v, tok, len);
    if (a->out)
        a->out[a->n] = id >= 0 ? id : UNK_ID;
    a->n++;
    return 0;
}

static int count_only(const char *tok, size_t len, void *arg) {
    (void)tok, (void)len;
    (*(size_t *)arg)++;
    return 0;
}

lstm_status model_encode(const lstm_model *m, const lstm_dataset *ds, encoded_set *e,
                         lstm_error *err) {
    memset(e, 0, sizeof *e);
    if (ds->task != m->cfg.task)
        return lstm_fail(err, LSTM_ERR_INVALID, "%s: a %s data set for a %s model", ds->name,
                         lstm_task_name(ds->task), lstm_task_name(m->cfg.task));
    int *map = map_labels(m, ds);
    int tag = m->cfg.task == LSTM_TASK_TAG;
    e->n = tag ? ds->nsent : ds->ndocs;
    e->start = malloc(sizeof(size_t) * (e->n + 1));
    if (!map || !e->start)
        goto nomem;
    size_t total = 0;
    for (size_t i = 0; i < e->n; i++) {
        e->start[i] = total;
        if (tag) {
            total += ds->sent_start[i + 1] - ds->sent_start[i];
        } else {
            size_t n = 0;
            tokenize(ds->doc_text[i], ds->doc_len[i], m->cfg.byte_tokens, m->cfg.max_length,
                     count_only, &n);
            total += n ? n : 1; /* an empty text is one <unk> */
        }
    }
    e->start[e->n] = total;
    for (int fi = 0; fi < m->nfeat; fi++)
        if (!(e->ids[fi] = malloc(sizeof(int32_t) * (total ? total : 1))))
            goto nomem;
    e->targets = malloc(sizeof(int32_t) * ((tag ? total : e->n) + 1));
    if (!e->targets)
        goto nomem;
    if (tag) {
        if (!(e->unseen = malloc(total + 1)))
            goto nomem;
        char key[128];
        for (size_t w = 0; w < ds->nwords; w++) {
            for (int fi = 0; fi < m->nfeat; fi++) {
                const feature *f = &m->feat[fi];
                size_t n = feature_key(f, ds->words[w], key, sizeof key);
                int id = vocab_find(f->vocab, key, n);
                e->ids[fi][w] = id >= 0 ? id : UNK_ID;
                if (f->kind == FEAT_WORD)
                    e->unseen[w] = id < 0;
            }
            int lab = ds->word_tag ? ds->word_tag[w] : -1;
            e->targets[w] = lab >= 0 ? map[lab] : -1;
        }
    } else {
        for (size_t d = 0; d < e->n; d++) {
            id_arg a = {m->feat[0].vocab, e->ids[0] + e->start[d], 0};
            tokenize(ds->doc_text[d], ds->doc_len[d], m->cfg.byte_tokens, m->cfg.max_length,
                     put_id, &a);
            if (a.n == 0)
                a.out[0] = UNK_ID;
            int lab = ds->doc_label ? ds->doc_label[d] : -1;
            e->targets[d] = lab >= 0 ? map[lab] : -1;
        }
    }
    free(map);
    return LSTM_OK;
nomem:
    free(map);
    encoded_free(e);
    return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory encoding %s", ds->name);
}

int32_t *model_encode_bytes(const lstm_model *m, const unsigned char *bytes, size_t n,
                            size_t *unknown) {
    int32_t map[256];
    for (int b = 0; b < 256; b++) {
        char ch = (char)b;
        int id = vocab_find(m->feat[0].vocab, &ch, 1);
        map[b] = id >= 2 ? id : UNK_ID; /* not "<pad>"/"<unk>" themselves */
    }
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

lstm_status model_make_batch(const lstm_model *m, const encoded_set *e, const size_t *order, int B,
                             model_batch *b, void **scratch, size_t *cap, lstm_error *err) {
    int T = 0;
    for (int j = 0; j < B; j++) {
        size_t len = e->start[order[j] + 1] - e->start[order[j]];
        if ((int)len > T)
            T = (int)len;
    }
    if (T < 1)
        T = 1;
    int tag = m->cfg.task == LSTM_TASK_TAG;
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
    at += tag ? N : (size_t)B;
    b->lengths = (int *)at;
    for (int j = 0; j < B; j++) {
        size_t s = e->start[order[j]], len = e->start[order[j] + 1] - s;
        b->lengths[j] = len ? (int)len : 1;
        for (int t = 0; t < T; t++) {
            size_t pos = (size_t)t * B + j;
            for (int fi = 0; fi < m->nfeat; fi++)
                b->ids[fi][pos] = (size_t)t < len ? e->ids[fi][s + t] : (t == 0 ? UNK_ID : PAD_ID);
            if (tag)
                b->targets[pos] = (size_t)t < len && e->targets[s + t] >= 0 ? e->targets[s + t]
                                                                             : -100;
        }
        if (!tag)
            b->targets[j] = e->targets[order[j]] >= 0 ? e->targets[order[j]] : -100;
    }
    return LSTM_OK;
}

/* ------------------------------------------------------------------ */
/* Evaluation. */

void lstm_eval_free(lstm_eval *e) {
    if (e) {
        free(e->confusion);
        e->confusion = NULL;
    }
}

/* Orders examples by length, so batches waste little padding. */
static const size_t *sort_lengths;
static int by_length(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    size_t lx = sort_lengths[x + 1] - sort_lengths[x], ly = sort_lengths[y + 1] - sort_lengths[y];
    return lx < ly ? -1 : lx > ly ? 1 : (x > y) - (x < y);
}

size_t *model_length_order(const encoded_set *e) {
    size_t *order = malloc(sizeof(size_t) * (e->n ? e->n : 1));
    if (!order)
        return NULL;
    for (size_t i = 0; i < e->n; i++)
        order[i] = i;
    sort_lengths = e->start; /* qsort has no context argument in C11 */
    qsort(order, e->n, sizeof(size_t), by_length);
    sort_lengths = NULL;
    return order;
}

/* Runs a model over a whole encoded set in batches of B (no dropout),
 * calling `visit` with each batch's log-probabilities. */
typedef void (*batch_visit)(const lstm_model *m, const model_batch *b, const size_t *order,
                            const float *logp, void *arg);

static lstm_status run_set(lstm_model *m, lstm_ctx *ctx, const encoded_set *e, int B,
                           batch_stats *total, batch_visit visit, void *arg, lstm_error *err) {
    size_t *order = model_length_order(e);
    void *scratch = NULL;
    size_t cap = 0;
    lstm_status s = order ? LSTM_OK : lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
    memset(total, 0, sizeof *total);
    for (size_t i = 0; !s && i < e->n; i += (size_t)B) {
        int nb = e->n - i < (size_t)B ? (int)(e->n - i) : B;
        model_batch b;
        batch_stats st;
        if (!(s = model_make_batch(m, e, order + i, nb, &b, &scratch, &cap, err)) &&
            !(s = model_batch_run(m, ctx, &b, 0, NULL, &st, err))) {
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

typedef struct {
    const encoded_set *e;
    lstm_eval *out;
} eval_arg;

static void eval_visit(const lstm_model *m, const model_batch *b, const size_t *order,
                       const float *logp, void *arg) {
    eval_arg *a = arg;
    for (int j = 0; j < b->B; j++) {
        size_t ex = order[j], s = a->e->start[ex];
        int len = b->lengths[j];
        for (int t = 0; t < (m->cfg.task == LSTM_TASK_TAG ? len : 1); t++) {
            size_t row = m->cfg.task == LSTM_TASK_TAG ? (size_t)t * b->B + j : (size_t)j;
            const float *lp = logp + row * m->nout;
            int best = 0;
            for (int c = 1; c < m->nout; c++)
                if (lp[c] > lp[best])
                    best = c;
            int truth = m->cfg.task == LSTM_TASK_TAG ? a->e->targets[s + t] : a->e->targets[ex];
            if (m->cfg.task == LSTM_TASK_TAG && a->e->unseen[s + t]) {
                a->out->unseen_tokens++;
                a->out->unseen_accuracy += truth == best;
            }
            if (m->cfg.task == LSTM_TASK_CLASSIFY && truth >= 0)
                a->out->confusion[(size_t)truth * m->nlabels + best]++;
        }
    }
}

/* lm: S streams over the ids, each carrying its state; the summed NLL. */
static lstm_status eval_lm(lstm_model *m, lstm_ctx *ctx, const int32_t *ids, size_t n, int S,
                           batch_stats *total, lstm_error *err) {
    memset(total, 0, sizeof *total);
    if (n < 2)
        return LSTM_OK;
    size_t preds = n - 1;
    if ((size_t)S > preds)
        S = (int)preds;
    if (S < 1)
        S = 1;
    size_t seg = preds / (size_t)S; /* every stream predicts seg bytes; the last also the rest */
    int L = m->cfg.layers, H = m->cfg.hidden, Ho = m->cfg.proj ? m->cfg.proj : H;
    const int chunk = 128;
    float *h = calloc((size_t)L * S * Ho, sizeof(float)), *c = calloc((size_t)L * S * H, sizeof(float));
    float *h2 = calloc((size_t)L * S * Ho, sizeof(float)), *c2 = calloc((size_t)L * S * H, sizeof(float));
    int32_t *in = malloc(sizeof(int32_t) * (size_t)chunk * S * 2);
    lstm_status s = h && c && h2 && c2 && in ? LSTM_OK : lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
    size_t done = 0; /* predictions made by each stream */
    while (!s && done < seg) {
        int T = seg - done < (size_t)chunk ? (int)(seg - done) : chunk;
        model_batch b = {.T = T, .B = S, .targets = in + (size_t)chunk * S, .h0 = h, .c0 = c,
                         .hn = h2, .cn = c2};
        b.ids[0] = in;
        for (int t = 0; t < T; t++)
            for (int j = 0; j < S; j++) {
                size_t pos = (size_t)j * seg + done + t;
                in[(size_t)t * S + j] = ids[pos];
                b.targets[(size_t)t * S + j] = ids[pos + 1];
            }
        batch_stats st;
        if (!(s = model_batch_run(m, ctx, &b, 0, NULL, &st, err))) {
            total->loss_sum += st.loss_sum;
            total->count += st.count;
            total->correct += st.correct;
            memcpy(h, h2, sizeof(float) * (size_t)L * S * Ho);
            memcpy(c, c2, sizeof(float) * (size_t)L * S * H);
        }
        done += (size_t)T;
    }
    /* the rest, on the last stream: its state is row S-1 of each layer */
    size_t rest_at = (size_t)S * seg, rest = preds - rest_at;
    if (!s && rest) {
        for (int l = 0; l < L; l++) {
            memcpy(h2 + (size_t)l * Ho, h + ((size_t)l * S + S - 1) * Ho, sizeof(float) * Ho);
            memcpy(c2 + (size_t)l * H, c + ((size_t)l * S + S - 1) * H, sizeof(float) * H);
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
            if (!(s = model_batch_run(m, ctx, &b, 0, NULL, &st, err))) {
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

lstm_status lstm_model_evaluate(lstm_model *m, lstm_ctx *ctx, const lstm_dataset *ds, int streams,
                                lstm_eval *out, lstm_error *err) {
    memset(out, 0, sizeof *out);
    out->task = m->cfg.task;
    if (ds->task != m->cfg.task)
        return lstm_fail(err, LSTM_ERR_INVALID, "%s: a %s data set for a %s model", ds->name,
                         lstm_task_name(ds->task), lstm_task_name(m->cfg.task));
    batch_stats total;
    lstm_status s;
    if (m->cfg.task == LSTM_TASK_LM) {
        size_t unknown;
        int32_t *ids = model_encode_bytes(m, ds->bytes, ds->nbytes, &unknown);
        if (!ids)
            return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
        s = eval_lm(m, ctx, ids, ds->nbytes, streams > 0 ? streams : 1, &total, err);
        free(ids);
        if (s)
            return s;
        out->unknown = unknown;
        out->tokens = (size_t)total.count;
        out->loss = total.count ? total.loss_sum / (double)total.count : 0;
        out->bpc = out->loss / log(2.0);
        out->perplexity = exp(out->loss);
        out->accuracy = total.count ? (double)total.correct / (double)total.count : 0;
        return lstm_ok(err);
    }
    encoded_set e;
    if ((s = model_encode(m, ds, &e, err)))
        return s;
    out->nlabels = m->nlabels;
    if (m->cfg.task == LSTM_TASK_CLASSIFY &&
        !(out->confusion = calloc((size_t)m->nlabels * m->nlabels, sizeof(long)))) {
        encoded_free(&e);
        return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
    }
    eval_arg a = {&e, out};
    s = run_set(m, ctx, &e, 64, &total, eval_visit, &a, err);
    /* examples whose label the model does not know count as errors */
    size_t all = m->cfg.task == LSTM_TASK_TAG ? e.start[e.n] : e.n;
    encoded_free(&e);
    if (s) {
        lstm_eval_free(out);
        return s;
    }
    out->tokens = all;
    out->loss = total.count ? total.loss_sum / (double)total.count : 0;
    out->accuracy = all ? (double)total.correct / (double)all : 0;
    out->unseen_accuracy = out->unseen_tokens ? out->unseen_accuracy / (double)out->unseen_tokens : 0;
    return lstm_ok(err);
}

/* ------------------------------------------------------------------ */
/* Prediction and sampling. */

typedef struct {
    const encoded_set *e;
    int *labels;
    float *probs;
} predict_arg;

static void predict_visit(const lstm_model *m, const model_batch *b, const size_t *order,
                          const float *logp, void *arg) {
    predict_arg *a = arg;
    int tag = m->cfg.task == LSTM_TASK_TAG;
    for (int j = 0; j < b->B; j++) {
        size_t ex = order[j], s = a->e->start[ex];
        size_t len = a->e->start[ex + 1] - s;
        for (size_t t = 0; t < (tag ? len : 1); t++) {
            size_t row = tag ? t * b->B + j : (size_t)j;
            const float *lp = logp + row * m->nout;
            int best = 0;
            for (int c = 1; c < m->nout; c++)
                if (lp[c] > lp[best])
                    best = c;
            size_t at = tag ? s + t : ex;
            a->labels[at] = best;
            a->probs[at] = expf(lp[best]);
        }
    }
}

lstm_status lstm_model_predict(lstm_model *m, lstm_ctx *ctx, const lstm_dataset *ds, int *labels,
                               float *probs, lstm_error *err) {
    if (m->cfg.task == LSTM_TASK_LM)
        return lstm_fail(err, LSTM_ERR_INVALID,
                         "a language model does not predict labels: use lstm sample");
    encoded_set e;
    lstm_status s = model_encode(m, ds, &e, err);
    if (s)
        return s;
    /* an empty sentence runs as one <unk> word whose prediction is dropped */
    predict_arg a = {&e, labels, probs};
    batch_stats total;
    s = run_set(m, ctx, &e, 64, &total, predict_visit, &a, err);
    encoded_free(&e);
    return s;
}

lstm_status lstm_model_sample(lstm_model *m, lstm_ctx *ctx, const char *prime, size_t prime_len,
                              size_t length, float temperature, int top_k, lstm_rng *rng,
                              void (*emit)(unsigned char byte, void *arg), void *arg,
                              lstm_error *err) {
    if (m->cfg.task != LSTM_TASK_LM)
        return lstm_fail(err, LSTM_ERR_INVALID, "only a language model (lm) can sample text");
    if (!(temperature > 0) || top_k < 0)
        return lstm_fail(err, LSTM_ERR_INVALID, "temperature must be > 0 and top-k >= 0");
    const feature *f = &m->feat[0];
    int32_t map[256];
    for (int b = 0; b < 256; b++) {
        char ch = (char)b;
        int id = vocab_find(f->vocab, &ch, 1);
        map[b] = id >= 2 ? id : -1;
    }
    static const char newline = '\n';
    if (prime_len == 0) {
        prime = &newline;
        prime_len = 1;
        if (map['\n'] < 0) /* a text without newlines: start from its most common byte */
            prime = NULL;
    }
    for (size_t i = 0; prime && i < prime_len; i++)
        if (map[(unsigned char)prime[i]] < 0)
            return lstm_fail(err, LSTM_ERR_INVALID,
                             "the prime text's byte %zu (0x%02x) never occurs in the model's "
                             "training text, so the model cannot read it",
                             i, (unsigned char)prime[i]);
    int L = m->cfg.layers, H = m->cfg.hidden, Ho = m->out_dim, V = m->nout, E = f->dim;
    float *h = calloc((size_t)L * Ho, sizeof(float)), *c = calloc((size_t)L * H, sizeof(float));
    float *y = malloc(sizeof(float) * Ho), *logits = malloc(sizeof(float) * V);
    float *x = malloc(sizeof(float) * E);
    int *idx = malloc(sizeof(int) * V);
    lstm_status s = h && c && y && logits && x && idx ? LSTM_OK
                                                     : lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
    const float *table = lstm_params_data(m->p, f->param);
    const float *W = lstm_params_data(m->p, m->dec_w), *bias = lstm_params_data(m->p, m->dec_b);
    int next = prime ? map[(unsigned char)prime[0]] : 2;
    for (size_t i = 0; !s && i < (prime ? prime_len : 1) + length; i++) {
        memcpy(x, table + (size_t)next * E, sizeof(float) * E);
        if ((s = lstm_rnn_step(m->rnn, ctx, m->p, 1, x, h, c, y, err)))
            break;
        if (prime && i + 1 < prime_len) {
            next = map[(unsigned char)prime[i + 1]];
            continue;
        }
        if (i + 1 >= (prime ? prime_len : 1) + length)
            break;
        /* logits / temperature, top-k, softmax, draw */
        for (int v = 0; v < V; v++) {
            double z = bias[v];
            for (int k = 0; k < Ho; k++)
                z += (double)W[(size_t)v * Ho + k] * y[k];
            logits[v] = v < 2 ? -INFINITY : (float)(z / temperature);
            idx[v] = v;
        }
        int keep = top_k > 0 && top_k < V - 2 ? top_k : V - 2;
        for (int a = 0; a < keep; a++) { /* partial selection sort: keep is small */
            int best = a;
            for (int b = a + 1; b < V; b++)
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
        int pick = idx[keep - 1];
        for (int a = 0; a < keep; a++) {
            acc += exp(logits[idx[a]] - mx);
            if (r < acc) {
                pick = idx[a];
                break;
            }
        }
        size_t len;
        const char *str = vocab_string(f->vocab, pick, &len);
        emit((unsigned char)str[0], arg);
        next = pick;
    }
    free(h), free(c), free(y), free(logits), free(x), free(idx);
    return s ? s : lstm_ok(err);
}
