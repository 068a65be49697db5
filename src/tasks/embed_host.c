/*
 * embed_host.c - a model file as the embeddable runtime's description
 * (lstm_embed_model, include/lstm_embed.h): what `lstm export-c` writes out
 * as C and what the tests run the runtime on. The arrays are copies owned
 * by the lstm_embed_host, converted to float (F16, BF16, F64 weights) or
 * kept as int8 (the "int8-rowwise" format: NAME.int8 and NAME.scale).
 */
#include "lstm_embed.h"
#include "task.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lstm_embed_host {
    lstm_embed_model m;
    lstm_embed_matrix mats[3 * 2 * 64]; /* w_ih, w_hh, w_hr: [L*D] each */
    const float *bias[2 * 2 * 64];      /* b_ih, b_hh */
    void **blocks;                      /* every allocation, freed with the host */
    size_t nblocks;
    char **labels;
    int16_t byte_ids[256];
    uint8_t *id_bytes;
};

static void *host_alloc(lstm_embed_host *h, size_t n) {
    void **b = realloc(h->blocks, sizeof(void *) * (h->nblocks + 1));
    if (!b)
        return NULL;
    h->blocks = b;
    void *p = calloc(1, n ? n : 1);
    if (p)
        h->blocks[h->nblocks++] = p;
    return p;
}

void lstm_embed_host_free(lstm_embed_host *h) {
    if (!h)
        return;
    for (size_t i = 0; i < h->nblocks; i++)
        free(h->blocks[i]);
    free(h->blocks);
    free(h);
}

const lstm_embed_model *lstm_embed_host_model(const lstm_embed_host *h) { return &h->m; }

static const lstm_st_tensor *find(const lstm_st *st, const char *prefix, const char *name,
                                  const char *suffix) {
    char full[256];
    snprintf(full, sizeof full, "%s%s%s", prefix, name, suffix);
    return lstm_st_find(st, full);
}

/* Floats of tensor t (any floating dtype, n values), all finite. */
static float *read_floats(lstm_embed_host *h, const lstm_st *st, const lstm_st_tensor *t,
                          size_t n, lstm_error *err) {
    float *v = host_alloc(h, sizeof(float) * n);
    if (!v) {
        lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (lstm_st_read_f32(st, t, v, n, err))
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) {
            lstm_fail(err, LSTM_ERR_NONFINITE, "%s: %s[%zu] is not finite", lstm_st_name(st),
                      t->name, i);
            return NULL;
        }
    return v;
}

/* Matrix prefix+name, float or int8-rowwise, into a; rows or cols < 0:
 * any. Returns 1 when found, 0 when neither form is there, -1 on error. */
static int load_matrix(lstm_embed_host *h, const lstm_st *st, const char *prefix,
                       const char *name, int rows, int cols, lstm_embed_matrix *a,
                       lstm_error *err) {
    const char *file = lstm_st_name(st);
    const lstm_st_tensor *t = find(st, prefix, name, "");
    const lstm_st_tensor *tq = find(st, prefix, name, ".int8");
    const lstm_st_tensor *ts = find(st, prefix, name, ".scale");
    if (!t && !tq && !ts)
        return 0;
    if (t && (tq || ts)) {
        lstm_fail(err, LSTM_ERR_FORMAT, "%s: %s%s is there both as float and as int8", file,
                  prefix, name);
        return -1;
    }
    const lstm_st_tensor *shape_of = t ? t : tq;
    if (!shape_of || !ts != !tq || shape_of->ndim != 2 || (rows >= 0 && shape_of->shape[0] != rows) ||
        (cols >= 0 && shape_of->shape[1] != cols) || shape_of->shape[0] < 1 ||
        shape_of->shape[1] < 1 || shape_of->shape[0] > (1 << 24) || shape_of->shape[1] > (1 << 20)) {
        lstm_fail(err, LSTM_ERR_SHAPE,
                  "%s: %s%s%s: expected a matrix of (%d, %d) (-1: any)%s", file, prefix, name,
                  t ? "" : ".int8", rows, cols,
                  !ts != !tq ? ", with both .int8 and .scale" : "");
        return -1;
    }
    a->rows = (int)shape_of->shape[0];
    a->cols = (int)shape_of->shape[1];
    size_t n = (size_t)a->rows * (size_t)a->cols;
    if (t) {
        a->w = read_floats(h, st, t, n, err);
        return a->w ? 1 : -1;
    }
    if (tq->dtype != LSTM_DT_I8 || ts->dtype != LSTM_DT_F32 || ts->ndim != 1 ||
        ts->shape[0] != a->rows) {
        lstm_fail(err, LSTM_ERR_SHAPE, "%s: %s%s.int8 must be I8 (rows, cols) and .scale F32 (rows)",
                  file, prefix, name);
        return -1;
    }
    int8_t *q = host_alloc(h, n);
    if (!q) {
        lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
        return -1;
    }
    memcpy(q, tq->data, n);
    for (size_t i = 0; i < n; i++)
        if (q[i] == -128) {
            lstm_fail(err, LSTM_ERR_FORMAT, "%s: %s%s.int8[%zu] is -128, outside [-127, 127]",
                      file, prefix, name, i);
            return -1;
        }
    a->q = q;
    a->scale = read_floats(h, st, ts, (size_t)a->rows, err);
    return a->scale ? 1 : -1;
}

