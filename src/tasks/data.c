/* data.c - the data set object every task shares: reading a file, a
 * directory or a buffer (the parsing is the task's, task_*.c), counts, the
 * random split in two; the table of tasks; and the helpers the tasks'
 * parsers share (lines, messages, growing arrays). */
#define _POSIX_C_SOURCE 200809L

#include "task.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* The tasks                                                           */

/* Indexed by lstm_task. A new task adds its table here. */
static const task_ops *const task_table[] = {&task_lm, &task_classify, &task_tag};
#define NTASKS (sizeof task_table / sizeof task_table[0])

const task_ops *task_find(lstm_task task) {
    return (unsigned)task < NTASKS ? task_table[task] : NULL;
}

/* "lm", "classify", "tag"; "?" for a value outside the enum. */
const char *lstm_task_name(lstm_task task) {
    const task_ops *ops = task_find(task);
    return ops ? ops->name : "?";
}

const char *lstm_task_example(lstm_task task) {
    const task_ops *ops = task_find(task);
    return ops ? ops->example : "?";
}

/* The task named `name`, or -1. */
int lstm_task_parse(const char *name) {
    for (size_t i = 0; name && i < NTASKS; i++)
        if (strcmp(name, task_table[i]->name) == 0)
            return (int)task_table[i]->task;
    return -1;
}

/* ------------------------------------------------------------------ */
/* Helpers of the parsers                                              */

/* Fills err with "<name>: line N: <message>"; returns LSTM_ERR_FORMAT. */
lstm_status line_fail(lstm_error *err, const char *name, size_t line, const char *fmt,
                      ...) {
    char msg[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lstm_fail(err, LSTM_ERR_FORMAT, NAME_FMT ": line %zu: %s", name, line, msg);
}

lstm_status ds_nomem(lstm_error *err, const char *name) {
    return lstm_fail(err, LSTM_ERR_NOMEM, NAME_FMT ": out of memory", name);
}

/* realloc of n elements of `size` bytes (at least one element); 0 or -1. */
int ds_resize(void *pp, size_t n, size_t size) {
    void **p = pp;
    size_t bytes = task_mul_size(n ? n : 1, size);
    if (bytes == (size_t)-1)
        return -1;
    void *q = realloc(*p, bytes);
    if (!q)
        return -1;
    *p = q;
    return 0;
}

/* ds->labels from the names in v, in id order (the order of first appearance). */
int ds_labels_from_vocab(lstm_dataset *ds, const lstm_vocab *v) {
    int n = vocab_size(v);
    ds->labels = calloc(n ? (size_t)n : 1, sizeof *ds->labels);
    if (!ds->labels)
        return -1;
    for (int i = 0; i < n; i++) {
        ds->labels[i] = strdup(vocab_string(v, i, NULL));
        if (!ds->labels[i])
            return -1;
        ds->nlabels = i + 1;
    }
    return 0;
}

int ds_copy_labels(lstm_dataset *dst, const lstm_dataset *src) {
    dst->labels = calloc(src->nlabels ? (size_t)src->nlabels : 1, sizeof *dst->labels);
    if (!dst->labels)
        return -1;
    for (int i = 0; i < src->nlabels; i++) {
        dst->labels[i] = strdup(src->labels[i]);
        if (!dst->labels[i])
            return -1;
        dst->nlabels = i + 1;
    }
    return 0;
}

int line_next(line_reader *r) {
    if (r->pos >= r->len)
        return 0;
    char *s = r->buf + r->pos;
    char *nl = memchr(s, '\n', r->len - r->pos);
    size_t n = nl ? (size_t)(nl - s) : r->len - r->pos;
    r->pos += n + (nl != NULL);
    if (n > 0 && s[n - 1] == '\r')
        n--;
    r->s = s;
    r->n = n;
    r->number++;
    return 1;
}

/* Lines in buf: a last line without "\n" counts too. */
size_t count_lines(const char *buf, size_t len) {
    size_t n = 0;
    for (const char *p = buf, *end = buf + len; p < end; n++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        p = nl ? nl + 1 : end;
    }
    return n;
}

int is_blank_char(char c) { return c == ' ' || c == '\t'; }

/* 1 when the line holds only spaces and tabs (or nothing). */
int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!is_blank_char(s[i]))
            return 0;
    return 1;
}

/* k of n indices chosen by a partial Fisher-Yates shuffle seeded with
 * seed: pick[i] = 1 for the chosen; malloc'd (NULL when out of memory). */
