/*
 * lstm_embed.c - the embeddable runtime (include/lstm_embed.h): the task
 * models' inference and the bare LSTM, float or int8, in C99 with no
 * allocation, no libc but memcpy/memset, no <math.h>.
 *
 * Sizes: T steps, I input, H hidden, P proj_size, Ho = P or H, L layers,
 * D directions, V decoder outputs. The LSTM equations (PyTorch's nn.LSTM,
 * gate order i, f, g, o) are written beside cell() below.
 *
 * Every float operation is an IEEE single operation in a fixed order (the
 * file is compiled with -ffp-contract=off, which is also GCC's default
 * under -std=c99), so the outputs do not depend on the machine (see
 * the header). Integer division is avoided: ARMv7-A has none in hardware
 * and would call libgcc.
 */
#include "lstm_embed.h"

#include <string.h>

/* ------------------------------------------------------------------ */
/* Elementary functions, float arithmetic only. */

/* Bits of a float and back, without aliasing games. */
static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* x rounded to the nearest integer, ties to even, for |x| < 2^22: adding
 * 1.5 * 2^23 leaves no bits below the units, and the default rounding
 * mode (round to nearest even) does the rounding. */
static float round_even(float x) { return (x + 12582912.0f) - 12582912.0f; }

/* e^x = 2^n e^r, n = round(x / ln2), r = x - n ln2 in two parts (Cody and
 * Waite: ln2 = 0.693359375 - 2.12194440e-4, the first exact in 9 bits),
 * e^r from Cephes' expf polynomial (degree 7, |r| <= ln2/2), 2^n built in
 * the exponent bits. x is clamped to [-87.3, 88.37], where the result is
 * a normal float; NaN stays NaN, -inf gives 0 and +inf inf. */
float lstm_embed_expf(float x) {
    if (x != x)
        return x;
    if (x > 88.37f) {
        if (x + x == x) /* +inf */
            return x;
        x = 88.37f;
    }
    if (x < -87.3f) {
        if (x + x == x) /* -inf */
            return 0.0f;
        x = -87.3f;
    }
    float nf = round_even(x * 1.44269504088896341f);
    float r = x - nf * 0.693359375f;
    r = r - nf * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t n = (int32_t)nf;
    return p * from_bits((uint32_t)(n + 127) << 23);
}

float lstm_embed_sigmoidf(float x) { return 1.0f / (1.0f + lstm_embed_expf(-x)); }

/* tanh: Cephes' odd polynomial for |x| < 0.625, 1 - 2 / (e^2|x| + 1)
 * beyond, with the sign of x. */
float lstm_embed_tanhf(float x) {
    float ax = x < 0 ? -x : x;
    if (ax < 0.625f) {
        float z = x * x;
        float p = -5.70498872745e-3f;
        p = p * z + 2.06390887954e-2f;
        p = p * z - 5.37397155531e-2f;
        p = p * z + 1.33314422036e-1f;
        p = p * z - 3.33332819422e-1f;
        return p * z * x + x;
    }
    if (x != x)
        return x;
    float t = 1.0f - 2.0f / (lstm_embed_expf(2.0f * ax) + 1.0f);
    return x < 0 ? -t : t;
}

/* ln x = ln m + e ln2 for x = m 2^e, m in [sqrt(1/2), sqrt(2)): z = m - 1,
 * ln(1 + z) from Cephes' logf polynomial (z - z^2/2 + z^3 P(z), degree 8),
 * e ln2 in two parts as in expf. Subnormal x is scaled by 2^23 first; 0
 * gives -inf, a negative x or NaN NaN, +inf inf. */
