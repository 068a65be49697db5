/*
 * lstm.h - LSTM networks in C, numerically the same as PyTorch's nn.LSTM.
 *
 * The one public header of liblstm. A minimal program:
 *
 *     lstm_error err;
 *     lstm_ctx *ctx = lstm_ctx_create(NULL, &err);          // kernels, threads
 *     lstm_params *p = lstm_params_create();                // one buffer of weights
 *     lstm_rnn_config cfg = lstm_rnn_config_default(8, 32); // input 8, hidden 32
 *     cfg.num_layers = 2;
 *     lstm_rnn *rnn = lstm_rnn_create(&cfg, p, "", &err);   // declares weight_ih_l0, ...
 *     lstm_params_alloc(p, &err);
 *     lstm_rng rng; lstm_rng_seed(&rng, 42);
 *     lstm_rnn_reset_parameters(rnn, p, &rng);              // U(-1/sqrt(H), 1/sqrt(H))
 *
 *     lstm_rnn_io io = {.T = 10, .B = 4, .x = x, .y = y};  // x (T,B,8), y (T,B,32)
 *     lstm_rnn_forward(rnn, ctx, p, &io, 0, NULL, &err);
 *
 *     lstm_rnn_free(rnn); lstm_params_free(p); lstm_ctx_free(ctx);
 *
 * Conventions, for every function below:
 *  - Fallible functions return lstm_status (0 = LSTM_OK). When `err` is not
 *    NULL it receives the status and a message saying what was wrong and
 *    where (file, offset, line). The library never prints, exits or aborts on
 *    bad input.
 *  - Objects are made by *_create and released by *_free; every *_free
 *    accepts NULL. The library frees only what it created and never frees or
 *    closes what the caller passed in.
 *  - Tensors are dense row-major float arrays. Shapes are written in
 *    comments as (T,B,I): T time steps, B batch, I input size, H hidden size,
 *    P projection size (Hout = P if P > 0, else H), L layers, D directions
 *    (1, or 2 when bidirectional), V vocabulary, C classes, E embedding size.
 *  - LSTM gate order is PyTorch's: i, f, g, o.
 *  - An object may be used by one thread at a time; different objects may be
 *    used concurrently. There is no global mutable state.
 *  - Backward functions accumulate (+=) into gradients; zeroing is explicit.
 */
#ifndef LSTM_H
#define LSTM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define LSTM_API __attribute__((visibility("default")))
#else
#define LSTM_API
#endif

/* 0.2.0: lstm_cross_entropy_forward/backward take a context first (a
 * program built against 0.1 must be rebuilt: the soname is liblstm.so.1);
 * added lstm_fail, lstm_ok, lstm_read_file, lstm_write_file_atomic,
 * lstm_params_set, lstm_schedule_rate, lstm_checkpoint_config, lstm_comm,
 * LSTM_ERR_NONFINITE, lstm_model_features, lstm_model_feature, and fields of
 * lstm_train_config and lstm_eval. */
#define LSTM_VERSION "0.2.0"

/* ------------------------------------------------------------------ */
/* Status and errors                                                   */

typedef enum {
    LSTM_OK = 0,
    LSTM_ERR_INVALID,     /* an argument or configuration is not valid */
    LSTM_ERR_NOMEM,       /* an allocation failed */
    LSTM_ERR_IO,          /* a file could not be opened, read or written */
    LSTM_ERR_FORMAT,      /* a file's contents break its format */
    LSTM_ERR_SHAPE,       /* a tensor is missing, or has the wrong dtype or shape */
    LSTM_ERR_UNSUPPORTED, /* valid, but not something this build can do */
    LSTM_ERR_STATE,       /* call order: e.g. backward without a forward */
    LSTM_ERR_NONFINITE    /* a loss, gradient or weight became NaN or infinite */
} lstm_status;

/* What went wrong, in words: "file.safetensors: offset 8: header is not valid JSON ...". */
typedef struct {
    lstm_status status;
    char msg[512];
} lstm_error;

/* A constant name for a status, e.g. "invalid argument". Never NULL. */
LSTM_API const char *lstm_status_string(lstm_status s);

#if defined(__GNUC__)
#define LSTM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LSTM_PRINTF(a, b)
#endif

/* Fills err (when not NULL) with status and a printf-style message (cut to
 * fit err->msg), and returns status: the library's own way of failing, for
 * code built on it that reports errors the same way (the task models, the
 * lstm program). */
LSTM_API lstm_status lstm_fail(lstm_error *err, lstm_status status, const char *fmt, ...)
    LSTM_PRINTF(3, 4);
/* Marks err (when not NULL) as success; returns LSTM_OK. */
LSTM_API lstm_status lstm_ok(lstm_error *err);

/* ------------------------------------------------------------------ */
/* Files. */

/* Reads the whole file at path into *buf (malloc'd, NUL-terminated after
 * its *len bytes; the caller frees it with free()). Pipes and terminals
 * are read to their end. LSTM_ERR_IO (a file that cannot be opened or read,
 * or is a directory) or LSTM_ERR_NOMEM, with a message naming the path;
 * then *buf is NULL. The library's one file reader (safetensors files, data
 * sets). */
LSTM_API lstm_status lstm_read_file(const char *path, char **buf, size_t *len, lstm_error *err);
/* Writes len bytes of buf to path atomically, as the library saves models
 * and checkpoints: a temporary file beside path (mode 0666 less the
 * umask) is written, fsynced and renamed over path, then the directory is
 * fsynced. A reader sees the old file or the new one, never a part of it.
 * On failure path is untouched and no temporary file is left
 * (LSTM_ERR_IO, naming path and the system's reason); if only the final
 * directory sync fails, the new file is in place and the message says so.
 * A symbolic link stays and the file it names is replaced. A path that
 * exists and is neither a regular file nor a directory (a pipe, a
 * terminal, /dev/null) is written in place, as renaming would replace it. */
LSTM_API lstm_status lstm_write_file_atomic(const char *path, const void *buf, size_t len,
                                            lstm_error *err);

/* ------------------------------------------------------------------ */
/* Random numbers: xoshiro256** seeded through splitmix64. All randomness
 * in the library (initialisation, dropout, shuffling, sampling) comes from
 * an lstm_rng the caller owns, so a run is reproducible from its seed.   */

typedef struct {
    uint64_t s[4];
} lstm_rng;

LSTM_API void lstm_rng_seed(lstm_rng *rng, uint64_t seed);
LSTM_API uint64_t lstm_rng_next(lstm_rng *rng);
/* Uniform in [0, 1), 24 random bits. */
LSTM_API float lstm_rng_uniform(lstm_rng *rng);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
LSTM_API uint64_t lstm_rng_below(lstm_rng *rng, uint64_t n);
/* Standard normal (Box-Muller, in double). */
LSTM_API float lstm_rng_normal(lstm_rng *rng);

/* ------------------------------------------------------------------ */
/* Context: the kernels and the threads that compute. One context may be
 * shared by many models, but used by one thread at a time.              */

typedef enum {
    LSTM_KERNELS_AUTO = 0, /* the fastest this processor supports */
    LSTM_KERNELS_REFERENCE,/* plain loops: the reference the others are tested against */
    LSTM_KERNELS_GENERIC,  /* blocked, packed kernels in portable C */
    LSTM_KERNELS_AVX2,     /* x86-64 AVX2 + FMA */
    LSTM_KERNELS_AVX512,   /* x86-64 AVX-512F */
    /* x86-64 AVX-512 BF16: products in bfloat16 with float sums, gates and
     * state in float. Twice the speed of AVX512 where the processor has
     * it, at bfloat16's precision (about 3 significant digits per product):
     * never chosen by AUTO. */
    LSTM_KERNELS_AVX512_BF16
} lstm_kernels;

