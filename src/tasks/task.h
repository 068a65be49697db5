/* task.h - the task wing's own header: the inside of lstm_model, batches,
 * data sets encoded as ids, the trainer's state, and the table of
 * operations (task_ops) in which each task says what is its own. The shared
 * code (model.c, model_file.c, infer.c, train.c, data.c) never branches on
 * the task: it calls the table. A new task is one more file like task_lm.c,
 * task_classify.c or task_tag.c and one line in task_table (data.c).
 *
 * Everything here is built on the public header (lstm.h) alone: nothing
 * reaches into the numeric core or the objects' insides. */
#ifndef LSTM_TASK_H
#define LSTM_TASK_H

#include "data.h"
#include "vocab.h"

#include <stdlib.h>

/* a * b, or SIZE_MAX when it overflows. */
static inline size_t task_mul_size(size_t a, size_t b) {
    size_t r;
    return __builtin_mul_overflow(a, b, &r) ? (size_t)-1 : r;
}

/* The tagger's features: the word, suffix1..5, the shape, prefix1..4. */
#define TAG_MAX_SUFFIXES 5
#define TAG_MAX_PREFIXES 4
#define MAX_FEATURES (2 + TAG_MAX_SUFFIXES + TAG_MAX_PREFIXES)
#define PAD_ID 0 /* id 0 of every vocabulary: padding (never a real token) */
#define UNK_ID 1 /* id 1: anything not in the vocabulary */

/* The two entries every feature vocabulary starts with. */
extern const char *const task_specials[2];

/* One embedded feature of a token: the byte (lm), the token (classify), or
 * the word, its suffixes and its shape (tag). */
typedef struct {
    char name[16];     /* tensor embedding.<name>.weight, metadata lstm.vocab.<name> */
    int kind;          /* what the task looks it up by (its own enum) */
    int k;             /* a parameter of the kind (tag: an affix's length) */
    int dim;
    lstm_vocab *vocab; /* ids 0 <pad>, 1 <unk>, then the entries */
    int param;         /* the table (vocab size, dim) in the model's params */
} feature;

/* One batch, time-major: position (t, b) is t * B + b. */
typedef struct {
    int T, B;
    int32_t *ids[MAX_FEATURES]; /* (T*B) per feature; PAD_ID past a length */
    int *lengths;               /* (B) or NULL (all T) */
    int32_t *targets;           /* pooled: (B); else (T*B); -100 where ignored */
    long loss_count;            /* the loss is the sum over this many targets (those
                                   of the whole global batch when the ranks share it);
                                   0: the batch's own */
    float *h0, *c0;             /* the carried state (L,B,.), or NULL */
    float *hn, *cn;             /* where the state after the batch goes, or NULL */
} model_batch;

/* Counts a forward pass produces. */
typedef struct {
    double loss_sum; /* summed negative log likelihood, nats */
    long count;      /* predicted tokens */
    long correct;    /* argmax = target */
} batch_stats;

typedef struct task_ops task_ops;

struct lstm_model {
    const task_ops *ops;
    lstm_model_config cfg;
    int nfeat;
    feature feat[MAX_FEATURES];
    int in_dim;          /* the LSTM's input: the features' dims together */
    int out_dim;         /* the LSTM's output: D * (proj or hidden) */
    int nout;            /* decoder outputs: vocabulary (lm) or labels */
    char **labels;       /* the output classes' names (tasks with labels) */
    int nlabels;
    lstm_params *p;
    lstm_rnn *rnn;
    int dec_w, dec_b;
    int crf_t, crf_s, crf_e; /* cfg.crf: transitions, start_transitions, end_transitions */
    void *crf_work;          /* lstm_crf's, grown as batches need */
    size_t crf_cap;
    /* working memory, grown as batches need */
    float *buf;
    size_t cap;
    float *X, *Xmask, *Y, *Ymask, *pooled, *logits, *dlogits, *dpooled, *dY, *dX;
};