float lstm_embed_logf(float x) {
    if (x != x || x < 0)
        return from_bits(0x7fc00000u);
    if (x == 0)
        return from_bits(0xff800000u);
    if (x + x == x) /* +inf */
        return x;
    int32_t e = 0;
    if (x < 1.17549435e-38f)
        x *= 8388608.0f, e = -23;
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    e += (int32_t)(u >> 23) - 127;
    float m = from_bits((u & 0x007fffffu) | 0x3f800000u); /* [1, 2) */
    if (m > 1.41421356f)
        m *= 0.5f, e += 1;
    float z = m - 1.0f, z2 = z * z;
    float p = 7.0376836292e-2f;
    p = p * z - 1.1514610310e-1f;
    p = p * z + 1.1676998740e-1f;
    p = p * z - 1.2420140846e-1f;
    p = p * z + 1.4249322787e-1f;
    p = p * z - 1.6668057665e-1f;
    p = p * z + 2.0000714765e-1f;
    p = p * z - 2.4999993993e-1f;
    p = p * z + 3.3333331174e-1f;
    float ef = (float)e;
    float y = p * z * z2;
    y = y + ef * -2.12194440e-4f;
    y = y - 0.5f * z2;
    return z + y + ef * 0.693359375f;
}

/* ------------------------------------------------------------------ */
/* Checking a model, sizing and laying out the arena. */

#define MAX_DIM (1 << 20)  /* any size; keeps every product of two in 64 bits */
#define MAX_QCOLS 131072   /* 131072 * 127 * 127 < 2^31: int32 sums cannot overflow */

static int matrix_ok(const lstm_embed_matrix *a, int rows, int cols) {
    if (a->rows != rows || a->cols != cols || rows < 1 || cols < 1)
        return 0;
    if (a->w)
        return !a->q && !a->scale;
    return a->q && a->scale && cols <= MAX_QCOLS;
}

/* A CRF's parameters as the library's scaled forward-backward needs them
 * (crf.c's scaled_safe, the same float operations): finite, and 2
 * range(transitions) + range(start) + range(end) <= 70. */
