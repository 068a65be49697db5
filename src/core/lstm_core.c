/*
 * lstm_core.c - torch.nn.LSTM forward and backward through time, and the
 * one-step API, over the kernels of nn.h. Read it beside PyTorch's nn.LSTM
 * documentation. What the time loops below compute, for each layer and
 * direction, at each step t (gates in PyTorch's order i, f, g, o):
 *
 *   forward                                   backward (dh = dL/dh_t from above
 *                                             and from step t+1; dc carried)
 *   pre = x W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh       (one fused cell step;
 *   i, f, o = sigmoid(pre_i, pre_f, pre_o)               the input product
 *   g = tanh(pre_g)                                      of all steps first)
 *   c_t = f * c_{t-1} + i * g                 dc += dh * o * (1 - tanh(c_t)^2)
 *   h_t = o * tanh(c_t)                       do = dh * tanh(c_t) * o (1 - o)
 *   (h_t = h_t W_hr^T with proj_size)         di = dc * g * i (1 - i)
 *                                             dg = dc * i * (1 - g^2)
 *                                             df = dc * c_{t-1} * f (1 - f)
 *                                             dc_{t-1} = dc * f
 *                                             dh_{t-1} = dpre W_hh
 *   after the loop: dW_ih = sum_t dpre^T x, dW_hh = sum_t dpre^T h_{t-1},
 *   db = sum_t dpre, dx = dpre W_ih. The kernels' side is in nn.h above
 *   nn_cell_fwd / nn_cell_bwd. ONNX's options (peephole, clip,
 *   input_forget; nn_cell_opts in nn.h) change only the cell's pointwise
 *   part: the loops pass them on, and add the peephole gradients that the
 *   cell's backward sums per direction to dW_peep after the loop.
 *
 * How a batch is laid out. The input is copied once into time-major order
 * (T,B,.) with the sequences sorted by length, longest first, as
 * pack_padded_sequence does. Then at step t the sequences still running are
 * a prefix of the batch, of bs[t] rows, and every kernel works on that
 * prefix. The reverse direction walks t from T-1 down to 0; a sequence
 * joins it at its own last step t = len-1, with its initial state. A
 * reverse-only LSTM (dims->reverse, ONNX's direction="reverse") has D = 1
 * and walks its one direction that way: the loops take the walk's order
 * from nn_lstm_walks_back and index buffers and weights by dir as always.
 *
 * What is kept for backward, per layer and direction:
 *   G  (T,B,4H)   gate activations i,f,g,o (backward overwrites them with
 *                 the gradients of the pre-activations)
 *   Hs (T+1,B,Hout), Cs (T+1,B,H)  states; the forward direction reads
 *                 slot t and writes slot t+1, the reverse reads t+1 and
 *                 writes t, so slot "prev" of every step is a contiguous
 *                 (T,B,.) block: the weight gradients are then single
 *                 matrix products over all steps.
 *   R  (T,B,H)    o * tanh(c) before the projection (proj_size > 0 only)
 */
#include "nn.h"

#include <stdlib.h>
#include <string.h>

#define ALIGN_REALS 16 /* sub-buffers start on 64-byte boundaries (float) */

typedef struct {
    real *G, *Hs, *Cs, *R;
} dir_act;

/* What the backward of one direction carries from step to step. */
typedef struct {
    real *dhsum, *dr, *dhc, *dcc, *dbsum, *dHp;
    real *dpsum; /* (3H) the peephole gradients, with dims->peephole */
} dir_scratch;

typedef struct {
    real *cell;    /* W_hh for cell_forward (K1 = 0) */
    real *wih_nt;  /* W_ih for G = X W_ih^T */
    real *whr_nt;  /* W_hr for h = r W_hr^T */
    real *bias;    /* b_ih + b_hh, or NULL */
    real *peep;    /* (3H) p_i, p_f, p_o with dims->peephole, or NULL */
    real *step;    /* [W_ih | W_hh] for the step API */
    /* for backward, packed at its first use after a change of weights */
    real *whh_nn;  /* W_hh for dh_prev = dpre W_hh */
    real *whr_nn;  /* W_hr for dr = dh W_hr */
    /* int8 weights (not copied: the parameters' packed int8 forms); when
     * q_hh is set the float packs above are empty */
    const struct nn_q8_mat *q_ih, *q_hh, *q_hr;
} dir_pack;

struct nn_lstm_ws {
    nn_lstm_dims d;
    int have_dims;
    /* activations and scratch, sized for cap_TB = T*B rows */
    real *buf;
    size_t cap;
    int *ibuf;
    size_t icap;
    dir_act *act;          /* L*D */
    real **Y, **X, **mask; /* L each */
    real *x0, *dA, *dB;
    dir_scratch bw[2];        /* the backward's carries, one set per direction */
    int *perm, *bs, *len;
    /* packed weights */
    real *pk, *bpk;
    size_t pkcap, bpkcap;
    int bwd_stale; /* the backward's packs predate the last nn_lstm_ws_pack */
    real *spk;
    size_t spkcap;
    dir_pack *pack; /* L*D */
    /* step scratch */
    real *sbuf;
    size_t scap;
    /* the last forward */
    int T, B, batch_first, has_lengths, have_fwd;
    int direct;       /* time-major without lengths: the caller's x, y, dy, dx are used in place */
    const real *xin;  /* the input of layer 0 (x0, or the caller's x) */
};

