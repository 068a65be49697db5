/* onnx_export.c - writes lstm's models as ONNX graphs (opset 14) that an
 * ONNX runtime computes as lstm does: one LSTM node per layer, the layers
 * joined by Transpose and Reshape ((T,D,B,H) -> (T,B,D*H)), the layers' Y_h
 * and Y_c concatenated into h_n and c_n; for a task model, Gather per
 * feature and Concat before, and the mean pooling (classify) or the
 * per-position decoder (lm, tag) and a Softmax after, or for a tagger with
 * a CRF its forward-backward as two Scan nodes (crf_graph).
 *
 * What ONNX's LSTM cannot express, and what is done about it:
 *   proj_size (h = W_hr (o * tanh(c))): ONNX's LSTM has no projection and
 *     its recurrence reads the unprojected h, so a projected LSTM cannot be
 *     decomposed into LSTM nodes; export refuses it (an unrolled graph of
 *     MatMul nodes per step would be the only way).
 *   dropout: applies in training only; the exported graph is inference. */
#include "onnx.h"
#include "onnx.pb-c.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { DT_FLOAT = 1, DT_INT32 = 6, DT_INT64 = 7, DT_BOOL = 9 };

/* The graph under construction; every allocation is owned by `owned`. */
typedef struct {
    Onnx__GraphProto g;
    Onnx__GraphProto *cur; /* where node, init and value_info add: g, or a Scan's body */
    void **owned;
    size_t nowned, capowned;
    int failed;
} builder;

static void *own(builder *b, void *p) {
    if (!p) {
        b->failed = 1;
        return NULL;
    }
    if (b->nowned == b->capowned) {
        size_t cap = b->capowned ? b->capowned * 2 : 256;
        void **o = realloc(b->owned, cap * sizeof *o);
        if (!o) {
            free(p);
            b->failed = 1;
            return NULL;
        }
        b->owned = o, b->capowned = cap;
    }
    return b->owned[b->nowned++] = p;
}

static void *alloc(builder *b, size_t n) { return own(b, calloc(1, n ? n : 1)); }

static char *str(builder *b, const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char *s = alloc(b, strlen(buf) + 1);
    if (s)
        strcpy(s, buf);
    return s;
}

/* Appends p to the array *arr of *n pointers (grown by doubling). */
static void push(builder *b, void ***arr, size_t *n, void *p) {
    if (!p || b->failed) {
        b->failed = 1;
        return;
    }
    if ((*n & (*n - 1)) == 0) { /* 0, 1, 2, 4, ...: grow */
        void **a = alloc(b, sizeof(void *) * (*n ? *n * 2 : 1));
        if (!a)
            return;
        if (*n)
            memcpy(a, *arr, sizeof(void *) * *n);
        *arr = a;
    }
    (*arr)[(*n)++] = p;
}

/* An initializer: n values of type dt (FLOAT: float, INT64: int64_t). */
static void init(builder *b, const char *name, int dt, int ndim, const int64_t *dims, const void *data) {
    Onnx__TensorProto *t = alloc(b, sizeof *t);
    if (!t)
        return;
    onnx__tensor_proto__init(t);
    size_t n = 1;
    t->dims = alloc(b, sizeof(int64_t) * (ndim ? ndim : 1));
    if (!t->dims)
        return;
    for (int d = 0; d < ndim; d++)
        n *= (size_t)(t->dims[d] = dims[d]);
    t->n_dims = (size_t)ndim;
    t->has_data_type = 1;
    t->data_type = dt;
    t->name = str(b, "%s", name);
    size_t es = dt == DT_INT64 ? 8 : 4;
    uint8_t *raw = alloc(b, n * es);
    if (!raw)
        return;
    /* raw_data is little-endian */
    for (size_t k = 0; k < n * es; k += es) {
        uint64_t u = 0;
        memcpy(&u, (const uint8_t *)data + k, es);
        for (size_t j = 0; j < es; j++)
            raw[k + j] = (uint8_t)(u >> (8 * j));
    }
    t->has_raw_data = 1;
    t->raw_data.data = raw;
    t->raw_data.len = n * es;
    push(b, (void ***)&b->cur->initializer, &b->cur->n_initializer, t);
}

static void init_ints(builder *b, const char *name, int n, const int64_t *v) {
    int64_t dims[1] = {n};
    init(b, name, DT_INT64, 1, dims, v);
}

static Onnx__NodeProto *node(builder *b, const char *op, const char *name, int nin,
                             const char *const *in, int nout, const char *const *out) {
    Onnx__NodeProto *nd = alloc(b, sizeof *nd);
    if (!nd)
        return NULL;
    onnx__node_proto__init(nd);
    nd->op_type = str(b, "%s", op);
    nd->name = str(b, "%s", name);
    for (int k = 0; k < nin; k++)
        push(b, (void ***)&nd->input, &nd->n_input, str(b, "%s", in[k] ? in[k] : ""));
    for (int k = 0; k < nout; k++)
        push(b, (void ***)&nd->output, &nd->n_output, str(b, "%s", out[k]));
    push(b, (void ***)&b->cur->node, &b->cur->n_node, nd);
    return nd;
}

