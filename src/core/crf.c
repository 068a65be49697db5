/* crf.c - a linear-chain conditional random field over the tags (Lafferty,
 * McCallum and Pereira 2001) as a loss layer: the negative log-likelihood
 * of the gold tags, its gradient, and each position's marginals
 * P(y_t = k | x) by the forward-backward algorithm. Compiled in float and
 * in double.
 *
 * A sentence of n tags y scores
 *     s(y) = start[y_0] + sum_t emis_t[y_t] + sum_{t>0} trans[y_{t-1}][y_t]
 *            + end[y_{n-1}]
 * and p(y | x) = exp(s(y)) / Z, Z summing exp(s) over all K^n sequences.
 * The loss of a sentence is log Z - log Z_gold, where Z_gold sums over the
 * sequences that agree with its known tags (one sequence, s(gold), when
 * every tag is known; an unknown tag is any tag). Its gradient with
 * respect to the scores is P(·) - P(· | known tags): the marginals of each
 * position, of each pair of neighbours (the transitions), of the first and
 * the last position (start, end).
 *
 * Two ways to compute it, the same sums:
 *  - scaled: probabilities, normalised at every step (Rabiner 1989,
 *    "scaling"), so that a step is a product with exp(trans) that the
 *    kernel table's GEMM does for the whole batch at once;
 *  - in logs, in double, sentence by sentence (log-sum-exp): the reference
 *    the scaled way is tested against, and the way taken when the
 *    parameters spread so far that the scaled one could underflow (see
 *    scaled_safe).
 */
#include "nn.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline real rexp(real x) {
    return sizeof(real) == sizeof(float) ? (real)expf((float)x) : (real)exp((double)x);
}

static size_t up64(size_t n) { return (n + 63) / 64 * 64; }

/* The work areas of nn_crf, in order. */
typedef struct {
    real *E, *G, *es, *ee;      /* exp(trans - tmax) (K,K), pair sums (K,K), exp(start), exp(end) */
    real *phi, *alpha, *u, *mg; /* (T,B,K) each */
    real *c;                    /* (T,B) the scale of each step */
    double *lz, *zend;          /* (B) log Z of each row, the last step's sum */
    double *la, *lb, *lp;       /* the log-space way: (T,K), (T,K), (K,K) */
    unsigned char *use;         /* (B) rows of the pass under way */
    unsigned char *gm;          /* (B) rows of the pass that add to the loss and gradient */
    unsigned char *kn;          /* (B) each row's known tags: 2 all, 1 some, 0 none */
} crf_work;

/* Lays the work areas out from base into w and returns their bytes; with
 * w NULL only the bytes (offsets are counted as sizes, so that no pointer
 * arithmetic is done on a null base). */
static size_t carve(crf_work *w, void *base, int T, int B, int K) {
    size_t at = 0;
    size_t TBK = (size_t)T * B * K, KK = (size_t)K * K, TK = (size_t)T * K;
#define TAKE(field, type, n)                                                                   \
    do {                                                                                       \
        if (w)                                                                                 \
            w->field = (type *)(void *)((char *)base + at);                                    \
        at += up64(sizeof(type) * (n));                                                        \
    } while (0)
    TAKE(E, real, KK);
    TAKE(G, real, KK);
    TAKE(es, real, K);
    TAKE(ee, real, K);
    TAKE(phi, real, TBK);
    TAKE(alpha, real, TBK);
    TAKE(u, real, TBK);
    TAKE(mg, real, TBK);
    TAKE(c, real, (size_t)T * B);
    TAKE(lz, double, B);
    TAKE(zend, double, B);
    TAKE(la, double, TK);
    TAKE(lb, double, TK);
    TAKE(lp, double, KK);
    TAKE(use, unsigned char, B);
    TAKE(gm, unsigned char, B);
    TAKE(kn, unsigned char, B);
#undef TAKE
    return at;
}

