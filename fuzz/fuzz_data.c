/* fuzz_data.c - libFuzzer target for the data set readers. The first byte
 * picks the task and whether the input is labelled ((byte % 6): 0 lm,
 * 1 classify, 2 tag labelled; 3 lm, 4 classify, 5 tag unlabelled, so the
 * seed files start with a digit); the rest is the file. An accepted set is
 * walked and its invariants checked, then split; a vocabulary of its words
 * goes through JSON and back. The whole input is also tried as a vocabulary
 * in JSON. */
#include "data.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A broken invariant: crash so that libFuzzer (or replay) reports it. */
#define FUZZ_ASSERT(cond)                                                                   \
    do {                                                                                    \
        if (!(cond))                                                                        \
            abort();                                                                        \
    } while (0)

static size_t count_lines(const uint8_t *p, size_t n) {
    size_t lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += p[i] == '\n';
    return lines + (n > 0 && p[n - 1] != '\n');
}

/* Labels are distinct, non-empty, and in range; in a set read from a file
 * (`fresh`, not split) numbered in order of first use. */
static void check_labels(const lstm_dataset *ds, const int *ids, size_t n, int fresh) {
    FUZZ_ASSERT(ds->nlabels >= 0 && (ds->nlabels == 0 || ds->labels));
    for (int a = 0; a < ds->nlabels; a++) {
        FUZZ_ASSERT(ds->labels[a] && ds->labels[a][0] && !strchr(ds->labels[a], '\t') &&
                    !strchr(ds->labels[a], '\n'));
        FUZZ_ASSERT(ds->task != LSTM_TASK_CLASSIFY || !strchr(ds->labels[a], ' '));
        for (int b = 0; b < a; b++)
            FUZZ_ASSERT(strcmp(ds->labels[a], ds->labels[b]) != 0);
    }
    int next = 0;
    for (size_t i = 0; i < n; i++) {
        if (!ds->labelled) {
            FUZZ_ASSERT(ids[i] == -1);
            continue;
        }
        FUZZ_ASSERT(ids[i] >= 0 && ids[i] < ds->nlabels && (!fresh || ids[i] <= next));
        if (ids[i] == next)
            next++;
    }
    FUZZ_ASSERT(!fresh || !ds->labelled || next == ds->nlabels);
    FUZZ_ASSERT(ds->labelled || ds->nlabels == 0);
}

/* Checks ds; adds its words (tag), whitespace-separated pieces (classify)
 * or lines (lm) to v. in/len: the file, when ds was read from it. */
static void walk(const lstm_dataset *ds, lstm_vocab *v, const uint8_t *in, size_t len) {
    size_t count = lstm_dataset_count(ds), tokens = lstm_dataset_tokens(ds);
    if (in && len >= 3 && memcmp(in, "\xEF\xBB\xBF", 3) == 0) /* skipped by the readers */
        in += 3, len -= 3;
    FUZZ_ASSERT(ds->name);
    if (ds->task == LSTM_TASK_LM) {
        FUZZ_ASSERT(count == ds->nbytes && tokens == ds->nbytes && ds->nbytes > 0);
        FUZZ_ASSERT(ds->bytes[ds->nbytes] == 0);
        FUZZ_ASSERT(!in || (len == ds->nbytes && memcmp(in, ds->bytes, len) == 0));
        const unsigned char *p = ds->bytes, *end = p + ds->nbytes;
        while (p < end) {
            const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
            const unsigned char *stop = nl ? nl : end;
            FUZZ_ASSERT(vocab_add(v, (const char *)p, (size_t)(stop - p)) >= 0);
            p = nl ? nl + 1 : end;
        }
        return;
    }
    if (ds->task == LSTM_TASK_CLASSIFY) {
        size_t lines = in ? count_lines(in, len) : SIZE_MAX;
        FUZZ_ASSERT(count == ds->ndocs);
        FUZZ_ASSERT(!in || ds->labelled || ds->ndocs == lines);
        FUZZ_ASSERT(!in || !ds->labelled || ds->ndocs > 0);
        size_t sum = 0;
        for (size_t i = 0; i < ds->ndocs; i++) {
            const char *t = ds->doc_text[i];
            size_t n = ds->doc_len[i];
            FUZZ_ASSERT(t && t[n] == 0);
            FUZZ_ASSERT(!ds->labelled || n > 0);
            FUZZ_ASSERT(!memchr(t, '\n', n) || ds->doc_file[i]);
            FUZZ_ASSERT(i == 0 || ds->doc_line[i] > ds->doc_line[i - 1]);
            FUZZ_ASSERT(ds->doc_line[i] >= 1 && ds->doc_line[i] <= lines);
            sum += n;
            for (size_t a = 0; a < n;) {
                size_t b = a;
                while (b < n && t[b] != ' ' && t[b] != '\t')
                    b++;
                FUZZ_ASSERT(vocab_add(v, t + a, b - a) >= 0);
                a = b + 1;
            }
        }
        FUZZ_ASSERT(sum == tokens);
        check_labels(ds, ds->doc_label, ds->ndocs, in != NULL);
        return;
    }
    FUZZ_ASSERT(count == ds->nsent && tokens == ds->nwords);
    FUZZ_ASSERT(!in || ds->labelled || ds->nsent == count_lines(in, len));
    FUZZ_ASSERT(!in || !ds->labelled || ds->nsent > 0);
    FUZZ_ASSERT(ds->sent_start && ds->sent_start[0] == 0 && ds->sent_start[ds->nsent] == ds->nwords);
    for (size_t i = 0; i < ds->nsent; i++) {
        /* Labelled sentences have words; unlabelled ones may be empty. */
        FUZZ_ASSERT(ds->sent_start[i + 1] > ds->sent_start[i] ||
                    (!ds->labelled && ds->sent_start[i + 1] == ds->sent_start[i]));
        FUZZ_ASSERT(i == 0 || ds->sent_line[i] > ds->sent_line[i - 1]);
        FUZZ_ASSERT(ds->sent_line[i] >= 1);
    }
    for (size_t j = 0; j < ds->nwords; j++) {
        const char *w = ds->words[j];
        size_t n = strlen(w);
        FUZZ_ASSERT(n > 0 && !memchr(w, '\t', n) && !memchr(w, '\n', n));
        FUZZ_ASSERT(ds->labelled || !memchr(w, ' ', n));
        FUZZ_ASSERT(vocab_add(v, w, n) >= 0);
    }
    check_labels(ds, ds->word_tag, ds->nwords, in != NULL);
}

