/* onnx_import.c - reads an ONNX model (protobuf, through libprotobuf-c and
 * the schema in onnx.proto) and imports its LSTM nodes as one nn.LSTM.
 *
 * The graph is evaluated symbolically: each value gets a kind (the sequence
 * input or something computed from it with its axes named, a slice of a
 * state input, an LSTM's Y_h or Y_c, a constant, a computed shape, zeros)
 * and each node the outputs depend on must map kinds it knows to a kind.
 * What imports:
 *   LSTM (opsets 7-22): directions forward, reverse, bidirectional; layout
 *     0 and 1; sequence_lens; initial_h, initial_c (graph inputs, sliced
 *     per layer, or zeros); B; P; clip; input_forget; the default
 *     activations (Sigmoid, Tanh, Tanh), named or not.
 *   between LSTM nodes and around them: Transpose, Reshape (merging D and H
 *     into D*H), Squeeze (of D = 1), Identity, Cast (float to float, or an
 *     integer sequence_lens), Slice (of a state input along its layer axis),
 *     Concat (of the layers' Y_h or Y_c, in order).
 *   zeros for an initial state: Expand or ConstantOfShape of a zero
 *     constant, over a shape computed by Shape, Gather, Unsqueeze, Concat,
 *     Slice, Squeeze, Cast (torch.onnx.export's pattern when no state is
 *     passed), or a constant of zeros.
 * Anything else that an output depends on is refused, naming the node. */
#include "onnx.h"
#include "onnx.pb-c.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Element types (ONNX's TensorProto.DataType). */
enum { DT_FLOAT = 1, DT_INT32 = 6, DT_INT64 = 7, DT_FLOAT16 = 10, DT_DOUBLE = 11, DT_BFLOAT16 = 16 };

/* ---------------------------------------------------------------- */
/* Tensors */

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023;
    float v;
    if (exp == 0)
        v = ldexpf((float)man, -24);
    else if (exp == 31)
        v = man ? NAN : INFINITY;
    else
        v = ldexpf((float)(man | 1024), (int)exp - 25);
    return sign ? -v : v;
}

