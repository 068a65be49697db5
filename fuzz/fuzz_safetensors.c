/* fuzz_safetensors.c - libFuzzer target for the safetensors reader: parses
 * the input from memory and, when it is accepted, converts every tensor,
 * reads all metadata, and checks that writing it back and reading again
 * gives the same file. */
#include "lstm.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A broken invariant: crash so that libFuzzer (or replay) reports it. */
#define FUZZ_ASSERT(cond)                                                                   \
    do {                                                                                    \
        if (!(cond))                                                                        \
            __builtin_trap();                                                               \
    } while (0)

/* Converts t as its dtype allows; the other conversion must fail cleanly. */
static void convert(const lstm_st *st, const lstm_st_tensor *t) {
    lstm_error err;
    int is_float = t->dtype == LSTM_DT_F32 || t->dtype == LSTM_DT_F16 ||
                   t->dtype == LSTM_DT_BF16 || t->dtype == LSTM_DT_F64;
    size_t n = t->numel;
    if (is_float) {
        float *f = malloc((n ? n : 1) * sizeof *f);
        FUZZ_ASSERT(f);
        FUZZ_ASSERT(lstm_st_read_f32(st, t, f, n, &err) == LSTM_OK);
        FUZZ_ASSERT(lstm_st_read_f32(st, t, f, n + 1, &err) == LSTM_ERR_SHAPE);
        FUZZ_ASSERT(lstm_st_read_i64(st, t, NULL, n, &err) != LSTM_OK);
        free(f);
    } else {
        int64_t *v = malloc((n ? n : 1) * sizeof *v);
        FUZZ_ASSERT(v);
        lstm_status s = lstm_st_read_i64(st, t, v, n, &err);
        /* U64 above INT64_MAX and BOOL bytes other than 0/1 may fail. */
        FUZZ_ASSERT(s == LSTM_OK || t->dtype == LSTM_DT_U64 || t->dtype == LSTM_DT_BOOL);
        FUZZ_ASSERT(s == LSTM_OK || err.msg[0]);
        FUZZ_ASSERT(lstm_st_read_f32(st, t, NULL, n, &err) != LSTM_OK);
        free(v);
    }
}

/* A writer holding everything st holds; NULL when the writer refuses a
 * name the reader accepts (only the empty name). */
static lstm_st_writer *copy_to_writer(const lstm_st *st) {
    lstm_error err;
    lstm_st_writer *w = lstm_st_writer_create();
    FUZZ_ASSERT(w);
    for (size_t i = 0; i < lstm_st_count(st); i++) {
        const lstm_st_tensor *t = lstm_st_tensor_at(st, i);
        if (lstm_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, &err)) {
            FUZZ_ASSERT(t->name[0] == 0);
            lstm_st_writer_free(w);
            return NULL;
        }
    }
    for (size_t i = 0; i < lstm_st_meta_count(st); i++) {
        const char *k, *v;
        lstm_st_meta_at(st, i, &k, &v);
        FUZZ_ASSERT(lstm_st_writer_meta(w, k, v, &err) == LSTM_OK);
    }
    return w;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lstm_error err;
    lstm_st *st = lstm_st_from_memory(data, size, "fuzz", &err);
    if (!st) {
        FUZZ_ASSERT(err.status != LSTM_OK && err.msg[0]);
        return 0;
    }
    size_t n = lstm_st_count(st);
    for (size_t i = 0; i < n; i++) {
        const lstm_st_tensor *t = lstm_st_tensor_at(st, i);
        FUZZ_ASSERT(t && t->name);
        FUZZ_ASSERT(lstm_st_find(st, t->name) == t);
        FUZZ_ASSERT(t->ndim >= 0 && t->ndim <= LSTM_MAX_DIMS);
        FUZZ_ASSERT(t->nbytes == t->numel * lstm_dtype_size(t->dtype));
        convert(st, t);
    }
    FUZZ_ASSERT(lstm_st_tensor_at(st, n) == NULL);
    for (size_t i = 0; i < lstm_st_meta_count(st); i++) {
        const char *k, *v;
        lstm_st_meta_at(st, i, &k, &v);
        FUZZ_ASSERT(k && v);
        const char *found = lstm_st_meta(st, k);
        FUZZ_ASSERT(found && strcmp(found, v) == 0);
    }

    /* Round trip: writing what was read and reading it back gives the same
     * tensors; writing that again gives the same bytes. */
    lstm_st_writer *w = copy_to_writer(st);
    if (w) {
        void *buf, *buf2;
        size_t len, len2;
        FUZZ_ASSERT(lstm_st_writer_to_memory(w, &buf, &len, &err) == LSTM_OK);
        lstm_st *back = lstm_st_from_memory(buf, len, "fuzz round trip", &err);
        FUZZ_ASSERT(back);
        FUZZ_ASSERT(lstm_st_count(back) == n);
        FUZZ_ASSERT(lstm_st_meta_count(back) == lstm_st_meta_count(st));
        for (size_t i = 0; i < n; i++) {
            const lstm_st_tensor *a = lstm_st_tensor_at(st, i);
            const lstm_st_tensor *b = lstm_st_find(back, a->name);
            FUZZ_ASSERT(b && b->dtype == a->dtype && b->ndim == a->ndim &&
                        b->nbytes == a->nbytes);
            FUZZ_ASSERT(memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) == 0);
            FUZZ_ASSERT(a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0);
        }
        lstm_st_writer *w2 = copy_to_writer(back);
        FUZZ_ASSERT(w2);
        FUZZ_ASSERT(lstm_st_writer_to_memory(w2, &buf2, &len2, &err) == LSTM_OK);
        FUZZ_ASSERT(len2 == len && memcmp(buf, buf2, len) == 0);
        free(buf2);
        lstm_st_writer_free(w2);
        lstm_st_free(back);
        free(buf);
        lstm_st_writer_free(w);
    }
    lstm_st_free(st);
    return 0;
}