static unsigned char *choose(size_t n, size_t k, uint64_t seed) {
    unsigned char *pick = calloc(n ? n : 1, 1);
    size_t *order = malloc(task_mul_size(n ? n : 1, sizeof *order));
    if (!pick || !order) {
        free(pick);
        free(order);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    lstm_rng rng;
    lstm_rng_seed(&rng, seed);
    for (size_t i = 0; i < k; i++) {
        size_t j = i + (size_t)lstm_rng_below(&rng, n - i);
        size_t t = order[i];
        order[i] = order[j];
        order[j] = t;
        pick[order[i]] = 1;
    }
    free(order);
    return pick;
}

size_t ds_skip_bom(char *buf, size_t len) {
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) {
        memmove(buf, buf + 3, len - 3);
        return len - 3;
    }
    return len;
}

/* ------------------------------------------------------------------ */
/* Data set objects                                                    */

/* An empty data set; NULL when out of memory. */
lstm_dataset *ds_create(lstm_task task, const char *name, int labelled) {
    lstm_dataset *ds = calloc(1, sizeof *ds);
    if (!ds)
        return NULL;
    ds->task = task;
    ds->labelled = labelled;
    ds->name = strdup(name);
    if (!ds->name) {
        free(ds);
        return NULL;
    }
    return ds;
}

/* Frees the examples of ds, leaving a valid empty set with its labels. */
static void ds_clear(lstm_dataset *ds) {
    for (size_t i = 0; ds->doc_file && i < ds->ndocs; i++)
        free(ds->doc_file[i]);
    free(ds->store);
    free(ds->doc_text);
    free(ds->doc_len);
    free(ds->doc_label);
    free(ds->doc_line);
    free(ds->doc_file);
    free(ds->words);
    free(ds->word_tag);
    free(ds->sent_line);
    ds->store = NULL;
    ds->bytes = NULL;
    ds->nbytes = 0;
    ds->ndocs = 0;
    ds->doc_text = NULL;
    ds->doc_len = NULL;
    ds->doc_label = NULL;
    ds->doc_line = NULL;
    ds->doc_file = NULL;
    ds->words = NULL;
    ds->word_tag = NULL;
    ds->sent_line = NULL;
    ds->nsent = 0;
    ds->nwords = 0;
    /* sent_start keeps its one entry for zero sentences. */
    if (ds->sent_start)
        ds->sent_start[0] = 0;
}

/* Frees ds and everything it owns; accepts NULL. */
void lstm_dataset_free(lstm_dataset *ds) {
    if (!ds)
        return;
    ds_clear(ds);
    free(ds->sent_start);
    for (int i = 0; i < ds->nlabels; i++)
        free(ds->labels[i]);
    free(ds->labels);
    free(ds->name);
    free(ds);
}

lstm_task lstm_dataset_task(const lstm_dataset *ds) { return ds ? ds->task : LSTM_TASK_LM; }

const char *lstm_dataset_name(const lstm_dataset *ds) { return ds ? ds->name : NULL; }

/* Examples: bytes (lm), documents (classify), sentences (tag). */
size_t lstm_dataset_count(const lstm_dataset *ds) {
    return ds ? task_find(ds->task)->count(ds) : 0;
}

/* Tokens: bytes (lm), bytes of text (classify), words (tag). */
size_t lstm_dataset_tokens(const lstm_dataset *ds) {
    return ds ? task_find(ds->task)->tokens(ds) : 0;
}

/* ------------------------------------------------------------------ */
/* Reading                                                             */

/* A data set parsed from buf (len bytes and one spare, malloc'd), which it
 * takes over even on failure. */
static lstm_dataset *parse_owned(lstm_task task, char *buf, size_t len, const char *name,
                                 int labelled, lstm_error *err) {
    lstm_dataset *ds = ds_create(task, name, labelled);
    if (!ds) {
        free(buf);
        ds_nomem(err, name);
        return NULL;
    }
    ds->store = buf;
    len = ds_skip_bom(buf, len);
    if (task_find(task)->parse(ds, len, err)) {
        lstm_dataset_free(ds);
        return NULL;
    }
    lstm_ok(err);
    return ds;
}

