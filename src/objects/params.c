/* params.c - every tensor of a model in one buffer, gradients in a second,
 * with named views; loading and saving them as safetensors. */
#include "internal.h"
#include "nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VIEW_ALIGN 16 /* floats: views start on 64-byte boundaries */

typedef struct {
    char *name;
    int ndim;
    int64_t shape[LSTM_MAX_DIMS];
    size_t numel;
    size_t offset; /* in floats */
    int sparse;    /* rows looked up by index, like nn.Embedding(sparse=True) */
    /* int8 (lstm_params_quantize, or NAME.int8 and NAME.scale in a file):
     * q (rows, cols) and scale (rows) are what the tensor computes with,
     * its floats hold scale * q; made again from the floats when they
     * have been written since (qversion) */
    int8_t *q;
    float *qscale;
    void *qbuf;
    nn_q8_mat qm;
    uint64_t qversion;
} tensor_view;

struct lstm_params {
    tensor_view *v;
    int n, cap;
    size_t total; /* floats, padding included */
    float *data, *grad;
    uint64_t version;
};

static void q8_free(tensor_view *v);
static int q8_alloc(tensor_view *v);
static void q8_settle(lstm_params *p, tensor_view *v);
static lstm_status q8_find(const lstm_st *st, const char *name, const tensor_view *v,
                           const lstm_st_tensor **qt, const lstm_st_tensor **sc,
                           lstm_error *err);

lstm_params *lstm_params_create(void) { return calloc(1, sizeof(lstm_params)); }

void lstm_params_free(lstm_params *p) {
    if (!p)
        return;
    for (int i = 0; i < p->n; i++) {
        free(p->v[i].name);
        free(p->v[i].q);
        free(p->v[i].qscale);
        lstm_free_aligned(p->v[i].qbuf);
    }
    free(p->v);
    lstm_free_aligned(p->data);
    lstm_free_aligned(p->grad);
    free(p);
}

int lstm_params_declare(lstm_params *p, const char *name, int ndim, const int64_t *shape,
                        lstm_error *err) {
    if (p->data) {
        lstm_fail(err, LSTM_ERR_STATE, "cannot declare '%s': parameters already allocated", name);
        return -1;
    }
    if (!name || !*name) {
        lstm_fail(err, LSTM_ERR_INVALID, "a parameter needs a name");
        return -1;
    }
    if (lstm_params_find(p, name) >= 0) {
        lstm_fail(err, LSTM_ERR_INVALID, "parameter '%s' declared twice", name);
        return -1;
    }
    if (ndim < 0 || ndim > LSTM_MAX_DIMS) {
        lstm_fail(err, LSTM_ERR_INVALID, "parameter '%s': %d dimensions", name, ndim);
        return -1;
    }
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            lstm_fail(err, LSTM_ERR_INVALID, "parameter '%s': negative dimension", name);
            return -1;
        }
        numel = lstm_mul_size(numel, (size_t)shape[i]);
    }
    if (numel == (size_t)-1 || numel > ((size_t)1 << 40)) {
        lstm_fail(err, LSTM_ERR_INVALID, "parameter '%s' is too large", name);
        return -1;
    }
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 16;
        tensor_view *v = realloc(p->v, sizeof *v * (size_t)cap);
        if (!v) {
            lstm_fail(err, LSTM_ERR_NOMEM, "out of memory declaring '%s'", name);
            return -1;
        }
        p->v = v;
        p->cap = cap;
    }
    tensor_view *t = &p->v[p->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) {
        lstm_fail(err, LSTM_ERR_NOMEM, "out of memory declaring '%s'", name);
        return -1;
    }
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->numel = numel;
    t->offset = p->total;
    p->total += (numel + VIEW_ALIGN - 1) / VIEW_ALIGN * VIEW_ALIGN;
    return p->n++;
}