static int crf_ok(const lstm_embed_model *m) {
    uint64_t V = (uint64_t)m->decoder.rows, n[3] = {V * V, V, V};
    const float *x[3] = {m->crf_transitions, m->crf_start, m->crf_end};
    float r[3];
    for (int i = 0; i < 3; i++) {
        float lo = x[i][0], hi = x[i][0];
        for (uint64_t j = 0; j < n[i]; j++) {
            float v = x[i][j];
            if (!(v - v == 0)) /* NaN or an infinity */
                return 0;
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        r[i] = hi - lo;
    }
    float total = 2 * r[0] + r[1] + r[2];
    return total <= 70;
}

int lstm_embed_check(const lstm_embed_model *m) {
    if (!m || m->task < LSTM_EMBED_BARE || m->task > LSTM_EMBED_TAG)
        return LSTM_EMBED_ERR_MODEL;
    int I = m->input_size, H = m->hidden_size, P = m->proj_size, L = m->num_layers;
    if (I < 1 || I > MAX_DIM || H < 1 || H > MAX_DIM / 4 || P < 0 || P >= H || L < 1 ||
        L > 64 || (m->bidirectional != 0 && m->bidirectional != 1))
        return LSTM_EMBED_ERR_MODEL;
    int D = m->bidirectional ? 2 : 1, Ho = P ? P : H;
    if (!m->w_ih || !m->w_hh || !P != !m->w_hr || !m->b_ih != !m->b_hh)
        return LSTM_EMBED_ERR_MODEL;
    for (int k = 0; k < L * D; k++) {
        int in = k < D ? I : D * Ho;
        if (!matrix_ok(&m->w_ih[k], 4 * H, in) || !matrix_ok(&m->w_hh[k], 4 * H, Ho) ||
            (P && !matrix_ok(&m->w_hr[k], P, H)) || (m->b_ih && (!m->b_ih[k] || !m->b_hh[k])))
            return LSTM_EMBED_ERR_MODEL;
    }
    if (m->task == LSTM_EMBED_BARE)
        return LSTM_EMBED_OK;
    if (m->nfeat < 1 || m->nfeat > LSTM_EMBED_MAX_FEATURES ||
        (m->task == LSTM_EMBED_LM && (m->bidirectional || m->nfeat != 1)))
        return LSTM_EMBED_ERR_MODEL;
    long dims = 0;
    for (int f = 0; f < m->nfeat; f++) {
        const lstm_embed_matrix *e = &m->embedding[f];
        if (e->cols < 1 || e->cols > MAX_DIM || !matrix_ok(e, e->rows, e->cols))
            return LSTM_EMBED_ERR_MODEL;
        dims += e->cols;
    }
    if (dims != I || m->decoder.rows > MAX_DIM ||
        !matrix_ok(&m->decoder, m->decoder.rows, D * Ho) || !m->decoder_bias)
        return LSTM_EMBED_ERR_MODEL;
    int crf = m->crf_transitions != NULL;
    if (crf != (m->crf_start != NULL) || crf != (m->crf_end != NULL) ||
        (crf && (m->task != LSTM_EMBED_TAG || !crf_ok(m))))
        return LSTM_EMBED_ERR_MODEL;
    return LSTM_EMBED_OK;
}

/* Offsets of the arena's parts, in floats, each rounded up to 4 floats
 * (16 bytes); the int8 vector last. */
enum { A_H, A_C, A_GATES, A_HH, A_X, A_POOLED, A_OUT, A_SEQ0, A_SEQ1, A_CRF, A_QA, A_END };

static int layout(const lstm_embed_model *m, int max_steps, size_t off[A_END + 1]) {
    if (lstm_embed_check(m) || max_steps < 0)
        return 0;
    /* in 64 bits (every size is below 2^21, max_steps below 2^31), then
     * checked against size_t, which may be 32 bits; no division (ARMv7-A
     * would call libgcc for it) */
    uint64_t D = m->bidirectional ? 2 : 1, H = (uint64_t)m->hidden_size;
    uint64_t Ho = m->proj_size ? (uint64_t)m->proj_size : H, L = (uint64_t)m->num_layers;
    uint64_t I = (uint64_t)m->input_size, out = D * Ho;
    uint64_t V = m->task == LSTM_EMBED_BARE ? 0 : (uint64_t)m->decoder.rows;
    uint64_t T = m->bidirectional ? (uint64_t)max_steps : 0;
    uint64_t cols = I > out ? I : out;
    cols = cols > H ? cols : H;
    /* bidirectional: the outputs of the layers below the last (each the
     * input of the next): layer l's in seq[l & 1]; and a tagger's last
     * layer keeps its forward direction's in seq[(L-1) & 1] until the
     * reverse one reaches each step (lstm_embed_run writes the last layer
     * into the caller's y, classify sums it into pooled) */
    uint64_t seq[2];
    for (uint64_t i = 0; i < 2; i++) {
        uint64_t below = L - 1 > i ? T * out : 0;
        uint64_t tag = m->task == LSTM_EMBED_TAG && ((L - 1) & 1) == i ? T * Ho : 0;
        seq[i] = below > tag ? below : tag;
    }
    /* a CRF tagger: emissions and forward states of every step, two rows
     * of backward states, exp(transitions), the steps' scales */
    uint64_t Tc = (uint64_t)max_steps;
    uint64_t crf = m->crf_transitions ? 2 * Tc * V + 2 * V + V * V + Tc : 0;
    uint64_t n[A_END] = {L * D * Ho, L * D * H, 4 * H, H, I, out, V, seq[0], seq[1], crf,
                         (cols + 3) >> 2};
    uint64_t o = 0;
    for (int i = 0; i < A_END; i++) {
        off[i] = (size_t)o;
        o += (n[i] + 3) >> 2 << 2;
    }
    if (o > (uint64_t)((size_t)-1 >> 2))
        return 0;
    off[A_END] = (size_t)o;
    return 1;
}

size_t lstm_embed_arena_size(const lstm_embed_model *m, int max_steps) {
    size_t off[A_END + 1];
    return layout(m, max_steps, off) ? off[A_END] * sizeof(float) : 0;
}

int lstm_embed_init(lstm_embed_ctx *ctx, const lstm_embed_model *m, int max_steps, void *arena,
                    size_t size) {
    size_t off[A_END + 1];
    if (!layout(m, max_steps, off))
        return lstm_embed_check(m) ? LSTM_EMBED_ERR_MODEL : LSTM_EMBED_ERR_ARG;
    if (!arena || size < off[A_END] * sizeof(float) || ((uintptr_t)arena & (sizeof(float) - 1)))
        return LSTM_EMBED_ERR_ARENA;
    float *a = (float *)arena;
    memset(ctx, 0, sizeof *ctx);
    ctx->m = m;
    ctx->max_steps = max_steps;
    ctx->D = m->bidirectional ? 2 : 1;
    ctx->Ho = m->proj_size ? m->proj_size : m->hidden_size;
    ctx->in_dim = m->input_size;
    ctx->out_dim = ctx->D * ctx->Ho;
    ctx->h = a + off[A_H];
    ctx->c = a + off[A_C];
    ctx->gates = a + off[A_GATES];
    ctx->hh = a + off[A_HH];
    ctx->x = a + off[A_X];
    ctx->pooled = a + off[A_POOLED];
    ctx->out = a + off[A_OUT];
    ctx->seq[0] = a + off[A_SEQ0];
    ctx->seq[1] = a + off[A_SEQ1];
    ctx->crf = a + off[A_CRF];
    ctx->qa = (int8_t *)(a + off[A_QA]);
    lstm_embed_reset(ctx);
    return LSTM_EMBED_OK;
}

void lstm_embed_reset(lstm_embed_ctx *ctx) {
    const lstm_embed_model *m = ctx->m;
    size_t k = (size_t)m->num_layers * ctx->D;
    memset(ctx->h, 0, sizeof(float) * k * ctx->Ho);
    memset(ctx->c, 0, sizeof(float) * k * m->hidden_size);
}

/* ------------------------------------------------------------------ */
/* Products. */

/* For each row r of A: p = (A a)[r]; out[r] = p, or out[r] + p when
 * `add`; then + (b1[r] + b2[r]) when b1 (+ b1[r] alone when b2 is NULL).
 * a has A->cols values. Float: p is a sum in column order. int8: a is
 * quantized as in the header (the scratch qa holds it), p = (float)acc *
 * (s_a * scale[r]) with acc the exact int32 sum, p = 0 when a is all
 * zero and NaN when a holds a NaN or an infinity. This order of the float operations is the library's int8 path's
 * (docs/DESIGN.md, "int8"). */
static void matvec(lstm_embed_ctx *ctx, float *out, const lstm_embed_matrix *A, const float *a,
                   int add, const float *b1, const float *b2) {
    int R = A->rows, C = A->cols;
    float inv = 0, sa = 0, nan = 0;
    int zero = 0, bad = 0;
    if (!A->w) {
        float mx = 0;
        for (int j = 0; j < C; j++) {
            float v = a[j] < 0 ? -a[j] : a[j];
            if (!(v <= 3.40282347e38f)) /* NaN or infinite: the products are NaN, as in */
                bad = 1, nan = a[j] - a[j]; /* float and in the library's int8 path */
            mx = v > mx ? v : mx;
        }
        zero = !(mx > 0);
        if (!zero && !bad) {
            inv = 127.0f / mx, sa = mx / 127.0f;
            for (int j = 0; j < C; j++) {
                float v = round_even(a[j] * inv);
                v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
                ctx->qa[j] = (int8_t)(int32_t)v;
            }
        }
    }
    for (int r = 0; r < R; r++) {
        float p = 0;
        if (A->w) {
            const float *w = A->w + (size_t)r * C;
            for (int j = 0; j < C; j++)
                p += w[j] * a[j];
        } else if (bad) {
            p = nan;
        } else if (!zero) {
            const int8_t *q = A->q + (size_t)r * C, *qa = ctx->qa;
            int32_t acc = 0;
            for (int j = 0; j < C; j++)
                acc += (int32_t)qa[j] * (int32_t)q[j];
            p = (float)acc * (sa * A->scale[r]);
        }
        float v = add ? out[r] + p : p;
        if (b1)
            v = v + (b2 ? b1[r] + b2[r] : b1[r]);
        out[r] = v;
    }
}

/* ------------------------------------------------------------------ */
/* The LSTM. */

/* One step of layer/direction k (k = layer * D + direction) on input x,
 * updating its h (Ho) and c (H) in place:
 *   gates = (W_ih x + W_hh h) + (b_ih + b_hh)       (4H: i, f, g, o)
 *   c = sigmoid(f) * c + sigmoid(i) * tanh(g)
 *   hh = sigmoid(o) * tanh(c)
 *   h = W_hr hh (proj_size) or hh */
static void cell(lstm_embed_ctx *ctx, int k, const float *x, float *h, float *c) {
    const lstm_embed_model *m = ctx->m;
    int H = m->hidden_size, P = m->proj_size;
    float *g = ctx->gates, *hh = ctx->hh;
    matvec(ctx, g, &m->w_ih[k], x, 0, NULL, NULL);
    matvec(ctx, g, &m->w_hh[k], h, 1, m->b_ih ? m->b_ih[k] : NULL, m->b_ih ? m->b_hh[k] : NULL);
    for (int u = 0; u < H; u++) {
        float ig = lstm_embed_sigmoidf(g[u]), fg = lstm_embed_sigmoidf(g[H + u]);
        float gg = lstm_embed_tanhf(g[2 * H + u]), og = lstm_embed_sigmoidf(g[3 * H + u]);
        c[u] = fg * c[u] + ig * gg;
        hh[u] = og * lstm_embed_tanhf(c[u]);
    }
    if (P)
        matvec(ctx, h, &m->w_hr[k], hh, 0, NULL, NULL);
    else
        memcpy(h, hh, sizeof(float) * H);
}

/* A unidirectional model: every layer one step on x; the output is the
 * last layer's h. */
static const float *layers_step(lstm_embed_ctx *ctx, const float *x) {
    const lstm_embed_model *m = ctx->m;
    int H = m->hidden_size, Ho = ctx->Ho;
    for (int l = 0; l < m->num_layers; l++) {
        float *h = ctx->h + (size_t)l * Ho;
        cell(ctx, l, x, h, ctx->c + (size_t)l * H);
        x = h;
    }
    return x;
}

/* The embeddings of token t (ids[t * nfeat + f]) side by side in ctx->x. */
static const float *embed(lstm_embed_ctx *ctx, const int32_t *ids, int t) {
    const lstm_embed_model *m = ctx->m;
    float *x = ctx->x;
    for (int f = 0; f < m->nfeat; f++) {
        const lstm_embed_matrix *e = &m->embedding[f];
        size_t id = (size_t)ids[(size_t)t * m->nfeat + f], E = (size_t)e->cols;
        if (e->w) {
            memcpy(x, e->w + id * E, sizeof(float) * E);
        } else {
            float s = e->scale[id];
            for (size_t j = 0; j < E; j++)
                x[j] = (float)e->q[id * E + j] * s;
        }
        x += E;
    }
    return ctx->x;
}

/* Every id of a sequence within its feature's vocabulary. */
static int ids_ok(const lstm_embed_model *m, const int32_t *ids, int T) {
    if (!ids)
        return 0;
    for (int t = 0; t < T; t++)
        for (int f = 0; f < m->nfeat; f++) {
            int32_t id = ids[(size_t)t * m->nfeat + f];
            if (id < 0 || id >= m->embedding[f].rows)
                return 0;
        }
    return 1;
}

static int decode(lstm_embed_ctx *ctx, const float *y, float *logits);

/* What run_bidir does with the last layer's outputs. */
enum { LAST_STORE, LAST_POOL, LAST_TAG };

/* A bidirectional model over T steps from the state in ctx, layer by layer;
 * layer 0's input is x (T, I) or the embeddings of ids. Layer l's output
 * (T, D*Ho) goes to ctx->seq[l & 1]; the last layer's
 *   LAST_STORE: to y (T, D*Ho);
 *   LAST_POOL: summed over the steps into ctx->pooled (zeroed by the caller);
 *   LAST_TAG: the forward direction's to ctx->seq[(L-1) & 1] (T, Ho), then
 *     at each step of the reverse one, [forward; reverse] (in ctx->pooled)
 *     through the decoder: logits (T, V) or NULL, tags (T) or NULL. */
static void run_bidir(lstm_embed_ctx *ctx, const float *x, const int32_t *ids, int T, int mode,
                      float *y, float *logits, int *tags) {
    const lstm_embed_model *m = ctx->m;
    int H = m->hidden_size, Ho = ctx->Ho, D = ctx->D, out = ctx->out_dim, L = m->num_layers;
    size_t V = (size_t)m->decoder.rows;
    const float *in = NULL;
    for (int l = 0; l < L; l++) {
        int last = l == L - 1;
        float *dst = last ? y : ctx->seq[l & 1];
        int stride = out;
        if (last && mode == LAST_TAG)
            dst = ctx->seq[l & 1], stride = Ho;
        for (int d = 0; d < D; d++) {
            int k = l * D + d;
            float *h = ctx->h + (size_t)k * Ho, *c = ctx->c + (size_t)k * H;
            for (int s = 0; s < T; s++) {
                int t = d ? T - 1 - s : s;
                const float *xt = l ? in + (size_t)t * out
                                    : ids ? embed(ctx, ids, t) : x + (size_t)t * m->input_size;
                cell(ctx, k, xt, h, c);
                if (!last || mode == LAST_STORE) {
                    memcpy(dst + (size_t)t * out + (size_t)d * Ho, h, sizeof(float) * Ho);
                } else if (mode == LAST_POOL) {
                    float *pool = ctx->pooled + (size_t)d * Ho;
                    for (int j = 0; j < Ho; j++)
                        pool[j] += h[j];
                } else if (d == 0) {
                    memcpy(dst + (size_t)t * stride, h, sizeof(float) * Ho);
                } else {
                    memcpy(ctx->pooled, dst + (size_t)t * stride, sizeof(float) * Ho);
                    memcpy(ctx->pooled + Ho, h, sizeof(float) * Ho);
                    int best = decode(ctx, ctx->pooled, logits ? logits + (size_t)t * V : ctx->out);
                    if (tags)
                        tags[t] = best;
                }
            }
        }
        in = dst;
    }
}

/* Whether a bidirectional model's sequence of T steps fits the arena: the
 * layers below the last keep their outputs there, and so does the last one
 * when `last_kept` (tag). */
static int bidir_fits(const lstm_embed_ctx *ctx, int T, int last_kept) {
    return !ctx->m->bidirectional || (ctx->m->num_layers < 2 && !last_kept) ||
           T <= ctx->max_steps;
}

/* logits = decoder y + bias; the index of the largest (first of equals). */
static int decode(lstm_embed_ctx *ctx, const float *y, float *logits) {
    const lstm_embed_model *m = ctx->m;
    int V = m->decoder.rows;
    matvec(ctx, logits, &m->decoder, y, 0, m->decoder_bias, NULL);
    int best = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > logits[best])
            best = v;
    return best;
}