static float bf16_to_float(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Converts a TensorProto to an onnx_tensor. `what` names it in messages
 * ("initializer 'W'", "node 'x' attribute 'value'"). */
static lstm_status tensor_convert(const Onnx__TensorProto *tp, const char *file, const char *what,
                                  onnx_tensor *t, lstm_error *err) {
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", tp->name ? tp->name : "");
    if (tp->has_data_location && tp->data_location == 1)
        return lstm_fail(err, LSTM_ERR_UNSUPPORTED,
                         "%s: %s: data in an external file: lstm reads tensors stored in the model",
                         file, what);
    if (tp->n_dims > LSTM_MAX_DIMS)
        return lstm_fail(err, LSTM_ERR_SHAPE, "%s: %s: %zu dimensions (at most %d)", file, what,
                         tp->n_dims, LSTM_MAX_DIMS);
    size_t n = 1;
    t->ndim = (int)tp->n_dims;
    for (size_t d = 0; d < tp->n_dims; d++) {
        if (tp->dims[d] < 0 || tp->dims[d] > (1 << 30) || (tp->dims[d] && n > ((size_t)1 << 31) / (size_t)tp->dims[d]))
            return lstm_fail(err, LSTM_ERR_FORMAT, "%s: %s: dimension %zu is %lld", file, what,
                             d, (long long)tp->dims[d]);
        t->shape[d] = tp->dims[d];
        n *= (size_t)tp->dims[d];
    }
    t->numel = n;
    int dt = tp->has_data_type ? tp->data_type : 0;
    size_t esize = dt == DT_FLOAT || dt == DT_INT32 ? 4
                   : dt == DT_INT64 || dt == DT_DOUBLE ? 8
                   : dt == DT_FLOAT16 || dt == DT_BFLOAT16 ? 2 : 0;
    if (!esize)
        return lstm_fail(err, LSTM_ERR_SHAPE,
                         "%s: %s: element type %d (lstm reads FLOAT, DOUBLE, FLOAT16, BFLOAT16, INT32, INT64)",
                         file, what, dt);
    int is_int = dt == DT_INT32 || dt == DT_INT64;
    size_t have;
    const uint8_t *raw = NULL;
    if (tp->has_raw_data) {
        raw = tp->raw_data.data;
        have = tp->raw_data.len / esize;
        if (tp->raw_data.len % esize)
            return lstm_fail(err, LSTM_ERR_FORMAT, "%s: %s: raw_data of %zu bytes is not a whole number of %zu-byte elements",
                             file, what, tp->raw_data.len, esize);
    } else {
        have = dt == DT_FLOAT ? tp->n_float_data
               : dt == DT_DOUBLE ? tp->n_double_data
               : dt == DT_INT64 ? tp->n_int64_data : tp->n_int32_data;
    }
    if (have != n)
        return lstm_fail(err, LSTM_ERR_FORMAT, "%s: %s: %zu elements stored, the shape holds %zu",
                         file, what, have, n);
    void *buf = malloc((is_int ? sizeof(int64_t) : sizeof(float)) * (n ? n : 1));
    if (!buf)
        return lstm_fail(err, LSTM_ERR_NOMEM, "%s: %s: out of memory", file, what);
    if (is_int)
        t->i = buf;
    else
        t->f = buf;
    for (size_t k = 0; k < n; k++) {
        if (raw) {
            const uint8_t *p = raw + k * esize;
            uint64_t u = 0;
            for (size_t b = 0; b < esize; b++)
                u |= (uint64_t)p[b] << (8 * b);
            if (dt == DT_FLOAT) {
                uint32_t u32 = (uint32_t)u;
                memcpy(&t->f[k], &u32, 4);
            } else if (dt == DT_DOUBLE) {
                double d;
                memcpy(&d, &u, 8);
                t->f[k] = (float)d;
            } else if (dt == DT_FLOAT16) {
                t->f[k] = half_to_float((uint16_t)u);
            } else if (dt == DT_BFLOAT16) {
                t->f[k] = bf16_to_float((uint16_t)u);
            } else if (dt == DT_INT32) {
                t->i[k] = (int32_t)(uint32_t)u;
            } else {
                t->i[k] = (int64_t)u;
            }
        } else {
            switch (dt) {
            case DT_FLOAT: t->f[k] = tp->float_data[k]; break;
            case DT_DOUBLE: t->f[k] = (float)tp->double_data[k]; break;
            case DT_FLOAT16: t->f[k] = half_to_float((uint16_t)tp->int32_data[k]); break;
            case DT_BFLOAT16: t->f[k] = bf16_to_float((uint16_t)tp->int32_data[k]); break;
            case DT_INT32: t->i[k] = tp->int32_data[k]; break;
            default: t->i[k] = tp->int64_data[k]; break;
            }
        }
    }
    return lstm_ok(err);
}

void onnx_tensor_free(onnx_tensor *t) {
    if (!t)
        return;
    free(t->f);
    free(t->i);
    t->f = NULL;
    t->i = NULL;
}

lstm_status onnx_tensor_read(const void *buf, size_t len, const char *name, onnx_tensor *t,
                             lstm_error *err) {
    memset(t, 0, sizeof *t);
    Onnx__TensorProto *tp = onnx__tensor_proto__unpack(NULL, len, buf);
    if (!tp)
        return lstm_fail(err, LSTM_ERR_FORMAT, "%s: not a valid TensorProto (protobuf)", name);
    lstm_status s = tensor_convert(tp, name, "tensor", t, err);
    onnx__tensor_proto__free_unpacked(tp, NULL);
    if (s)
        onnx_tensor_free(t);
    return s;
}

/* ---------------------------------------------------------------- */
/* Symbolic values */

/* Raw axes of a graph input are named AX_IN0 + k until an LSTM node fixes
 * what they mean. */
#define AX_IN0 16
#define MAX_LAYERS 64

typedef enum {
    V_UNSUPPORTED, /* from a node outside the patterns: `node` says which */
    V_CONST,       /* a constant: `t` */
    V_SHAPE,       /* a shape computed at run time: only for Expand */
    V_ZERO,        /* all zeros */
    V_INPUT,       /* a graph input, maybe transposed or sliced (states) */
    V_SEQ,         /* computed from the sequence input: axes named */
    V_STATE,       /* an LSTM's Y_h (which 0) or Y_c (which 1), rows [lo, hi) */
    V_PERM         /* the order that sorts the lengths input (TopK's indices), or its
                      inverse (`inv`): torch.onnx.export's packed sequences */
} vkind;

typedef struct {
    const char *name;
    vkind kind;
    int rank;            /* -1 when unknown */
    int axes[4];
    int input;           /* V_INPUT: graph input index */
    int slice_axis, lo, hi; /* V_INPUT: a slice [lo, hi) on slice_axis (-1: none; hi -1: to the end)
                            V_STATE: rows [lo, hi) of the L*D states */
    int layer;           /* V_SEQ: the LSTM layer whose Y this is (-1: none) */
    int which;           /* V_STATE: 0 h, 1 c */
    int node;            /* the node that made it (-1: graph input or initializer) */
    const onnx_tensor *t; /* V_CONST */
    int perm, perm_axis; /* the batch is in the order of sort `perm` (its TopK node + 1;
                            0: the input's order), on axis perm_axis (V_INPUT: raw) */
    int inv;             /* V_PERM: the inverse order */
    int shape_of;        /* V_SHAPE: a size of graph input shape_of (-1: unknown) */
} value;

typedef struct {
    const char *file;
    Onnx__ModelProto *model;
    Onnx__GraphProto *g;
    lstm_error *err;
    value *v;
    size_t nv, cap;
    size_t *hash;        /* open addressing over v, index + 1 (0: empty) */
    size_t hcap;
    onnx_tensor **consts; /* converted initializers and Constant tensors, each its own block */
    size_t nconsts;
    const onnx_tensor *feeds;
    int nfeeds;
    int opset;
    /* the stack */
    int L, D, H, I, layout_seen;
    int peephole, has_clip, input_forget;
    int reverse; /* direction="reverse" (D = 1) */
    float clip;
    const onnx_tensor *W[MAX_LAYERS], *R[MAX_LAYERS], *Bias[MAX_LAYERS], *P[MAX_LAYERS];
    int lnode[MAX_LAYERS];
    int x_input, x_axes[3];      /* graph input of the sequence, and its axes */
    int st_input[2], st_pos[2];  /* the h0, c0 graph inputs, position of their S axis */
    int lens_input;
} importer;

static const char *node_name(const importer *im, int n) {
    const Onnx__NodeProto *nd = im->g->node[n];
    return nd->name && *nd->name ? nd->name : (nd->n_output && nd->output[0] ? nd->output[0] : "?");
}

static size_t hash_str(const char *s) {
    size_t h = 1469598103934665603u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static value *find(importer *im, const char *name) {
    if (!im->hcap || !name)
        return NULL;
    for (size_t h = hash_str(name) & (im->hcap - 1);; h = (h + 1) & (im->hcap - 1)) {
        if (!im->hash[h])
            return NULL;
        value *v = &im->v[im->hash[h] - 1];
        if (strcmp(v->name, name) == 0)
            return v;
    }
}

/* Adds a value (a later definition of a name replaces the earlier). */
static value *define(importer *im, const char *name, const value *val) {
    value *old = find(im, name);
    if (old) {
        *old = *val;
        old->name = name;
        return old;
    }
    if (im->nv * 2 >= im->hcap) {
        size_t hcap = im->hcap ? im->hcap * 2 : 64;
        size_t *hash = calloc(hcap, sizeof *hash);
        if (!hash)
            return NULL;
        for (size_t i = 0; i < im->nv; i++) {
            size_t h = hash_str(im->v[i].name) & (hcap - 1);
            while (hash[h])
                h = (h + 1) & (hcap - 1);
            hash[h] = i + 1;
        }
        free(im->hash);
        im->hash = hash;
        im->hcap = hcap;
    }
    if (im->nv == im->cap) {
        size_t cap = im->cap ? im->cap * 2 : 64;
        value *v = realloc(im->v, cap * sizeof *v);
        if (!v)
            return NULL;
        im->v = v;
        im->cap = cap;
    }
    value *nv = &im->v[im->nv++];
    *nv = *val;
    nv->name = name;
    size_t h = hash_str(name) & (im->hcap - 1);
    while (im->hash[h])
        h = (h + 1) & (im->hcap - 1);
    im->hash[h] = im->nv;
    return nv;
}

static value make(vkind k, int node) {
    value v;
    memset(&v, 0, sizeof v);
    v.kind = k;
    v.rank = -1;
    v.node = node;
    v.layer = -1;
    v.slice_axis = -1;
    v.input = -1;
    v.shape_of = -1;
    return v;
}

static int is_zero(const onnx_tensor *t) {
    for (size_t k = 0; k < t->numel; k++)
        if (t->f ? t->f[k] != 0 : t->i[k] != 0)
            return 0;
    return 1;
}

static lstm_status nomem(importer *im) {
    return lstm_fail(im->err, LSTM_ERR_NOMEM, "%s: out of memory", im->file);
}

/* Keeps a converted constant; returns it, or NULL after setting the error. */
static const onnx_tensor *keep_const(importer *im, const Onnx__TensorProto *tp, const char *what) {
    onnx_tensor *t = malloc(sizeof *t);
    onnx_tensor **c = t ? realloc(im->consts, (im->nconsts + 1) * sizeof *c) : NULL;
    if (!c) {
        free(t);
        nomem(im);
        return NULL;
    }
    im->consts = c;
    if (tensor_convert(tp, im->file, what, t, im->err)) {
        onnx_tensor_free(t);
        free(t);
        return NULL;
    }
    return c[im->nconsts++] = t;
}

static const Onnx__AttributeProto *attr(const Onnx__NodeProto *nd, const char *name) {
    for (size_t a = 0; a < nd->n_attribute; a++)
        if (nd->attribute[a]->name && strcmp(nd->attribute[a]->name, name) == 0)
            return nd->attribute[a];
    return NULL;
}

/* The node's input k ("" or missing: NULL). */
static const char *input_name(const Onnx__NodeProto *nd, size_t k) {
    return k < nd->n_input && nd->input[k] && *nd->input[k] ? nd->input[k] : NULL;
}

/* A constant integer list: from input k (opset >= some version) or the
 * attribute `aname`. Returns the count (-1 absent, -2 after an error). */
static int const_ints(importer *im, int n, size_t k, const char *aname, int64_t *dst, int max) {
    const Onnx__NodeProto *nd = im->g->node[n];
    const char *in = input_name(nd, k);
    if (in) {
        value *v = find(im, in);
        if (!v || v->kind != V_CONST || !v->t->i) {
            lstm_fail(im->err, LSTM_ERR_UNSUPPORTED,
                      "%s: node '%s' (%s): input %zu '%s' must be a constant integer tensor",
                      im->file, node_name(im, n), nd->op_type, k, in);
            return -2;
        }
        if (v->t->numel > (size_t)max) {
            lstm_fail(im->err, LSTM_ERR_UNSUPPORTED, "%s: node '%s' (%s): input '%s' has %zu values",
                      im->file, node_name(im, n), nd->op_type, in, v->t->numel);
            return -2;
        }
        memcpy(dst, v->t->i, v->t->numel * sizeof *dst);
        return (int)v->t->numel;
    }
    const Onnx__AttributeProto *a = aname ? attr(nd, aname) : NULL;
    if (!a)
        return -1;
    if (a->n_ints > (size_t)max) {
        lstm_fail(im->err, LSTM_ERR_UNSUPPORTED, "%s: node '%s' (%s): attribute '%s' has %zu values",
                  im->file, node_name(im, n), nd->op_type, aname, a->n_ints);
        return -2;
    }
    if (a->n_ints)
        memcpy(dst, a->ints, a->n_ints * sizeof *dst);
    return (int)a->n_ints;
}

/* ---------------------------------------------------------------- */
/* Node rules */

static lstm_status refuse(importer *im, int n, const char *fmt, const char *detail) {
    const Onnx__NodeProto *nd = im->g->node[n];
    char what[256];
    snprintf(what, sizeof what, fmt, detail ? detail : "");
    return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED, "%s: node '%s' (%s): %s", im->file,
                     node_name(im, n), nd->op_type ? nd->op_type : "?", what);
}

/* The kind of a node's input k; NULL when absent or undefined (error set
 * when `need`). */
static value *in_value(importer *im, int n, size_t k, int need) {
    const Onnx__NodeProto *nd = im->g->node[n];
    const char *name = input_name(nd, k);
    value *v = name ? find(im, name) : NULL;
    if (!v && need) {
        if (name)
            lstm_fail(im->err, LSTM_ERR_FORMAT,
                      "%s: node '%s' (%s): input %zu '%s' is not a graph input, an initializer or an earlier node's output",
                      im->file, node_name(im, n), nd->op_type, k, name);
        else
            lstm_fail(im->err, LSTM_ERR_FORMAT, "%s: node '%s' (%s): input %zu is missing",
                      im->file, node_name(im, n), nd->op_type, k);
    }
    return v;
}

/* An operator outside the patterns; its outputs are V_UNSUPPORTED, an error
 * only when an output or an LSTM needs them. */
static int shape_like(const value *v) { return v->kind == V_SHAPE || v->kind == V_CONST; }

static lstm_status rule_lstm(importer *im, int n);


/* A new constant of the given shape (values zeroed), kept by the importer. */
static onnx_tensor *new_const(importer *im, int is_int, int ndim, const int64_t *shape) {
    Onnx__TensorProto tp = ONNX__TENSOR_PROTO__INIT;
    int64_t dims[LSTM_MAX_DIMS];
    size_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= (size_t)(dims[d] = shape[d]);
    tp.has_data_type = 1;
    tp.data_type = is_int ? DT_INT64 : DT_FLOAT;
    tp.n_dims = (size_t)ndim;
    tp.dims = dims;
    tp.has_raw_data = 1;
    tp.raw_data.len = n * (is_int ? 8 : 4);
    tp.raw_data.data = calloc(tp.raw_data.len ? tp.raw_data.len : 1, 1);
    if (!tp.raw_data.data) {
        nomem(im);
        return NULL;
    }
    onnx_tensor *t = (onnx_tensor *)keep_const(im, &tp, "folded constant");
    free(tp.raw_data.data);
    return t;
}

/* Folds Identity, Cast, Unsqueeze, Squeeze, Reshape, Concat and Slice over
 * constants (exporters that do not fold constants, such as torch.onnx at
 * opsets below 9, reorder the gates with Slice and Concat). Returns the
 * constant, NULL when the node is not one of these or does not fold, or
 * sets *failed after an error. */
static const onnx_tensor *fold(importer *im, int n, int *failed) {
    const Onnx__NodeProto *nd = im->g->node[n];
    const char *op = nd->op_type;
    value *a = in_value(im, n, 0, 0);
    if (!a || a->kind != V_CONST)
        return NULL;
    for (size_t k = 1; k < nd->n_input; k++) {
        value *b = in_value(im, n, k, 0);
        if (input_name(nd, k) && (!b || b->kind != V_CONST))
            return NULL;
    }
    const onnx_tensor *x = a->t;
    int is_int = x->i != NULL;
    int64_t shape[LSTM_MAX_DIMS], ax[LSTM_MAX_DIMS];
    int ndim = x->ndim;
    memcpy(shape, x->shape, sizeof shape);
    onnx_tensor *t;
    if (strcmp(op, "Identity") == 0 || strcmp(op, "Cast") == 0) {
        const Onnx__AttributeProto *to = attr(nd, "to");
        int want_int = to && (to->i == DT_INT32 || to->i == DT_INT64);
        int want_float = !to || to->i == DT_FLOAT || to->i == DT_DOUBLE || to->i == DT_FLOAT16 ||
                         to->i == DT_BFLOAT16;
        if (!want_int && !want_float)
            return NULL;
        if (!(t = new_const(im, want_int, ndim, shape)))
            goto fail;
        for (size_t k = 0; k < x->numel; k++) {
            double v = is_int ? (double)x->i[k] : x->f[k];
            if (want_int && !is_int && !(fabs(v) < 9e18))
                return NULL; /* no integer: leave the node unfolded (and unsupported) */
            if (want_int)
                t->i[k] = is_int ? x->i[k] : (int64_t)v;
            else
                t->f[k] = (float)v;
        }
        return t;
    }
    if (strcmp(op, "Unsqueeze") == 0 || strcmp(op, "Squeeze") == 0) {
        int sq = op[0] == 'S';
        int na = const_ints(im, n, im->opset >= 13 ? 1 : 99, "axes", ax, LSTM_MAX_DIMS);
        if (na == -2)
            goto fail;
        int out = sq ? ndim - (na < 0 ? 0 : na) : ndim + na;
        if (na <= 0 || out < 0 || out > LSTM_MAX_DIMS)
            return NULL;
        int64_t ns[LSTM_MAX_DIMS];
        int mark[LSTM_MAX_DIMS] = {0};
        int rank = sq ? ndim : out;
        for (int k = 0; k < na; k++) {
            int64_t p = ax[k] < 0 ? ax[k] + rank : ax[k];
            if (p < 0 || p >= rank || mark[p] || (sq && shape[p] != 1))
                return NULL;
            mark[p] = 1;
        }
        for (int d = 0, j = 0, o = 0; d < rank; d++) {
            if (sq) {
                if (!mark[d])
                    ns[o++] = shape[d];
            } else {
                ns[d] = mark[d] ? 1 : shape[j++];
            }
        }
        if (!(t = new_const(im, is_int, out, ns)))
            goto fail;
        memcpy(is_int ? (void *)t->i : (void *)t->f, is_int ? (void *)x->i : (void *)x->f,
               x->numel * (is_int ? 8 : 4));
        return t;
    }
    if (strcmp(op, "Concat") == 0) {
        const Onnx__AttributeProto *aa = attr(nd, "axis");
        int64_t axis = aa ? aa->i : 0;
        if (axis < 0)
            axis += ndim;
        if (axis < 0 || axis >= ndim)
            return NULL;
        int64_t total = 0;
        for (size_t k = 0; k < nd->n_input; k++) {
            const onnx_tensor *b = in_value(im, n, k, 0) ? in_value(im, n, k, 0)->t : NULL;
            if (!b || b->ndim != ndim || (b->i != NULL) != is_int)
                return NULL;
            for (int d = 0; d < ndim; d++)
                if (d != axis && b->shape[d] != shape[d])
                    return NULL;
            total += b->shape[axis];
        }
        shape[axis] = total;
        if (!(t = new_const(im, is_int, ndim, shape)))
            goto fail;
        size_t outer = 1, inner = 1;
        for (int d = 0; d < axis; d++)
            outer *= (size_t)shape[d];
        for (int d = (int)axis + 1; d < ndim; d++)
            inner *= (size_t)shape[d];
        size_t off = 0, es = is_int ? 8 : 4;
        char *dst = is_int ? (char *)t->i : (char *)t->f;
        for (size_t k = 0; k < nd->n_input; k++) {
            const onnx_tensor *b = in_value(im, n, k, 0)->t;
            size_t blk = (size_t)b->shape[axis] * inner;
            const char *src = is_int ? (const char *)b->i : (const char *)b->f;
            for (size_t o = 0; o < outer; o++)
                memcpy(dst + (o * (size_t)total * inner + off) * es, src + o * blk * es, blk * es);
            off += blk;
        }
        return t;
    }
    if (strcmp(op, "Slice") == 0) {
        int64_t st[LSTM_MAX_DIMS], en[LSTM_MAX_DIMS], sp[LSTM_MAX_DIMS];
        int old = im->opset < 10;
        int ns = const_ints(im, n, old ? 99 : 1, "starts", st, LSTM_MAX_DIMS);
        int ne = const_ints(im, n, old ? 99 : 2, "ends", en, LSTM_MAX_DIMS);
        int nx = const_ints(im, n, old ? 99 : 3, "axes", ax, LSTM_MAX_DIMS);
        int np = old ? -1 : const_ints(im, n, 4, NULL, sp, LSTM_MAX_DIMS);
        if (ns == -2 || ne == -2 || nx == -2 || np == -2)
            goto fail;
        if (ns < 1 || ne != ns || (nx >= 0 && nx != ns) || (np >= 0 && np != ns))
            return NULL;
        int64_t lo[LSTM_MAX_DIMS] = {0}, hi[LSTM_MAX_DIMS];
        memcpy(hi, shape, sizeof hi);
        for (int k = 0; k < ns; k++) {
            int64_t d = nx >= 0 ? ax[k] : k;
            if (d < 0)
                d += ndim;
            if (d < 0 || d >= ndim || (np >= 0 && sp[k] != 1))
                return NULL;
            int64_t s0 = st[k] < 0 ? st[k] + shape[d] : st[k], e0 = en[k] < 0 ? en[k] + shape[d] : en[k];
            s0 = s0 < 0 ? 0 : s0 > shape[d] ? shape[d] : s0;
            e0 = e0 < s0 ? s0 : e0 > shape[d] ? shape[d] : e0;
            lo[d] = s0, hi[d] = e0;
        }
        int64_t os[LSTM_MAX_DIMS];
        for (int d = 0; d < ndim; d++)
            os[d] = hi[d] - lo[d];
        if (!(t = new_const(im, is_int, ndim, os)))
            goto fail;
        for (size_t k = 0; k < t->numel; k++) {
            size_t rest = k, src = 0, stride = 1;
            for (int d = ndim - 1; d >= 0; d--) {
                size_t c = rest % (size_t)os[d];
                rest /= (size_t)os[d];
                src += (c + (size_t)lo[d]) * stride;
                stride *= (size_t)shape[d];
            }
            if (is_int)
                t->i[k] = x->i[src];
            else
                t->f[k] = x->f[src];
        }
        return t;
    }
    return NULL;
fail:
    *failed = 1;
    return NULL;
}

/* Evaluates node n, defining its outputs. */
static lstm_status eval_node(importer *im, int n) {
    const Onnx__NodeProto *nd = im->g->node[n];
    const char *op = nd->op_type ? nd->op_type : "";
    value out = make(V_UNSUPPORTED, n);
    int failed = 0;
    if (nd->domain && *nd->domain && strcmp(nd->domain, "ai.onnx") != 0) {
        /* another domain's operator: unsupported if anything needs it */
    } else if (strcmp(op, "LSTM") == 0) {
        return rule_lstm(im, n);
    } else if ((out.t = fold(im, n, &failed)) || failed) {
        if (failed)
            return im->err->status;
        out.kind = V_CONST;
    } else if (strcmp(op, "Constant") == 0) {
        const Onnx__AttributeProto *a = attr(nd, "value");
        if (a && a->t) {
            char what[200];
            snprintf(what, sizeof what, "node '%s' (Constant) attribute 'value'", node_name(im, n));
            if (!(out.t = keep_const(im, a->t, what)))
                return im->err->status;
            out.kind = V_CONST;
        } else if ((a = attr(nd, "value_ints")) || (a = attr(nd, "value_int"))) {
            Onnx__TensorProto tp = ONNX__TENSOR_PROTO__INIT;
            int64_t one = a->i, dim = (int64_t)a->n_ints;
            tp.has_data_type = 1;
            tp.data_type = DT_INT64;
            if (strcmp(a->name, "value_int") == 0) {
                tp.n_int64_data = 1;
                tp.int64_data = &one;
            } else {
                tp.n_dims = 1;
                tp.dims = &dim;
                tp.n_int64_data = a->n_ints;
                tp.int64_data = a->ints;
            }
            if (!(out.t = keep_const(im, &tp, "Constant")))
                return im->err->status;
            out.kind = V_CONST;
        }
    } else if (strcmp(op, "Identity") == 0 || strcmp(op, "Cast") == 0) {
        value *a = in_value(im, n, 0, 1);
        if (!a)
            return im->err->status;
        const Onnx__AttributeProto *to = attr(nd, "to");
        int to_float = !to || to->i == DT_FLOAT;
        if (strcmp(op, "Identity") == 0 || shape_like(a) || a->kind == V_INPUT || a->kind == V_ZERO ||
            a->kind == V_PERM || (to_float && (a->kind == V_SEQ || a->kind == V_STATE))) {
            out = *a;
            if (a->kind == V_CONST)
                out.kind = V_SHAPE; /* a cast constant: values changed, only shapes use it */
        }
    } else if (strcmp(op, "Shape") == 0) {
        value *a = in_value(im, n, 0, 1);
        if (!a)
            return im->err->status;
        out.kind = V_SHAPE;
        if (a->kind == V_INPUT && (a->rank == 1 || a->rank < 0) && !a->perm && a->slice_axis < 0)
            out.shape_of = a->input; /* the batch size, from the lengths */
    } else if (strcmp(op, "TopK") == 0) {
        /* sorting the lengths: torch.onnx.export's pack_padded_sequence */
        value *a = in_value(im, n, 0, 1), *k = in_value(im, n, 1, 1);
        if (!a || !k)
            return im->err->status;
        if (a->kind == V_INPUT && (a->rank == 1 || a->rank < 0) && !a->perm && a->slice_axis < 0 &&
            k->kind == V_SHAPE && k->shape_of == a->input) {
            out = *a;
            out.node = n;
            out.perm = n + 1;
            out.perm_axis = AX_IN0;
            if (nd->n_output > 0 && nd->output[0] && *nd->output[0] && !define(im, nd->output[0], &out))
                return nomem(im);
            out = make(V_PERM, n);
            out.perm = n + 1;
            if (nd->n_output > 1 && nd->output[1] && *nd->output[1] && !define(im, nd->output[1], &out))
                return nomem(im);
            return LSTM_OK;
        }
    } else if (strcmp(op, "ScatterElements") == 0) {
        /* out[perm[i]] = i: the inverse of a sort */
        value *d = in_value(im, n, 0, 1), *ix = in_value(im, n, 1, 1), *u = in_value(im, n, 2, 1);
        const Onnx__AttributeProto *ax = attr(nd, "axis");
        if (!d || !ix || !u)
            return im->err->status;
        int ok = d->kind == V_CONST && ix->kind == V_PERM && !ix->inv && u->kind == V_CONST && u->t->i &&
                 u->t->ndim == 1 && d->t->ndim == 1 && d->t->numel == u->t->numel && (!ax || ax->i == 0) &&
                 !attr(nd, "reduction");
        for (size_t j = 0; ok && j < u->t->numel; j++)
            ok = u->t->i[j] == (int64_t)j;
        if (ok) {
            out = *ix;
            out.node = n;
            out.inv = 1;
        }
    } else if (strcmp(op, "Gather") == 0 || strcmp(op, "Unsqueeze") == 0 ||
               strcmp(op, "Concat") == 0 || strcmp(op, "Slice") == 0 ||
               strcmp(op, "Squeeze") == 0 || strcmp(op, "Reshape") == 0 ||
               strcmp(op, "Transpose") == 0) {
        /* shape arithmetic: every input a shape or constant */
        int all = nd->n_input > 0;
        for (size_t k = 0; k < nd->n_input; k++) {
            value *a = in_value(im, n, k, 0);
            if (input_name(nd, k) && (!a || !shape_like(a)))
                all = 0;
        }
        if (all) {
            out.kind = V_SHAPE;
            value *a = in_value(im, n, 0, 0);
            if (strcmp(op, "Gather") == 0 && a && a->kind == V_SHAPE)
                out.shape_of = a->shape_of;
        } else if (strcmp(op, "Gather") == 0) {
            /* a batch put in the order of a sort, or back */
            value *a = in_value(im, n, 0, 1), *ix = in_value(im, n, 1, 1);
            const Onnx__AttributeProto *ax = attr(nd, "axis");
            if (!a || !ix)
                return im->err->status;
            int axis = ax ? (int)ax->i : 0, rank = a->rank < 0 && a->kind == V_INPUT ? 3 : a->rank;
            if (axis < 0)
                axis += rank;
            if (ix->kind == V_PERM && axis >= 0 && axis < rank && axis < 4) {
                if (!ix->inv && !a->perm && a->kind == V_INPUT && a->slice_axis < 0) {
                    out = *a;
                    out.node = n;
                    out.perm = ix->perm;
                    out.perm_axis = a->axes[axis];
                } else if (ix->inv && a->perm == ix->perm && (a->kind == V_SEQ || a->kind == V_STATE) &&
                           a->axes[axis] == ONNX_AX_B) {
                    out = *a;
                    out.node = n;
                    out.perm = 0;
                }
            }
        } else if (strcmp(op, "Transpose") == 0) {
            value *a = in_value(im, n, 0, 1);
            if (!a)
                return im->err->status;
            const Onnx__AttributeProto *p = attr(nd, "perm");
            int rank = a->rank < 0 && a->kind == V_INPUT && p && p->n_ints <= 4 ? (int)p->n_ints : a->rank;
            if ((a->kind == V_SEQ || a->kind == V_INPUT || a->kind == V_STATE) && rank > 0 &&
                a->slice_axis < 0) {
                int perm[4];
                if (p && p->n_ints != (size_t)rank)
                    return refuse(im, n, "attribute 'perm' does not match the input's rank%s", NULL);
                int used = 0;
                for (int d = 0; d < rank; d++) {
                    perm[d] = p ? (int)p->ints[d] : rank - 1 - d;
                    if (perm[d] < 0 || perm[d] >= rank || (used & (1 << perm[d])))
                        return refuse(im, n, "attribute 'perm' is not a permutation%s", NULL);
                    used |= 1 << perm[d];
                }
                out = *a;
                out.node = n;
                out.rank = rank;
                for (int d = 0; d < rank; d++)
                    out.axes[d] = a->axes[perm[d]];
            }
        } else if (strcmp(op, "Reshape") == 0) {
            value *a = in_value(im, n, 0, 1);
            int64_t shape[8];
            int ns = 0;
            if (!a)
                return im->err->status;
            if (a->kind == V_SEQ && (ns = const_ints(im, n, 1, NULL, shape, 8)) == -2)
                return im->err->status;
            /* merging adjacent (D, H) into F: (T,B,D,H) -> (T,B,D*H) and the like */
            if (a->kind == V_SEQ && a->rank == 4 && ns == 3) {
                const Onnx__AttributeProto *az = attr(nd, "allowzero");
                int j = 0, ok = 1, minus = 0, merged = 0;
                int res[3];
                for (int d = 0; d < 4 && j < 3; d++) {
                    if (a->axes[d] == ONNX_AX_D && d + 1 < 4 && a->axes[d + 1] == ONNX_AX_H) {
                        res[j++] = ONNX_AX_F;
                        d++;
                        merged = 1;
                    } else {
                        res[j++] = a->axes[d];
                    }
                }
                ok = merged && j == 3;
                for (int d = 0; ok && d < 3; d++) {
                    int64_t want = res[d] == ONNX_AX_F ? (int64_t)im->D * im->H
                                   : res[d] == ONNX_AX_H ? im->H : res[d] == ONNX_AX_D ? im->D : -5;
                    if (shape[d] == -1)
                        ok = !minus++;
                    else if (shape[d] == 0 && !(az && az->i))
                        ok = a->axes[d] == res[d];
                    else
                        ok = shape[d] == want;
                }
                if (ok) {
                    out = *a;
                    out.node = n;
                    out.rank = 3;
                    memcpy(out.axes, res, sizeof res);
                }
            }
        } else if (strcmp(op, "Squeeze") == 0) {
            value *a = in_value(im, n, 0, 1);
            if (!a)
                return im->err->status;
            int64_t ax[4];
            int na = a->kind == V_SEQ ? const_ints(im, n, 1, "axes", ax, 4) : 0;
            if (na == -2)
                return im->err->status;
            if (a->kind == V_SEQ && im->D == 1 && a->rank == 4) {
                int dpos = -1;
                for (int d = 0; d < 4; d++)
                    if (a->axes[d] == ONNX_AX_D)
                        dpos = d;
                int ok = dpos >= 0 && (na == -1 || (na == 1 && (ax[0] == dpos || ax[0] == dpos - 4)));
                if (ok) {
                    out = *a;
                    out.node = n;
                    out.rank = 3;
                    for (int d = 0, j = 0; d < 4; d++)
                        if (d != dpos)
                            out.axes[j++] = a->axes[d] == ONNX_AX_H ? ONNX_AX_F : a->axes[d];
                }
            }
        } else if (strcmp(op, "Slice") == 0) {
            value *a = in_value(im, n, 0, 1);
            if (!a)
                return im->err->status;
            if (a->kind == V_INPUT && a->slice_axis < 0) {
                int64_t st[4], en[4], ax[4] = {0}, sp[4] = {1};
                int old = im->opset < 10;
                int ns = const_ints(im, n, old ? 99 : 1, "starts", st, 4);
                int ne = const_ints(im, n, old ? 99 : 2, "ends", en, 4);
                int nx = const_ints(im, n, old ? 99 : 3, "axes", ax, 4);
                int np = old ? -1 : const_ints(im, n, 4, NULL, sp, 4);
                if (ns == -2 || ne == -2 || nx == -2 || np == -2)
                    return im->err->status;
                if (ns == 1 && ne == 1 && (nx == -1 || nx == 1) && (np == -1 || (np == 1 && sp[0] == 1)) &&
                    st[0] >= 0 && st[0] < (1 << 20) && en[0] > st[0]) {
                    out = *a;
                    out.node = n;
                    out.slice_axis = (int)ax[0];
                    out.lo = (int)st[0];
                    out.hi = en[0] >= (1 << 20) ? -1 : (int)en[0];
                    if (out.slice_axis < 0 || out.slice_axis > 2)
                        out.kind = V_UNSUPPORTED;
                }
            }
        } else if (strcmp(op, "Concat") == 0) {
            /* the layers' Y_h (or Y_c), in order along the state axis */
            const Onnx__AttributeProto *ax = attr(nd, "axis");
            value *a = in_value(im, n, 0, 1);
            if (!a)
                return im->err->status;
            if (a->kind == V_STATE && ax) {
                out = *a;
                out.node = n;
                int spos = -1;
                for (int d = 0; d < a->rank; d++)
                    if (a->axes[d] == ONNX_AX_S)
                        spos = d;
                int ok = ax->i == spos || ax->i == spos - a->rank;
                for (size_t k = 1; ok && k < nd->n_input; k++) {
                    value *b = in_value(im, n, k, 1);
                    if (!b)
                        return im->err->status;
                    ok = b->kind == V_STATE && b->which == a->which && b->lo == out.hi &&
                         b->perm == a->perm && memcmp(b->axes, a->axes, sizeof a->axes) == 0;
                    out.hi = b ? b->hi : 0;
                }
                if (!ok)
                    out.kind = V_UNSUPPORTED;
            }
        }
    } else if (strcmp(op, "Expand") == 0) {
        value *a = in_value(im, n, 0, 1);
        if (!a)
            return im->err->status;
        if ((a->kind == V_CONST && is_zero(a->t)) || a->kind == V_ZERO)
            out.kind = V_ZERO;
    } else if (strcmp(op, "ConstantFill") == 0) {
        /* opset < 9 (an experimental operator torch.onnx writes): zeros */
        const Onnx__AttributeProto *v = attr(nd, "value"), *s = attr(nd, "input_as_shape");
        if ((!v || v->f == 0) && s && s->i == 1)
            out.kind = V_ZERO;
    } else if (strcmp(op, "ConstantOfShape") == 0) {
        const Onnx__AttributeProto *a = attr(nd, "value");
        onnx_tensor t;
        int zero = 1;
        if (a && a->t) {
            if (tensor_convert(a->t, im->file, "ConstantOfShape value", &t, im->err))
                return im->err->status;
            zero = is_zero(&t);
            onnx_tensor_free(&t);
        }
        if (zero)
            out.kind = V_ZERO;
    }
    for (size_t k = 0; k < nd->n_output; k++)
        if (nd->output[k] && *nd->output[k] && !define(im, nd->output[k], &out))
            return nomem(im);
    return LSTM_OK;
}

/* Explains why value v cannot be what `role` needs. */
static lstm_status cannot(importer *im, int n, const char *role, const char *vname, const value *v) {
    char why[300];
    if (v->kind == V_UNSUPPORTED && v->node >= 0) {
        const Onnx__NodeProto *pn = im->g->node[v->node];
        snprintf(why, sizeof why,
                 "it is computed by node '%s' (%s), outside the patterns lstm imports (see lstm convert --help)",
                 node_name(im, v->node), pn->op_type ? pn->op_type : "?");
    } else {
        static const char *kinds[] = {"an unsupported value", "a constant", "a computed shape", "zeros",
                                      "a graph input", "a sequence", "an LSTM state",
                                      "a batch order"};
        snprintf(why, sizeof why, "it is %s in an arrangement lstm does not import", kinds[v->kind]);
    }
    if (n < 0)
        return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED, "%s: graph output '%s': %s", im->file, vname, why);
    return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED, "%s: node '%s' (LSTM): %s '%s': %s", im->file,
                     node_name(im, n), role, vname, why);
}