lstm_status lstm_params_alloc(lstm_params *p, lstm_error *err) {
    if (p->data)
        return lstm_fail(err, LSTM_ERR_STATE, "parameters already allocated");
    size_t bytes = lstm_mul_size(p->total ? p->total : 1, sizeof(float));
    p->data = lstm_alloc_aligned(bytes);
    p->grad = lstm_alloc_aligned(bytes);
    if (!p->data || !p->grad) {
        lstm_free_aligned(p->data);
        lstm_free_aligned(p->grad);
        p->data = p->grad = NULL;
        return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory allocating %zu parameters",
                         p->total);
    }
    memset(p->data, 0, bytes);
    memset(p->grad, 0, bytes);
    p->version++;
    return lstm_ok(err);
}

int lstm_params_count(const lstm_params *p) { return p->n; }

int lstm_params_find(const lstm_params *p, const char *name) {
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->v[i].name, name) == 0)
            return i;
    return -1;
}

const char *lstm_params_name(const lstm_params *p, int i) { return p->v[i].name; }
int lstm_params_ndim(const lstm_params *p, int i) { return p->v[i].ndim; }
const int64_t *lstm_params_shape(const lstm_params *p, int i) { return p->v[i].shape; }
size_t lstm_params_numel(const lstm_params *p, int i) { return p->v[i].numel; }
void lstm_params_set_sparse(lstm_params *p, int i, int sparse) {
    if (i >= 0 && i < p->n)
        p->v[i].sparse = sparse != 0 && p->v[i].ndim == 2;
}
int lstm_params_sparse(const lstm_params *p, int i) {
    return i >= 0 && i < p->n && p->v[i].sparse;
}
float *lstm_params_data(lstm_params *p, int i) { return p->data ? p->data + p->v[i].offset : NULL; }
float *lstm_params_grad(lstm_params *p, int i) { return p->grad ? p->grad + p->v[i].offset : NULL; }
size_t lstm_params_size(const lstm_params *p) { return p->total; }
float *lstm_params_data_all(lstm_params *p) { return p->data; }
float *lstm_params_grad_all(lstm_params *p) { return p->grad; }

void lstm_params_zero_grad(lstm_params *p) {
    if (p->grad)
        memset(p->grad, 0, sizeof(float) * p->total);
}

/* The version: every write of values through the library bumps it (here,
 * in the functions below, or in lstm_params_data_mut for the library's
 * other writers), so a copy made from the values (an LSTM's packed weights)
 * is made again at its next use. Only raw writes through the pointers of
 * lstm_params_data need lstm_params_touch. */
uint64_t lstm_params_version(const lstm_params *p) { return p->version; }
void lstm_params_touch(lstm_params *p) { p->version++; }

float *lstm_params_data_mut(lstm_params *p, int i) {
    p->version++;
    return lstm_params_data(p, i);
}

float *lstm_params_data_all_mut(lstm_params *p) {
    p->version++;
    return p->data;
}

lstm_status lstm_params_set(lstm_params *p, int i, const float *src, size_t n, lstm_error *err) {
    if (!p || i < 0 || i >= p->n)
        return lstm_fail(err, LSTM_ERR_INVALID, "lstm_params_set: no tensor %d (there are %d)", i,
                         p ? p->n : 0);
    if (!p->data)
        return lstm_fail(err, LSTM_ERR_STATE, "lstm_params_set '%s': parameters not allocated",
                         p->v[i].name);
    if (n != p->v[i].numel)
        return lstm_fail(err, LSTM_ERR_SHAPE, "lstm_params_set '%s': %zu values, expected %zu",
                         p->v[i].name, n, p->v[i].numel);
    if (!src && n)
        return lstm_fail(err, LSTM_ERR_INVALID, "lstm_params_set '%s': src is NULL",
                         p->v[i].name);
    float *dst = lstm_params_data_mut(p, i);
    if (n)
        memcpy(dst, src, sizeof(float) * n);
    return lstm_ok(err);
}

