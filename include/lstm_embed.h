/*
 * lstm_embed.h - the embeddable runtime: runs a trained model (float or
 * int8-quantized) on a device without an operating system.
 *
 * It is C99 (builds with -std=c99 -pedantic), and it needs nothing but the
 * compiler: no allocation (the caller passes one arena, sized by
 * lstm_embed_arena_size, and every buffer is carved from it at init), no
 * threads, no files, no JSON, no globals, nothing from the C library but
 * memcpy and memset (and not even <math.h>: e^x is its own, see below).
 * `tests/cli/embed.sh` checks the object file's undefined symbols.
 *
 * A model is an lstm_embed_model: its configuration and pointers to
 * constant arrays. `lstm export-c MODEL OUT.c` writes one as C source, so
 * firmware links the weights in flash; a host program gets one from a
 * safetensors file with lstm_embed_host_load (lstm.h). What it computes is
 * what the library computes (docs/DESIGN.md, "The embeddable runtime"):
 *
 *   lm        embedding(byte id) -> LSTM step (state carried) -> linear:
 *             the next byte's logits, one step at a time
 *   classify  embeddings -> LSTM over the sequence -> mean over its steps
 *             -> linear: the logits of the classes
 *   tag       embeddings -> LSTM over the sentence -> linear at each step:
 *             the logits of each word's tag
 *   bare      an nn.LSTM alone (layers, proj_size, bidirectional): a
 *             streaming step, or a whole sequence
 *
 * The LSTM is PyTorch's nn.LSTM, gate order i, f, g, o:
 *   gates = (W_ih x + W_hh h) + (b_ih + b_hh)   (in this order)
 *   c' = sigmoid(f) * c + sigmoid(i) * tanh(g);  h' = sigmoid(o) * tanh(c')
 *   with proj_size: h' = W_hr (sigmoid(o) * tanh(c'))
 * A quantized matrix (int8, one float scale per row: w[r][c] = scale[r] *
 * q[r][c]) multiplies a vector a by quantizing a on the fly: m = max |a_j|;
 * m == 0 gives 0; else q_a = round-half-even(a_j * (127 / m)), the exact
 * int32 sum acc = sum q_a q_w, and the result (float)acc * ((m / 127) *
 * scale[r]) (the "int8-rowwise" format, docs/DESIGN.md, "int8"; x and h
 * are quantized separately; biases and the arithmetic between products
 * stay float; an embedding table may be float or int8).
 *
 * Arithmetic: float (IEEE single) +, -, *, / only, in a fixed order, and
 * int32 sums. Built without contraction into fused multiply-adds (GCC's
 * default under -std=c99; the Makefile passes -ffp-contract=off besides,
 * and so must a firmware build with another compiler) and on a machine whose float expressions are evaluated
 * in float (FLT_EVAL_METHOD 0: x86-64 SSE, ARM VFP, RISC-V F), a model's
 * outputs are the same bits on every such machine.
 *
 * Thread rules: a context is used by one thread at a time; a model (all
 * const) may be shared by any number of contexts.
 */
#ifndef LSTM_EMBED_H
#define LSTM_EMBED_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Exported from a shared library built with -fvisibility=hidden. */
#if defined(__GNUC__) && !defined(LSTM_EMBED_API)
#define LSTM_EMBED_API __attribute__((visibility("default")))
#elif !defined(LSTM_EMBED_API)
#define LSTM_EMBED_API
#endif

/* A matrix of rows x cols, row-major: float (w set, q and scale NULL) or
 * int8 (q and scale set, w NULL). An embedding table is a matrix of
 * vocabulary x dim. */
typedef struct {
    int rows, cols;
    const float *w;     /* rows * cols floats, or NULL */
    const int8_t *q;    /* rows * cols values in [-127, 127], or NULL */
    const float *scale; /* rows, with q */
} lstm_embed_matrix;

/* What a model computes (above). */
typedef enum {
    LSTM_EMBED_BARE = 0,
    LSTM_EMBED_LM = 1,
    LSTM_EMBED_CLASSIFY = 2,
    LSTM_EMBED_TAG = 3
} lstm_embed_task;