/* 1 when every example of sub appears in ds, in order. */
static int is_subsequence(const lstm_dataset *sub, const lstm_dataset *ds) {
    size_t j = 0, n = lstm_dataset_count(ds);
    for (size_t i = 0; i < lstm_dataset_count(sub); i++, j++) {
        if (ds->task == LSTM_TASK_CLASSIFY) {
            while (j < n && !(ds->doc_line[j] == sub->doc_line[i] &&
                              ds->doc_len[j] == sub->doc_len[i] &&
                              memcmp(ds->doc_text[j], sub->doc_text[i], sub->doc_len[i]) == 0 &&
                              ds->doc_label[j] == sub->doc_label[i]))
                j++;
        } else {
            while (j < n) {
                size_t a = ds->sent_start[j], b = sub->sent_start[i];
                size_t len = ds->sent_start[j + 1] - a;
                int same = ds->sent_line[j] == sub->sent_line[i] &&
                           len == sub->sent_start[i + 1] - b;
                for (size_t k = 0; same && k < len; k++)
                    same = strcmp(ds->words[a + k], sub->words[b + k]) == 0 &&
                           ds->word_tag[a + k] == sub->word_tag[b + k];
                if (same)
                    break;
                j++;
            }
        }
        if (j == n)
            return 0;
    }
    return 1;
}

static void check_split(lstm_dataset *ds, const uint8_t *data, size_t size, int labelled,
                        double portion, uint64_t seed) {
    lstm_error err;
    /* A second copy to compare the pieces with. */
    lstm_dataset *orig = lstm_dataset_from_memory(ds->task, data, size, "fuzz", labelled, &err);
    FUZZ_ASSERT(orig);
    size_t count = lstm_dataset_count(ds), tokens = lstm_dataset_tokens(ds);
    lstm_dataset *rest, *part;
    lstm_status s = lstm_dataset_split(ds, portion, seed, &rest, &part, &err);
    if (count < 2) {
        FUZZ_ASSERT(s == LSTM_ERR_INVALID && !rest && !part && err.msg[0]);
        FUZZ_ASSERT(lstm_dataset_count(ds) == count);
        lstm_dataset_free(orig);
        return;
    }
    FUZZ_ASSERT(s == LSTM_OK && rest && part);
    FUZZ_ASSERT(lstm_dataset_count(ds) == 0 && lstm_dataset_tokens(ds) == 0);
    size_t nr = lstm_dataset_count(rest), np = lstm_dataset_count(part);
    FUZZ_ASSERT(nr >= 1 && np >= 1 && nr + np == count);
    FUZZ_ASSERT(lstm_dataset_tokens(rest) + lstm_dataset_tokens(part) == tokens);
    lstm_vocab *scratch = vocab_create();
    FUZZ_ASSERT(scratch);
    walk(rest, scratch, NULL, 0);
    walk(part, scratch, NULL, 0);
    vocab_free(scratch);
    if (ds->task == LSTM_TASK_LM) {
        FUZZ_ASSERT(memcmp(rest->bytes, orig->bytes, nr) == 0 &&
                    memcmp(part->bytes, orig->bytes + nr, np) == 0);
    } else {
        FUZZ_ASSERT(rest->nlabels == orig->nlabels && part->nlabels == orig->nlabels);
        for (int i = 0; i < orig->nlabels; i++)
            FUZZ_ASSERT(strcmp(rest->labels[i], orig->labels[i]) == 0 &&
                        strcmp(part->labels[i], orig->labels[i]) == 0);
        FUZZ_ASSERT(is_subsequence(rest, orig) && is_subsequence(part, orig));
    }
    lstm_dataset_free(rest);
    lstm_dataset_free(part);
    lstm_dataset_free(orig);
}