typedef enum {
    LSTM_BLAS_AUTO = 0, /* the BLAS for large products where it is the faster (AVX2, generic) */
    LSTM_BLAS_OFF,      /* always the built-in packed product of the chosen kernels */
    LSTM_BLAS_ON        /* always the BLAS, when one is linked in */
} lstm_blas;

typedef struct {
    int threads;          /* worker threads including the caller; 0 = 1 */
    lstm_kernels kernels; /* LSTM_KERNELS_AUTO by default */
    lstm_blas blas;       /* LSTM_BLAS_AUTO by default */
} lstm_ctx_config;

typedef struct lstm_ctx lstm_ctx;

/* Creates a context; cfg may be NULL for one thread and automatic kernels.
 * Fails with LSTM_ERR_UNSUPPORTED when the requested kernels are not built
 * in or not supported by this processor. */
LSTM_API lstm_ctx *lstm_ctx_create(const lstm_ctx_config *cfg, lstm_error *err);
LSTM_API void lstm_ctx_free(lstm_ctx *ctx);
/* The kernels actually in use ("avx512bf16", "avx512", "avx2", "generic",
 * "reference"). */
LSTM_API const char *lstm_ctx_kernels(const lstm_ctx *ctx);
/* The int8 products quantized models run on ("avx512vnni", "avxvnni",
 * "avx2", "reference"): the best the processor has, or the reference with
 * LSTM_KERNELS_REFERENCE or _GENERIC, AVX2 with LSTM_KERNELS_AVX2. */
LSTM_API const char *lstm_ctx_int8_kernels(const lstm_ctx *ctx);
LSTM_API int lstm_ctx_threads(const lstm_ctx *ctx);
/* The BLAS linked in ("openblas"), or "none". */
LSTM_API const char *lstm_blas_name(void);
/* What computes the context's large matrix products: "openblas" or "builtin". */
LSTM_API const char *lstm_ctx_gemm(const lstm_ctx *ctx);

/* ------------------------------------------------------------------ */
/* Parameters: every weight of a model lives in one contiguous float
 * buffer, with a second buffer of the same layout for gradients. Tensors
 * are declared by name (PyTorch's state_dict keys) before one allocation;
 * each then is a named view into the buffers.                           */

#define LSTM_MAX_DIMS 8

typedef struct lstm_params lstm_params;

LSTM_API lstm_params *lstm_params_create(void);
LSTM_API void lstm_params_free(lstm_params *p);
/* Declares a tensor. Returns its index (>= 0), or -1 (with err) when the
 * name is taken or empty, the shape is invalid, or the buffer is already
 * allocated. */
LSTM_API int lstm_params_declare(lstm_params *p, const char *name, int ndim,
                                 const int64_t *shape, lstm_error *err);
/* Allocates the value and gradient buffers (zeroed) for all declared
 * tensors. Each view starts on a 64-byte boundary. */
LSTM_API lstm_status lstm_params_alloc(lstm_params *p, lstm_error *err);
LSTM_API int lstm_params_count(const lstm_params *p);
/* Index of a tensor by name, or -1. */
LSTM_API int lstm_params_find(const lstm_params *p, const char *name);
LSTM_API const char *lstm_params_name(const lstm_params *p, int i);
LSTM_API int lstm_params_ndim(const lstm_params *p, int i);
LSTM_API const int64_t *lstm_params_shape(const lstm_params *p, int i);
LSTM_API size_t lstm_params_numel(const lstm_params *p, int i);
/* Marks 2-D tensor i as a lookup table whose rows a batch reads by index
 * (an embedding: PyTorch's nn.Embedding(sparse=True)), so that a row the
 * batch did not read has a gradient of zero. An optimizer with `lazy` set
 * leaves such rows alone (lstm_optim_config). A bad index or a tensor of
 * another rank is ignored; lstm_params_sparse says what holds (0 or 1). */
LSTM_API void lstm_params_set_sparse(lstm_params *p, int i, int sparse);
LSTM_API int lstm_params_sparse(const lstm_params *p, int i);
/* Views (NULL before lstm_params_alloc). Writing values through the
 * pointer lstm_params_data or lstm_params_data_all returns needs
 * lstm_params_touch afterwards (see below); lstm_params_set does not. */
LSTM_API float *lstm_params_data(lstm_params *p, int i);
LSTM_API float *lstm_params_grad(lstm_params *p, int i);
/* The whole buffers, padding included (padding stays zero). */
LSTM_API size_t lstm_params_size(const lstm_params *p);
LSTM_API float *lstm_params_data_all(lstm_params *p);
LSTM_API float *lstm_params_grad_all(lstm_params *p);
LSTM_API void lstm_params_zero_grad(lstm_params *p);
/* Copies n floats from src into tensor i; n must be its element count.
 * LSTM_ERR_INVALID for a bad index or NULL src, LSTM_ERR_SHAPE for another
 * n, LSTM_ERR_STATE before lstm_params_alloc; values unchanged then.
 * Bumps the version. */
LSTM_API lstm_status lstm_params_set(lstm_params *p, int i, const float *src, size_t n,
                                     lstm_error *err);
/* A counter that every function of the library writing values bumps:
 * lstm_params_alloc, _set, _read, _copy, lstm_optim_step,
 * lstm_rnn_reset_parameters, and the task models' loading and training.
 * An LSTM keeps its weights packed for the fast kernels and packs them
 * again at its next use when the version has changed.
 * lstm_params_touch bumps it by hand: it is only for a caller that writes
 * values through the raw pointers of lstm_params_data or
 * lstm_params_data_all, and must follow those writes (before the next
 * forward, step or backward), or the LSTM would go on with the old
 * weights. No other caller needs it. */
LSTM_API uint64_t lstm_params_version(const lstm_params *p);
LSTM_API void lstm_params_touch(lstm_params *p);
/* Copies values from another params object with the same names and
 * shapes. Bumps dst's version. */
LSTM_API lstm_status lstm_params_copy(lstm_params *dst, const lstm_params *src, lstm_error *err);
/* Moves avg toward p, an exponential moving average of the weights:
 * avg = decay * avg + (1 - decay) * p for every value (decay in [0, 1];
 * Polyak and Juditsky 1992; PyTorch's torch.optim.swa_utils.AveragedModel
 * with get_ema_multi_avg_fn). avg and p have the same names and shapes.
 * Bumps avg's version. LSTM_ERR_SHAPE, LSTM_ERR_INVALID (decay). */
LSTM_API lstm_status lstm_params_ema(lstm_params *avg, const lstm_params *p, float decay,
                                     lstm_error *err);

/* ------------------------------------------------------------------ */
/* safetensors files: an 8-byte little-endian header length N, N bytes of
 * JSON {"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
 * "__metadata__": {string: string}}, then the data. The reader checks
 * every rule of the format and never reads outside its buffer.          */

typedef enum {
    LSTM_DT_BOOL, LSTM_DT_U8, LSTM_DT_I8, LSTM_DT_I16, LSTM_DT_U16,
    LSTM_DT_F16, LSTM_DT_BF16, LSTM_DT_I32, LSTM_DT_U32, LSTM_DT_F32,
    LSTM_DT_I64, LSTM_DT_U64, LSTM_DT_F64
} lstm_dtype;

/* "F32", "BF16", ... */
LSTM_API const char *lstm_dtype_name(lstm_dtype dt);
LSTM_API size_t lstm_dtype_size(lstm_dtype dt);

typedef struct {
    const char *name;
    lstm_dtype dtype;
    int ndim;
    int64_t shape[LSTM_MAX_DIMS];
    size_t numel;
    const void *data; /* into the file's bytes: may be unaligned */
    size_t nbytes;
} lstm_st_tensor;

typedef struct lstm_st lstm_st;

