/* test_data.c - the data set readers (every rule and every error message,
 * with its line number), the split, the vocabulary and its JSON form, and
 * the real data sets of ../shared/data when they are there. */
#define _POSIX_C_SOURCE 200809L

#include "check.h"
#include "data.h"

#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Helpers                                                             */

static lstm_dataset *mem(lstm_task task, const char *text, int labelled, lstm_error *err) {
    return lstm_dataset_from_memory(task, text, strlen(text), "t.txt", labelled, err);
}

/* Checks that parsing text fails with `status` and a message holding `want`. */
#define CHECK_FAILS(task, text, labelled, status_, want)                                   \
    do {                                                                                   \
        lstm_error e_;                                                                     \
        lstm_dataset *d_ = mem((task), (text), (labelled), &e_);                           \
        CHECK(d_ == NULL, "parsing %s should fail", #text);                                \
        CHECK(e_.status == (status_), "status %d, message: %s", e_.status, e_.msg);        \
        CHECK(strstr(e_.msg, (want)) != NULL, "message \"%s\" lacks \"%s\"", e_.msg, (want)); \
        lstm_dataset_free(d_);                                                             \
    } while (0)

static int write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t n = fwrite(data, 1, len, f);
    return fclose(f) != 0 || n != len ? -1 : 0;
}

