/*
 * test_model.c - the task models through the library's API: a model saved
 * and loaded predicts exactly as before; training is reproducible from its
 * seed; a damaged model file is refused with a message that says why;
 * sampling and evaluation keep their promises.
 */
#include "check.h"
#include "lstm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[64];

static lstm_dataset *mem(lstm_task task, const char *text, int labelled) {
    lstm_error err;
    lstm_dataset *ds = lstm_dataset_from_memory(task, text, strlen(text), "test data", labelled, &err);
    CHECK(ds != NULL, "data: %s", err.msg);
    return ds;
}

static const char *tag_text =
    "The\tat\ncat\tnn\nsat\tvbd\n.\t.\n\n"
    "A\tat\ndog\tnn\nran\tvbd\nfast\trb\n.\t.\n\n"
    "The\tat\ndog\tnn\nsat\tvbd\n.\t.\n\n"
    "A\tat\ncat\tnn\nran\tvbd\n.\t.\n\n";

static const char *cls_text = "__label__pos good great fine\n__label__neg bad awful poor\n"
                              "__label__pos great good\n__label__neg poor bad\n"
                              "__label__pos fine good great\n__label__neg awful bad poor\n";

static lstm_model *train_small(lstm_task task, const char *text, int epochs, uint64_t seed) {
    lstm_error err;
    lstm_dataset *ds = mem(task, text, 1);
    lstm_model_config mc = lstm_model_defaults(task);
    mc.embedding = 8;
    mc.hidden = 8;
    mc.layers = task == LSTM_TASK_LM ? 2 : 1;
    lstm_train_config tc = lstm_train_defaults(task);
    tc.epochs = epochs;
    tc.batch = 2;
    tc.seq_len = 8;
    tc.seed = seed;
    tc.valid_every = 0;
    tc.valid_streams = 2;
    tc.optim.lr = 1e-2f;
    lstm_ctx *ctx = lstm_ctx_create(NULL, &err);
    lstm_model *m = ds ? lstm_train(&mc, &tc, ctx, ds, ds, &err) : NULL;
    CHECK(m != NULL, "train %s: %s", lstm_task_name(task), err.msg);
    lstm_ctx_free(ctx);
    lstm_dataset_free(ds);
    return m;
}

/* Saves, loads, and compares predictions and evaluation. */
static void test_round_trip(lstm_task task, const char *text) {
    lstm_error err;
    lstm_model *m = train_small(task, text, 3, 7);
    if (!m)
        return;
    char path[128];
    snprintf(path, sizeof path, "%s/%s.safetensors", tmpdir, lstm_task_name(task));
    CHECK(lstm_model_save(m, path, &err) == LSTM_OK, "save: %s", err.msg);
    lstm_model *back = lstm_model_load(path, &err);
    CHECK(back != NULL, "load: %s", err.msg);
    if (!back) {
        lstm_model_free(m);
        return;
    }
    CHECK(lstm_model_task(back) == task && lstm_model_size(back) == lstm_model_size(m),
          "%s: the loaded model has the same task and size", lstm_task_name(task));
    lstm_ctx *ctx = lstm_ctx_create(NULL, &err);
    lstm_dataset *ds = mem(task, text, 1);
    lstm_eval a, b;
    CHECK(lstm_model_evaluate(m, ctx, ds, 1, &a, &err) == LSTM_OK, "eval: %s", err.msg);
    CHECK(lstm_model_evaluate(back, ctx, ds, 1, &b, &err) == LSTM_OK, "eval: %s", err.msg);
    CHECK(a.loss == b.loss && a.accuracy == b.accuracy,
          "%s: the loaded model evaluates exactly as the saved one (%g vs %g)",
          lstm_task_name(task), a.loss, b.loss);
    lstm_eval_free(&a);
    lstm_eval_free(&b);
    if (task != LSTM_TASK_LM) {
        size_t n = task == LSTM_TASK_TAG ? lstm_dataset_tokens(ds) : lstm_dataset_count(ds);
        int *l1 = calloc(n, sizeof(int)), *l2 = calloc(n, sizeof(int));
        float *p1 = calloc(n, sizeof(float)), *p2 = calloc(n, sizeof(float));
        lstm_model_predict(m, ctx, ds, l1, p1, &err);
        lstm_model_predict(back, ctx, ds, l2, p2, &err);
        CHECK(!memcmp(l1, l2, sizeof(int) * n) && !memcmp(p1, p2, sizeof(float) * n),
              "%s: the same predictions after a round trip", lstm_task_name(task));
        free(l1), free(l2), free(p1), free(p2);
    }
    lstm_dataset_free(ds);
    lstm_ctx_free(ctx);
    lstm_model_free(back);
    lstm_model_free(m);
}