/* A data set of sequences as ids of the model's vocabularies (classify,
 * tag): example i is positions [start[i], start[i+1]). */
typedef struct {
    size_t n;
    size_t *start;              /* (n+1) */
    int32_t *ids[MAX_FEATURES]; /* per position */
    int32_t *targets;           /* per example (pooled) or per position; -1 unknown */
    unsigned char *unseen;      /* per position: the word never seen in training, or NULL */
} encoded_set;

/* The state of a training run (train.c); `task` points to what the task's
 * training operations keep (lm: the streams; classify, tag: the epoch's
 * order), made by task_ops.train_setup. */
typedef struct trainer {
    const task_ops *ops; /* the model's */
    lstm_model *m;
    lstm_ctx *ctx;
    lstm_train_config tc;
    const lstm_dataset *train, *valid;
    lstm_optim *opt;
    lstm_params *best;
    lstm_params *ema, *raw; /* tc.ema > 0: the average, and the trained weights while it is
                               in the model for a validation */
    int have_best;
    double best_value, best_loss;
    int bad_valids;
    int epoch;           /* 0-based, the epoch under way */
    long step;           /* optimizer steps so far */
    long batch_in_epoch;
    long steps_per_epoch;
    lstm_rng drop;       /* dropout and word dropout */
    double t0, elapsed_before;
    double valid_secs;      /* how long the last validation took (0: none yet) */
    double last_checkpoint; /* elapsed() at the last checkpoint */
    double train_secs, train_tokens; /* for an estimate of the first validation's time */
    double valid_tokens;             /* (in the model's tokens) */
    uint64_t hash;
    int rank, nranks;    /* of a data-parallel job (tc.comm), or 0 and 1 */
    double clock;        /* rank 0's elapsed() at the last step: every rank's clock */
    double comm_secs;    /* spent in the sums of the gradients and counts */
    void *task;
    /* events */
    double ev_loss;
    long ev_tokens, ev_count;
    double ev_time; /* train_secs at the last TRAIN event */
} trainer;

/* What a task is. Every pointer is set unless its comment says "or NULL". */
struct task_ops {
    lstm_task task;
    const char *name;    /* "lm", as in lstm_task_name */
    const char *title;   /* for messages: "a language model" */
    const char *example; /* what one example of a data set is: "byte", "document" */
    const char *label;   /* what an output class is called ("label", "tag"), or NULL:
                            the outputs are the input vocabulary (lm) */
    const char *metric;  /* the validation figure: "bpc" or "accuracy" */
    int lower_is_better; /* of the metric */
    int pooled;          /* one prediction per sequence (mean over its real steps) */
    int sequential;      /* unidirectional only: it predicts what comes next */

    /* the task's defaults on top of the common ones (model.c, train.c) */
    void (*defaults)(lstm_model_config *mc, lstm_train_config *tc);

    /* Data sets (data.c calls these). parse works in place on ds->store,
     * len bytes plus one spare, for ds->labelled or unlabelled input. */
    lstm_status (*parse)(lstm_dataset *ds, size_t len, lstm_error *err);
    /* a labelled data set from a directory, or NULL: directories refused */
    lstm_dataset *(*read_dir)(const char *dir, lstm_error *err);
    size_t (*count)(const lstm_dataset *ds);  /* examples */
    size_t (*tokens)(const lstm_dataset *ds); /* tokens */
    /* A new data set of the examples i of ds with pick[i] == want, in ds's
     * order; NULL when out of memory. A split draws k examples at random
     * (from the seed) for one part and the rest for the other. */
    lstm_dataset *(*subset)(const lstm_dataset *ds, const unsigned char *pick, int want,
                            const char *name);
    /* or NULL: a random split as above. Else the task's own split: k
     * examples to *part, the rest to *rest; 0, or -1 when out of memory */
    int (*split)(const lstm_dataset *ds, size_t k, uint64_t seed, const char *rest_name,
                 const char *part_name, lstm_dataset **rest, lstm_dataset **part);
    /* FNV-1a of the data (h is the running hash), to recognise a checkpoint's data */
    uint64_t (*hash)(const lstm_dataset *ds, uint64_t h);