size_t nn_crf_work_size(int T, int B, int K) { return carve(NULL, NULL, T, B, K) + 64; }

static int allowed(const nn_crf_args *a, int constrained, size_t row, int k) {
    return !constrained || a->tags[row] < 0 || a->tags[row] == k;
}

static real range_of(const real *x, size_t n, real *mx) {
    real lo = x[0], hi = x[0];
    for (size_t i = 1; i < n; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    *mx = hi;
    return hi - lo;
}

/* The scaled way drops what underflows: a tag whose emission is more than
 * ~87 below its position's best (exp underflows in float), a state below
 * FLT_MIN of its step's sum. Such a term could matter only if the
 * transitions, start and end favoured it by as much; with
 * 2 range(trans) + range(start) + range(end) <= 70 what is dropped is below
 * e^-17 of what is kept, under float's rounding. Parameters that are not
 * finite also go the log-space way (which then gives NaN, as it should). */
static int scaled_safe(const nn_crf_args *a, crf_work *w, real *tmax, real *smax, real *emax) {
    int K = a->K;
    real rt = range_of(a->transitions, (size_t)K * K, tmax);
    real rs = range_of(a->start, (size_t)K, smax), re = range_of(a->end, (size_t)K, emax);
    real total = 2 * rt + rs + re;
    if (!(total <= 70))
        return 0;
    for (size_t i = 0; i < (size_t)K * K; i++)
        w->E[i] = rexp(a->transitions[i] - *tmax);
    for (int k = 0; k < K; k++) {
        w->es[k] = rexp(a->start[k] - *smax);
        w->ee[k] = rexp(a->end[k] - *emax);
    }
    return 1;
}

/* One scaled pass over the rows w->use marks, constrained to the known
 * tags or not: w->lz[b] = log Z, mg = the marginals of each position (0
 * past the end and on the rows not in use), w->G = the sums of the pairs'
 * marginals over the rows w->gm marks (a subset of use). */
static void scaled_pass(const nn_ctx *ctx, const nn_crf_args *a, crf_work *w, int constrained,
                        real tmax, real smax, real emax) {
    /* the products in float even where the context's are bfloat16: the
     * recursions carry probabilities from step to step, where bfloat16's 8
     * bits would put an error of 1% into the marginals */
    const nn_kernels *kt = ctx ? ctx->k : &nn_kernels_ref;
    void (*gemm)(const nn_ctx *, int, int, int, int, int, real, const real *, int, const real *,
                 int, real, real *, int) = kt->gemm_float ? kt->gemm_float : kt->gemm;
    int T = a->T, B = a->B, K = a->K;
    size_t BK = (size_t)B * K;
    /* phi = exp(emission - its position's largest) on the allowed tags */
    for (int b = 0; b < B; b++)
        w->lz[b] = 0;
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++) {
            size_t row = (size_t)t * B + b;
            real *ph = w->phi + row * K;
            const real *e = a->emissions + row * K;
            if (!w->use[b] || t >= a->lengths[b]) {
                memset(ph, 0, sizeof(real) * K);
                continue;
            }
            real m = -INFINITY;
            for (int j = 0; j < K; j++)
                if (allowed(a, constrained, row, j) && e[j] > m)
                    m = e[j];
            for (int j = 0; j < K; j++)
                ph[j] = allowed(a, constrained, row, j) ? rexp(e[j] - m) : 0;
            w->lz[b] += m;
        }
    /* forward: alpha_t = (alpha_{t-1} E) * phi_t, each row scaled to sum 1 */
    for (int t = 0; t < T; t++) {
        real *al = w->alpha + t * BK;
        const real *ph = w->phi + t * BK;
        if (t == 0)
            for (int b = 0; b < B; b++)
                for (int j = 0; j < K; j++)
                    al[(size_t)b * K + j] = w->es[j] * ph[(size_t)b * K + j];
        else {
            gemm(ctx, 0, 0, B, K, K, 1, al - BK, K, w->E, K, 0, al, K);
            for (size_t i = 0; i < BK; i++)
                al[i] *= ph[i];
        }
        for (int b = 0; b < B; b++) {
            real *r = al + (size_t)b * K, s = 0;
            w->c[(size_t)t * B + b] = 1;
            if (!w->use[b] || t >= a->lengths[b])
                continue;
            for (int j = 0; j < K; j++)
                s += r[j];
            w->c[(size_t)t * B + b] = s;
            for (int j = 0; j < K; j++)
                r[j] /= s;
            w->lz[b] += log((double)s) + (t ? tmax : smax);
        }
    }
    for (int b = 0; b < B; b++) {
        if (!w->use[b])
            continue;
        const real *r = w->alpha + (size_t)(a->lengths[b] - 1) * BK + (size_t)b * K;
        double z = 0;
        for (int j = 0; j < K; j++)
            z += (double)r[j] * w->ee[j];
        w->zend[b] = z;
        w->lz[b] += log(z) + emax;
    }
    /* backward: beta_t = u_{t+1} E^T, with u_t = phi_t beta_t / c_t; beta
     * at the last position is exp(end) / zend. u replaces beta in place
     * once the marginals alpha_t beta_t are taken. */
    for (int t = T - 1; t >= 0; t--) {
        real *bt = w->u + t * BK, *mg = w->mg + t * BK;
        const real *al = w->alpha + t * BK, *ph = w->phi + t * BK, *c = w->c + (size_t)t * B;
        if (t == T - 1)
            memset(bt, 0, sizeof(real) * BK);
        else
            gemm(ctx, 0, 1, B, K, K, 1, bt + BK, K, w->E, K, 0, bt, K);
        for (int b = 0; b < B; b++) {
            real *r = bt + (size_t)b * K;
            if (w->use[b] && t == a->lengths[b] - 1)
                for (int j = 0; j < K; j++)
                    r[j] = (real)(w->ee[j] / w->zend[b]);
            for (int j = 0; j < K; j++) {
                size_t i = (size_t)b * K + j;
                mg[i] = al[i] * r[j];
                r[j] = ph[i] * r[j] / c[b];
            }
        }
    }
    /* the pairs: sum over t >= 1 of alpha_{t-1}^T u_t, times E, over the
     * rows that add to the gradient (the others' u is cleared first) */
    for (int t = 1; t < T; t++)
        for (int b = 0; b < B; b++)
            if (w->use[b] && !w->gm[b])
                memset(w->u + t * BK + (size_t)b * K, 0, sizeof(real) * K);
    if (T > 1)
        gemm(ctx, 1, 0, K, K, (T - 1) * B, 1, w->alpha, K, w->u + BK, K, 0, w->G, K);
    else
        memset(w->G, 0, sizeof(real) * K * K);
    for (size_t i = 0; i < (size_t)K * K; i++)
        w->G[i] *= w->E[i];
}