nn_lstm_ws *nn_lstm_ws_create(void) { return calloc(1, sizeof(nn_lstm_ws)); }

void nn_lstm_ws_free(nn_lstm_ws *ws) {
    if (!ws)
        return;
    free(ws->buf);
    free(ws->ibuf);
    free(ws->act);
    free(ws->Y);
    free(ws->X);
    free(ws->mask);
    free(ws->pk);
    free(ws->bpk);
    free(ws->spk);
    free(ws->pack);
    free(ws->sbuf);
    free(ws);
}

static size_t round_up(size_t n) { return (n + ALIGN_REALS - 1) / ALIGN_REALS * ALIGN_REALS; }

/* Hands out consecutive aligned pieces of a buffer; with base NULL it only
 * counts, so the same code sizes the buffer and lays it out. */
typedef struct {
    real *base;
    size_t used;
} carver;

static real *carve(carver *cv, size_t n) {
    real *p = cv->base ? cv->base + cv->used : NULL;
    cv->used += round_up(n);
    return p;
}

static int alloc_reals(real **p, size_t *cap, size_t n) {
    if (n <= *cap && *p)
        return 0;
    real *q = NULL;
    if (posix_memalign((void **)&q, 64, (n ? n : 1) * sizeof(real)) != 0)
        return -1;
    free(*p);
    *p = q;
    *cap = n;
    return 0;
}

static int ensure_dims(nn_lstm_ws *ws, const nn_lstm_dims *d) {
    if (ws->have_dims)
        return 0;
    int n = d->L * d->D;
    ws->act = calloc((size_t)n, sizeof *ws->act);
    ws->pack = calloc((size_t)n, sizeof *ws->pack);
    ws->Y = calloc((size_t)d->L, sizeof *ws->Y);
    ws->X = calloc((size_t)d->L, sizeof *ws->X);
    ws->mask = calloc((size_t)d->L, sizeof *ws->mask);
    if (!ws->act || !ws->pack || !ws->Y || !ws->X || !ws->mask)
        return -1;
    ws->d = *d;
    ws->have_dims = 1;
    return 0;
}

/* Lays out every activation and scratch buffer for T steps of B rows.
 * direct: the caller's x and y serve as layer 0's input and the top
 * layer's output, so neither is allocated here. */
static size_t layout(nn_lstm_ws *ws, real *base, int T, int B, int direct) {
    const nn_lstm_dims *d = &ws->d;
    int H = d->H, Ho = nn_lstm_hout(d), W = d->D * Ho;
    size_t TB = (size_t)T * B;
    int widest = d->I > W ? d->I : W;
    carver cv = {base, 0};
    ws->x0 = direct ? NULL : carve(&cv, TB * d->I);
    for (int l = 0; l < d->L; l++) {
        for (int dir = 0; dir < d->D; dir++) {
            dir_act *a = &ws->act[l * d->D + dir];
            a->G = carve(&cv, TB * 4 * H);
            a->Hs = carve(&cv, (TB + B) * Ho);
            a->Cs = carve(&cv, (TB + B) * H);
            a->R = d->P ? carve(&cv, TB * H) : NULL;
        }
        ws->Y[l] = direct && l == d->L - 1 ? NULL : carve(&cv, TB * W);
        ws->mask[l] = (l > 0 && d->dropout > 0) ? carve(&cv, TB * W) : NULL;
        ws->X[l] = (l > 0 && d->dropout > 0) ? carve(&cv, TB * W) : NULL;
    }
    ws->dA = carve(&cv, TB * widest);
    ws->dB = carve(&cv, TB * widest);
    for (int dir = 0; dir < d->D; dir++) {
        dir_scratch *sc = &ws->bw[dir];
        sc->dHp = d->P ? carve(&cv, TB * d->P) : NULL;
        sc->dhsum = carve(&cv, (size_t)B * Ho);
        sc->dr = carve(&cv, (size_t)B * H);
        sc->dhc = carve(&cv, (size_t)B * Ho);
        sc->dcc = carve(&cv, (size_t)B * H);
        sc->dbsum = carve(&cv, (size_t)4 * H);
        sc->dpsum = d->peephole ? carve(&cv, (size_t)3 * H) : NULL;
    }
    return cv.used;
}

int nn_lstm_ws_reserve(nn_lstm_ws *ws, const nn_lstm_dims *d, int T, int B, int direct) {
    if (ensure_dims(ws, d))
        return -1;
    size_t need = layout(ws, NULL, T, B, direct);
    if (alloc_reals(&ws->buf, &ws->cap, need))
        return -1;
    size_t ineed = (size_t)2 * B + T + 1;
    if (ineed > ws->icap || !ws->ibuf) {
        int *q = malloc(ineed * sizeof(int));
        if (!q)
            return -1;
        free(ws->ibuf);
        ws->ibuf = q;
        ws->icap = ineed;
    }
    layout(ws, ws->buf, T, B, direct);
    ws->direct = direct;
    ws->perm = ws->ibuf;
    ws->len = ws->ibuf + B;
    ws->bs = ws->ibuf + 2 * B;
    ws->have_fwd = 0;
    return 0;
}

