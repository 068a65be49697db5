/* check.h - the test harness: CHECK macros that print each failed check and
 * a summary line "N passed, N failed". Include once per test program. */
#ifndef LSTM_CHECK_H
#define LSTM_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int check_passed, check_failed;

/* Records one check; prints where and why when it fails. */
#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        if (cond) {                                                               \
            check_passed++;                                                       \
        } else {                                                                  \
            check_failed++;                                                       \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                \
            printf(__VA_ARGS__);                                                  \
            printf("\n");                                                         \
        }                                                                         \
    } while (0)

/* |got - want| <= atol + rtol * |want|, elementwise over n values; one check. */
#define CHECK_CLOSE(got, want, n, atol, rtol, ...)                                \
    do {                                                                          \
        size_t bad_ = check_close_index((got), (want), (n), (atol), (rtol));     \
        CHECK(bad_ == (size_t)-1, __VA_ARGS__);                                   \
        if (bad_ != (size_t)-1)                                                   \
            printf("     at [%zu]: got %.9g want %.9g (atol %g rtol %g)\n", bad_,  \
                   (double)(got)[bad_], (double)(want)[bad_], (double)(atol),     \
                   (double)(rtol));                                               \
    } while (0)

/* Index of the worst element outside the tolerance, or (size_t)-1. */
#define check_close_index(got, want, n, atol, rtol)                               \
    check_close_worst_((got), (want), (n), (atol), (rtol), sizeof(*(got)), sizeof(*(want)))

static inline double check_get_(const void *p, size_t i, size_t sz) {
    return sz == sizeof(double) ? ((const double *)p)[i] : (double)((const float *)p)[i];
}

static inline size_t check_close_worst_(const void *got, const void *want, size_t n,
                                        double atol, double rtol, size_t gsz, size_t wsz) {
    size_t worst = (size_t)-1;
    double worst_excess = 0;
    for (size_t i = 0; i < n; i++) {
        double g = check_get_(got, i, gsz), w = check_get_(want, i, wsz);
        double excess = fabs(g - w) - (atol + rtol * fabs(w));
        if (!(excess <= 0) && (worst == (size_t)-1 || !(excess <= worst_excess))) {
            worst = i;
            worst_excess = excess;
            if (isnan(excess))
                break;
        }
    }
    return worst;
}

/* Prints the summary line; the exit status of the test program. */
static inline int check_summary(void) {
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif
