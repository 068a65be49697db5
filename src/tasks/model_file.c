/* model_file.c - a task model as one safetensors file: its tensors under
 * PyTorch-style names (embedding.<feature>.weight, lstm.weight_ih_l0 ...,
 * decoder.weight, decoder.bias) and, in the metadata, the task
 * (lstm.task), the configuration (lstm.config, a JSON object with the named
 * fields of config_fields below), each feature's vocabulary
 * (lstm.vocab.<feature>) and the labels (lstm.labels), as JSON strings. */
#include "task.h"

#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The integer fields of lstm.config, written and read by name. */
static const struct {
    const char *key;
    size_t offset; /* of the int in lstm_model_config */
    int lo, hi;    /* the values a file may hold */
    int flag;      /* written as a JSON boolean */
    int optional;  /* files written before the field existed lack it (0 then);
                      2: also written only when not 0, so that models without
                      it are the bytes they were before it existed */
} config_fields[] = {
    {"embedding", offsetof(lstm_model_config, embedding), 1, 4096, 0, 0},
    {"hidden", offsetof(lstm_model_config, hidden), 1, 8192, 0, 0},
    {"layers", offsetof(lstm_model_config, layers), 1, 16, 0, 0},
    {"bidirectional", offsetof(lstm_model_config, bidirectional), 0, 1, 1, 0},
    {"vocab_size", offsetof(lstm_model_config, vocab_size), 0, 1 << 30, 0, 0},
    {"min_count", offsetof(lstm_model_config, min_count), 0, 1 << 30, 0, 0},
    {"byte_tokens", offsetof(lstm_model_config, byte_tokens), 0, 1, 1, 0},
    {"max_length", offsetof(lstm_model_config, max_length), 0, 1 << 30, 0, 0},
    {"char_features", offsetof(lstm_model_config, char_features), 0, 1, 1, 0},
    {"proj", offsetof(lstm_model_config, proj), 0, 8191, 0, 1},
    {"peephole", offsetof(lstm_model_config, peephole), 0, 1, 1, 2},
    {"input_forget", offsetof(lstm_model_config, input_forget), 0, 1, 1, 2},
    {"suffixes", offsetof(lstm_model_config, suffixes), 0, TAG_MAX_SUFFIXES, 0, 2},
    {"prefixes", offsetof(lstm_model_config, prefixes), 0, TAG_MAX_PREFIXES, 0, 2},
    {"crf", offsetof(lstm_model_config, crf), 0, 1, 1, 2},
};
#define NFIELDS (sizeof config_fields / sizeof config_fields[0])

