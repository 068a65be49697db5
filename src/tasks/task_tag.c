/* task_tag.c - the part-of-speech tagger: "word<TAB>tag" files (a blank
 * line after each sentence) or one sentence per line to predict on; the
 * embedding of the lowercased word beside embeddings of its last one to
 * `suffixes` letters (5 by default; 3 in files from before the option), of
 * its shape and of its first one to `prefixes` letters (4 by default; none
 * before); a tag per word; accuracy on all words and on words never seen
 * in training.
 *
 *   [word | suffix1..S | shape | prefix1..P] embeddings -> BiLSTM -> linear -> tag
 */
#include "task.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a feature is looked up by. */
enum { FEAT_WORD, FEAT_SUFFIX, FEAT_SHAPE, FEAT_PREFIX };

static void defaults(lstm_model_config *c, lstm_train_config *tc) {
    c->embedding = 100;
    c->hidden = 128;
    c->layers = 1;
    c->bidirectional = 1;
    c->dropout = 0.3f;
    c->min_count = 1;
    c->char_features = 1;
    c->suffixes = 5; /* docs/QUALITY.md: every affix table, +0.0013 on fold 0 */
    c->prefixes = 4;
    tc->epochs = 20;
    tc->patience = 5;
    tc->optim.lr = 2e-3f;
}

/* ------------------------------------------------------------------ */
/* Data */

/* Sizes the sentence arrays for n sentences and the word arrays for m words. */
static int sents_resize(lstm_dataset *ds, size_t n, size_t m) {
    return ds_resize(&ds->sent_start, n + 1, sizeof *ds->sent_start) ||
           ds_resize(&ds->sent_line, n, sizeof *ds->sent_line) ||
           ds_resize(&ds->words, m, sizeof *ds->words) ||
           ds_resize(&ds->word_tag, m, sizeof *ds->word_tag);
}

/* "word<TAB>tag" lines, a blank line after each sentence. */
static lstm_status parse_labelled(lstm_dataset *ds, size_t len, lstm_error *err) {
    const char *name = ds->name;
    size_t nlines = count_lines(ds->store, len);
    if (sents_resize(ds, nlines, nlines))
        return ds_nomem(err, name);
    ds->sent_start[0] = 0;
    lstm_vocab *tags = vocab_create();
    if (!tags)
        return ds_nomem(err, name);
    lstm_status status = LSTM_OK;
    int in_sentence = 0;
    line_reader r = {.buf = ds->store, .len = len};
    while (line_next(&r)) {
        char *s = r.s;
        size_t n = r.n;
        if (is_blank(s, n)) {
            if (in_sentence)
                ds->sent_start[++ds->nsent] = ds->nwords;
            in_sentence = 0;
            continue;
        }
        char *tab = memchr(s, '\t', n);
        if (!tab) {
            status = line_fail(err, name, r.number, "expected word<TAB>tag");
            break;
        }
        size_t wlen = (size_t)(tab - s), tlen = n - wlen - 1;
        if (memchr(tab + 1, '\t', tlen)) {
            status = line_fail(err, name, r.number, "more than one tab: expected word<TAB>tag");
            break;
        }
        /* spaces around either field are not part of it */
        char *w = s, *tg = tab + 1;
        while (wlen > 0 && *w == ' ')
            w++, wlen--;
        while (wlen > 0 && w[wlen - 1] == ' ')
            wlen--;
        while (tlen > 0 && *tg == ' ')
            tg++, tlen--;
        while (tlen > 0 && tg[tlen - 1] == ' ')
            tlen--;
        if (wlen == 0 || tlen == 0) {
            status = line_fail(err, name, r.number, "empty %s: expected word<TAB>tag",
                               wlen == 0 ? "word" : "tag");
            break;
        }
        if (memchr(s, 0, n)) {
            status = line_fail(err, name, r.number, "NUL byte: expected word<TAB>tag");
            break;
        }
        int tag = vocab_add(tags, tg, tlen);
        if (tag < 0) {
            status = ds_nomem(err, name);
            break;
        }
        if (!in_sentence)
            ds->sent_line[ds->nsent] = r.number;
        in_sentence = 1;
        w[wlen] = 0; /* over a space or the tab */
        s[n] = 0;
        ds->words[ds->nwords] = w;
        ds->word_tag[ds->nwords++] = tag;
    }
    if (!status && in_sentence)
        ds->sent_start[++ds->nsent] = ds->nwords;
    if (!status && ds->nsent == 0)
        status = lstm_fail(err, LSTM_ERR_FORMAT,
                           NAME_FMT ": no sentences: expected word<TAB>tag lines", name);
    if (!status &&
        (sents_resize(ds, ds->nsent, ds->nwords) || ds_labels_from_vocab(ds, tags)))
        status = ds_nomem(err, name);
    vocab_free(tags);
    return status;
}

/* One sentence per line (blank lines are sentences of no words), words
 * separated by spaces and tabs. */
