/*
 * test_grad.c - every backward against central finite differences, in double.
 * This program is built from the numeric core compiled with
 * -DLSTM_REAL=double (real = double) and the reference kernels.
 */
#include "check.h"
#include "nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EPS 1e-6
#define ATOL 1e-8
#define RTOL 1e-6

static const nn_ctx ctx = {.k = &nn_kernels_ref};
static lstm_rng rng;

static double urand(void) { return 2.0 * lstm_rng_uniform(&rng) - 1.0; }

static real *rnd(size_t n) {
    real *p = malloc(sizeof(real) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        p[i] = urand();
    return p;
}

static real *zeros(size_t n) { return calloc(n ? n : 1, sizeof(real)); }

static double dot(const real *a, const real *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* Compares analytic gradient an[0..n) of a scalar function with central
 * differences obtained by perturbing x[0..n) and calling f. */
typedef double (*loss_fn)(void *arg);

static void fd_check(const char *what, loss_fn f, void *arg, real *x, const real *an, size_t n) {
    real *fd = zeros(n);
    for (size_t i = 0; i < n; i++) {
        real keep = x[i];
        x[i] = keep + EPS;
        double lp = f(arg);
        x[i] = keep - EPS;
        double lm = f(arg);
        x[i] = keep;
        fd[i] = (lp - lm) / (2 * EPS);
    }
    CHECK_CLOSE(an, fd, n, ATOL, RTOL, "%s: analytic gradient vs finite differences", what);
    free(fd);
}

/* ------------------------------------------------------------------ */
/* The LSTM: L = <y, wy> + <hn, whn> + <cn, wcn>. */

typedef struct {
    nn_lstm_dims d;
    int T, B, batch_first, use_h0, use_len, training;
    int *lengths;
    real *x, *h0, *c0, *y, *hn, *cn, *wy, *whn, *wcn;
    real **w;     /* per layer-direction: w_ih, w_hh, b_ih, b_hh, w_hr, w_peep */
    real **dw;
    nn_lstm_weights *tab;
    nn_lstm_ws *ws;
    size_t nx, nh, nc, ny;
} lstm_case;

static double lstm_loss(void *arg) {
    lstm_case *c = arg;
    nn_lstm_ws_pack(c->ws, &c->d, ctx.k, c->tab);
    nn_lstm_io io = {c->T, c->B, c->batch_first, c->x, c->use_len ? c->lengths : NULL,
                     c->use_h0 ? c->h0 : NULL, c->use_h0 ? c->c0 : NULL, c->y, c->hn, c->cn};
    lstm_rng drop;
    lstm_rng_seed(&drop, 7); /* the same dropout mask every time */
    nn_lstm_forward(&ctx, &c->d, c->tab, c->ws, &io, c->training, &drop);
    return dot(c->y, c->wy, c->ny) + dot(c->hn, c->whn, c->nh) + dot(c->cn, c->wcn, c->nc);
}

#define NT 6 /* tensors per layer-direction */

static size_t sizes_of(const nn_lstm_dims *d, int ld, int k) {
    int H = d->H, Ho = nn_lstm_hout(d);
    size_t s[NT] = {(size_t)4 * H * nn_lstm_in(d, ld / d->D), (size_t)4 * H * Ho,
                    d->bias ? (size_t)4 * H : 0, d->bias ? (size_t)4 * H : 0,
                    (size_t)d->P * H, d->peephole ? (size_t)3 * H : 0};
    return s[k];
}

/* With a clip: the clamp must act on some pre-activations and not on all,
 * and none may sit within reach of the finite differences of the
 * threshold (the derivative jumps there). Counted over the rows the cell
 * ran (sorted by length, the first bs rows of each step). */
static void check_clip_active(lstm_case *c, const char *name) {
    const nn_lstm_dims *d = &c->d;
    int H = d->H;
    long in = 0, out = 0;
    double nearest = INFINITY;
    lstm_loss(c);
    int *len = malloc(sizeof(int) * c->B);
    for (int b = 0; b < c->B; b++)
        len[b] = c->use_len ? c->lengths[b] : c->T;
    for (int i = 1; i < c->B; i++) /* sorted, longest first, as the core does */
        for (int j = i; j > 0 && len[j - 1] < len[j]; j--) {
            int t = len[j];
            len[j] = len[j - 1];
            len[j - 1] = t;
        }
    for (int ld = 0; ld < d->L * d->D; ld++) {
        const real *G = nn_lstm_ws_gates(c->ws, ld);
        for (int t = 0; t < c->T; t++)
            for (int j = 0; j < c->B && len[j] > t; j++)
                for (int r = 0; r < 4 * H; r++) {
                    if (d->input_forget && r >= H && r < 2 * H)
                        continue; /* f's pre-activation is unused */
                    double a = fabs((double)G[((size_t)t * c->B + j) * 4 * H + r]);
                    if (a > d->clip)
                        out++;
                    else
                        in++;
                    if (fabs(a - d->clip) < nearest)
                        nearest = fabs(a - d->clip);
                }
    }
    free(len);
    CHECK(out > 0 && in > 0, "%s: the clip acts on some pre-activations (%ld of %ld)", name, out,
          in + out);
    CHECK(nearest > 1e-4, "%s: no pre-activation within 1e-4 of the clip (%g)", name, nearest);
}

static void lstm_grad_case(const char *name, nn_lstm_dims d, int T, int B, int batch_first,
                           int use_h0, int use_len, int training) {
    lstm_case c = {0};
    c.d = d;
    c.T = T;
    c.B = B;
    c.batch_first = batch_first;
    c.use_h0 = use_h0;
    c.use_len = use_len;
    c.training = training;
    int H = d.H, Ho = nn_lstm_hout(&d), LD = d.L * d.D;
    c.nx = (size_t)T * B * d.I;
    c.ny = (size_t)T * B * d.D * Ho;
    c.nh = (size_t)LD * B * Ho;
    c.nc = (size_t)LD * B * H;
    c.lengths = malloc(sizeof(int) * B);
    for (int b = 0; b < B; b++)
        c.lengths[b] = 1 + (int)lstm_rng_below(&rng, (uint64_t)T);
    c.lengths[B / 2] = T;
    c.x = rnd(c.nx);
    c.h0 = rnd(c.nh);
    c.c0 = rnd(c.nc);
    c.y = zeros(c.ny);
    c.hn = zeros(c.nh);
    c.cn = zeros(c.nc);
    c.wy = rnd(c.ny);
    c.whn = rnd(c.nh);
    c.wcn = rnd(c.nc);
    c.w = calloc((size_t)LD * NT, sizeof(real *));
    c.dw = calloc((size_t)LD * NT, sizeof(real *));
    c.tab = calloc((size_t)LD, sizeof *c.tab);
    size_t sizes[NT];
    for (int l = 0; l < d.L; l++)
        for (int dir = 0; dir < d.D; dir++) {
            int i = l * d.D + dir;
            sizes[0] = (size_t)4 * H * nn_lstm_in(&d, l);
            sizes[1] = (size_t)4 * H * Ho;
            sizes[2] = sizes[3] = d.bias ? (size_t)4 * H : 0;
            sizes[4] = d.P ? (size_t)d.P * H : 0;
            sizes[5] = d.peephole ? (size_t)3 * H : 0;
            for (int k = 0; k < NT; k++) {
                c.w[i * NT + k] = sizes[k] ? rnd(sizes[k]) : NULL;
                c.dw[i * NT + k] = sizes[k] ? zeros(sizes[k]) : NULL;
            }
            c.tab[i] = (nn_lstm_weights){.w_ih = c.w[i * NT], .w_hh = c.w[i * NT + 1],
                                         .b_ih = c.w[i * NT + 2], .b_hh = c.w[i * NT + 3],
                                         .w_hr = c.w[i * NT + 4], .dw_ih = c.dw[i * NT],
                                         .dw_hh = c.dw[i * NT + 1], .db_ih = c.dw[i * NT + 2],
                                         .db_hh = c.dw[i * NT + 3], .dw_hr = c.dw[i * NT + 4],
                                         .w_peep = c.w[i * NT + 5], .dw_peep = c.dw[i * NT + 5]};
        }
    c.ws = nn_lstm_ws_create();
    nn_lstm_ws_reserve(c.ws, &d, T, B, !use_len && !batch_first);

    if (d.clip > 0)
        check_clip_active(&c, name);
    if (d.input_forget) { /* the f rows have no effect: exactly zero gradients */
        lstm_loss(&c);
        nn_lstm_grads g0 = {.dy = c.wy, .dhn = c.whn, .dcn = c.wcn};
        nn_lstm_backward(&ctx, &d, c.tab, c.ws, &g0);
        for (int i = 0; i < LD; i++) {
            int In = nn_lstm_in(&d, i / d.D), zero = 1;
            for (int r = H; r < 2 * H; r++) {
                for (int k = 0; k < In; k++)
                    zero &= c.dw[i * NT][(size_t)r * In + k] == 0;
                for (int k = 0; k < Ho; k++)
                    zero &= c.dw[i * NT + 1][(size_t)r * Ho + k] == 0;
                if (d.bias)
                    zero &= c.dw[i * NT + 2][r] == 0 && c.dw[i * NT + 3][r] == 0;
            }
            CHECK(zero, "%s: input_forget: the f rows of layer-direction %d get zero gradients",
                  name, i);
        }
        for (int i = 0; i < LD; i++)
            for (int k = 0; k < NT; k++)
                if (c.dw[i * NT + k])
                    memset(c.dw[i * NT + k], 0, sizeof(real) * sizes_of(&d, i, k));
    }

    /* analytic */
    real *dx = zeros(c.nx), *dh0 = zeros(c.nh), *dc0 = zeros(c.nc);
    lstm_loss(&c);
    nn_lstm_grads g = {.dy = c.wy, .dhn = c.whn, .dcn = c.wcn, .dx = dx,
                       .dh0 = use_h0 ? dh0 : NULL, .dc0 = use_h0 ? dc0 : NULL};
    CHECK(nn_lstm_backward(&ctx, &d, c.tab, c.ws, &g) == 0, "%s: backward ran", name);
    CHECK(nn_lstm_backward(&ctx, &d, c.tab, c.ws, &g) == -1,
          "%s: a second backward without forward is refused", name);

    char what[160];
    snprintf(what, sizeof what, "%s: input", name);
    fd_check(what, lstm_loss, &c, c.x, dx, c.nx);
    if (use_h0) {
        snprintf(what, sizeof what, "%s: h0", name);
        fd_check(what, lstm_loss, &c, c.h0, dh0, c.nh);
        snprintf(what, sizeof what, "%s: c0", name);
        fd_check(what, lstm_loss, &c, c.c0, dc0, c.nc);
    }
    static const char *wn[NT] = {"weight_ih", "weight_hh", "bias_ih",
                                 "bias_hh",   "weight_hr", "weight_peephole"};
    for (int i = 0; i < LD; i++)
        for (int k = 0; k < NT; k++) {
            if (!c.w[i * NT + k])
                continue;
            int l = i / d.D, dir = i % d.D;
            sizes[0] = (size_t)4 * H * nn_lstm_in(&d, l);
            sizes[1] = (size_t)4 * H * Ho;
            sizes[2] = sizes[3] = (size_t)4 * H;
            sizes[4] = (size_t)d.P * H;
            sizes[5] = (size_t)3 * H;
            snprintf(what, sizeof what, "%s: %s_l%d%s", name, wn[k], l, dir ? "_reverse" : "");
            fd_check(what, lstm_loss, &c, c.w[i * NT + k], c.dw[i * NT + k], sizes[k]);
        }
    /* with lengths, outputs past each length are zero */
    if (use_len) {
        int zero_ok = 1;
        lstm_loss(&c);
        for (int b = 0; b < B; b++)
            for (int t = c.lengths[b]; t < T; t++)
                for (int j = 0; j < d.D * Ho; j++) {
                    size_t row = batch_first ? (size_t)b * T + t : (size_t)t * B + b;
                    if (c.y[row * d.D * Ho + j] != 0)
                        zero_ok = 0;
                }
        CHECK(zero_ok, "%s: output is zero past each length", name);
    }

    for (int i = 0; i < LD * NT; i++) {
        free(c.w[i]);
        free(c.dw[i]);
    }
    free(c.w);
    free(c.dw);
    free(c.tab);
    nn_lstm_ws_free(c.ws);
    free(c.lengths);
    free(c.x), free(c.h0), free(c.c0), free(c.y), free(c.hn), free(c.cn);
    free(c.wy), free(c.whn), free(c.wcn), free(dx), free(dh0), free(dc0);
}

/* ------------------------------------------------------------------ */
/* Layers. Each case: L = <out, w> for a random w. */

typedef struct {
    int N, K, O;
    real *in, *w, *b, *out, *wout;
} linear_case;

static double linear_loss(void *arg) {
    linear_case *c = arg;
    nn_linear_forward(&ctx, c->out, c->in, c->w, c->b, c->N, c->K, c->O);
    return dot(c->out, c->wout, (size_t)c->N * c->O);
}

static void test_linear(void) {
    linear_case c = {5, 7, 4, NULL, NULL, NULL, NULL, NULL};
    c.in = rnd(35), c.w = rnd(28), c.b = rnd(4), c.out = zeros(20), c.wout = rnd(20);
    real *din = zeros(35), *dw = zeros(28), *db = zeros(4);
    nn_linear_backward(&ctx, din, dw, db, c.wout, c.in, c.w, c.N, c.K, c.O);
    fd_check("linear: input", linear_loss, &c, c.in, din, 35);
    fd_check("linear: weight", linear_loss, &c, c.w, dw, 28);
    fd_check("linear: bias", linear_loss, &c, c.b, db, 4);
    free(c.in), free(c.w), free(c.b), free(c.out), free(c.wout), free(din), free(dw), free(db);
}

typedef struct {
    int N, V, E;
    int32_t *ids;
    real *table, *out, *wout;
} emb_case;

static double emb_loss(void *arg) {
    emb_case *c = arg;
    nn_embedding_forward(c->out, c->ids, c->table, c->N, c->E);
    return dot(c->out, c->wout, (size_t)c->N * c->E);
}

static void test_embedding(void) {
    int32_t ids[6] = {3, 0, 3, 2, 4, 3}; /* repeated ids accumulate */
    emb_case c = {6, 5, 3, ids, rnd(15), zeros(18), rnd(18)};
    real *dt = zeros(15);
    nn_embedding_backward(dt, c.wout, ids, 6, 3);
    fd_check("embedding: table", emb_loss, &c, c.table, dt, 15);
    free(c.table), free(c.out), free(c.wout), free(dt);
}

typedef struct {
    int N, C, ignore;
    int32_t *t;
    real *logits, *logp;
} ce_case;

static double ce_loss(void *arg) {
    ce_case *c = arg;
    return nn_cross_entropy_forward(NULL, c->logp, c->logits, c->t, c->N, c->C, c->ignore, NULL);
}

static void test_cross_entropy(void) {
    int32_t t[5] = {1, -100, 0, 3, 3};
    ce_case c = {5, 4, -100, t, rnd(20), zeros(20)};
    for (int i = 0; i < 20; i++)
        c.logits[i] *= 5;
    real *d = zeros(20);
    int count;
    nn_cross_entropy_forward(NULL, c.logp, c.logits, t, 5, 4, -100, &count);
    CHECK(count == 4, "cross entropy counts the rows not ignored: %d", count);
    nn_cross_entropy_backward(NULL, d, c.logp, t, 5, 4, -100, 1);
    fd_check("cross entropy: logits", ce_loss, &c, c.logits, d, 20);
    free(c.logits), free(c.logp), free(d);
}

typedef struct {
    real *a, *b;
    size_t n;
} mse_case;

static double mse_loss(void *arg) {
    mse_case *c = arg;
    return nn_mse_forward(c->a, c->b, c->n);
}

static void test_mse(void) {
    mse_case c = {rnd(9), rnd(9), 9};
    real *d = zeros(9);
    nn_mse_backward(d, c.a, c.b, 9, 1);
    fd_check("mse: a", mse_loss, &c, c.a, d, 9);
    free(c.a), free(c.b), free(d);
}

typedef struct {
    int T, B, F, last;
    const int *len;
    real *x, *out, *wout;
} pool_case;

static double pool_loss(void *arg) {
    pool_case *c = arg;
    if (c->last)
        nn_last_pool_forward(c->out, c->x, c->len, c->T, c->B, c->F);
    else
        nn_mean_pool_forward(c->out, c->x, c->len, c->T, c->B, c->F);
    return dot(c->out, c->wout, (size_t)c->B * c->F);
}

static void test_pooling(void) {
    static const int len[3] = {4, 1, 2};
    for (int last = 0; last < 2; last++) {
        pool_case c = {4, 3, 2, last, len, rnd(24), zeros(6), rnd(6)};
        real *dx = zeros(24);
        if (last)
            nn_last_pool_backward(dx, c.wout, len, 4, 3, 2);
        else
            nn_mean_pool_backward(dx, c.wout, len, 4, 3, 2);
        fd_check(last ? "last pooling: x" : "mean pooling: x", pool_loss, &c, c.x, dx, 24);
        free(c.x), free(c.out), free(c.wout), free(dx);
    }
}

typedef struct {
    real *x, *out, *mask, *wout;
    size_t n;
} drop_case;

static double drop_loss(void *arg) {
    drop_case *c = arg;
    lstm_rng r;
    lstm_rng_seed(&r, 3);
    nn_dropout_forward(c->out, c->mask, c->x, c->n, 0.4, &r);
    return dot(c->out, c->wout, c->n);
}

static void test_dropout(void) {
    drop_case c = {rnd(50), zeros(50), zeros(50), rnd(50), 50};
    real *dx = zeros(50);
    drop_loss(&c);
    int dropped = 0;
    for (int i = 0; i < 50; i++)
        dropped += c.mask[i] == 0;
    CHECK(dropped > 5 && dropped < 35, "dropout 0.4 drops about 20 of 50: %d", dropped);
    nn_dropout_backward(dx, c.wout, c.mask, 50);
    fd_check("dropout: x", drop_loss, &c, c.x, dx, 50);
    free(c.x), free(c.out), free(c.mask), free(c.wout), free(dx);
}

int main(void) {
    lstm_rng_seed(&rng, 1234);
    /* I, H, P, L, D, bias, dropout */
    lstm_grad_case("1 layer", (nn_lstm_dims){3, 4, 0, 1, 1, 1, 0, 0, 0, 0, 0}, 5, 2, 0, 0, 0, 1);
    lstm_grad_case("h0 c0", (nn_lstm_dims){3, 5, 0, 1, 1, 1, 0, 0, 0, 0, 0}, 4, 3, 0, 1, 0, 1);
    lstm_grad_case("no bias, batch first", (nn_lstm_dims){4, 3, 0, 1, 1, 0, 0, 0, 0, 0, 0}, 3, 2, 1, 1, 0, 1);
    lstm_grad_case("lengths", (nn_lstm_dims){3, 4, 0, 1, 1, 1, 0, 0, 0, 0, 0}, 6, 4, 0, 1, 1, 1);
    lstm_grad_case("bidirectional lengths", (nn_lstm_dims){3, 4, 0, 1, 2, 1, 0, 0, 0, 0, 0}, 5, 3, 0, 1, 1,
                   1);
    lstm_grad_case("projection", (nn_lstm_dims){3, 5, 2, 1, 1, 1, 0, 0, 0, 0, 0}, 4, 2, 0, 1, 0, 1);
    lstm_grad_case("2 layers bidirectional proj lengths",
                   (nn_lstm_dims){3, 4, 3, 2, 2, 1, 0, 0, 0, 0, 0}, 5, 3, 1, 1, 1, 1);
    lstm_grad_case("3 layers", (nn_lstm_dims){2, 3, 0, 3, 1, 1, 0, 0, 0, 0, 0}, 4, 2, 0, 1, 0, 1);
    lstm_grad_case("2 layers dropout", (nn_lstm_dims){3, 4, 0, 2, 2, 1, 0.3, 0, 0, 0, 0}, 4, 2, 0, 1, 1, 1);
    lstm_grad_case("T = 1, B = 1", (nn_lstm_dims){3, 4, 0, 2, 2, 1, 0, 0, 0, 0, 0}, 1, 1, 0, 1, 0, 1);
    /* ONNX's options: ..., peephole, clip, input_forget */
    lstm_grad_case("peephole", (nn_lstm_dims){3, 4, 0, 1, 1, 1, 0, 1, 0, 0, 0}, 5, 2, 0, 1, 0, 1);
    lstm_grad_case("clip", (nn_lstm_dims){3, 4, 0, 1, 1, 1, 0, 0, 0.9, 0, 0}, 5, 2, 0, 1, 0, 1);
    lstm_grad_case("input_forget", (nn_lstm_dims){3, 4, 0, 1, 1, 1, 0, 0, 0, 1, 0}, 5, 2, 0, 1, 0,
                   1);
    lstm_grad_case("peephole clip input_forget", (nn_lstm_dims){3, 4, 0, 1, 1, 1, 0, 1, 0.9, 1, 0},
                   5, 3, 0, 1, 1, 1);
    lstm_grad_case("peephole, 2 layers bidirectional proj lengths",
                   (nn_lstm_dims){3, 4, 3, 2, 2, 1, 0, 1, 0, 0, 0}, 5, 3, 1, 1, 1, 1);
    lstm_grad_case("clip, 2 layers bidirectional proj lengths",
                   (nn_lstm_dims){3, 4, 3, 2, 2, 1, 0, 0, 0.8, 0, 0}, 5, 3, 1, 1, 1, 1);
    lstm_grad_case("input_forget, 2 layers bidirectional lengths no bias",
                   (nn_lstm_dims){3, 4, 0, 2, 2, 0, 0, 0, 0, 1, 0}, 5, 3, 0, 1, 1, 1);
    lstm_grad_case("all three, 2 layers bidirectional proj lengths dropout",
                   (nn_lstm_dims){3, 5, 2, 2, 2, 1, 0.3, 1, 0.8, 1, 0}, 4, 3, 1, 1, 1, 1);
    lstm_grad_case("all three, 3 layers, T = 1", (nn_lstm_dims){2, 3, 0, 3, 1, 1, 0, 1, 0.7, 1, 0}, 1,
                   2, 0, 1, 0, 1);
    /* ONNX's direction="reverse": one direction walking back in time
     * (..., input_forget, reverse) */
    lstm_grad_case("reverse", (nn_lstm_dims){3, 4, 0, 1, 1, 1, 0, 0, 0, 0, 1}, 5, 2, 0, 0, 0, 1);
    lstm_grad_case("reverse h0 lengths", (nn_lstm_dims){3, 4, 0, 1, 1, 1, 0, 0, 0, 0, 1}, 6, 4, 0,
                   1, 1, 1);
    lstm_grad_case("reverse, 2 layers proj lengths h0 batch first",
                   (nn_lstm_dims){3, 5, 2, 2, 1, 1, 0, 0, 0, 0, 1}, 5, 3, 1, 1, 1, 1);
    lstm_grad_case("reverse, 3 layers dropout, time-major in place",
                   (nn_lstm_dims){2, 3, 0, 3, 1, 1, 0.3, 0, 0, 0, 1}, 4, 2, 0, 1, 0, 1);
    lstm_grad_case("reverse, all three, 2 layers proj lengths",
                   (nn_lstm_dims){3, 4, 3, 2, 1, 1, 0, 1, 0.8, 1, 1}, 5, 3, 0, 1, 1, 1);
    lstm_grad_case("reverse, T = 1, B = 1", (nn_lstm_dims){3, 4, 0, 2, 1, 1, 0, 0, 0, 0, 1}, 1, 1,
                   0, 1, 0, 1);
    test_linear();
    test_embedding();
    test_cross_entropy();
    test_mse();
    test_pooling();
    test_dropout();
    return check_summary();
}
