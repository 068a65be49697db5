/* test_embed.c - the embeddable runtime (include/lstm_embed.h):
 *   - its e^x, sigmoid and tanh against libm in double;
 *   - the bare LSTM against PyTorch's outputs (the fixtures of
 *     tests/fixtures, every configuration: layers, proj_size,
 *     bidirectional, h0, lengths, batch_first, no bias);
 *   - the three task models (float) against the library's own forward
 *     (model_batch_run) on the same weights;
 *   - the int8-rowwise arithmetic, step by step, against a plain
 *     transcription of the format's rule written here (with libm's
 *     nearbyintf and int64 sums), bit for bit; the int8 task models
 *     against the library's int8 path (lstm_model_quantize) on the file it
 *     writes; and with int8 embeddings too (which the library keeps float)
 *     against the float models whose weights are the dequantized int8 ones;
 *   - the arena: its size is enough and an arena one float short is
 *     refused; bad ids and lengths are refused.
 */
#include "check.h"
#include "lstm.h"
#include "lstm_embed.h"
#include "task.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PyTorch parity, the envelope test_lstm holds the library to. */
#define ATOL 1e-5
#define RTOL 1e-4

static float *get(const lstm_st *st, const char *name, size_t *n) {
    const lstm_st_tensor *t = lstm_st_find(st, name);
    if (!t)
        return NULL;
    float *v = malloc(sizeof(float) * (t->numel ? t->numel : 1));
    lstm_error err;
    if (lstm_st_read_f32(st, t, v, t->numel, &err)) {
        free(v);
        return NULL;
    }
    if (n)
        *n = t->numel;
    return v;
}

static int meta_int(const lstm_st *st, const char *key) {
    const char *v = lstm_st_meta(st, key);
    return v ? atoi(v) : -1;
}

/* A context with an arena of exactly the size asked for. */
static void *make_ctx(lstm_embed_ctx *ctx, const lstm_embed_model *m, int max_steps) {
    size_t n = lstm_embed_arena_size(m, max_steps);
    void *arena = malloc(n ? n : 1);
    int s = lstm_embed_init(ctx, m, max_steps, arena, n);
    CHECK(n > 0 && s == LSTM_EMBED_OK, "init with an arena of %zu bytes: %d", n, s);
    if (s) {
        free(arena);
        return NULL;
    }
    return arena;
}

/* ------------------------------------------------------------------ */

static double ulps(float got, double want) {
    if (want == 0)
        return got == 0 ? 0 : INFINITY;
    int e;
    frexp(want, &e);
    double ulp = ldexp(1.0, e - 24);
    if (fabs(want) < 0x1p-126)
        ulp = 0x1p-149;
    return fabs((double)got - want) / ulp;
}

static void test_functions(void) {
    double worst_exp = 0, worst_sig = 0, worst_tanh = 0, worst_tanh_rel = 0;
    for (int i = 0; i <= 400000; i++) {
        float x = -87.0f + 175.0f * (float)i / 400000.0f;
        worst_exp = fmax(worst_exp, ulps(lstm_embed_expf(x), exp((double)x)));
        if (fabsf(x) < 20) {
            double s = 1.0 / (1.0 + exp(-(double)x));
            worst_sig = fmax(worst_sig, fabs(lstm_embed_sigmoidf(x) - s));
            double t = tanh((double)x);
            worst_tanh = fmax(worst_tanh, fabs(lstm_embed_tanhf(x) - t));
            if (t != 0)
                worst_tanh_rel = fmax(worst_tanh_rel, fabs(lstm_embed_tanhf(x) - t) / fabs(t));
        }
    }
    printf("ok expf within %.2f ulp on [-87, 88]; sigmoid within %.2g, tanh within %.2g "
           "(absolute; relative %.2g) on [-20, 20]\n",
           worst_exp, worst_sig, worst_tanh, worst_tanh_rel);
    /* Cephes' expf is within 1 ulp in exact arithmetic; evaluated in float,
       2; sigmoid and tanh then a few float roundings of a value <= 1 */
    CHECK(worst_exp <= 2.0, "expf %.2f ulp", worst_exp);
    CHECK(worst_sig <= 2.5e-7, "sigmoid %g", worst_sig);
    CHECK(worst_tanh <= 2.5e-7 && worst_tanh_rel <= 5e-7, "tanh %g %g", worst_tanh,
          worst_tanh_rel);
    CHECK(lstm_embed_expf(-INFINITY) == 0 && lstm_embed_expf(INFINITY) == INFINITY &&
              isnan(lstm_embed_expf(NAN)) && lstm_embed_expf(0) == 1.0f,
          "e^x at -inf, inf, NaN, 0");
    CHECK(lstm_embed_sigmoidf(-200) == 0 || lstm_embed_sigmoidf(-200) < 1e-37f, "sigmoid(-200)");
    /* ln x from the smallest subnormal to the largest float, log-spaced */
    double worst_log = 0;
    for (int i = 0; i <= 400000; i++) {
        float x = (float)exp(-103.0 + 191.0 * i / 400000.0);
        if (x > 0 && isfinite(x))
            worst_log = fmax(worst_log, ulps(lstm_embed_logf(x), log((double)x)));
    }
    printf("ok logf within %.2f ulp on [e^-103, e^88]\n", worst_log);
    CHECK(worst_log <= 2.0, "logf %.2f ulp", worst_log);
    CHECK(lstm_embed_logf(0) == -INFINITY && isnan(lstm_embed_logf(-1)) &&
              isnan(lstm_embed_logf(NAN)) && lstm_embed_logf(INFINITY) == INFINITY &&
              lstm_embed_logf(1) == 0,
          "ln at 0, -1, NaN, inf, 1");
    CHECK(lstm_embed_sigmoidf(200) == 1 && lstm_embed_tanhf(200) == 1 && lstm_embed_tanhf(-200) == -1,
          "saturation");
}