/* Vector prefix+name of n floats; 1 found, 0 absent, -1 error. */
static int load_vector(lstm_embed_host *h, const lstm_st *st, const char *prefix,
                       const char *name, int n, const float **v, lstm_error *err) {
    const lstm_st_tensor *t = find(st, prefix, name, "");
    if (!t)
        return 0;
    if (t->ndim != 1 || t->shape[0] != n) {
        lstm_fail(err, LSTM_ERR_SHAPE, "%s: %s%s: expected a vector of %d", lstm_st_name(st),
                  prefix, name, n);
        return -1;
    }
    return (*v = read_floats(h, st, t, (size_t)n, err)) ? 1 : -1;
}

/* The prefix of a bare state_dict: what comes before weight_ih_l0, the
 * shortest of those there are (a file of PyTorch's tests may also hold
 * grad.weight_ih_l0). */
static int bare_prefix(const lstm_st *st, char *prefix, size_t cap) {
    size_t best = (size_t)-1;
    for (size_t i = 0; i < lstm_st_count(st); i++) {
        const char *name = lstm_st_tensor_at(st, i)->name;
        const char *at = strstr(name, "weight_ih_l0");
        size_t n = at ? (size_t)(at - name) : 0;
        if (at && (!strcmp(at, "weight_ih_l0") || !strcmp(at, "weight_ih_l0.int8")) && n < cap &&
            n < best) {
            memcpy(prefix, name, n);
            prefix[n] = 0;
            best = n;
        }
    }
    return best != (size_t)-1;
}