/* A file (or, for labelled classify, a directory) as a data set. */
static lstm_dataset *read_path(lstm_task task, const char *path, int labelled, lstm_error *err) {
    if (!path) {
        lstm_fail(err, LSTM_ERR_INVALID, "lstm_dataset_read: path is NULL");
        return NULL;
    }
    const task_ops *ops = task_find(task);
    if (!ops) {
        lstm_fail(err, LSTM_ERR_INVALID, NAME_FMT ": unknown task %d", path, (int)task);
        return NULL;
    }
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        if (ops->read_dir && labelled)
            return ops->read_dir(path, err);
        lstm_fail(err, LSTM_ERR_IO, NAME_FMT ": is a directory; %s %s data is read from a file",
                  path, labelled ? "labelled" : "unlabelled", lstm_task_name(task));
        return NULL;
    }
    char *buf;
    size_t len;
    if (lstm_read_file(path, &buf, &len, err))
        return NULL;
    return parse_owned(task, buf, len, path, labelled, err); /* len bytes and a NUL */
}

lstm_dataset *lstm_dataset_read(lstm_task task, const char *path, lstm_error *err) {
    return read_path(task, path, 1, err);
}

lstm_dataset *lstm_dataset_read_unlabelled(lstm_task task, const char *path, lstm_error *err) {
    return read_path(task, path, 0, err);
}

/* Copies buf and parses it; name (NULL: "<memory>") is used in messages. */
lstm_dataset *lstm_dataset_from_memory(lstm_task task, const void *buf, size_t len,
                                       const char *name, int labelled, lstm_error *err) {
    if (!name)
        name = "<memory>";
    if (!buf && len) {
        lstm_fail(err, LSTM_ERR_INVALID, NAME_FMT ": buffer is NULL", name);
        return NULL;
    }
    if (!task_find(task)) {
        lstm_fail(err, LSTM_ERR_INVALID, NAME_FMT ": unknown task %d", name, (int)task);
        return NULL;
    }
    char *copy = len < SIZE_MAX ? malloc(len + 1) : NULL;
    if (!copy) {
        lstm_fail(err, LSTM_ERR_NOMEM, NAME_FMT ": out of memory copying %zu bytes", name, len);
        return NULL;
    }
    if (len)
        memcpy(copy, buf, len);
    return parse_owned(task, copy, len, name, labelled != 0, err);
}

/* ------------------------------------------------------------------ */
/* Split                                                               */

/* Moves round(portion * count) examples, chosen by a partial Fisher-Yates
 * shuffle seeded with `seed` (lm: the last bytes), into *part and the rest
 * into *rest, both in ds's order; at least one example goes to each. ds is
 * left empty. On failure ds is untouched and *rest, *part are NULL. */
lstm_status lstm_dataset_split(lstm_dataset *ds, double portion, uint64_t seed,
                               lstm_dataset **rest, lstm_dataset **part, lstm_error *err) {
    if (rest)
        *rest = NULL;
    if (part)
        *part = NULL;
    if (!ds || !rest || !part)
        return lstm_fail(err, LSTM_ERR_INVALID, "lstm_dataset_split: NULL argument");
    if (!(portion > 0 && portion < 1))
        return lstm_fail(err, LSTM_ERR_INVALID,
                         NAME_FMT ": cannot split off a portion of %g: it must be in (0, 1)",
                         ds->name, portion);
    size_t n = lstm_dataset_count(ds);
    const task_ops *ops = task_find(ds->task);
    const char *unit = ops->example;
    if (n < 2)
        return lstm_fail(err, LSTM_ERR_INVALID,
                         NAME_FMT ": cannot split %zu %s%s in two: at least 2 are needed",
                         ds->name, n, unit, n == 1 ? "" : "s");
    size_t k = (size_t)floor(portion * (double)n + 0.5);
    if (k < 1)
        k = 1;
    if (k > n - 1)
        k = n - 1;

    size_t nlen = strlen(ds->name) + 32;
    char *rest_name = malloc(nlen), *part_name = malloc(nlen);
    lstm_dataset *a = NULL, *b = NULL;
    if (!rest_name || !part_name)
        goto nomem;
    snprintf(rest_name, nlen, "%s (split: rest)", ds->name);
    snprintf(part_name, nlen, "%s (split: part)", ds->name);
    if (ops->split) {
        if (ops->split(ds, k, seed, rest_name, part_name, &a, &b))
            goto nomem;
    } else {
        unsigned char *pick = choose(n, k, seed);
        a = pick ? ops->subset(ds, pick, 0, rest_name) : NULL;
        b = pick ? ops->subset(ds, pick, 1, part_name) : NULL;
        free(pick);
        if (!a || !b)
            goto nomem;
    }
    free(rest_name);
    free(part_name);
    ds_clear(ds);
    *rest = a;
    *part = b;
    return lstm_ok(err);
nomem:
    free(rest_name);
    free(part_name);
    lstm_dataset_free(a);
    lstm_dataset_free(b);
    return ds_nomem(err, ds->name);
}

uint64_t ds_fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}