int nn_lstm_ws_pack(nn_lstm_ws *ws, const nn_lstm_dims *d, const nn_kernels *k,
                    const nn_lstm_weights *w) {
    if (ensure_dims(ws, d))
        return -1;
    int H = d->H, Ho = nn_lstm_hout(d), P = d->P;
    int q8 = w[0].q_hh != NULL; /* int8: only the biases are packed here */
    carver cv = {NULL, 0};
    for (int pass = 0; pass < 2; pass++) {
        for (int l = 0; l < d->L; l++)
            for (int dir = 0; dir < d->D; dir++) {
                dir_pack *p = &ws->pack[l * d->D + dir];
                const nn_lstm_weights *wi = &w[l * d->D + dir];
                p->q_ih = wi->q_ih;
                p->q_hh = wi->q_hh;
                p->q_hr = wi->q_hr;
                p->cell = carve(&cv, q8 ? 0 : k->cell_pack_size(H, 0, Ho));
                p->wih_nt = carve(&cv, q8 ? 0 : k->pack_size(4 * H, nn_lstm_in(d, l)));
                p->whr_nt = P ? carve(&cv, q8 ? 0 : k->pack_size(P, H)) : NULL;
                p->bias = d->bias ? carve(&cv, (size_t)4 * H) : NULL;
                p->peep = d->peephole ? carve(&cv, (size_t)3 * H) : NULL;
            }
        if (pass == 0) {
            if (alloc_reals(&ws->pk, &ws->pkcap, cv.used))
                return -1;
            cv = (carver){ws->pk, 0};
        }
    }
    for (int l = 0; l < d->L; l++)
        for (int dir = 0; dir < d->D; dir++) {
            dir_pack *p = &ws->pack[l * d->D + dir];
            const nn_lstm_weights *wi = &w[l * d->D + dir];
            if (!q8) {
                k->cell_pack(p->cell, NULL, wi->w_hh, H, 0, Ho);
                k->pack_nt(p->wih_nt, wi->w_ih, 4 * H, nn_lstm_in(d, l));
                if (P)
                    k->pack_nt(p->whr_nt, wi->w_hr, P, H);
            }
            if (d->bias)
                for (int r = 0; r < 4 * H; r++)
                    p->bias[r] = wi->b_ih[r] + wi->b_hh[r];
            if (d->peephole)
                memcpy(p->peep, wi->w_peep, sizeof(real) * 3 * H);
        }
    ws->bwd_stale = 1;
    return 0;
}

/* The weights the backward multiplies by, packed once per change. */
static int pack_backward(nn_lstm_ws *ws, const nn_lstm_dims *d, const nn_kernels *k,
                         const nn_lstm_weights *w) {
    int H = d->H, Ho = nn_lstm_hout(d), P = d->P;
    carver cv = {NULL, 0};
    for (int pass = 0; pass < 2; pass++) {
        for (int l = 0; l < d->L; l++)
            for (int dir = 0; dir < d->D; dir++) {
                dir_pack *p = &ws->pack[l * d->D + dir];
                p->whh_nn = carve(&cv, k->pack_size(Ho, 4 * H));
                p->whr_nn = P ? carve(&cv, k->pack_size(H, P)) : NULL;
            }
        if (pass == 0) {
            if (alloc_reals(&ws->bpk, &ws->bpkcap, cv.used))
                return -1;
            cv = (carver){ws->bpk, 0};
        }
    }
    for (int l = 0; l < d->L; l++)
        for (int dir = 0; dir < d->D; dir++) {
            dir_pack *p = &ws->pack[l * d->D + dir];
            const nn_lstm_weights *wi = &w[l * d->D + dir];
            k->pack_nn(p->whh_nn, wi->w_hh, 4 * H, Ho);
            if (P)
                k->pack_nn(p->whr_nn, wi->w_hr, P, H);
        }
    ws->bwd_stale = 0;
    return 0;
}

/* Sorts the batch by length, longest first (stable, as PyTorch), and counts
 * the rows still running at each step: bs[t] = #{b : len_b > t}, bs[T] = 0. */
static void sort_batch(nn_lstm_ws *ws, const int *lengths, int T, int B) {
    for (int b = 0; b < B; b++) {
        ws->perm[b] = b;
        ws->len[b] = lengths ? lengths[b] : T;
    }
    if (lengths) /* insertion sort: B is a batch, not a data set */
        for (int i = 1; i < B; i++) {
            int p = ws->perm[i], l = ws->len[i], j = i;
            for (; j > 0 && ws->len[j - 1] < l; j--) {
                ws->perm[j] = ws->perm[j - 1];
                ws->len[j] = ws->len[j - 1];
            }
            ws->perm[j] = p;
            ws->len[j] = l;
        }
    for (int t = 0, j = B; t <= T; t++) {
        while (j > 0 && ws->len[j - 1] <= t)
            j--;
        ws->bs[t] = t < T ? j : 0;
    }
}