/* ------------------------------------------------------------------ */
/* The bare LSTM against PyTorch. */

/* The fixture's LSTM quantized by the library (lstm_params_quantize on
 * every weight matrix) and run by it on the fixture's input: *y, *hn, *cn
 * replaced by its outputs, and the int8 file it writes (lstm_params_write)
 * returned. */
static lstm_st *library_int8(const lstm_st *st, float **y, float **hn, float **cn) {
    lstm_error err;
    lstm_rnn_config cfg;
    lstm_st *out = NULL;
    if (lstm_rnn_config_infer(&cfg, st, "", &err))
        return NULL;
    cfg.batch_first = meta_int(st, "batch_first") == 1;
    int T = meta_int(st, "T"), B = meta_int(st, "B"), D = cfg.bidirectional ? 2 : 1;
    int Ho = cfg.proj_size ? cfg.proj_size : cfg.hidden_size;
    lstm_ctx *ctx = lstm_ctx_create(NULL, &err);
    lstm_params *p = lstm_params_create();
    lstm_rnn *rnn = lstm_rnn_create(&cfg, p, "", &err);
    int ok = ctx && rnn && !lstm_params_alloc(p, &err) && !lstm_params_read(p, st, "", 0, &err);
    for (int i = 0; ok && i < lstm_params_count(p); i++)
        if (lstm_params_ndim(p, i) == 2)
            ok = !lstm_params_quantize(p, i, &err);
    int len[64];
    const lstm_st_tensor *lt = lstm_st_find(st, "lengths");
    int64_t l64[64];
    if (lt)
        lstm_st_read_i64(st, lt, l64, lt->numel, &err);
    for (int b = 0; b < B; b++)
        len[b] = lt ? (int)l64[b] : T;
    float *x = get(st, "input", NULL), *h0 = get(st, "h0", NULL), *c0 = get(st, "c0", NULL);
    size_t L = (size_t)cfg.num_layers;
    float *yy = calloc((size_t)T * B * D * Ho, sizeof(float));
    float *hh = calloc(L * D * B * Ho, sizeof(float)), *cc = calloc(L * D * B * cfg.hidden_size, sizeof(float));
    lstm_rnn_io io = {T, B, x, lt ? len : NULL, h0, c0, yy, hh, cc};
    ok = ok && !lstm_rnn_forward(rnn, ctx, p, &io, 0, NULL, &err);
    lstm_st_writer *w = lstm_st_writer_create();
    void *buf;
    size_t n;
    if (ok && !lstm_params_write(p, w, "", &err) && !lstm_st_writer_to_memory(w, &buf, &n, &err)) {
        out = lstm_st_from_memory(buf, n, "library int8", &err);
        free(buf);
    }
    CHECK(out != NULL, "the library's int8 LSTM: %s", err.msg);
    free(*y), free(*hn), free(*cn);
    *y = yy, *hn = hh, *cn = cc;
    lstm_st_writer_free(w);
    free(x), free(h0), free(c0);
    lstm_rnn_free(rnn), lstm_params_free(p), lstm_ctx_free(ctx);
    return out;
}

/* The runtime on each sequence of a fixture against PyTorch's outputs, or
 * (int8) against the library's int8 LSTM on the same quantized weights. */
