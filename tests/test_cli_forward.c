/*
 * test_cli_forward.c - `lstm forward` end to end: model and input files
 * made from the PyTorch fixtures (the LSTM under a prefix, beside an
 * unrelated tensor, as in a whole model's state_dict), the program run,
 * its output file compared with PyTorch's; then each kind of bad input
 * must give exit status 1 and a message that says what was wrong.
 *
 * The program is $LSTM_BIN (tests/run.sh sets it), else build/lstm.
 */
#include "check.h"
#include "lstm.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *bin;
static char tmp[256];

/* Copies tensors of a fixture into a writer, renamed by prefix. */
static void copy_tensor(lstm_st_writer *w, const lstm_st *st, const char *from, const char *to) {
    const lstm_st_tensor *t = lstm_st_find(st, from);
    if (t)
        lstm_st_writer_add(w, to, t->dtype, t->ndim, t->shape, t->data, NULL);
}

/* Runs `lstm VERB args`, capturing stderr in tmp/err; returns the exit status. */
static int run_verb(const char *verb, const char *args, char *errbuf, size_t n) {
    char cmd[2048], path[512];
    snprintf(path, sizeof path, "%s/err", tmp);
    snprintf(cmd, sizeof cmd, "%s %s %s 2>%s >/dev/null", bin, verb, args, path);
    int rc = system(cmd);
    FILE *f = fopen(path, "r");
    size_t got = f ? fread(errbuf, 1, n - 1, f) : 0;
    errbuf[got] = 0;
    if (f)
        fclose(f);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static int run(const char *args, char *errbuf, size_t n) {
    return run_verb("forward", args, errbuf, n);
}

static int is_lstm_tensor(const char *name) {
    return strncmp(name, "weight_", 7) == 0 || strncmp(name, "bias_", 5) == 0;
}

static void test_fixture(const char *name) {
    char path[512], model[512], input[512], output[512], args[2048], msg[2048];
    snprintf(path, sizeof path, "tests/fixtures/%s.safetensors", name);
    lstm_error err;
    lstm_st *st = lstm_st_open(path, &err);
    CHECK(st != NULL, "%s", err.msg);
    if (!st)
        return;
    lstm_st_writer *mw = lstm_st_writer_create(), *iw = lstm_st_writer_create();
    for (size_t i = 0; i < lstm_st_count(st); i++) {
        const char *n = lstm_st_tensor_at(st, i)->name;
        if (is_lstm_tensor(n)) {
            char to[300];
            snprintf(to, sizeof to, "encoder.rnn.%s", n);
            copy_tensor(mw, st, n, to);
        }
    }
    float emb[6] = {1, 2, 3, 4, 5, 6};
    int64_t es[2] = {2, 3};
    lstm_st_writer_add(mw, "encoder.embedding.weight", LSTM_DT_F32, 2, es, emb, NULL);
    for (size_t i = 0; i < lstm_st_meta_count(st); i++) { /* clip, input_forget, reverse */
        const char *k, *v;
        lstm_st_meta_at(st, i, &k, &v);
        if (strncmp(k, "lstm.", 5) == 0)
            lstm_st_writer_meta(mw, k, v, NULL);
    }
    const char *inputs[] = {"input", "h0", "c0", "lengths"};
    for (int i = 0; i < 4; i++)
        copy_tensor(iw, st, inputs[i], inputs[i]);
    snprintf(model, sizeof model, "%s/%s.model", tmp, name);
    snprintf(input, sizeof input, "%s/%s.input", tmp, name);
    snprintf(output, sizeof output, "%s/%s.output", tmp, name);
    lstm_st_writer_save(mw, model, &err);
    lstm_st_writer_save(iw, input, &err);
    lstm_st_writer_free(mw);
    lstm_st_writer_free(iw);
    const char *bf = lstm_st_meta(st, "batch_first");
    snprintf(args, sizeof args, "%s %s %s%s", model, input, output,
             bf && strcmp(bf, "1") == 0 ? " --batch-first" : "");
    int rc = run(args, msg, sizeof msg);
    CHECK(rc == 0, "%s: lstm forward exit %d: %s", name, rc, msg);
    lstm_st *out = lstm_st_open(output, &err);
    CHECK(out != NULL, "%s: output file: %s", name, err.msg);
    const char *names[3] = {"output", "h_n", "c_n"};
    for (int k = 0; out && k < 3; k++) {
        const lstm_st_tensor *g = lstm_st_find(out, names[k]), *w = lstm_st_find(st, names[k]);
        CHECK(g && w && g->ndim == w->ndim && !memcmp(g->shape, w->shape, sizeof(int64_t) * 3),
              "%s: %s has PyTorch's shape", name, names[k]);
        if (!g || !w || g->numel != w->numel)
            continue;
        float *a = malloc(sizeof(float) * g->numel), *b = malloc(sizeof(float) * w->numel);
        lstm_st_read_f32(out, g, a, g->numel, NULL);
        lstm_st_read_f32(st, w, b, w->numel, NULL);
        /* ONNX Runtime's sigmoid and tanh are approximations */
        CHECK_CLOSE(a, b, g->numel, 2e-5, 1e-4, "%s: %s equals the reference's", name, names[k]);
        free(a);
        free(b);
    }
    lstm_st_free(out);

    /* The same model quantized (lstm quantize): within the tolerance
     * tests/parity_int8.py derives from the quantization step, 0.05 of
     * max|PyTorch's output|, and the file holds only the int8 matrices. */
    char qmodel[600], qout[600];
    snprintf(qmodel, sizeof qmodel, "%s.int8", model);
    snprintf(qout, sizeof qout, "%s.int8", output);
    snprintf(args, sizeof args, "%s %s", model, qmodel);
    rc = run_verb("quantize", args, msg, sizeof msg);
    CHECK(rc == 0, "%s: lstm quantize exit %d: %s", name, rc, msg);
    lstm_st *qm = lstm_st_open(qmodel, &err);
    CHECK(qm && lstm_st_find(qm, "encoder.rnn.weight_ih_l0.int8") &&
              lstm_st_find(qm, "encoder.rnn.weight_hh_l0.scale") &&
              !lstm_st_find(qm, "encoder.rnn.weight_ih_l0") &&
              lstm_st_find(qm, "encoder.embedding.weight") &&
              lstm_st_find(qm, "encoder.embedding.weight")->dtype == LSTM_DT_F32,
          "%s: the quantized file holds NAME.int8 and NAME.scale, the rest as it was", name);
    lstm_st_free(qm);
    snprintf(args, sizeof args, "%s %s %s%s", qmodel, input, qout,
             bf && strcmp(bf, "1") == 0 ? " --batch-first" : "");
    rc = run(args, msg, sizeof msg);
    CHECK(rc == 0, "%s: lstm forward of the int8 model: exit %d: %s", name, rc, msg);
    out = lstm_st_open(qout, &err);
    for (int k = 0; out && k < 3; k++) {
        const lstm_st_tensor *g = lstm_st_find(out, names[k]), *w = lstm_st_find(st, names[k]);
        if (!g || !w || g->numel != w->numel) {
            CHECK(0, "%s: int8 %s missing or of another size", name, names[k]);
            continue;
        }
        float *a = malloc(sizeof(float) * g->numel), *b = malloc(sizeof(float) * w->numel);
        lstm_st_read_f32(out, g, a, g->numel, NULL);
        lstm_st_read_f32(st, w, b, w->numel, NULL);
        float m = 0;
        for (size_t i = 0; i < w->numel; i++)
            m = fabsf(b[i]) > m ? fabsf(b[i]) : m;
        CHECK_CLOSE(a, b, g->numel, 0.05 * m, 0, "%s: int8 %s within 0.05 max|PyTorch|", name,
                    names[k]);
        free(a);
        free(b);
    }
    lstm_st_free(out);
    lstm_st_free(st);
}

/* Writes a file with the given tensors (name, shape, values as float or int64). */
static void write_file(const char *path, const char *name, int ndim, const int64_t *shape,
                       lstm_dtype dt, const void *data, const char *name2, int ndim2,
                       const int64_t *shape2, lstm_dtype dt2, const void *data2) {
    lstm_st_writer *w = lstm_st_writer_create();
    if (name)
        lstm_st_writer_add(w, name, dt, ndim, shape, data, NULL);
    if (name2)
        lstm_st_writer_add(w, name2, dt2, ndim2, shape2, data2, NULL);
    lstm_st_writer_save(w, path, NULL);
    lstm_st_writer_free(w);
}

static void expect_error(const char *what, const char *args, const char *needle) {
    char msg[2048];
    int rc = run(args, msg, sizeof msg);
    CHECK(rc == 1 && strstr(msg, needle), "%s: exit %d, message '%s' should say '%s'", what, rc,
          msg, needle);
    CHECK(strchr(msg, '\n') == msg + strlen(msg) - 1, "%s: one line of error: '%s'", what, msg);
}

static void test_errors(void) {
    char model[512], good[512], bad[512], args[2048], out[600];
    snprintf(model, sizeof model, "%s/basic.model", tmp); /* written by test_fixture */
    snprintf(good, sizeof good, "%s/basic.input", tmp);
    snprintf(bad, sizeof bad, "%s/bad.input", tmp);
    snprintf(out, sizeof out, "%s/never.out", tmp);

    float x[2 * 2 * 4] = {0}; /* large enough for every shape below */
    int64_t xs[3] = {2, 2, 3}, xw[3] = {2, 2, 4}, ls[1] = {2}, l64[2] = {1, 3}, hs[3] = {1, 2, 5};
    write_file(bad, "inputs", 3, xs, LSTM_DT_F32, x, NULL, 0, NULL, 0, NULL);
    snprintf(args, sizeof args, "%s %s %s", model, bad, out);
    expect_error("no tensor 'input'", args, "missing tensor 'input'");

    write_file(bad, "input", 3, xw, LSTM_DT_F32, x, NULL, 0, NULL, 0, NULL);
    expect_error("input of the wrong width", args, "input_size 3");

    write_file(bad, "input", 3, xs, LSTM_DT_F32, x, "lengths", 1, ls, LSTM_DT_I64, l64);
    expect_error("a length beyond T", args, "lengths[1] = 3 is not in [1, T = 2]");

    write_file(bad, "input", 3, xs, LSTM_DT_F32, x, "h0", 3, hs, LSTM_DT_F32, x);
    expect_error("h0 of the wrong shape", args, "tensor 'h0' has shape (1, 2, 5), expected");

    FILE *f = fopen(bad, "wb");
    fputs("this is not a safetensors file at all", f);
    fclose(f);
    expect_error("a text file as input", args, bad);

    snprintf(args, sizeof args, "%s %s %s", good, good, out);
    expect_error("a model without an LSTM", args, "not an nn.LSTM state_dict");

    snprintf(args, sizeof args, "%s/missing.model %s %s", tmp, good, out);
    expect_error("a missing model file", args, "missing.model");

    snprintf(args, sizeof args, "%s %s", model, good);
    expect_error("two arguments", args, "expected MODEL INPUT OUTPUT");

    /* the model's metadata for ONNX's options */
    lstm_st *ms = lstm_st_open(model, NULL);
    for (int k = 0; ms && k < 2; k++) {
        lstm_st_writer *w = lstm_st_writer_create();
        for (size_t i = 0; i < lstm_st_count(ms); i++) {
            const char *n = lstm_st_tensor_at(ms, i)->name;
            copy_tensor(w, ms, n, n);
        }
        lstm_st_writer_meta(w, k ? "lstm.cell_clip" : "lstm.clip", k ? "1" : "-2", NULL);
        snprintf(bad, sizeof bad, "%s/bad.model", tmp);
        lstm_st_writer_save(w, bad, NULL);
        lstm_st_writer_free(w);
        snprintf(args, sizeof args, "%s %s %s", bad, good, out);
        expect_error(k ? "an unknown lstm. metadata key" : "a negative clip", args,
                     k ? "lstm.cell_clip" : "lstm.clip = \"-2\"");
    }
    lstm_st_free(ms);

    snprintf(args, sizeof args, "%s %s %s --frobnicate", model, good, out);
    expect_error("an unknown option", args, "unknown option '--frobnicate'");

    CHECK(access(out, F_OK) != 0, "no output file is left behind by failed runs");
}

/* --prefix: a file with two LSTMs ("a." basic, "b." layers2); --prefix b.
 * runs the second, and without it the program refuses to guess. */
static void test_prefix(void) {
    lstm_error err;
    lstm_st *a = lstm_st_open("tests/fixtures/lstm_basic.safetensors", &err);
    lstm_st *b = lstm_st_open("tests/fixtures/lstm_layers2.safetensors", &err);
    CHECK(a && b, "fixtures: %s", err.msg);
    if (!a || !b) {
        lstm_st_free(a), lstm_st_free(b);
        return;
    }
    lstm_st_writer *mw = lstm_st_writer_create(), *iw = lstm_st_writer_create();
    for (int k = 0; k < 2; k++) {
        const lstm_st *st = k ? b : a;
        for (size_t i = 0; i < lstm_st_count(st); i++) {
            const char *n = lstm_st_tensor_at(st, i)->name;
            char to[300];
            snprintf(to, sizeof to, "%s.%s", k ? "b" : "a", n);
            if (is_lstm_tensor(n))
                copy_tensor(mw, st, n, to);
        }
    }
    const char *inputs[] = {"input", "h0", "c0"};
    for (int i = 0; i < 3; i++)
        copy_tensor(iw, b, inputs[i], inputs[i]);
    char model[512], input[512], output[512], args[2048], msg[2048];
    snprintf(model, sizeof model, "%s/two.model", tmp);
    snprintf(input, sizeof input, "%s/two.input", tmp);
    snprintf(output, sizeof output, "%s/two.output", tmp);
    lstm_st_writer_save(mw, model, &err);
    lstm_st_writer_save(iw, input, &err);
    lstm_st_writer_free(mw), lstm_st_writer_free(iw);

    snprintf(args, sizeof args, "%s %s %s", model, input, output);
    expect_error("two LSTMs without --prefix", args, "choose one with --prefix");
    snprintf(args, sizeof args, "%s %s %s --prefix b.", model, input, output);
    int rc = run(args, msg, sizeof msg);
    CHECK(rc == 0, "--prefix b.: exit %d: %s", rc, msg);
    lstm_st *out = rc == 0 ? lstm_st_open(output, &err) : NULL;
    const char *names[3] = {"output", "h_n", "c_n"};
    for (int k = 0; out && k < 3; k++) {
        const lstm_st_tensor *g = lstm_st_find(out, names[k]), *w = lstm_st_find(b, names[k]);
        CHECK(g && w && g->numel == w->numel, "--prefix b.: %s has layers2's shape", names[k]);
        if (!g || !w || g->numel != w->numel)
            continue;
        float *x = malloc(sizeof(float) * g->numel), *y = malloc(sizeof(float) * w->numel);
        lstm_st_read_f32(out, g, x, g->numel, NULL);
        lstm_st_read_f32(b, w, y, w->numel, NULL);
        CHECK_CLOSE(x, y, g->numel, 1e-5, 1e-4, "--prefix b.: %s is the b. LSTM's", names[k]);
        free(x), free(y);
    }
    lstm_st_free(out);

    /* lstm quantize --prefix: the b. LSTM's matrices int8, a.'s copied */
    char qmodel[600];
    snprintf(qmodel, sizeof qmodel, "%s/two.int8", tmp);
    snprintf(args, sizeof args, "%s %s", model, qmodel);
    rc = run_verb("quantize", args, msg, sizeof msg);
    CHECK(rc == 1 && strstr(msg, "choose one with --prefix"), "quantize two LSTMs: %d %s", rc,
          msg);
    snprintf(args, sizeof args, "%s %s --prefix b.", model, qmodel);
    rc = run_verb("quantize", args, msg, sizeof msg);
    lstm_st *q = rc == 0 ? lstm_st_open(qmodel, &err) : NULL;
    CHECK(q && lstm_st_find(q, "b.weight_ih_l1.int8") && !lstm_st_find(q, "b.weight_ih_l1") &&
              lstm_st_find(q, "a.weight_ih_l0") && !lstm_st_find(q, "a.weight_ih_l0.int8") &&
              lstm_st_find(q, "a.weight_ih_l0")->dtype == LSTM_DT_F32,
          "quantize --prefix b.: b.'s matrices int8, a.'s as they were (exit %d: %s)", rc, msg);
    lstm_st_free(q);
    lstm_st_free(a), lstm_st_free(b);
}

int main(void) {
    bin = getenv("LSTM_BIN");
    if (!bin)
        bin = "build/lstm";
    snprintf(tmp, sizeof tmp, "/tmp/lstm-test-forward-XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    const char *cases[] = {"lstm_basic", "lstm_layers2_bidir_proj_lengths_h0",
                           "lstm_layers3_bidir_bf_lengths", "lstm_tails", "lstm_nobias",
                           /* ONNX Runtime's, with peephole, clip, input_forget, reverse */
                           "onnx_lstm_peephole_clip_input_forget", "onnx_lstm_clip",
                           "onnx_lstm_reverse_lengths_h0",
                           "onnx_lstm_reverse_peephole_clip_input_forget"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        test_fixture(cases[i]);
    /* test_errors uses basic's files, named after the fixture */
    char from[600], to[600];
    snprintf(from, sizeof from, "%s/lstm_basic.model", tmp);
    snprintf(to, sizeof to, "%s/basic.model", tmp);
    rename(from, to);
    snprintf(from, sizeof from, "%s/lstm_basic.input", tmp);
    snprintf(to, sizeof to, "%s/basic.input", tmp);
    rename(from, to);
    test_errors();
    test_prefix();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        printf("could not remove %s\n", tmp);
    return check_summary();
}