/* Row (t, original batch index b) of a user tensor in either layout. */
/* The cell options of a direction whose packed weights are pk. */
static nn_cell_opts cell_opts(const nn_lstm_dims *d, const dir_pack *pk) {
    return (nn_cell_opts){.peep = d->peephole ? pk->peep : NULL, .clip = d->clip,
                          .cifg = d->input_forget};
}

static inline size_t user_row(int batch_first, int T, int B, int t, int b) {
    return batch_first ? (size_t)b * T + t : (size_t)t * B + b;
}

/* With two threads and two directions, each thread runs one direction's
 * time loop on its own (single-threaded kernels, no barrier per step, its
 * direction's weights in its own cache); otherwise the directions run one
 * after the other with every step split across the threads. */
typedef void (*dir_loop)(const nn_ctx *ctx, void *arg, int dir);

typedef struct {
    const nn_ctx *ctx;
    dir_loop fn;
    void *arg;
} dir_job;

static void dir_job_run(void *p, int tid, int nt) {
    const dir_job *j = p;
    if (tid >= 2)
        return;
    (void)nt;
    nn_ctx one = {j->ctx->k, NULL, NULL, j->ctx->q8};
    j->fn(&one, j->arg, tid);
}

static void each_direction(const nn_ctx *ctx, int D, dir_loop fn, void *arg) {
    if (D == 2 && nn_pool_size(ctx->pool) == 2) {
        dir_job j = {ctx, fn, arg};
        nn_pool_run(ctx->pool, dir_job_run, &j);
    } else {
        for (int dir = 0; dir < D; dir++)
            fn(ctx, arg, dir);
    }
}

typedef struct {
    const nn_lstm_dims *d;
    nn_lstm_ws *ws;
    const nn_lstm_io *io;
    const nn_lstm_grads *g;
    const nn_lstm_weights *w;
    int l;
    int on_caller; /* the loop runs on the calling thread: it may call g->progress */
    real *Y;
    const real *dY;
} loop_args;

/* The products of the forward, in float or, when the weights are int8,
 * quantizing each row of the input as it comes (kernels_int8.c). */

/* C (M,N) = A (M,K) W^T for a packed W_ih or W_hr. */
static void product(const nn_ctx *ctx, const real *Wp, const struct nn_q8_mat *q, int M, int N,
                    int K, const real *A, int lda, real *C, int ldc) {
#ifdef NN_HAVE_Q8
    if (q) {
        nn_q8_term t = {A, lda, q};
        nn_q8_matmul(ctx, C, ldc, 0, M, &t, 1);
        return;
    }
#endif
    (void)q;
    ctx->k->pgemm(ctx, M, N, K, A, lda, Wp, 0, C, ldc);
}

/* One cell step (nn_cell_fwd) whose weights are int8: the products of x
 * (when K1 > 0) and of hp are added to gin (or written, without gin) in
 * a->g, then the cell's own kernel adds the bias and does the rest. */
static void cell_forward_q8(const nn_ctx *ctx, const nn_cell_fwd *a, const struct nn_q8_mat *q_ih,
                            const struct nn_q8_mat *q_hh) {
#ifdef NN_HAVE_Q8
    nn_q8_term t[2] = {{a->x, a->ldx, q_ih}, {a->hp, a->K2, q_hh}};
    if (a->gin && a->gin != a->g)
        memcpy(a->g, a->gin, sizeof(real) * (size_t)a->M * 4 * a->H);
    nn_q8_matmul(ctx, a->g, 4 * a->H, a->gin != NULL, a->M, a->K1 ? t : t + 1, a->K1 ? 2 : 1);
    static const real none[1];
    nn_cell_fwd pw = *a;
    pw.K1 = pw.K2 = 0;
    pw.gin = a->g;
    pw.w = none; /* no columns: the kernel multiplies by nothing */
    ctx->k->cell_forward(ctx, &pw);
#else
    (void)ctx, (void)a, (void)q_ih, (void)q_hh;
#endif
}