static void run_fixture(const char *path, int int8) {
    lstm_error err;
    lstm_st *st = lstm_st_open(path, &err);
    CHECK(st != NULL, "%s: %s", path, err.msg);
    if (!st)
        return;
    float *want_y = get(st, "output", NULL), *want_hn = get(st, "h_n", NULL);
    float *want_cn = get(st, "c_n", NULL);
    lstm_st *qst = int8 ? library_int8(st, &want_y, &want_hn, &want_cn) : NULL;
    lstm_embed_host *host = int8 && !qst ? NULL : lstm_embed_host_load(int8 ? qst : st, &err);
    CHECK(host != NULL, "%s: %s", path, err.msg);
    if (!host) {
        free(want_y), free(want_hn), free(want_cn);
        lstm_st_free(st), lstm_st_free(qst);
        return;
    }
    const lstm_embed_model *m = lstm_embed_host_model(host);
    int T = meta_int(st, "T"), B = meta_int(st, "B"), bf = meta_int(st, "batch_first") == 1;
    int I = m->input_size, H = m->hidden_size, L = m->num_layers, D = m->bidirectional ? 2 : 1;
    int Ho = m->proj_size ? m->proj_size : H;
    CHECK(H == meta_int(st, "hidden_size") && L == meta_int(st, "num_layers") &&
              m->proj_size == meta_int(st, "proj_size") && I == meta_int(st, "input_size") &&
              m->bidirectional == meta_int(st, "bidirectional") &&
              (m->b_ih != NULL) == meta_int(st, "bias"),
          "%s: the configuration read from the tensors", path);
    CHECK(!int8 || m->w_ih[0].q, "%s: int8 weights", path);
    float *x = get(st, "input", NULL), *h0 = get(st, "h0", NULL), *c0 = get(st, "c0", NULL);
    int len[64];
    const lstm_st_tensor *lt = lstm_st_find(st, "lengths");
    int64_t l64[64];
    if (lt)
        lstm_st_read_i64(st, lt, l64, lt->numel, &err);
    for (int b = 0; b < B; b++)
        len[b] = lt ? (int)l64[b] : T;

    lstm_embed_ctx ctx;
    void *arena = make_ctx(&ctx, m, T);
    float *xs = malloc(sizeof(float) * T * I), *y = malloc(sizeof(float) * T * D * Ho);
    double worst = 0;
    int ok = arena != NULL;
    for (int b = 0; ok && b < B; b++) {
        for (int t = 0; t < len[b]; t++)
            memcpy(xs + t * I, x + ((bf ? (size_t)b * T + t : (size_t)t * B + b) * I),
                   sizeof(float) * I);
        lstm_embed_reset(&ctx);
        for (int k = 0; h0 && k < L * D; k++) {
            memcpy(ctx.h + k * Ho, h0 + ((size_t)k * B + b) * Ho, sizeof(float) * Ho);
            memcpy(ctx.c + k * H, c0 + ((size_t)k * B + b) * H, sizeof(float) * H);
        }
        ok = lstm_embed_run(&ctx, xs, len[b], y) == LSTM_EMBED_OK;
        CHECK(ok, "%s: run", path);
        for (int t = 0; ok && t < len[b]; t++)
            for (int j = 0; j < D * Ho; j++) {
                float want = want_y[(bf ? (size_t)b * T + t : (size_t)t * B + b) * D * Ho + j];
                float got = y[t * D * Ho + j];
                worst = fmax(worst, fabs(got - want));
                ok &= fabs(got - want) <= ATOL + RTOL * fabs(want);
            }
        for (int k = 0; ok && k < L * D; k++) {
            for (int j = 0; j < Ho; j++)
                ok &= fabs(ctx.h[k * Ho + j] - want_hn[((size_t)k * B + b) * Ho + j]) <=
                      ATOL + RTOL * fabs(want_hn[((size_t)k * B + b) * Ho + j]);
            for (int j = 0; j < H; j++)
                ok &= fabs(ctx.c[k * H + j] - want_cn[((size_t)k * B + b) * H + j]) <=
                      ATOL + RTOL * fabs(want_cn[((size_t)k * B + b) * H + j]);
        }
        CHECK(ok, "%s: sequence %d: output, h_n, c_n within %g + %g|want| of %s (worst "
                  "output difference %g)", path, b, ATOL, RTOL,
              int8 ? "the library's int8 LSTM" : "PyTorch's", worst);
    }
    printf("ok %s: the runtime within %.2g of %s\n", path, worst,
           int8 ? "the library's int8 LSTM" : "PyTorch");
    free(xs), free(y), free(arena), free(x), free(h0), free(c0), free(want_y), free(want_hn),
        free(want_cn);
    lstm_embed_host_free(host);
    lstm_st_free(st), lstm_st_free(qst);
}

/* ------------------------------------------------------------------ */
/* Files made here: the int8-rowwise form of a float file. */

/* Every 2-D weight of st (and the embeddings when `embeddings`) as NAME.int8
 * and NAME.scale: scale = max |w_r| / 127, q = round(w / scale). When
 * `dequant`, the float file of the same values instead: w = scale * q (so
 * that the int8 model and this float one differ only in how activations
 * are treated). The metadata is kept. */
static lstm_st *quantize(const lstm_st *st, int embeddings, int dequant) {
    lstm_error err;
    lstm_st_writer *w = lstm_st_writer_create();
    for (size_t i = 0; i < lstm_st_meta_count(st); i++) {
        const char *k, *v;
        lstm_st_meta_at(st, i, &k, &v);
        lstm_st_writer_meta(w, k, v, &err);
    }
    if (!dequant)
        lstm_st_writer_meta(w, "lstm.quantization", "int8-rowwise", &err);
    for (size_t i = 0; i < lstm_st_count(st); i++) {
        const lstm_st_tensor *t = lstm_st_tensor_at(st, i);
        float *v = malloc(sizeof(float) * (t->numel ? t->numel : 1));
        lstm_st_read_f32(st, t, v, t->numel, &err);
        int emb = strncmp(t->name, "embedding.", 10) == 0;
        if (t->ndim != 2 || !strstr(t->name, "weight") || (emb && !embeddings)) {
            lstm_st_writer_add(w, t->name, LSTM_DT_F32, t->ndim, t->shape, v, &err);
            free(v);
            continue;
        }
        int64_t R = t->shape[0], C = t->shape[1];
        int8_t *q = malloc((size_t)(R * C));
        float *scale = malloc(sizeof(float) * R);
        for (int64_t r = 0; r < R; r++) {
            float mx = 0;
            for (int64_t c = 0; c < C; c++)
                mx = fmaxf(mx, fabsf(v[r * C + c]));
            scale[r] = mx / 127.0f;
            for (int64_t c = 0; c < C; c++) {
                float qv = mx > 0 ? nearbyintf(v[r * C + c] / scale[r]) : 0;
                q[r * C + c] = (int8_t)fmaxf(-127, fminf(127, qv));
                v[r * C + c] = scale[r] * q[r * C + c];
            }
        }
        char name[256];
        if (dequant) {
            lstm_st_writer_add(w, t->name, LSTM_DT_F32, 2, t->shape, v, &err);
        } else {
            snprintf(name, sizeof name, "%s.int8", t->name);
            lstm_st_writer_add(w, name, LSTM_DT_I8, 2, t->shape, q, &err);
            snprintf(name, sizeof name, "%s.scale", t->name);
            lstm_st_writer_add(w, name, LSTM_DT_F32, 1, t->shape, scale, &err);
        }
        free(q), free(scale), free(v);
    }
    void *buf;
    size_t len;
    lstm_st *out = NULL;
    if (lstm_st_writer_to_memory(w, &buf, &len, &err) == LSTM_OK) {
        out = lstm_st_from_memory(buf, len, dequant ? "dequantized" : "quantized", &err);
        free(buf);
    }
    CHECK(out != NULL, "quantize: %s", err.msg);
    lstm_st_writer_free(w);
    return out;
}