/* ------------------------------------------------------------------ */
/* The calls. */

int lstm_embed_step(lstm_embed_ctx *ctx, const float *x, float *y) {
    if (ctx->m->bidirectional || !x)
        return LSTM_EMBED_ERR_ARG;
    const float *h = layers_step(ctx, x);
    if (y)
        memcpy(y, h, sizeof(float) * ctx->Ho);
    return LSTM_EMBED_OK;
}

int lstm_embed_run(lstm_embed_ctx *ctx, const float *x, int T, float *y) {
    if (!x || !y || T < 1 || !bidir_fits(ctx, T, 0))
        return LSTM_EMBED_ERR_ARG;
    size_t out = (size_t)ctx->out_dim, I = (size_t)ctx->in_dim;
    if (ctx->m->bidirectional) {
        run_bidir(ctx, x, NULL, T, LAST_STORE, y, NULL, NULL);
        return LSTM_EMBED_OK;
    }
    for (int t = 0; t < T; t++)
        memcpy(y + (size_t)t * out, layers_step(ctx, x + (size_t)t * I), sizeof(float) * out);
    return LSTM_EMBED_OK;
}

int lstm_embed_lm_step(lstm_embed_ctx *ctx, int32_t id, float *logits) {
    const lstm_embed_model *m = ctx->m;
    if (m->task != LSTM_EMBED_LM || !ids_ok(m, &id, 1))
        return LSTM_EMBED_ERR_ARG;
    decode(ctx, layers_step(ctx, embed(ctx, &id, 0)), logits ? logits : ctx->out);
    return LSTM_EMBED_OK;
}