static int same_shape(const tensor_view *a, const tensor_view *b) {
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return 0;
    return 1;
}

/* Both allocated, with the same names and shapes (in any order). */
static lstm_status check_alike(const lstm_params *dst, const lstm_params *src, lstm_error *err) {
    if (!dst->data || !src->data)
        return lstm_fail(err, LSTM_ERR_STATE, "parameters not allocated");
    if (dst->n != src->n)
        return lstm_fail(err, LSTM_ERR_SHAPE, "parameter sets differ (%d and %d tensors)", dst->n,
                         src->n);
    for (int i = 0; i < dst->n; i++) {
        int j = lstm_params_find(src, dst->v[i].name);
        if (j < 0 || !same_shape(&dst->v[i], &src->v[j]))
            return lstm_fail(err, LSTM_ERR_SHAPE, "parameter '%s' missing or of another shape",
                             dst->v[i].name);
    }
    return LSTM_OK;
}

lstm_status lstm_params_copy(lstm_params *dst, const lstm_params *src, lstm_error *err) {
    lstm_status s = check_alike(dst, src, err);
    if (s)
        return s;
    for (int i = 0; i < dst->n; i++) {
        int j = lstm_params_find(src, dst->v[i].name);
        memcpy(dst->data + dst->v[i].offset, src->data + src->v[j].offset,
               sizeof(float) * dst->v[i].numel);
    }
    dst->version++;
    return lstm_ok(err);
}

lstm_status lstm_params_ema(lstm_params *avg, const lstm_params *p, float decay,
                            lstm_error *err) {
    if (!(decay >= 0 && decay <= 1))
        return lstm_fail(err, LSTM_ERR_INVALID, "the average's decay %g is not in [0, 1]",
                         (double)decay);
    lstm_status s = check_alike(avg, p, err);
    if (s)
        return s;
    float keep = decay, take = 1 - decay;
    for (int i = 0; i < avg->n; i++) {
        float *a = avg->data + avg->v[i].offset;
        const float *x = p->data + p->v[lstm_params_find(p, avg->v[i].name)].offset;
        for (size_t k = 0; k < avg->v[i].numel; k++)
            a[k] = keep * a[k] + take * x[k];
    }
    avg->version++;
    return lstm_ok(err);
}

/* "(4, 3)" into buf, for messages. */
static const char *shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t at = 0;
    at += (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < ndim && at < n; i++)
        at += (size_t)snprintf(buf + at, n - at, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (at < n)
        snprintf(buf + at, n - at, ")");
    return buf;
}

/* NAME.int8 and NAME.scale: the stored q and scales, or, when the floats
 * were written since, the floats quantized now. */
static lstm_status q8_write(const lstm_params *p, int i, lstm_st_writer *w, const char *name,
                            lstm_error *err) {
    const tensor_view *v = &p->v[i];
    int N = (int)v->shape[0], K = (int)v->shape[1];
    int8_t *q = v->q;
    float *sc = v->qscale;
    if (v->qversion != p->version) {
        q = malloc(v->numel);
        sc = malloc(sizeof(float) * (size_t)N);
        if (!q || !sc) {
            free(q);
            free(sc);
            return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory writing '%s'", name);
        }
        nn_q8_quantize_weights(q, sc, p->data + v->offset, N, K);
    }
    char qn[540], sn[540];
    snprintf(qn, sizeof qn, "%s.int8", name);
    snprintf(sn, sizeof sn, "%s.scale", name);
    int64_t rows = N;
    lstm_status s = lstm_st_writer_add(w, qn, LSTM_DT_I8, 2, v->shape, q, err);
    if (!s)
        s = lstm_st_writer_add(w, sn, LSTM_DT_F32, 1, &rows, sc, err);
    if (q != v->q) {
        free(q);
        free(sc);
    }
    return s;
}