static char *path_in(const char *dir, const char *name) {
    static char buf[4][1024];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

static int doc_is(const lstm_dataset *ds, size_t i, const char *text) {
    return i < ds->ndocs && ds->doc_len[i] == strlen(text) &&
           memcmp(ds->doc_text[i], text, ds->doc_len[i]) == 0 && ds->doc_text[i][ds->doc_len[i]] == 0;
}

/* ------------------------------------------------------------------ */
/* Tasks and lm                                                        */

static void test_tasks(void) {
    CHECK(strcmp(lstm_task_name(LSTM_TASK_LM), "lm") == 0, "lm");
    CHECK(strcmp(lstm_task_name(LSTM_TASK_CLASSIFY), "classify") == 0, "classify");
    CHECK(strcmp(lstm_task_name(LSTM_TASK_TAG), "tag") == 0, "tag");
    CHECK(strcmp(lstm_task_name((lstm_task)7), "?") == 0, "unknown");
    CHECK(strcmp(lstm_task_example(LSTM_TASK_LM), "byte") == 0 &&
              strcmp(lstm_task_example(LSTM_TASK_CLASSIFY), "document") == 0 &&
              strcmp(lstm_task_example(LSTM_TASK_TAG), "sentence") == 0 &&
              strcmp(lstm_task_example((lstm_task)7), "?") == 0,
          "each task's example: byte, document, sentence; ? outside the enum");
    CHECK(lstm_task_parse("lm") == LSTM_TASK_LM, "parse lm");
    CHECK(lstm_task_parse("classify") == LSTM_TASK_CLASSIFY, "parse classify");
    CHECK(lstm_task_parse("tag") == LSTM_TASK_TAG, "parse tag");
    CHECK(lstm_task_parse("Tag") == -1 && lstm_task_parse("") == -1 && lstm_task_parse(NULL) == -1,
          "unknown names");
    lstm_error err;
    CHECK(lstm_dataset_from_memory((lstm_task)5, "x", 1, "t", 1, &err) == NULL &&
              err.status == LSTM_ERR_INVALID,
          "bad task");
    CHECK(lstm_dataset_from_memory(LSTM_TASK_LM, NULL, 3, "t", 1, &err) == NULL &&
              err.status == LSTM_ERR_INVALID,
          "NULL buffer");
    lstm_dataset_free(NULL);
    CHECK(lstm_dataset_count(NULL) == 0 && lstm_dataset_tokens(NULL) == 0, "NULL set");
}

static void test_lm(void) {
    lstm_error err;
    static const char text[] = "ab\0c\r\n\xff";
    for (int labelled = 0; labelled < 2; labelled++) {
        lstm_dataset *ds =
            lstm_dataset_from_memory(LSTM_TASK_LM, text, sizeof text - 1, "t.txt", labelled, &err);
        CHECK(ds != NULL, "lm: %s", err.msg);
        if (!ds)
            continue;
        CHECK(err.status == LSTM_OK, "status");
        CHECK(lstm_dataset_task(ds) == LSTM_TASK_LM, "task");
        CHECK(strcmp(lstm_dataset_name(ds), "t.txt") == 0, "name");
        CHECK(lstm_dataset_count(ds) == 7 && lstm_dataset_tokens(ds) == 7, "count %zu",
              lstm_dataset_count(ds));
        CHECK(ds->nbytes == 7 && memcmp(ds->bytes, text, 7) == 0 && ds->bytes[7] == 0, "bytes");
        lstm_dataset_free(ds);
    }
    CHECK_FAILS(LSTM_TASK_LM, "", 1, LSTM_ERR_FORMAT, "t.txt: empty: no text");
    CHECK_FAILS(LSTM_TASK_LM, "", 0, LSTM_ERR_FORMAT, "t.txt: empty: no text");
    lstm_dataset *ds = lstm_dataset_from_memory(LSTM_TASK_LM, "", 0, NULL, 1, &err);
    CHECK(!ds && strstr(err.msg, "<memory>: empty"), "default name: %s", err.msg);
}

/* ------------------------------------------------------------------ */
/* classify                                                            */

static void test_classify_labelled(void) {
    lstm_error err;
    lstm_dataset *ds = mem(LSTM_TASK_CLASSIFY,
                           "__label__b hello world\n"
                           "__label__a\tx\n"
                           "\n"
                           " \t\n"
                           "__label__b   y  z \n"
                           "__label__c\xc3\xa9 caf\xc3\xa9 \xe2\x82\xac",
                           1, &err);
    CHECK(ds != NULL, "fastText: %s", err.msg);
    if (ds) {
        CHECK(lstm_dataset_count(ds) == 4, "documents %zu", lstm_dataset_count(ds));
        CHECK(ds->nlabels == 3 && strcmp(ds->labels[0], "b") == 0 &&
                  strcmp(ds->labels[1], "a") == 0 && strcmp(ds->labels[2], "c\xc3\xa9") == 0,
              "labels in order of first appearance");
        CHECK(doc_is(ds, 0, "hello world") && doc_is(ds, 1, "x") && doc_is(ds, 2, "y  z ") &&
                  doc_is(ds, 3, "caf\xc3\xa9 \xe2\x82\xac"),
              "texts");
        CHECK(ds->doc_label[0] == 0 && ds->doc_label[1] == 1 && ds->doc_label[2] == 0 &&
                  ds->doc_label[3] == 2,
              "doc labels");
        CHECK(ds->doc_line[0] == 1 && ds->doc_line[1] == 2 && ds->doc_line[2] == 5 &&
                  ds->doc_line[3] == 6,
              "doc lines");
        CHECK(ds->doc_file && ds->doc_file[0] == NULL && ds->doc_file[3] == NULL, "no files");
        CHECK(lstm_dataset_tokens(ds) == 11 + 1 + 5 + 9, "tokens %zu", lstm_dataset_tokens(ds));
        CHECK(ds->labelled == 1, "labelled");
    }
    lstm_dataset_free(ds);

    /* CRLF, NUL bytes inside the text, no final newline. */
    static const char crlf[] = "__label__x a\0b\r\n\r\n__label__y c\r\r\n__label__x d";
    ds = lstm_dataset_from_memory(LSTM_TASK_CLASSIFY, crlf, sizeof crlf - 1, "t.txt", 1, &err);
    CHECK(ds != NULL, "CRLF: %s", err.msg);
    if (ds) {
        CHECK(ds->ndocs == 3 && ds->nlabels == 2, "docs %zu labels %d", ds->ndocs, ds->nlabels);
        CHECK(ds->doc_len[0] == 3 && memcmp(ds->doc_text[0], "a\0b", 4) == 0, "NUL kept");
        CHECK(doc_is(ds, 1, "c\r"), "only one \\r is stripped");
        CHECK(doc_is(ds, 2, "d") && ds->doc_line[2] == 4, "last line");
    }
    lstm_dataset_free(ds);

    /* A long line. */
    size_t big = 3u << 20;
    char *huge = malloc(big + 32);
    memcpy(huge, "\n\n__label__long ", 16);
    memset(huge + 16, 'q', big);
    memcpy(huge + 16 + big, "\n", 2);
    ds = mem(LSTM_TASK_CLASSIFY, huge, 1, &err);
    CHECK(ds && ds->ndocs == 1 && ds->doc_len[0] == big && ds->doc_line[0] == 3, "huge line");
    lstm_dataset_free(ds);
    free(huge);

    CHECK_FAILS(LSTM_TASK_CLASSIFY, "__label__a x\n\nham y\n", 1, LSTM_ERR_FORMAT,
                "t.txt: line 3: expected __label__NAME at the start of the line");
    CHECK_FAILS(LSTM_TASK_CLASSIFY, "__label__a x\r\n _label__a y\r\n", 1, LSTM_ERR_FORMAT,
                "t.txt: line 2: expected __label__NAME at the start");
    CHECK_FAILS(LSTM_TASK_CLASSIFY, "__label__a x\n  __label__a y\n", 1, LSTM_ERR_FORMAT,
                "t.txt: line 2: expected __label__NAME");
    CHECK_FAILS(LSTM_TASK_CLASSIFY, "__label__ x\n", 1, LSTM_ERR_FORMAT,
                "t.txt: line 1: expected __label__NAME: the label name is empty");
    CHECK_FAILS(LSTM_TASK_CLASSIFY, "__label__a x\n__label__a\n", 1, LSTM_ERR_FORMAT,
                "t.txt: line 2: no text after the label");
    CHECK_FAILS(LSTM_TASK_CLASSIFY, "\r\n__label__a \t \r\n", 1, LSTM_ERR_FORMAT,
                "t.txt: line 2: no text after the label");
    CHECK_FAILS(LSTM_TASK_CLASSIFY, "__label__a x\n\n\n__label__a __label__b x\n", 1,
                LSTM_ERR_FORMAT,
                "t.txt: line 4: more than one label: this tool classifies into one class");
    CHECK_FAILS(LSTM_TASK_CLASSIFY, "", 1, LSTM_ERR_FORMAT, "t.txt: no documents");
    CHECK_FAILS(LSTM_TASK_CLASSIFY, "\n\r\n  \n", 1, LSTM_ERR_FORMAT, "t.txt: no documents");
    static const char nul_label[] = "__label__a x\n__label__a\0b x\n";
    ds = lstm_dataset_from_memory(LSTM_TASK_CLASSIFY, nul_label, sizeof nul_label - 1, "t.txt", 1,
                                  &err);
    CHECK(!ds && err.status == LSTM_ERR_FORMAT &&
              strstr(err.msg, "t.txt: line 2: NUL byte in the label"),
          "NUL label: %s", err.msg);
}

static void test_classify_unlabelled(void) {
    lstm_error err;
    lstm_dataset *ds = mem(LSTM_TASK_CLASSIFY,
                           "__label__a hello\n"
                           "\n"
                           "plain text\r\n"
                           "__label__b\n"
                           "  x\n"
                           "__label__a __label__b  two labels\n"
                           "last",
                           0, &err);
    CHECK(ds != NULL, "unlabelled: %s", err.msg);
    if (ds) {
        CHECK(ds->ndocs == 7, "one document per line: %zu", ds->ndocs);
        CHECK(doc_is(ds, 0, "hello") && doc_is(ds, 1, "") && doc_is(ds, 2, "plain text") &&
                  doc_is(ds, 3, "") && doc_is(ds, 4, "  x") && doc_is(ds, 5, "two labels") &&
                  doc_is(ds, 6, "last"),
              "texts");
        int ok = 1;
        for (size_t i = 0; i < ds->ndocs; i++)
            ok &= ds->doc_label[i] == -1 && ds->doc_line[i] == i + 1;
        CHECK(ok, "labels -1, lines 1..7");
        CHECK(ds->nlabels == 0 && ds->labelled == 0, "no labels");
    }
    lstm_dataset_free(ds);
    ds = mem(LSTM_TASK_CLASSIFY, "", 0, &err);
    CHECK(ds && ds->ndocs == 0, "an empty file has no lines to predict: %s", err.msg);
    lstm_dataset_free(ds);
    ds = mem(LSTM_TASK_CLASSIFY, "\n", 0, &err);
    CHECK(ds && ds->ndocs == 1 && doc_is(ds, 0, ""), "one empty line");
    lstm_dataset_free(ds);
}

static void test_classify_dir(void) {
    char dir[] = "/tmp/lstm_test_data_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp failed");
        return;
    }
    const char *subdirs[] = {"spam", "ham", ".git", "empty", "zz", "zz/dir.txt", "bad", "none"};
    for (size_t i = 0; i < sizeof subdirs / sizeof *subdirs; i++)
        mkdir(path_in(dir, subdirs[i]), 0755);
    int ok = 1;
    ok &= !write_file(path_in(dir, "spam/2.txt"), "buy\nnow\n", 8);
    ok &= !write_file(path_in(dir, "spam/10.txt"), "cheap \xe2\x82\xac", 9);
    ok &= !write_file(path_in(dir, "ham/b.txt"), "hi\0there", 8);
    ok &= !write_file(path_in(dir, "ham/a.txt"), "dear\r\nsir", 9);
    ok &= !write_file(path_in(dir, "ham/.hidden.txt"), "no", 2);
    ok &= !write_file(path_in(dir, "ham/notes.md"), "no", 2);
    ok &= !write_file(path_in(dir, "ham/x.txt.bak"), "no", 2);
    ok &= !write_file(path_in(dir, ".git/x.txt"), "no", 2);
    ok &= !write_file(path_in(dir, "empty/readme"), "no", 2);
    ok &= !write_file(path_in(dir, "top.txt"), "no", 2);
    CHECK(ok, "writing the files");
    lstm_error err;
    lstm_dataset *ds = lstm_dataset_read(LSTM_TASK_CLASSIFY, dir, &err);
    CHECK(ds != NULL, "directory: %s", err.msg);
    if (ds) {
        CHECK(ds->ndocs == 4, "documents %zu", ds->ndocs);
        CHECK(ds->nlabels == 2 && strcmp(ds->labels[0], "ham") == 0 &&
                  strcmp(ds->labels[1], "spam") == 0,
              "labels sorted by name, only those with .txt files");
        CHECK(ds->ndocs == 4 && doc_is(ds, 0, "dear\r\nsir") && ds->doc_len[1] == 8 &&
                  memcmp(ds->doc_text[1], "hi\0there", 9) == 0 &&
                  doc_is(ds, 2, "cheap \xe2\x82\xac") && doc_is(ds, 3, "buy\nnow\n"),
              "whole files in name order (\"10.txt\" < \"2.txt\")");
        CHECK(ds->ndocs == 4 && ds->doc_label[0] == 0 && ds->doc_label[1] == 0 &&
                  ds->doc_label[2] == 1 && ds->doc_label[3] == 1,
              "doc labels");
        CHECK(ds->ndocs == 4 && strcmp(ds->doc_file[0], path_in(dir, "ham/a.txt")) == 0 &&
                  strcmp(ds->doc_file[3], path_in(dir, "spam/2.txt")) == 0 &&
                  ds->doc_line[0] == 0,
              "doc_file %s", ds->ndocs ? ds->doc_file[0] : "");
        CHECK(lstm_dataset_tokens(ds) == 9 + 8 + 9 + 8, "tokens");
        CHECK(strcmp(lstm_dataset_name(ds), dir) == 0, "name");
        lstm_dataset *rest, *part;
        CHECK(lstm_dataset_split(ds, 0.5, 3, &rest, &part, &err) == LSTM_OK && rest->ndocs == 2 &&
                  part->ndocs == 2,
              "split: %s", err.msg);
        int kept = rest && part;
        for (size_t i = 0; kept && i < 2; i++)
            kept = strstr(rest->doc_file[i], rest->labels[rest->doc_label[i]]) &&
                   strstr(part->doc_file[i], part->labels[part->doc_label[i]]) &&
                   rest->doc_line[i] == 0;
        CHECK(kept, "files and labels follow their documents");
        lstm_dataset_free(rest);
        lstm_dataset_free(part);
    }
    lstm_dataset_free(ds);

    /* The same with a trailing slash. */
    char slashed[64];
    snprintf(slashed, sizeof slashed, "%s/", dir);
    ds = lstm_dataset_read(LSTM_TASK_CLASSIFY, slashed, &err);
    CHECK(ds && ds->ndocs == 4 && strcmp(ds->doc_file[0], path_in(dir, "ham/a.txt")) == 0,
          "trailing slash: %s", ds ? ds->doc_file[0] : err.msg);
    lstm_dataset_free(ds);

    /* A file path still reads fastText; unlabelled and tag read files only. */
    const char *ft = path_in(dir, "top.txt");
    write_file(ft, "__label__x one\n__label__y two\n", 30);
    ds = lstm_dataset_read(LSTM_TASK_CLASSIFY, ft, &err);
    CHECK(ds && ds->ndocs == 2, "fastText file: %s", err.msg);
    lstm_dataset_free(ds);
    write_file(ft, "__label__x one\nno label\n", 24);
    ds = lstm_dataset_read(LSTM_TASK_CLASSIFY, ft, &err);
    CHECK(!ds && err.status == LSTM_ERR_FORMAT && strstr(err.msg, ft) == err.msg &&
              strstr(err.msg, ": line 2: expected __label__NAME"),
          "file error names the path: %s", err.msg);
    ds = lstm_dataset_read_unlabelled(LSTM_TASK_CLASSIFY, dir, &err);
    CHECK(!ds && err.status == LSTM_ERR_IO && strstr(err.msg, "is a directory"), "unlabelled dir: %s",
          err.msg);
    ds = lstm_dataset_read(LSTM_TASK_TAG, dir, &err);
    CHECK(!ds && err.status == LSTM_ERR_IO && strstr(err.msg, "is a directory"), "tag dir: %s",
          err.msg);
    ds = lstm_dataset_read(LSTM_TASK_LM, path_in(dir, "nope.txt"), &err);
    CHECK(!ds && err.status == LSTM_ERR_IO && strstr(err.msg, "nope.txt: cannot open: No such file"),
          "missing file: %s", err.msg);
    ds = lstm_dataset_read(LSTM_TASK_LM, NULL, &err);
    CHECK(!ds && err.status == LSTM_ERR_INVALID, "NULL path");

    /* A directory of empty label directories. */
    ds = lstm_dataset_read(LSTM_TASK_CLASSIFY, path_in(dir, "zz"), &err);
    CHECK(!ds && err.status == LSTM_ERR_FORMAT &&
              strstr(err.msg, "no subdirectory holds a .txt file: expected DIR/LABEL/*.txt"),
          "no .txt: %s", err.msg);
    ds = lstm_dataset_read(LSTM_TASK_CLASSIFY, path_in(dir, "none"), &err);
    CHECK(!ds && err.status == LSTM_ERR_FORMAT && strstr(err.msg, "no subdirectory holds"),
          "empty dir: %s", err.msg);
    /* An empty document. */
    mkdir(path_in(dir, "bad/lbl"), 0755);
    write_file(path_in(dir, "bad/lbl/a.txt"), "x", 1);
    write_file(path_in(dir, "bad/lbl/b.txt"), "", 0);
    ds = lstm_dataset_read(LSTM_TASK_CLASSIFY, path_in(dir, "bad"), &err);
    CHECK(!ds && err.status == LSTM_ERR_FORMAT && strstr(err.msg, "bad/lbl/b.txt: empty file: no text"),
          "empty file: %s", err.msg);
    /* An unreadable document (root reads anything: skipped then). */
    remove(path_in(dir, "bad/lbl/b.txt"));
    const char *locked = path_in(dir, "bad/lbl/c.txt");
    write_file(locked, "secret", 6);
    chmod(locked, 0);
    FILE *probe = fopen(locked, "rb");
    if (probe) {
        fclose(probe);
        printf("ok skipping the unreadable-file check: running as a user who reads anything\n");
    } else {
        ds = lstm_dataset_read(LSTM_TASK_CLASSIFY, path_in(dir, "bad"), &err);
        CHECK(!ds && err.status == LSTM_ERR_IO &&
                  strstr(err.msg, "bad/lbl/c.txt: cannot open: Permission denied"),
              "unreadable: %s", err.msg);
    }

    const char *cleanup[] = {"spam/2.txt", "spam/10.txt", "ham/b.txt", "ham/a.txt",
                             "ham/.hidden.txt", "ham/notes.md", "ham/x.txt.bak", ".git/x.txt",
                             "empty/readme", "top.txt", "bad/lbl/a.txt", "bad/lbl/c.txt",
                             "bad/lbl", "zz/dir.txt", "spam", "ham", ".git", "empty", "zz",
                             "bad", "none"};
    for (size_t i = 0; i < sizeof cleanup / sizeof *cleanup; i++)
        remove(path_in(dir, cleanup[i]));
    CHECK(rmdir(dir) == 0, "temporary directory cleaned up");
}