/* Reads and checks a whole file. */
LSTM_API lstm_st *lstm_st_open(const char *path, lstm_error *err);
/* Checks a file held in memory. The bytes are copied, so buf may be freed
 * after the call. `name` is used in messages (may be NULL). */
LSTM_API lstm_st *lstm_st_from_memory(const void *buf, size_t len, const char *name,
                                      lstm_error *err);
LSTM_API void lstm_st_free(lstm_st *st);
LSTM_API size_t lstm_st_count(const lstm_st *st);
/* Tensors in the order of their data offsets. */
LSTM_API const lstm_st_tensor *lstm_st_tensor_at(const lstm_st *st, size_t i);
LSTM_API const lstm_st_tensor *lstm_st_find(const lstm_st *st, const char *name);
/* The metadata value for key, or NULL. */
LSTM_API const char *lstm_st_meta(const lstm_st *st, const char *key);
LSTM_API size_t lstm_st_meta_count(const lstm_st *st);
LSTM_API void lstm_st_meta_at(const lstm_st *st, size_t i, const char **key, const char **value);
/* The name given at open (the path, or the name passed to from_memory). */
LSTM_API const char *lstm_st_name(const lstm_st *st);
/* Converts a floating tensor (F32, F16, BF16, F64) to float. n must equal
 * the tensor's element count. */
LSTM_API lstm_status lstm_st_read_f32(const lstm_st *st, const lstm_st_tensor *t, float *dst,
                                      size_t n, lstm_error *err);
/* Converts an integer tensor (I64, I32, I16, I8, U8, U16, U32, U64) to
 * int64, checking that it fits. */
LSTM_API lstm_status lstm_st_read_i64(const lstm_st *st, const lstm_st_tensor *t, int64_t *dst,
                                      size_t n, lstm_error *err);

typedef struct lstm_st_writer lstm_st_writer;

LSTM_API lstm_st_writer *lstm_st_writer_create(void);
LSTM_API void lstm_st_writer_free(lstm_st_writer *w);
/* Adds a tensor; `data` (numel * dtype size bytes, little-endian) is
 * copied. Names must be unique and not "__metadata__". */
LSTM_API lstm_status lstm_st_writer_add(lstm_st_writer *w, const char *name, lstm_dtype dtype,
                                        int ndim, const int64_t *shape, const void *data,
                                        lstm_error *err);
/* Adds or replaces a metadata entry. */
LSTM_API lstm_status lstm_st_writer_meta(lstm_st_writer *w, const char *key, const char *value,
                                         lstm_error *err);
/* Writes the file with lstm_write_file_atomic: a temporary file beside
 * `path`, fsync, rename. On failure `path` is untouched. */
LSTM_API lstm_status lstm_st_writer_save(const lstm_st_writer *w, const char *path,
                                         lstm_error *err);
/* The file's bytes in a buffer the caller frees with free(). */
LSTM_API lstm_status lstm_st_writer_to_memory(const lstm_st_writer *w, void **buf, size_t *len,
                                              lstm_error *err);

/* Adds every tensor of p (F32) under prefix + name. */
LSTM_API lstm_status lstm_params_write(const lstm_params *p, lstm_st_writer *w,
                                       const char *prefix, lstm_error *err);
/* Loads every tensor of p from the file, where the file's names are
 * prefix + name; F16, BF16 and F64 are converted. With `strict`, a tensor
 * of the file under the prefix that p lacks is an error too, as in
 * PyTorch's load_state_dict(strict=True). Bumps the version. */
LSTM_API lstm_status lstm_params_read(lstm_params *p, const lstm_st *st, const char *prefix,
                                      int strict, lstm_error *err);

/* int8 tensors: quantized models (`lstm quantize`; docs/DESIGN.md "int8").
 * A quantized matrix W (rows, cols) is int8 q with a float scale per row:
 * scale[r] = max_c |W[r][c]| / 127 (0 for a zero row), q = rne(W / scale)
 * in [-127, 127]. In a file it is two tensors, NAME.int8 (I8, rows x cols)
 * and NAME.scale (F32, rows), in place of NAME, and the metadata says
 * "lstm.quantization": "int8-rowwise"; lstm_params_read takes either form
 * and lstm_params_write writes an int8 tensor in that form. The LSTM and
 * lstm_params_linear_forward then multiply by q in integers, quantizing
 * each row of their input as it comes (dynamic quantization): s_a =
 * max|a| / 127, q_a = rne(a * 127 / max|a|), result = (float)(exact int32
 * sum of q_a q) * (s_a * scale[r]). Inference only: an LSTM whose weights
 * are int8 refuses to train. */

/* Quantizes tensor i (a matrix) in place: from now on it computes in
 * int8, and its floats hold scale * q (what it computes with). A later
 * write of its floats (lstm_params_set, an optimizer step) quantizes them
 * again. LSTM_ERR_SHAPE for a tensor that is not a matrix,
 * LSTM_ERR_UNSUPPORTED for rows longer than 131072 (the int32 sums could
 * overflow), LSTM_ERR_NONFINITE for a NaN or infinite value. Bumps the
 * version. */
LSTM_API lstm_status lstm_params_quantize(lstm_params *p, int i, lstm_error *err);
/* 1 when tensor i computes in int8. */
LSTM_API int lstm_params_is_int8(const lstm_params *p, int i);
/* out (N,O) = in (N,K) W^T + b, W tensor w (O,K) of p, b tensor b (O) or
 * -1: in int8 when W is (quantizing each row of in), else in float as
 * lstm_linear_forward. LSTM_ERR_INVALID for a bad index or shape. */
LSTM_API lstm_status lstm_params_linear_forward(lstm_ctx *ctx, lstm_params *p, int w, int b,
                                                float *out, const float *in, int N,
                                                lstm_error *err);

/* ------------------------------------------------------------------ */
/* The LSTM: one torch.nn.LSTM module, of one or more stacked layers.
 *
 * For each layer and direction, at each step t (PyTorch's equations):
 *     i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)
 *     f = sigmoid(W_if x + b_if + W_hf h + b_hf)
 *     g =    tanh(W_ig x + b_ig + W_hg h + b_hg)
 *     o = sigmoid(W_io x + b_io + W_ho h + b_ho)
 *     c' = f * c + i * g
 *     h' = o * tanh(c')            then h' = W_hr h' when proj_size > 0
 * Tensors (PyTorch's names, k = layer, "_reverse" for the second direction):
 *     weight_ih_l{k}  (4H, I or D*Hout)   weight_hh_l{k}  (4H, Hout)
 *     bias_ih_l{k}    (4H)                bias_hh_l{k}    (4H)
 *     weight_hr_l{k}  (P, H)              when proj_size > 0            */

typedef struct {
    int input_size;
    int hidden_size;
    int num_layers;    /* >= 1 */
    int bias;          /* 1: with bias_ih/bias_hh (default) */
    int batch_first;   /* 1: x and y are (B,T,.) */
    int bidirectional; /* 1: D = 2 */
    int proj_size;     /* 0, or 0 < P < H */
    float dropout;     /* on the output of every layer but the last, when training */
    /* Options of ONNX's LSTM operator that torch.nn.LSTM lacks; all 0 there,
     * and then nothing changes. Forward, backward and step compute them, in
     * any combination with the fields above (equations below the struct). */
    int peephole;      /* 1: weight_peephole_l{k} (3H), p_i, p_f, p_o: i and f
                          add p * c_{t-1} to their pre-activation, o adds p * c_t */
    float clip;        /* > 0: ONNX's `clip`, the cell clip threshold; 0: none */
    int input_forget;  /* 1: ONNX's `input_forget`, coupled gates: f = 1 - i */
    int reverse;       /* 1: ONNX's direction="reverse": one direction, walking
                          t from T-1 down to 0 (each sequence from its own last
                          step, len-1, with h0/c0; hn/cn are its state after
                          t = 0); tensors named as a forward layer's; not with
                          bidirectional, and no lstm_rnn_step */
} lstm_rnn_config;