lstm_status lstm_params_write(const lstm_params *p, lstm_st_writer *w, const char *prefix,
                              lstm_error *err) {
    if (!p->data)
        return lstm_fail(err, LSTM_ERR_STATE, "parameters not allocated");
    size_t plen = strlen(prefix ? prefix : "");
    for (int i = 0; i < p->n; i++) {
        size_t nlen = strlen(p->v[i].name);
        char *full = malloc(plen + nlen + 1);
        if (!full)
            return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory");
        memcpy(full, prefix ? prefix : "", plen);
        memcpy(full + plen, p->v[i].name, nlen + 1);
        lstm_status s = p->v[i].q ? q8_write(p, i, w, full, err)
                                  : lstm_st_writer_add(w, full, LSTM_DT_F32, p->v[i].ndim,
                                                       p->v[i].shape, p->data + p->v[i].offset,
                                                       err);
        free(full);
        if (s)
            return s;
        if (p->v[i].q &&
            (s = lstm_st_writer_meta(w, "lstm.quantization", "int8-rowwise", err)))
            return s;
    }
    return lstm_ok(err);
}

/* NAME.int8 or NAME.scale of a tensor NAME of p. */
static int q8_part_of(const lstm_params *p, const char *n) {
    size_t len = strlen(n);
    char base[512];
    for (int k = 0; k < 2; k++) {
        const char *suf = k ? ".scale" : ".int8";
        size_t sl = strlen(suf);
        if (len > sl && len - sl < sizeof base && strcmp(n + len - sl, suf) == 0) {
            memcpy(base, n, len - sl);
            base[len - sl] = 0;
            if (lstm_params_find(p, base) >= 0)
                return 1;
        }
    }
    return 0;
}

lstm_status lstm_params_read(lstm_params *p, const lstm_st *st, const char *prefix, int strict,
                             lstm_error *err) {
    if (!p->data)
        return lstm_fail(err, LSTM_ERR_STATE, "parameters not allocated");
    const char *file = lstm_st_name(st);
    if (!prefix)
        prefix = "";
    size_t plen = strlen(prefix);
    /* Check everything first, so a failed load leaves the values as they were. */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < p->n; i++) {
            const tensor_view *v = &p->v[i];
            char name[512];
            if ((size_t)snprintf(name, sizeof name, "%s%s", prefix, v->name) >= sizeof name)
                return lstm_fail(err, LSTM_ERR_INVALID, "tensor name too long: %s%s", prefix,
                                 v->name);
            const lstm_st_tensor *t = lstm_st_find(st, name);
            char a[128], b[128];
            const lstm_st_tensor *qt = NULL, *qs = NULL;
            if (!t) {
                lstm_status s = q8_find(st, name, v, &qt, &qs, err);
                if (s && qt)
                    return s;
            }
            if (!t && qt) {
                if (pass == 1) {
                    tensor_view *vm = &p->v[i];
                    if (q8_alloc(vm))
                        return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory reading '%s'", name);
                    memcpy(vm->q, qt->data, v->numel);
                    memcpy(vm->qscale, qs->data, sizeof(float) * (size_t)v->shape[0]);
                    lstm_params_data_mut(p, i);
                    q8_settle(p, vm);
                }
                continue;
            }
            if (!t)
                return lstm_fail(err, LSTM_ERR_SHAPE, "%s: missing tensor '%s' %s", file, name,
                                 shape_str(a, sizeof a, v->ndim, v->shape));
            if (t->ndim != v->ndim || memcmp(t->shape, v->shape, sizeof(int64_t) * v->ndim))
                return lstm_fail(err, LSTM_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected %s",
                                 file, name, shape_str(a, sizeof a, t->ndim, t->shape),
                                 shape_str(b, sizeof b, v->ndim, v->shape));
            if (t->dtype != LSTM_DT_F32 && t->dtype != LSTM_DT_F16 &&
                t->dtype != LSTM_DT_BF16 && t->dtype != LSTM_DT_F64)
                return lstm_fail(err, LSTM_ERR_SHAPE,
                                 "%s: tensor '%s' has dtype %s, expected a float type", file,
                                 name, lstm_dtype_name(t->dtype));
            if (pass == 1) {
                /* marked changed before it is written: even a conversion
                 * failing halfway leaves no packed copy looking current */
                q8_free(&p->v[i]); /* a float tensor computes in float */
                float *dst = lstm_params_data_mut(p, i);
                lstm_status s = lstm_st_read_f32(st, t, dst, v->numel, err);
                if (s)
                    return s;
            }
        }
        if (pass == 1)
            for (int i = 0; i < p->n; i++)
                p->v[i].qversion = p->version; /* read as they are */
        if (pass == 0 && strict) {
            for (size_t i = 0; i < lstm_st_count(st); i++) {
                const char *n = lstm_st_tensor_at(st, i)->name;
                if (strncmp(n, prefix, plen) == 0 && lstm_params_find(p, n + plen) < 0 &&
                    !q8_part_of(p, n + plen))
                    return lstm_fail(err, LSTM_ERR_SHAPE, "%s: unexpected tensor '%s'", file, n);
            }
        }
    }
    return lstm_ok(err);
}