/* ------------------------------------------------------------------ */
/* tag                                                                 */

static int word_is(const lstm_dataset *ds, size_t j, const char *w) {
    return j < ds->nwords && strcmp(ds->words[j], w) == 0;
}

static void test_tag_labelled(void) {
    lstm_error err;
    lstm_dataset *ds = mem(LSTM_TASK_TAG,
                           "\n"
                           "The\tat\n"
                           "dog\tnn\r\n"
                           "\n"
                           " \n"
                           "\n"
                           "runs\tvbz\r\n"
                           "caf\xc3\xa9\tnn\n"
                           "\n"
                           "\xe2\x80\x9c\tpunct",
                           1, &err);
    CHECK(ds != NULL, "tag: %s", err.msg);
    if (ds) {
        CHECK(lstm_dataset_count(ds) == 3 && lstm_dataset_tokens(ds) == 5, "sentences %zu words %zu",
              lstm_dataset_count(ds), lstm_dataset_tokens(ds));
        CHECK(ds->nsent == 3 && ds->sent_start[0] == 0 && ds->sent_start[1] == 2 &&
                  ds->sent_start[2] == 4 && ds->sent_start[3] == 5,
              "sentence starts");
        CHECK(ds->nsent == 3 && ds->sent_line[0] == 2 && ds->sent_line[1] == 7 &&
                  ds->sent_line[2] == 10,
              "sentence lines");
        CHECK(word_is(ds, 0, "The") && word_is(ds, 1, "dog") && word_is(ds, 2, "runs") &&
                  word_is(ds, 3, "caf\xc3\xa9") && word_is(ds, 4, "\xe2\x80\x9c"),
              "words");
        CHECK(ds->nlabels == 4 && strcmp(ds->labels[0], "at") == 0 &&
                  strcmp(ds->labels[1], "nn") == 0 && strcmp(ds->labels[2], "vbz") == 0 &&
                  strcmp(ds->labels[3], "punct") == 0,
              "tags in order of first appearance");
        CHECK(ds->nwords == 5 && ds->word_tag[0] == 0 && ds->word_tag[1] == 1 &&
                  ds->word_tag[2] == 2 && ds->word_tag[3] == 1 && ds->word_tag[4] == 3,
              "word tags");
    }
    lstm_dataset_free(ds);

    CHECK_FAILS(LSTM_TASK_TAG, "a\tb\n\nc d\n", 1, LSTM_ERR_FORMAT,
                "t.txt: line 3: expected word<TAB>tag");
    CHECK_FAILS(LSTM_TASK_TAG, "a\tb\r\nc\td\te\r\n", 1, LSTM_ERR_FORMAT,
                "t.txt: line 2: more than one tab: expected word<TAB>tag");
    CHECK_FAILS(LSTM_TASK_TAG, "a\tb\n\n\n\n\tx\n", 1, LSTM_ERR_FORMAT,
                "t.txt: line 5: empty word: expected word<TAB>tag");
    CHECK_FAILS(LSTM_TASK_TAG, "a\tb\nc\t\r\n", 1, LSTM_ERR_FORMAT,
                "t.txt: line 2: empty tag: expected word<TAB>tag");
    ds = mem(LSTM_TASK_TAG, "a\tb\nc\td", 1, &err);
    CHECK(ds && ds->nsent == 1 && ds->nwords == 2 && word_is(ds, 1, "c") &&
              strcmp(ds->labels[ds->word_tag[1]], "d") == 0,
          "no final newline: %s", err.msg);
    lstm_dataset_free(ds);
    CHECK_FAILS(LSTM_TASK_TAG, "", 1, LSTM_ERR_FORMAT,
                "t.txt: no sentences: expected word<TAB>tag lines");
    CHECK_FAILS(LSTM_TASK_TAG, "\n\r\n\n", 1, LSTM_ERR_FORMAT, "t.txt: no sentences");
    static const char nul[] = "a\tb\n\nc\td\0\n";
    ds = lstm_dataset_from_memory(LSTM_TASK_TAG, nul, sizeof nul - 1, "t.txt", 1, &err);
    CHECK(!ds && err.status == LSTM_ERR_FORMAT &&
              strstr(err.msg, "t.txt: line 3: NUL byte: expected word<TAB>tag"),
          "NUL: %s", err.msg);
}

