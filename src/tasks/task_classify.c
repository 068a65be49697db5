/* task_classify.c - the sequence classifier: fastText files
 * ("__label__NAME text", one document per line) or a directory laid out
 * like the IMDB corpus (DIR/LABEL/ *.txt); tokens are words (runs of
 * letters and digits, lowercased, and other characters on their own) or
 * bytes; a label per document from the mean of the LSTM's outputs over the
 * document's real steps.
 *
 *   tokens -> embedding -> LSTM -> mean over the real steps -> linear -> label
 */
#define _POSIX_C_SOURCE 200809L

#include "task.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define LABEL_PREFIX "__label__"
#define LABEL_PREFIX_LEN 9

/* chosen on folds of the training mail, never on the valid file:
 * docs/QUALITY.md (bench/quality.sh classify) */
static void defaults(lstm_model_config *c, lstm_train_config *tc) {
    c->embedding = 64;
    c->hidden = 128;
    c->layers = 1;
    c->bidirectional = 1;
    c->dropout = 0.3f;
    c->vocab_size = 30000;
    c->min_count = 2;
    c->max_length = 800; /* nearly every mail whole (4000 bytes at most) */
    tc->epochs = 20;
    tc->patience = 5;
    tc->optim.lr = 2e-3f;
    tc->ema = 0.99f;
    tc->log_every = 20;
}

/* ------------------------------------------------------------------ */
/* Data */

/* Sizes the document arrays for n documents (ndocs <= n). */
static int docs_resize(lstm_dataset *ds, size_t n) {
    return ds_resize(&ds->doc_text, n, sizeof *ds->doc_text) ||
           ds_resize(&ds->doc_len, n, sizeof *ds->doc_len) ||
           ds_resize(&ds->doc_label, n, sizeof *ds->doc_label) ||
           ds_resize(&ds->doc_line, n, sizeof *ds->doc_line) ||
           ds_resize(&ds->doc_file, n, sizeof *ds->doc_file);
}

static int has_label_prefix(const char *s, size_t n) {
    return n >= LABEL_PREFIX_LEN && memcmp(s, LABEL_PREFIX, LABEL_PREFIX_LEN) == 0;
}

/* fastText lines: "__label__NAME text" (labelled; blank lines skipped) or
 * one text per line, each line a document (unlabelled). */
static lstm_status parse(lstm_dataset *ds, size_t len, lstm_error *err) {
    const char *name = ds->name;
    size_t nlines = count_lines(ds->store, len);
    if (docs_resize(ds, nlines))
        return ds_nomem(err, name);
    lstm_vocab *labels = vocab_create();
    if (!labels)
        return ds_nomem(err, name);
    lstm_status status = LSTM_OK;
    line_reader r = {.buf = ds->store, .len = len};
    while (line_next(&r)) {
        char *s = r.s;
        size_t n = r.n, t = 0;
        int label = -1;
        if (ds->labelled) {
            if (is_blank(s, n))
                continue;
            if (!has_label_prefix(s, n)) {
                status = line_fail(err, name, r.number,
                                   "expected " LABEL_PREFIX "NAME at the start of the line");
                break;
            }
            size_t e = LABEL_PREFIX_LEN;
            while (e < n && !is_blank_char(s[e]))
                e++;
            if (e == LABEL_PREFIX_LEN) {
                status = line_fail(err, name, r.number,
                                   "expected " LABEL_PREFIX "NAME: the label name is empty");
                break;
            }
            if (memchr(s + LABEL_PREFIX_LEN, 0, e - LABEL_PREFIX_LEN)) {
                status = line_fail(err, name, r.number, "NUL byte in the label");
                break;
            }
            t = e;
            while (t < n && is_blank_char(s[t]))
                t++;
            if (t == n) {
                status = line_fail(err, name, r.number, "no text after the label");
                break;
            }
            if (has_label_prefix(s + t, n - t)) {
                status = line_fail(err, name, r.number,
                                   "more than one label: this tool classifies into one class");
                break;
            }
            label = vocab_add(labels, s + LABEL_PREFIX_LEN, e - LABEL_PREFIX_LEN);
            if (label < 0) {
                status = ds_nomem(err, name);
                break;
            }
        } else {
            /* Drop leading label tokens, so labelled files can be predicted on. */
            while (has_label_prefix(s + t, n - t)) {
                while (t < n && !is_blank_char(s[t]))
                    t++;
                while (t < n && is_blank_char(s[t]))
                    t++;
            }
        }
        size_t i = ds->ndocs++;
        ds->doc_text[i] = s + t;
        ds->doc_len[i] = n - t;
        ds->doc_label[i] = label;
        ds->doc_line[i] = r.number;
        ds->doc_file[i] = NULL;
        s[n] = 0; /* over the "\r", the "\n" or the spare byte */
    }
    if (!status && ds->labelled && ds->ndocs == 0)
        status = lstm_fail(err, LSTM_ERR_FORMAT,
                           NAME_FMT ": no documents: expected lines \"" LABEL_PREFIX "NAME text\"",
                           name);
    if (!status && (docs_resize(ds, ds->ndocs) || ds_labels_from_vocab(ds, labels)))
        status = ds_nomem(err, name);
    vocab_free(labels);
    return status;
}

