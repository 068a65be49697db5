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

typedef struct {
    char *buf;
    size_t n;
} sample_big;

static void emit_big(unsigned char b, void *a) {
    sample_big *sb = a;
    if (sb->n < 3000)
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


/* ------------------------------------------------------------------ */
/* Settings of lstm_model_config, lstm_train_config and the arguments of
 * lstm_model_sample / lstm_model_evaluate that the command line does not
 * reach (tests/cli/options.sh checks those it does). */

/* A text of a few hundred bytes with some structure to learn. */
static char *lm_text(int sentences, uint64_t seed) {
    static const char *w[] = {"the", "cat", "dog", "sat", "ran", "on", "a", "mat", "log", "and"};
    char *t = malloc((size_t)sentences * 64 + 1);
    size_t n = 0;
    lstm_rng r;
    lstm_rng_seed(&r, seed);
    for (int s = 0; s < sentences; s++) {
        int len = 3 + (int)lstm_rng_below(&r, 5);
        for (int k = 0; k < len; k++)
            n += (size_t)sprintf(t + n, "%s%s", k ? " " : "", w[lstm_rng_below(&r, 10)]);
        n += (size_t)sprintf(t + n, ".\n");
    }
    return t;
}

/* The float values of a tensor of a saved model (n of them). */
static float *saved_tensor(const char *path, const char *name, size_t *n) {
    lstm_error err;
    lstm_st *st = lstm_st_open(path, &err);
    const lstm_st_tensor *t = st ? lstm_st_find(st, name) : NULL;
    CHECK(t != NULL, "%s: tensor %s", path, name);
    float *v = NULL;
    *n = 0;
    if (t) {
        v = malloc(sizeof(float) * t->numel);
        lstm_st_read_f32(st, t, v, t->numel, NULL);
        *n = t->numel;
    }
    lstm_st_free(st);
    return v;
}

/* forget_bias: added to rows H..2H of every bias_ih (each layer, each
 * direction) at initialisation, nothing else. A learning rate of 1e-30
 * leaves one epoch's weights where they started. */
static void test_forget_bias(void) {
    lstm_error err;
    lstm_dataset *ds = mem(LSTM_TASK_CLASSIFY, cls_text, 1);
    lstm_ctx *ctx = lstm_ctx_create(NULL, &err);
    char path[2][128];
    for (int k = 0; k < 2; k++) {
        lstm_model_config mc = lstm_model_defaults(LSTM_TASK_CLASSIFY);
        mc.embedding = 4, mc.hidden = 5, mc.layers = 2, mc.min_count = 1;
        mc.forget_bias = k ? 2.5f : 0;
        lstm_train_config tc = lstm_train_defaults(LSTM_TASK_CLASSIFY);
        tc.epochs = 1, tc.batch = 2, tc.optim.lr = 1e-30f;
        lstm_model *m = ds ? lstm_train(&mc, &tc, ctx, ds, NULL, &err) : NULL;
        CHECK(m != NULL, "train with forget_bias %g: %s", (double)mc.forget_bias, err.msg);
        snprintf(path[k], sizeof path[k], "%s/fb%d.st", tmpdir, k);
        if (m)
            lstm_model_save(m, path[k], &err);
        lstm_model_free(m);
    }
    const char *names[] = {"lstm.bias_ih_l0", "lstm.bias_ih_l0_reverse", "lstm.bias_ih_l1",
                           "lstm.bias_ih_l1_reverse", "lstm.bias_hh_l0", "lstm.bias_hh_l1_reverse",
                           "lstm.weight_ih_l1", "decoder.weight"};
    for (int i = 0; i < 8; i++) {
        size_t n0, n1;
        float *a = saved_tensor(path[0], names[i], &n0), *b = saved_tensor(path[1], names[i], &n1);
        int ih = strstr(names[i], "bias_ih") != NULL, ok = a && b && n0 == n1;
        for (size_t j = 0; ok && j < n0; j++) {
            float want = ih && j >= 5 && j < 10 ? 2.5f : 0;
            ok = fabsf((b[j] - a[j]) - want) <= 1e-6f; /* one float rounding of u + 2.5 */
        }
        CHECK(ok, "forget_bias 2.5: %s differs by %s", names[i],
              ih ? "2.5 in the forget rows (H..2H) only" : "nothing");
        free(a), free(b);
    }
    lstm_ctx_free(ctx);
    lstm_dataset_free(ds);
}

/* Every setting of the configuration survives the file, and the loaded
 * model works by it (max_length, byte_tokens at prediction). */
static void test_config_round_trip(void) {
    lstm_error err;
    lstm_model_config want[2] = {lstm_model_defaults(LSTM_TASK_CLASSIFY),
                                 lstm_model_defaults(LSTM_TASK_TAG)};
    want[0].embedding = 6, want[0].hidden = 7, want[0].proj = 3, want[0].layers = 2;
    want[0].bidirectional = 1, want[0].dropout = 0.25f, want[0].vocab_size = 9;
    want[0].min_count = 1, want[0].byte_tokens = 1, want[0].max_length = 5;
    want[0].peephole = 1, want[0].cell_clip = 0.3f, want[0].input_forget = 1;
    want[1].embedding = 5, want[1].hidden = 4, want[1].layers = 1, want[1].bidirectional = 0;
    want[1].dropout = 0.1f, want[1].vocab_size = 3, want[1].min_count = 2;
    want[1].char_features = 1, want[1].suffixes = 2, want[1].prefixes = 1; /* options.sh: 0 */
    want[1].crf = 1;
    const char *texts[2] = {cls_text, tag_text};
    lstm_ctx *ctx = lstm_ctx_create(NULL, &err);
    for (int k = 0; k < 2; k++) {
        lstm_dataset *ds = mem(want[k].task, texts[k], 1);
        lstm_train_config tc = lstm_train_defaults(want[k].task);
        tc.epochs = 1, tc.batch = 2;
        lstm_model *m = ds ? lstm_train(&want[k], &tc, ctx, ds, NULL, &err) : NULL;
        CHECK(m != NULL, "train %s: %s", lstm_task_name(want[k].task), err.msg);
        char path[128];
        snprintf(path, sizeof path, "%s/cfg%d.st", tmpdir, k);
        lstm_model *back = m && !lstm_model_save(m, path, &err) ? lstm_model_load(path, &err) : NULL;
        CHECK(back != NULL, "save and load: %s", err.msg);
        if (back) {
            const lstm_model_config *g = lstm_model_get_config(back), *w = &want[k];
            CHECK(g->task == w->task && g->embedding == w->embedding && g->hidden == w->hidden &&
                      g->proj == w->proj && g->layers == w->layers &&
                      g->bidirectional == w->bidirectional && g->dropout == w->dropout &&
                      g->vocab_size == w->vocab_size && g->min_count == w->min_count &&
                      g->byte_tokens == w->byte_tokens && g->max_length == w->max_length &&
                      g->char_features == w->char_features && g->peephole == w->peephole &&
                      g->cell_clip == w->cell_clip && g->input_forget == w->input_forget &&
                      g->suffixes == w->suffixes && g->prefixes == w->prefixes &&
                      g->crf == w->crf,
                  "%s: the loaded model has every setting it was trained with",
                  lstm_task_name(w->task));
            /* the LSTM in the file, as `lstm forward` reads it */
            lstm_st *st = lstm_st_open(path, &err);
            lstm_rnn_config rc;
            CHECK(st && lstm_rnn_config_infer(&rc, st, "lstm.", &err) == LSTM_OK &&
                      rc.peephole == w->peephole && rc.clip == w->cell_clip &&
                      rc.input_forget == w->input_forget && rc.proj_size == w->proj,
                  "%s: the file's LSTM has the cell options (%s)", lstm_task_name(w->task),
                  err.msg);
            lstm_st_free(st);
            const lstm_model_config *gm = lstm_model_get_config(m);
            CHECK(gm->forget_bias == w->forget_bias && gm->dropout == w->dropout,
                  "%s: lstm_model_get_config of the trained model", lstm_task_name(w->task));
        }
        if (back && k == 0) {
            /* bytes, 5 of them: "free money" and "free mon" read as "free ", "good money" not */
            lstm_dataset *u = mem(LSTM_TASK_CLASSIFY, "free money\nfree mon\ngood money\n", 0);
            int lab[3];
            float prob[3];
            CHECK(u && lstm_model_predict(back, ctx, u, lab, prob, &err) == LSTM_OK &&
                      prob[0] == prob[1] && prob[0] != prob[2],
                  "max_length 5 of byte tokens: texts alike in their first 5 bytes are "
                  "predicted alike (%g %g %g)", (double)prob[0], (double)prob[1],
                  (double)prob[2]);
            lstm_dataset_free(u);
        }
        lstm_model_free(back);
        lstm_model_free(m);
        lstm_dataset_free(ds);
    }
    lstm_ctx_free(ctx);
}

typedef struct {
    int magic;
    int n[4];          /* events of each type */
    long train_steps[64];
    long valid_steps[64];
    int nvalid;
    double end_value;
    const char *end_message;
} event_log;

static void record(const lstm_event *ev, void *arg) {
    event_log *lg = arg;
    if (lg->magic != 0x5eed)
        return;
    lg->n[ev->type]++;
    if (ev->type == LSTM_EV_TRAIN && lg->n[ev->type] <= 64)
        lg->train_steps[lg->n[ev->type] - 1] = ev->step;
    if (ev->type == LSTM_EV_VALID && lg->nvalid < 64)
        lg->valid_steps[lg->nvalid++] = ev->step;
    if (ev->type == LSTM_EV_END) {
        lg->end_value = ev->value;
        lg->end_message = ev->message;
    }
}

/* on_event with event_arg, log_every, valid_streams and valid_ctx. */
static void test_train_events(void) {
    lstm_error err;
    char *text = lm_text(60, 1), *vtext = lm_text(20, 2);
    lstm_dataset *train = mem(LSTM_TASK_LM, text, 1), *valid = mem(LSTM_TASK_LM, vtext, 1);
    lstm_ctx_config rc = {1, LSTM_KERNELS_REFERENCE, LSTM_BLAS_OFF};
    lstm_ctx_config gc = {1, LSTM_KERNELS_GENERIC, LSTM_BLAS_OFF};
    lstm_ctx *ref = lstm_ctx_create(&rc, &err), *gen = lstm_ctx_create(&gc, &err);
    lstm_model_config mc = lstm_model_defaults(LSTM_TASK_LM);
    mc.embedding = 8, mc.hidden = 16, mc.layers = 1;
    lstm_train_config tc = lstm_train_defaults(LSTM_TASK_LM);
    tc.epochs = 2, tc.batch = 4, tc.seq_len = 10, tc.optim.lr = 1e-2f;
    tc.valid_every = 0, tc.valid_streams = 3, tc.log_every = 7;
    event_log lg = {.magic = 0x5eed};
    tc.on_event = record, tc.event_arg = &lg;
    tc.valid_ctx = gen; /* validation in generic kernels, training in the reference */
    lstm_model *m = train && valid ? lstm_train(&mc, &tc, ref, train, valid, &err) : NULL;
    CHECK(m != NULL, "train lm: %s", err.msg);
    if (m) {
        /* (text bytes / 4 streams - 1) / 10 steps per epoch, 2 epochs */
        long steps = (long)((strlen(text) / 4 - 1) / 10) * 2;
        CHECK(lg.n[LSTM_EV_START] == 1 && lg.n[LSTM_EV_END] == 1,
              "on_event gets event_arg: one start and one end event (%d, %d)",
              lg.n[LSTM_EV_START], lg.n[LSTM_EV_END]);
        int ok = lg.n[LSTM_EV_TRAIN] == steps / 7;
        for (int i = 0; ok && i < lg.n[LSTM_EV_TRAIN] && i < 64; i++)
            ok = lg.train_steps[i] == 7 * (i + 1);
        CHECK(ok, "log_every 7: a training event every 7 steps (%d events over %ld steps)",
              lg.n[LSTM_EV_TRAIN], steps);
        CHECK(lg.nvalid == 2 && lg.valid_steps[0] == steps / 2 && lg.valid_steps[1] == steps,
              "valid_every 0: a validation at the end of each epoch");
        CHECK(lg.end_message && strcmp(lg.end_message, "done") == 0, "the end: done");
        lstm_eval e3, e1, r3;
        lstm_model_evaluate(m, gen, valid, 3, &e3, &err);
        lstm_model_evaluate(m, gen, valid, 1, &e1, &err);
        lstm_model_evaluate(m, ref, valid, 3, &r3, &err);
        /* the model returned is the best one, whose figure the end event has */
        CHECK(lg.end_value == e3.bpc,
              "valid_streams 3 on valid_ctx: the end event's best figure %.9g is the model's "
              "with 3 streams on the validation context, %.9g", lg.end_value, e3.bpc);
        CHECK(e1.bpc != e3.bpc, "evaluate: 1 stream (%.9g) differs from 3 (%.9g)", e1.bpc, e3.bpc);
        CHECK(r3.bpc != e3.bpc,
              "the reference kernels (%.9g) give other bits than the generic ones (%.9g): so "
              "the check above tells the two contexts apart", r3.bpc, e3.bpc);
        lstm_eval_free(&e3), lstm_eval_free(&e1), lstm_eval_free(&r3);
    }
    lstm_model_free(m);
    lstm_ctx_free(ref), lstm_ctx_free(gen);
    lstm_dataset_free(train), lstm_dataset_free(valid);
    free(text), free(vtext);
}

/* lstm_model_sample: top_k 1 is greedy (neither the rng nor the
 * temperature matters), prime_len bounds the prime, and a lower
 * temperature draws text the model finds likelier. */
static void test_sample_arguments(void) {
    lstm_error err;
    char *text = lm_text(60, 3);
    lstm_dataset *ds = mem(LSTM_TASK_LM, text, 1);
    lstm_model_config mc = lstm_model_defaults(LSTM_TASK_LM);
    mc.embedding = 8, mc.hidden = 16, mc.layers = 1;
    lstm_train_config tc = lstm_train_defaults(LSTM_TASK_LM);
    tc.epochs = 4, tc.batch = 4, tc.seq_len = 10, tc.optim.lr = 1e-2f;
    lstm_ctx *ctx = lstm_ctx_create(NULL, &err);
    lstm_model *m = ds ? lstm_train(&mc, &tc, ctx, ds, NULL, &err) : NULL;
    CHECK(m != NULL, "train lm: %s", err.msg);
    if (m) {
        char out[4][64];
        float temp[4] = {1, 3, 1, 3};
        for (int r = 0; r < 4; r++) {
            lstm_rng rng;
            lstm_rng_seed(&rng, 20 + r);
            sample_buf arg = {out[r], 0};
            lstm_model_sample(m, ctx, "the", 3, 60, temp[r], r < 2 ? 1 : 0, &rng, emit, &arg, &err);
            out[r][arg.n] = 0;
        }
        CHECK(strcmp(out[0], out[1]) == 0, "top_k 1: another seed and temperature, the same text");
        CHECK(strcmp(out[2], out[3]) != 0, "top_k 0: another seed and temperature, another text");
        lstm_rng rng;
        lstm_rng_seed(&rng, 1);
        char few[64];
        sample_buf fa = {few, 0};
        CHECK(lstm_model_sample(m, ctx, "the\x01", 3, 5, 1, 0, &rng, emit, &fa, &err) == LSTM_OK &&
                  fa.n == 5,
              "prime_len 3: the byte after the prime is not read: %s", err.msg);

        /* 3000 bytes at temperatures 0.5, 1 and 2, evaluated by the model */
        double loss[3];
        float temps[3] = {0.5f, 1, 2};
        static char buf[3001];
        for (int k = 0; k < 3; k++) {
            lstm_rng_seed(&rng, 5);
            sample_big big = {buf, 0};
            lstm_model_sample(m, ctx, "", 0, 3000, temps[k], 0, &rng, emit_big, &big, &err);
            lstm_dataset *sd = lstm_dataset_from_memory(LSTM_TASK_LM, buf, big.n, "sample", 1, &err);
            lstm_eval e;
            loss[k] = sd && !lstm_model_evaluate(m, ctx, sd, 1, &e, &err) ? e.loss : -1;
            if (sd)
                lstm_eval_free(&e);
            lstm_dataset_free(sd);
        }
        CHECK(loss[0] < loss[1] && loss[1] < loss[2],
              "temperature 0.5 < 1 < 2: the model finds its colder text likelier "
              "(%.3f, %.3f, %.3f nats a byte)", loss[0], loss[1], loss[2]);
    }
    lstm_model_free(m);
    lstm_ctx_free(ctx);
    lstm_dataset_free(ds);
    free(text);
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
    test_forget_bias();
    test_config_round_trip();
    test_train_events();
    test_sample_arguments();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        printf("could not remove %s\n", tmpdir);
    return check_summary();
}
