/* rnn.c - the public LSTM module: configuration, PyTorch's tensor names,
 * argument checks, weight packing; the numbers are lstm_core.c's. */
#include "internal.h"
#include "nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { W_IH, W_HH, B_IH, B_HH, W_HR, W_PEEP, NW }; /* tensors of one layer and direction */

typedef struct {
    uint64_t version;    /* lstm_params_version */
    const nn_kernels *k; /* NULL: nothing */
} weights_stamp;

struct lstm_rnn {
    lstm_rnn_config cfg;
    nn_lstm_dims dims;
    lstm_params *p;       /* the parameters the module was declared in (not owned) */
    int *idx;             /* (L*D, NW) indices into p, -1 when absent */
    nn_lstm_weights *w;   /* (L*D) pointers, refreshed before each use */
    nn_lstm_ws *ws;       /* activations, and the weights packed for the kernels */
    weights_stamp packed; /* what ws's packed weights were made from */
    int pack_step_B;      /* rows the step scratch holds; 0: step not packed */
    /* the forward that backward will follow */
    int fwd_valid;
    weights_stamp fwd;
};

/* Which weights and kernels a forward ran with, or packed copies were made
 * for. Every write of p's values through the library bumps p's version
 * (params.c), and stamp() is the one place the module reads it: packed
 * weights whose stamp differs from the current one are packed again, and a
 * backward whose forward's stamp differs is refused. (The core's
 * workspace only notes, when it packs for the forward, that its backward
 * copies must follow.) */
static weights_stamp stamp(const lstm_params *p, const nn_ctx *nc) {
    return (weights_stamp){lstm_params_version(p), nc->k};
}

static int same_stamp(weights_stamp a, weights_stamp b) {
    return a.version == b.version && a.k == b.k;
}

lstm_rnn_config lstm_rnn_config_default(int input_size, int hidden_size) {
    lstm_rnn_config c = {0};
    c.input_size = input_size;
    c.hidden_size = hidden_size;
    c.num_layers = 1;
    c.bias = 1;
    return c;
}

/* Sizes stay far below the int and size_t limits of the kernels' arithmetic. */
#define MAX_SIZE (1 << 20)

lstm_status lstm_rnn_config_check(const lstm_rnn_config *c, lstm_error *err) {
    if (c->input_size < 1 || c->input_size > MAX_SIZE)
        return lstm_fail(err, LSTM_ERR_INVALID, "input_size %d is not in [1, %d]", c->input_size,
                         MAX_SIZE);
    if (c->hidden_size < 1 || c->hidden_size > MAX_SIZE)
        return lstm_fail(err, LSTM_ERR_INVALID, "hidden_size %d is not in [1, %d]",
                         c->hidden_size, MAX_SIZE);
    if (c->num_layers < 1 || c->num_layers > 1024)
        return lstm_fail(err, LSTM_ERR_INVALID, "num_layers %d is not in [1, 1024]",
                         c->num_layers);
    if (c->proj_size < 0 || c->proj_size >= c->hidden_size)
        return lstm_fail(err, LSTM_ERR_INVALID,
                         "proj_size %d must be 0 or in [1, hidden_size) = [1, %d)", c->proj_size,
                         c->hidden_size);
    if (!(c->dropout >= 0 && c->dropout < 1))
        return lstm_fail(err, LSTM_ERR_INVALID, "dropout %g is not in [0, 1)", (double)c->dropout);
    if ((c->bias | 1) != 1 || (c->batch_first | 1) != 1 || (c->bidirectional | 1) != 1)
        return lstm_fail(err, LSTM_ERR_INVALID, "bias, batch_first and bidirectional are 0 or 1");
    if ((c->peephole | 1) != 1 || (c->input_forget | 1) != 1 || (c->reverse | 1) != 1)
        return lstm_fail(err, LSTM_ERR_INVALID, "peephole, input_forget and reverse are 0 or 1");
    if (c->reverse && c->bidirectional)
        return lstm_fail(err, LSTM_ERR_INVALID,
                         "reverse and bidirectional exclude each other: reverse is one direction "
                         "walking back in time");
    if (!(c->clip >= 0 && c->clip <= 1e30f))
        return lstm_fail(err, LSTM_ERR_INVALID, "clip %g is not 0 (off) or a positive threshold",
                         (double)c->clip);
    return lstm_ok(err);
}

