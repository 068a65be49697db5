/* model.h - the inside of lstm_model, shared by model.c (layers, files,
 * evaluation, prediction) and train.c (the training loop). */
#ifndef LSTM_MODEL_H
#define LSTM_MODEL_H

#include "data.h"
#include "internal.h"

#define MAX_FEATURES 6
#define PAD_ID 0 /* id 0 of every vocabulary: padding (never a real token) */
#define UNK_ID 1 /* id 1: anything not in the vocabulary */

/* What an embedding is looked up by. */
typedef enum {
    FEAT_BYTE,   /* lm: one byte */
    FEAT_TOKEN,  /* classify: a word (or byte) of the tokenised text */
    FEAT_WORD,   /* tag: the word, lowercased */
    FEAT_SUFFIX, /* tag: the last k bytes of the lowercased word */
    FEAT_SHAPE   /* tag: capitalisation, digits, punctuation */
} feature_kind;

typedef struct {
    char name[16];       /* tensor embedding.<name>.weight, metadata lstm.vocab.<name> */
    feature_kind kind;
    int k;               /* FEAT_SUFFIX: its length */
    int dim;
    lstm_vocab *vocab;   /* ids 0 <pad>, 1 <unk>, then the entries */
    int param;           /* the table (vocab size, dim) in the model's params */
} feature;

/* One batch, time-major: position (t, b) is t * B + b. */
typedef struct {
    int T, B;
    int32_t *ids[MAX_FEATURES]; /* (T*B) per feature; PAD_ID past a length */
    int *lengths;               /* (B) or NULL (lm: all T) */
    int32_t *targets;           /* lm, tag: (T*B), -100 where ignored; classify: (B) */
    float *h0, *c0;             /* lm: the carried state (L,B,.), or NULL */
    float *hn, *cn;             /* lm: where the state after the batch goes, or NULL */
} model_batch;

/* Counts a forward pass produces. */
typedef struct {
    double loss_sum; /* summed negative log likelihood, nats */
    long count;      /* predicted tokens */
    long correct;    /* argmax = target */
} batch_stats;

struct lstm_model {
    lstm_model_config cfg;
    int nfeat;
    feature feat[MAX_FEATURES];
    int in_dim;          /* the LSTM's input: the features' dims together */
    int out_dim;         /* the LSTM's output: D * hidden */
    int nout;            /* decoder outputs: vocabulary (lm) or labels */
    char **labels;       /* classify, tag */
    int nlabels;
    lstm_params *p;
    lstm_rnn *rnn;
    int dec_w, dec_b;
    /* working memory, grown as batches need */
    float *buf;
    size_t cap;
    float *X, *Xmask, *Y, *Ymask, *pooled, *logits, *dlogits, *dpooled, *dY, *dX;
};

/* Creates a model of cfg's task with vocabularies (and labels) built from
 * the training data, parameters initialised from rng. */
lstm_model *model_create(const lstm_model_config *cfg, const lstm_dataset *train, lstm_rng *rng,
                         lstm_error *err);
/* The model described by a file's metadata, with its tensors loaded; with
 * strict, a tensor the model does not have is an error (a checkpoint holds
 * the optimizer's and the trainer's tensors beside the model's). */
lstm_model *model_from_st(const lstm_st *st, int strict, lstm_error *err);
/* Adds the tensors and metadata of the model to w; prefix for the tensors. */
lstm_status model_write(const lstm_model *m, lstm_st_writer *w, lstm_error *err);

/* Runs a batch; with `training`, dropout is applied (rng), the gradients
 * of the mean loss are accumulated into m->p's gradients. */
lstm_status model_batch_run(lstm_model *m, lstm_ctx *ctx, const model_batch *b, int training,
                            lstm_rng *rng, batch_stats *st, lstm_error *err);

/* The ids of a data set's examples for a feature, and its targets. */
typedef struct {
    size_t n;          /* examples */
    size_t *start;     /* (n+1): example i is positions [start[i], start[i+1]) */
    int32_t *ids[MAX_FEATURES];
    int32_t *targets;  /* per position (tag) or per example (classify); -1 unknown label */
    unsigned char *unseen; /* tag: per word, its lowercased form not in training */
} encoded_set;

/* classify and tag: the data set as ids of the model's vocabularies. */
lstm_status model_encode(const lstm_model *m, const lstm_dataset *ds, encoded_set *e,
                         lstm_error *err);
void encoded_free(encoded_set *e);
/* lm: the bytes as ids; unknown counts bytes outside the vocabulary. */
int32_t *model_encode_bytes(const lstm_model *m, const unsigned char *bytes, size_t n,
                            size_t *unknown);

/* The example indices of e sorted by length (ties by index); malloc'd. */
size_t *model_length_order(const encoded_set *e);

/* Fills a batch from examples order[0..B) of e (classify, tag), padding to
 * the longest. The batch's arrays point into `scratch` (grown as needed). */
lstm_status model_make_batch(const lstm_model *m, const encoded_set *e, const size_t *order, int B,
                             model_batch *b, void **scratch, size_t *cap, lstm_error *err);

#endif