static void test_determinism(void) {
    lstm_model *a = train_small(LSTM_TASK_TAG, tag_text, 2, 3);
    lstm_model *b = train_small(LSTM_TASK_TAG, tag_text, 2, 3);
    lstm_model *c = train_small(LSTM_TASK_TAG, tag_text, 2, 4);
    char pa[128], pb[128], pc[128];
    snprintf(pa, sizeof pa, "%s/a", tmpdir);
    snprintf(pb, sizeof pb, "%s/b", tmpdir);
    snprintf(pc, sizeof pc, "%s/c", tmpdir);
    if (a && b && c) {
        lstm_model_save(a, pa, NULL);
        lstm_model_save(b, pb, NULL);
        lstm_model_save(c, pc, NULL);
        FILE *fa = fopen(pa, "rb"), *fb = fopen(pb, "rb"), *fc = fopen(pc, "rb");
        static char ba[1 << 20], bb[1 << 20], bc[1 << 20];
        size_t na = fread(ba, 1, sizeof ba, fa), nb = fread(bb, 1, sizeof bb, fb);
        size_t nc = fread(bc, 1, sizeof bc, fc);
        fclose(fa), fclose(fb), fclose(fc);
        CHECK(na == nb && memcmp(ba, bb, na) == 0, "the same seed gives the same model file");
        CHECK(na != nc || memcmp(ba, bc, na) != 0, "another seed gives another model");
    }
    lstm_model_free(a), lstm_model_free(b), lstm_model_free(c);
}

typedef struct {
    char *buf;
    size_t n;
} sample_buf;

static void emit(unsigned char b, void *a) {
    sample_buf *sb = a;
    if (sb->n < 63)
        sb->buf[sb->n++] = (char)b;
}

static void test_sample(void) {
    lstm_error err;
    lstm_model *m = train_small(LSTM_TASK_LM, "abcabcabcabcabcabcabcabcabcabc\nabcabcabcabc\n", 5, 1);
    if (!m)
        return;
    lstm_ctx *ctx = lstm_ctx_create(NULL, &err);
    char out[2][64];
    for (int r = 0; r < 2; r++) {
        lstm_rng rng;
        lstm_rng_seed(&rng, 9);
        sample_buf arg = {out[r], 0};
        CHECK(lstm_model_sample(m, ctx, "ab", 2, 40, 0.7f, 2, &rng, emit, &arg, &err) == LSTM_OK,
              "sample: %s", err.msg);
        size_t n = arg.n;
        out[r][n] = 0;
        CHECK(n == 40, "sample emits the bytes asked for: %zu", n);
        CHECK(strspn(out[r], "abc\n") == n, "only bytes of the training text: %s", out[r]);
    }
    CHECK(strcmp(out[0], out[1]) == 0, "the same seed draws the same text");
    CHECK(lstm_model_sample(m, ctx, "abz", 3, 5, 1, 0, NULL, NULL, NULL, &err) == LSTM_ERR_INVALID &&
              strstr(err.msg, "byte 2 (0x7a)"),
          "a prime byte the model never saw is refused: %s", err.msg);
    CHECK(lstm_model_sample(m, ctx, "a", 1, 5, 0, 0, NULL, NULL, NULL, &err) == LSTM_ERR_INVALID,
          "temperature 0 is refused: %s", err.msg);
    lstm_ctx_free(ctx);
    lstm_model_free(m);
}

/* A model file with one thing wrong, from a good one. */
/* A writer holding st's tensors and metadata, with the metadata `key`
 * replaced by `value` (dropped when value is NULL). */
static lstm_st_writer *copy_with_meta(const lstm_st *st, const char *key, const char *value) {
    lstm_st_writer *w = lstm_st_writer_create();
    for (size_t i = 0; i < lstm_st_count(st); i++) {
        const lstm_st_tensor *t = lstm_st_tensor_at(st, i);
        lstm_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, NULL);
    }
    for (size_t i = 0; i < lstm_st_meta_count(st); i++) {
        const char *k, *val;
        lstm_st_meta_at(st, i, &k, &val);
        if (strcmp(k, key) != 0)
            lstm_st_writer_meta(w, k, val, NULL);
        else if (value)
            lstm_st_writer_meta(w, k, value, NULL);
    }
    return w;
}

static void expect_refused(const char *what, lstm_st_writer *w, const char *needle) {
    void *buf;
    size_t len;
    lstm_error err;
    lstm_st_writer_to_memory(w, &buf, &len, &err);
    lstm_model *m = lstm_model_from_memory(buf, len, "damaged", &err);
    CHECK(m == NULL && strstr(err.msg, needle), "%s: refused with '%s': %s", what, needle,
          m ? "(loaded)" : err.msg);
    lstm_model_free(m);
    free(buf);
}