    /* The model: its features (m->feat, m->nfeat, dims), and their
     * vocabularies built from the training data. */
    void (*features)(lstm_model *m);
    lstm_status (*vocabs)(lstm_model *m, const lstm_dataset *train, lstm_error *err);
    /* a data set as ids of the model's vocabularies, or NULL: the sequence
     * tasks' (sequences.c) batches, training, evaluation and prediction
     * are built on it */
    lstm_status (*encode)(const lstm_model *m, const lstm_dataset *ds, encoded_set *e,
                          lstm_error *err);

    /* Training (train.c calls these, in this order). setup sizes t->task,
     * the batches and t->steps_per_epoch; epoch runs before each epoch;
     * batch fills this rank's share of batch k of the epoch (b->B may be
     * 0 for a rank whose share of a short last batch is empty) and sets
     * b->loss_count to the targets of the whole batch, and *tokens to its
     * tokens; after runs after each step; save and load add and read the
     * task's state in checkpoints (or NULL: none; save is called on every
     * rank, since it may gather); the valid set's size in the model's
     * tokens, for estimates. */
    lstm_status (*train_setup)(trainer *t, lstm_error *err);
    lstm_status (*train_epoch)(trainer *t, lstm_error *err);
    lstm_status (*train_batch)(trainer *t, long k, model_batch *b, long *tokens, lstm_error *err);
    void (*train_after)(trainer *t);
    lstm_status (*train_save)(const trainer *t, lstm_st_writer *w, lstm_error *err);
    lstm_status (*train_load)(trainer *t, const lstm_st *st, lstm_error *err);
    double (*valid_tokens)(const trainer *t, const lstm_dataset *valid);
    void (*train_free)(trainer *t);

    /* Inference (infer.c checks the arguments common to every task).
     * evaluate: with comm (the ranks of a training job, or NULL), each rank
     * evaluates its share and the figures are summed, so that every rank
     * gets the whole set's. */
    lstm_status (*evaluate)(lstm_model *m, lstm_ctx *ctx, const lstm_dataset *ds, int streams,
                            const lstm_comm *comm, lstm_eval *out, lstm_error *err);
    /* or NULL: the task does not predict labels */
    lstm_status (*predict)(lstm_model *m, lstm_ctx *ctx, const lstm_dataset *ds, int *labels,
                           float *probs, lstm_error *err);
    /* or NULL: the task does not write text */
    lstm_status (*sample)(lstm_model *m, lstm_ctx *ctx, const char *prime, size_t prime_len,
                          size_t length, float temperature, int top_k, lstm_rng *rng,
                          void (*emit)(unsigned char byte, void *arg), void *arg,
                          lstm_error *err);
};

extern const task_ops task_lm, task_classify, task_tag;

/* The table of a task, or NULL for a value outside the enum (data.c). */
const task_ops *task_find(lstm_task task);

/* ------------------------------------------------------------------ */
/* model.c: the network every task shares. */

/* Creates a model of cfg's task with vocabularies (and labels) built from
 * the training data, parameters initialised from rng. */
lstm_model *model_create(const lstm_model_config *cfg, const lstm_dataset *train, lstm_rng *rng,
                         lstm_error *err);
/* An empty model of cfg's task with its features set up (no vocabularies,
 * no parameters yet): the first step of model_create and of loading. */
lstm_model *model_new(const lstm_model_config *cfg, lstm_error *err);
/* Declares the parameters (the vocabularies and labels must be there). */
lstm_status model_declare(lstm_model *m, lstm_error *err);
/* Checks a model configuration. */
lstm_status model_check_config(const lstm_model_config *c, lstm_error *err);

/* Runs a batch; with `training`, dropout is applied (rng), the gradients
 * of the mean loss are accumulated into m->p's gradients. The batch's
 * log-probabilities are left in m->logits. */