/* The forward time loop of layer a->l, direction dir. G holds X W_ih^T. */
static void forward_loop(const nn_ctx *ctx, void *p, int dir) {
    const loop_args *la = p;
    const nn_lstm_dims *d = la->d;
    nn_lstm_ws *ws = la->ws;
    const nn_lstm_io *io = la->io;
    const nn_kernels *k = ctx->k;
    int T = ws->T, B = ws->B, H = d->H, Ho = nn_lstm_hout(d), W = d->D * Ho;
    int ld = la->l * d->D + dir;
    dir_act *a = &ws->act[ld];
    dir_pack *pk = &ws->pack[ld];
    const real *h0 = io->h0 ? io->h0 + (size_t)ld * B * Ho : NULL;
    const real *c0 = io->c0 ? io->c0 + (size_t)ld * B * H : NULL;
    int rev = nn_lstm_walks_back(d, dir); /* the walk's order; dir stays the index */
    for (int s = 0; s < T; s++) {
        int t = rev ? T - 1 - s : s;
        int M = ws->bs[t];
        int prev = rev ? t + 1 : t, cur = rev ? t : t + 1;
        real *hp = a->Hs + (size_t)prev * B * Ho, *cp = a->Cs + (size_t)prev * B * H;
        real *hc = a->Hs + (size_t)cur * B * Ho, *cc = a->Cs + (size_t)cur * B * H;
        /* sequences starting here take their initial state */
        int j0 = rev ? ws->bs[t + 1] : (t == 0 ? 0 : M);
        for (int j = j0; j < M; j++) {
            int b = ws->perm[j];
            if (h0)
                memcpy(hp + (size_t)j * Ho, h0 + (size_t)b * Ho, sizeof(real) * Ho);
            else
                memset(hp + (size_t)j * Ho, 0, sizeof(real) * Ho);
            if (c0)
                memcpy(cp + (size_t)j * H, c0 + (size_t)b * H, sizeof(real) * H);
            else
                memset(cp + (size_t)j * H, 0, sizeof(real) * H);
        }
        real *Gt = a->G + (size_t)t * B * 4 * H;
        real *Rt = a->R ? a->R + (size_t)t * B * H : NULL;
        real *Yt = la->Y + (size_t)t * B * W + (size_t)dir * Ho;
        if (M > 0) {
            /* without a projection the kernel also writes h into the output */
            int tn = rev ? t - 1 : t + 1; /* the next step, to prefetch */
            int has_next = tn >= 0 && tn < T;
            nn_cell_fwd cf = {.M = M, .H = H, .K1 = 0, .K2 = Ho, .hp = hp, .cp = cp,
                              .gin = Gt, .bias = pk->bias, .w = pk->cell, .g = Gt,
                              .c = cc, .h = Rt ? Rt : hc, .y = Rt ? NULL : Yt, .ldy = W,
                              .gin_next = has_next ? a->G + (size_t)tn * B * 4 * H : NULL,
                              .M_next = has_next ? ws->bs[tn] : 0, .opt = cell_opts(d, pk)};
            if (pk->q_hh)
                cell_forward_q8(ctx, &cf, NULL, pk->q_hh);
            else
                k->cell_forward(ctx, &cf);
            if (Rt) { /* h = r W_hr^T */
                product(ctx, pk->whr_nt, pk->q_hr, M, Ho, H, Rt, H, hc, Ho);
                for (int j = 0; j < M; j++)
                    memcpy(Yt + (size_t)j * W, hc + (size_t)j * Ho, sizeof(real) * Ho);
            }
        }
        for (int j = M; j < B; j++) /* finished sequences output zeros */
            memset(Yt + (size_t)j * W, 0, sizeof(real) * Ho);
    }
    /* h_n, c_n: the forward direction ends at slot len, the reverse at 0 */
    for (int j = 0; j < B; j++) {
        int slot = rev ? 0 : ws->len[j];
        int b = ws->perm[j];
        if (io->hn)
            memcpy(io->hn + ((size_t)ld * B + b) * Ho, a->Hs + ((size_t)slot * B + j) * Ho,
                   sizeof(real) * Ho);
        if (io->cn)
            memcpy(io->cn + ((size_t)ld * B + b) * H, a->Cs + ((size_t)slot * B + j) * H,
                   sizeof(real) * H);
    }
}