/* What a pass adds to the gradient: sign * scale * the marginals of the
 * rows w->gm marks. */
static void scaled_grad(const nn_crf_args *a, const crf_work *w, real sign) {
    int B = a->B, K = a->K;
    real sc = sign * a->scale;
    for (int b = 0; b < B; b++) {
        if (!w->gm[b])
            continue;
        int n = a->lengths[b];
        for (int t = 0; t < n; t++) {
            size_t row = (size_t)t * B + b;
            const real *mg = w->mg + row * K;
            if (a->d_emissions)
                for (int j = 0; j < K; j++)
                    a->d_emissions[row * K + j] += sc * mg[j];
            if (t == 0 && a->d_start)
                for (int j = 0; j < K; j++)
                    a->d_start[j] += sc * mg[j];
            if (t == n - 1 && a->d_end)
                for (int j = 0; j < K; j++)
                    a->d_end[j] += sc * mg[j];
        }
    }
    if (a->d_transitions)
        for (size_t i = 0; i < (size_t)K * K; i++)
            a->d_transitions[i] += sc * w->G[i];
}

/* ------------------------------------------------------------------ */
/* The log-space way, one sentence, in double. */

static double lse(const double *x, int n) {
    double m = -INFINITY, s = 0;
    for (int i = 0; i < n; i++) {
        if (isnan(x[i]))
            return x[i]; /* NaN in, NaN out (the maximum below would skip it) */
        m = x[i] > m ? x[i] : m;
    }
    if (m == -INFINITY)
        return m;
    for (int i = 0; i < n; i++)
        s += exp(x[i] - m);
    return m + log(s);
}