/* The LSTM's tensors under prefix, its configuration from their shapes. */
static lstm_status load_lstm(lstm_embed_host *h, const lstm_st *st, const char *prefix,
                             lstm_error *err) {
    lstm_embed_model *m = &h->m;
    const char *file = lstm_st_name(st);
    lstm_embed_matrix w0 = {0};
    int r = load_matrix(h, st, prefix, "weight_ih_l0", -1, -1, &w0, err);
    if (r <= 0)
        return r ? err->status
                 : lstm_fail(err, LSTM_ERR_SHAPE, "%s: no %sweight_ih_l0", file, prefix);
    if (w0.rows % 4)
        return lstm_fail(err, LSTM_ERR_SHAPE, "%s: %sweight_ih_l0 has %d rows, not 4 * hidden",
                         file, prefix, w0.rows);
    int H = w0.rows / 4, I = w0.cols, L = 0, P = 0;
    const char *rev = lstm_st_meta(st, "lstm.reverse");
    if (rev && strcmp(rev, "0") != 0) /* lstm_rnn_config's reverse */
        return lstm_fail(err, LSTM_ERR_UNSUPPORTED,
                         "%s: a reverse LSTM (metadata lstm.reverse = \"%s\"): the embeddable "
                         "runtime walks forward only",
                         file, rev);
    /* ONNX's cell options (lstm_rnn_config's peephole, clip, input_forget)
     * are not in the runtime's cell: refused, never exported without them */
    const char *clip = lstm_st_meta(st, "lstm.clip"), *cifg = lstm_st_meta(st, "lstm.input_forget");
    if (find(st, prefix, "weight_peephole_l0", "") || (clip && strtod(clip, NULL) != 0) ||
        (cifg && strcmp(cifg, "0") != 0))
        return lstm_fail(err, LSTM_ERR_UNSUPPORTED,
                         "%s: an LSTM with ONNX's cell options (peephole weights, lstm.clip or "
                         "lstm.input_forget): the embeddable runtime computes the plain cell only",
                         file);
    char name[64];
    for (L = 1; L < 64; L++) {
        snprintf(name, sizeof name, "weight_ih_l%d", L);
        if (!find(st, prefix, name, "") && !find(st, prefix, name, ".int8"))
            break;
    }
    int D = find(st, prefix, "weight_ih_l0_reverse", "") ||
                    find(st, prefix, "weight_ih_l0_reverse", ".int8")
                ? 2
                : 1;
    if (find(st, prefix, "weight_hr_l0", "") || find(st, prefix, "weight_hr_l0", ".int8")) {
        lstm_embed_matrix hr = {0};
        if (load_matrix(h, st, prefix, "weight_hr_l0", -1, H, &hr, err) < 0)
            return err->status;
        P = hr.rows;
    }
    int Ho = P ? P : H, bias = find(st, prefix, "bias_ih_l0", "") != NULL;
    m->input_size = I, m->hidden_size = H, m->proj_size = P, m->num_layers = L;
    m->bidirectional = D == 2;
    lstm_embed_matrix *wih = h->mats, *whh = wih + L * D, *whr = whh + L * D;
    const float **bih = h->bias, **bhh = bih + L * D;
    for (int l = 0; l < L; l++)
        for (int d = 0; d < D; d++) {
            int k = l * D + d, in = l ? D * Ho : I;
            const char *sfx = d ? "_reverse" : "";
            struct {
                const char *what;
                int rows, cols;
                lstm_embed_matrix *dst;
            } mats[3] = {{"weight_ih", 4 * H, in, &wih[k]},
                         {"weight_hh", 4 * H, Ho, &whh[k]},
                         {"weight_hr", P, H, &whr[k]}};
            for (int i = 0; i < (P ? 3 : 2); i++) {
                snprintf(name, sizeof name, "%s_l%d%s", mats[i].what, l, sfx);
                r = load_matrix(h, st, prefix, name, mats[i].rows, mats[i].cols, mats[i].dst, err);
                if (r <= 0)
                    return r ? err->status
                             : lstm_fail(err, LSTM_ERR_SHAPE, "%s: no %s%s", file, prefix, name);
            }
            for (int i = 0; bias && i < 2; i++) {
                snprintf(name, sizeof name, "bias_%s_l%d%s", i ? "hh" : "ih", l, sfx);
                r = load_vector(h, st, prefix, name, 4 * H, i ? &bhh[k] : &bih[k], err);
                if (r <= 0)
                    return r ? err->status
                             : lstm_fail(err, LSTM_ERR_SHAPE, "%s: no %s%s", file, prefix, name);
            }
        }
    m->w_ih = wih, m->w_hh = whh, m->w_hr = P ? whr : NULL;
    m->b_ih = bias ? bih : NULL, m->b_hh = bias ? bhh : NULL;
    return LSTM_OK;
}

/* The metadata entry key as a vocabulary. */
static lstm_vocab *meta_vocab(const lstm_st *st, const char *key, lstm_error *err) {
    const char *js = lstm_st_meta(st, key);
    char what[300];
    snprintf(what, sizeof what, "%s: %s", lstm_st_name(st), key);
    if (!js) {
        lstm_fail(err, LSTM_ERR_FORMAT, "%s: no such metadata entry", what);
        return NULL;
    }
    return vocab_from_json(js, what, err);
}

