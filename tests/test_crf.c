/*
 * test_crf.c - the linear-chain CRF (crf.c) in double: log Z, the loss and
 * the marginals against brute-force enumeration of every tag sequence, the
 * gradient against central finite differences, the scaled way against the
 * log-space way, and parameters spread so far that only the log-space way
 * is safe. Built from the numeric core compiled with -DLSTM_REAL=double.
 */
#include "check.h"
#include "nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const nn_ctx ctx = {.k = &nn_kernels_ref};
static lstm_rng rng;

static real *rnd(size_t n, double amp) {
    real *p = malloc(sizeof(real) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        p[i] = amp * (2.0 * lstm_rng_uniform(&rng) - 1.0);
    return p;
}

static real *zeros(size_t n) { return calloc(n ? n : 1, sizeof(real)); }

typedef struct {
    int T, B, K;
    real *emis, *trans, *start, *end;
    int *lengths;
    int32_t *tags;
} problem;

static problem make(int T, int B, int K, const int *lengths, double amp) {
    problem p = {T, B, K, rnd((size_t)T * B * K, amp), rnd((size_t)K * K, amp),
                 rnd((size_t)K, amp), rnd((size_t)K, amp), malloc(sizeof(int) * B),
                 malloc(sizeof(int32_t) * (size_t)T * B)};
    for (int b = 0; b < B; b++)
        p.lengths[b] = lengths[b];
    for (int i = 0; i < T * B; i++)
        p.tags[i] = (int32_t)lstm_rng_below(&rng, (uint64_t)K);
    return p;
}

static void drop(problem *p) {
    free(p->emis), free(p->trans), free(p->start), free(p->end), free(p->lengths), free(p->tags);
}

/* Brute force over the K^n sequences of row b: log Z, log Z over those
 * that agree with the known tags, and the marginals P(y_t = k) (n,K). */
static void brute(const problem *p, int b, double *lz, double *lzg, double *marg) {
    int n = p->lengths[b], K = p->K, B = p->B;
    long total = 1;
    for (int t = 0; t < n; t++)
        total *= K;
    int y[16];
    double mx = -INFINITY;
    double *s = malloc(sizeof(double) * (size_t)total);
    for (long code = 0; code < total; code++) {
        long c = code;
        for (int t = 0; t < n; t++)
            y[t] = (int)(c % K), c /= K;
        double v = p->start[y[0]] + p->end[y[n - 1]];
        for (int t = 0; t < n; t++) {
            v += p->emis[((size_t)t * B + b) * K + y[t]];
            if (t)
                v += p->trans[y[t - 1] * K + y[t]];
        }
        s[code] = v;
        mx = v > mx ? v : mx;
    }
    double z = 0, zg = 0;
    memset(marg, 0, sizeof(double) * (size_t)n * K);
    for (long code = 0; code < total; code++) {
        long c = code;
        int agree = 1;
        for (int t = 0; t < n; t++) {
            y[t] = (int)(c % K), c /= K;
            int g = p->tags[(size_t)t * B + b];
            agree &= g < 0 || g == y[t];
        }
        double e = exp(s[code] - mx);
        z += e;
        zg += agree ? e : 0;
        for (int t = 0; t < n; t++)
            marg[t * K + y[t]] += e;
    }
    for (int i = 0; i < n * K; i++)
        marg[i] /= z;
    *lz = mx + log(z);
    *lzg = mx + log(zg);
    free(s);
}

static double run(const problem *p, real *marg, real *de, real *dt, real *ds, real *dn,
                  int force_log, int *count) {
    nn_crf_args a = {p->T, p->B, p->K, p->emis, p->lengths, p->tags, p->trans, p->start, p->end,
                     marg, de, dt, ds, dn, 1, force_log};
    void *work = malloc(nn_crf_work_size(p->T, p->B, p->K));
    double loss = nn_crf(&ctx, &a, work, count);
    free(work);
    return loss;
}

/* The loss and the marginals against enumeration, both ways. */
static void test_brute(int force_log, double amp) {
    int lengths[4] = {4, 2, 1, 3};
    problem p = make(4, 4, 3, lengths, amp);
    p.tags[1 * 4 + 0] = -1;                          /* row 0: one tag unknown */
    for (int t = 0; t < 3; t++)                       /* row 3: none known */
        p.tags[t * 4 + 3] = -1;
    size_t TBK = (size_t)p.T * p.B * p.K;
    real *marg = zeros(TBK);
    int count;
    double loss = run(&p, marg, NULL, NULL, NULL, NULL, force_log, &count);
    double want = 0;
    int want_count = 0;
    for (int b = 0; b < p.B; b++) {
        double lz, lzg, m[4 * 3];
        brute(&p, b, &lz, &lzg, m);
        int kn = 0;
        for (int t = 0; t < p.lengths[b]; t++)
            kn += p.tags[t * p.B + b] >= 0;
        want_count += kn;
        if (kn)
            want += lz - lzg;
        for (int t = 0; t < p.T; t++)
            for (int k = 0; k < p.K; k++) {
                double got = marg[((size_t)t * p.B + b) * p.K + k];
                if (t < p.lengths[b])
                    CHECK(fabs(exp(got) - m[t * p.K + k]) < 1e-12,
                          "force_log %d amp %g: row %d P(y_%d = %d) %.15g, enumeration %.15g",
                          force_log, amp, b, t, k, exp(got), m[t * p.K + k]);
                else
                    CHECK(got == -INFINITY, "row %d past its end: log P %g, want -inf", b, got);
            }
    }
    CHECK(fabs(loss - want) < 1e-10 * (1 + fabs(want)),
          "force_log %d amp %g: loss %.15g, enumeration %.15g", force_log, amp, loss, want);
    CHECK(count == want_count, "count %d, want %d", count, want_count);
    /* without tags: the sum of log Z of every row */
    problem q = p;
    q.tags = NULL;
    double lzs = run(&q, NULL, NULL, NULL, NULL, NULL, force_log, NULL), wz = 0;
    for (int b = 0; b < p.B; b++) {
        double lz, lzg, m[12];
        brute(&p, b, &lz, &lzg, m);
        wz += lz;
    }
    CHECK(fabs(lzs - wz) < 1e-10 * (1 + fabs(wz)), "no tags: %.15g, sum of log Z %.15g", lzs, wz);
    free(marg);
    drop(&p);
}

/* Central differences of the loss for each of n values at x. */
static void fd(const char *what, problem *p, real *x, const real *an, size_t n, int force_log) {
    real *num = zeros(n);
    for (size_t i = 0; i < n; i++) {
        real keep = x[i];
        x[i] = keep + 1e-6;
        double lp = run(p, NULL, NULL, NULL, NULL, NULL, force_log, NULL);
        x[i] = keep - 1e-6;
        double lm = run(p, NULL, NULL, NULL, NULL, NULL, force_log, NULL);
        x[i] = keep;
        num[i] = (lp - lm) / 2e-6;
    }
    CHECK_CLOSE(an, num, n, 1e-8, 1e-6, "force_log %d: %s: gradient vs finite differences",
                force_log, what);
    free(num);
}

static void test_gradient(int force_log) {
    int lengths[3] = {5, 1, 3};
    problem p = make(5, 3, 4, lengths, 1.5);
    p.tags[2 * 3 + 0] = -1; /* row 0 partly known */
    for (int t = 0; t < 3; t++) /* row 2 (length 3): no tag known, so it adds nothing */
        p.tags[t * 3 + 2] = -1;
    size_t TBK = (size_t)p.T * p.B * p.K, KK = (size_t)p.K * p.K;
    real *de = zeros(TBK), *dt = zeros(KK), *ds = zeros(p.K), *dn = zeros(p.K);
    real *marg = zeros(TBK); /* asked for too: every row's, the gradient still not */
    run(&p, marg, de, dt, ds, dn, force_log, NULL);
    free(marg);
    fd("emissions", &p, p.emis, de, TBK, force_log);
    fd("transitions", &p, p.trans, dt, KK, force_log);
    fd("start", &p, p.start, ds, p.K, force_log);
    fd("end", &p, p.end, dn, p.K, force_log);
    /* past a row's end the gradient is zero */
    int zero = 1;
    for (int t = 1; t < p.T; t++)
        for (int k = 0; k < p.K; k++)
            zero &= de[((size_t)t * p.B + 1) * p.K + k] == 0;
    CHECK(zero, "row 1 (length 1): gradient past its end");
    free(de), free(dt), free(ds), free(dn);
    drop(&p);
}

/* The scaled way against the log-space way on a tagger's size, with the
 * marginals written over the emissions. */
static void test_scaled_vs_log(void) {
    int lengths[6] = {17, 3, 9, 17, 1, 12};
    problem p = make(17, 6, 40, lengths, 4);
    for (int t = 0; t < 5; t++)
        p.tags[t * 6 + 2] = -1;
    size_t TBK = (size_t)p.T * p.B * p.K, KK = (size_t)p.K * p.K;
    real *grads[2][4], *marg[2];
    double loss[2];
    real *keep = malloc(sizeof(real) * TBK);
    memcpy(keep, p.emis, sizeof(real) * TBK);
    for (int way = 0; way < 2; way++) {
        grads[way][0] = zeros(TBK), grads[way][1] = zeros(KK);
        grads[way][2] = zeros(p.K), grads[way][3] = zeros(p.K);
        memcpy(p.emis, keep, sizeof(real) * TBK);
        loss[way] = run(&p, p.emis, grads[way][0], grads[way][1], grads[way][2], grads[way][3],
                        way, NULL);
        marg[way] = malloc(sizeof(real) * TBK);
        memcpy(marg[way], p.emis, sizeof(real) * TBK);
    }
    CHECK(fabs(loss[0] - loss[1]) < 1e-9 * fabs(loss[1]), "scaled %.15g, logs %.15g", loss[0],
          loss[1]);
    const char *names[4] = {"emissions", "transitions", "start", "end"};
    size_t sizes[4] = {TBK, KK, (size_t)p.K, (size_t)p.K};
    for (int i = 0; i < 4; i++)
        CHECK_CLOSE(grads[0][i], grads[1][i], sizes[i], 1e-12, 1e-9, "%s: scaled vs logs",
                    names[i]);
    for (size_t i = 0; i < TBK; i++)
        if (marg[1][i] == -INFINITY)
            marg[1][i] = marg[0][i] = 0;
    CHECK_CLOSE(marg[0], marg[1], TBK, 1e-9, 1e-9, "log marginals: scaled vs logs");
    for (int way = 0; way < 2; way++) {
        for (int i = 0; i < 4; i++)
            free(grads[way][i]);
        free(marg[way]);
    }
    free(keep);
    drop(&p);
}

/* Transitions of +-60 (2 x 120 > 70): the log-space way is taken, and
 * agrees with enumeration where the scaled way would have underflowed. */
static void test_spread(void) {
    int lengths[2] = {4, 3};
    problem p = make(4, 2, 3, lengths, 1);
    for (int i = 0; i < 9; i++)
        p.trans[i] = i % 2 ? 60 : -60;
    p.emis[0] = -700; /* exp(-700) underflows float, not double */
    int count;
    double loss = run(&p, NULL, NULL, NULL, NULL, NULL, 0, &count), want = 0;
    for (int b = 0; b < 2; b++) {
        double lz, lzg, m[12];
        brute(&p, b, &lz, &lzg, m);
        want += lz - lzg;
    }
    CHECK(isfinite(loss) && fabs(loss - want) < 1e-9 * (1 + fabs(want)),
          "spread parameters: loss %.15g, enumeration %.15g", loss, want);
    /* a NaN in the parameters gives a NaN loss, not a number */
    p.trans[4] = NAN;
    double nl = run(&p, NULL, NULL, NULL, NULL, NULL, 0, NULL);
    CHECK(isnan(nl), "NaN transitions: loss %g, not NaN", nl);
    drop(&p);
}

int main(void) {
    lstm_rng_seed(&rng, 7);
    for (int way = 0; way < 2; way++) {
        test_brute(way, 1);
        test_brute(way, 6);
        test_gradient(way);
    }
    test_scaled_vs_log();
    test_spread();
    return check_summary();
}