/* What a training batch's backward tells its caller as it goes, for
 * summing the gradients over ranks while it runs: ready(arg, s) once the
 * tensors of stage s (model_grad_stages) have their final gradients,
 * stages in order; progress(arg) between the time steps. */
typedef struct {
    void (*ready)(void *arg, int stage);
    void (*progress)(void *arg);
    void *arg;
} model_hooks;
lstm_status model_batch_run(lstm_model *m, lstm_ctx *ctx, const model_batch *b, int training,
                            lstm_rng *rng, const model_hooks *hooks, batch_stats *st,
                            lstm_error *err);
/* The stages of the backward, in the order it finishes them: the decoder,
 * the LSTM's layers from the top, the embeddings. Stage s's gradients are
 * [from[s], to[s]) of m->p's gradient buffer (padding included; together
 * the stages cover it). Returns the number of stages, layers + 2 (16 + 2
 * at most). */
#define MODEL_MAX_STAGES 18
int model_grad_stages(const lstm_model *m, size_t *from, size_t *to);

/* st and extra[0..n) summed over the ranks of comm (every rank gets the
 * sums). */
lstm_status task_sum_stats(const lstm_comm *comm, batch_stats *st, double *extra, size_t n,
                           lstm_error *err);

/* The index of the largest of x[0..n) (the first of equals); n >= 1. */
int task_argmax(const float *x, int n);
/* f->vocab from the counts in raw: <pad>, <unk>, then the keys seen at
 * least min_count (at least 1) times, most frequent first, at most limit
 * of them (0: all). */
lstm_status task_prune_vocab(feature *f, const lstm_vocab *raw, int limit, long min_count,
                             lstm_error *err);

/* ------------------------------------------------------------------ */
/* model_file.c: the model in a safetensors file. */

/* The model described by a file's metadata, with its tensors loaded; with
 * strict, a tensor the model does not have is an error (a checkpoint holds
 * the optimizer's and the trainer's tensors beside the model's). */
lstm_model *model_from_st(const lstm_st *st, int strict, lstm_error *err);
/* The configuration in a file's metadata (lstm.task, lstm.config), checked. */
lstm_status model_read_config(const lstm_st *st, lstm_model_config *c, lstm_error *err);
/* Adds the tensors and metadata of the model to w. */
lstm_status model_write(const lstm_model *m, lstm_st_writer *w, lstm_error *err);

/* ------------------------------------------------------------------ */
/* sequences.c: what the sequence tasks (classify, tag) share. */

void encoded_free(encoded_set *e);
/* Allocates e for n examples of total positions (e->start filled by the
 * caller), nfeat features, per-position targets or not, unseen or not. */
lstm_status encoded_alloc(encoded_set *e, size_t n, size_t total, int nfeat, int per_position,
                          int with_unseen, const char *name, lstm_error *err);
/* The model's label index of each data-set label (-1: unknown to it); malloc'd. */
int *encoded_map_labels(const lstm_model *m, const lstm_dataset *ds);
/* The example indices of e sorted by length (ties by index); malloc'd. */
size_t *encoded_length_order(const encoded_set *e);
/* Fills a batch from examples order[0..B) of e, padding to the longest.
 * The batch's arrays point into `scratch` (grown as needed). */
lstm_status encoded_make_batch(const lstm_model *m, const encoded_set *e, const size_t *order,
                               int B, model_batch *b, void **scratch, size_t *cap,
                               lstm_error *err);

/* Runs a model over a whole encoded set in batches of B (no dropout),
 * calling `visit` with each batch and its log-probabilities. */
typedef void (*batch_visit)(const lstm_model *m, const model_batch *b, const size_t *order,
                            const float *logp, void *arg);
lstm_status encoded_run(lstm_model *m, lstm_ctx *ctx, const encoded_set *e, int B,
                        batch_stats *total, batch_visit visit, void *arg, lstm_error *err);