/* The features, decoder, labels and byte map of a task model. */
static lstm_status load_task(lstm_embed_host *h, const lstm_st *st, const char *task,
                             lstm_error *err) {
    /* the tagger's in the order task_tag.c concatenates them: those the
       file has, in this order (the configuration decides which it has) */
    static const char *const names[3][MAX_FEATURES] = {
        {"byte"},
        {"token"},
        {"word", "suffix1", "suffix2", "suffix3", "suffix4", "suffix5", "shape", "prefix1",
         "prefix2", "prefix3", "prefix4"}};
    _Static_assert(MAX_FEATURES == LSTM_EMBED_MAX_FEATURES, "one limit on the features");
    lstm_embed_model *m = &h->m;
    const char *file = lstm_st_name(st);
    int which = !strcmp(task, "lm") ? 0 : !strcmp(task, "classify") ? 1 : !strcmp(task, "tag") ? 2 : -1;
    if (which < 0)
        return lstm_fail(err, LSTM_ERR_FORMAT, "%s: lstm.task is '%s', not lm, classify or tag",
                         file, task);
    m->task = (lstm_embed_task)(which + 1);
    int dims = 0;
    m->nfeat = 0;
    for (int f = 0; f < MAX_FEATURES && names[which][f]; f++) {
        char name[64];
        snprintf(name, sizeof name, "embedding.%s.weight", names[which][f]);
        int r = load_matrix(h, st, "", name, -1, -1, &m->embedding[m->nfeat], err);
        if (r < 0)
            return err->status;
        if (r == 0 && f == 0)
            return lstm_fail(err, LSTM_ERR_SHAPE, "%s: no %s", file, name);
        if (r == 0 && m->nfeat == 1)
            break; /* the word alone */
        if (r == 0)
            continue;
        dims += m->embedding[m->nfeat].cols;
        m->nfeat++;
    }
    if (dims != m->input_size)
        return lstm_fail(err, LSTM_ERR_SHAPE,
                         "%s: the embeddings have %d values together, the LSTM's input %d", file,
                         dims, m->input_size);
    int D = m->bidirectional ? 2 : 1, Ho = m->proj_size ? m->proj_size : m->hidden_size;
    int r = load_matrix(h, st, "", "decoder.weight", -1, D * Ho, &m->decoder, err);
    if (r <= 0)
        return r ? err->status : lstm_fail(err, LSTM_ERR_SHAPE, "%s: no decoder.weight", file);
    r = load_vector(h, st, "", "decoder.bias", m->decoder.rows, &m->decoder_bias, err);
    if (r <= 0)
        return r ? err->status : lstm_fail(err, LSTM_ERR_SHAPE, "%s: no decoder.bias", file);
    /* a CRF: the three tensors together, where lstm.config says crf, as
     * the library loads it (a softmax tagger with stray CRF tensors, or a
     * CRF without them, would tag otherwise than lstm predict) */
    const lstm_st_tensor *tt = lstm_st_find(st, "crf.transitions");
    int has_s = lstm_st_find(st, "crf.start_transitions") != NULL;
    int has_e = lstm_st_find(st, "crf.end_transitions") != NULL;
    lstm_model_config cfg;
    lstm_error cerr;
    int says = lstm_st_meta(st, "lstm.config") && !model_read_config(st, &cfg, &cerr) && cfg.crf;
    if (!tt != !has_s || !tt != !has_e || !tt != !says)
        return lstm_fail(err, LSTM_ERR_FORMAT,
                         "%s: lstm.config %s a CRF, and the file has %s of crf.transitions, "
                         "crf.start_transitions, crf.end_transitions: a CRF tagger has all "
                         "three, any other none",
                         file, says ? "says" : "does not say",
                         tt && has_s && has_e ? "all" : tt || has_s || has_e ? "some" : "none");
    if (tt) { /* a tagger with a CRF over its tags (lstm train tag --crf 1) */
        int V = m->decoder.rows;
        if (which != 2 || tt->ndim != 2 || tt->shape[0] != V || tt->shape[1] != V)
            return lstm_fail(err, LSTM_ERR_SHAPE,
                             "%s: crf.transitions: expected a tagger's (%d, %d), its tags by "
                             "its tags", file, V, V);
        if (!(m->crf_transitions = read_floats(h, st, tt, (size_t)V * V, err)))
            return err->status;
        const char *names[2] = {"crf.start_transitions", "crf.end_transitions"};
        const float **v[2] = {&m->crf_start, &m->crf_end};
        for (int i = 0; i < 2; i++)
            if ((r = load_vector(h, st, "", names[i], V, v[i], err)) <= 0)
                return r ? err->status
                         : lstm_fail(err, LSTM_ERR_SHAPE, "%s: crf.transitions without %s", file,
                                     names[i]);
    }

    lstm_vocab *v = meta_vocab(st, which == 0 ? "lstm.vocab.byte" : "lstm.labels", err);
    if (!v)
        return err->status;
    int n = vocab_size(v);
    lstm_status s = LSTM_OK;
    if (which == 0) { /* the byte of each id, the id of each byte */
        if (n != m->embedding[0].rows || n != m->decoder.rows)
            s = lstm_fail(err, LSTM_ERR_FORMAT, "%s: lstm.vocab.byte has %d entries, the "
                          "embedding %d rows and the decoder %d", file, n,
                          m->embedding[0].rows, m->decoder.rows);
        else if (!(h->id_bytes = host_alloc(h, (size_t)n)))
            s = lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
        for (int b = 0; !s && b < 256; b++) {
            char ch = (char)b;
            int id = vocab_find(v, &ch, 1);
            h->byte_ids[b] = (int16_t)(id >= 2 ? id : -1);
            if (id >= 2)
                h->id_bytes[id] = (uint8_t)b;
        }
        m->byte_ids = h->byte_ids, m->id_bytes = h->id_bytes;
    } else {
        if (n != m->decoder.rows)
            s = lstm_fail(err, LSTM_ERR_FORMAT, "%s: lstm.labels has %d entries, the decoder %d rows",
                          file, n, m->decoder.rows);
        else if (!(h->labels = host_alloc(h, sizeof(char *) * (size_t)n)))
            s = lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
        for (int i = 0; !s && i < n; i++) {
            size_t len;
            const char *str = vocab_string(v, i, &len);
            if (!(h->labels[i] = host_alloc(h, len + 1)))
                s = lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
            else
                memcpy(h->labels[i], str, len);
        }
        m->nlabels = n;
        m->labels = (const char *const *)h->labels;
    }
    vocab_free(v);
    return s;
}