static void test_damaged(void) {
    lstm_model *m = train_small(LSTM_TASK_CLASSIFY, cls_text, 1, 1);
    if (!m)
        return;
    char path[128];
    snprintf(path, sizeof path, "%s/good.st", tmpdir);
    lstm_model_save(m, path, NULL);
    lstm_model_free(m);
    lstm_error err;
    lstm_st *st = lstm_st_open(path, &err);
    /* each variant copies every tensor and metadata entry but one change */
    const char *drop_meta[] = {"lstm.task", "lstm.config", "lstm.labels", "lstm.vocab.token"};
    const char *needles[] = {"not an lstm model file", "not an lstm model file",
                             "no lstm.labels", "no lstm.vocab.token"};
    for (int v = 0; v < 4; v++) {
        lstm_st_writer *w = copy_with_meta(st, drop_meta[v], NULL);
        expect_refused(drop_meta[v], w, needles[v]);
        lstm_st_writer_free(w);
    }
    struct {
        const char *key, *value, *needle;
    } bad_meta[] = {
        {"lstm.task", "translate", "unknown task 'translate'"},
        {"lstm.config", "[1,2]", "lstm.config is not a JSON object"},
        {"lstm.config", "{\"embedding\":8}", "'hidden' missing"},
        {"lstm.config",
         "{\"embedding\":8,\"hidden\":100000,\"layers\":1,\"bidirectional\":1,\"dropout\":0.3,"
         "\"vocab_size\":30000,\"min_count\":2,\"byte_tokens\":0,\"max_length\":400,"
         "\"char_features\":0}",
         "'hidden' missing or not an integer in [1, 8192]"},
        {"lstm.config",
         "{\"embedding\":8,\"hidden\":4000,\"layers\":1,\"bidirectional\":1,\"dropout\":0.3,"
         "\"vocab_size\":30000,\"min_count\":2,\"byte_tokens\":0,\"max_length\":400,"
         "\"char_features\":0}",
         "does not fit the configuration"},
        {"lstm.labels", "[\"pos\"]", "fewer than two labels"},
        {"lstm.vocab.token", "[\"<pad>\",\"<pad>\"]", "repeats"},
    };
    for (size_t v = 0; v < sizeof bad_meta / sizeof *bad_meta; v++) {
        lstm_st_writer *w = copy_with_meta(st, bad_meta[v].key, bad_meta[v].value);
        expect_refused(bad_meta[v].value, w, bad_meta[v].needle);
        lstm_st_writer_free(w);
    }
    /* a tensor missing */
    lstm_st_writer *w = lstm_st_writer_create();
    for (size_t i = 0; i < lstm_st_count(st); i++) {
        const lstm_st_tensor *t = lstm_st_tensor_at(st, i);
        if (strcmp(t->name, "decoder.bias") != 0)
            lstm_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, NULL);
    }
    for (size_t i = 0; i < lstm_st_meta_count(st); i++) {
        const char *k, *val;
        lstm_st_meta_at(st, i, &k, &val);
        lstm_st_writer_meta(w, k, val, NULL);
    }
    expect_refused("decoder.bias missing", w, "'decoder.bias' is missing");
    lstm_st_writer_free(w);
    lstm_st_free(st);
}

/* A model whose weights are not all finite answers nothing: loading it
 * (for eval, predict, sample) is refused, naming the tensor. */
static void test_nonfinite_weights(void) {
    lstm_model *m = train_small(LSTM_TASK_CLASSIFY, cls_text, 1, 1);
    if (!m)
        return;
    char path[128];
    snprintf(path, sizeof path, "%s/nan.st", tmpdir);
    lstm_model_save(m, path, NULL);
    lstm_model_free(m);
    lstm_error err;
    lstm_st *st = lstm_st_open(path, &err);
    float bad[] = {NAN, INFINITY};
    for (int b = 0; st && b < 2; b++) {
        const lstm_st_tensor *t = lstm_st_find(st, "lstm.weight_hh_l0");
        float *v = malloc(t->nbytes);
        lstm_st_read_f32(st, t, v, t->numel, NULL);
        v[5] = bad[b];
        lstm_st_writer *w = lstm_st_writer_create(); /* the file, with v for t */
        for (size_t i = 0; i < lstm_st_count(st); i++) {
            const lstm_st_tensor *u = lstm_st_tensor_at(st, i);
            lstm_st_writer_add(w, u->name, u->dtype, u->ndim, u->shape, u == t ? v : u->data,
                               NULL);
        }
        for (size_t i = 0; i < lstm_st_meta_count(st); i++) {
            const char *k, *val;
            lstm_st_meta_at(st, i, &k, &val);
            lstm_st_writer_meta(w, k, val, NULL);
        }
        void *buf;
        size_t len;
        lstm_st_writer_to_memory(w, &buf, &len, NULL);
        lstm_model *back = lstm_model_from_memory(buf, len, "poisoned", &err);
        CHECK(!back && err.status == LSTM_ERR_NONFINITE && strstr(err.msg, "lstm.weight_hh_l0") &&
                  strstr(err.msg, "index 5"),
              "a model with %g in a weight is refused: %s", (double)bad[b],
              back ? "(loaded)" : err.msg);
        lstm_model_free(back);
        free(buf), free(v);
        lstm_st_writer_free(w);
    }
    lstm_st_free(st);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lstm-test-model-XXXXXX");
    if (!mkdtemp(tmpdir))
        return 1;
    test_round_trip(LSTM_TASK_LM, "the cat sat on the mat. the dog sat on the log.\n"
                                  "the cat ran. the dog ran. a cat and a dog.\n");
    test_round_trip(LSTM_TASK_CLASSIFY, cls_text);
    test_round_trip(LSTM_TASK_TAG, tag_text);
    test_determinism();
    test_sample();
    test_damaged();
    test_nonfinite_weights();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        printf("could not remove %s\n", tmpdir);
    return check_summary();
}