/* The checks shared by classify and tag. */
static int sequence_ok(lstm_embed_ctx *ctx, lstm_embed_task task, const int32_t *ids, int T) {
    const lstm_embed_model *m = ctx->m;
    return m->task == task && T >= 1 && bidir_fits(ctx, T, task == LSTM_EMBED_TAG) &&
           ids_ok(m, ids, T);
}

int lstm_embed_classify(lstm_embed_ctx *ctx, const int32_t *ids, int T, float *logits) {
    if (!sequence_ok(ctx, LSTM_EMBED_CLASSIFY, ids, T))
        return LSTM_EMBED_ERR_ARG;
    int out = ctx->out_dim;
    float *pooled = ctx->pooled;
    memset(pooled, 0, sizeof(float) * out);
    /* mean pooling over the T real steps: a sum in the order each direction
     * runs, then / T */
    lstm_embed_reset(ctx);
    if (ctx->m->bidirectional) {
        run_bidir(ctx, NULL, ids, T, LAST_POOL, NULL, NULL, NULL);
    } else {
        for (int t = 0; t < T; t++) {
            const float *y = layers_step(ctx, embed(ctx, ids, t));
            for (int j = 0; j < out; j++)
                pooled[j] += y[j];
        }
    }
    for (int j = 0; j < out; j++)
        pooled[j] = pooled[j] / (float)T;
    return decode(ctx, pooled, logits ? logits : ctx->out);
}

