/* vocab.h - the vocabulary: byte strings to dense ids, with counts, pruning
 * by frequency, and a JSON form. Used by the data sets (label names) and the
 * task models (their embeddings' tables); it depends on nothing above it. */
#ifndef LSTM_VOCAB_H
#define LSTM_VOCAB_H

#include "lstm.h"

#include <stddef.h>

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
