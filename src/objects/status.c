/* status.c - status names, error messages and aligned allocation. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *lstm_status_string(lstm_status s) {
    switch (s) {
    case LSTM_OK: return "ok";
    case LSTM_ERR_INVALID: return "invalid argument";
    case LSTM_ERR_NOMEM: return "out of memory";
    case LSTM_ERR_IO: return "input/output error";
    case LSTM_ERR_FORMAT: return "malformed file";
    case LSTM_ERR_SHAPE: return "wrong tensor";
    case LSTM_ERR_UNSUPPORTED: return "unsupported";
    case LSTM_ERR_STATE: return "wrong call order";
    case LSTM_ERR_NONFINITE: return "not a finite number";
    }
    return "unknown status";
}

lstm_status lstm_fail(lstm_error *err, lstm_status status, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->status = status;
    }
    return status;
}

lstm_status lstm_ok(lstm_error *err) {
    if (err) {
        err->status = LSTM_OK;
        err->msg[0] = 0;
    }
    return LSTM_OK;
}

void *lstm_alloc_aligned(size_t n) {
    void *p = NULL;
    /* Round up so the size is a multiple of the alignment, as C11 asks. */
    size_t r = (n + 63) & ~(size_t)63;
    if (r < n)
        return NULL;
    if (posix_memalign(&p, 64, r ? r : 64) != 0)
        return NULL;
    return p;
}

void lstm_free_aligned(void *p) { free(p); }
