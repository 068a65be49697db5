/* data.c - the data sets of the three tasks: readers for files, directories
 * and buffers, which check every line and say where the input is wrong, and
 * the random split of a data set into two. */
#define _POSIX_C_SOURCE 200809L

#include "data.h"
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* File names in messages are cut to this many bytes, so the line number and
 * the complaint after them always fit. */
#define NAME_FMT "%.300s"

#define LABEL_PREFIX "__label__"
#define LABEL_PREFIX_LEN 9

static const char *const task_names[] = {"lm", "classify", "tag"};

/* "lm", "classify", "tag"; "?" for a value outside the enum. */
const char *lstm_task_name(lstm_task task) {
    return (unsigned)task < sizeof task_names / sizeof task_names[0] ? task_names[task] : "?";
}

/* The task named `name`, or -1. */
int lstm_task_parse(const char *name) {
    for (int i = 0; name && i < (int)(sizeof task_names / sizeof task_names[0]); i++)
        if (strcmp(name, task_names[i]) == 0)
            return i;
    return -1;
}

/* ------------------------------------------------------------------ */
/* Data set objects                                                    */

/* Fills err with "<name>: line N: <message>"; returns LSTM_ERR_FORMAT. */
static lstm_status line_fail(lstm_error *err, const char *name, size_t line, const char *fmt,
                             ...) LSTM_PRINTF(4, 5);