/* With the ONNX options (ONNX's LSTM operator, in PyTorch's gate order;
 * ONNX's P is [D, 3H] in the order i, o, f: an importer reorders it):
 *     i = sigmoid(clamp(W_ii x + b_ii + W_hi h + b_hi + p_i * c))
 *     f = sigmoid(clamp(W_if x + b_if + W_hf h + b_hf + p_f * c))   or 1 - i
 *     g =    tanh(clamp(W_ig x + b_ig + W_hg h + b_hg))
 *     c' = f * c + i * g                              (c' itself not clipped)
 *     o = sigmoid(clamp(W_io x + b_io + W_ho h + b_ho + p_o * c'))
 *     h' = o * tanh(c')
 * clamp(z) = min(max(z, -clip), clip) when clip > 0: where ONNX Runtime's
 * CPU kernel applies it (docs/DESIGN.md); its gradient is 0 where it
 * clamps. With input_forget the f rows of the weights and biases have no
 * effect and get zero gradients. weight_peephole_l{k}[_reverse] is (3H);
 * lstm_rnn_reset_parameters draws it like the other tensors. clip,
 * input_forget and reverse are not visible in tensor names: a state_dict
 * file carries them in its metadata as "lstm.clip" (a number),
 * "lstm.input_forget" and "lstm.reverse" ("0" or "1"), which
 * lstm_rnn_config_infer reads and lstm_rnn_config_write_meta writes.
 * reverse (ONNX's direction="reverse") equals, per sequence, a forward
 * LSTM over the sequence reversed within its length, its output reversed
 * back. */

/* input_size, hidden_size given; one layer, bias, everything else off. */
LSTM_API lstm_rnn_config lstm_rnn_config_default(int input_size, int hidden_size);
/* Checks a configuration; fills err with the first problem. */
LSTM_API lstm_status lstm_rnn_config_check(const lstm_rnn_config *cfg, lstm_error *err);
/* Infers the configuration of the LSTM whose tensors are in st under
 * `prefix` (e.g. "" or "lstm."), from their names and shapes (peephole:
 * weight_peephole_l0 is present), and clip, input_forget and reverse from
 * the metadata keys "lstm.clip", "lstm.input_forget" and "lstm.reverse"
 * (reverse with weight_ih_l0_reverse present: LSTM_ERR_FORMAT). batch_first and
 * dropout are not stored in a state_dict and are left 0. Errors: a missing
 * or misshapen tensor (LSTM_ERR_SHAPE); an unparsable value of those keys,
 * or a metadata key "lstm.*" that is neither of them nor one of the task
 * model files' (lstm.version, lstm.task, lstm.config, lstm.labels,
 * lstm.train, lstm.vocab.*) (LSTM_ERR_FORMAT). */
/* The prefix under which st holds an nn.LSTM ("" or "lstm." ...): the part
 * of the one tensor named PREFIX + "weight_ih_l0" (or its int8 form,
 * "weight_ih_l0.int8") before that name, where PREFIX is empty or ends in
 * '.'; written into buf (n bytes). LSTM_ERR_SHAPE when there is none,
 * LSTM_ERR_INVALID when there are several (the message names two). */
LSTM_API lstm_status lstm_rnn_find_prefix(const lstm_st *st, char *buf, size_t n,
                                          lstm_error *err);
LSTM_API lstm_status lstm_rnn_config_infer(lstm_rnn_config *cfg, const lstm_st *st,
                                           const char *prefix, lstm_error *err);
/* Adds to w the metadata lstm_rnn_config_infer reads back: "lstm.clip"
 * ("%.9g" of the float, which reads back as the same float) when
 * cfg->clip > 0, "lstm.input_forget" = "1" and "lstm.reverse" = "1" when
 * set; nothing otherwise.
 * Call it for every state_dict written with those options. */
LSTM_API lstm_status lstm_rnn_config_write_meta(const lstm_rnn_config *cfg, lstm_st_writer *w,
                                                lstm_error *err);

typedef struct lstm_rnn lstm_rnn;

/* Declares the module's tensors in p, named prefix + PyTorch's name.
 * p must not be allocated yet. */
LSTM_API lstm_rnn *lstm_rnn_create(const lstm_rnn_config *cfg, lstm_params *p,
                                   const char *prefix, lstm_error *err);
LSTM_API void lstm_rnn_free(lstm_rnn *rnn);
LSTM_API const lstm_rnn_config *lstm_rnn_get_config(const lstm_rnn *rnn);
/* PyTorch's default initialisation: every tensor U(-1/sqrt(H), 1/sqrt(H)),
 * the peephole weights too. Bumps p's version. */
LSTM_API void lstm_rnn_reset_parameters(lstm_rnn *rnn, lstm_params *p, lstm_rng *rng);

/* Arguments of a forward and of the backward that follows it. Pointers
 * marked "or NULL" are optional. */
typedef struct {
    int T, B;
    const float *x;       /* (T,B,I), or (B,T,I) with batch_first */
    const int *lengths;   /* (B) each in [1,T], or NULL for all T: as
                             pack_padded_sequence (any order) */
    const float *h0;      /* (L*D,B,Hout) or NULL for zeros */
    const float *c0;      /* (L*D,B,H) or NULL for zeros */
    float *y;             /* (T,B,D*Hout) or (B,T,D*Hout); zero past each length */
    float *hn;            /* (L*D,B,Hout) or NULL: state at each sequence's last step */
    float *cn;            /* (L*D,B,H) or NULL */
} lstm_rnn_io;

typedef struct {
    const float *dy;      /* like y, or NULL */
    const float *dhn;     /* like hn, or NULL */
    const float *dcn;     /* like cn, or NULL */
    float *dx;            /* like x, or NULL: then not computed; overwritten */
    float *dh0;           /* like h0, or NULL; overwritten */
    float *dc0;           /* like c0, or NULL; overwritten */
    /* Optional hooks, for overlapping work on the gradients (e.g. summing
     * them over processes) with the rest of the backward; called on the
     * calling thread. layer_done(hook_arg, l): the gradients of layer l's
     * tensors (every direction) are final; called for l = L-1 down to 0.
     * progress(hook_arg): between time steps, a chance to move such work
     * on (not called from a bidirectional layer whose directions run on
     * two threads). Either may be NULL. */
    void (*layer_done)(void *hook_arg, int layer);
    void (*progress)(void *hook_arg);
    void *hook_arg;
} lstm_rnn_grads;

/* Runs the module over a whole batch of sequences. With `training`,
 * dropout between layers is applied using rng (required then) and the
 * activations are kept for lstm_rnn_backward. Working memory is kept in
 * the rnn object and grows to the largest T*B seen. */
LSTM_API lstm_status lstm_rnn_forward(lstm_rnn *rnn, lstm_ctx *ctx, lstm_params *p,
                                      const lstm_rnn_io *io, int training, lstm_rng *rng,
                                      lstm_error *err);
/* Back-propagates through the last forward call (which must have had
 * `training` set, with the same io buffers still alive): accumulates
 * the gradients of every tensor into p's gradient buffer, and writes
 * dx, dh0, dc0 when asked. */
LSTM_API lstm_status lstm_rnn_backward(lstm_rnn *rnn, lstm_ctx *ctx, lstm_params *p,
                                       const lstm_rnn_grads *g, lstm_error *err);
/* Advances B states by one time step (forward-only modules: not
 * bidirectional, not reverse, LSTM_ERR_UNSUPPORTED):
 * x (B,I); h (L,B,Hout) and c (L,B,H) are read and updated in place;
 * y (B,Hout), the top layer's new h, may be NULL. No dropout. The
 * weights are packed once and re-packed when p's version changes. */
