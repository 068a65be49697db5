/*
 * nn.h - the numeric core: layers and the LSTM as forward/backward pairs over
 * buffers of `real`, and the kernel table they compute with.
 *
 * `real` is float in the library. The files that include this header are
 * also compiled with -DLSTM_REAL=double into the gradient-check test, which
 * compares every backward with central finite differences in double.
 *
 * Sizes: T steps, B batch, I input, H hidden, P projection, Hout output per
 * direction (P if P > 0 else H), L layers, D directions, G = 4H gate rows.
 */
#ifndef LSTM_NN_H
#define LSTM_NN_H

#include "lstm.h"

#include <stddef.h>
#include <stdint.h>

#ifndef LSTM_REAL
#define LSTM_REAL float
#define NN_HAVE_Q8 1 /* the int8 products exist in float builds only */
#endif
typedef LSTM_REAL real;

/* ------------------------------------------------------------------ */
/* Threads: a pool of workers that run one job at a time, the caller being
 * thread 0. Kernels split their work by thread id and may meet at
 * nn_pool_barrier. A NULL pool is one thread.                          */

typedef struct nn_pool nn_pool;
typedef void (*nn_pool_fn)(void *arg, int tid, int nthreads);

nn_pool *nn_pool_create(int nthreads);
void nn_pool_free(nn_pool *pool);
int nn_pool_size(const nn_pool *pool);
/* Runs fn(arg, tid, n) on every thread and returns when all are done. */
void nn_pool_run(nn_pool *pool, nn_pool_fn fn, void *arg);
/* Inside a job run on nthreads threads: waits until all have arrived. A
 * job called directly (nthreads = 1) passes straight through. */
void nn_pool_barrier(nn_pool *pool, int tid, int nthreads);
/* The half-open range [lo, hi) of n items for thread tid, in multiples of
 * `align` items (except the last range). */
void nn_split(int n, int align, int tid, int nthreads, int *lo, int *hi);

/* ------------------------------------------------------------------ */
/* Kernels. A table of functions; the reference table is plain loops (and
 * exists in float and double), the fast tables pack weights for their own
 * microkernels and run on the pool.                                     */

typedef struct nn_ctx nn_ctx;

/* The options of ONNX's LSTM that torch.nn.LSTM lacks (all zero: PyTorch's
 * cell, and the kernels' unchanged fast path). With any of them set:
 *     pre_i += p_i * cp,  pre_f += p_f * cp     (peep: (3H) p_i, p_f, p_o)
 *     each pre clamped to [-clip, clip]         (clip > 0; c itself is not)
 *     i = sigmoid(pre_i), f = cifg ? 1 - i : sigmoid(pre_f), g = tanh(pre_g)
 *     c = f * cp + i * g
 *     pre_o += p_o * c,  o = sigmoid(pre_o),  h = o * tanh(c)
 * and g keeps the pre-activations (before the clamp, peepholes included)
 * rather than the activations: the backward recomputes the activations and
 * knows exactly where the clamp was active. ONNX Runtime's CPU kernel is
 * the reference for where the clip applies (docs/DESIGN.md). */
typedef struct {
    const real *peep; /* (3H) or NULL */
    real clip;        /* > 0, or 0: none */
    int cifg;         /* 1: coupled input and forget gates, f = 1 - i */
} nn_cell_opts;

static inline int nn_cell_opts_on(const nn_cell_opts *o) {
    return o->peep || o->clip > 0 || o->cifg;
}

/* One LSTM cell step for M rows (the active rows of a batch):
 *     pre = gin + bias + x W_ih^T + hp W_hh^T      (M,4H), gates i,f,g,o
 *     i,f,o = sigmoid(pre), g = tanh(pre)
 *     c = f * cp + i * g;  h = o * tanh(c)
 * x and W_ih are for the step API, which fuses the input product (K1 = I);
 * a whole-sequence forward computes gin beforehand and passes K1 = 0.     */