static lstm_status line_fail(lstm_error *err, const char *name, size_t line, const char *fmt,
                             ...) {
    char msg[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lstm_fail(err, LSTM_ERR_FORMAT, NAME_FMT ": line %zu: %s", name, line, msg);
}

static lstm_status nomem(lstm_error *err, const char *name) {
    return lstm_fail(err, LSTM_ERR_NOMEM, NAME_FMT ": out of memory", name);
}

/* An empty data set; NULL when out of memory. */
static lstm_dataset *ds_create(lstm_task task, const char *name, int labelled) {
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
    if (!ds)
        return 0;
    switch (ds->task) {
    case LSTM_TASK_LM: return ds->nbytes;
    case LSTM_TASK_CLASSIFY: return ds->ndocs;
    case LSTM_TASK_TAG: return ds->nsent;
    }
    return 0;
}

/* Tokens: bytes (lm), bytes of text (classify), words (tag). */
size_t lstm_dataset_tokens(const lstm_dataset *ds) {
    if (!ds)
        return 0;
    switch (ds->task) {
    case LSTM_TASK_LM: return ds->nbytes;
    case LSTM_TASK_CLASSIFY: {
        size_t n = 0;
        for (size_t i = 0; i < ds->ndocs; i++)
            n += ds->doc_len[i];
        return n;
    }
    case LSTM_TASK_TAG: return ds->nwords;
    }
    return 0;
}

/* realloc of n elements of `size` bytes (at least one element); 0 or -1. */
static int resize(void *pp, size_t n, size_t size) {
    void **p = pp;
    size_t bytes = lstm_mul_size(n ? n : 1, size);
    if (bytes == (size_t)-1)
        return -1;
    void *q = realloc(*p, bytes);
    if (!q)
        return -1;
    *p = q;
    return 0;
}

/* Sizes the document arrays for n documents (ndocs <= n). */
static int docs_resize(lstm_dataset *ds, size_t n) {
    return resize(&ds->doc_text, n, sizeof *ds->doc_text) ||
           resize(&ds->doc_len, n, sizeof *ds->doc_len) ||
           resize(&ds->doc_label, n, sizeof *ds->doc_label) ||
           resize(&ds->doc_line, n, sizeof *ds->doc_line) ||
           resize(&ds->doc_file, n, sizeof *ds->doc_file);
}

/* Sizes the sentence arrays for n sentences and the word arrays for m words. */
static int sents_resize(lstm_dataset *ds, size_t n, size_t m) {
    return resize(&ds->sent_start, n + 1, sizeof *ds->sent_start) ||
           resize(&ds->sent_line, n, sizeof *ds->sent_line) ||
           resize(&ds->words, m, sizeof *ds->words) ||
           resize(&ds->word_tag, m, sizeof *ds->word_tag);
}

/* ds->labels from the names in v, in id order (the order of first appearance). */
static int labels_from_vocab(lstm_dataset *ds, const lstm_vocab *v) {
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

static int copy_labels(lstm_dataset *dst, const lstm_dataset *src) {
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

/* ------------------------------------------------------------------ */
/* Lines                                                               */

/* Walks a buffer line by line. A line ends at "\n" or at the end of the
 * buffer; its text excludes the "\n" and one "\r" before it. */
typedef struct {
    char *buf;
    size_t len;
    size_t pos;    /* where the next line starts */
    size_t number; /* of the current line, from 1 */
    char *s;       /* the current line's text, n bytes */
    size_t n;
} line_reader;

static int next_line(line_reader *r) {
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
static size_t count_lines(const char *buf, size_t len) {
    size_t n = 0;
    for (const char *p = buf, *end = buf + len; p < end; n++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        p = nl ? nl + 1 : end;
    }
    return n;
}

static int is_blank_char(char c) { return c == ' ' || c == '\t'; }

/* 1 when the line holds only spaces and tabs (or nothing). */
static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!is_blank_char(s[i]))
            return 0;
    return 1;
}

static int has_label_prefix(const char *s, size_t n) {
    return n >= LABEL_PREFIX_LEN && memcmp(s, LABEL_PREFIX, LABEL_PREFIX_LEN) == 0;
}

/* ------------------------------------------------------------------ */
/* Parsers. Each works in place on ds->store (len bytes plus one spare),
 * writing NULs after the texts and words it keeps.                    */

static lstm_status parse_lm(lstm_dataset *ds, size_t len, lstm_error *err) {
    if (len == 0)
        return lstm_fail(err, LSTM_ERR_FORMAT, NAME_FMT ": empty: no text", ds->name);
    ds->bytes = (unsigned char *)ds->store;
    ds->nbytes = len;
    ds->store[len] = 0;
    return LSTM_OK;
}

/* fastText lines: "__label__NAME text" (labelled; blank lines skipped) or
 * one text per line, each line a document (unlabelled). */
static lstm_status parse_classify(lstm_dataset *ds, size_t len, lstm_error *err) {
    const char *name = ds->name;
    size_t nlines = count_lines(ds->store, len);
    if (docs_resize(ds, nlines))
        return nomem(err, name);
    lstm_vocab *labels = vocab_create();
    if (!labels)
        return nomem(err, name);
    lstm_status status = LSTM_OK;
    line_reader r = {.buf = ds->store, .len = len};
    while (next_line(&r)) {
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
                status = nomem(err, name);
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
    if (!status && (docs_resize(ds, ds->ndocs) || labels_from_vocab(ds, labels)))
        status = nomem(err, name);
    vocab_free(labels);
    return status;
}

/* "word<TAB>tag" lines, a blank line after each sentence. */
static lstm_status parse_tag_labelled(lstm_dataset *ds, size_t len, lstm_error *err) {
    const char *name = ds->name;
    size_t nlines = count_lines(ds->store, len);
    if (sents_resize(ds, nlines, nlines))
        return nomem(err, name);
    ds->sent_start[0] = 0;
    lstm_vocab *tags = vocab_create();
    if (!tags)
        return nomem(err, name);
    lstm_status status = LSTM_OK;
    int in_sentence = 0;
    line_reader r = {.buf = ds->store, .len = len};
    while (next_line(&r)) {
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
        if (wlen == 0 || tlen == 0) {
            status = line_fail(err, name, r.number, "empty %s: expected word<TAB>tag",
                               wlen == 0 ? "word" : "tag");
            break;
        }
        if (memchr(s, 0, n)) {
            status = line_fail(err, name, r.number, "NUL byte: expected word<TAB>tag");
            break;
        }
        int tag = vocab_add(tags, tab + 1, tlen);
        if (tag < 0) {
            status = nomem(err, name);
            break;
        }
        if (!in_sentence)
            ds->sent_line[ds->nsent] = r.number;
        in_sentence = 1;
        *tab = 0;
        s[n] = 0;
        ds->words[ds->nwords] = s;
        ds->word_tag[ds->nwords++] = tag;
    }
    if (!status && in_sentence)
        ds->sent_start[++ds->nsent] = ds->nwords;
    if (!status && ds->nsent == 0)
        status = lstm_fail(err, LSTM_ERR_FORMAT,
                           NAME_FMT ": no sentences: expected word<TAB>tag lines", name);
    if (!status &&
        (sents_resize(ds, ds->nsent, ds->nwords) || labels_from_vocab(ds, tags)))
        status = nomem(err, name);
    vocab_free(tags);
    return status;
}

/* One sentence per line (blank lines are sentences of no words), words
 * separated by spaces and tabs. */
static lstm_status parse_tag_unlabelled(lstm_dataset *ds, size_t len, lstm_error *err) {
    const char *name = ds->name;
    size_t nlines = count_lines(ds->store, len), nwords = 0;
    line_reader r = {.buf = ds->store, .len = len};
    while (next_line(&r)) {
        if (memchr(r.s, 0, r.n))
            return line_fail(err, name, r.number, "NUL byte in a word");
        for (size_t i = 0; i < r.n; i++)
            nwords += !is_blank_char(r.s[i]) && (i == 0 || is_blank_char(r.s[i - 1]));
    }
    if (sents_resize(ds, nlines, nwords) || (ds->labels = calloc(1, sizeof *ds->labels)) == NULL)
        return nomem(err, name);
    ds->sent_start[0] = 0;
    r = (line_reader){.buf = ds->store, .len = len};
    while (next_line(&r)) {
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

/* A data set parsed from buf (len bytes and one spare, malloc'd), which it
 * takes over even on failure. */
static lstm_dataset *parse_owned(lstm_task task, char *buf, size_t len, const char *name,
                                 int labelled, lstm_error *err) {
    lstm_dataset *ds = ds_create(task, name, labelled);
    if (!ds) {
        free(buf);
        nomem(err, name);
        return NULL;
    }
    ds->store = buf;
    lstm_status status = LSTM_ERR_INVALID;
    switch (task) {
    case LSTM_TASK_LM: status = parse_lm(ds, len, err); break;
    case LSTM_TASK_CLASSIFY: status = parse_classify(ds, len, err); break;
    case LSTM_TASK_TAG:
        status = labelled ? parse_tag_labelled(ds, len, err) : parse_tag_unlabelled(ds, len, err);
        break;
    }
    if (status) {
        lstm_dataset_free(ds);
        return NULL;
    }
    lstm_ok(err);
    return ds;
}

/* ------------------------------------------------------------------ */
/* Files and directories                                               */

/* Grows *buf to hold at least `need` bytes (at least doubling); 0 or -1. */
static int grow_bytes(char **buf, size_t *cap, size_t need) {
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

/* Appends all of fd to *buf (*len bytes used of *cap), always keeping one
 * spare byte after them; `hint` is the expected size. 0, or an errno value. */
static int append_fd(int fd, char **buf, size_t *len, size_t *cap, size_t hint) {
    /* +2: the spare byte, and one more so that a read of 0 can say "end"
     * without growing a buffer that is exactly full. */
    if (*len > SIZE_MAX - 2 - hint || grow_bytes(buf, cap, *len + hint + 2))
        return ENOMEM;
    for (;;) {
        if (*cap - *len < 2 && (*len > SIZE_MAX - 2 || grow_bytes(buf, cap, *len + 2)))
            return ENOMEM;
        ssize_t got = read(fd, *buf + *len, *cap - *len - 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return errno ? errno : EIO;
        if (got == 0)
            return 0;
        *len += (size_t)got;
    }
}

/* Appends the whole file at path to *buf; LSTM_OK, or an error naming it. */
static lstm_status append_file(const char *path, char **buf, size_t *len, size_t *cap,
                               lstm_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lstm_fail(err, LSTM_ERR_IO, NAME_FMT ": cannot open: %s", path, strerror(errno));
    struct stat sb;
    size_t hint = 0;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0 &&
        (uintmax_t)sb.st_size < SIZE_MAX / 2)
        hint = (size_t)sb.st_size;
    int e = append_fd(fd, buf, len, cap, hint);
    close(fd);
    if (e == ENOMEM)
        return lstm_fail(err, LSTM_ERR_NOMEM, NAME_FMT ": out of memory reading it", path);
    if (e)
        return lstm_fail(err, LSTM_ERR_IO, NAME_FMT ": read error: %s", path, strerror(e));
    return LSTM_OK;
}

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
            status = nomem(err, dir);
            break;
        }
        struct stat sb;
        int keep = stat(path, &sb) == 0 && (want_dirs ? S_ISDIR(sb.st_mode) : S_ISREG(sb.st_mode));
        free(path);
        if (!keep)
            continue;
        if (n == cap && resize(&list, cap = cap ? cap * 2 : 16, sizeof *list)) {
            status = nomem(err, dir);
            break;
        }
        if (!(list[n] = strdup(nm))) {
            status = nomem(err, dir);
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
            status = nomem(err, ds->name);
            break;
        }
        if (ds->ndocs == *doc_cap &&
            docs_resize(ds, *doc_cap = *doc_cap ? *doc_cap * 2 : 64)) {
            free(path);
            status = nomem(err, ds->name);
            break;
        }
        size_t start = *len;
        status = append_file(path, &ds->store, len, cap, err);
        if (!status && *len == start)
            status = lstm_fail(err, LSTM_ERR_FORMAT, NAME_FMT ": empty file: no text", path);
        if (status) {
            free(path);
            break;
        }
        ds->store[(*len)++] = 0; /* append_fd left room for it */
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
        nomem(err, dir);
        return NULL;
    }
    char **subs;
    size_t nsubs, len = 0, cap = 0, doc_cap = 0;
    lstm_status status = list_dir(dir, 1, &subs, &nsubs, err);
    if (!status && !(ds->labels = calloc(nsubs ? nsubs : 1, sizeof *ds->labels)))
        status = nomem(err, dir);
    for (size_t i = 0; !status && i < nsubs; i++) {
        char *sub = join_path(dir, subs[i]);
        if (!sub) {
            status = nomem(err, dir);
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

/* A file (or, for labelled classify, a directory) as a data set. */
static lstm_dataset *read_path(lstm_task task, const char *path, int labelled, lstm_error *err) {
    if (!path) {
        lstm_fail(err, LSTM_ERR_INVALID, "lstm_dataset_read: path is NULL");
        return NULL;
    }
    if ((unsigned)task > LSTM_TASK_TAG) {
        lstm_fail(err, LSTM_ERR_INVALID, NAME_FMT ": unknown task %d", path, (int)task);
        return NULL;
    }
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        if (task == LSTM_TASK_CLASSIFY && labelled)
            return read_dir(path, err);
        lstm_fail(err, LSTM_ERR_IO, NAME_FMT ": is a directory; %s %s data is read from a file",
                  path, labelled ? "labelled" : "unlabelled", lstm_task_name(task));
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    if (append_file(path, &buf, &len, &cap, err)) {
        free(buf);
        return NULL;
    }
    if (!buf && !(buf = malloc(1))) {
        nomem(err, path);
        return NULL;
    }
    return parse_owned(task, buf, len, path, labelled, err);
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
    if ((unsigned)task > LSTM_TASK_TAG) {
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

/* A new data set of ds's examples i with pick[i] == want, in ds's order;
 * NULL when out of memory. */
static lstm_dataset *subset(const lstm_dataset *ds, const unsigned char *pick, int want,
                            const char *name) {
    lstm_dataset *out = ds_create(ds->task, name, ds->labelled);
    if (!out || copy_labels(out, ds))
        goto fail;
    size_t n = 0, bytes = 0;
    if (ds->task == LSTM_TASK_CLASSIFY) {
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
    } else {
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
    }
    return out;
fail:
    lstm_dataset_free(out);
    return NULL;
}

/* A new lm data set of bytes[begin, end). */
static lstm_dataset *lm_range(const lstm_dataset *ds, size_t begin, size_t end, const char *name) {
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
    const char *unit = ds->task == LSTM_TASK_LM         ? "byte"
                       : ds->task == LSTM_TASK_CLASSIFY ? "document"
                                                        : "sentence";
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
    unsigned char *pick = NULL;
    size_t *order = NULL;
    lstm_dataset *a = NULL, *b = NULL;
    if (!rest_name || !part_name)
        goto nomem;
    snprintf(rest_name, nlen, "%s (split: rest)", ds->name);
    snprintf(part_name, nlen, "%s (split: part)", ds->name);
    if (ds->task == LSTM_TASK_LM) {
        a = lm_range(ds, 0, n - k, rest_name);
        b = lm_range(ds, n - k, n, part_name);
    } else {
        pick = calloc(n, 1);
        order = malloc(lstm_mul_size(n, sizeof *order));
        if (!pick || !order)
            goto nomem;
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
        a = subset(ds, pick, 0, rest_name);
        b = subset(ds, pick, 1, part_name);
    }
    if (!a || !b)
        goto nomem;
    free(rest_name);
    free(part_name);
    free(pick);
    free(order);
    ds_clear(ds);
    *rest = a;
    *part = b;
    return lstm_ok(err);
nomem:
    free(rest_name);
    free(part_name);
    free(pick);
    free(order);
    lstm_dataset_free(a);
    lstm_dataset_free(b);
    return nomem(err, ds->name);
}

const char *const *lstm_dataset_sentence(const lstm_dataset *ds, size_t i, size_t *n) {
    if (ds->task != LSTM_TASK_TAG || i >= ds->nsent) {
        *n = 0;
        return NULL;
    }
    *n = ds->sent_start[i + 1] - ds->sent_start[i];
    return (const char *const *)ds->words + ds->sent_start[i];
}