LSTM_API lstm_status lstm_rnn_step(lstm_rnn *rnn, lstm_ctx *ctx, lstm_params *p, int B,
                                   const float *x, float *h, float *c, float *y,
                                   lstm_error *err);

/* ------------------------------------------------------------------ */
/* The other layers, as forward/backward pairs over buffers. Sizes: N rows.
 * Backward functions accumulate into d-outputs that are parameters and
 * into din; pass NULL for a gradient you do not need.                  */

/* out (N,E) = table[ids[n]]; ids in [0,V) (checked by the caller). */
LSTM_API void lstm_embedding_forward(float *out, const int32_t *ids, const float *table, int N,
                                     int E);
/* dtable[ids[n]] += dout[n]. */
LSTM_API void lstm_embedding_backward(float *dtable, const float *dout, const int32_t *ids,
                                      int N, int E);
/* out (N,O) = in (N,K) w^T + b; w (O,K), b (O) or NULL. */
LSTM_API void lstm_linear_forward(lstm_ctx *ctx, float *out, const float *in, const float *w,
                                  const float *b, int N, int K, int O);
/* din (N,K) += dout w; dw (O,K) += dout^T in; db (O) += sum_n dout. */
LSTM_API void lstm_linear_backward(lstm_ctx *ctx, float *din, float *dw, float *db,
                                   const float *dout, const float *in, const float *w, int N,
                                   int K, int O);
/* logp (N,C) = log_softmax(logits) (logp may equal logits), with the
 * context's kernels (ctx NULL: the reference kernels, sums in double).
 * Returns the summed negative log likelihood of targets over rows whose
 * target is not ignore_index, and counts them in *count (may be NULL).
 * targets may be NULL (no loss: log_softmax only). */
LSTM_API double lstm_cross_entropy_forward(lstm_ctx *ctx, float *logp, const float *logits,
                                           const int32_t *targets, int N, int C,
                                           int ignore_index, int *count);
/* dlogits (N,C) += scale * (softmax - onehot(target)) per counted row,
 * from the forward's logp; ctx as in the forward. */
LSTM_API void lstm_cross_entropy_backward(lstm_ctx *ctx, float *dlogits, const float *logp,
                                          const int32_t *targets, int N, int C,
                                          int ignore_index, float scale);
/* Mean squared error over n values: returns mean((a - b)^2). */
LSTM_API double lstm_mse_forward(const float *a, const float *b, size_t n);
/* da += scale * 2 (a - b) / n. */
LSTM_API void lstm_mse_backward(float *da, const float *a, const float *b, size_t n, float scale);
/* out (B,F) = mean of x (T,B,F) over t < lengths[b] (all T if NULL). */
LSTM_API void lstm_mean_pool_forward(float *out, const float *x, const int *lengths, int T,
                                     int B, int F);
LSTM_API void lstm_mean_pool_backward(float *dx, const float *dout, const int *lengths, int T,
                                      int B, int F);
/* out (B,F) = x (T,B,F) at t = lengths[b] - 1 (T - 1 if NULL). */
LSTM_API void lstm_last_pool_forward(float *out, const float *x, const int *lengths, int T,
                                     int B, int F);
LSTM_API void lstm_last_pool_backward(float *dx, const float *dout, const int *lengths, int T,
                                      int B, int F);
/* Inverted dropout: mask[i] = 0 with probability p, else 1/(1-p); out = x * mask.
 * out may equal x. p in [0,1). */
LSTM_API void lstm_dropout_forward(float *out, float *mask, const float *x, size_t n, float p,
                                   lstm_rng *rng);
/* dx += dout * mask. */
LSTM_API void lstm_dropout_backward(float *dx, const float *dout, const float *mask, size_t n);

/* A linear-chain conditional random field over K tags (Lafferty et al.
 * 2001), the loss of a tagger: a sentence of n tags y scores
 *     s(y) = start[y_0] + sum_t emissions_t[y_t]
 *            + sum_{t>0} transitions[y_{t-1}][y_t] + end[y_{n-1}]
 * and p(y | x) = exp(s(y)) / Z, Z over all K^n sequences. The parameters
 * are pytorch-crf's (transitions, start_transitions, end_transitions). */
typedef struct {
    int T, B, K;
    const float *emissions;   /* (T,B,K), row t*B+b: the decoder's scores */
    const int *lengths;       /* (B), each 1..T; positions past it are ignored */
    const int32_t *tags;      /* (T,B) the gold tags, 0..K-1, or < 0 where unknown
                                 (any tag agrees); NULL: no loss, marginals only.
                                 Lengths and tags out of these ranges are the
                                 caller's error (not checked, as the other layers) */
    const float *transitions; /* (K,K) */
    const float *start_transitions, *end_transitions; /* (K) each */
    /* (T,B,K) out, or NULL: log P(y_t = k | x) from the forward-backward
     * algorithm (-inf past a row's end). It may be emissions itself, which
     * is then overwritten once read. */
    float *marginals;
    /* += scale * the gradient of the returned loss, each NULL to skip */
    float *d_emissions, *d_transitions, *d_start_transitions, *d_end_transitions;
    float scale;
} lstm_crf_args;
/* The bytes of work lstm_crf needs for T, B, K (any alignment). */
LSTM_API size_t lstm_crf_work_size(int T, int B, int K);
/* Returns the summed negative log-likelihood -log p(y | x) over the
 * sentences with a known tag (the unknown tags summed over), and counts
 * the known tags in *count (may be NULL); without tags, the sum of log Z.
 * Sums in double; products with the context's GEMM, or, when the
 * parameters spread too far for that (2 range(transitions) + range(start)
 * + range(end) > 70), in logs, sentence by sentence. ctx may be NULL (the
 * reference kernels). */
LSTM_API double lstm_crf(lstm_ctx *ctx, const lstm_crf_args *a, void *work, int *count);

/* ------------------------------------------------------------------ */
/* Optimizers, clipping and learning-rate schedules. The formulas are
 * torch.optim's (PyTorch 1.13), step for step.                          */

typedef enum {
    LSTM_OPT_SGD,      /* momentum, dampening, nesterov, weight_decay */
    LSTM_OPT_ADAM,     /* beta1, beta2, eps, weight_decay (L2, added to the gradient) */
    LSTM_OPT_ADAMW,    /* decoupled weight decay */
    LSTM_OPT_RMSPROP,  /* alpha, eps, momentum, centered, weight_decay */
    LSTM_OPT_ADADELTA  /* rho, eps, weight_decay; lr scales the update (1.0 in PyTorch) */
} lstm_optimizer;

typedef struct {
    lstm_optimizer type;
    float lr;
    float momentum, dampening; /* SGD, RMSprop (momentum) */
    int nesterov;              /* SGD */
    float beta1, beta2;        /* Adam(W) */
    float eps;                 /* Adam(W), RMSprop, Adadelta */
    float alpha;               /* RMSprop smoothing */
    int centered;              /* RMSprop */
    float rho;                 /* Adadelta */
    float weight_decay;
    /* Adam(W) only, "lazy Adam" (TensorFlow Addons' LazyAdam; PyTorch's
     * SparseAdam does the same with eps inside the bias correction): in a
     * tensor marked sparse (lstm_params_set_sparse), a row whose gradient
     * is all zero keeps its weights and moments as they are, where Adam
     * would decay the moments and move the row along them; every other
     * row is updated as by Adam, with the same step count. An embedding of
     * V rows then costs the rows a batch used, not V. */
    int lazy;
} lstm_optim_config;

/* PyTorch's defaults for each optimizer (lr 1e-3 for Adam(W), 1e-2 for
 * RMSprop and SGD, 1.0 for Adadelta; weight_decay 1e-2 for AdamW). */