/* ------------------------------------------------------------------ */
/* int8 tensors (docs/DESIGN.md, "int8"). */

static void q8_free(tensor_view *v) {
    free(v->q);
    free(v->qscale);
    lstm_free_aligned(v->qbuf);
    v->q = NULL;
    v->qscale = NULL;
    v->qbuf = NULL;
}

static int q8_alloc(tensor_view *v) {
    int N = (int)v->shape[0], K = (int)v->shape[1];
    if (v->q)
        return 0;
    v->q = malloc(v->numel ? v->numel : 1);
    v->qscale = malloc(sizeof(float) * (size_t)(N ? N : 1));
    v->qbuf = lstm_alloc_aligned(nn_q8_mat_size(N, K));
    if (!v->q || !v->qscale || !v->qbuf) {
        q8_free(v);
        return -1;
    }
    return 0;
}

/* The floats become scale * q, and the packed copy is made. */
static void q8_settle(lstm_params *p, tensor_view *v) {
    int N = (int)v->shape[0], K = (int)v->shape[1];
    float *w = p->data + v->offset;
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++)
            w[(size_t)n * K + k] = (float)v->q[(size_t)n * K + k] * v->qscale[n];
    nn_q8_mat_pack(&v->qm, v->qbuf, v->q, v->qscale, N, K);
}

static lstm_status q8_check_shape(const tensor_view *v, lstm_error *err) {
    if (v->ndim != 2 || v->shape[0] < 1 || v->shape[1] < 1)
        return lstm_fail(err, LSTM_ERR_SHAPE, "'%s': only a matrix (rows, cols) is quantized",
                         v->name);
    if (v->shape[1] > NN_Q8_MAX_K || v->shape[0] > (1 << 24))
        return lstm_fail(err, LSTM_ERR_UNSUPPORTED,
                         "'%s': rows of %lld columns (at most %d: longer ones could overflow "
                         "the int32 sums)",
                         v->name, (long long)v->shape[1], NN_Q8_MAX_K);
    return LSTM_OK;
}

lstm_status lstm_params_quantize(lstm_params *p, int i, lstm_error *err) {
    if (!p || i < 0 || i >= p->n)
        return lstm_fail(err, LSTM_ERR_INVALID, "lstm_params_quantize: no tensor %d", i);
    tensor_view *v = &p->v[i];
    lstm_status s;
    if (!p->data)
        return lstm_fail(err, LSTM_ERR_STATE, "'%s': parameters not allocated", v->name);
    if ((s = q8_check_shape(v, err)))
        return s;
    const float *w = p->data + v->offset;
    for (size_t j = 0; j < v->numel; j++)
        if (!isfinite(w[j]))
            return lstm_fail(err, LSTM_ERR_NONFINITE, "'%s' holds %s at index %zu", v->name,
                             isnan(w[j]) ? "NaN" : "an infinity", j);
    if (q8_alloc(v))
        return lstm_fail(err, LSTM_ERR_NOMEM, "out of memory quantizing '%s'", v->name);
    nn_q8_quantize_weights(v->q, v->qscale, w, (int)v->shape[0], (int)v->shape[1]);
    lstm_params_data_mut(p, i);
    q8_settle(p, v);
    v->qversion = p->version;
    return lstm_ok(err);
}