static lstm_status parse_unlabelled(lstm_dataset *ds, size_t len, lstm_error *err) {
    const char *name = ds->name;
    size_t nlines = count_lines(ds->store, len), nwords = 0;
    line_reader r = {.buf = ds->store, .len = len};
    while (line_next(&r)) {
        if (memchr(r.s, 0, r.n))
            return line_fail(err, name, r.number, "NUL byte in a word");
        for (size_t i = 0; i < r.n; i++)
            nwords += !is_blank_char(r.s[i]) && (i == 0 || is_blank_char(r.s[i - 1]));
    }
    if (sents_resize(ds, nlines, nwords) || (ds->labels = calloc(1, sizeof *ds->labels)) == NULL)
        return ds_nomem(err, name);
    ds->sent_start[0] = 0;
    r = (line_reader){.buf = ds->store, .len = len};
    while (line_next(&r)) {
        char *s = r.s;
        size_t n = r.n;
        for (size_t i = 0; i < n;) {
            if (is_blank_char(s[i])) {
                i++;
                continue;
            }
            ds->words[ds->nwords] = s + i;
            ds->word_tag[ds->nwords++] = -1;
            while (i < n && !is_blank_char(s[i]))
                i++;
            s[i++] = 0; /* over a blank, the "\r", the "\n" or the spare byte */
        }
        ds->sent_line[ds->nsent] = r.number;
        ds->sent_start[++ds->nsent] = ds->nwords;
    }
    return LSTM_OK;
}

static lstm_status parse(lstm_dataset *ds, size_t len, lstm_error *err) {
    return ds->labelled ? parse_labelled(ds, len, err) : parse_unlabelled(ds, len, err);
}

static size_t count(const lstm_dataset *ds) { return ds->nsent; }
static size_t tokens(const lstm_dataset *ds) { return ds->nwords; }

static lstm_dataset *subset(const lstm_dataset *ds, const unsigned char *pick, int want,
                            const char *name) {
    lstm_dataset *out = ds_create(ds->task, name, ds->labelled);
    if (!out || ds_copy_labels(out, ds))
        goto fail;
    size_t n = 0, bytes = 0;
    size_t nwords = 0;
    for (size_t i = 0; i < ds->nsent; i++) {
        if (pick[i] != want)
            continue;
        n++;
        for (size_t j = ds->sent_start[i]; j < ds->sent_start[i + 1]; j++)
            nwords++, bytes += strlen(ds->words[j]) + 1;
    }
    if (sents_resize(out, n, nwords) || !(out->store = malloc(bytes ? bytes : 1)))
        goto fail;
    char *at = out->store;
    out->sent_start[0] = 0;
    for (size_t i = 0; i < ds->nsent; i++) {
        if (pick[i] != want)
            continue;
        for (size_t j = ds->sent_start[i]; j < ds->sent_start[i + 1]; j++) {
            size_t len = strlen(ds->words[j]) + 1;
            memcpy(at, ds->words[j], len);
            out->words[out->nwords] = at;
            out->word_tag[out->nwords++] = ds->word_tag[j];
            at += len;
        }
        out->sent_line[out->nsent] = ds->sent_line[i];
        out->sent_start[++out->nsent] = out->nwords;
    }
    return out;
fail:
    lstm_dataset_free(out);
    return NULL;
}

static uint64_t hash(const lstm_dataset *ds, uint64_t h) {
    for (size_t i = 0; i < ds->nwords; i++) {
        h = ds_fnv(h, ds->words[i], strlen(ds->words[i]) + 1);
        h = ds_fnv(h, ds->labels[ds->word_tag[i]], strlen(ds->labels[ds->word_tag[i]]) + 1);
    }
    return ds_fnv(h, ds->sent_start, sizeof(size_t) * (ds->nsent ? ds->nsent + 1 : 0));
}

const char *const *lstm_dataset_sentence(const lstm_dataset *ds, size_t i, size_t *n) {
    if (ds->task != LSTM_TASK_TAG || i >= ds->nsent) {
        *n = 0;
        return NULL;
    }
    *n = ds->sent_start[i + 1] - ds->sent_start[i];
    return (const char *const *)ds->words + ds->sent_start[i];
}

/* ------------------------------------------------------------------ */
/* Features */

static unsigned char lower(unsigned char ch) { return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch; }

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
    case FEAT_SUFFIX:
    case FEAT_PREFIX: { /* the last or first k letters (all of a shorter word) */
        size_t k = (size_t)f->k < len ? (size_t)f->k : len;
        size_t from = f->kind == FEAT_SUFFIX ? len - k : 0;
        for (size_t i = 0; i < k; i++)
            buf[i] = (char)lower((unsigned char)word[from + i]);
        return k;
    }
    case FEAT_SHAPE:
        return word_shape(word, buf);
    default:
        return 0;
    }
}

/* The features in the order their embeddings are concatenated: the word;
 * with char_features suffix1..suffixN, the shape, prefix1..prefixN (the
 * first five are what every model before the affix options had). An
 * affix of k letters gets 8, 16, then 32 values. */
static void add_feature(lstm_model *m, const char *name, int kind, int k, int dim) {
    feature *f = &m->feat[m->nfeat++];
    snprintf(f->name, sizeof f->name, "%s", name);
    f->kind = kind, f->k = k, f->param = -1, f->dim = dim;
}