/* v through JSON and back gives the same strings in the same order. */
static void check_json(const lstm_vocab *v) {
    char *json = vocab_to_json(v);
    FUZZ_ASSERT(json);
    lstm_error err;
    lstm_vocab *back = vocab_from_json(json, "fuzz", &err);
    FUZZ_ASSERT(back && vocab_size(back) == vocab_size(v));
    for (int i = 0; i < vocab_size(v); i++) {
        size_t la, lb;
        const char *a = vocab_string(v, i, &la), *b = vocab_string(back, i, &lb);
        FUZZ_ASSERT(la == lb && (la == 0 || memcmp(a, b, la) == 0));
        FUZZ_ASSERT(vocab_find(back, a, la) == i);
    }
    vocab_free(back);
    free(json);
}

/* Pruning keeps the reserved strings first, then counts non-increasing. */
static void check_prune(const lstm_vocab *v) {
    static const char *const reserved[] = {"<pad>", "<unk>"};
    lstm_vocab *p = vocab_prune(v, reserved, 2, 2, 50);
    FUZZ_ASSERT(p && vocab_size(p) <= 50 && vocab_size(p) >= 2);
    FUZZ_ASSERT(vocab_find(p, "<pad>", 5) == 0 && vocab_find(p, "<unk>", 5) == 1);
    for (int i = 2; i < vocab_size(p); i++) {
        size_t len;
        const char *s = vocab_string(p, i, &len);
        FUZZ_ASSERT(vocab_count(p, i) >= 2 && vocab_count(p, i) == vocab_count(v, vocab_find(v, s, len)));
        FUZZ_ASSERT(i == 2 || vocab_count(p, i) <= vocab_count(p, i - 1));
    }
    check_json(p);
    vocab_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0)
        return 0;
    int mode = data[0] % 6;
    lstm_task task = (lstm_task)(mode % 3);
    int labelled = mode < 3;
    const uint8_t *in = data + 1;
    size_t len = size - 1;
    lstm_error err;
    lstm_dataset *ds = lstm_dataset_from_memory(task, in, len, "fuzz", labelled, &err);
    if (!ds) {
        FUZZ_ASSERT(err.status == LSTM_ERR_FORMAT && err.msg[0]);
        FUZZ_ASSERT(strncmp(err.msg, "fuzz: ", 6) == 0);
    } else {
        FUZZ_ASSERT(err.status == LSTM_OK);
        FUZZ_ASSERT(lstm_dataset_task(ds) == task);
        lstm_vocab *v = vocab_create();
        FUZZ_ASSERT(v);
        walk(ds, v, in, len);
        check_json(v);
        check_prune(v);
        vocab_free(v);
        /* The split's portion and seed come from the input's first byte. */
        check_split(ds, in, len, labelled, 0.05 + 0.9 * (data[0] / 255.0), data[0] * 7919u);
        lstm_dataset_free(ds);
    }

    /* The input as a vocabulary in JSON. */
    char *text = malloc(size + 1);
    FUZZ_ASSERT(text);
    memcpy(text, data, size);
    text[size] = 0;
    lstm_vocab *v = vocab_from_json(text, "fuzz", &err);
    if (v)
        check_json(v);
    else
        FUZZ_ASSERT(err.status == LSTM_ERR_FORMAT && err.msg[0]);
    vocab_free(v);
    free(text);
    return 0;
}