void nn_lstm_forward(const nn_ctx *ctx, const nn_lstm_dims *d, const nn_lstm_weights *w,
                     nn_lstm_ws *ws, const nn_lstm_io *io, int training, lstm_rng *rng) {
    int T = io->T, B = io->B, H = d->H, Ho = nn_lstm_hout(d), W = d->D * Ho;
    size_t TB = (size_t)T * B;
    (void)w; /* the forward multiplies by the copies nn_lstm_ws_pack made of w */
    sort_batch(ws, io->lengths, T, B);
    ws->T = T;
    ws->B = B;
    ws->batch_first = io->batch_first;
    ws->has_lengths = io->lengths != NULL;

    /* x0: time-major, sorted, zero past each length */
    ws->xin = ws->direct ? io->x : ws->x0;
    if (ws->direct)
        ws->Y[d->L - 1] = io->y;
    for (int t = 0; !ws->direct && t < T; t++)
        for (int j = 0; j < B; j++) {
            real *dst = ws->x0 + ((size_t)t * B + j) * d->I;
            if (t < ws->len[j])
                memcpy(dst, io->x + user_row(io->batch_first, T, B, t, ws->perm[j]) * d->I,
                       sizeof(real) * d->I);
            else
                memset(dst, 0, sizeof(real) * d->I);
        }

    for (int l = 0; l < d->L; l++) {
        int In = nn_lstm_in(d, l);
        const real *X = l == 0 ? ws->xin : ws->X[l] ? ws->X[l] : ws->Y[l - 1];
        for (int dir = 0; dir < d->D; dir++) {
            dir_act *a = &ws->act[l * d->D + dir];
            /* The input product of all steps at once: G = X W_ih^T. */
            const dir_pack *pk = &ws->pack[l * d->D + dir];
            product(ctx, pk->wih_nt, pk->q_ih, (int)TB, 4 * H, In, X, In, a->G, 4 * H);
            if (ws->has_lengths) {
                /* rows of finished sequences enter the weight-gradient
                 * products (times a zero gradient): keep them finite */
                memset(a->Hs, 0, sizeof(real) * (TB + B) * Ho);
                memset(a->Cs, 0, sizeof(real) * (TB + B) * H);
                if (a->R)
                    memset(a->R, 0, sizeof(real) * TB * H);
            }
        }
        loop_args la = {.d = d, .ws = ws, .io = io, .l = l, .Y = ws->Y[l]};
        each_direction(ctx, d->D, forward_loop, &la);
        if (l + 1 < d->L && ws->X[l + 1]) {
            if (training)
                nn_dropout_forward(ws->X[l + 1], ws->mask[l + 1], ws->Y[l], TB * W, d->dropout,
                                   rng);
            else {
                memcpy(ws->X[l + 1], ws->Y[l], sizeof(real) * TB * W);
                for (size_t i = 0; i < TB * W; i++)
                    ws->mask[l + 1][i] = 1;
            }
        }
    }

    const real *Yl = ws->Y[d->L - 1];
    for (int t = 0; !ws->direct && t < T; t++)
        for (int j = 0; j < B; j++)
            memcpy(io->y + user_row(io->batch_first, T, B, t, ws->perm[j]) * W,
                   Yl + ((size_t)t * B + j) * W, sizeof(real) * W);
    ws->have_fwd = 1;
}

/* The backward time loop of layer la->l, direction dir: leaves dL/dpre in
 * G, the gradients of the initial state in dh0/dc0, and the bias gradient
 * and the projection's dh in the direction's scratch. */
static void backward_loop(const nn_ctx *ctx, void *p, int dir) {
    const loop_args *la = p;
    const nn_lstm_dims *d = la->d;
    nn_lstm_ws *ws = la->ws;
    const nn_lstm_grads *g = la->g;
    const nn_kernels *k = ctx->k;
    int T = ws->T, B = ws->B, H = d->H, Ho = nn_lstm_hout(d), W = d->D * Ho, P = d->P;
    int ld = la->l * d->D + dir;
    dir_act *a = &ws->act[ld];
    dir_pack *pk = &ws->pack[ld];
    dir_scratch *sc = &ws->bw[dir];
    const real *dY = la->dY;
    const real *dhn = g->dhn ? g->dhn + (size_t)ld * B * Ho : NULL;
    const real *dcn = g->dcn ? g->dcn + (size_t)ld * B * H : NULL;
    if (d->bias)
        memset(sc->dbsum, 0, sizeof(real) * 4 * H);
    if (sc->dpsum)
        memset(sc->dpsum, 0, sizeof(real) * 3 * H);
    int rev = nn_lstm_walks_back(d, dir); /* the forward walk's order; dir stays the index */
    for (int s = 0; s < T; s++) {
        int t = rev ? s : T - 1 - s;
        int M = ws->bs[t];
        int prev = rev ? t + 1 : t, cur = rev ? t : t + 1;
        /* sequences whose last step (in this walk's order) is t start with
         * the gradients of h_n and c_n */
        int j0 = rev ? (t == 0 ? 0 : M) : ws->bs[t + 1];
        for (int j = j0; j < M; j++) {
            int b = ws->perm[j];
            if (dhn)
                memcpy(sc->dhc + (size_t)j * Ho, dhn + (size_t)b * Ho, sizeof(real) * Ho);
            else
                memset(sc->dhc + (size_t)j * Ho, 0, sizeof(real) * Ho);
            if (dcn)
                memcpy(sc->dcc + (size_t)j * H, dcn + (size_t)b * H, sizeof(real) * H);
            else
                memset(sc->dcc + (size_t)j * H, 0, sizeof(real) * H);
        }
        real *Gt = a->G + (size_t)t * B * 4 * H;
        const real *dYt = dY + (size_t)t * B * W + (size_t)dir * Ho;
        int tn = rev ? t + 1 : t - 1; /* the next step, to prefetch */
        int has_next = tn >= 0 && tn < T;
        int prev_n = rev ? tn + 1 : tn;
        nn_cell_bwd cb = {.M = M, .H = H, .Hout = Ho, .g = Gt, .c = a->Cs + (size_t)cur * B * H,
                          .cp = a->Cs + (size_t)prev * B * H, .dr = sc->dhc, .dy = dYt, .ldy = W,
                          .dc = sc->dcc, .dhp = sc->dhc, .w = pk->whh_nn,
                          .db = d->bias ? sc->dbsum : NULL, .opt = cell_opts(d, pk),
                          .dpeep = sc->dpsum};
        if (has_next) {
            cb.g_next = a->G + (size_t)tn * B * 4 * H;
            cb.cp_next = a->Cs + (size_t)prev_n * B * H;
            cb.dy_next = P ? NULL : dY + (size_t)tn * B * W + (size_t)dir * Ho;
            cb.M_next = ws->bs[tn];
        }
        if (M > 0 && P) { /* h = r W_hr^T: keep dh for dW_hr, dr = dh W_hr */
            for (int j = 0; j < M; j++)
                for (int u = 0; u < Ho; u++)
                    sc->dhsum[(size_t)j * Ho + u] =
                        dYt[(size_t)j * W + u] + sc->dhc[(size_t)j * Ho + u];
            memcpy(sc->dHp + (size_t)t * B * P, sc->dhsum, sizeof(real) * M * P);
            k->pgemm(ctx, M, H, P, sc->dhsum, P, pk->whr_nn, 0, sc->dr, H);
            cb.dr = sc->dr;
            cb.dy = NULL;
        }
        if (M > 0) /* dh = dy + the carry; the carry becomes dh_prev */
            k->cell_backward(ctx, &cb);
        if (g->progress && la->on_caller)
            g->progress(g->hook_arg);
        /* finished rows contribute nothing to the products below */
        if (M < B) {
            memset(Gt + (size_t)M * 4 * H, 0, sizeof(real) * (B - M) * 4 * H);
            if (P)
                memset(sc->dHp + ((size_t)t * B + M) * P, 0, sizeof(real) * (B - M) * P);
        }
    }
    for (int j = 0; j < B; j++) {
        int b = ws->perm[j];
        if (g->dh0)
            memcpy(g->dh0 + ((size_t)ld * B + b) * Ho, sc->dhc + (size_t)j * Ho,
                   sizeof(real) * Ho);
        if (g->dc0)
            memcpy(g->dc0 + ((size_t)ld * B + b) * H, sc->dcc + (size_t)j * H, sizeof(real) * H);
    }
}