static void features(lstm_model *m) {
    static const int affix_dim[] = {8, 16, 32, 32, 32};
    char name[16];
    m->nfeat = 0;
    add_feature(m, "word", FEAT_WORD, 0, m->cfg.embedding);
    if (!m->cfg.char_features)
        return;
    int suffixes = m->cfg.suffixes ? m->cfg.suffixes : 3;
    for (int k = 1; k <= suffixes; k++) {
        snprintf(name, sizeof name, "suffix%d", k);
        add_feature(m, name, FEAT_SUFFIX, k, affix_dim[k - 1]);
    }
    add_feature(m, "shape", FEAT_SHAPE, 0, 8);
    for (int k = 1; k <= m->cfg.prefixes; k++) {
        snprintf(name, sizeof name, "prefix%d", k);
        add_feature(m, name, FEAT_PREFIX, k, affix_dim[k - 1]);
    }
}

/* Each feature's vocabulary: the keys of the training words; the word's
 * own limited by vocab_size and min_count. */
static lstm_status vocabs(lstm_model *m, const lstm_dataset *ds, lstm_error *err) {
    for (int fi = 0; fi < m->nfeat; fi++) {
        feature *f = &m->feat[fi];
        lstm_vocab *raw = vocab_create();
        int failed = !raw;
        char key[128];
        for (size_t w = 0; w < ds->nwords && !failed; w++) {
            size_t n = feature_key(f, ds->words[w], key, sizeof key);
            failed = vocab_add(raw, key, n) < 0;
        }
        int word = f->kind == FEAT_WORD;
        lstm_status s = failed ? lstm_fail(err, LSTM_ERR_NOMEM, "out of memory building vocabularies")
                               : task_prune_vocab(f, raw, word ? m->cfg.vocab_size : 0,
                                                  word ? m->cfg.min_count : 1, err);
        vocab_free(raw);
        if (s)
            return s;
    }
    return LSTM_OK;
}

/* The data set as ids; a word is "unseen" when its lowercased form is not
 * in the word vocabulary (the model keeps no other record of training). */
static lstm_status encode(const lstm_model *m, const lstm_dataset *ds, encoded_set *e,
                          lstm_error *err) {
    memset(e, 0, sizeof *e);
    int *map = encoded_map_labels(m, ds);
    e->start = malloc(sizeof(size_t) * (ds->nsent + 1));
    if (!map || !e->start) {
        free(map);
        encoded_free(e);
        return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory encoding %s", ds->name);
    }
    for (size_t i = 0; i <= ds->nsent; i++)
        e->start[i] = ds->sent_start[i];
    lstm_status s = encoded_alloc(e, ds->nsent, ds->nwords, m->nfeat, 1, 1, ds->name, err);
    char key[128];
    for (size_t w = 0; !s && w < ds->nwords; w++) {
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
    free(map);
    return s;
}

/* ------------------------------------------------------------------ */
/* Training, evaluation, prediction */

static double valid_tokens(const trainer *t, const lstm_dataset *valid) {
    (void)t;
    return (double)lstm_dataset_tokens(valid);
}

/* Accuracy on the words never seen in training, beside the overall one. */
static void visit_unseen(const lstm_model *m, const encoded_set *e, const model_batch *b,
                       const size_t *order, const float *logp, lstm_eval *out) {
    for (int j = 0; j < b->B; j++) {
        size_t s = e->start[order[j]];
        for (int t = 0; t < b->lengths[j]; t++) {
            if (!e->unseen[s + t] || e->targets[s + t] < 0)
                continue;
            const float *lp = logp + ((size_t)t * b->B + j) * m->nout;
            out->unseen_tokens++;
            out->unseen_accuracy += e->targets[s + t] == task_argmax(lp, m->nout);
        }
    }
}

static lstm_status evaluate(lstm_model *m, lstm_ctx *ctx, const lstm_dataset *ds, int streams,
                            const lstm_comm *comm, lstm_eval *out, lstm_error *err) {
    (void)streams;
    out->nlabels = m->nlabels;
    lstm_status s =
        seq_evaluate(m, ctx, ds, ds->word_tag, ds->nwords, visit_unseen, comm, out, err);
    if (!s) /* over no unseen word, nothing was measured: NaN */
        out->unseen_accuracy = out->unseen_tokens ? out->unseen_accuracy / (double)out->unseen_tokens
                                                  : NAN;
    return s;
}

const task_ops task_tag = {
    .task = LSTM_TASK_TAG,
    .name = "tag",
    .title = "a tagger",
    .example = "sentence",
    .label = "tag",
    .metric = "accuracy",
    .defaults = defaults,
    .parse = parse,
    .count = count,
    .tokens = tokens,
    .subset = subset,
    .hash = hash,
    .features = features,
    .vocabs = vocabs,
    .encode = encode,
    .train_setup = seq_train_setup,
    .train_epoch = seq_train_epoch,
    .train_batch = seq_train_batch,
    .valid_tokens = valid_tokens,
    .train_free = seq_train_free,
    .evaluate = evaluate,
    .predict = seq_predict,
};