/* log Z of row b (constrained or not); adds sign * scale * its marginals
 * to the gradient, and writes them into marg (rows t*B+b) when given. */
static double log_row(const nn_crf_args *a, crf_work *w, int b, int constrained, double sign,
                      real *marg) {
    int B = a->B, K = a->K, n = a->lengths[b];
    double *la = w->la, *lb = w->lb, *tmp = w->lp;
#define EM(t, j)                                                                               \
    (allowed(a, constrained, (size_t)(t) * B + b, j)                                          \
         ? (double)a->emissions[((size_t)(t) * B + b) * K + (j)]                               \
         : -INFINITY)
#define TR(i, j) ((double)a->transitions[(size_t)(i) * K + (j)])
    for (int j = 0; j < K; j++)
        la[j] = a->start[j] + EM(0, j);
    for (int t = 1; t < n; t++)
        for (int j = 0; j < K; j++) {
            for (int i = 0; i < K; i++)
                tmp[i] = la[(size_t)(t - 1) * K + i] + TR(i, j);
            la[(size_t)t * K + j] = lse(tmp, K) + EM(t, j);
        }
    for (int j = 0; j < K; j++) {
        lb[(size_t)(n - 1) * K + j] = a->end[j];
        tmp[j] = la[(size_t)(n - 1) * K + j] + a->end[j];
    }
    double lz = lse(tmp, K);
    for (int t = n - 2; t >= 0; t--)
        for (int i = 0; i < K; i++) {
            for (int j = 0; j < K; j++)
                tmp[j] = TR(i, j) + EM(t + 1, j) + lb[(size_t)(t + 1) * K + j];
            lb[(size_t)t * K + i] = lse(tmp, K);
        }
    double sc = sign * a->scale;
    for (int t = 0; t < n; t++) {
        size_t row = (size_t)t * B + b;
        for (int j = 0; j < K; j++) {
            double p = exp(la[(size_t)t * K + j] + lb[(size_t)t * K + j] - lz);
            if (marg)
                marg[row * K + j] = (real)p;
            if (a->d_emissions)
                a->d_emissions[row * K + j] += (real)(sc * p);
            if (t == 0 && a->d_start)
                a->d_start[j] += (real)(sc * p);
            if (t == n - 1 && a->d_end)
                a->d_end[j] += (real)(sc * p);
        }
        if (t > 0 && a->d_transitions)
            for (int i = 0; i < K; i++)
                for (int j = 0; j < K; j++) {
                    double p = exp(la[(size_t)(t - 1) * K + i] + TR(i, j) + EM(t, j) +
                                   lb[(size_t)t * K + j] - lz);
                    a->d_transitions[(size_t)i * K + j] += (real)(sc * p);
                }
    }
#undef EM
#undef TR
    return lz;
}

/* ------------------------------------------------------------------ */

/* Row b's known tags: 2 every one, 1 some, 0 none. */
static int known(const nn_crf_args *a, int b) {
    int n = a->lengths[b], some = 0, all = 1;
    for (int t = 0; t < n; t++) {
        int y = a->tags[(size_t)t * a->B + b];
        some |= y >= 0;
        all &= y >= 0;
    }
    return all ? 2 : some;
}