int nn_lstm_backward(const nn_ctx *ctx, const nn_lstm_dims *d, const nn_lstm_weights *w,
                     nn_lstm_ws *ws, const nn_lstm_grads *g) {
    if (!ws->have_fwd)
        return -1;
    if (ws->bwd_stale && pack_backward(ws, d, ctx->k, w))
        return -2;
    ws->have_fwd = 0;
    const nn_kernels *k = ctx->k;
    int T = ws->T, B = ws->B, H = d->H, Ho = nn_lstm_hout(d), W = d->D * Ho, P = d->P;
    int bf = ws->batch_first;
    size_t TB = (size_t)T * B;

    /* dY of the top layer: time-major, sorted, zero past each length. The
     * layers' gradients then alternate between two buffers. */
    real *bufs[2] = {ws->dA, ws->dB};
    int nb = 0;
    const real *dY = g->dy;
    if (!ws->direct || !g->dy) {
        for (int t = 0; t < T; t++)
            for (int j = 0; j < B; j++) {
                real *dst = ws->dA + ((size_t)t * B + j) * W;
                if (g->dy && t < ws->len[j])
                    memcpy(dst, g->dy + user_row(bf, T, B, t, ws->perm[j]) * W,
                           sizeof(real) * W);
                else
                    memset(dst, 0, sizeof(real) * W);
            }
        dY = ws->dA;
        nb = 1;
    }

    for (int l = d->L - 1; l >= 0; l--) {
        int In = nn_lstm_in(d, l);
        const real *X = l == 0 ? ws->xin : ws->X[l] ? ws->X[l] : ws->Y[l - 1];
        int need_dx = l > 0 || g->dx;
        real *dX = l == 0 && ws->direct && g->dx ? g->dx : bufs[nb];
        loop_args la = {.d = d, .ws = ws, .g = g, .w = w, .l = l, .dY = dY,
                        .on_caller = !(d->D == 2 && nn_pool_size(ctx->pool) == 2)};
        each_direction(ctx, d->D, backward_loop, &la);
        for (int dir = 0; dir < d->D; dir++) {
            int ld = l * d->D + dir;
            const nn_lstm_weights *wt = &w[ld];
            dir_act *a = &ws->act[ld];
            dir_scratch *sc = &ws->bw[dir];
            /* Weight gradients over all steps at once (G now holds dL/dpre). */
            const real *Hprev = a->Hs + (nn_lstm_walks_back(d, dir) ? (size_t)B * Ho : 0);
            if (wt->dw_ih && wt->dw_hh)
                k->gemm_tn2(ctx, 4 * H, (int)TB, a->G, 4 * H, In, X, In, wt->dw_ih, In, Ho, Hprev,
                            Ho, wt->dw_hh, Ho);
            else if (wt->dw_ih)
                k->gemm(ctx, 1, 0, 4 * H, In, (int)TB, 1, a->G, 4 * H, X, In, 1, wt->dw_ih, In);
            else if (wt->dw_hh)
                k->gemm(ctx, 1, 0, 4 * H, Ho, (int)TB, 1, a->G, 4 * H, Hprev, Ho, 1, wt->dw_hh,
                        Ho);
            for (int r = 0; d->bias && r < 4 * H; r++) {
                if (wt->db_ih)
                    wt->db_ih[r] += sc->dbsum[r];
                if (wt->db_hh)
                    wt->db_hh[r] += sc->dbsum[r];
            }
            for (int r = 0; d->peephole && wt->dw_peep && r < 3 * H; r++)
                wt->dw_peep[r] += sc->dpsum[r];
            if (P && wt->dw_hr)
                k->gemm(ctx, 1, 0, P, H, (int)TB, 1, sc->dHp, P, a->R, H, 1, wt->dw_hr, H);
        }
        if (g->layer_done) /* before dX: the caller's work overlaps it too */
            g->layer_done(g->hook_arg, l);
        for (int dir = 0; need_dx && dir < d->D; dir++)
            /* one product over all steps: the plain GEMM packs W_ih as it
             * goes, so no second packed copy of it is kept */
            k->gemm(ctx, 0, 0, (int)TB, In, 4 * H, 1, ws->act[l * d->D + dir].G, 4 * H,
                    w[l * d->D + dir].w_ih, In, dir == 0 ? 0 : 1, dX, In);
        if (l > 0) {
            if (ws->mask[l])
                for (size_t i = 0; i < TB * In; i++)
                    dX[i] *= ws->mask[l][i];
            dY = dX;
            nb ^= 1;
        } else if (g->dx && !ws->direct) {
            for (int t = 0; t < T; t++)
                for (int j = 0; j < B; j++) {
                    real *dst = g->dx + user_row(bf, T, B, t, ws->perm[j]) * d->I;
                    if (t < ws->len[j])
                        memcpy(dst, dX + ((size_t)t * B + j) * d->I, sizeof(real) * d->I);
                    else
                        memset(dst, 0, sizeof(real) * d->I);
                }
        }
    }
    return 0;
}