static size_t count(const lstm_dataset *ds) { return ds->ndocs; }

/* Bytes of text. */
static size_t tokens(const lstm_dataset *ds) {
    size_t n = 0;
    for (size_t i = 0; i < ds->ndocs; i++)
        n += ds->doc_len[i];
    return n;
}

static lstm_dataset *subset(const lstm_dataset *ds, const unsigned char *pick, int want,
                            const char *name) {
    lstm_dataset *out = ds_create(ds->task, name, ds->labelled);
    if (!out || ds_copy_labels(out, ds))
        goto fail;
    size_t n = 0, bytes = 0;
    for (size_t i = 0; i < ds->ndocs; i++)
        if (pick[i] == want)
            n++, bytes += ds->doc_len[i] + 1;
    if (docs_resize(out, n) || !(out->store = malloc(bytes ? bytes : 1)))
        goto fail;
    char *at = out->store;
    for (size_t i = 0; i < ds->ndocs; i++) {
        if (pick[i] != want)
            continue;
        size_t k = out->ndocs;
        out->doc_file[k] = NULL;
        out->ndocs++;
        if (ds->doc_file[i] && !(out->doc_file[k] = strdup(ds->doc_file[i])))
            goto fail;
        memcpy(at, ds->doc_text[i], ds->doc_len[i] + 1);
        out->doc_text[k] = at;
        out->doc_len[k] = ds->doc_len[i];
        out->doc_label[k] = ds->doc_label[i];
        out->doc_line[k] = ds->doc_line[i];
        at += ds->doc_len[i] + 1;
    }
    return out;
fail:
    lstm_dataset_free(out);
    return NULL;
}

static uint64_t hash(const lstm_dataset *ds, uint64_t h) {
    for (size_t i = 0; i < ds->ndocs; i++) {
        h = ds_fnv(h, ds->doc_text[i], ds->doc_len[i]);
        h = ds_fnv(h, ds->labels[ds->doc_label[i]], strlen(ds->labels[ds->doc_label[i]]) + 1);
    }
    return h;
}

/* ------------------------------------------------------------------ */
/* Directories: DIR/LABEL/ *.txt */

/* "dir/name", malloc'd. */
static char *join_path(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    int slash = a > 0 && dir[a - 1] != '/';
    char *p = malloc(a + slash + b + 1);
    if (p) {
        memcpy(p, dir, a);
        if (slash)
            p[a] = '/';
        memcpy(p + a + slash, name, b + 1);
    }
    return p;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* The names in dir, sorted, without hidden ones: subdirectories (want_dirs)
 * or regular files ending in ".txt". Symbolic links are followed. */
static lstm_status list_dir(const char *dir, int want_dirs, char ***names, size_t *count,
                            lstm_error *err) {
    *names = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d)
        return lstm_fail(err, LSTM_ERR_IO, NAME_FMT ": cannot open directory: %s", dir,
                         strerror(errno));
    size_t n = 0, cap = 0;
    char **list = NULL;
    lstm_status status = LSTM_OK;
    struct dirent *de;
    for (errno = 0; (de = readdir(d)) != NULL; errno = 0) {
        const char *nm = de->d_name;
        size_t len = strlen(nm);
        if (nm[0] == '.' || (!want_dirs && (len < 4 || strcmp(nm + len - 4, ".txt") != 0)))
            continue;
        char *path = join_path(dir, nm);
        if (!path) {
            status = ds_nomem(err, dir);
            break;
        }
        struct stat sb;
        int keep = stat(path, &sb) == 0 && (want_dirs ? S_ISDIR(sb.st_mode) : S_ISREG(sb.st_mode));
        free(path);
        if (!keep)
            continue;
        if (n == cap && ds_resize(&list, cap = cap ? cap * 2 : 16, sizeof *list)) {
            status = ds_nomem(err, dir);
            break;
        }
        if (!(list[n] = strdup(nm))) {
            status = ds_nomem(err, dir);
            break;
        }
        n++;
    }
    if (!status && errno)
        status = lstm_fail(err, LSTM_ERR_IO, NAME_FMT ": cannot read directory: %s", dir,
                           strerror(errno));
    closedir(d);
    if (status) {
        free_names(list, n);
        return status;
    }
    if (n > 1)
        qsort(list, n, sizeof *list, compare_names);
    *names = list;
    *count = n;
    return LSTM_OK;
}