/* ------------------------------------------------------------------ */
/* The int8 rule, transcribed: out[r] += W a for W int8-rowwise. */

/* p[r] = (W a)[r] for W int8-rowwise, 0 for an all-zero a. */
static void ref_qmatvec(float *p, const lstm_embed_matrix *W, const float *a) {
    float mx = 0;
    for (int j = 0; j < W->cols; j++)
        mx = fmaxf(mx, fabsf(a[j]));
    float inv = 127.0f / mx, sa = mx / 127.0f;
    for (int r = 0; r < W->rows; r++) {
        int64_t acc = 0;
        for (int j = 0; mx > 0 && j < W->cols; j++) {
            float v = fminf(127, fmaxf(-127, nearbyintf(a[j] * inv)));
            acc += (int64_t)v * W->q[(size_t)r * W->cols + j];
        }
        p[r] = mx > 0 ? (float)acc * (sa * W->scale[r]) : 0;
    }
}

/* One step of layer k, unidirectional, as the header states it:
 * gates = (W_ih x + W_hh h) + (b_ih + b_hh). */
static void ref_cell(const lstm_embed_model *m, int k, const float *x, float *h, float *c) {
    int H = m->hidden_size, P = m->proj_size;
    float g[4 * 64], gh[4 * 64], hh[64];
    ref_qmatvec(g, &m->w_ih[k], x);
    ref_qmatvec(gh, &m->w_hh[k], h);
    for (int r = 0; r < 4 * H; r++)
        g[r] = (g[r] + gh[r]) + (m->b_ih[k][r] + m->b_hh[k][r]);
    for (int u = 0; u < H; u++) {
        float i = lstm_embed_sigmoidf(g[u]), f = lstm_embed_sigmoidf(g[H + u]);
        float gg = lstm_embed_tanhf(g[2 * H + u]), o = lstm_embed_sigmoidf(g[3 * H + u]);
        c[u] = f * c[u] + i * gg;
        hh[u] = o * lstm_embed_tanhf(c[u]);
    }
    if (P)
        ref_qmatvec(h, &m->w_hr[k], hh);
    else
        memcpy(h, hh, sizeof(float) * H);
}

static void test_int8_rule(void) {
    const char *path = "tests/fixtures/lstm_h20_proj7.safetensors"; /* 2 layers, proj 7 */
    lstm_error err;
    lstm_st *st = lstm_st_open(path, &err), *qst = st ? quantize(st, 0, 0) : NULL;
    lstm_embed_host *host = qst ? lstm_embed_host_load(qst, &err) : NULL;
    CHECK(host != NULL, "%s quantized: %s", path, err.msg);
    if (!host) {
        lstm_st_free(st), lstm_st_free(qst);
        return;
    }
    const lstm_embed_model *m = lstm_embed_host_model(host);
    CHECK(m->w_ih[0].q && m->w_hh[1].q && m->w_hr[1].q && !m->w_ih[0].w, "the int8 matrices");
    int I = m->input_size, H = m->hidden_size, Ho = m->proj_size, L = m->num_layers, T = 6;
    float *x = get(st, "input", NULL), h[8 * 64] = {0}, c[8 * 64] = {0}, y[64];
    lstm_embed_ctx ctx;
    void *arena = make_ctx(&ctx, m, 0);
    int same = arena != NULL, steps = 0;
    for (int t = 0; same && t < T; t++) {
        float xt[64];
        memcpy(xt, x + (size_t)(t % 4) * I, sizeof(float) * I); /* the fixture's (T=4, B=3) rows */
        if (t == 2)
            memset(xt, 0, sizeof xt); /* an all-zero input: the product is 0 */
        const float *in = xt;
        for (int l = 0; l < L; l++) {
            ref_cell(m, l, in, h + l * Ho, c + l * H);
            in = h + l * Ho;
        }
        same &= lstm_embed_step(&ctx, xt, y) == LSTM_EMBED_OK;
        same &= memcmp(y, h + (L - 1) * Ho, sizeof(float) * Ho) == 0 &&
                memcmp(ctx.h, h, sizeof(float) * L * Ho) == 0 &&
                memcmp(ctx.c, c, sizeof(float) * L * H) == 0;
        steps += same;
    }
    CHECK(same, "int8 steps equal, bit for bit, to the rule transcribed (%d of %d steps)", steps,
          T);
    /* a NaN in the input comes out as NaN (never as an int8 code) */
    if (arena) {
        float xt[64];
        memcpy(xt, x, sizeof(float) * I);
        xt[1] = NAN;
        int r = lstm_embed_step(&ctx, xt, y), nan = 1;
        for (int j = 0; j < Ho; j++)
            nan &= isnan(y[j]);
        CHECK(r == LSTM_EMBED_OK && nan, "int8: a NaN input gives NaN outputs");
        xt[1] = INFINITY;
        lstm_embed_reset(&ctx);
        r = lstm_embed_step(&ctx, xt, y), nan = 1;
        for (int j = 0; j < Ho; j++)
            nan &= isnan(y[j]);
        CHECK(r == LSTM_EMBED_OK && nan, "int8: an infinite input gives NaN outputs");
    }
    free(arena), free(x);
    lstm_embed_host_free(host);
    lstm_st_free(st), lstm_st_free(qst);
}

/* ------------------------------------------------------------------ */
/* The task models against the library. */

static const char *lm_text = "the quick brown fox jumps over the lazy dog.\nA cat, 12 hens!\n";
static const char *classify_text = "__label__pos good great fine\n__label__neg bad awful poor\n"
                                   "__label__pos nice good fun\n__label__mid so so\n";