LSTM_API lstm_optim_config lstm_optim_defaults(lstm_optimizer type);
/* "sgd", "adam", "adamw", "rmsprop", "adadelta"; returns -1 if unknown. */
LSTM_API int lstm_optimizer_parse(const char *name);
LSTM_API const char *lstm_optimizer_name(lstm_optimizer type);

typedef struct lstm_optim lstm_optim;

/* State buffers are sized to p, which must be allocated. */
LSTM_API lstm_optim *lstm_optim_create(const lstm_optim_config *cfg, const lstm_params *p,
                                       lstm_error *err);
LSTM_API void lstm_optim_free(lstm_optim *o);
/* One update of every parameter with learning rate lr (the config's lr is
 * only the default a caller may pass). Bumps p's version. */
LSTM_API void lstm_optim_step(lstm_optim *o, lstm_params *p, float lr);
LSTM_API long lstm_optim_steps(const lstm_optim *o);
/* The optimizer's state (step count and buffers) as tensors in a
 * safetensors writer under prefix, and back: for checkpoints. */
LSTM_API lstm_status lstm_optim_write(const lstm_optim *o, lstm_st_writer *w,
                                      const char *prefix, lstm_error *err);
LSTM_API lstm_status lstm_optim_read(lstm_optim *o, const lstm_st *st, const char *prefix,
                                     lstm_error *err);

/* torch.nn.utils.clip_grad_norm_: the global L2 norm of all gradients; when
 * max_norm > 0 and the norm exceeds it, scales every gradient by
 * max_norm / (norm + 1e-6). Returns the norm before clipping. */
LSTM_API float lstm_clip_grad_norm(lstm_params *p, float max_norm);

typedef enum {
    LSTM_SCHED_CONSTANT,
    LSTM_SCHED_STEP,        /* lr * gamma^floor(t / step_size) */
    LSTM_SCHED_EXPONENTIAL, /* lr * gamma^(t / step_size), staircase: floor */
    LSTM_SCHED_COSINE       /* min_lr + (lr - min_lr) (1 + cos(pi t / total)) / 2 */
} lstm_schedule_type;

typedef struct {
    lstm_schedule_type type;
    float lr;          /* the base rate */
    float gamma;       /* STEP, EXPONENTIAL */
    long step_size;    /* STEP, EXPONENTIAL: in units of t */
    int staircase;     /* EXPONENTIAL */
    long total;        /* COSINE: t at which min_lr is reached */
    float min_lr;      /* COSINE */
    long warmup;       /* linear warm-up over the first `warmup` units of t (0: none) */
} lstm_schedule;

/* The learning rate at time t (t counts whatever unit the caller chooses:
 * epochs, as in PyTorch's schedulers, or steps), the warm-up counting the
 * same t. */
LSTM_API float lstm_schedule_lr(const lstm_schedule *s, long t);
/* The same with two clocks: the decay at t, which may be fractional (a
 * fraction of a time budget with total = 1, say), and the warm-up after
 * `step` updates. lstm_schedule_lr(s, t) is lstm_schedule_rate(s, t, t).
 * lstm_train uses this. */
LSTM_API float lstm_schedule_rate(const lstm_schedule *s, double t, long step);

/* ------------------------------------------------------------------ */
/* Data sets for the three tasks. Readers check their input and report the
 * file, the line and what was wrong.
 *   lm:       any file, as bytes.
 *   classify: fastText lines "__label__NAME text..." (empty lines skipped),
 *             or a directory DIR/NAME/ *.txt (the subdirectory is the label).
 *   tag:      "word<TAB>tag" lines, an empty line after each sentence.
 * Unlabelled input (for prediction): classify, one text per line (a leading
 * "__label__X " is dropped); tag, one sentence per line, words separated by
 * spaces. */

typedef enum { LSTM_TASK_LM = 0, LSTM_TASK_CLASSIFY, LSTM_TASK_TAG } lstm_task;

/* "lm", "classify", "tag"; parse returns -1 for an unknown name. */
LSTM_API const char *lstm_task_name(lstm_task task);
/* What one example of the task's data sets is (the unit of
 * lstm_dataset_count): "byte", "document", "sentence"; "?" outside the enum. */
LSTM_API const char *lstm_task_example(lstm_task task);
LSTM_API int lstm_task_parse(const char *name);

typedef struct lstm_dataset lstm_dataset;

/* Reads a labelled data set (or, for lm, a text) from a file or directory. */
LSTM_API lstm_dataset *lstm_dataset_read(lstm_task task, const char *path, lstm_error *err);
/* Reads input to predict on (see above); lm reads bytes as lstm_dataset_read. */
LSTM_API lstm_dataset *lstm_dataset_read_unlabelled(lstm_task task, const char *path,
                                                    lstm_error *err);
/* The same from a buffer (copied); `name` is used in messages. */
LSTM_API lstm_dataset *lstm_dataset_from_memory(lstm_task task, const void *buf, size_t len,
                                                const char *name, int labelled, lstm_error *err);
LSTM_API void lstm_dataset_free(lstm_dataset *ds);
LSTM_API lstm_task lstm_dataset_task(const lstm_dataset *ds);
LSTM_API const char *lstm_dataset_name(const lstm_dataset *ds);
/* Examples: bytes (lm), documents (classify), sentences (tag). */
LSTM_API size_t lstm_dataset_count(const lstm_dataset *ds);
/* Tokens: bytes (lm), bytes of text (classify), words (tag). */
LSTM_API size_t lstm_dataset_tokens(const lstm_dataset *ds);
/* tag: the words of sentence i (n of them); NULL for other tasks. */
LSTM_API const char *const *lstm_dataset_sentence(const lstm_dataset *ds, size_t i, size_t *n);
/* Moves a random `portion` (0 < portion < 1) of the examples of ds into a
 * new data set, the rest into another; ds is left empty. lm splits off the
 * end of the text instead. */
LSTM_API lstm_status lstm_dataset_split(lstm_dataset *ds, double portion, uint64_t seed,
                                        lstm_dataset **rest, lstm_dataset **part,
                                        lstm_error *err);

/* ------------------------------------------------------------------ */
/* Task models: a character language model (lm), a sequence classifier
 * (classify) and a part-of-speech tagger (tag), each an embedding, an
 * nn.LSTM and a linear layer, trained end to end. A trained model is one
 * safetensors file: PyTorch-style tensor names (embedding.<feature>.weight,
 * lstm.weight_ih_l0 ..., decoder.weight, decoder.bias) and, in the
 * metadata, the task, the configuration, the vocabularies and the labels. */

typedef struct {
    lstm_task task;
    int embedding;     /* size of the main (byte or word) embedding */
    int hidden;        /* LSTM hidden size per direction */
    int proj;          /* LSTM proj_size (0: none): h = W_hr (o * tanh(c)) */
    int layers;
    int bidirectional; /* classify and tag only */
    float dropout;     /* on the embeddings, between layers and before the decoder */
    int vocab_size;    /* classify, tag: at most this many words (0: all) */
    int min_count;     /* classify, tag: rarer words are <unk> */
    int byte_tokens;   /* classify: tokens are bytes rather than words */
    int max_length;    /* classify: tokens kept from the start of a text (0: all) */
    int char_features; /* tag: suffix and word-shape embeddings beside the word's */
    float forget_bias; /* added to the forget gates' bias at initialisation (0: PyTorch's) */
    /* ONNX's LSTM options (lstm_rnn_config's peephole, clip, input_forget);
     * a model file records them (lstm.config, and lstm.clip /
     * lstm.input_forget for `lstm forward`) only when set */
    int peephole;      /* 1: peephole weights lstm.weight_peephole_l{k} */
    float cell_clip;   /* > 0: the gates' pre-activations clamped to +-cell_clip */
    int input_forget;  /* 1: coupled input and forget gates, f = 1 - i */
    /* tag with char_features: the longest suffix and prefix embedded (a
     * table each for suffix1..suffixN, then prefix1..prefixN). suffixes 0
     * means 3, what files written before the field hold; 1..5. prefixes
     * 0..4 (0: none). */
    int suffixes;
    int prefixes;
    /* tag: 1 scores whole tag sequences with a linear-chain CRF over the
     * decoder's scores (lstm_crf; tensors crf.transitions,
     * crf.start_transitions, crf.end_transitions) and predicts each word's
     * most probable tag under it (its marginal); 0: a softmax per word */
    int crf;
} lstm_model_config;

