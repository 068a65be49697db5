/* data.h - the inside of lstm_dataset, for the task models; and the
 * vocabulary (string -> id) the models build from it. */
#ifndef LSTM_DATA_H
#define LSTM_DATA_H

#include "lstm.h"

#include <stddef.h>
#include <stdint.h>

/* One data set. Strings are NUL-terminated and owned by the data set.
 *   lm:       bytes[0..nbytes)
 *   classify: ndocs documents: doc_text[i] (doc_len[i] bytes, may hold any
 *             byte but NUL is allowed too: use the length), doc_label[i] an
 *             index into labels (-1 when unlabelled), doc_line[i] the line
 *             (fastText, 1-based) or 0 (directory layout; doc_file[i] then
 *             names the file, else NULL; the doc_file array itself is
 *             always there).
 *   tag:      nsent sentences; sentence i is words/tags
 *             [sent_start[i], sent_start[i+1]) (sent_start has nsent+1
 *             entries); word_tag[j] an index into labels (-1 when
 *             unlabelled); sent_line[i] the line of its first word.
 * labels: the distinct label (classify) or tag (tag) names, in order of
 * first appearance. */
struct lstm_dataset {
    lstm_task task;
    char *name;
    int labelled;
    /* owns the bytes that `bytes`, doc_text and words point into */
    char *store;
    /* lm */
    unsigned char *bytes;
    size_t nbytes;
    /* classify */
    size_t ndocs;
    char **doc_text;
    size_t *doc_len;
    int *doc_label;
    size_t *doc_line;
    char **doc_file;
    /* tag */
    size_t nsent, nwords;
    size_t *sent_start;
    char **words;
    int *word_tag;
    size_t *sent_line;
    /* label names */
    char **labels;
    int nlabels;
};

/* ------------------------------------------------------------------ */
/* Vocabulary: byte strings to dense ids, with counts. */

typedef struct lstm_vocab lstm_vocab;

lstm_vocab *vocab_create(void);
void vocab_free(lstm_vocab *v);
/* Counts one occurrence of s[0..len) (adding it if new); returns its id or
 * -1 when out of memory. */
int vocab_add(lstm_vocab *v, const char *s, size_t len);
/* The id of s[0..len), or -1. */
int vocab_find(const lstm_vocab *v, const char *s, size_t len);
int vocab_size(const lstm_vocab *v);
/* The bytes of entry id, NUL-terminated and owned by v, their number in
 * *len (may be NULL); NULL for an id out of range. */
const char *vocab_string(const lstm_vocab *v, int id, size_t *len);
/* Occurrences counted by vocab_add (0 for an id out of range). */
long vocab_count(const lstm_vocab *v, int id);
/* A new vocabulary of the `reserved` strings (ids 0..nreserved-1, e.g.
 * "<pad>", "<unk>") followed by the entries of v seen at least min_count
 * times, most frequent first (ties: byte order), at most max_size entries
 * in all (0: no limit; the reserved strings are kept even beyond it).
 * Counts are kept (a reserved string has its count in v, or 0). NULL when
 * out of memory or when `reserved` repeats a string. */
lstm_vocab *vocab_prune(const lstm_vocab *v, const char *const *reserved, int nreserved,
                        long min_count, int max_size);
/* As a compact JSON array in id order, malloc'd (free with free()): an
 * entry is a JSON string when it is valid UTF-8 without NUL, else an array
 * of its byte values (0..255), so that any byte string survives the round
 * trip. Counts are not written. */
char *vocab_to_json(const lstm_vocab *v);
/* From vocab_to_json's output (every count 0); NULL (with err,
 * LSTM_ERR_FORMAT) when it is not such an array or has duplicates. `what`
 * names it in messages. */
lstm_vocab *vocab_from_json(const char *json, const char *what, lstm_error *err);

#endif