typedef struct {
    int M, H;
    int K1, K2;       /* columns of x (0 when absent), of hp (Hout) */
    const real *x;    /* (M,K1) row stride ldx, or NULL */
    int ldx;
    const real *hp;   /* (M,K2) rows contiguous */
    const real *cp;   /* (M,H) */
    const real *gin;  /* (M,4H) or NULL */
    const real *bias; /* (4H) or NULL */
    const real *w;    /* weights packed by cell_pack(W_ih, W_hh) */
    real *g;          /* (M,4H) out: i, f, g, o after their nonlinearity; may equal gin */
    real *c;          /* (M,H) out */
    real *h;          /* (M,H) out */
    real *y;          /* (M,H) row stride ldy: a second copy of h (the layer output), or NULL */
    int ldy;
    const real *gin_next; /* the next step's gin (M_next rows), to prefetch; or NULL */
    int M_next;
    nn_cell_opts opt; /* zero: PyTorch's cell */
} nn_cell_fwd;

/* The backward of one step for M rows, given dr = dL/dh (of o * tanh(c),
 * before any projection; plus dy when given) and the carried dL/dc:
 *     dc  += dr * o * (1 - tanh(c)^2)
 *     do = dr * tanh(c) * o (1 - o)    di = dc * g * i (1 - i)
 *     dg = dc * i * (1 - g^2)          df = dc * cp * f (1 - f)
 *     dc_prev = dc * f;  dhp = dpre W_hh                                 */
typedef struct {
    int M, H, Hout;
    real *g;          /* (M,4H) in: activations; out: dL/dpre (in place) */
    const real *c;    /* (M,H) c of this step */
    const real *cp;   /* (M,H) c of the previous step */
    const real *dr;   /* (M,H) */
    const real *dy;   /* (M,H) row stride ldy, added to dr; or NULL */
    int ldy;
    real *dc;         /* (M,H) in: carried from t+1; out: carried to t-1 */
    real *dhp;        /* (M,Hout) out: dL/dh_prev, overwritten; may be the same buffer as dr */
    const real *w;    /* W_hh packed by pack_nn(W_hh, K = 4H, N = Hout) */
    real *db;         /* (4H) += column sums of dL/dpre, or NULL */
    /* the next step's g, cp and dy (M_next rows), to prefetch; or NULL */
    const real *g_next, *cp_next, *dy_next;
    int M_next;
    nn_cell_opts opt; /* as the forward's; then g holds pre-activations */
    real *dpeep;      /* (3H) += the peephole gradients, when opt.peep; or NULL */
} nn_cell_bwd;