/* The defaults of each task (what `lstm train TASK` uses without options). */
LSTM_API lstm_model_config lstm_model_defaults(lstm_task task);

typedef struct lstm_model lstm_model;

/* Loads a model file written by lstm_model_save (any task), or a
 * checkpoint of lstm_train (its best weights; its last ones when no
 * validation ran yet). A model whose weights are not all finite is
 * refused (LSTM_ERR_NONFINITE). */
LSTM_API lstm_model *lstm_model_load(const char *path, lstm_error *err);
/* The same from the file's bytes in memory (copied); name is for messages. */
LSTM_API lstm_model *lstm_model_from_memory(const void *buf, size_t len, const char *name,
                                            lstm_error *err);
/* Writes the model atomically (temporary file, fsync, rename). */
LSTM_API lstm_status lstm_model_save(const lstm_model *m, const char *path, lstm_error *err);
LSTM_API void lstm_model_free(lstm_model *m);
/* Quantizes the model's weight matrices to int8 (lstm_params_quantize):
 * every matrix of the LSTM (lstm.weight_ih_l*, weight_hh_l*, weight_hr_l*)
 * and the decoder; the embeddings stay float (a lookup has no product to
 * speed up). Evaluation, prediction and sampling then run in int8, and
 * lstm_model_save writes the int8 form (lstm.quantization: int8-rowwise).
 * Such a model cannot be trained further. */
LSTM_API lstm_status lstm_model_quantize(lstm_model *m, lstm_error *err);
LSTM_API lstm_task lstm_model_task(const lstm_model *m);
LSTM_API const lstm_model_config *lstm_model_get_config(const lstm_model *m);
/* Output classes: labels (classify) or tags (tag); 0 for lm. */
LSTM_API int lstm_model_labels(const lstm_model *m);
LSTM_API const char *lstm_model_label(const lstm_model *m, int i);
/* Number of trainable values. */
LSTM_API size_t lstm_model_size(const lstm_model *m);
/* The embedded features of each token, in the order their embeddings are
 * concatenated into the LSTM's input: feature i's table is the tensor
 * "embedding.<name>.weight" (rows: its vocabulary, metadata
 * "lstm.vocab.<name>"), *dim its width (dim may be NULL). NULL for i out
 * of range. For exporting a model's graph (lstm export). */
LSTM_API int lstm_model_features(const lstm_model *m);
LSTM_API const char *lstm_model_feature(const lstm_model *m, int i, int *dim);

typedef struct {
    lstm_task task;
    double loss;            /* mean negative log likelihood, nats per token */
    size_t tokens;          /* predicted tokens (lm: bytes; classify: documents; tag: words) */
    double bpc, perplexity; /* lm: bits and perplexity per byte */
    size_t unknown;         /* lm: bytes outside the model's vocabulary */
    double accuracy;        /* classify, tag */
    double unseen_accuracy; /* tag: on words whose lowercased form never occurs in training */
    size_t unseen_tokens;
    /* A figure over no token (tokens 0: a text of one byte, every label
     * unknown; unseen_accuracy: unseen_tokens 0) was not measured: NaN. */
    int nlabels;            /* classify: the confusion matrix, [true * nlabels + predicted] */
    long *confusion;
    /* classify, tag: examples (documents, words) whose label the data set
     * has but the model does not know. They are left out of every figure
     * above (loss, accuracy, confusion, unseen), so that all figures cover
     * one set; `tokens` counts the rest. Their labels and how many of each:
     * nunknown_labels names, owned by the eval (lstm_eval_free). */
    size_t skipped;
    int nunknown_labels;
    char **unknown_labels;
    size_t *unknown_counts;
} lstm_eval;

/* Evaluates on a labelled data set of the model's task. Examples whose
 * label is unknown to the model are left out and listed (see lstm_eval). lm: `streams` parallel streams
 * over the text, each carrying its state (1: exact, the whole text as one
 * stream). Free with lstm_eval_free. */
LSTM_API lstm_status lstm_model_evaluate(lstm_model *m, lstm_ctx *ctx, const lstm_dataset *ds,
                                         int streams, lstm_eval *out, lstm_error *err);
LSTM_API void lstm_eval_free(lstm_eval *e);

/* classify: for each document of ds, the label index and its probability
 * (labels, probs: lstm_dataset_count(ds) entries). tag: for each word,
 * the tag index and its probability (lstm_dataset_tokens(ds) entries). */
LSTM_API lstm_status lstm_model_predict(lstm_model *m, lstm_ctx *ctx, const lstm_dataset *ds,
                                        int *labels, float *probs, lstm_error *err);

/* lm: feeds `prime` (its bytes must all be in the vocabulary; empty: start
 * from a newline), then draws `length` bytes one at a time with the state
 * carried, from the softmax at `temperature` (> 0) restricted to the
 * `top_k` most likely bytes (0: all). Each byte drawn is passed to emit
 * (which may be NULL: the bytes are drawn and dropped). Generation starts
 * from the zero state and a newline (when the text had newlines), then the
 * prime: a state like the ones training saw. */
LSTM_API lstm_status lstm_model_sample(lstm_model *m, lstm_ctx *ctx, const char *prime,
                                       size_t prime_len, size_t length, float temperature,
                                       int top_k, lstm_rng *rng,
                                       void (*emit)(unsigned char byte, void *arg), void *arg,
                                       lstm_error *err);

/* ------------------------------------------------------------------ */
/* Training. */

typedef enum { LSTM_EV_START, LSTM_EV_TRAIN, LSTM_EV_VALID, LSTM_EV_END } lstm_event_type;

typedef struct {
    lstm_event_type type;
    int epoch;            /* 1-based */
    long step;            /* optimizer steps so far */
    long steps_planned;   /* the schedule's length in steps (estimated under a time limit) */
    double progress;      /* 0..1: how far through the planned training */
    double elapsed;       /* seconds, validation included */
    double loss;          /* TRAIN: mean training loss since the last event; VALID: valid loss */
    double lr;
    double tokens_per_s;  /* TRAIN: since the last TRAIN event, over training time only */
    double comm_seconds;  /* TRAIN, END: seconds spent so far summing over the ranks that the
                             backward did not hide: the whole sums without overlap, the
                             calls to the comm and the final wait with it (0: one process) */
    const char *metric;   /* VALID, END: "bpc" or "accuracy" */
    double value;         /* VALID: the metric; END: the best one */
    int best;             /* VALID: a new best */
    const char *message;  /* START, END: a line to show, or NULL */
} lstm_event;

typedef void (*lstm_event_fn)(const lstm_event *ev, void *arg);

/* Data-parallel training across processes (one rank each): every rank
 * holds the whole model and takes its share of every global batch (lm: of
 * the parallel streams; classify, tag: of the examples of each batch); the
 * gradients are summed over the ranks before clipping and the optimizer
 * step, so every rank holds the same weights after every step. The library
 * knows no transport: the caller fills this with one (the lstm program:
 * MPI's allreduce). Both functions are collective: every rank calls them in
 * the same order with the same n. Every rank must call lstm_train with the
 * same data and configuration (checkpoint, valid, resume included: rank 0
 * writes, but every rank takes part in a checkpoint); lstm_train compares
 * them first and fails on every rank when they differ. When lstm_train
 * fails on one rank, the others may be waiting in a collective: the caller
 * must end the job (MPI_Abort), as the lstm program does. */