/* A weight input of an LSTM node: a constant, or a fed graph input. */
static lstm_status weight(importer *im, int n, size_t k, const char *role, int need,
                          const onnx_tensor **dst) {
    const Onnx__NodeProto *nd = im->g->node[n];
    const char *name = input_name(nd, k);
    *dst = NULL;
    if (!name) {
        if (need)
            return lstm_fail(im->err, LSTM_ERR_FORMAT, "%s: node '%s' (LSTM): input %s is missing",
                             im->file, node_name(im, n), role);
        return LSTM_OK;
    }
    value *v = in_value(im, n, k, 1);
    if (!v)
        return im->err->status;
    if (v->kind == V_CONST && v->t->f) {
        *dst = v->t;
        return LSTM_OK;
    }
    if (v->kind == V_INPUT && v->slice_axis < 0) {
        for (int f = 0; f < im->nfeeds; f++)
            if (strcmp(im->feeds[f].name, name) == 0 && im->feeds[f].f) {
                *dst = &im->feeds[f];
                return LSTM_OK;
            }
        return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED,
                         "%s: node '%s' (LSTM): input %s '%s' is a graph input: the weights must be initializers or constants in the file",
                         im->file, node_name(im, n), role, name);
    }
    return cannot(im, n, role, name, v);
}