static const char *wname(int kind) {
    static const char *const names[NW] = {"weight_ih_l", "weight_hh_l", "bias_ih_l",
                                          "bias_hh_l", "weight_hr_l", "weight_peephole_l"};
    return names[kind];
}

/* The safetensors metadata keys of the options a state_dict's tensor names
 * cannot show. Other "lstm." keys are those of the task model files
 * (src/tasks/model_file.c, train.c), which a state_dict may sit in, and
 * the int8 form's (lstm_params_write_int8). */
#define META_CLIP "lstm.clip"
#define META_INPUT_FORGET "lstm.input_forget"
#define META_REVERSE "lstm.reverse"

static int model_file_key(const char *k) {
    static const char *const keys[] = {"lstm.version", "lstm.task",  "lstm.config",
                                       "lstm.labels",  "lstm.train", "lstm.quantization"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (strcmp(k, keys[i]) == 0)
            return 1;
    return strncmp(k, "lstm.vocab.", 11) == 0;
}

/* Sets cfg's clip, input_forget and reverse from st's metadata. */
static lstm_status config_read_meta(lstm_rnn_config *cfg, const lstm_st *st, lstm_error *err) {
    const char *file = lstm_st_name(st);
    for (size_t i = 0; i < lstm_st_meta_count(st); i++) {
        const char *k, *v;
        lstm_st_meta_at(st, i, &k, &v);
        if (strncmp(k, "lstm.", 5) != 0 || model_file_key(k))
            continue;
        char *end = NULL;
        if (strcmp(k, META_CLIP) == 0) {
            double x = strtod(v, &end);
            if (end == v || *end || !(x >= 0 && x <= 1e30))
                return lstm_fail(err, LSTM_ERR_FORMAT,
                                 "%s: metadata %s = \"%s\": expected a number >= 0 (0: no clip)",
                                 file, k, v);
            cfg->clip = (float)x;
        } else if (strcmp(k, META_INPUT_FORGET) == 0 || strcmp(k, META_REVERSE) == 0) {
            if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
                return lstm_fail(err, LSTM_ERR_FORMAT, "%s: metadata %s = \"%s\": expected 0 or 1",
                                 file, k, v);
            *(strcmp(k, META_REVERSE) == 0 ? &cfg->reverse : &cfg->input_forget) = v[0] == '1';
        } else
            return lstm_fail(err, LSTM_ERR_FORMAT,
                             "%s: metadata key \"%s\" is not an LSTM option this library knows "
                             "(" META_CLIP ", " META_INPUT_FORGET ", " META_REVERSE ")",
                             file, k);
    }
    return LSTM_OK;
}

lstm_status lstm_rnn_config_write_meta(const lstm_rnn_config *cfg, lstm_st_writer *w,
                                       lstm_error *err) {
    lstm_status s;
    if (cfg->clip > 0) {
        char v[32];
        snprintf(v, sizeof v, "%.9g", (double)cfg->clip); /* reads back as the same float */
        if ((s = lstm_st_writer_meta(w, META_CLIP, v, err)))
            return s;
    }
    if (cfg->input_forget && (s = lstm_st_writer_meta(w, META_INPUT_FORGET, "1", err)))
        return s;
    if (cfg->reverse && (s = lstm_st_writer_meta(w, META_REVERSE, "1", err)))
        return s;
    return lstm_ok(err);
}

/* A weight matrix NAME, or its int8 form NAME.int8 (the same shape). */
static const lstm_st_tensor *find_weight(const lstm_st *st, const char *name) {
    const lstm_st_tensor *t = lstm_st_find(st, name);
    char q[540];
    snprintf(q, sizeof q, "%s.int8", name);
    return t ? t : lstm_st_find(st, q);
}

lstm_status lstm_rnn_find_prefix(const lstm_st *st, char *buf, size_t n, lstm_error *err) {
    const char *suffix = "weight_ih_l0";
    size_t sl = strlen(suffix);
    int found = 0;
    for (size_t i = 0; i < lstm_st_count(st); i++) {
        const char *name = lstm_st_tensor_at(st, i)->name;
        size_t len = strlen(name);
        if (len > 5 && strcmp(name + len - 5, ".int8") == 0) /* a quantized file */
            len -= 5;
        if (len < sl || strncmp(name + len - sl, suffix, sl) != 0)
            continue;
        if (len - sl > 0 && name[len - sl - 1] != '.')
            continue;
        if (found++)
            return lstm_fail(err, LSTM_ERR_INVALID,
                             "%s: more than one LSTM (%s%s and %s); choose one with --prefix",
                             lstm_st_name(st), buf, suffix, name);
        snprintf(buf, n, "%.*s", (int)(len - sl), name);
    }
    if (!found)
        return lstm_fail(err, LSTM_ERR_SHAPE,
                         "%s: no tensor named weight_ih_l0 (with or without a prefix): not an "
                         "nn.LSTM state_dict",
                         lstm_st_name(st));
    return lstm_ok(err);
}

lstm_status lstm_rnn_config_infer(lstm_rnn_config *cfg, const lstm_st *st, const char *prefix,
                                  lstm_error *err) {
    const char *file = lstm_st_name(st);
    char name[512];
    if (!prefix)
        prefix = "";
    snprintf(name, sizeof name, "%sweight_ih_l0", prefix);
    const lstm_st_tensor *t = find_weight(st, name);
    if (!t)
        return lstm_fail(err, LSTM_ERR_SHAPE, "%s: no tensor '%s': not an LSTM state_dict", file,
                         name);
    if (t->ndim != 2 || t->shape[0] % 4 || t->shape[0] < 4 || t->shape[1] < 1 ||
        t->shape[0] / 4 > MAX_SIZE || t->shape[1] > MAX_SIZE)
        return lstm_fail(err, LSTM_ERR_SHAPE, "%s: '%s' must be (4*hidden_size, input_size)", file,
                         name);
    lstm_rnn_config c = lstm_rnn_config_default((int)t->shape[1], (int)(t->shape[0] / 4));
    c.num_layers = 0;
    do {
        c.num_layers++;
        snprintf(name, sizeof name, "%sweight_ih_l%d", prefix, c.num_layers);
    } while (c.num_layers < 1024 && find_weight(st, name));
    snprintf(name, sizeof name, "%sweight_ih_l0_reverse", prefix);
    c.bidirectional = find_weight(st, name) != NULL;
    snprintf(name, sizeof name, "%sbias_ih_l0", prefix);
    c.bias = lstm_st_find(st, name) != NULL;
    snprintf(name, sizeof name, "%sweight_hr_l0", prefix);
    const lstm_st_tensor *hr = find_weight(st, name);
    if (hr) {
        if (hr->ndim != 2 || hr->shape[1] != c.hidden_size || hr->shape[0] < 1 ||
            hr->shape[0] >= c.hidden_size)
            return lstm_fail(err, LSTM_ERR_SHAPE,
                             "%s: '%s' must be (proj_size, hidden_size) with proj_size < %d",
                             file, name, c.hidden_size);
        c.proj_size = (int)hr->shape[0];
    }
    snprintf(name, sizeof name, "%sweight_peephole_l0", prefix);
    c.peephole = lstm_st_find(st, name) != NULL;
    lstm_status s = config_read_meta(&c, st, err);
    if (s)
        return s;
    if (c.reverse && c.bidirectional)
        return lstm_fail(err, LSTM_ERR_FORMAT,
                         "%s: metadata " META_REVERSE " = \"1\" but the tensors are a "
                         "bidirectional LSTM's (%sweight_ih_l0_reverse)",
                         file, prefix);
    *cfg = c;
    return lstm_rnn_config_check(cfg, err);
}

lstm_rnn *lstm_rnn_create(const lstm_rnn_config *cfg, lstm_params *p, const char *prefix,
                          lstm_error *err) {
    if (lstm_rnn_config_check(cfg, err))
        return NULL;
    if (!prefix)
        prefix = "";
    lstm_rnn *r = calloc(1, sizeof *r);
    int D = cfg->bidirectional ? 2 : 1, LD = cfg->num_layers * D;
    if (!r || !(r->idx = malloc(sizeof(int) * LD * NW)) ||
        !(r->w = calloc((size_t)LD, sizeof *r->w)) || !(r->ws = nn_lstm_ws_create())) {
        lstm_rnn_free(r);
        lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
        return NULL;
    }
    r->cfg = *cfg;
    r->p = p;
    r->dims = (nn_lstm_dims){.I = cfg->input_size, .H = cfg->hidden_size, .P = cfg->proj_size,
                             .L = cfg->num_layers, .D = D, .bias = cfg->bias,
                             .dropout = cfg->dropout, .peephole = cfg->peephole,
                             .clip = cfg->clip, .input_forget = cfg->input_forget,
                             .reverse = cfg->reverse};
    int H = cfg->hidden_size, Ho = nn_lstm_hout(&r->dims);
    for (int l = 0; l < cfg->num_layers; l++)
        for (int d = 0; d < D; d++) {
            int64_t shapes[NW][2] = {{4 * H, nn_lstm_in(&r->dims, l)},
                                     {4 * H, Ho},
                                     {4 * H, 0},
                                     {4 * H, 0},
                                     {cfg->proj_size, H},
                                     {3 * H, 0}};
            int ndims[NW] = {2, 2, 1, 1, 2, 1};
            for (int k = 0; k < NW; k++) {
                int *ix = &r->idx[(l * D + d) * NW + k];
                *ix = -1;
                if ((k == B_IH || k == B_HH) && !cfg->bias)
                    continue;
                if (k == W_HR && !cfg->proj_size)
                    continue;
                if (k == W_PEEP && !cfg->peephole)
                    continue;
                char name[512];
                snprintf(name, sizeof name, "%s%s%d%s", prefix, wname(k), l,
                         d ? "_reverse" : "");
                *ix = lstm_params_declare(p, name, ndims[k], shapes[k], err);
                if (*ix < 0) {
                    lstm_rnn_free(r);
                    return NULL;
                }
            }
        }
    lstm_ok(err);
    return r;
}

void lstm_rnn_free(lstm_rnn *r) {
    if (!r)
        return;
    free(r->idx);
    free(r->w);
    nn_lstm_ws_free(r->ws);
    free(r);
}

const lstm_rnn_config *lstm_rnn_get_config(const lstm_rnn *r) { return &r->cfg; }

void lstm_rnn_reset_parameters(lstm_rnn *r, lstm_params *p, lstm_rng *rng) {
    float k = 1.0f / sqrtf((float)r->cfg.hidden_size);
    for (int i = 0; i < r->dims.L * r->dims.D * NW; i++) {
        if (r->idx[i] < 0)
            continue;
        float *v = lstm_params_data_mut(p, r->idx[i]);
        size_t n = lstm_params_numel(p, r->idx[i]);
        for (size_t j = 0; j < n; j++)
            v[j] = (2 * lstm_rng_uniform(rng) - 1) * k;
    }
}

/* Points the per-direction weight table at p's buffers. */
static lstm_status bind(lstm_rnn *r, lstm_params *p, lstm_error *err) {
    if (p != r->p)
        return lstm_fail(err, LSTM_ERR_INVALID,
                         "the parameters passed are not those the LSTM was created in");
    if (!lstm_params_data(p, r->idx[0]))
        return lstm_fail(err, LSTM_ERR_STATE, "parameters not allocated");
    for (int i = 0; i < r->dims.L * r->dims.D; i++) {
        const int *ix = &r->idx[i * NW];
#define VIEW(k, f) (ix[k] >= 0 ? f(p, ix[k]) : NULL)
        r->w[i] = (nn_lstm_weights){VIEW(W_IH, lstm_params_data), VIEW(W_HH, lstm_params_data),
                                    VIEW(B_IH, lstm_params_data), VIEW(B_HH, lstm_params_data),
                                    VIEW(W_HR, lstm_params_data), VIEW(W_IH, lstm_params_grad),
                                    VIEW(W_HH, lstm_params_grad), VIEW(B_IH, lstm_params_grad),
                                    VIEW(B_HH, lstm_params_grad), VIEW(W_HR, lstm_params_grad),
                                    VIEW(W_PEEP, lstm_params_data), VIEW(W_PEEP, lstm_params_grad),
                                    NULL, NULL, NULL};
#undef VIEW
        /* int8: every weight matrix of the module, or none */
        int failed = 0, f, nq = 0, nw = 0;
        const nn_q8_mat **qs[3] = {&r->w[i].q_ih, &r->w[i].q_hh, &r->w[i].q_hr};
        const int kinds[3] = {W_IH, W_HH, W_HR};
        for (int j = 0; j < 3; j++) {
            *qs[j] = ix[kinds[j]] >= 0 ? lstm_params_q8(p, ix[kinds[j]], &f) : NULL;
            failed |= f;
            nq += *qs[j] != NULL;
            nw += ix[kinds[j]] >= 0;
        }
        if (failed)
            return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory quantizing weights");
        if (nq && (nq != nw || !r->w[0].q_hh))
            return lstm_fail(err, LSTM_ERR_UNSUPPORTED,
                             "'%s': some weight matrices of the LSTM are int8 and others float "
                             "(quantize all of them, or none)",
                             lstm_params_name(p, ix[W_IH]));
    }
    return LSTM_OK;
}

/* Re-packs the weights when they or the kernels changed. */
static lstm_status ensure_packed(lstm_rnn *r, const nn_ctx *nc, lstm_params *p, int step_B,
                                 lstm_error *err) {
    weights_stamp now = stamp(p, nc);
    int fresh = same_stamp(r->packed, now);
    if (step_B > 0) {
        if (fresh && r->pack_step_B >= step_B)
            return LSTM_OK;
        if (nn_lstm_ws_pack_step(r->ws, &r->dims, nc->k, r->w, step_B))
            goto nomem;
        r->pack_step_B = step_B;
    } else {
        if (fresh)
            return LSTM_OK;
        if (nn_lstm_ws_pack(r->ws, &r->dims, nc->k, r->w))
            goto nomem;
        r->pack_step_B = 0;
    }
    r->packed = now;
    return LSTM_OK;
nomem:
    r->packed.k = NULL;
    return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory packing weights");
}

lstm_status lstm_rnn_forward(lstm_rnn *r, lstm_ctx *ctx, lstm_params *p, const lstm_rnn_io *io,
                             int training, lstm_rng *rng, lstm_error *err) {
    lstm_status s;
    r->fwd_valid = 0;
    if (!io || !io->x || !io->y)
        return lstm_fail(err, LSTM_ERR_INVALID, "forward needs x and y");
    if (io->T < 1 || io->B < 1 || (long long)io->T * io->B > (1LL << 30))
        return lstm_fail(err, LSTM_ERR_INVALID, "T = %d and B = %d: each must be >= 1, T*B <= 2^30",
                         io->T, io->B);
    if (io->lengths)
        for (int b = 0; b < io->B; b++)
            if (io->lengths[b] < 1 || io->lengths[b] > io->T)
                return lstm_fail(err, LSTM_ERR_INVALID, "lengths[%d] = %d is not in [1, T = %d]",
                                 b, io->lengths[b], io->T);
    if (training && r->cfg.dropout > 0 && r->cfg.num_layers > 1 && !rng)
        return lstm_fail(err, LSTM_ERR_INVALID, "training with dropout needs an rng");
    if ((s = bind(r, p, err)))
        return s;
    if (training && r->w[0].q_hh)
        return lstm_fail(err, LSTM_ERR_UNSUPPORTED,
                         "an LSTM with int8 weights runs inference only: train the float model "
                         "and quantize it after");
    const nn_ctx *nc = lstm_ctx_nn(ctx);
    if ((s = ensure_packed(r, nc, p, 0, err)))
        return s;
    int direct = !io->lengths && !r->cfg.batch_first;
    if (nn_lstm_ws_reserve(r->ws, &r->dims, io->T, io->B, direct))
        return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory for T = %d, B = %d", io->T, io->B);
    nn_lstm_io nio = {.T = io->T, .B = io->B, .batch_first = r->cfg.batch_first, .x = io->x,
                      .lengths = io->lengths, .h0 = io->h0, .c0 = io->c0, .y = io->y,
                      .hn = io->hn, .cn = io->cn};
    nn_lstm_forward(nc, &r->dims, r->w, r->ws, &nio, training, rng);
    r->fwd_valid = 1;
    r->fwd = r->packed;
    return lstm_ok(err);
}

lstm_status lstm_rnn_backward(lstm_rnn *r, lstm_ctx *ctx, lstm_params *p, const lstm_rnn_grads *g,
                              lstm_error *err) {
    lstm_status s;
    const nn_ctx *nc = lstm_ctx_nn(ctx);
    if (!r->fwd_valid)
        return lstm_fail(err, LSTM_ERR_STATE, "backward needs a forward first (once per forward)");
    if (!same_stamp(stamp(p, nc), r->fwd))
        return lstm_fail(err, LSTM_ERR_STATE,
                         "the weights or the kernels changed between forward and backward");
    if ((s = bind(r, p, err)))
        return s;
    nn_lstm_grads ng = {.dy = g->dy, .dhn = g->dhn, .dcn = g->dcn, .dx = g->dx, .dh0 = g->dh0,
                        .dc0 = g->dc0, .layer_done = g->layer_done, .progress = g->progress,
                        .hook_arg = g->hook_arg};
    int rc = nn_lstm_backward(nc, &r->dims, r->w, r->ws, &ng);
    if (rc == -2)
        return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory packing weights for backward");
    r->fwd_valid = 0;
    if (rc)
        return lstm_fail(err, LSTM_ERR_STATE, "no forward to go back through");
    return lstm_ok(err);
}

lstm_status lstm_rnn_step(lstm_rnn *r, lstm_ctx *ctx, lstm_params *p, int B, const float *x,
                          float *h, float *c, float *y, lstm_error *err) {
    lstm_status s;
    if (r->cfg.bidirectional)
        return lstm_fail(err, LSTM_ERR_UNSUPPORTED,
                         "a bidirectional LSTM cannot run step by step: it needs the future");
    if (r->cfg.reverse)
        return lstm_fail(err, LSTM_ERR_UNSUPPORTED,
                         "a reverse LSTM cannot run step by step: it starts from the last step");
    if (B < 1 || B > (1 << 24) || !x || !h || !c)
        return lstm_fail(err, LSTM_ERR_INVALID, "step needs B >= 1, x, h and c");
    if ((s = bind(r, p, err)))
        return s;
    const nn_ctx *nc = lstm_ctx_nn(ctx);
    if ((s = ensure_packed(r, nc, p, B, err)))
        return s;
    nn_lstm_step(nc, &r->dims, r->ws, B, x, h, c, y);
    return lstm_ok(err);
}