/* s(gold) of a row whose tags are all known; its one-hot gradient. */
static double gold_row(const nn_crf_args *a, int b) {
    int B = a->B, K = a->K, n = a->lengths[b];
    const int32_t *y = a->tags;
    real sc = a->scale;
    double s = a->start[y[b]] + a->end[y[(size_t)(n - 1) * B + b]];
    for (int t = 0; t < n; t++) {
        size_t row = (size_t)t * B + b;
        s += a->emissions[row * K + y[row]];
        if (a->d_emissions)
            a->d_emissions[row * K + y[row]] -= sc;
        if (t > 0) {
            size_t ij = (size_t)y[row - B] * K + y[row];
            s += a->transitions[ij];
            if (a->d_transitions)
                a->d_transitions[ij] -= sc;
        }
    }
    if (a->d_start)
        a->d_start[y[b]] -= sc;
    if (a->d_end)
        a->d_end[y[(size_t)(n - 1) * B + b]] -= sc;
    return s;
}

double nn_crf(const nn_ctx *ctx, const nn_crf_args *a, void *work, int *count) {
    int T = a->T, B = a->B, K = a->K;
    size_t TBK = (size_t)T * B * K;
    crf_work w;
    carve(&w, (void *)(((uintptr_t)work + 63) & ~(uintptr_t)63), T, B, K);
    real tmax = 0, smax = 0, emax = 0;
    int scaled = a->force_log ? 0 : scaled_safe(a, &w, &tmax, &smax, &emax);
    double loss = 0;
    int counted = 0;
    /* A row adds to the loss and the gradient (wants) when a tag of it is
     * known, or, without tags, always (the loss is then log Z). The gold
     * side first: it reads the emissions, which the marginals may overwrite. */
    for (int b = 0; b < B; b++) {
        w.kn[b] = (unsigned char)(a->tags ? known(a, b) : 0);
        for (int t = 0; a->tags && t < a->lengths[b]; t++)
            counted += a->tags[(size_t)t * B + b] >= 0;
        if (w.kn[b] == 2)
            loss -= gold_row(a, b);
    }
#define WANTS(b) (!a->tags || w.kn[b] > 0)
    if (scaled) {
        int any = 0; /* the rows with some tags known: minus P(. | those) */
        for (int b = 0; b < B; b++)
            any |= (w.use[b] = w.gm[b] = w.kn[b] == 1);
        if (any) {
            scaled_pass(ctx, a, &w, 1, tmax, smax, emax);
            scaled_grad(a, &w, -1);
            for (int b = 0; b < B; b++)
                loss -= w.use[b] ? w.lz[b] : 0;
        }
        for (int b = 0; b < B; b++) { /* every row for the marginals; P(.) of those that want */
            w.gm[b] = WANTS(b);
            w.use[b] = w.gm[b] || a->marginals;
        }
        scaled_pass(ctx, a, &w, 0, tmax, smax, emax);
        for (int b = 0; b < B; b++)
            loss += w.gm[b] ? w.lz[b] : 0;
        scaled_grad(a, &w, 1);
    } else {
        if (a->marginals)
            memset(w.mg, 0, sizeof(real) * TBK);
        for (int b = 0; b < B; b++) {
            if (w.kn[b] == 1)
                loss -= log_row(a, &w, b, 1, -1, NULL);
            if (WANTS(b) || a->marginals) {
                nn_crf_args g = *a; /* the gradient of the rows that want it */
                if (!WANTS(b))
                    g.d_emissions = g.d_transitions = g.d_start = g.d_end = NULL;
                double lz = log_row(&g, &w, b, 0, 1, a->marginals ? w.mg : NULL);
                loss += WANTS(b) ? lz : 0;
            }
        }
    }
#undef WANTS
    if (a->marginals) /* 0 past a row's end: -inf */
        for (size_t i = 0; i < TBK; i++)
            a->marginals[i] = w.mg[i] > 0 ? (real)log((double)w.mg[i]) : -INFINITY;
    if (count)
        *count = counted;
    return loss;
}