static void test_tag_unlabelled(void) {
    lstm_error err;
    lstm_dataset *ds = mem(LSTM_TASK_TAG, "The dog  runs\n\n\tA\tcat \r\n \nlast", 0, &err);
    CHECK(ds != NULL, "unlabelled tag: %s", err.msg);
    if (ds) {
        CHECK(ds->nsent == 5 && ds->nwords == 6, "sentences %zu words %zu", ds->nsent, ds->nwords);
        size_t starts[] = {0, 3, 3, 5, 5, 6};
        int ok = ds->nsent == 5;
        for (size_t i = 0; ok && i <= 5; i++)
            ok &= ds->sent_start[i] == starts[i] && (i == 5 || ds->sent_line[i] == i + 1);
        CHECK(ok, "one sentence per line, empty ones included");
        CHECK(word_is(ds, 0, "The") && word_is(ds, 1, "dog") && word_is(ds, 2, "runs") &&
                  word_is(ds, 3, "A") && word_is(ds, 4, "cat") && word_is(ds, 5, "last"),
              "words");
        ok = 1;
        for (size_t j = 0; j < ds->nwords; j++)
            ok &= ds->word_tag[j] == -1;
        CHECK(ok && ds->nlabels == 0, "no tags");
    }
    lstm_dataset_free(ds);
    ds = mem(LSTM_TASK_TAG, "", 0, &err);
    CHECK(ds && ds->nsent == 0 && ds->sent_start[0] == 0, "empty input: %s", err.msg);
    lstm_dataset_free(ds);
    static const char nul[] = "a b\nc\0d\n";
    ds = lstm_dataset_from_memory(LSTM_TASK_TAG, nul, sizeof nul - 1, "t.txt", 0, &err);
    CHECK(!ds && err.status == LSTM_ERR_FORMAT && strstr(err.msg, "t.txt: line 2: NUL byte"),
          "NUL: %s", err.msg);
}