static const char *tag_text = "The\tDT\ndog\tNN\nruns\tVBZ\n.\t.\n\nA\tDT\ncat\tNN\n"
                              "sleeps\tVBZ\nquietly\tRB\n\n";

typedef struct {
    lstm_task task;
    int layers, hidden, proj, bidirectional, char_features;
    int suffixes, prefixes; /* tag with char_features (lstm_model_config's) */
    int crf;                /* tag: a CRF over the tags */
} task_case;

/* log-softmax of z[0..V) in double. */
static void log_softmax(double *out, const float *z, int V) {
    double mx = z[0], s = 0;
    for (int v = 1; v < V; v++)
        mx = fmax(mx, z[v]);
    for (int v = 0; v < V; v++)
        s += exp(z[v] - mx);
    for (int v = 0; v < V; v++)
        out[v] = z[v] - mx - log(s);
}

/* The runtime's log-probabilities for sequence ids (T, nfeat) into lp
 * (rows, V); rows T (lm, tag) or 1 (classify). Returns 0 on success. */
static int runtime_logp(const lstm_embed_model *em, const int32_t *ids, int T, double *lp) {
    lstm_embed_ctx ctx;
    void *arena = make_ctx(&ctx, em, T);
    if (!arena)
        return -1;
    int V = em->decoder.rows, bad = 0;
    float *logits = malloc(sizeof(float) * V * T);
    int *tags = malloc(sizeof(int) * T);
    if (em->task == LSTM_EMBED_LM) {
        for (int t = 0; t < T && !bad; t++)
            bad |= lstm_embed_lm_step(&ctx, ids[t], logits + (size_t)t * V) != 0;
    } else if (em->task == LSTM_EMBED_CLASSIFY) {
        int cls = lstm_embed_classify(&ctx, ids, T, logits);
        bad |= cls < 0 || cls != task_argmax(logits, V);
    } else {
        bad |= lstm_embed_tag(&ctx, ids, T, logits, tags) != 0;
        for (int t = 0; t < T && !bad; t++)
            bad |= tags[t] != task_argmax(logits + (size_t)t * V, V);
        for (int t = 0; t < T && !bad && em->crf_transitions; t++) {
            double sum = 0; /* a CRF's logits are log marginals: their probabilities sum to 1 */
            for (int v = 0; v < V; v++)
                sum += exp(logits[(size_t)t * V + v]);
            bad |= fabs(sum - 1) > 1e-5;
        }
    }
    int rows = em->task == LSTM_EMBED_CLASSIFY ? 1 : T;
    for (int r = 0; r < rows; r++)
        log_softmax(lp + (size_t)r * V, logits + (size_t)r * V, V);
    free(logits), free(tags), free(arena);
    return bad;
}

static lstm_embed_host *host_of(const lstm_st *st) {
    lstm_error err;
    lstm_embed_host *h = lstm_embed_host_load(st, &err);
    CHECK(h != NULL, "load %s: %s", lstm_st_name(st), err.msg);
    return h;
}

