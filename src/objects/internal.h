/* internal.h - what the public objects share and the program may not see:
 * aligned allocation, writers of parameter values, files in parts, the
 * numeric context inside a public one. (Errors and whole-file reading are
 * public: lstm.h.) */
#ifndef LSTM_INTERNAL_H
#define LSTM_INTERNAL_H

#include "lstm.h"

#include <stdarg.h>
#include <stddef.h>

/* 64-byte aligned allocation of n bytes (n may be 0); free with lstm_free_aligned. */
void *lstm_alloc_aligned(size_t n);
void lstm_free_aligned(void *p);

/* a * b, or SIZE_MAX when it overflows. */
static inline size_t lstm_mul_size(size_t a, size_t b) {
    size_t r;
    if (__builtin_mul_overflow(a, b, &r))
        return (size_t)-1;
    return r;
}

/* The values of tensor i, or of the whole buffer, for the library's own
 * writers: marks the values changed (bumps p's version) before handing out
 * the pointer, so every copy made from them, such as an LSTM's packed
 * weights, is made again at its next use. Use these, not lstm_params_data
 * and lstm_params_touch, for any write. NULL before lstm_params_alloc. */
float *lstm_params_data_mut(lstm_params *p, int i);
float *lstm_params_data_all_mut(lstm_params *p);

/* Tensor i's int8 form, packed for the int8 kernels, or NULL when it
 * computes in float (or when out of memory re-quantizing it after its
 * floats were written: then *failed is set). */
struct nn_q8_mat;
const struct nn_q8_mat *lstm_params_q8(lstm_params *p, int i, int *failed);

/* Files (fileio.c). */

/* lstm_write_file_atomic (lstm.h) of the bytes of several buffers in
 * order, for a file that is not in one piece in memory. */
typedef struct {
    const void *data;
    size_t len;
} lstm_file_part;
lstm_status lstm_write_file_parts(const char *path, const lstm_file_part *parts, size_t nparts,
                                  lstm_error *err);

/* The numeric context (kernels, threads) inside a public context. */
struct nn_ctx;
const struct nn_ctx *lstm_ctx_nn(const lstm_ctx *ctx);

#endif