/* ------------------------------------------------------------------ */
/* Split                                                               */

/* 1 when sub's examples appear in ds in the same order (by line). */
static int ordered_subset(const lstm_dataset *sub) {
    size_t n = lstm_dataset_count(sub);
    for (size_t i = 1; i < n; i++) {
        size_t a = sub->task == LSTM_TASK_CLASSIFY ? sub->doc_line[i - 1] : sub->sent_line[i - 1];
        size_t b = sub->task == LSTM_TASK_CLASSIFY ? sub->doc_line[i] : sub->sent_line[i];
        if (a >= b)
            return 0;
    }
    return 1;
}

static char *classify_text(size_t n) {
    char *text = malloc(n * 32 + 1), *at = text;
    for (size_t i = 0; i < n; i++)
        at += sprintf(at, "__label__%s doc %zu\n", i % 3 ? "ham" : "spam", i);
    return text;
}

/* The lines of the documents in the split's part, as a bit mask (n <= 64). */
static uint64_t split_mask(size_t n, double portion, uint64_t seed) {
    char *text = classify_text(n);
    lstm_error err;
    lstm_dataset *ds = mem(LSTM_TASK_CLASSIFY, text, 1, &err), *rest, *part;
    free(text);
    uint64_t mask = 0;
    if (ds && lstm_dataset_split(ds, portion, seed, &rest, &part, &err) == LSTM_OK) {
        for (size_t i = 0; i < part->ndocs; i++)
            mask |= 1ull << (part->doc_line[i] - 1);
        lstm_dataset_free(rest);
        lstm_dataset_free(part);
    }
    lstm_dataset_free(ds);
    return mask;
}