typedef struct {
    const char *name;
    /* C (M,N) = alpha op(A) op(B) + beta C, row-major; op(X) = X^T when tX. */
    void (*gemm)(const nn_ctx *ctx, int tA, int tB, int M, int N, int K, real alpha,
                 const real *A, int lda, const real *B, int ldb, real beta, real *C, int ldc);
    /* The same with float multiplies where gemm's are bfloat16 (a context
     * of the bfloat16 set sets it: the AVX-512 set's); NULL: gemm is. */
    void (*gemm_float)(const nn_ctx *ctx, int tA, int tB, int M, int N, int K, real alpha,
                       const real *A, int lda, const real *B, int ldb, real beta, real *C,
                       int ldc);
    /* C1 (M,N1) += A^T B1 and C2 (M,N2) += A^T B2 with A (K,M): the two
     * weight gradients of an LSTM direction, reading A once. */
    void (*gemm_tn2)(const nn_ctx *ctx, int M, int K, const real *A, int lda, int N1,
                     const real *B1, int ldb1, real *C1, int ldc1, int N2, const real *B2,
                     int ldb2, real *C2, int ldc2);
    /* Packed right-hand matrices for products with few rows (one step):
     * pack_nt packs W (N,K) to use as W^T, pack_nn packs W (K,N). */
    size_t (*pack_size)(int N, int K);
    void (*pack_nt)(real *dst, const real *W, int N, int K);
    void (*pack_nn)(real *dst, const real *W, int K, int N);
    /* C (M,N) = A (M,K) Wp + beta C, A rows of stride lda. */
    void (*pgemm)(const nn_ctx *ctx, int M, int N, int K, const real *A, int lda,
                  const real *Wp, real beta, real *C, int ldc);
    /* Cell weights [W_ih (4H,K1) | W_hh (4H,K2)] (W_ih NULL when K1 = 0). */
    size_t (*cell_pack_size)(int H, int K1, int K2);
    void (*cell_pack)(real *dst, const real *w_ih, const real *w_hh, int H, int K1, int K2);
    void (*cell_forward)(const nn_ctx *ctx, const nn_cell_fwd *a);
    void (*cell_backward)(const nn_ctx *ctx, const nn_cell_bwd *a);
    /* Row by row, out (N,C) = z - log(sum(exp(z))); out may be z. */
    void (*log_softmax)(const nn_ctx *ctx, real *out, const real *z, int N, int C);
    /* The cross-entropy gradient from log-probabilities: for each row whose
     * target is not `ignore`, d += scale (exp(logp) - onehot(target)). */
    void (*xent_backward)(const nn_ctx *ctx, real *d, const real *logp, const int32_t *targets,
                          int N, int C, int ignore, real scale);
} nn_kernels;

/* Working memory a kernel may borrow during one call (not per step). */
typedef struct {
    void *p;
    size_t cap;
} nn_scratch;

struct nn_ctx {
    const nn_kernels *k;
    nn_pool *pool;       /* NULL: one thread */
    nn_scratch *scratch; /* NULL: kernels allocate for themselves */
    const struct nn_q8_kernels *q8; /* the int8 products; NULL: the reference */
};

/* A buffer of at least n bytes, 64-byte aligned, from ctx's scratch when it
 * has one (grown if needed); NULL when out of memory. Release it with
 * nn_scratch_release (which frees only what was not ctx's). */
void *nn_scratch_get(const nn_ctx *ctx, size_t n);
void nn_scratch_release(const nn_ctx *ctx, void *p);

extern const nn_kernels nn_kernels_ref;

/* The pointwise parts of the reference cell, shared with kernels that
 * reuse them for rows or units they do not vectorise. */
void nn_cell_pointwise_forward(int M, int H, real *g, const real *cp, real *c, real *h, int u0,
                               int u1);
void nn_cell_pointwise_backward(const nn_cell_bwd *a, int u0, int u1);
/* The same with a->opt / opt set (nn_cell_opts): g in, pre-activations out. */
void nn_cell_pointwise_forward_opts(int M, int H, const nn_cell_opts *opt, real *g,
                                    const real *cp, real *c, real *h, int u0, int u1);
void nn_cell_pointwise_backward_opts(const nn_cell_bwd *a, int u0, int u1);

/* ------------------------------------------------------------------ */
/* int8 products (kernels_int8.c; the file format in docs/DESIGN.md,
 * "int8"). A weight matrix W (N,K) is stored as q (N,K) in [-127, 127]
 * with a float scale per row, W[n][k] ~ scale[n] q[n][k]. An activation
 * row a (K) is quantized as it comes: s_a = max|a| / 127, q_a =
 * rne(a * (127 / max|a|)); the product row is the exact int32 sum
 * acc = sum_k q_a[k] q[n][k], then (float)acc * (s_a * scale[n]).      */

/* W packed alike for every int8 kernel set: Np = N rounded up to 16,
 * Kp = K rounded up to 4; blocks of 16 rows, each of Kp/4 groups of
 * 16 rows x 4 columns: byte [b][g][r][j] = q[16b + r][4g + j], zero in
 * the padding (a VNNI dot product's layout: one 32-bit lane per row). */