/* Grows *buf to hold at least `need` bytes (at least doubling); 0 or -1. */
static int grow(char **buf, size_t *cap, size_t need) {
    if (need <= *cap)
        return 0;
    size_t c = *cap > SIZE_MAX / 2 ? SIZE_MAX : *cap * 2;
    if (c < need)
        c = need;
    char *b = realloc(*buf, c);
    if (!b)
        return -1;
    *buf = b;
    *cap = c;
    return 0;
}

/* Reads the files of one label's subdirectory into ds: texts are appended
 * to ds->store, which moves as it grows, so their offsets wait in doc_line
 * until read_dir turns them into pointers. */
static lstm_status read_label_dir(lstm_dataset *ds, const char *sub, int label, size_t *len,
                                  size_t *cap, size_t *doc_cap, lstm_error *err) {
    char **files;
    size_t nfiles;
    lstm_status status = list_dir(sub, 0, &files, &nfiles, err);
    for (size_t f = 0; !status && f < nfiles; f++) {
        char *path = join_path(sub, files[f]);
        if (!path) {
            status = ds_nomem(err, ds->name);
            break;
        }
        if (ds->ndocs == *doc_cap &&
            docs_resize(ds, *doc_cap = *doc_cap ? *doc_cap * 2 : 64)) {
            free(path);
            status = ds_nomem(err, ds->name);
            break;
        }
        size_t start = *len, n;
        char *text;
        status = lstm_read_file(path, &text, &n, err);
        if (!status) {
            n = ds_skip_bom(text, n);
            if (n == 0)
                status = lstm_fail(err, LSTM_ERR_FORMAT, NAME_FMT ": empty file: no text", path);
            else if (grow(&ds->store, cap, start + n + 1))
                status = ds_nomem(err, ds->name);
            else
                memcpy(ds->store + start, text, n);
            free(text);
        }
        if (status) {
            free(path);
            break;
        }
        *len = start + n;
        ds->store[(*len)++] = 0;
        size_t i = ds->ndocs++;
        ds->doc_text[i] = NULL;
        ds->doc_len[i] = *len - 1 - start;
        ds->doc_label[i] = label;
        ds->doc_line[i] = start;
        ds->doc_file[i] = path;
    }
    free_names(files, nfiles);
    return status;
}

/* DIR/LABEL/ *.txt, one document per file. */
static lstm_dataset *read_dir(const char *dir, lstm_error *err) {
    lstm_dataset *ds = ds_create(LSTM_TASK_CLASSIFY, dir, 1);
    if (!ds) {
        ds_nomem(err, dir);
        return NULL;
    }
    char **subs;
    size_t nsubs, len = 0, cap = 0, doc_cap = 0;
    lstm_status status = list_dir(dir, 1, &subs, &nsubs, err);
    if (!status && !(ds->labels = calloc(nsubs ? nsubs : 1, sizeof *ds->labels)))
        status = ds_nomem(err, dir);
    for (size_t i = 0; !status && i < nsubs; i++) {
        char *sub = join_path(dir, subs[i]);
        if (!sub) {
            status = ds_nomem(err, dir);
            break;
        }
        size_t before = ds->ndocs;
        status = read_label_dir(ds, sub, ds->nlabels, &len, &cap, &doc_cap, err);
        free(sub);
        /* A subdirectory without .txt files is not a label. */
        if (!status && ds->ndocs > before) {
            ds->labels[ds->nlabels] = subs[i];
            subs[i] = NULL;
            ds->nlabels++;
        }
    }
    free_names(subs, nsubs);
    if (!status && ds->ndocs == 0)
        status = lstm_fail(err, LSTM_ERR_FORMAT,
                           NAME_FMT ": no subdirectory holds a .txt file: expected DIR/LABEL/*.txt",
                           dir);
    if (status) {
        lstm_dataset_free(ds);
        return NULL;
    }
    for (size_t i = 0; i < ds->ndocs; i++) {
        ds->doc_text[i] = ds->store + ds->doc_line[i];
        ds->doc_line[i] = 0;
    }
    docs_resize(ds, ds->ndocs); /* shrinking: the old arrays stay on failure */
    lstm_ok(err);
    return ds;
}