static int *field(lstm_model_config *c, size_t i) {
    return (int *)((char *)c + config_fields[i].offset);
}

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
    json_t *cfg = json_object();
    lstm_model_config copy = *c;
    if (copy.suffixes == 3) /* what 0 means: a tagger with the features of before writes
                               the bytes of before */
        copy.suffixes = 0;
    for (size_t i = 0; cfg && i < NFIELDS; i++) {
        int v = *field(&copy, i);
        if (config_fields[i].optional == 2 && v == 0)
            continue;
        json_object_set_new(cfg, config_fields[i].key,
                            config_fields[i].flag ? json_boolean(v) : json_integer(v));
    }
    if (cfg)
        json_object_set_new(cfg, "dropout", json_real((double)c->dropout));
    if (cfg && c->cell_clip > 0)
        json_object_set_new(cfg, "cell_clip", json_real((double)c->cell_clip));
    if ((s = meta_json(w, "lstm.config", cfg, err)))
        return s;
    /* lstm.clip, lstm.input_forget: what `lstm forward` reads of the LSTM */
    if ((s = lstm_rnn_config_write_meta(lstm_rnn_get_config(m->rnn), w, err)))
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
    if (m->ops->label) {
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

/* Before allocating what a file's metadata describes: every tensor is in
 * the file with its shape, so a few bytes cannot ask for gigabytes. */
static lstm_status check_tensors(const lstm_model *m, const lstm_st *st, lstm_error *err) {
    for (int i = 0; i < lstm_params_count(m->p); i++) {
        const char *name = lstm_params_name(m->p, i);
        const lstm_st_tensor *t = lstm_st_find(st, name);
        char q[540];
        snprintf(q, sizeof q, "%s.int8", name);
        if (!t) /* a quantized model: NAME.int8 beside NAME.scale */
            t = lstm_st_find(st, q);
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

lstm_status model_read_config(const lstm_st *st, lstm_model_config *out, lstm_error *err) {
    const char *file = lstm_st_name(st);
    const char *task = lstm_st_meta(st, "lstm.task"), *cfgs = lstm_st_meta(st, "lstm.config");
    if (!task || !cfgs) {
        return lstm_fail(err, LSTM_ERR_FORMAT,
                         "%s: not an lstm model file (no lstm.task / lstm.config in its metadata)",
                         file);
    }
    int t = lstm_task_parse(task);
    if (t < 0) {
        return lstm_fail(err, LSTM_ERR_FORMAT, "%s: unknown task '%s'", file, task);
    }
    json_error_t je;
    json_t *o = json_loads(cfgs, JSON_REJECT_DUPLICATES, &je);
    lstm_model_config c = {0};
    c.task = (lstm_task)t;
    int ok = json_is_object(o);
    if (!ok)
        lstm_fail(err, LSTM_ERR_FORMAT, "%s: lstm.config is not a JSON object", file);
    for (size_t i = 0; ok && i < NFIELDS; i++)
        if (!config_fields[i].optional || json_object_get(o, config_fields[i].key))
            ok = !cfg_int(o, config_fields[i].key, config_fields[i].lo, config_fields[i].hi,
                          field(&c, i), file, err);
    if (ok) {
        json_t *d = json_object_get(o, "dropout");
        ok = json_is_number(d);
        c.dropout = ok ? (float)json_number_value(d) : 0;
        if (!ok)
            lstm_fail(err, LSTM_ERR_FORMAT, "%s: lstm.config: 'dropout' is not a number", file);
    }
    if (ok && json_object_get(o, "cell_clip")) { /* files before it lack it: 0 */
        json_t *d = json_object_get(o, "cell_clip");
        ok = json_is_number(d);
        c.cell_clip = ok ? (float)json_number_value(d) : 0;
        if (!ok)
            lstm_fail(err, LSTM_ERR_FORMAT, "%s: lstm.config: 'cell_clip' is not a number", file);
    }
    json_decref(o);
    if (!ok || model_check_config(&c, err)) {
        if (err && err->status == LSTM_ERR_INVALID) /* the file's values, not the caller's */
            err->status = LSTM_ERR_FORMAT;
        return LSTM_ERR_FORMAT;
    }
    *out = c;
    return LSTM_OK;
}


lstm_model *model_from_st(const lstm_st *st, int strict, lstm_error *err) {
    const char *file = lstm_st_name(st);
    lstm_model_config c;
    if (model_read_config(st, &c, err))
        return NULL;
    lstm_model *m = model_new(&c, err);
    if (!m)
        return NULL;
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
    if (m->ops->label) {
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
        int n = vocab_size(lv);
        m->labels = calloc((size_t)n, sizeof(char *));
        for (int i = 0; m->labels && i < n; i++) {
            size_t len;
            const char *s = vocab_string(lv, i, &len);
            if (!(m->labels[i] = malloc(len + 1)))
                break;
            memcpy(m->labels[i], s, len);
            m->labels[i][len] = 0;
            m->nlabels = i + 1;
        }
        vocab_free(lv);
        if (m->nlabels != n) { /* lstm_model_free frees the nlabels made */
            lstm_fail(err, LSTM_ERR_NOMEM, "%s: out of memory for the labels", file);
            lstm_model_free(m);
            return NULL;
        }
    }
    if (model_declare(m, err) || check_tensors(m, st, err) || lstm_params_alloc(m->p, err) ||
        lstm_params_read(m->p, st, "", strict, err)) {
        lstm_model_free(m);
        return NULL;
    }
    lstm_ok(err);
    return m;
}

/* A model file, or a checkpoint (lstm.train in its metadata): then its
 * best weights (best.*) when a validation has chosen some, else its last.
 * Weights that are not finite are refused: such a model answers nothing. */
static lstm_model *load(const lstm_st *st, lstm_error *err) {
    int checkpoint = lstm_st_meta(st, "lstm.train") != NULL;
    lstm_model *m = model_from_st(st, !checkpoint, err);
    if (m && checkpoint && lstm_st_find(st, "best.decoder.weight") &&
        lstm_params_read(m->p, st, "best.", 0, err)) {
        lstm_model_free(m);
        return NULL;
    }
    for (int i = 0; m && i < lstm_params_count(m->p); i++) {
        const float *w = lstm_params_data(m->p, i);
        for (size_t j = 0; j < lstm_params_numel(m->p, i); j++)
            if (!isfinite(w[j])) {
                lstm_fail(err, LSTM_ERR_NONFINITE,
                          "%s: tensor '%s' holds %s at index %zu: a model whose weights are not "
                          "finite answers nothing (did its training diverge?)",
                          lstm_st_name(st), lstm_params_name(m->p, i),
                          isnan(w[j]) ? "NaN" : "an infinity", j);
                lstm_model_free(m);
                return NULL;
            }
    }
    return m;
}

lstm_model *lstm_model_from_memory(const void *buf, size_t len, const char *name,
                                   lstm_error *err) {
    lstm_st *st = lstm_st_from_memory(buf, len, name, err);
    if (!st)
        return NULL;
    lstm_model *m = load(st, err);
    lstm_st_free(st);
    return m;
}

lstm_model *lstm_model_load(const char *path, lstm_error *err) {
    lstm_st *st = lstm_st_open(path, err);
    if (!st)
        return NULL;
    lstm_model *m = load(st, err);
    lstm_st_free(st);
    return m;
}

lstm_status lstm_model_quantize(lstm_model *m, lstm_error *err) {
    for (int i = 0; i < lstm_params_count(m->p); i++) {
        const char *n = lstm_params_name(m->p, i);
        /* the matrices; the peephole vectors (1-D) stay float, like the biases */
        if ((strncmp(n, "lstm.weight_", 12) != 0 && strcmp(n, "decoder.weight") != 0) ||
            lstm_params_ndim(m->p, i) != 2 || lstm_params_is_int8(m->p, i))
            continue;
        lstm_status s = lstm_params_quantize(m->p, i, err);
        if (s)
            return s;
    }
    return lstm_ok(err);
}