typedef struct nn_q8_mat {
    int N, K, Np, Kp;
    const float *scale;    /* (Np), 0 in the padding */
    const int32_t *rowsum; /* (Np) sum_k q[n][k]: the u8 offset's correction */
    const int8_t *blocks;  /* (Np * Kp) */
} nn_q8_mat;

/* Longest row whose exact sums fit in int32: 127 * 127 * K < 2^31. */
#define NN_Q8_MAX_K 131072

/* Bytes of the buffer nn_q8_mat_pack needs for an (N,K) matrix. */
size_t nn_q8_mat_size(int N, int K);
/* Packs q (N,K) row-major and scale (N) into buf (64-byte aligned, of
 * nn_q8_mat_size bytes) and points m into it. */
void nn_q8_mat_pack(nn_q8_mat *m, void *buf, const int8_t *q, const float *scale, int N, int K);
/* Quantizes W (N,K) per row: scale[n] = max_k |W[n][k]| / 127 (0 for a
 * zero row), q = rne(W / scale) clamped to [-127, 127]. */
void nn_q8_quantize_weights(int8_t *q, float *scale, const float *w, int N, int K);
/* Quantizes one activation row a (K) into q (Kp bytes, zero past K) and
 * returns s_a (0 for a zero row; NaN when a holds a NaN or an infinity,
 * so that the products come out NaN as in float). */
float nn_q8_quantize_row(int8_t *q, const float *a, int K, int Kp);

/* One call of a kernel: rows [0, M) of the quantized activations (as the
 * set's quantize_row writes them: see u8 below) times
 * blocks [b0, b1) of w. With acc, writes the raw sums acc[m][n] (columns
 * n of the blocks, N and beyond included); otherwise writes
 * C[m][n] = (float)acc * (sa[m] * scale[n]), added to C when accumulate,
 * for n < N. Every kernel set gives the same bits. */
typedef struct {
    int M;
    const int8_t *qa; /* (M, Kp) */
    int lda;
    const float *sa;  /* (M) */
    const nn_q8_mat *w;
    int32_t *acc;     /* (M, Np) row stride ldacc, or NULL */
    int ldacc;
    float *C;         /* (M, N) row stride ldc */
    int ldc;
    int accumulate;
} nn_q8_gemm_args;

typedef struct nn_q8_kernels {
    const char *name;
    void (*gemm)(const nn_q8_gemm_args *a, int b0, int b1);
    /* nn_q8_quantize_row, the same bits; with u8 set, each byte is stored
     * as q_a + 128 (q_a xor 0x80), the unsigned operand VPDPBUSD takes */
    float (*quantize_row)(int8_t *q, const float *a, int K, int Kp);
    int u8; /* the activations gemm reads are quantize_row's: offset by 128 */
} nn_q8_kernels;

extern const nn_q8_kernels nn_q8_kernels_ref;
/* The int8 kernel sets this build has and this processor runs, best first
 * (the reference last); i from 0, NULL past the last. */
const nn_q8_kernels *nn_q8_kernels_at(int i);
/* The write of one product's result, shared by every set so that their
 * floats agree bit for bit: C[n] (+)= (float)acc[r] * (s_a * scale[n]). */
void nn_q8_store(float *C, const int32_t *acc, float sa, const float *scale, int n, int accumulate);

/* One term of a product: A (M,K) rows of stride lda, times w^T. */
typedef struct {
    const real *A;
    int lda;
    const nn_q8_mat *w;
} nn_q8_term;

/* C (M,N) = [C +] sum of the terms' products, in order, each quantized by
 * rows as above; with ctx's int8 kernels on its pool. All terms have the
 * same N. */
void nn_q8_matmul(const nn_ctx *ctx, real *C, int ldc, int accumulate, int M,
                  const nn_q8_term *terms, int nterms);

/* ------------------------------------------------------------------ */
/* Layers (the public lstm_*_forward/backward functions call these).    */