static void test_split(void) {
    lstm_error err;
    lstm_dataset *rest, *part;
    char *text = classify_text(10);
    lstm_dataset *ds = mem(LSTM_TASK_CLASSIFY, text, 1, &err);
    free(text);
    size_t tokens = lstm_dataset_tokens(ds);
    CHECK(lstm_dataset_split(ds, 0.3, 7, &rest, &part, &err) == LSTM_OK, "split: %s", err.msg);
    if (rest && part) {
        CHECK(part->ndocs == 3 && rest->ndocs == 7, "sizes %zu %zu", rest->ndocs, part->ndocs);
        CHECK(ordered_subset(rest) && ordered_subset(part), "order kept");
        CHECK(lstm_dataset_tokens(rest) + lstm_dataset_tokens(part) == tokens, "tokens");
        uint64_t a = 0, b = 0;
        for (size_t i = 0; i < rest->ndocs; i++)
            a |= 1ull << rest->doc_line[i];
        for (size_t i = 0; i < part->ndocs; i++)
            b |= 1ull << part->doc_line[i];
        CHECK((a & b) == 0 && (a | b) == 0x7feull, "a partition of the documents");
        int ok = 1;
        for (size_t i = 0; i < part->ndocs; i++) {
            char want[32];
            size_t line = part->doc_line[i];
            snprintf(want, sizeof want, "doc %zu", line - 1);
            ok &= doc_is(part, i, want) &&
                  strcmp(part->labels[part->doc_label[i]], (line - 1) % 3 ? "ham" : "spam") == 0;
        }
        CHECK(ok, "texts and labels follow their documents");
        CHECK(rest->nlabels == 2 && part->nlabels == 2 && strcmp(rest->labels[0], "spam") == 0 &&
                  strcmp(part->labels[1], "ham") == 0,
              "labels copied to both");
        CHECK(strstr(lstm_dataset_name(part), "t.txt") && strcmp(rest->name, part->name) != 0,
              "names %s / %s", rest->name, part->name);
        CHECK(lstm_dataset_count(ds) == 0 && lstm_dataset_tokens(ds) == 0, "ds emptied");
    }
    lstm_dataset_free(rest);
    lstm_dataset_free(part);
    lstm_dataset_free(ds);

    /* Determinism, and different seeds giving different splits. */
    uint64_t m1 = split_mask(60, 0.5, 1), m1b = split_mask(60, 0.5, 1);
    CHECK(m1 == m1b && __builtin_popcountll(m1) == 30, "same seed, same split");
    int differs = 0;
    for (uint64_t seed = 2; seed < 5; seed++)
        differs += split_mask(60, 0.5, seed) != m1;
    CHECK(differs == 3, "other seeds, other splits");
    CHECK(__builtin_popcountll(split_mask(10, 0.01, 3)) == 1, "at least one in the part");
    CHECK(__builtin_popcountll(split_mask(10, 0.99, 3)) == 9, "at least one in the rest");
    CHECK(__builtin_popcountll(split_mask(10, 0.25, 3)) == 3, "round(2.5) = 3");
    CHECK(__builtin_popcountll(split_mask(2, 0.5, 3)) == 1, "two documents");

    /* Bad arguments leave ds as it was. */
    ds = mem(LSTM_TASK_CLASSIFY, "__label__a x\n__label__b y\n", 1, &err);
    double bad[] = {0, 1, -0.5, 1.5, NAN};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rest = part = (lstm_dataset *)1;
        CHECK(lstm_dataset_split(ds, bad[i], 1, &rest, &part, &err) == LSTM_ERR_INVALID &&
                  strstr(err.msg, "must be in (0, 1)") && !rest && !part,
              "portion %g: %s", bad[i], err.msg);
    }
    CHECK(lstm_dataset_count(ds) == 2, "untouched");
    lstm_dataset_free(ds);
    ds = mem(LSTM_TASK_CLASSIFY, "__label__a x\n", 1, &err);
    CHECK(lstm_dataset_split(ds, 0.5, 1, &rest, &part, &err) == LSTM_ERR_INVALID &&
              strstr(err.msg, "cannot split 1 document in two"),
          "one document: %s", err.msg);
    lstm_dataset_free(ds);

    /* Unlabelled sets split too. */
    ds = mem(LSTM_TASK_CLASSIFY, "x\ny\nz\n", 0, &err);
    CHECK(lstm_dataset_split(ds, 0.5, 1, &rest, &part, &err) == LSTM_OK && rest->ndocs == 1 &&
              part->ndocs == 2 && rest->doc_label[0] == -1 && rest->labelled == 0,
          "unlabelled split");
    lstm_dataset_free(rest);
    lstm_dataset_free(part);
    lstm_dataset_free(ds);

    /* tag */
    ds = mem(LSTM_TASK_TAG, "a\tx\nb\ty\n\nc\tx\n\nd\tz\ne\tx\nf\ty\n\ng\tx\n", 1, &err);
    CHECK(ds && ds->nsent == 4 && ds->nwords == 7, "tag set");
    CHECK(lstm_dataset_split(ds, 0.5, 11, &rest, &part, &err) == LSTM_OK, "tag split: %s", err.msg);
    if (rest && part) {
        CHECK(rest->nsent == 2 && part->nsent == 2 && rest->nwords + part->nwords == 7,
              "sizes");
        CHECK(ordered_subset(rest) && ordered_subset(part), "order");
        CHECK(rest->sent_start[0] == 0 && rest->sent_start[2] == rest->nwords &&
                  part->sent_start[2] == part->nwords,
              "sentence starts");
        int ok = 1;
        const char *first[] = {NULL, "a", NULL, NULL, "c", NULL, "d", NULL, NULL, NULL, "g"};
        const lstm_dataset *sets[] = {rest, part};
        for (int s = 0; s < 2; s++)
            for (size_t i = 0; i < 2; i++) {
                const lstm_dataset *d = sets[s];
                const char *w = d->words[d->sent_start[i]];
                ok &= strcmp(w, first[d->sent_line[i]]) == 0 &&
                      strcmp(d->labels[d->word_tag[d->sent_start[i]]], w[0] == 'd' ? "z" : "x") == 0;
            }
        CHECK(ok, "words and tags follow their sentences");
        CHECK(rest->nlabels == 3 && part->nlabels == 3, "tags copied");
        CHECK(ds->nsent == 0 && ds->nwords == 0 && ds->sent_start[0] == 0, "ds emptied");
    }
    lstm_dataset_free(rest);
    lstm_dataset_free(part);
    lstm_dataset_free(ds);

    /* lm: the end of the text. */
    ds = mem(LSTM_TASK_LM, "abcdefghij", 1, &err);
    CHECK(lstm_dataset_split(ds, 0.2, 1, &rest, &part, &err) == LSTM_OK, "lm split");
    if (rest && part)
        CHECK(rest->nbytes == 8 && memcmp(rest->bytes, "abcdefgh", 9) == 0 && part->nbytes == 2 &&
                  memcmp(part->bytes, "ij", 3) == 0,
              "lm pieces");
    CHECK(lstm_dataset_count(ds) == 0, "lm emptied");
    lstm_dataset_free(rest);
    lstm_dataset_free(part);
    lstm_dataset_free(ds);
    ds = mem(LSTM_TASK_LM, "ab", 1, &err);
    CHECK(lstm_dataset_split(ds, 0.001, 1, &rest, &part, &err) == LSTM_OK && rest->nbytes == 1 &&
              part->nbytes == 1,
          "one byte each side");
    lstm_dataset_free(rest);
    lstm_dataset_free(part);
    lstm_dataset_free(ds);
    ds = mem(LSTM_TASK_LM, "a", 1, &err);
    CHECK(lstm_dataset_split(ds, 0.5, 1, &rest, &part, &err) == LSTM_ERR_INVALID, "one byte");
    lstm_dataset_free(ds);
}

/* ------------------------------------------------------------------ */
/* Vocabulary                                                          */

static int same_vocab(const lstm_vocab *a, const lstm_vocab *b) {
    if (vocab_size(a) != vocab_size(b))
        return 0;
    for (int i = 0; i < vocab_size(a); i++) {
        size_t la, lb;
        const char *sa = vocab_string(a, i, &la), *sb = vocab_string(b, i, &lb);
        if (la != lb || memcmp(sa, sb, la) != 0 || sb[lb] != 0)
            return 0;
    }
    return 1;
}