static void test_task(const task_case *tc, lstm_ctx *lctx) {
    lstm_error err;
    const char *text = tc->task == LSTM_TASK_LM ? lm_text
                     : tc->task == LSTM_TASK_CLASSIFY ? classify_text : tag_text;
    lstm_dataset *ds = lstm_dataset_from_memory(tc->task, text, strlen(text), "train", 1, &err);
    CHECK(ds != NULL, "data: %s", err.msg);
    lstm_model_config cfg = lstm_model_defaults(tc->task);
    cfg.embedding = 8, cfg.hidden = tc->hidden, cfg.layers = tc->layers, cfg.proj = tc->proj;
    cfg.bidirectional = tc->bidirectional, cfg.char_features = tc->char_features;
    cfg.suffixes = tc->suffixes, cfg.prefixes = tc->prefixes, cfg.crf = tc->crf;
    cfg.vocab_size = 0, cfg.min_count = 1, cfg.dropout = 0;
    lstm_rng rng;
    lstm_rng_seed(&rng, 7 + tc->layers * 3 + tc->bidirectional);
    lstm_model *m = ds ? model_create(&cfg, ds, &rng, &err) : NULL;
    CHECK(m != NULL, "model: %s", err.msg);
    if (!m) {
        lstm_dataset_free(ds);
        return;
    }
    char what[128];
    snprintf(what, sizeof what, "%s L%d H%d P%d %s%s suffixes %d prefixes %d%s",
             lstm_task_name(tc->task), tc->layers, tc->hidden, tc->proj,
             tc->bidirectional ? "bidirectional" : "forward",
             tc->char_features ? " +char features" : "", tc->suffixes, tc->prefixes,
             tc->crf ? " crf" : "");
    /* the model file, as lstm_model_save writes it */
    lstm_st_writer *w = lstm_st_writer_create();
    void *buf;
    size_t len;
    lstm_st *st = NULL;
    if (model_write(m, w, &err) == LSTM_OK && lstm_st_writer_to_memory(w, &buf, &len, &err) == LSTM_OK) {
        st = lstm_st_from_memory(buf, len, what, &err);
        free(buf);
    }
    /* a softmax tagger's file with a stray CRF tensor: the host refuses it
     * (the library would), rather than tag otherwise than lstm predict */
    if (tc->task == LSTM_TASK_TAG && !tc->crf) {
        int64_t n1[1] = {m->nout};
        float *z = calloc((size_t)m->nout, sizeof(float));
        lstm_st *bad = NULL;
        if (lstm_st_writer_add(w, "crf.start_transitions", LSTM_DT_F32, 1, n1, z, &err) == LSTM_OK &&
            lstm_st_writer_to_memory(w, &buf, &len, &err) == LSTM_OK) {
            bad = lstm_st_from_memory(buf, len, "stray.safetensors", &err);
            free(buf);
        }
        lstm_embed_host *hb = bad ? lstm_embed_host_load(bad, &err) : NULL;
        CHECK(bad && !hb && err.status == LSTM_ERR_FORMAT && strstr(err.msg, "does not say a CRF"),
              "%s: a stray crf.start_transitions refused: %s", what, err.msg);
        lstm_embed_host_free(hb);
        lstm_st_free(bad);
        free(z);
    }
    lstm_st_writer_free(w);
    lstm_embed_host *host = st ? host_of(st) : NULL;
    if (!host) {
        lstm_st_free(st), lstm_model_free(m), lstm_dataset_free(ds);
        return;
    }
    const lstm_embed_model *em = lstm_embed_host_model(host);
    int V = em->decoder.rows, nf = m->nfeat;
    if (tc->crf) { /* parameters the runtime's scaled way cannot hold are refused */
        lstm_embed_model wide = *em;
        float *tr = malloc(sizeof(float) * (size_t)V * V);
        memcpy(tr, em->crf_transitions, sizeof(float) * (size_t)V * V);
        wide.crf_transitions = tr;
        CHECK(lstm_embed_check(&wide) == LSTM_EMBED_OK, "%s: its own CRF is checked ok", what);
        tr[1] = tr[0] + 40; /* 2 x 40 > 70 */
        CHECK(lstm_embed_check(&wide) == LSTM_EMBED_ERR_MODEL, "%s: a CRF spread past 70", what);
        tr[1] = NAN;
        CHECK(lstm_embed_check(&wide) == LSTM_EMBED_ERR_MODEL, "%s: a NaN transition", what);
        wide.crf_end = NULL;
        tr[1] = tr[0];
        CHECK(lstm_embed_check(&wide) == LSTM_EMBED_ERR_MODEL, "%s: a CRF without its end", what);
        free(tr);
    }
    CHECK(em->nfeat == nf && V == m->nout && em->bidirectional == tc->bidirectional,
          "%s: the description", what);

    /* sequences of random ids (1..vocabulary-1: never <pad>) */
    enum { NSEQ = 3, TMAX = 13 };
    int Ts[NSEQ] = {1, 7, TMAX};
    double worst = 0, worst_q = 0, worst_qf = 0;
    int ok = 1;
    lstm_st *qst = quantize(st, tc->char_features, 0), *dst = quantize(st, tc->char_features, 1);
    lstm_embed_host *qhost = qst ? host_of(qst) : NULL, *dhost = dst ? host_of(dst) : NULL;
    for (int s = 0; s < NSEQ && ok; s++) {
        int T = Ts[s];
        int32_t ids[TMAX * MAX_FEATURES], *fids[MAX_FEATURES], targets[TMAX];
        for (int f = 0; f < nf; f++) {
            fids[f] = malloc(sizeof(int32_t) * T);
            int rows = em->embedding[f].rows;
            for (int t = 0; t < T; t++)
                ids[t * nf + f] = fids[f][t] = 1 + (int32_t)(lstm_rng_next(&rng) % (uint64_t)(rows - 1));
        }
        for (int t = 0; t < T; t++)
            targets[t] = 0;
        model_batch b = {0};
        b.T = T, b.B = 1, b.targets = targets;
        for (int f = 0; f < nf; f++)
            b.ids[f] = fids[f];
        batch_stats bst;
        ok = model_batch_run(m, lctx, &b, 0, NULL, NULL, &bst, &err) == LSTM_OK;
        CHECK(ok, "%s: library forward: %s", what, err.msg);
        int rows = tc->task == LSTM_TASK_CLASSIFY ? 1 : T;
        double *lp = malloc(sizeof(double) * rows * V), *lq = malloc(sizeof(double) * rows * V);
        double *ld = malloc(sizeof(double) * rows * V);
        ok = ok && runtime_logp(em, ids, T, lp) == 0;
        CHECK(ok, "%s: runtime", what);
        int close = 1;
        for (int i = 0; ok && i < rows * V; i++) {
            double want = m->logits[i];
            worst = fmax(worst, fabs(lp[i] - want));
            close &= fabs(lp[i] - want) <= ATOL + RTOL * fabs(want);
        }
        CHECK(close, "%s T=%d: the runtime's log-probabilities within %g + %g|want| of the "
                     "library's (worst %g)", what, T, ATOL, RTOL, worst);
        /* int8 against float on the same (dequantized) weights */
        if (qhost && dhost && ok) {
            const lstm_embed_model *qm = lstm_embed_host_model(qhost);
            const lstm_embed_model *dm = lstm_embed_host_model(dhost);
            CHECK(qm->w_hh[0].q && qm->decoder.q && (!tc->char_features || qm->embedding[0].q),
                  "%s: int8 matrices", what);
            int qok = runtime_logp(qm, ids, T, lq) == 0 && runtime_logp(dm, ids, T, ld) == 0;
            for (int i = 0; qok && i < rows * V; i++) {
                worst_q = fmax(worst_q, fabs(lq[i] - ld[i]));
                worst_qf = fmax(worst_qf, fabs(lq[i] - lp[i]));
            }
            CHECK(qok, "%s: int8 runtime", what);
        }
        free(lp), free(lq), free(ld);
        for (int f = 0; f < nf; f++)
            free(fids[f]);
    }
    /* Activation quantization: each element of a vector a is off by at most
     * max|a| / 254, so a product row by at most sum_j |w_j| max|a| / 254;
     * through these small models (weights U(+-1/sqrt(H)), embeddings N(0,1))
     * that is a few hundredths of a nat at most. */
    CHECK(worst_q < 0.05 && worst_q > 0, "%s: int8 log-probabilities within 0.05 of the float "
                                         "ones on the same weights (%g; and not equal)", what, worst_q);
    printf("ok %s: runtime vs library %.2g; int8 vs dequantized float %.2g, vs float %.2g\n",
           what, worst, worst_q, worst_qf);

    /* int8: the library's own quantization (lstm_model_quantize) and int8
     * forward against the runtime on the file the library writes */
    double worst_lib8 = 0;
    int q_ok = lstm_model_quantize(m, &err) == LSTM_OK;
    CHECK(q_ok, "%s: lstm_model_quantize: %s", what, err.msg);
    lstm_st *lst = NULL;
    w = lstm_st_writer_create();
    if (q_ok && model_write(m, w, &err) == LSTM_OK &&
        lstm_st_writer_to_memory(w, &buf, &len, &err) == LSTM_OK) {
        lst = lstm_st_from_memory(buf, len, what, &err);
        free(buf);
    }
    lstm_st_writer_free(w);
    lstm_embed_host *lhost = lst ? host_of(lst) : NULL;
    const lstm_embed_model *lm8 = lhost ? lstm_embed_host_model(lhost) : NULL;
    CHECK(lm8 && lm8->w_ih[0].q && lm8->decoder.q && lm8->embedding[0].w,
          "%s: the library's int8 file: int8 LSTM and decoder, float embeddings", what);
    lstm_rng_seed(&rng, 99);
    long nvals = 0, nclose = 0;
    for (int s = 0; lm8 && s < NSEQ; s++) {
        int T = Ts[s];
        int32_t ids[TMAX * MAX_FEATURES], *fids[MAX_FEATURES], targets[TMAX] = {0};
        for (int f = 0; f < nf; f++) {
            fids[f] = malloc(sizeof(int32_t) * T);
            for (int t = 0; t < T; t++)
                ids[t * nf + f] = fids[f][t] =
                    1 + (int32_t)(lstm_rng_next(&rng) % (uint64_t)(em->embedding[f].rows - 1));
        }
        model_batch b = {0};
        b.T = T, b.B = 1, b.targets = targets;
        for (int f = 0; f < nf; f++)
            b.ids[f] = fids[f];
        batch_stats bst;
        int rows = tc->task == LSTM_TASK_CLASSIFY ? 1 : T;
        double *lp = malloc(sizeof(double) * rows * V);
        int r_ok = model_batch_run(m, lctx, &b, 0, NULL, NULL, &bst, &err) == LSTM_OK &&
                   runtime_logp(lm8, ids, T, lp) == 0;
        CHECK(r_ok, "%s: int8 forward: %s", what, err.msg);
        for (int i = 0; r_ok && i < rows * V; i++) {
            double d = fabs(lp[i] - m->logits[i]);
            worst_lib8 = fmax(worst_lib8, d);
            nvals++;
            nclose += d <= ATOL + RTOL * fabs(m->logits[i]);
        }
        free(lp);
        for (int f = 0; f < nf; f++)
            free(fids[f]);
    }
    /* The same rule in the same order: only the float rounding of the
     * pointwise functions differs (the library's vectorised e^x may fuse
     * multiply-adds), which could move an activation across a rounding
     * boundary of q_a only when it lies within an ulp of one */
    CHECK(nvals > 0 && nclose == nvals, "%s: int8 log-probabilities within %g + %g|want| of the "
                                        "library's int8 (%ld of %ld; worst %g)",
          what, ATOL, RTOL, nclose, nvals, worst_lib8);
    printf("ok %s: int8 runtime vs the library's int8 %.2g\n", what, worst_lib8);
    lstm_embed_host_free(lhost);
    lstm_st_free(lst);

    /* bad calls */
    lstm_embed_ctx ctx;
    void *arena = make_ctx(&ctx, em, TMAX);
    if (arena) {
        int32_t bad[TMAX * MAX_FEATURES] = {0};
        bad[0] = em->embedding[0].rows; /* one past the vocabulary */
        float lg[4096];
        int r = tc->task == LSTM_TASK_LM ? lstm_embed_lm_step(&ctx, bad[0], lg)
              : tc->task == LSTM_TASK_CLASSIFY ? lstm_embed_classify(&ctx, bad, 1, lg)
                                               : lstm_embed_tag(&ctx, bad, 1, lg, NULL);
        CHECK(r == LSTM_EMBED_ERR_ARG, "%s: an id outside the vocabulary is refused (%d)", what, r);
        if (tc->task != LSTM_TASK_LM) {
            bad[0] = 1;
            r = tc->task == LSTM_TASK_CLASSIFY ? lstm_embed_classify(&ctx, bad, 0, lg)
                                               : lstm_embed_tag(&ctx, bad, 0, lg, NULL);
            CHECK(r == LSTM_EMBED_ERR_ARG, "%s: a length of 0 is refused", what);
            if (tc->bidirectional && (tc->layers > 1 || tc->task == LSTM_TASK_TAG)) {
                r = tc->task == LSTM_TASK_CLASSIFY ? lstm_embed_classify(&ctx, bad, TMAX + 1, lg)
                                                   : lstm_embed_tag(&ctx, bad, TMAX + 1, lg, NULL);
                CHECK(r == LSTM_EMBED_ERR_ARG, "%s: a length beyond max_steps is refused", what);
            }
        }
        size_t need = lstm_embed_arena_size(em, TMAX);
        CHECK(lstm_embed_init(&ctx, em, TMAX, arena, need - sizeof(float)) == LSTM_EMBED_ERR_ARENA,
              "%s: an arena one float short is refused", what);
        free(arena);
    }
    lstm_embed_host_free(host), lstm_embed_host_free(qhost), lstm_embed_host_free(dhost);
    lstm_st_free(st), lstm_st_free(qst), lstm_st_free(dst);
    lstm_model_free(m);
    lstm_dataset_free(ds);
}