static int shape_is(const onnx_tensor *t, int ndim, int64_t a, int64_t b, int64_t c) {
    int64_t s[3] = {a, b, c};
    if (t->ndim != ndim)
        return 0;
    for (int d = 0; d < ndim; d++)
        if (t->shape[d] != s[d])
            return 0;
    return 1;
}

/* An initial state input (initial_h: which 0, initial_c: 1) of layer k. */
static lstm_status state_in(importer *im, int n, size_t idx, int which, int k, int layout, int perm) {
    const char *role = which ? "initial_c" : "initial_h";
    const char *name = input_name(im->g->node[n], idx);
    if (!name)
        return LSTM_OK;
    value *v = in_value(im, n, idx, 1);
    if (!v)
        return im->err->status;
    if (v->kind == V_ZERO || (v->kind == V_CONST && is_zero(v->t)))
        return LSTM_OK;
    int pos = layout ? 1 : 0;
    if (v->perm != perm || (perm && v->perm_axis != AX_IN0 + (layout ? 0 : 1)))
        return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED,
                         "%s: node '%s' (LSTM): %s '%s' is not in the batch order of X",
                         im->file, node_name(im, n), role, name);
    int ok = v->kind == V_INPUT && (v->rank == 3 || v->rank < 0) && v->axes[0] == AX_IN0 &&
             v->axes[1] == AX_IN0 + 1 && v->axes[2] == AX_IN0 + 2;
    int lo = 0, hi = im->D;
    if (ok && v->slice_axis >= 0) {
        ok = v->slice_axis == pos;
        lo = v->lo;
        hi = v->hi < 0 ? lo + im->D : v->hi;
    }
    if (!ok) {
        if (v->kind == V_CONST)
            return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED,
                             "%s: node '%s' (LSTM): %s '%s' is a constant that is not zero: nn.LSTM has no stored initial state",
                             im->file, node_name(im, n), role, name);
        return cannot(im, n, role, name, v);
    }
    if (lo != k * im->D || hi != (k + 1) * im->D)
        return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED,
                         "%s: node '%s' (LSTM): %s takes rows [%d, %d) of graph input '%s'; layer %d of a stack reads rows [%d, %d)",
                         im->file, node_name(im, n), role, lo, hi, im->g->input[v->input]->name, k,
                         k * im->D, (k + 1) * im->D);
    if (im->st_input[which] >= 0 && (im->st_input[which] != v->input || im->st_pos[which] != pos))
        return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED,
                         "%s: node '%s' (LSTM): %s '%s' is not from the graph input the other layers' %s come from",
                         im->file, node_name(im, n), role, name, role);
    im->st_input[which] = v->input;
    im->st_pos[which] = pos;
    return LSTM_OK;
}