void nn_embedding_forward(real *out, const int32_t *ids, const real *table, int N, int E);
void nn_embedding_backward(real *dtable, const real *dout, const int32_t *ids, int N, int E);
void nn_linear_forward(const nn_ctx *ctx, real *out, const real *in, const real *w,
                       const real *b, int N, int K, int O);
void nn_linear_backward(const nn_ctx *ctx, real *din, real *dw, real *db, const real *dout,
                        const real *in, const real *w, int N, int K, int O);
/* ctx NULL: the reference kernels on this thread. */
double nn_cross_entropy_forward(const nn_ctx *ctx, real *logp, const real *logits,
                                const int32_t *targets, int N, int C, int ignore_index,
                                int *count);
void nn_cross_entropy_backward(const nn_ctx *ctx, real *dlogits, const real *logp,
                               const int32_t *targets, int N, int C, int ignore_index,
                               real scale);
double nn_mse_forward(const real *a, const real *b, size_t n);
void nn_mse_backward(real *da, const real *a, const real *b, size_t n, real scale);
void nn_mean_pool_forward(real *out, const real *x, const int *lengths, int T, int B, int F);
void nn_mean_pool_backward(real *dx, const real *dout, const int *lengths, int T, int B, int F);
void nn_last_pool_forward(real *out, const real *x, const int *lengths, int T, int B, int F);
void nn_last_pool_backward(real *dx, const real *dout, const int *lengths, int T, int B, int F);
void nn_dropout_forward(real *out, real *mask, const real *x, size_t n, real p, lstm_rng *rng);
void nn_dropout_backward(real *dx, const real *dout, const real *mask, size_t n);

/* A linear-chain CRF over K tags (crf.c; lstm_crf in lstm.h says what each
 * field is). */
typedef struct {
    int T, B, K;
    const real *emissions;     /* (T,B,K), row t*B+b */
    const int *lengths;        /* (B), 1..T */
    const int32_t *tags;       /* (T,B) gold tags, < 0 unknown; NULL: no loss */
    const real *transitions;   /* (K,K): [i][j] scores tag j after tag i */
    const real *start, *end;   /* (K) each */
    real *marginals;           /* (T,B,K) log P(y_t = k | x), or NULL; may be emissions */
    real *d_emissions, *d_transitions, *d_start, *d_end; /* += scale * gradient, or NULL */
    real scale;
    int force_log; /* 1: the log-space way only (the tests' reference) */
} nn_crf_args;
size_t nn_crf_work_size(int T, int B, int K);
double nn_crf(const nn_ctx *ctx, const nn_crf_args *a, void *work, int *count);

/* ------------------------------------------------------------------ */
/* The LSTM (lstm_core.c). */

typedef struct {
    int I, H, P, L, D; /* P = 0: no projection */
    int bias;
    real dropout;
    /* ONNX's options (nn_cell_opts): peephole tensors, cell clip, coupled gates */
    int peephole;
    real clip;
    int input_forget;
    int reverse; /* D = 1 only: the one direction walks t from T-1 down to 0 */
} nn_lstm_dims;

static inline int nn_lstm_hout(const nn_lstm_dims *d) { return d->P > 0 ? d->P : d->H; }
/* Whether direction dir walks time backwards: the reverse half of a
 * bidirectional layer, or the one direction of a reverse-only LSTM. */
static inline int nn_lstm_walks_back(const nn_lstm_dims *d, int dir) { return dir || d->reverse; }
static inline int nn_lstm_in(const nn_lstm_dims *d, int layer) {
    return layer == 0 ? d->I : d->D * nn_lstm_hout(d);
}

/* The tensors of one layer and direction, and where their gradients go. */
typedef struct {
    const real *w_ih, *w_hh, *b_ih, *b_hh, *w_hr; /* biases NULL without bias; w_hr NULL without P */
    real *dw_ih, *dw_hh, *db_ih, *db_hh, *dw_hr;
    const real *w_peep; /* (3H) p_i, p_f, p_o with dims->peephole, else NULL */
    real *dw_peep;
    /* int8 forms of w_ih, w_hh, w_hr: when q_hh is set, all are (q_hr with
     * P), and the forward and the step multiply by these; no backward */
    const struct nn_q8_mat *q_ih, *q_hh, *q_hr;
} nn_lstm_weights;

