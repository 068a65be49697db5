/*
 * test_crf_float.c - the CRF in float on a tagger's sizes (176 tags, 32
 * sentences up to 40 words), the scaled way on every kernel set's GEMM
 * against the log-space way in double (test_crf.c checks both against
 * enumeration and finite differences): the loss within 1e-5 relative, the
 * marginals within 2e-5, the gradient within 1e-6 + 1e-4 relative. Also
 * lstm_crf, the public entry, and the marginals written over the emissions.
 */
#include "check.h"
#include "internal.h"
#include "lstm.h"
#include "nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { T = 40, B = 32, K = 176 };

typedef struct {
    float *emis, *trans, *start, *end;
    int lengths[B];
    int32_t tags[T * B];
} problem;

static void make(problem *p, lstm_rng *rng) {
    size_t TBK = (size_t)T * B * K;
    p->emis = malloc(sizeof(float) * TBK);
    p->trans = malloc(sizeof(float) * K * K);
    p->start = malloc(sizeof(float) * K);
    p->end = malloc(sizeof(float) * K);
    for (size_t i = 0; i < TBK; i++)
        p->emis[i] = 3 * lstm_rng_normal(rng);
    for (int i = 0; i < K * K; i++)
        p->trans[i] = 10 * lstm_rng_uniform(rng) - 7; /* a trained CRF's: -7 to 3 */
    for (int i = 0; i < K; i++)
        p->start[i] = 4 * lstm_rng_uniform(rng) - 2, p->end[i] = 4 * lstm_rng_uniform(rng) - 2;
    for (int b = 0; b < B; b++)
        p->lengths[b] = b == 0 ? T : 1 + (int)lstm_rng_below(rng, T);
    for (int i = 0; i < T * B; i++)
        p->tags[i] = i % 37 == 5 ? -100 : (int32_t)lstm_rng_below(rng, K);
}

typedef struct {
    double loss;
    int count;
    float *marg, *de, *dt, *ds, *dn;
} result;

static result solve(const nn_ctx *ctx, const problem *p, int force_log) {
    size_t TBK = (size_t)T * B * K;
    result r = {0, 0, malloc(sizeof(float) * TBK), calloc(TBK, sizeof(float)),
                calloc((size_t)K * K, sizeof(float)), calloc(K, sizeof(float)),
                calloc(K, sizeof(float))};
    nn_crf_args a = {T, B, K, p->emis, p->lengths, p->tags, p->trans, p->start, p->end, r.marg,
                     r.de, r.dt, r.ds, r.dn, 0.5f, force_log};
    void *work = malloc(nn_crf_work_size(T, B, K));
    r.loss = nn_crf(ctx, &a, work, &r.count);
    free(work);
    for (size_t i = 0; i < TBK; i++) /* probabilities: -inf past the ends becomes 0 */
        r.marg[i] = expf(r.marg[i]);
    return r;
}

static void release(result *r) { free(r->marg), free(r->de), free(r->dt), free(r->ds), free(r->dn); }

static void test_set(const problem *p, const result *want, lstm_kernels kset, lstm_blas blas,
                     int threads, const char *name) {
    lstm_ctx_config cc = {threads, kset, blas};
    lstm_ctx *lc = lstm_ctx_create(&cc, NULL);
    if (!lc) {
        printf("ok skipping %s: not supported here\n", name);
        return;
    }
    result got = solve(lstm_ctx_nn(lc), p, 0);
    size_t TBK = (size_t)T * B * K;
    CHECK(fabs(got.loss - want->loss) <= 1e-5 * fabs(want->loss), "%s: loss %.9g, logs %.9g",
          name, got.loss, want->loss);
    CHECK(got.count == want->count, "%s: count %d, want %d", name, got.count, want->count);
    CHECK_CLOSE(got.marg, want->marg, TBK, 2e-5, 0, "%s: marginals", name);
    CHECK_CLOSE(got.de, want->de, TBK, 1e-6, 1e-4, "%s: d emissions", name);
    CHECK_CLOSE(got.dt, want->dt, (size_t)K * K, 1e-6, 1e-4, "%s: d transitions", name);
    CHECK_CLOSE(got.ds, want->ds, (size_t)K, 1e-6, 1e-4, "%s: d start", name);
    CHECK_CLOSE(got.dn, want->dn, (size_t)K, 1e-6, 1e-4, "%s: d end", name);
    /* the public entry, the marginals over the emissions */
    float *e = malloc(sizeof(float) * TBK);
    memcpy(e, p->emis, sizeof(float) * TBK);
    lstm_crf_args a = {.T = T, .B = B, .K = K, .emissions = e, .lengths = p->lengths,
                       .tags = p->tags, .transitions = p->trans, .start_transitions = p->start,
                       .end_transitions = p->end, .marginals = e, .scale = 1};
    void *work = malloc(lstm_crf_work_size(T, B, K));
    double loss = lstm_crf(lc, &a, work, NULL);
    for (size_t i = 0; i < TBK; i++)
        e[i] = expf(e[i]);
    CHECK(loss == got.loss, "%s: lstm_crf %.9g, nn_crf %.9g", name, loss, got.loss);
    CHECK_CLOSE(e, got.marg, TBK, 0, 0, "%s: lstm_crf's marginals over the emissions", name);
    free(work), free(e);
    release(&got);
    lstm_ctx_free(lc);
}

int main(void) {
    lstm_rng rng;
    lstm_rng_seed(&rng, 11);
    problem p;
    make(&p, &rng);
    result want = solve(NULL, &p, 1);
    /* every sentence's marginals sum to one at each of its positions */
    int sums = 1;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < p.lengths[b]; t++) {
            double s = 0;
            for (int k = 0; k < K; k++)
                s += want.marg[((size_t)t * B + b) * K + k];
            sums &= fabs(s - 1) < 1e-5;
        }
    CHECK(sums, "the log-space marginals sum to 1");
    test_set(&p, &want, LSTM_KERNELS_GENERIC, LSTM_BLAS_OFF, 1, "generic");
    test_set(&p, &want, LSTM_KERNELS_AVX2, LSTM_BLAS_OFF, 2, "avx2, 2 threads");
    test_set(&p, &want, LSTM_KERNELS_AVX512, LSTM_BLAS_OFF, 2, "avx512, 2 threads");
    test_set(&p, &want, LSTM_KERNELS_AVX512_BF16, LSTM_BLAS_OFF, 2, "avx512bf16, 2 threads");
    test_set(&p, &want, LSTM_KERNELS_AUTO, LSTM_BLAS_ON, 2, "auto, the BLAS, 2 threads");
    release(&want);
    free(p.emis), free(p.trans), free(p.start), free(p.end);
    return check_summary();
}