/* The most probable tag of each of T steps under the CRF, from the
 * emissions in ctx->crf (T, V): the forward-backward scaled at each step
 * as the library's (src/core/crf.c), in float; logits (T, V) or NULL
 * receives the log marginals. */
static void crf_tag(lstm_embed_ctx *ctx, int T, float *logits, int *tags) {
    const lstm_embed_model *m = ctx->m;
    size_t V = (size_t)m->decoder.rows;
    float *em = ctx->crf, *al = em + (size_t)T * V, *b = al + (size_t)T * V, *nb = b + V;
    float *E = nb + V, *c = E + V * V;
    const float *tr = m->crf_transitions, *st = m->crf_start, *en = m->crf_end;
    float tmax = tr[0], smax = st[0], emax = en[0];
    for (size_t i = 1; i < V * V; i++)
        tmax = tr[i] > tmax ? tr[i] : tmax;
    for (size_t j = 1; j < V; j++) {
        smax = st[j] > smax ? st[j] : smax;
        emax = en[j] > emax ? en[j] : emax;
    }
    for (size_t i = 0; i < V * V; i++)
        E[i] = lstm_embed_expf(tr[i] - tmax);
    for (int t = 0; t < T; t++) { /* the emissions become exp(e - the step's largest) */
        float *e = em + (size_t)t * V, mx = e[0];
        for (size_t j = 1; j < V; j++)
            mx = e[j] > mx ? e[j] : mx;
        for (size_t j = 0; j < V; j++)
            e[j] = lstm_embed_expf(e[j] - mx);
    }
    for (int t = 0; t < T; t++) { /* forward: alpha_t = (alpha_{t-1} E) phi_t, scaled */
        float *a = al + (size_t)t * V, *e = em + (size_t)t * V, s = 0;
        if (t == 0) {
            for (size_t j = 0; j < V; j++)
                a[j] = lstm_embed_expf(st[j] - smax) * e[j];
        } else {
            const float *ap = a - V;
            memset(a, 0, sizeof(float) * V);
            for (size_t i = 0; i < V; i++)
                for (size_t j = 0; j < V; j++)
                    a[j] += ap[i] * E[i * V + j];
            for (size_t j = 0; j < V; j++)
                a[j] *= e[j];
        }
        for (size_t j = 0; j < V; j++)
            s += a[j];
        c[t] = s;
        for (size_t j = 0; j < V; j++)
            a[j] /= s;
    }
    float z = 0; /* backward from beta_{T-1} = exp(end - emax) / z */
    const float *last = al + (size_t)(T - 1) * V;
    for (size_t j = 0; j < V; j++)
        z += last[j] * lstm_embed_expf(en[j] - emax);
    for (size_t j = 0; j < V; j++)
        b[j] = lstm_embed_expf(en[j] - emax) / z;
    for (int t = T - 1; t >= 0; t--) {
        const float *a = al + (size_t)t * V, *e = em + (size_t)t * V;
        int best = 0;
        float pbest = -1;
        for (size_t j = 0; j < V; j++) {
            float p = a[j] * b[j];
            if (p > pbest)
                pbest = p, best = (int)j;
            if (logits)
                logits[(size_t)t * V + j] = lstm_embed_logf(p);
        }
        if (tags)
            tags[t] = best;
        if (t == 0)
            break;
        for (size_t j = 0; j < V; j++) /* u_t, then beta_{t-1} = u_t E^T */
            b[j] = e[j] * b[j] / c[t];
        for (size_t i = 0; i < V; i++) {
            float s = 0;
            for (size_t j = 0; j < V; j++)
                s += E[i * V + j] * b[j];
            nb[i] = s;
        }
        float *tmp = b;
        b = nb, nb = tmp;
    }
}