/* One forward (and its backward) of a whole batch of sequences. */
typedef struct {
    int T, B;
    int batch_first;
    const real *x;      /* (T,B,I) or (B,T,I) */
    const int *lengths; /* (B) in [1,T] or NULL */
    const real *h0, *c0;
    real *y, *hn, *cn;
} nn_lstm_io;

typedef struct {
    const real *dy, *dhn, *dcn;
    real *dx, *dh0, *dc0;
    /* lstm_rnn_grads' hooks (either may be NULL): layer l's weight
     * gradients are final; a chance for the caller's work between steps */
    void (*layer_done)(void *arg, int layer);
    void (*progress)(void *arg);
    void *hook_arg;
} nn_lstm_grads;

/* Working memory of one model: activations kept for backward and scratch.
 * Sized for T*B by nn_lstm_ws_reserve; no allocation during the run. */
typedef struct nn_lstm_ws nn_lstm_ws;

nn_lstm_ws *nn_lstm_ws_create(void);
void nn_lstm_ws_free(nn_lstm_ws *ws);
/* Makes room for T steps of B rows; 0 on success, -1 when out of memory.
 * direct (time-major, no lengths): the forward that follows will use the
 * caller's x and y in place, and its backward the caller's dy and dx; then
 * x must not change until the backward. */
int nn_lstm_ws_reserve(nn_lstm_ws *ws, const nn_lstm_dims *d, int T, int B, int direct);
/* Packs the recurrent weights for the kernels k (after any weight change);
 * 0 on success, -1 when out of memory. */
int nn_lstm_ws_pack(nn_lstm_ws *ws, const nn_lstm_dims *d, const nn_kernels *k,
                    const nn_lstm_weights *w);

/* w has L*D entries, layer-major (layer k, direction d at k*D + d). The
 * caller has checked the shapes and lengths. rng is used for dropout when
 * training with dims->dropout > 0. */
void nn_lstm_forward(const nn_ctx *ctx, const nn_lstm_dims *d, const nn_lstm_weights *w,
                     nn_lstm_ws *ws, const nn_lstm_io *io, int training, lstm_rng *rng);
/* Back-propagates through the last forward of ws; accumulates weight
 * gradients into w's d* pointers (those that are not NULL); consumes the
 * saved activations, so it may follow each forward once. Returns -1 (and
 * does nothing) when there is no forward to go back through, -2 when out
 * of memory for the packed weights it needs. */
int nn_lstm_backward(const nn_ctx *ctx, const nn_lstm_dims *d, const nn_lstm_weights *w,
                     nn_lstm_ws *ws, const nn_lstm_grads *g);

/* The (T,B,4H) gate buffer of layer-direction ld after the last forward
 * (rows sorted by length): activations, or pre-activations with the cell
 * options (nn_cell_opts). For tests, which check where a clip acted. */
const real *nn_lstm_ws_gates(const nn_lstm_ws *ws, int ld);

/* Packs everything nn_lstm_ws_pack does and [W_ih | W_hh] per layer for
 * the fused step kernel, and makes room for B rows; 0 on success, -1 when
 * out of memory. */
int nn_lstm_ws_pack_step(nn_lstm_ws *ws, const nn_lstm_dims *d, const nn_kernels *k,
                         const nn_lstm_weights *w, int B);
/* One step for B rows (D = 1): x (B,I); h (L,B,Hout), c (L,B,H) in place.
 * y (B,Hout) may be NULL. Needs nn_lstm_ws_pack_step for the current
 * weights and at least B rows. */
void nn_lstm_step(const nn_ctx *ctx, const nn_lstm_dims *d, nn_lstm_ws *ws, int B, const real *x, real *h, real *c, real *y);

#endif
