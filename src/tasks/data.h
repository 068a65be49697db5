/* data.h - the inside of lstm_dataset, for the task models. */
#ifndef LSTM_DATA_H
#define LSTM_DATA_H

#include "lstm.h"
#include "vocab.h"

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

#endif