/* The same over the batches k with k % nranks == rank. */
lstm_status encoded_run_share(lstm_model *m, lstm_ctx *ctx, const encoded_set *e, int B, int rank,
                              int nranks, batch_stats *total, batch_visit visit, void *arg,
                              lstm_error *err);

/* The training operations of the sequence tasks (those with
 * task_ops.encode): batches grouped by length in a shuffled order per
 * epoch, word dropout on rare words. */
lstm_status seq_train_setup(trainer *t, lstm_error *err);
lstm_status seq_train_epoch(trainer *t, lstm_error *err);
lstm_status seq_train_batch(trainer *t, long k, model_batch *b, long *tokens, lstm_error *err);
void seq_train_free(trainer *t);
/* The encoded training set (for the classifier's token estimate). */
const encoded_set *seq_train_encoded(const trainer *t);

/* Prediction for the sequence tasks: per example (pooled) or per position. */
lstm_status seq_predict(lstm_model *m, lstm_ctx *ctx, const lstm_dataset *ds, int *labels,
                        float *probs, lstm_error *err);
/* Evaluation for the sequence tasks: loss and accuracy over the examples
 * whose label the model knows; the others are counted by label in out
 * (skipped, unknown_labels). ds_labels[0..n) is the data set's label index
 * of each example (pooled) or position. `visit` adds the task's own
 * figures for each batch (targets < 0 are the skipped examples). */
typedef void (*eval_visit)(const lstm_model *m, const encoded_set *e, const model_batch *b,
                           const size_t *order, const float *logp, lstm_eval *out);
lstm_status seq_evaluate(lstm_model *m, lstm_ctx *ctx, const lstm_dataset *ds,
                         const int *ds_labels, size_t n, eval_visit visit, const lstm_comm *comm,
                         lstm_eval *out, lstm_error *err);

/* ------------------------------------------------------------------ */
/* data.c: helpers the tasks' parsers share. */

/* File names in messages are cut to this many bytes, so the line number and
 * the complaint after them always fit. */
#define NAME_FMT "%.300s"

/* Walks a buffer line by line. A line ends at "\n" or at the end of the
 * buffer; its text excludes the "\n" and one "\r" before it. */
typedef struct {
    char *buf;
    size_t len;
    size_t pos;    /* where the next line starts */
    size_t number; /* of the current line, from 1 */
    char *s;       /* the current line's text, n bytes */
    size_t n;
} line_reader;

int line_next(line_reader *r);
/* Lines in buf: a last line without "\n" counts too. */
size_t count_lines(const char *buf, size_t len);
int is_blank_char(char c);
/* 1 when the line holds only spaces and tabs (or nothing). */
int is_blank(const char *s, size_t n);
/* Fills err with "<name>: line N: <message>"; returns LSTM_ERR_FORMAT. */
lstm_status line_fail(lstm_error *err, const char *name, size_t line, const char *fmt, ...)
    LSTM_PRINTF(4, 5);
lstm_status ds_nomem(lstm_error *err, const char *name);
/* An empty data set; NULL when out of memory. */
lstm_dataset *ds_create(lstm_task task, const char *name, int labelled);
/* realloc of n elements of `size` bytes (at least one element); 0 or -1. */
int ds_resize(void *pp, size_t n, size_t size);
/* ds->labels from the names in v, in id order; 0 or -1. */
int ds_labels_from_vocab(lstm_dataset *ds, const lstm_vocab *v);
int ds_copy_labels(lstm_dataset *dst, const lstm_dataset *src);
/* Drops a UTF-8 byte-order mark (EF BB BF) at the start of buf[0..len),
 * which editors on Windows write and no reader here wants; the new length. */
size_t ds_skip_bom(char *buf, size_t len);
/* FNV-1a over n bytes, h the running hash (start: DS_FNV_BASIS). */
#define DS_FNV_BASIS 0xcbf29ce484222325ULL
uint64_t ds_fnv(uint64_t h, const void *p, size_t n);

#endif