int lstm_params_is_int8(const lstm_params *p, int i) {
    return p && i >= 0 && i < p->n && p->v[i].q != NULL;
}

const nn_q8_mat *lstm_params_q8(lstm_params *p, int i, int *failed) {
    tensor_view *v = &p->v[i];
    *failed = 0;
    if (!v->q)
        return NULL;
    if (v->qversion != p->version) {
        /* values were written since: keep q if they are still scale * q,
         * else quantize them again */
        int N = (int)v->shape[0], K = (int)v->shape[1];
        const float *w = p->data + v->offset;
        int same = 1;
        for (size_t j = 0; same && j < v->numel; j++)
            same = w[j] == (float)v->q[j] * v->qscale[j / (size_t)K];
        if (!same) {
            nn_q8_quantize_weights(v->q, v->qscale, w, N, K);
            q8_settle(p, v);
        }
        v->qversion = p->version;
    }
    return &v->qm;
}

/* Checks the int8 form NAME.int8 / NAME.scale of tensor v in st; fills
 * *qt and *st_scale. */
static lstm_status q8_find(const lstm_st *st, const char *name, const tensor_view *v,
                           const lstm_st_tensor **qt, const lstm_st_tensor **sc,
                           lstm_error *err) {
    const char *file = lstm_st_name(st);
    char qn[540], sn[540];
    snprintf(qn, sizeof qn, "%s.int8", name);
    snprintf(sn, sizeof sn, "%s.scale", name);
    *qt = lstm_st_find(st, qn);
    *sc = lstm_st_find(st, sn);
    if (!*qt)
        return LSTM_ERR_SHAPE; /* no int8 form: the caller reports the float one missing */
    lstm_status s = q8_check_shape(v, err);
    if (s)
        return s;
    if ((*qt)->dtype != LSTM_DT_I8 || (*qt)->ndim != 2 || (*qt)->shape[0] != v->shape[0] ||
        (*qt)->shape[1] != v->shape[1])
        return lstm_fail(err, LSTM_ERR_SHAPE, "%s: tensor '%s' must be I8 (%lld, %lld)", file, qn,
                         (long long)v->shape[0], (long long)v->shape[1]);
    if (!*sc || (*sc)->dtype != LSTM_DT_F32 || (*sc)->ndim != 1 ||
        (*sc)->shape[0] != v->shape[0])
        return lstm_fail(err, LSTM_ERR_SHAPE, "%s: '%s' needs '%s', F32 (%lld)", file, qn, sn,
                         (long long)v->shape[0]);
    const int8_t *q = (*qt)->data;
    for (size_t j = 0; j < (*qt)->numel; j++)
        if (q[j] == -128)
            return lstm_fail(err, LSTM_ERR_FORMAT,
                             "%s: '%s' holds -128 at index %zu (int8 weights are in [-127, 127])",
                             file, qn, j);
    for (size_t j = 0; j < (*sc)->numel; j++) {
        float f;
        memcpy(&f, (const char *)(*sc)->data + 4 * j, 4);
        if (!(f >= 0 && f <= 3.4028235e38f))
            return lstm_fail(err, LSTM_ERR_FORMAT,
                             "%s: '%s'[%zu] = %g: a scale must be finite and >= 0", file, sn, j,
                             (double)f);
    }
    return LSTM_OK;
}