/* ------------------------------------------------------------------ */
/* Tokens */

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

static void features(lstm_model *m) {
    feature *f = &m->feat[0];
    snprintf(f->name, sizeof f->name, "token");
    f->kind = 0, f->k = 0, f->dim = m->cfg.embedding, f->param = -1;
    m->nfeat = 1;
}

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

/* The tokens of the training texts, at most vocab_size of those seen
 * min_count times. */
static lstm_status vocabs(lstm_model *m, const lstm_dataset *ds, lstm_error *err) {
    const lstm_model_config *c = &m->cfg;
    lstm_vocab *raw = vocab_create();
    count_arg ca = {raw, !raw};
    for (size_t d = 0; d < ds->ndocs && !ca.failed; d++)
        tokenize(ds->doc_text[d], ds->doc_len[d], c->byte_tokens, c->max_length, count_token, &ca);
    lstm_status s = ca.failed ? lstm_fail(err, LSTM_ERR_NOMEM, "out of memory building vocabularies")
                              : task_prune_vocab(&m->feat[0], raw, c->vocab_size, c->min_count, err);
    vocab_free(raw);
    return s;
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

/* Each document as token ids (an empty text is one <unk>), its label. */
static lstm_status encode(const lstm_model *m, const lstm_dataset *ds, encoded_set *e,
                          lstm_error *err) {
    memset(e, 0, sizeof *e);
    int *map = encoded_map_labels(m, ds);
    e->start = malloc(sizeof(size_t) * (ds->ndocs + 1));
    if (!map || !e->start) {
        free(map);
        encoded_free(e);
        return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory encoding %s", ds->name);
    }
    size_t total = 0;
    for (size_t i = 0; i < ds->ndocs; i++) {
        e->start[i] = total;
        size_t n = 0;
        tokenize(ds->doc_text[i], ds->doc_len[i], m->cfg.byte_tokens, m->cfg.max_length,
                 count_only, &n);
        total += n ? n : 1;
    }
    e->start[ds->ndocs] = total;
    lstm_status s = encoded_alloc(e, ds->ndocs, total, 1, 0, 0, ds->name, err);
    for (size_t d = 0; !s && d < ds->ndocs; d++) {
        id_arg a = {m->feat[0].vocab, e->ids[0] + e->start[d], 0};
        tokenize(ds->doc_text[d], ds->doc_len[d], m->cfg.byte_tokens, m->cfg.max_length, put_id,
                 &a);
        if (a.n == 0)
            a.out[0] = UNK_ID;
        int lab = ds->doc_label ? ds->doc_label[d] : -1;
        e->targets[d] = lab >= 0 ? map[lab] : -1;
    }
    free(map);
    return s;
}

/* ------------------------------------------------------------------ */
/* Training, evaluation, prediction */

/* The valid set's size in tokens: its bytes, scaled by the training set's
 * tokens per byte. */
static double valid_tokens(const trainer *t, const lstm_dataset *valid) {
    double n = (double)lstm_dataset_tokens(valid);
    const encoded_set *e = seq_train_encoded(t);
    if (lstm_dataset_tokens(t->train) > 0)
        n *= (double)e->start[e->n] / (double)lstm_dataset_tokens(t->train);
    return n;
}

/* The confusion matrix. */
static void visit_confusion(const lstm_model *m, const encoded_set *e, const model_batch *b,
                       const size_t *order, const float *logp, lstm_eval *out) {
    for (int j = 0; j < b->B; j++) {
        int truth = e->targets[order[j]];
        if (truth >= 0)
            out->confusion[(size_t)truth * m->nlabels +
                           task_argmax(logp + (size_t)j * m->nout, m->nout)]++;
    }
}

static lstm_status evaluate(lstm_model *m, lstm_ctx *ctx, const lstm_dataset *ds, int streams,
                            const lstm_comm *comm, lstm_eval *out, lstm_error *err) {
    (void)streams;
    out->nlabels = m->nlabels;
    if (!(out->confusion = calloc((size_t)m->nlabels * m->nlabels, sizeof(long))))
        return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
    return seq_evaluate(m, ctx, ds, ds->doc_label, ds->ndocs, visit_confusion, comm, out, err);
}

const task_ops task_classify = {
    .task = LSTM_TASK_CLASSIFY,
    .name = "classify",
    .title = "a classifier",
    .example = "document",
    .label = "label",
    .metric = "accuracy",
    .pooled = 1,
    .defaults = defaults,
    .parse = parse,
    .read_dir = read_dir,
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