static lstm_status rule_lstm(importer *im, int n) {
    const Onnx__NodeProto *nd = im->g->node[n];
    const char *nn = node_name(im, n);
    /* attributes */
    int H = -1, dirs = 1, reverse = 0, layout = 0, input_forget = 0, has_clip = 0;
    float clip = 0;
    for (size_t a = 0; a < nd->n_attribute; a++) {
        const Onnx__AttributeProto *at = nd->attribute[a];
        const char *an = at->name ? at->name : "";
        if (strcmp(an, "hidden_size") == 0) {
            if (at->i < 1 || at->i > (1 << 16))
                return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED, "%s: node '%s' (LSTM): attribute 'hidden_size' is %lld",
                                 im->file, nn, (long long)at->i);
            H = (int)at->i;
        } else if (strcmp(an, "direction") == 0) {
            int len = (int)at->s.len;
            const char *s = (const char *)at->s.data;
            if (len == 7 && s && memcmp(s, "forward", 7) == 0)
                dirs = 1;
            else if (len == 7 && s && memcmp(s, "reverse", 7) == 0)
                dirs = 1, reverse = 1; /* lstm_rnn_config's reverse */
            else if (len == 13 && s && memcmp(s, "bidirectional", 13) == 0)
                dirs = 2;
            else
                return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED,
                                 "%s: node '%s' (LSTM): attribute 'direction' is '%.*s' (forward, reverse or bidirectional)",
                                 im->file, nn, len > 40 ? 40 : len, s ? s : "");
        } else if (strcmp(an, "layout") == 0) {
            if (at->i != 0 && at->i != 1)
                return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED, "%s: node '%s' (LSTM): attribute 'layout' is %lld (0 or 1)",
                                 im->file, nn, (long long)at->i);
            layout = (int)at->i;
        } else if (strcmp(an, "input_forget") == 0) {
            if (at->i != 0 && at->i != 1)
                return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED, "%s: node '%s' (LSTM): attribute 'input_forget' is %lld (0 or 1)",
                                 im->file, nn, (long long)at->i);
            input_forget = (int)at->i;
        } else if (strcmp(an, "clip") == 0) {
            if (!(at->f > 0) || !isfinite(at->f))
                return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED, "%s: node '%s' (LSTM): attribute 'clip' is %g (a positive number)",
                                 im->file, nn, (double)at->f);
            clip = at->f;
            has_clip = 1;
        } else if (strcmp(an, "activations") == 0) {
            static const char *def[3] = {"Sigmoid", "Tanh", "Tanh"};
            int ok = at->n_strings == 3 || at->n_strings == 6;
            for (size_t s = 0; ok && s < at->n_strings; s++) {
                const char *w = def[s % 3];
                ok = at->strings[s].len == strlen(w) &&
                     memcmp(at->strings[s].data, w, strlen(w)) == 0;
            }
            if (!ok)
                return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED,
                                 "%s: node '%s' (LSTM): attribute 'activations': lstm computes the default Sigmoid, Tanh, Tanh only",
                                 im->file, nn);
        } else if (strcmp(an, "activation_alpha") == 0 || strcmp(an, "activation_beta") == 0) {
            if (at->n_floats)
                return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED,
                                 "%s: node '%s' (LSTM): attribute '%s': the default activations take none",
                                 im->file, nn, an);
        } else {
            return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED, "%s: node '%s' (LSTM): unknown attribute '%s'",
                             im->file, nn, an);
        }
    }
    if (layout && im->opset < 14)
        return lstm_fail(im->err, LSTM_ERR_FORMAT,
                         "%s: node '%s' (LSTM): attribute 'layout' needs opset 14, the model imports opset %d",
                         im->file, nn, im->opset);
    int D = dirs == 2 ? 2 : 1;
    int k = im->L;
    if (k >= MAX_LAYERS)
        return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED, "%s: node '%s' (LSTM): more than %d layers",
                         im->file, nn, MAX_LAYERS);
    /* X: the sequence input (layer 0) or the layer before's output */
    const char *xname = input_name(nd, 0);
    value *x = in_value(im, n, 0, 1);
    if (!x)
        return im->err->status;
    int tpos = layout ? 1 : 0, bpos = layout ? 0 : 1;
    if (k == 0) {
        if (x->kind != V_INPUT || (x->rank != 3 && x->rank != -1) || x->slice_axis >= 0 ||
            x->axes[2] != AX_IN0 + 2)
            return x->kind == V_SEQ
                       ? lstm_fail(im->err, LSTM_ERR_UNSUPPORTED, "%s: node '%s' (LSTM): input X '%s': a second LSTM on the same layer; lstm imports one stack",
                                   im->file, nn, xname)
                       : cannot(im, n, "X", xname, x);
        if (x->perm && x->perm_axis != x->axes[bpos])
            return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED,
                             "%s: node '%s' (LSTM): input X '%s' is reordered along another axis than its batch",
                             im->file, nn, xname);
        im->x_input = x->input;
        im->x_axes[x->axes[tpos] - AX_IN0] = ONNX_AX_T;
        im->x_axes[x->axes[bpos] - AX_IN0] = ONNX_AX_B;
        im->x_axes[2] = ONNX_AX_I;
    } else {
        if (x->kind != V_SEQ || x->rank != 3 || x->layer != k - 1 || x->axes[tpos] != ONNX_AX_T ||
            x->axes[bpos] != ONNX_AX_B || x->axes[2] != ONNX_AX_F)
            return x->kind == V_INPUT
                       ? lstm_fail(im->err, LSTM_ERR_UNSUPPORTED, "%s: node '%s' (LSTM): a second LSTM reads the graph input '%s'; lstm imports one stack",
                                   im->file, nn, xname)
                       : cannot(im, n, "X (the output of the layer before, as (T, B, D*H) or (B, T, D*H))", xname, x);
        if (D != im->D || reverse != im->reverse || H != im->H ||
            input_forget != im->input_forget || has_clip != im->has_clip || clip != im->clip)
            return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED,
                             "%s: node '%s' (LSTM): direction, hidden_size, clip and input_forget must be those of the first layer '%s'",
                             im->file, nn, node_name(im, im->lnode[0]));
    }
    /* weights */
    int perm = x->perm; /* the batch order of X, which every input and output shares */
    const onnx_tensor *W, *R, *B = NULL, *P = NULL;
    if (weight(im, n, 1, "W", 1, &W) || weight(im, n, 2, "R", 1, &R) || weight(im, n, 3, "B", 0, &B) ||
        weight(im, n, 7, "P", 0, &P))
        return im->err->status;
    if (H < 0) {
        if (R->ndim != 3 || R->shape[2] < 1 || R->shape[2] > (1 << 16))
            return lstm_fail(im->err, LSTM_ERR_SHAPE, "%s: node '%s' (LSTM): no attribute 'hidden_size' and R is not (D, 4H, H)",
                             im->file, nn);
        H = (int)R->shape[2];
    }
    int I = W->ndim == 3 ? (int)W->shape[2] : -1;
    if (!shape_is(W, 3, D, 4 * (int64_t)H, I) || I < 1)
        return lstm_fail(im->err, LSTM_ERR_SHAPE, "%s: node '%s' (LSTM): input W must be (D, 4H, I) = (%d, %d, I)",
                         im->file, nn, D, 4 * H);
    if (k > 0 && I != D * H)
        return lstm_fail(im->err, LSTM_ERR_SHAPE, "%s: node '%s' (LSTM): input W has input size %d; after layer '%s' it is D*H = %d",
                         im->file, nn, I, node_name(im, im->lnode[k - 1]), D * H);
    if (!shape_is(R, 3, D, 4 * (int64_t)H, H))
        return lstm_fail(im->err, LSTM_ERR_SHAPE, "%s: node '%s' (LSTM): input R must be (D, 4H, H) = (%d, %d, %d)",
                         im->file, nn, D, 4 * H, H);
    if (B && !shape_is(B, 2, D, 8 * (int64_t)H, 0))
        return lstm_fail(im->err, LSTM_ERR_SHAPE, "%s: node '%s' (LSTM): input B must be (D, 8H) = (%d, %d)",
                         im->file, nn, D, 8 * H);
    if (P && !shape_is(P, 2, D, 3 * (int64_t)H, 0))
        return lstm_fail(im->err, LSTM_ERR_SHAPE, "%s: node '%s' (LSTM): input P must be (D, 3H) = (%d, %d)",
                         im->file, nn, D, 3 * H);
    if (k == 0) {
        im->D = D;
        im->reverse = reverse;
        im->H = H;
        im->I = I;
        im->clip = clip;
        im->has_clip = has_clip;
        im->input_forget = input_forget;
    }
    /* sequence_lens */
    const char *lname = input_name(nd, 4);
    if (lname) {
        value *l = in_value(im, n, 4, 1);
        if (!l)
            return im->err->status;
        if (l->kind != V_INPUT || l->slice_axis >= 0 || (l->rank != 1 && l->rank != -1)) {
            return cannot(im, n, "sequence_lens", lname, l);
        }
        if (l->perm != perm)
            return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED,
                             "%s: node '%s' (LSTM): sequence_lens '%s' and X are not in the same batch order",
                             im->file, nn, lname);
        if ((k > 0 && im->lens_input != l->input) || (k == 0 && im->lens_input >= 0)) {
            return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED,
                             "%s: node '%s' (LSTM): every layer must read sequence_lens from the same graph input",
                             im->file, nn);
        }
        im->lens_input = l->input;
    } else if (k > 0 && im->lens_input >= 0) {
        return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED, "%s: node '%s' (LSTM): no sequence_lens, while the first layer has",
                         im->file, nn);
    }
    lstm_status s = state_in(im, n, 5, 0, k, layout, perm);
    if (!s)
        s = state_in(im, n, 6, 1, k, layout, perm);
    if (s)
        return s;
    im->W[k] = W, im->R[k] = R, im->Bias[k] = B, im->P[k] = P;
    im->peephole |= P != NULL;
    im->lnode[k] = n;
    im->L = k + 1;
    /* outputs */
    for (size_t o = 0; o < nd->n_output && o < 3; o++) {
        if (!nd->output[o] || !*nd->output[o])
            continue;
        value v = make(o == 0 ? V_SEQ : V_STATE, n);
        v.rank = o == 0 ? 4 : 3;
        v.perm = perm;
        if (o == 0) {
            int y0[4] = {ONNX_AX_T, ONNX_AX_D, ONNX_AX_B, ONNX_AX_H};
            int y1[4] = {ONNX_AX_B, ONNX_AX_T, ONNX_AX_D, ONNX_AX_H};
            memcpy(v.axes, layout ? y1 : y0, sizeof y0);
            v.layer = k;
        } else {
            int s0[3] = {ONNX_AX_S, ONNX_AX_B, ONNX_AX_H}, s1[3] = {ONNX_AX_B, ONNX_AX_S, ONNX_AX_H};
            memcpy(v.axes, layout ? s1 : s0, sizeof s0);
            v.which = (int)o - 1;
            v.lo = k * D;
            v.hi = (k + 1) * D;
        }
        if (!define(im, nd->output[o], &v))
            return nomem(im);
    }
    for (size_t o = 3; o < nd->n_output; o++)
        if (nd->output[o] && *nd->output[o])
            return lstm_fail(im->err, LSTM_ERR_FORMAT, "%s: node '%s' (LSTM): %zu outputs (at most 3: Y, Y_h, Y_c)",
                             im->file, nn, nd->n_output);
    return LSTM_OK;
}