/* A model file with a bad int8 value is refused, naming the tensor. */
static void test_bad_files(void) {
    lstm_error err;
    lstm_st_writer *w = lstm_st_writer_create();
    int64_t s2[2] = {8, 3}, s1[1] = {8}, sh[2] = {8, 2};
    int8_t q[24] = {0};
    float scale[8] = {1, 1, 1, 1, 1, 1, 1, 1}, hh[16] = {0};
    q[5] = -128;
    lstm_st_writer_add(w, "weight_ih_l0.int8", LSTM_DT_I8, 2, s2, q, &err);
    lstm_st_writer_add(w, "weight_ih_l0.scale", LSTM_DT_F32, 1, s1, scale, &err);
    lstm_st_writer_add(w, "weight_hh_l0", LSTM_DT_F32, 2, sh, hh, &err);
    void *buf;
    size_t len;
    lstm_st_writer_to_memory(w, &buf, &len, &err);
    lstm_st *st = lstm_st_from_memory(buf, len, "bad.safetensors", &err);
    free(buf);
    lstm_embed_host *h = st ? lstm_embed_host_load(st, &err) : NULL;
    CHECK(!h && err.status == LSTM_ERR_FORMAT && strstr(err.msg, "weight_ih_l0.int8[5]"),
          "-128 refused: %s", err.msg);
    lstm_embed_host_free(h);
    lstm_st_free(st);
    lstm_st_writer_free(w);
    /* a reverse LSTM (lstm.reverse): the runtime walks forward only */
    st = lstm_st_open("tests/fixtures/onnx_lstm_reverse.safetensors", &err);
    h = st ? lstm_embed_host_load(st, &err) : NULL;
    CHECK(st && !h && err.status == LSTM_ERR_UNSUPPORTED && strstr(err.msg, "lstm.reverse"),
          "a reverse LSTM refused: %s", err.msg);
    lstm_embed_host_free(h);
    lstm_st_free(st);
    /* ONNX's cell options: not in the runtime's cell, so refused rather
     * than run (or exported) as the plain cell */
    static const char *const opts[] = {"onnx_lstm_peephole", "onnx_lstm_clip",
                                       "onnx_lstm_input_forget"};
    for (int i = 0; i < 3; i++) {
        char path[128];
        snprintf(path, sizeof path, "tests/fixtures/%s.safetensors", opts[i]);
        st = lstm_st_open(path, &err);
        h = st ? lstm_embed_host_load(st, &err) : NULL;
        CHECK(st && !h && err.status == LSTM_ERR_UNSUPPORTED && strstr(err.msg, "cell options"),
              "%s: refused: %s", opts[i], err.msg);
        lstm_embed_host_free(h);
        lstm_st_free(st);
    }
}