const real *nn_lstm_ws_gates(const nn_lstm_ws *ws, int ld) { return ws->act[ld].G; }

int nn_lstm_ws_pack_step(nn_lstm_ws *ws, const nn_lstm_dims *d, const nn_kernels *k,
                         const nn_lstm_weights *w, int B) {
    if (nn_lstm_ws_pack(ws, d, k, w)) /* biases and W_hr */
        return -1;
    int H = d->H, Ho = nn_lstm_hout(d), q8 = w[0].q_hh != NULL;
    size_t n = 0;
    for (int l = 0; l < d->L; l++)
        n += q8 ? 0 : round_up(k->cell_pack_size(H, nn_lstm_in(d, l), Ho));
    if (alloc_reals(&ws->spk, &ws->spkcap, n))
        return -1;
    real *p = ws->spk;
    for (int l = 0; l < d->L; l++) {
        int In = nn_lstm_in(d, l);
        ws->pack[l].step = p;
        if (q8)
            continue;
        k->cell_pack(p, w[l].w_ih, w[l].w_hh, H, In, Ho);
        p += round_up(k->cell_pack_size(H, In, Ho));
    }
    /* scratch: gates (B,4H), c (B,H), r (B,H), h (B,Hout) */
    size_t s = round_up((size_t)B * 4 * H) + 2 * round_up((size_t)B * H) + round_up((size_t)B * Ho);
    if (alloc_reals(&ws->sbuf, &ws->scap, s))
        return -1;
    return 0;
}

void nn_lstm_step(const nn_ctx *ctx, const nn_lstm_dims *d, nn_lstm_ws *ws, int B, const real *x, real *h, real *c, real *y) {
    const nn_kernels *k = ctx->k;
    int H = d->H, Ho = nn_lstm_hout(d);
    real *sg = ws->sbuf;
    real *sc = sg + round_up((size_t)B * 4 * H);
    real *sr = sc + round_up((size_t)B * H);
    real *sh = sr + round_up((size_t)B * H);
    const real *in = x;
    for (int l = 0; l < d->L; l++) {
        int In = nn_lstm_in(d, l);
        real *hl = h + (size_t)l * B * Ho, *cl = c + (size_t)l * B * H;
        /* outputs go to scratch: the kernel reads all of h while it writes */
        nn_cell_fwd cf = {.M = B, .H = H, .K1 = In, .K2 = Ho, .x = in, .ldx = In, .hp = hl,
                          .cp = cl, .gin = NULL, .bias = ws->pack[l].bias,
                          .w = ws->pack[l].step, .g = sg, .c = sc, .h = d->P ? sr : sh,
                          .opt = cell_opts(d, &ws->pack[l])};
        if (ws->pack[l].q_hh)
            cell_forward_q8(ctx, &cf, ws->pack[l].q_ih, ws->pack[l].q_hh);
        else
            k->cell_forward(ctx, &cf);
        if (d->P)
            product(ctx, ws->pack[l].whr_nt, ws->pack[l].q_hr, B, Ho, H, sr, H, sh, Ho);
        memcpy(hl, sh, sizeof(real) * B * Ho);
        memcpy(cl, sc, sizeof(real) * B * H);
        in = hl;
    }
    if (y)
        memcpy(y, in, sizeof(real) * B * Ho);
}