typedef struct {
    int rank, size; /* this process's rank in [0, size) */
    void *arg;      /* passed to the functions */
    /* buf[0..n) on every rank becomes the sum over the ranks; 0, or
     * nonzero when the transport failed */
    int (*allreduce_float)(float *buf, size_t n, void *arg);
    int (*allreduce_double)(double *buf, size_t n, void *arg);
    /* Optional, the three or none: the gradients summed while the backward
     * runs (DDP's and Horovod's buckets). lstm_train starts one sum per
     * group of tensors as soon as the backward has finished them (the
     * output layer, then each LSTM layer from the top, then the
     * embeddings), in the same order on every rank.
     * start_allreduce_float starts summing buf[0..n) in place and returns
     * at once; lstm_train leaves buf alone until wait_all. progress lets
     * the sums started move on (MPI advances its nonblocking collectives
     * only inside its calls); lstm_train calls it between the time steps
     * and the layers of the backward, from the thread that called
     * lstm_train. wait_all returns once every sum started has ended. Each
     * returns 0, or nonzero when the transport failed. With NULL here, the
     * gradients are summed by one allreduce_float after the backward. The
     * sums are the same either way (the same additions per element). */
    int (*start_allreduce_float)(float *buf, size_t n, void *arg);
    int (*progress)(void *arg);
    int (*wait_all)(void *arg);
} lstm_comm;

typedef struct {
    int epochs;            /* 0: until the time limit (one of the two is needed) */
    double time_limit;     /* seconds, validation included (0: none) */
    int patience;          /* stop after this many validations without a new best (0: never) */
    int batch;             /* sequences per batch (lm: parallel streams) */
    int seq_len;           /* lm: steps of truncated backpropagation per batch */
    lstm_optim_config optim;
    lstm_schedule_type schedule; /* decay of the learning rate over the planned steps */
    float lr_min;          /* cosine: the final rate, as a fraction of lr */
    float decay;           /* step/exponential: gamma per epoch */
    long warmup;           /* steps of linear warm-up */
    float clip;            /* clip the gradients' global norm to this (0: off) */
    /* > 0: validate, select and save an exponential moving average of the
     * weights (lstm_params_ema after every step, with the decay
     * min(ema, (1 + step) / (10 + step)) so the first steps are not
     * averaged with the initial weights) instead of the weights the
     * optimizer trains; 0: off. Without valid, the average is the model
     * returned. Typical: 0.999 (a window of about a thousand steps). */
    float ema;
    uint64_t seed;
    long valid_every;      /* steps between validations (0: at the end of each epoch) */
    int valid_streams;     /* lm: parallel streams when validating */
    long log_every;        /* steps between TRAIN events */
    const char *checkpoint; /* a file written atomically at each validation, or NULL */
    double checkpoint_every; /* and at least this often, in seconds (0: only at validations) */
    const char *resume;     /* a checkpoint to continue from, or NULL */
    /* the best model so far, written atomically (lstm_model_save) at every
     * new best, so that a kill at any moment leaves it; or NULL */
    const char *out;
    lstm_event_fn on_event;
    void *event_arg;
    /* polled after every step (with event_arg), or NULL: when it returns
     * nonzero the run ends there, as at its end but without a last
     * validation (the checkpoint is written when one is asked for), and the
     * END event's message is "interrupted" */
    int (*should_stop)(void *arg);
    /* the ranks of a data-parallel job (see lstm_comm), or NULL: one
     * process. Rank 0 alone emits events and writes out and checkpoint;
     * the stop decisions (time limit, should_stop, patience, a figure that
     * is not finite) are taken together, so no rank stops alone. */
    const lstm_comm *comm;
    /* validation runs on this context (NULL: the training one): a float
     * context when training in bfloat16, so that the figures selected on
     * are the ones lstm_model_evaluate gives later */
    lstm_ctx *valid_ctx;
} lstm_train_config;

/* The defaults of each task (what `lstm train TASK` uses without options). */
LSTM_API lstm_train_config lstm_train_defaults(lstm_task task);
/* Checks tc's numbers as lstm_train does before it trains (epochs or a
 * time limit given; batch, sequence length, rates, factors, clipping,
 * warm-up, patience and the average's decay in range and finite), so that a
 * caller can refuse them before reading any data. LSTM_ERR_INVALID. */
LSTM_API lstm_status lstm_train_config_check(const lstm_train_config *tc, lstm_error *err);

/* Trains a new model of mc's task on `train`, selecting on `valid` (which
 * may be NULL: then nothing is selected and the last state is kept), and
 * returns the model that did best on `valid`. With tc->resume, the
 * configuration, vocabularies and state come from the checkpoint and mc is
 * ignored; the data must be the same.
 * Divergence: a training loss or gradient norm that is not finite ends the
 * run at that step, before the optimizer applies it, and a validation loss
 * that is not finite ends it too; lstm_train then returns NULL with
 * LSTM_ERR_NONFINITE and a message naming the step. The best model so far
 * (tc->out) and the last checkpoint stay as they were: no file is written
 * with weights that are not finite. (Skipping such steps, as the loss
 * scalers of mixed-precision training do, would hide a run that has
 * diverged: these models train in float, where a NaN is not an overflow of
 * a scaled loss but the sign of a rate too high.) */
LSTM_API lstm_model *lstm_train(const lstm_model_config *mc, const lstm_train_config *tc,
                                lstm_ctx *ctx, const lstm_dataset *train,
                                const lstm_dataset *valid, lstm_error *err);

/* The model and training configurations a checkpoint holds, the ones
 * lstm_train continues with when resuming from it: mc entirely, and the
 * fields of tc that a checkpoint keeps (counters aside: epochs, batch,
 * seq_len, the optimizer and schedule, clipping, seed, patience, validation
 * settings), the others left as the caller set them (as lstm_train does: a
 * time limit set in tc replaces the checkpoint's). mc->forget_bias, which
 * only shapes the initialisation, is 0. For checking options given with a
 * resume against the run they would continue. */
LSTM_API lstm_status lstm_checkpoint_config(const char *path, lstm_model_config *mc,
                                            lstm_train_config *tc, lstm_error *err);

/* ------------------------------------------------------------------ */
/* The embeddable runtime's model from a file (include/lstm_embed.h holds
 * the runtime itself, which needs none of this library). */

struct lstm_embed_model;
typedef struct lstm_embed_host lstm_embed_host;

/* The runtime's description of a model file, its arrays owned by the
 * result: a task model (lm, classify, tag; metadata lstm.task), float or
 * int8-rowwise (each quantized matrix NAME as NAME.int8, I8 (rows, cols),
 * and NAME.scale, F32 (rows); embeddings and the decoder may be either),
 * or, without lstm.task, a bare nn.LSTM state_dict whose names share a
 * prefix, as lstm forward reads them. Configuration from the names and
 * shapes; labels (lstm.labels) and the lm's byte vocabulary
 * (lstm.vocab.byte) from the metadata. LSTM_ERR_SHAPE names a missing or
 * misshapen tensor, LSTM_ERR_FORMAT bad metadata or int8 values outside
 * [-127, 127], LSTM_ERR_NONFINITE a weight or scale that is not finite. */
LSTM_API lstm_embed_host *lstm_embed_host_load(const lstm_st *st, lstm_error *err);
/* The description (valid until lstm_embed_host_free). */
LSTM_API const struct lstm_embed_model *lstm_embed_host_model(const lstm_embed_host *h);
LSTM_API void lstm_embed_host_free(lstm_embed_host *h);

#ifdef __cplusplus
}
#endif
#endif /* LSTM_H */