/* the tagger's: word, suffix1..5, shape, prefix1..4 */
#define LSTM_EMBED_MAX_FEATURES 11

/* A model. Sizes: I input, H hidden, P proj_size (0: none), Ho = P or H,
 * L layers, D = 2 when bidirectional else 1. Every array of a layer is
 * indexed k = layer * D + direction (direction 1: the reverse one). */
typedef struct lstm_embed_model {
    lstm_embed_task task;
    int input_size, hidden_size, proj_size, num_layers, bidirectional;
    const lstm_embed_matrix *w_ih; /* [L*D]: (4H, I) for layer 0, (4H, D*Ho) above */
    const lstm_embed_matrix *w_hh; /* [L*D]: (4H, Ho) */
    const lstm_embed_matrix *w_hr; /* [L*D]: (P, H); NULL without proj_size */
    const float *const *b_ih;      /* [L*D] of 4H; NULL: no biases */
    const float *const *b_hh;      /* [L*D] of 4H; NULL: no biases */
    /* the task models (not bare): */
    int nfeat;                                        /* embedded features of a token */
    lstm_embed_matrix embedding[LSTM_EMBED_MAX_FEATURES]; /* (vocabulary, dim); dims sum to I */
    lstm_embed_matrix decoder;                        /* (nout, D*Ho) */
    const float *decoder_bias;                        /* nout */
    /* tag with a CRF over its tags (lstm train tag --crf 1): crf.transitions
     * (nout, nout), crf.start_transitions and crf.end_transitions (nout
     * each); all three NULL for a softmax per word. lstm_embed_check wants
     * them finite and 2 range(transitions) + range(start) + range(end) <=
     * 70, where the library's scaled forward-backward is exact to float's
     * rounding (src/core/crf.c); the library computes beyond in logs, this
     * runtime does not. */
    const float *crf_transitions, *crf_start, *crf_end;
    /* for the caller only (the runtime reads none of these): */
    int nlabels;               /* classify, tag: the classes, decoder.rows of them */
    const char *const *labels; /* their names, or NULL */
    const int16_t *byte_ids;   /* lm: the id of each byte 0..255, -1 when outside the vocabulary */
    const uint8_t *id_bytes;   /* lm: the byte of each id (ids 0, 1 are <pad>, <unk>: 0) */
} lstm_embed_model;

/* Status codes (0 = ok). */
enum {
    LSTM_EMBED_OK = 0,
    LSTM_EMBED_ERR_MODEL = -1, /* the model's sizes or pointers are inconsistent */
    LSTM_EMBED_ERR_ARENA = -2, /* the arena is too small (or misaligned: see init) */
    LSTM_EMBED_ERR_ARG = -3    /* a call that does not fit the model: an id outside its
                                  vocabulary, a length < 1 or > max_steps, the wrong task */
};

/* A context: the state and buffers of one stream, all inside the arena.
 * h and c may be read (and, for a bare LSTM, written to set an initial
 * state); the rest is private. */
typedef struct {
    const lstm_embed_model *m;
    int max_steps; /* of a sequence (bidirectional models keep one whole) */
    int D, Ho, in_dim, out_dim, max_cols;
    float *h;      /* [L*D][Ho]: each layer's and direction's h */
    float *c;      /* [L*D][H] */
    float *gates;  /* 4H */
    float *hh;     /* H: o * tanh(c) before the projection */
    float *x;      /* in_dim: a step's input (embeddings side by side) */
    float *pooled; /* out_dim */
    float *out;    /* decoder.rows: logits the caller did not ask for */
    float *seq[2]; /* [max_steps][out_dim] each, bidirectional only (or empty) */
    float *crf;    /* a CRF tagger's forward-backward: 2 max_steps nout + nout^2 + ... */
    int8_t *qa;    /* max_cols: a quantized activation vector */
} lstm_embed_ctx;

/* Checks the model's sizes and pointers: LSTM_EMBED_OK or
 * LSTM_EMBED_ERR_MODEL. */
LSTM_EMBED_API int lstm_embed_check(const lstm_embed_model *m);