int main(void) {
    test_functions();
    static const char *fixtures[] = {
        "basic", "h0", "t1", "b1", "nobias", "batch_first", "lengths", "lengths_h0",
        "lengths_full", "bidir", "bidir_h0_lengths", "proj", "proj_lengths", "layers2",
        "layers3", "layers2_bidir", "layers2_bidir_proj_lengths_h0", "layers3_bidir_bf_lengths",
        "layers2_nobias_bidir_proj_bf", "layers2_bidir_t1_b1", "h20_proj7", "tails"};
    for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++) {
        char path[256];
        snprintf(path, sizeof path, "tests/fixtures/lstm_%s.safetensors", fixtures[i]);
        run_fixture(path, 0);
        run_fixture(path, 1);
    }
    test_int8_rule();
    lstm_error err;
    lstm_ctx *lctx = lstm_ctx_create(NULL, &err);
    static const task_case cases[] = {
        {LSTM_TASK_LM, 2, 12, 0, 0, 0, 0, 0, 0},       {LSTM_TASK_LM, 1, 10, 4, 0, 0, 0, 0, 0},
        {LSTM_TASK_CLASSIFY, 1, 12, 0, 0, 0, 0, 0, 0}, {LSTM_TASK_CLASSIFY, 2, 10, 5, 1, 0, 0, 0, 0},
        {LSTM_TASK_CLASSIFY, 1, 11, 0, 1, 0, 0, 0, 0}, {LSTM_TASK_CLASSIFY, 3, 8, 0, 1, 0, 0, 0, 0},
        {LSTM_TASK_TAG, 2, 12, 0, 0, 1, 0, 0, 0},      {LSTM_TASK_TAG, 1, 10, 0, 1, 1, 0, 0, 0},
        {LSTM_TASK_TAG, 2, 9, 4, 1, 0, 0, 0, 0},
        /* the most features a tagger has: suffix1..5, shape, prefix1..4 */
        {LSTM_TASK_TAG, 1, 8, 0, 1, 1, 5, 4, 0}, {LSTM_TASK_TAG, 1, 9, 0, 0, 1, 4, 2, 0},
        /* a CRF over the tags: the runtime's marginals against the library's */
        {LSTM_TASK_TAG, 1, 8, 0, 1, 1, 5, 4, 1}, {LSTM_TASK_TAG, 2, 9, 4, 0, 0, 0, 0, 1},
    };
    for (size_t i = 0; lctx && i < sizeof cases / sizeof *cases; i++)
        test_task(&cases[i], lctx);
    lstm_ctx_free(lctx);
    test_bad_files();
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed != 0;
}