/* ---------------------------------------------------------------- */
/* Weights: ONNX's (D, 4H, .) in gate order i, o, f, c to nn.LSTM's
 * (4H, .) in i, f, g, o. */

static const int gate_from[4] = {0, 2, 3, 1}; /* nn.LSTM gate g is ONNX gate gate_from[g] */

static lstm_status write_weights(importer *im, lstm_st_writer *w) {
    int H = im->H, D = im->D;
    lstm_error *err = im->err;
    float *zeros = calloc((size_t)8 * H, sizeof(float));
    float *buf = malloc(sizeof(float) * (size_t)4 * H * (im->I > D * H ? im->I : D * H) + 64);
    if (!zeros || !buf) {
        free(zeros), free(buf);
        return nomem(im);
    }
    lstm_status s = LSTM_OK;
    for (int k = 0; k < im->L && !s; k++) {
        int in = k == 0 ? im->I : D * H;
        for (int d = 0; d < D && !s; d++) {
            char name[64];
            const char *suf = d ? "_reverse" : "";
            const float *W = im->W[k]->f + (size_t)d * 4 * H * in;
            const float *R = im->R[k]->f + (size_t)d * 4 * H * H;
            const float *B = im->Bias[k] ? im->Bias[k]->f + (size_t)d * 8 * H : zeros;
            struct {
                const char *fmt;
                const float *src;
                int cols;
            } t[4] = {{"weight_ih_l%d%s", W, in}, {"weight_hh_l%d%s", R, H},
                      {"bias_ih_l%d%s", B, 1}, {"bias_hh_l%d%s", B + 4 * H, 1}};
            for (int j = 0; j < 4 && !s; j++) {
                snprintf(name, sizeof name, t[j].fmt, k, suf);
                for (int g = 0; g < 4; g++)
                    memcpy(buf + (size_t)g * H * t[j].cols, t[j].src + (size_t)gate_from[g] * H * t[j].cols,
                           sizeof(float) * (size_t)H * t[j].cols);
                int64_t shape[2] = {4 * (int64_t)H, t[j].cols};
                s = lstm_st_writer_add(w, name, LSTM_DT_F32, j < 2 ? 2 : 1, shape, buf, err);
            }
            if (!s && im->peephole) {
                /* ONNX's P is p_i, p_o, p_f; weight_peephole is p_i, p_f, p_o */
                const float *P = im->P[k] ? im->P[k]->f + (size_t)d * 3 * H : zeros;
                memcpy(buf, P, sizeof(float) * H);
                memcpy(buf + H, P + 2 * H, sizeof(float) * H);
                memcpy(buf + 2 * H, P + H, sizeof(float) * H);
                int64_t shape[1] = {3 * (int64_t)H};
                snprintf(name, sizeof name, "weight_peephole_l%d%s", k, suf);
                s = lstm_st_writer_add(w, name, LSTM_DT_F32, 1, shape, buf, err);
            }
        }
    }
    char v[64];
    if (!s && im->has_clip) {
        snprintf(v, sizeof v, "%.9g", (double)im->clip);
        s = lstm_st_writer_meta(w, "lstm.clip", v, err);
    }
    if (!s && im->input_forget)
        s = lstm_st_writer_meta(w, "lstm.input_forget", "1", err);
    if (!s && im->reverse)
        s = lstm_st_writer_meta(w, "lstm.reverse", "1", err);
    free(zeros), free(buf);
    return s;
}