lstm_embed_host *lstm_embed_host_load(const lstm_st *st, lstm_error *err) {
    lstm_error local;
    if (!err)
        err = &local;
    lstm_embed_host *h = calloc(1, sizeof *h);
    if (!h) {
        lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
        return NULL;
    }
    const char *task = lstm_st_meta(st, "lstm.task");
    char prefix[128] = "lstm.";
    lstm_status s = LSTM_OK;
    if (!task && !bare_prefix(st, prefix, sizeof prefix))
        s = lstm_fail(err, LSTM_ERR_SHAPE,
                      "%s: neither a task model (lstm.task) nor an nn.LSTM state_dict "
                      "(no weight_ih_l0)", lstm_st_name(st));
    if (!s)
        s = load_lstm(h, st, prefix, err);
    if (!s && task)
        s = load_task(h, st, task, err);
    lstm_embed_model plain = h->m; /* the model without its CRF, to say which part fails */
    plain.crf_transitions = plain.crf_start = plain.crf_end = NULL;
    if (!s && lstm_embed_check(&h->m))
        s = !lstm_embed_check(&plain)
                ? lstm_fail(err, LSTM_ERR_UNSUPPORTED,
                            "%s: the CRF's parameters are not finite, or spread further than "
                            "the runtime computes (2 range(crf.transitions) + range(start) + "
                            "range(end) > 70; the library goes to logs there)",
                            lstm_st_name(st))
                : lstm_fail(err, LSTM_ERR_SHAPE, "%s: the tensors do not make a consistent model",
                            lstm_st_name(st));
    if (s) {
        lstm_embed_host_free(h);
        return NULL;
    }
    lstm_ok(err);
    return h;
}