static Onnx__AttributeProto *attr(builder *b, Onnx__NodeProto *nd, const char *name, int type) {
    Onnx__AttributeProto *a = alloc(b, sizeof *a);
    if (!a || !nd)
        return NULL;
    onnx__attribute_proto__init(a);
    a->name = str(b, "%s", name);
    a->has_type = 1;
    a->type = type;
    push(b, (void ***)&nd->attribute, &nd->n_attribute, a);
    return a;
}

static void attr_i(builder *b, Onnx__NodeProto *nd, const char *name, int64_t v) {
    Onnx__AttributeProto *a = attr(b, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a)
        a->has_i = 1, a->i = v;
}

static void attr_f(builder *b, Onnx__NodeProto *nd, const char *name, float v) {
    Onnx__AttributeProto *a = attr(b, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a)
        a->has_f = 1, a->f = v;
}

static void attr_s(builder *b, Onnx__NodeProto *nd, const char *name, const char *v) {
    Onnx__AttributeProto *a = attr(b, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    if (a)
        a->has_s = 1, a->s.data = (uint8_t *)str(b, "%s", v), a->s.len = strlen(v);
}

static void attr_ints(builder *b, Onnx__NodeProto *nd, const char *name, int n, const int64_t *v) {
    Onnx__AttributeProto *a = attr(b, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    if (!a)
        return;
    a->ints = alloc(b, sizeof(int64_t) * (size_t)n);
    if (a->ints)
        memcpy(a->ints, v, sizeof(int64_t) * (size_t)n), a->n_ints = (size_t)n;
}

/* A GRAPH attribute: g packed (onnx.proto keeps it as bytes). */
static void attr_graph(builder *b, Onnx__NodeProto *nd, const char *name,
                       const Onnx__GraphProto *g) {
    Onnx__AttributeProto *a = attr(b, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH);
    if (!a || b->failed)
        return;
    size_t n = onnx__graph_proto__get_packed_size(g);
    uint8_t *bytes = alloc(b, n);
    if (bytes)
        a->has_g = 1, a->g.data = bytes, a->g.len = onnx__graph_proto__pack(g, bytes);
}

/* A graph input or output: element type, and dims (a name for a symbolic
 * dimension, else its size). */
static void value_info(builder *b, int output, const char *name, int dt, int ndim,
                       const char *const *sym, const int64_t *size) {
    Onnx__ValueInfoProto *vi = alloc(b, sizeof *vi);
    Onnx__TypeProto *tp = alloc(b, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = alloc(b, sizeof *tt);
    Onnx__TensorShapeProto *sp = alloc(b, sizeof *sp);
    if (!vi || !tp || !tt || !sp)
        return;
    onnx__value_info_proto__init(vi);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sp);
    for (int d = 0; d < ndim; d++) {
        Onnx__TensorShapeProto__Dimension *dim = alloc(b, sizeof *dim);
        if (!dim)
            return;
        onnx__tensor_shape_proto__dimension__init(dim);
        if (sym[d]) {
            dim->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dim->dim_param = str(b, "%s", sym[d]);
        } else {
            dim->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dim->dim_value = size[d];
        }
        push(b, (void ***)&sp->dim, &sp->n_dim, dim);
    }
    tt->has_elem_type = 1;
    tt->elem_type = dt;
    tt->shape = sp;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    vi->name = str(b, "%s", name);
    vi->type = tp;
    if (output)
        push(b, (void ***)&b->cur->output, &b->cur->n_output, vi);
    else
        push(b, (void ***)&b->cur->input, &b->cur->n_input, vi);
}

/* nn.LSTM's (4H, cols) in gate order i, f, g, o as ONNX's i, o, f, c rows,
 * written at dst. */
static void onnx_gates(float *dst, const float *src, int H, int cols) {
    static const int from[4] = {0, 3, 1, 2}; /* ONNX gate j is nn.LSTM gate from[j] */
    for (int j = 0; j < 4; j++)
        memcpy(dst + (size_t)j * H * cols, src + (size_t)from[j] * H * cols,
               sizeof(float) * (size_t)H * cols);
}

/* The LSTM stack of rnn (weights in p) from sequence `x` (T,B,I) to
 * `y` (T,B,D*H), with h_n and c_n as graph outputs named hn, cn. h0, c0,
 * lens: graph input names, or NULL. */
static lstm_status lstm_stack(builder *b, const lstm_rnn_config *cfg, lstm_params *p,
                              const char *prefix, const char *x, const char *y, const char *h0,
                              const char *c0, const char *lens, const char *hn, const char *cn,
                              lstm_error *err) {
    int L = cfg->num_layers, D = cfg->bidirectional ? 2 : 1, H = cfg->hidden_size;
    if (cfg->proj_size)
        return lstm_fail(err, LSTM_ERR_UNSUPPORTED,
                         "proj_size %d: ONNX's LSTM has no projection (its recurrence reads the unprojected h), so a projected LSTM cannot be exported",
                         cfg->proj_size);
    const char *in = x;
    const char **yh = calloc((size_t)L, sizeof *yh), **yc = calloc((size_t)L, sizeof *yc);
    size_t maxcols = (size_t)(cfg->input_size > D * H ? cfg->input_size : D * H);
    float *buf = malloc(sizeof(float) * (size_t)D * 8 * H * (maxcols > (size_t)H ? maxcols : (size_t)H + 2));
    if (!yh || !yc || !buf) {
        free(yh), free(yc), free(buf);
        return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
    }
    int64_t perm[4] = {0, 2, 1, 3}, shape3[3] = {0, 0, -1}, axes0[1] = {0};
    init_ints(b, "reshape_tb_dh", 3, shape3);
    if (h0 || c0)
        init_ints(b, "axes_0", 1, axes0);
    for (int k = 0; k < L && !b->failed; k++) {
        int cols = k == 0 ? cfg->input_size : D * H;
        const char *names[4] = {"weight_ih_l%d%s", "weight_hh_l%d%s", "bias_ih_l%d%s", "bias_hh_l%d%s"};
        char tn[300];
        /* W (D,4H,I), R (D,4H,H), B (D,8H), P (D,3H) */
        for (int w = 0; w < 2; w++) {
            int c = w == 0 ? cols : H;
            for (int d = 0; d < D; d++) {
                snprintf(tn, sizeof tn, "%s", prefix);
                snprintf(tn + strlen(tn), sizeof tn - strlen(tn), names[w], k, d ? "_reverse" : "");
                onnx_gates(buf + (size_t)d * 4 * H * c, lstm_params_data(p, lstm_params_find(p, tn)), H, c);
            }
            int64_t dims[3] = {D, 4 * (int64_t)H, c};
            init(b, str(b, "%s_l%d", w ? "R" : "W", k), DT_FLOAT, 3, dims, buf);
        }
        int has_b = cfg->bias;
        if (has_b) {
            for (int d = 0; d < D; d++)
                for (int w = 0; w < 2; w++) {
                    snprintf(tn, sizeof tn, "%s", prefix);
                    snprintf(tn + strlen(tn), sizeof tn - strlen(tn), names[2 + w], k, d ? "_reverse" : "");
                    onnx_gates(buf + (size_t)d * 8 * H + (size_t)w * 4 * H,
                               lstm_params_data(p, lstm_params_find(p, tn)), H, 1);
                }
            int64_t dims[2] = {D, 8 * (int64_t)H};
            init(b, str(b, "B_l%d", k), DT_FLOAT, 2, dims, buf);
        }
        if (cfg->peephole) {
            /* weight_peephole is p_i, p_f, p_o; ONNX's P is p_i, p_o, p_f */
            for (int d = 0; d < D; d++) {
                snprintf(tn, sizeof tn, "%sweight_peephole_l%d%s", prefix, k, d ? "_reverse" : "");
                const float *src = lstm_params_data(p, lstm_params_find(p, tn));
                float *dst = buf + (size_t)d * 3 * H;
                memcpy(dst, src, sizeof(float) * H);
                memcpy(dst + H, src + 2 * H, sizeof(float) * H);
                memcpy(dst + 2 * H, src + H, sizeof(float) * H);
            }
            int64_t dims[2] = {D, 3 * (int64_t)H};
            init(b, str(b, "P_l%d", k), DT_FLOAT, 2, dims, buf);
        }
        const char *ih = NULL, *ic = NULL;
        if (h0 || c0) {
            int64_t lo[1] = {(int64_t)k * D}, hi[1] = {(int64_t)(k + 1) * D};
            init_ints(b, str(b, "rows_l%d_begin", k), 1, lo);
            init_ints(b, str(b, "rows_l%d_end", k), 1, hi);
            for (int s = 0; s < 2; s++) {
                const char *src = s ? c0 : h0;
                if (!src)
                    continue;
                const char *o = str(b, "%s_l%d", s ? "initial_c" : "initial_h", k);
                const char *sin[4] = {src, str(b, "rows_l%d_begin", k), str(b, "rows_l%d_end", k), "axes_0"};
                node(b, "Slice", str(b, "slice_%s_l%d", s ? "c0" : "h0", k), 4, sin, 1, &o);
                *(s ? &ic : &ih) = o;
            }
        }
        const char *lin[8] = {in, str(b, "W_l%d", k), str(b, "R_l%d", k), has_b ? str(b, "B_l%d", k) : "",
                              lens ? lens : "", ih ? ih : "", ic ? ic : "",
                              cfg->peephole ? str(b, "P_l%d", k) : ""};
        int nin = cfg->peephole ? 8 : ic ? 7 : ih ? 6 : lens ? 5 : has_b ? 4 : 3;
        const char *lout[3] = {str(b, "Y_l%d", k), yh[k] = str(b, "Y_h_l%d", k), yc[k] = str(b, "Y_c_l%d", k)};
        Onnx__NodeProto *nd = node(b, "LSTM", str(b, "lstm_l%d", k), nin, lin, 3, lout);
        attr_i(b, nd, "hidden_size", H);
        if (D == 2)
            attr_s(b, nd, "direction", "bidirectional");
        else if (cfg->reverse)
            attr_s(b, nd, "direction", "reverse");
        if (cfg->clip > 0)
            attr_f(b, nd, "clip", cfg->clip);
        if (cfg->input_forget)
            attr_i(b, nd, "input_forget", 1);
        /* (T,D,B,H) -> (T,B,D,H) -> (T,B,D*H) */
        const char *tin = lout[0], *tout = str(b, "Y_l%d_tbdh", k);
        attr_ints(b, node(b, "Transpose", str(b, "transpose_l%d", k), 1, &tin, 1, &tout), "perm", 4, perm);
        const char *rin[2] = {tout, "reshape_tb_dh"}, *rout = k == L - 1 ? y : str(b, "X_l%d", k + 1);
        node(b, "Reshape", str(b, "reshape_l%d", k), 2, rin, 1, &rout);
        in = rout;
    }
    for (int s = 0; s < 2; s++) {
        const char *o = s ? cn : hn;
        Onnx__NodeProto *nd = node(b, L > 1 ? "Concat" : "Identity", str(b, "%s", s ? "concat_c_n" : "concat_h_n"),
                                   L, s ? yc : yh, 1, &o);
        if (L > 1)
            attr_i(b, nd, "axis", 0);
    }
    free(yh), free(yc), free(buf);
    return b->failed ? lstm_fail(err, LSTM_ERR_NOMEM, "out of memory") : LSTM_OK;
}

/* Reads tensor `name` of st as float (numel values) into a malloc'd array. */
static float *read_f32(const lstm_st *st, const char *name, size_t numel, lstm_error *err) {
    const lstm_st_tensor *t = lstm_st_find(st, name);
    if (!t || t->numel != numel) {
        lstm_fail(err, LSTM_ERR_SHAPE, "%s: tensor '%s' %s", lstm_st_name(st), name,
                  t ? "has the wrong size" : "is missing");
        return NULL;
    }
    float *v = malloc(sizeof(float) * (numel ? numel : 1));
    if (!v) {
        lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (lstm_st_read_f32(st, t, v, numel, err)) {
        free(v);
        return NULL;
    }
    return v;
}

/* A Scan's body: a graph of its own, built in place of b's (b owns it). */
static Onnx__GraphProto *body_begin(builder *b, const char *name, Onnx__GraphProto **saved) {
    Onnx__GraphProto *g = alloc(b, sizeof *g);
    *saved = b->cur;
    if (!g)
        return NULL;
    onnx__graph_proto__init(g);
    g->name = str(b, "%s", name);
    b->cur = g;
    return g;
}

/* The tagger's CRF (docs/DESIGN.md, "The tagger's CRF") over the decoder's
 * scores `emissions` (T,B,K): probs (T,B,K) = P(y_t = k | x), each word's
 * marginal, from the forward-backward algorithm in logs, and 0 past a
 * sentence's length (where lstm writes log 0). Two Scan nodes (opset 11's
 * form), each step a ReduceLogSumExp over (B,K,K):
 *   alpha_0 = start + e_0, alpha_t = logsumexp_i(alpha_{t-1,i} + trans_ij) + e_t
 *     (kept as it is from t = length on);
 *   beta_{length-1} = end, beta_t = logsumexp_j(trans_ij + e_{t+1,j} + beta_{t+1,j});
 *   P(y_t = k) = exp(alpha_t + beta_t - log Z) = softmax_k(alpha_t + beta_t).
 * Each alpha_t and beta_t is shifted by its maximum over k as it is made,
 * as lstm_crf scales them: unshifted, they grow with the sentence (to
 * thousands over a hundred words), and float's steps at that size put
 * 6.5e-4 into a marginal of 0.94 (139 words); the softmax takes the
 * shifts out, so log Z is never needed. This is lstm_crf's log-space reference's recursion, which
 * needs no bound on the parameters. */
static lstm_status crf_graph(builder *b, const lstm_st *st, int K, const char *emissions,
                             const char *probs, lstm_error *err) {
    static const char *names[3] = {"crf.transitions", "crf.start_transitions",
                                   "crf.end_transitions"};
    for (int i = 0; i < 3; i++) {
        const lstm_st_tensor *t = lstm_st_find(st, names[i]);
        int ok = t && t->ndim == (i ? 1 : 2) && t->shape[0] == K && (i || t->shape[1] == K);
        if (!ok)
            return lstm_fail(err, LSTM_ERR_SHAPE, "%s: no %s of (%d%s)", lstm_st_name(st),
                             names[i], K, i ? "" : str(b, ", %d", K));
        float *v = read_f32(st, names[i], t->numel, err);
        if (!v)
            return err->status;
        init(b, names[i], DT_FLOAT, t->ndim, t->shape, v);
        free(v);
    }
    int64_t zero = 0, one = 1, ax1 = 1, ax2 = 2;
    float zero_f = 0;
    init(b, "crf.zero", DT_INT64, 0, NULL, &zero);
    init(b, "crf.one", DT_INT64, 0, NULL, &one);
    init(b, "crf.zero_float", DT_FLOAT, 0, NULL, &zero_f);
    init_ints(b, "crf.axis1", 1, &ax1);
    init_ints(b, "crf.axis2", 1, &ax2);

    /* the masks: positions t (T,1) against the lengths (B) */
    const char *shape = "crf.shape", *T = "crf.T", *pos = "crf.positions", *pos1 = "crf.positions1";
    node(b, "Shape", "crf_shape", 1, &emissions, 1, &shape);
    attr_i(b, node(b, "Gather", "crf_steps", 2, (const char *[2]){shape, "crf.zero"}, 1, &T),
           "axis", 0);
    const char *range = "crf.range", *len = "crf.lengths", *lengths = "lengths";
    node(b, "Range", "crf_range", 3, (const char *[3]){"crf.zero", T, "crf.one"}, 1, &range);
    node(b, "Unsqueeze", "crf_positions", 2, (const char *[2]){range, "crf.axis1"}, 1, &pos);
    node(b, "Add", "crf_positions1", 2, (const char *[2]){pos, "crf.one"}, 1, &pos1);
    attr_i(b, node(b, "Cast", "crf_lengths", 1, &lengths, 1, &len), "to", DT_INT64);
    const char *valid = "crf.valid", *valid3 = "crf.valid3", *vnext = "crf.valid_next",
               *vnext3 = "crf.valid_next3", *first = "crf.first", *first3 = "crf.first3";
    node(b, "Less", "crf_valid", 2, (const char *[2]){pos, len}, 1, &valid);
    node(b, "Unsqueeze", "crf_valid3", 2, (const char *[2]){valid, "crf.axis2"}, 1, &valid3);
    node(b, "Less", "crf_valid_next", 2, (const char *[2]){pos1, len}, 1, &vnext);
    node(b, "Unsqueeze", "crf_valid_next3", 2, (const char *[2]){vnext, "crf.axis2"}, 1, &vnext3);
    node(b, "Equal", "crf_first", 2, (const char *[2]){pos, "crf.zero"}, 1, &first);
    node(b, "Unsqueeze", "crf_first3", 2, (const char *[2]){first, "crf.axis2"}, 1, &first3);
    /* any (B,K) of finite values starts each Scan's state: e_0 */
    const char *e0 = "crf.e0";
    attr_i(b, node(b, "Gather", "crf_e0", 2, (const char *[2]){emissions, "crf.zero"}, 1, &e0),
           "axis", 0);

    const char *bk[2] = {"B", NULL}, *b1[2] = {"B", NULL}, *one1[2] = {NULL, NULL};
    int64_t sbk[2] = {0, K}, sb1[2] = {0, 1}, s11[2] = {1, 1};
    Onnx__GraphProto *saved;
    /* forward: state alpha (B,K); per step e_t (B,K), first_t (1,1), valid_t (B,1) */
    Onnx__GraphProto *fw = body_begin(b, "crf_forward", &saved);
    value_info(b, 0, "fw.alpha_prev", DT_FLOAT, 2, bk, sbk);
    value_info(b, 0, "fw.e", DT_FLOAT, 2, bk, sbk);
    value_info(b, 0, "fw.first", DT_BOOL, 2, one1, s11);
    value_info(b, 0, "fw.valid", DT_BOOL, 2, b1, sb1);
    const char *au = "fw.alpha_column", *fs = "fw.scores", *fr = "fw.summed", *fw_ = "fw.from",
               *fa = "fw.alpha_new", *fal = "fw.alpha", *fout = "fw.alpha_out";
    node(b, "Unsqueeze", "fw_column", 2, (const char *[2]){"fw.alpha_prev", "crf.axis2"}, 1, &au);
    node(b, "Add", "fw_scores", 2, (const char *[2]){au, "crf.transitions"}, 1, &fs);
    Onnx__NodeProto *r = node(b, "ReduceLogSumExp", "fw_logsumexp", 1, &fs, 1, &fr);
    attr_ints(b, r, "axes", 1, &ax1);
    attr_i(b, r, "keepdims", 0);
    node(b, "Where", "fw_start", 3, (const char *[3]){"fw.first", "crf.start_transitions", fr}, 1,
         &fw_);
    node(b, "Add", "fw_emit", 2, (const char *[2]){fw_, "fw.e"}, 1, &fa);
    const char *fm = "fw.max", *fh = "fw.alpha_shifted";
    r = node(b, "ReduceMax", "fw_max", 1, &fa, 1, &fm);
    attr_ints(b, r, "axes", 1, &ax1);
    node(b, "Sub", "fw_shift", 2, (const char *[2]){fa, fm}, 1, &fh);
    node(b, "Where", "fw_keep", 3, (const char *[3]){"fw.valid", fh, "fw.alpha_prev"}, 1, &fal);
    node(b, "Identity", "fw_out", 1, &fal, 1, &fout);
    value_info(b, 1, fal, DT_FLOAT, 2, bk, sbk);
    value_info(b, 1, fout, DT_FLOAT, 2, bk, sbk);
    b->cur = saved;

    /* backward, from the end: state e_{t+1} + beta_{t+1} (B,K); per step
     * e_t (B,K), valid_next_t (B,1) */
    Onnx__GraphProto *bw = body_begin(b, "crf_backward", &saved);
    value_info(b, 0, "bw.next", DT_FLOAT, 2, bk, sbk);
    value_info(b, 0, "bw.e", DT_FLOAT, 2, bk, sbk);
    value_info(b, 0, "bw.valid_next", DT_BOOL, 2, b1, sb1);
    const char *nu = "bw.next_row", *bs = "bw.scores", *br = "bw.summed", *beta = "bw.beta",
               *bn = "bw.next_new";
    node(b, "Unsqueeze", "bw_row", 2, (const char *[2]){"bw.next", "crf.axis1"}, 1, &nu);
    node(b, "Add", "bw_scores", 2, (const char *[2]){"crf.transitions", nu}, 1, &bs);
    r = node(b, "ReduceLogSumExp", "bw_logsumexp", 1, &bs, 1, &br);
    attr_ints(b, r, "axes", 1, &ax2);
    attr_i(b, r, "keepdims", 0);
    const char *bb = "bw.beta_unshifted", *bm = "bw.max";
    node(b, "Where", "bw_end", 3, (const char *[3]){"bw.valid_next", br, "crf.end_transitions"}, 1,
         &bb);
    r = node(b, "ReduceMax", "bw_max", 1, &bb, 1, &bm);
    attr_ints(b, r, "axes", 1, &ax1);
    node(b, "Sub", "bw_shift", 2, (const char *[2]){bb, bm}, 1, &beta);
    node(b, "Add", "bw_emit", 2, (const char *[2]){"bw.e", beta}, 1, &bn);
    value_info(b, 1, bn, DT_FLOAT, 2, bk, sbk);
    value_info(b, 1, beta, DT_FLOAT, 2, bk, sbk);
    b->cur = saved;
    if (b->failed || !fw || !bw)
        return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");

    const char *fouts[2] = {"crf.alpha_last", "crf.alpha"};
    Onnx__NodeProto *sc =
        node(b, "Scan", "crf_forward", 4, (const char *[4]){e0, emissions, first3, valid3}, 2, fouts);
    attr_graph(b, sc, "body", fw);
    attr_i(b, sc, "num_scan_inputs", 3);
    const char *bouts[2] = {"crf.next_first", "crf.beta"};
    sc = node(b, "Scan", "crf_backward", 3, (const char *[3]){e0, emissions, vnext3}, 2, bouts);
    attr_graph(b, sc, "body", bw);
    attr_i(b, sc, "num_scan_inputs", 2);
    int64_t rev[2] = {1, 1};
    attr_ints(b, sc, "scan_input_directions", 2, rev);
    attr_ints(b, sc, "scan_output_directions", 1, rev);

    /* each (t,b) of alpha and beta is shifted by its own constant, which
     * the softmax over k takes out: P(y_t = k) = softmax_k(alpha_t + beta_t) */
    const char *ab = "crf.alpha_beta", *pm = "crf.marginals";
    node(b, "Add", "crf_alpha_beta", 2, (const char *[2]){"crf.alpha", "crf.beta"}, 1, &ab);
    attr_i(b, node(b, "Softmax", "crf_marginals", 1, &ab, 1, &pm), "axis", -1);
    node(b, "Where", "crf_past_length", 3, (const char *[3]){valid3, pm, "crf.zero_float"}, 1,
         &probs);
    return LSTM_OK;
}

/* A task model (lstm train): inputs ids.<feature> (T,B) int64 per feature
 * and lengths (B) int32, [h0, c0 with --state]; Gather per feature, Concat,
 * the LSTM stack; classify: the mean over the real steps (ReduceSum over T
 * of Y, which is zero past each length, divided by the length), Gemm,
 * Softmax: probs (B,C); lm, tag: MatMul, Add, Softmax per position: probs
 * (T,B,C) (zero rows past a length are still a softmax: ignore them); a
 * tagger with a CRF: MatMul, Add, then crf_graph's marginals (0 past a
 * length). */
static lstm_status task_graph(builder *b, const lstm_st *st, const onnx_export_options *o,
                              lstm_params **pp, lstm_rnn **rnnp, lstm_error *err) {
    lstm_model *m = lstm_model_load(lstm_st_name(st), err);
    if (!m)
        return err ? err->status : LSTM_ERR_FORMAT;
    lstm_status s = LSTM_OK;
    lstm_rnn_config cfg;
    float *dec = NULL, *dect = NULL;
    if ((s = lstm_rnn_config_infer(&cfg, st, "lstm.", err)))
        goto out;
    *pp = lstm_params_create();
    if (!(*rnnp = lstm_rnn_create(&cfg, *pp, "lstm.", err)) || (s = lstm_params_alloc(*pp, err)) ||
        (s = lstm_params_read(*pp, st, "", 0, err))) {
        s = s ? s : err ? err->status : LSTM_ERR_INVALID;
        goto out;
    }
    lstm_task task = lstm_model_task(m);
    int pooled = task == LSTM_TASK_CLASSIFY;
    int D = cfg.bidirectional ? 2 : 1, H = cfg.hidden_size, F = D * H, L = cfg.num_layers;
    int nf = lstm_model_features(m);
    const lstm_st_tensor *dw = lstm_st_find(st, "decoder.weight");
    if (!dw || dw->ndim != 2 || dw->shape[1] != F) {
        s = lstm_fail(err, LSTM_ERR_SHAPE, "%s: decoder.weight is not (C, %d)", lstm_st_name(st), F);
        goto out;
    }
    int C = (int)dw->shape[0];
    const char *tb[2] = {"T", "B"}, *bb[1] = {"B"}, *st3[3] = {NULL, "B", NULL};
    int64_t ss[3] = {(int64_t)L * D, 0, H};
    const char *embs[16];
    if (nf < 1 || nf > (int)(sizeof embs / sizeof *embs)) {
        s = lstm_fail(err, LSTM_ERR_SHAPE, "%s: %d embedded features, not 1 to %d",
                      lstm_st_name(st), nf, (int)(sizeof embs / sizeof *embs));
        goto out;
    }
    for (int f = 0; f < nf; f++) {
        int dim;
        const char *name = lstm_model_feature(m, f, &dim);
        const char *ids = str(b, "ids.%s", name), *tab = str(b, "embedding.%s.weight", name);
        value_info(b, 0, ids, DT_INT64, 2, tb, NULL);
        const lstm_st_tensor *t = lstm_st_find(st, tab);
        float *v = t && t->ndim == 2 ? read_f32(st, tab, t->numel, err) : NULL;
        if (!v) {
            s = t && t->ndim == 2 ? err->status : lstm_fail(err, LSTM_ERR_SHAPE, "%s: no 2-D tensor %s", lstm_st_name(st), tab);
            goto out;
        }
        init(b, tab, DT_FLOAT, 2, t->shape, v);
        free(v);
        const char *gin[2] = {tab, ids};
        embs[f] = str(b, "embedded.%s", name);
        node(b, "Gather", str(b, "embed_%s", name), 2, gin, 1, &embs[f]);
    }
    value_info(b, 0, "lengths", DT_INT32, 1, bb, NULL);
    if (o->state) {
        value_info(b, 0, "h0", DT_FLOAT, 3, st3, ss);
        value_info(b, 0, "c0", DT_FLOAT, 3, st3, ss);
    }
    const char *x = embs[0];
    if (nf > 1) {
        x = "lstm_input";
        attr_i(b, node(b, "Concat", "features", nf, embs, 1, &x), "axis", 2);
    }
    if ((s = lstm_stack(b, &cfg, *pp, "lstm.", x, "lstm_output", o->state ? "h0" : NULL,
                        o->state ? "c0" : NULL, "lengths", "h_n", "c_n", err)))
        goto out;
    size_t nd = (size_t)C * F;
    if (!(dec = read_f32(st, "decoder.weight", nd, err))) {
        s = err->status;
        goto out;
    }
    float *bias = read_f32(st, "decoder.bias", (size_t)C, err);
    if (!bias) {
        s = err->status;
        goto out;
    }
    int64_t bdims[1] = {C};
    init(b, "decoder.bias", DT_FLOAT, 1, bdims, bias);
    free(bias);
    const char *logits = "logits", *probs = "probs";
    if (pooled) {
        /* mean over the real steps: Y is zero past each length */
        int64_t ax0[1] = {0}, ax1[1] = {1}, wdims[2] = {C, F};
        init_ints(b, "axis_t", 1, ax0);
        init_ints(b, "axis_1", 1, ax1);
        init(b, "decoder.weight", DT_FLOAT, 2, wdims, dec);
        const char *rin[2] = {"lstm_output", "axis_t"}, *sum = "summed";
        attr_i(b, node(b, "ReduceSum", "sum_over_t", 2, rin, 1, &sum), "keepdims", 0);
        const char *cin = "lengths", *lf = "lengths_float";
        attr_i(b, node(b, "Cast", "lengths_to_float", 1, &cin, 1, &lf), "to", DT_FLOAT);
        const char *uin[2] = {lf, "axis_1"}, *lu = "lengths_b1";
        node(b, "Unsqueeze", "lengths_column", 2, uin, 1, &lu);
        const char *din[2] = {sum, lu}, *mean = "pooled";
        node(b, "Div", "mean_over_t", 2, din, 1, &mean);
        const char *gin[3] = {mean, "decoder.weight", "decoder.bias"};
        attr_i(b, node(b, "Gemm", "decoder", 3, gin, 1, &logits), "transB", 1);
        value_info(b, 1, probs, DT_FLOAT, 2, (const char *[2]){"B", NULL}, (int64_t[2]){0, C});
    } else {
        /* (T,B,F) x (F,C): the decoder's weight transposed */
        if (!(dect = malloc(sizeof(float) * nd))) {
            s = lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
            goto out;
        }
        for (int c = 0; c < C; c++)
            for (int k = 0; k < F; k++)
                dect[(size_t)k * C + c] = dec[(size_t)c * F + k];
        int64_t wdims[2] = {F, C};
        init(b, "decoder.weight_t", DT_FLOAT, 2, wdims, dect);
        const char *min[2] = {"lstm_output", "decoder.weight_t"}, *mm = "logits_nobias";
        node(b, "MatMul", "decoder", 2, min, 1, &mm);
        const char *ain[2] = {mm, "decoder.bias"};
        node(b, "Add", "decoder_bias", 2, ain, 1, &logits);
        value_info(b, 1, probs, DT_FLOAT, 3, (const char *[3]){"T", "B", NULL}, (int64_t[3]){0, 0, C});
    }
    if (lstm_model_get_config(m)->crf)
        s = crf_graph(b, st, C, logits, probs, err);
    else
        attr_i(b, node(b, "Softmax", "softmax", 1, &logits, 1, &probs), "axis", -1);
    value_info(b, 1, "h_n", DT_FLOAT, 3, st3, ss);
    value_info(b, 1, "c_n", DT_FLOAT, 3, st3, ss);
out:
    free(dec), free(dect);
    lstm_model_free(m);
    return s;
}

lstm_status onnx_export_lstm(const char *in_path, const char *out_path, const onnx_export_options *o,
                             lstm_error *err) {
    lstm_st *st = lstm_st_open(in_path, err);
    if (!st)
        return err ? err->status : LSTM_ERR_IO;
    char prefix[256];
    lstm_rnn_config cfg;
    lstm_params *p = NULL;
    lstm_rnn *rnn = NULL;
    builder b;
    memset(&b, 0, sizeof b);
    onnx__graph_proto__init(&b.g);
    b.cur = &b.g;
    uint8_t *bytes = NULL;
    lstm_status s;
    b.g.name = "lstm";
    if (lstm_st_meta(st, "lstm.task") && !o->prefix) {
        if ((s = task_graph(&b, st, o, &p, &rnn, err)))
            goto out;
        goto write;
    }
    if (o->prefix)
        snprintf(prefix, sizeof prefix, "%s", o->prefix);
    if ((!o->prefix && (s = lstm_rnn_find_prefix(st, prefix, sizeof prefix, err))) ||
        (s = lstm_rnn_config_infer(&cfg, st, prefix, err)))
        goto out;
    p = lstm_params_create();
    if (!(rnn = lstm_rnn_create(&cfg, p, prefix, err))) {
        s = err ? err->status : LSTM_ERR_INVALID;
        goto out;
    }
    if ((s = lstm_params_alloc(p, err)) || (s = lstm_params_read(p, st, "", 0, err)))
        goto out;
    int L = cfg.num_layers, D = cfg.bidirectional ? 2 : 1, H = cfg.hidden_size;
    b.g.name = "lstm";
    const char *seq[3] = {o->batch_first ? "B" : "T", o->batch_first ? "T" : "B", NULL};
    const char *st3[3] = {NULL, "B", NULL}, *b1[1] = {"B"};
    int64_t xs[3] = {0, 0, cfg.input_size}, ys[3] = {0, 0, (int64_t)D * H}, ss[3] = {(int64_t)L * D, 0, H};
    value_info(&b, 0, "input", DT_FLOAT, 3, seq, xs);
    if (o->state) {
        value_info(&b, 0, "h0", DT_FLOAT, 3, st3, ss);
        value_info(&b, 0, "c0", DT_FLOAT, 3, st3, ss);
    }
    if (o->lengths)
        value_info(&b, 0, "lengths", DT_INT32, 1, b1, NULL);
    value_info(&b, 1, "output", DT_FLOAT, 3, seq, ys);
    value_info(&b, 1, "h_n", DT_FLOAT, 3, st3, ss);
    value_info(&b, 1, "c_n", DT_FLOAT, 3, st3, ss);
    const char *x = "input", *y = "output";
    int64_t swap[3] = {1, 0, 2};
    if (o->batch_first) {
        const char *t = "input_tbi";
        attr_ints(&b, node(&b, "Transpose", "to_time_major", 1, &x, 1, &t), "perm", 3, swap);
        x = t, y = "output_tbf";
    }
    if ((s = lstm_stack(&b, &cfg, p, prefix, x, y, o->state ? "h0" : NULL, o->state ? "c0" : NULL,
                        o->lengths ? "lengths" : NULL, "h_n", "c_n", err)))
        goto out;
    if (o->batch_first) {
        const char *t = "output";
        attr_ints(&b, node(&b, "Transpose", "to_batch_major", 1, &y, 1, &t), "perm", 3, swap);
    }
write:;
    Onnx__OperatorSetIdProto ops = ONNX__OPERATOR_SET_ID_PROTO__INIT, *opsp = &ops;
    ops.domain = "", ops.has_version = 1, ops.version = 14;
    Onnx__ModelProto m = ONNX__MODEL_PROTO__INIT;
    m.has_ir_version = 1, m.ir_version = 7;
    m.producer_name = "lstm", m.producer_version = LSTM_VERSION;
    m.graph = &b.g, m.n_opset_import = 1, m.opset_import = &opsp;
    if (b.failed) {
        s = lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
        goto out;
    }
    size_t len = onnx__model_proto__get_packed_size(&m);
    if (!(bytes = malloc(len))) {
        s = lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
        goto out;
    }
    onnx__model_proto__pack(&m, bytes);
    s = lstm_write_file_atomic(out_path, bytes, len, err);
out:
    free(bytes);
    for (size_t k = 0; k < b.nowned; k++)
        free(b.owned[k]);
    free(b.owned);
    lstm_rnn_free(rnn);
    lstm_params_free(p);
    lstm_st_free(st);
    return s;
}