/* ---------------------------------------------------------------- */

static void importer_free(importer *im) {
    for (size_t c = 0; c < im->nconsts; c++) {
        onnx_tensor_free(im->consts[c]);
        free(im->consts[c]);
    }
    free(im->consts);
    free(im->v);
    free(im->hash);
    if (im->model)
        onnx__model_proto__free_unpacked(im->model, NULL);
}

void onnx_import_free(onnx_import *imp) {
    if (!imp)
        return;
    lstm_st_writer_free(imp->weights);
    imp->weights = NULL;
}

static lstm_status import(importer *im, onnx_import *out) {
    Onnx__ModelProto *m = im->model;
    if (!m->graph)
        return lstm_fail(im->err, LSTM_ERR_FORMAT, "%s: the model has no graph", im->file);
    Onnx__GraphProto *g = im->g = m->graph;
    snprintf(out->producer, sizeof out->producer, "%s%s%s", m->producer_name ? m->producer_name : "",
             m->producer_version ? " " : "", m->producer_version ? m->producer_version : "");
    im->opset = -1;
    for (size_t k = 0; k < m->n_opset_import; k++) {
        const Onnx__OperatorSetIdProto *o = m->opset_import[k];
        if (!o->domain || !*o->domain || strcmp(o->domain, "ai.onnx") == 0)
            im->opset = o->has_version ? (int)o->version : -1;
    }
    if (im->opset < 0)
        return lstm_fail(im->err, LSTM_ERR_FORMAT, "%s: the model imports no version of the default operator set (opset_import)",
                         im->file);
    if (im->opset < 7 || im->opset > 22)
        return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED, "%s: opset %d: lstm imports opsets 7 to 22",
                         im->file, im->opset);
    out->opset = im->opset;
    /* initializers, then inputs that are not initializers */
    for (size_t k = 0; k < g->n_initializer; k++) {
        const Onnx__TensorProto *tp = g->initializer[k];
        if (!tp->name || !*tp->name)
            return lstm_fail(im->err, LSTM_ERR_FORMAT, "%s: initializer %zu has no name", im->file, k);
        char what[200];
        snprintf(what, sizeof what, "initializer '%s'", tp->name);
        value v = make(V_CONST, -1);
        if (!(v.t = keep_const(im, tp, what)))
            return im->err->status;
        if (!define(im, tp->name, &v))
            return nomem(im);
    }
    for (size_t k = 0; k < g->n_input; k++) {
        const Onnx__ValueInfoProto *vi = g->input[k];
        if (!vi->name || !*vi->name)
            return lstm_fail(im->err, LSTM_ERR_FORMAT, "%s: graph input %zu has no name", im->file, k);
        if (find(im, vi->name))
            continue; /* an initializer listed as an input too (IR < 4) */
        value v = make(V_INPUT, -1);
        v.input = (int)k;
        if (vi->type && vi->type->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE &&
            vi->type->tensor_type->shape)
            v.rank = (int)vi->type->tensor_type->shape->n_dim;
        for (int d = 0; d < 4; d++)
            v.axes[d] = AX_IN0 + d;
        if (!define(im, vi->name, &v))
            return nomem(im);
    }
    im->x_input = im->lens_input = -1;
    im->st_input[0] = im->st_input[1] = -1;
    for (size_t n = 0; n < g->n_node; n++) {
        const Onnx__NodeProto *nd = g->node[n];
        if (!nd->op_type || !*nd->op_type)
            return lstm_fail(im->err, LSTM_ERR_FORMAT, "%s: node %zu has no op_type", im->file, n);
        if (eval_node(im, (int)n))
            return im->err->status;
    }
    if (im->L == 0)
        return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED, "%s: the graph has no LSTM node", im->file);
    /* outputs */
    if (g->n_output > ONNX_MAX_IO || g->n_input > ONNX_MAX_IO + g->n_initializer)
        return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED, "%s: more than %d graph inputs or outputs",
                         im->file, ONNX_MAX_IO);
    int D = im->D;
    for (size_t k = 0; k < g->n_output; k++) {
        const char *name = g->output[k]->name ? g->output[k]->name : "";
        value *v = find(im, name);
        if (!v)
            return lstm_fail(im->err, LSTM_ERR_FORMAT, "%s: graph output '%s' is computed by no node",
                             im->file, name);
        if (v->perm && (v->kind == V_SEQ || v->kind == V_STATE))
            return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED,
                             "%s: graph output '%s' is in the batch order of the sort by node '%s' (TopK), never put back",
                             im->file, name, node_name(im, v->perm - 1));
        onnx_io *o = &out->out[out->nout++];
        snprintf(o->name, sizeof o->name, "%s", name);
        o->rank = v->rank;
        for (int d = 0; d < v->rank && d < 4; d++)
            o->axes[d] = (onnx_axis)v->axes[d];
        if (v->kind == V_SEQ && v->layer == im->L - 1) {
            o->role = ONNX_OUT_Y;
        } else if (v->kind == V_STATE) {
            o->role = v->which ? ONNX_OUT_C : ONNX_OUT_H;
            o->lo = v->lo;
            o->hi = v->hi;
        } else {
            return cannot(im, -1, "", name, v);
        }
    }
    /* inputs */
    int nin = 0;
    for (size_t k = 0; k < g->n_input; k++) {
        const Onnx__ValueInfoProto *vi = g->input[k];
        value *v = find(im, vi->name);
        if (v->kind == V_CONST && v->node < 0 && v->input < 0) {
            /* an initializer also listed as an input */
            int init = 0;
            for (size_t j = 0; j < g->n_initializer; j++)
                init |= strcmp(g->initializer[j]->name, vi->name) == 0;
            if (init)
                continue;
        }
        if (nin == ONNX_MAX_IO)
            return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED, "%s: more than %d graph inputs", im->file, ONNX_MAX_IO);
        onnx_io *io = &out->in[nin++];
        snprintf(io->name, sizeof io->name, "%s", vi->name);
        io->role = ONNX_IN_UNUSED;
        for (int f = 0; f < im->nfeeds; f++)
            if (strcmp(im->feeds[f].name, vi->name) == 0 && im->feeds[f].f)
                io->role = ONNX_IN_WEIGHT;
        if ((int)k == im->x_input) {
            io->role = ONNX_IN_X;
            io->rank = 3;
            memcpy(io->axes, (onnx_axis[3]){(onnx_axis)im->x_axes[0], (onnx_axis)im->x_axes[1], (onnx_axis)im->x_axes[2]},
                   sizeof(onnx_axis) * 3);
        } else if ((int)k == im->lens_input) {
            io->role = ONNX_IN_LENGTHS;
            io->rank = 1;
            io->axes[0] = ONNX_AX_B;
        }
        for (int w = 0; w < 2; w++)
            if ((int)k == im->st_input[w]) {
                io->role = w ? ONNX_IN_C0 : ONNX_IN_H0;
                io->rank = 3;
                io->axes[0] = im->st_pos[w] ? ONNX_AX_B : ONNX_AX_S;
                io->axes[1] = im->st_pos[w] ? ONNX_AX_S : ONNX_AX_B;
                io->axes[2] = ONNX_AX_H;
                io->lo = 0;
                io->hi = im->L * D;
            }
    }
    out->nin = nin;
    if (im->x_input < 0)
        return lstm_fail(im->err, LSTM_ERR_UNSUPPORTED, "%s: no graph input feeds the first LSTM", im->file);
    /* the configuration */
    lstm_rnn_config cfg = lstm_rnn_config_default(im->I, im->H);
    cfg.num_layers = im->L;
    cfg.bidirectional = D == 2;
    cfg.batch_first = im->x_axes[0] == ONNX_AX_B;
    cfg.peephole = im->peephole;
    cfg.clip = im->has_clip ? im->clip : 0;
    cfg.input_forget = im->input_forget;
    cfg.reverse = im->reverse;
    out->cfg = cfg;
    if (!(out->weights = lstm_st_writer_create()))
        return nomem(im);
    return write_weights(im, out->weights);
}

lstm_status onnx_import_lstm(const void *buf, size_t len, const char *name,
                             const onnx_tensor *feeds, int nfeeds, onnx_import *out,
                             lstm_error *err) {
    memset(out, 0, sizeof *out);
    importer im;
    memset(&im, 0, sizeof im);
    im.file = name ? name : "model";
    im.err = err;
    im.feeds = feeds;
    im.nfeeds = nfeeds;
    lstm_error local;
    if (!err)
        im.err = &local;
    im.model = onnx__model_proto__unpack(NULL, len, buf);
    lstm_status s;
    if (!im.model)
        s = lstm_fail(im.err, LSTM_ERR_FORMAT, "%s: not an ONNX model: the protobuf ModelProto does not parse",
                      im.file);
    else
        s = import(&im, out);
    importer_free(&im);
    if (s)
        onnx_import_free(out);
    else
        lstm_ok(err);
    return s;
}