int lstm_embed_tag(lstm_embed_ctx *ctx, const int32_t *ids, int T, float *logits, int *tags) {
    if (!sequence_ok(ctx, LSTM_EMBED_TAG, ids, T))
        return LSTM_EMBED_ERR_ARG;
    size_t V = (size_t)ctx->m->decoder.rows;
    if (ctx->m->crf_transitions) { /* the emissions of every step, then the CRF */
        if (T > ctx->max_steps)
            return LSTM_EMBED_ERR_ARG;
        float *em = ctx->crf;
        lstm_embed_reset(ctx);
        if (ctx->m->bidirectional)
            run_bidir(ctx, NULL, ids, T, LAST_TAG, NULL, em, NULL);
        else
            for (int t = 0; t < T; t++)
                decode(ctx, layers_step(ctx, embed(ctx, ids, t)), em + (size_t)t * V);
        crf_tag(ctx, T, logits, tags);
        return LSTM_EMBED_OK;
    }
    lstm_embed_reset(ctx);
    if (ctx->m->bidirectional) {
        run_bidir(ctx, NULL, ids, T, LAST_TAG, NULL, logits, tags);
        return LSTM_EMBED_OK;
    }
    for (int t = 0; t < T; t++) {
        const float *y = layers_step(ctx, embed(ctx, ids, t));
        int best = decode(ctx, y, logits ? logits + (size_t)t * V : ctx->out);
        if (tags)
            tags[t] = best;
    }
    return LSTM_EMBED_OK;
}