static void test_vocab(void) {
    lstm_vocab *v = vocab_create();
    const char *words[] = {"the", "cat", "the", "a", "the", "cat", "dog", "b"};
    int ids[8];
    for (int i = 0; i < 8; i++)
        ids[i] = vocab_add(v, words[i], strlen(words[i]));
    CHECK(ids[0] == 0 && ids[1] == 1 && ids[2] == 0 && ids[3] == 2 && ids[6] == 3 && ids[7] == 4,
          "dense ids in order of first appearance");
    CHECK(vocab_size(v) == 5, "size");
    CHECK(vocab_count(v, 0) == 3 && vocab_count(v, 1) == 2 && vocab_count(v, 3) == 1, "counts");
    CHECK(vocab_find(v, "cat", 3) == 1 && vocab_find(v, "ca", 2) == -1 &&
              vocab_find(v, "cats", 4) == -1,
          "find");
    size_t len;
    CHECK(strcmp(vocab_string(v, 3, &len), "dog") == 0 && len == 3, "string");
    CHECK(vocab_string(v, 5, &len) == NULL && vocab_string(v, -1, NULL) == NULL &&
              vocab_count(v, 9) == 0,
          "out of range");
    CHECK(vocab_add(v, "a\0b", 3) == 5 && vocab_add(v, "a", 1) == 2 && vocab_find(v, "a\0b", 3) == 5,
          "embedded NUL is part of the string");
    CHECK(vocab_add(v, "", 0) == 6 && vocab_find(v, "", 0) == 6, "empty string");

    /* prune: reserved first, then count desc, ties in byte order. */
    const char *reserved[] = {"<pad>", "<unk>", "cat"};
    lstm_vocab *p = vocab_prune(v, reserved, 3, 1, 0);
    /* Counts: the 3, cat 2, a 2, dog 1, b 1, "a\0b" 1, "" 1. */
    CHECK(p && vocab_size(p) == 9, "pruned size %d", vocab_size(p));
    if (p && vocab_size(p) == 9) {
        const char *want[] = {"<pad>", "<unk>", "cat", "the", "a", "", "a\0b", "b", "dog"};
        size_t want_len[] = {5, 5, 3, 3, 1, 0, 3, 1, 3};
        int ok = 1;
        for (int i = 0; i < 9; i++) {
            const char *s = vocab_string(p, i, &len);
            ok &= len == want_len[i] && memcmp(s, want[i], len) == 0;
        }
        CHECK(ok, "a reserved string of v keeps its reserved id and is not repeated");
        CHECK(vocab_count(p, 0) == 0 && vocab_count(p, 2) == 2 && vocab_count(p, 3) == 3,
              "counts kept");
    }
    vocab_free(p);
    p = vocab_prune(v, reserved, 2, 1, 0);
    const char *want[] = {"<pad>", "<unk>", "the", "a", "cat", "", "a\0b", "b", "dog"};
    size_t want_len[] = {5, 5, 3, 1, 3, 0, 3, 1, 3};
    int ok = p && vocab_size(p) == 9;
    for (int i = 0; ok && i < 9; i++) {
        const char *s = vocab_string(p, i, &len);
        ok &= len == want_len[i] && memcmp(s, want[i], len) == 0;
    }
    CHECK(ok, "count desc, then byte order (a shorter prefix first)");
    vocab_free(p);
    p = vocab_prune(v, reserved, 2, 2, 0);
    CHECK(p && vocab_size(p) == 5 && vocab_find(p, "cat", 3) == 4 && vocab_find(p, "dog", 3) < 0,
          "min_count");
    vocab_free(p);
    p = vocab_prune(v, reserved, 2, 0, 4);
    CHECK(p && vocab_size(p) == 4 && vocab_find(p, "a", 1) == 3, "max_size counts the reserved");
    vocab_free(p);
    p = vocab_prune(v, reserved, 3, 0, 2);
    CHECK(p && vocab_size(p) == 3, "reserved kept beyond max_size");
    vocab_free(p);
    p = vocab_prune(v, NULL, 0, 1, 0);
    CHECK(p && vocab_size(p) == 7 && vocab_find(p, "the", 3) == 0, "no reserved");
    vocab_free(p);
    const char *twice[] = {"<unk>", "<unk>"};
    CHECK(vocab_prune(v, twice, 2, 1, 0) == NULL, "repeated reserved string");

    /* JSON round trip: strings, bytes for invalid UTF-8 and NUL. */
    vocab_add(v, "caf\xc3\xa9", 5);
    vocab_add(v, "\xff\xfe", 2);
    vocab_add(v, "\xc0\xaf", 2);         /* overlong "/" */
    vocab_add(v, "\xed\xa0\x80", 3);     /* a surrogate */
    vocab_add(v, "\xf4\x90\x80\x80", 4); /* above U+10FFFF */
    vocab_add(v, "\xe2\x82", 2);         /* cut short */
    vocab_add(v, "q\"\\\n\x01/", 6);
    vocab_add(v, "\xf0\x9f\x98\x80", 4); /* U+1F600 */
    char *json = vocab_to_json(v);
    CHECK(json != NULL, "to_json");
    if (json) {
        CHECK(strncmp(json, "[\"the\",\"cat\",\"a\",\"dog\",\"b\",[97,0,98],\"\",\"caf\xc3\xa9\","
                            "[255,254],[192,175],[237,160,128],[244,144,128,128],[226,130],",
                      strlen("[\"the\",\"cat\",\"a\",\"dog\",\"b\",[97,0,98],\"\",\"caf\xc3\xa9\","
                             "[255,254],[192,175],[237,160,128],[244,144,128,128],[226,130],")) == 0,
              "JSON form: %s", json);
        lstm_error err;
        lstm_vocab *back = vocab_from_json(json, "vocab", &err);
        CHECK(back && same_vocab(v, back), "round trip: %s", back ? "" : err.msg);
        CHECK(back && vocab_count(back, 0) == 0, "counts are not stored");
        char *json2 = back ? vocab_to_json(back) : NULL;
        CHECK(json2 && strcmp(json, json2) == 0, "same JSON again");
        free(json2);
        vocab_free(back);
        free(json);
    }
    vocab_free(v);

    /* A large vocabulary: the table grows. */
    v = vocab_create();
    char buf[32];
    for (int i = 0; i < 20000; i++) {
        int n = snprintf(buf, sizeof buf, "w%d", i);
        vocab_add(v, buf, (size_t)n);
        vocab_add(v, buf, (size_t)n);
    }
    ok = vocab_size(v) == 20000;
    for (int i = 0; ok && i < 20000; i += 7) {
        int n = snprintf(buf, sizeof buf, "w%d", i);
        ok &= vocab_find(v, buf, (size_t)n) == i && vocab_count(v, i) == 2;
    }
    CHECK(ok, "20000 entries");
    json = vocab_to_json(v);
    lstm_error err;
    lstm_vocab *back = vocab_from_json(json, "big", &err);
    CHECK(back && same_vocab(v, back), "large round trip");
    vocab_free(back);
    free(json);
    vocab_free(v);

    back = vocab_from_json("[]", "empty", &err);
    CHECK(back && vocab_size(back) == 0, "empty array");
    vocab_free(back);
    back = vocab_from_json("[\"a\\u0000b\", [99]]", "nul", &err);
    CHECK(back && vocab_find(back, "a\0b", 3) == 0 && vocab_find(back, "c", 1) == 1,
          "\\u0000 accepted: %s", err.msg);
    vocab_free(back);

    struct {
        const char *json, *want;
    } bad[] = {
        {"[\"a\",", "v.json: not valid JSON"},
        {"", "v.json: not valid JSON"},
        {"{\"a\": 1}", "v.json: expected a JSON array of strings"},
        {"\"a\"", "v.json: expected a JSON array"},
        {"[\"a\", 5]", "v.json: id 1: expected a string or an array of byte values"},
        {"[null]", "v.json: id 0: expected a string"},
        {"[\"a\", [97, 256]]", "v.json: id 1: element 1 is not a byte value"},
        {"[[-1]]", "v.json: id 0: element 0 is not a byte value"},
        {"[[1.0]]", "v.json: id 0: element 0 is not a byte value"},
        {"[[[1]]]", "v.json: id 0: element 0 is not a byte value"},
        {"[\"a\", \"b\", \"a\"]", "v.json: id 2 repeats the entry of id 0"},
        {"[\"a\", [97]]", "v.json: id 1 repeats the entry of id 0"},
        {"[\"\", []]", "v.json: id 1 repeats the entry of id 0"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        back = vocab_from_json(bad[i].json, "v.json", &err);
        CHECK(!back && err.status == LSTM_ERR_FORMAT && strstr(err.msg, bad[i].want),
              "%s: %s", bad[i].json, err.msg);
        vocab_free(back);
    }
    CHECK(vocab_from_json(NULL, NULL, &err) == NULL && err.status == LSTM_ERR_INVALID, "NULL");
}

/* ------------------------------------------------------------------ */
/* The real data sets                                                  */

static void test_shared_data(void) {
    const char *root = getenv("LSTM_SHARED_DATA");
    if (!root)
        root = "../shared/data";
    char path[1024];
    struct stat sb;
    if (stat(root, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        printf("ok skipping the real data checks: %s is absent\n", root);
        return;
    }
    lstm_error err;
    clock_t t0 = clock();

    snprintf(path, sizeof path, "%s/spam/train.txt", root);
    lstm_dataset *ds = lstm_dataset_read(LSTM_TASK_CLASSIFY, path, &err);
    CHECK(ds != NULL, "%s", err.msg);
    if (ds) {
        size_t count[2] = {0, 0};
        for (size_t i = 0; i < ds->ndocs; i++)
            count[ds->doc_label[i]]++;
        CHECK(ds->ndocs == 4907, "spam train documents %zu", ds->ndocs);
        CHECK(ds->nlabels == 2, "labels %d", ds->nlabels);
        if (ds->nlabels == 2) {
            int ham = strcmp(ds->labels[0], "ham") == 0 ? 0 : 1;
            CHECK(strcmp(ds->labels[ham], "ham") == 0 && strcmp(ds->labels[1 - ham], "spam") == 0,
                  "label names");
            CHECK(count[ham] == 3367 && count[1 - ham] == 1540, "ham %zu spam %zu", count[ham],
                  count[1 - ham]);
        }
        /* Each line: "__label__" NAME " " text "\n". */
        CHECK(lstm_dataset_tokens(ds) == 15334208 - 3367 * (9 + 3 + 2) - 1540 * (9 + 4 + 2),
              "text bytes %zu", lstm_dataset_tokens(ds));
        lstm_dataset *u = lstm_dataset_read_unlabelled(LSTM_TASK_CLASSIFY, path, &err);
        int same = u && u->ndocs == ds->ndocs;
        for (size_t i = 0; same && i < u->ndocs; i++)
            same = u->doc_len[i] == ds->doc_len[i] &&
                   memcmp(u->doc_text[i], ds->doc_text[i], u->doc_len[i]) == 0;
        CHECK(same, "unlabelled reading drops exactly the labels");
        lstm_dataset_free(u);
        lstm_dataset *rest, *part;
        CHECK(lstm_dataset_split(ds, 0.1, 42, &rest, &part, &err) == LSTM_OK && part->ndocs == 491 &&
                  rest->ndocs == 4416,
              "split 10%%");
        lstm_dataset_free(rest);
        lstm_dataset_free(part);
    }
    lstm_dataset_free(ds);

    snprintf(path, sizeof path, "%s/brown-pos/train.tsv", root);
    ds = lstm_dataset_read(LSTM_TASK_TAG, path, &err);
    CHECK(ds != NULL, "%s", err.msg);
    if (ds) {
        CHECK(lstm_dataset_count(ds) == 46175, "sentences %zu", lstm_dataset_count(ds));
        CHECK(lstm_dataset_tokens(ds) == 929728, "tokens %zu", lstm_dataset_tokens(ds));
        CHECK(ds->nlabels == 178, "distinct tags %d", ds->nlabels);
    }
    lstm_dataset_free(ds);

    snprintf(path, sizeof path, "%s/brown-text/valid.txt", root);
    ds = lstm_dataset_read(LSTM_TASK_LM, path, &err);
    CHECK(ds && lstm_dataset_count(ds) == 597159, "brown-text valid bytes %zu",
          lstm_dataset_count(ds));
    lstm_dataset_free(ds);
    /* The same text as sentences to tag. */
    ds = lstm_dataset_read_unlabelled(LSTM_TASK_TAG, path, &err);
    CHECK(ds && lstm_dataset_count(ds) == 5523, "brown-text valid lines %zu",
          lstm_dataset_count(ds));
    lstm_dataset_free(ds);
    printf("ok real data read in %.2f s\n", (double)(clock() - t0) / CLOCKS_PER_SEC);
}

int main(void) {
    test_tasks();
    test_lm();
    test_classify_labelled();
    test_classify_unlabelled();
    test_classify_dir();
    test_tag_labelled();
    test_tag_unlabelled();
    test_split();
    test_vocab();
    test_shared_data();
    return check_summary();
}