/* The bytes of arena that lstm_embed_init needs for the model, for
 * sequences of at most max_steps steps. Only bidirectional models depend
 * on max_steps (the reverse direction needs the whole sequence of the
 * layer below): a tagger always, and a classifier or a bare LSTM of two
 * layers or more; and a tagger with a CRF (which keeps every step's
 * scores); for the others any length runs and max_steps may be 0.
 * 0 when the model is inconsistent. */
LSTM_EMBED_API size_t lstm_embed_arena_size(const lstm_embed_model *m, int max_steps);

/* Lays ctx out in the arena (size bytes, aligned to 4 bytes at least;
 * the caller owns it and keeps it while ctx is used) and zeroes the state.
 * LSTM_EMBED_ERR_ARENA when size is too small or the arena misaligned. */
LSTM_EMBED_API int lstm_embed_init(lstm_embed_ctx *ctx, const lstm_embed_model *m, int max_steps,
                                   void *arena, size_t size);

/* The zero state (h, c), as PyTorch's default initial state. */
LSTM_EMBED_API void lstm_embed_reset(lstm_embed_ctx *ctx);

/* Bare or lm model, unidirectional: one step of the LSTM, state carried.
 * x: I floats; y: Ho floats (the last layer's h), or NULL. */
LSTM_EMBED_API int lstm_embed_step(lstm_embed_ctx *ctx, const float *x, float *y);

/* Any model: the LSTM over a whole sequence x (T, I) from the state in
 * ctx->h, ctx->c (h0, c0: zero after init or reset), into y (T, D*Ho): the forward direction in y[t][0..Ho), the reverse in
 * y[t][Ho..2Ho), as nn.LSTM's output. The state after it is in ctx->h,
 * ctx->c as nn.LSTM's h_n, c_n. T >= 1 (and T <= max_steps where the
 * arena depends on it, see lstm_embed_arena_size). */
LSTM_EMBED_API int lstm_embed_run(lstm_embed_ctx *ctx, const float *x, int T, float *y);

/* lm: feeds one byte id (0 <= id < vocabulary; model->byte_ids maps a byte
 * to it) and writes the next byte's logits (decoder.rows floats). */
LSTM_EMBED_API int lstm_embed_lm_step(lstm_embed_ctx *ctx, int32_t id, float *logits);

/* classify: the class of a sequence of T tokens from the zero state. ids:
 * (T, nfeat), ids[t * nfeat + f] the id of token t in feature f's
 * vocabulary. logits: decoder.rows floats, or NULL. Returns the index of
 * the largest logit (the first of equals), or a negative status. */
LSTM_EMBED_API int lstm_embed_classify(lstm_embed_ctx *ctx, const int32_t *ids, int T, float *logits);

/* tag: the tag of each of T words (ids as for classify) from the zero
 * state, into tags (T, or NULL); logits: (T, decoder.rows) or NULL. With a
 * CRF (crf_transitions set) each word's tag is the most probable under the
 * CRF given the whole sentence (its marginal, by the forward-backward
 * algorithm, scaled at each step), and logits receives the log of those
 * marginal probabilities, as the library's evaluation and prediction do. */
LSTM_EMBED_API int lstm_embed_tag(lstm_embed_ctx *ctx, const int32_t *ids, int T, float *logits, int *tags);

/* e^x, sigmoid and tanh as the runtime computes them, for tests: float
 * arithmetic only (Cephes' polynomial for e^r, |r| <= ln2/2), within 2
 * ulp of the exact value for e^x on [-87.3, 88.3] (tests/test_embed.c
 * measures it). */
LSTM_EMBED_API float lstm_embed_expf(float x);
/* ln x: Cephes' logf polynomial, float arithmetic only; -inf at 0, NaN
 * below (tests/test_embed.c measures it). */
LSTM_EMBED_API float lstm_embed_logf(float x);
LSTM_EMBED_API float lstm_embed_sigmoidf(float x);
LSTM_EMBED_API float lstm_embed_tanhf(float x);

#ifdef __cplusplus
}
#endif

#endif
