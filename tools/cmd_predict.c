/* cmd_predict.c - lstm predict MODEL [FILE]: labels each line of text
 * (classify) or each word of each line (tag), from a file or stdin. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *V = "predict";

/* Reads all of standard input into a malloc'd buffer. */
static char *read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (n < cap)
            break;
        char *b = realloc(buf, cap * 2);
        if (!b) {
            free(buf);
            return NULL;
        }
        buf = b, cap *= 2;
    }
    *len = n;
    return buf;
}

int cmd_predict(int argc, char **argv) {
    int threads = 0;
    cli_opt opts[] = {{"threads", OPT_INT, &threads, "N", "threads (default: all processors)"},
                      OPT_END};
    const char *pos[2];
    int npos;
    int r = cli_parse(V, "lstm predict MODEL [FILE]",
                      "classify: prints '__label__NAME PROBABILITY' for each line of FILE (or of\n"
                      "standard input when FILE is absent or -). tag: reads one sentence per line,\n"
                      "words separated by spaces, and prints it as word/tag tokens.",
                      opts, argc, argv, pos, 2, &npos);
    if (r)
        return r == 2 ? 0 : 1;
    if (npos < 1)
        return cli_error(V, "expected MODEL [FILE] (see lstm predict --help)");
    lstm_error err;
    lstm_model *m = lstm_model_load(pos[0], &err);
    if (!m)
        return cli_error(V, "%s", err.msg);
    lstm_task task = lstm_model_task(m);
    if (task == LSTM_TASK_LM) {
        lstm_model_free(m);
        return cli_error(V, "%s is a language model: it predicts text, see lstm sample", pos[0]);
    }
    lstm_dataset *ds = NULL;
    if (npos < 2 || strcmp(pos[1], "-") == 0) {
        size_t len;
        char *buf = read_stdin(&len);
        if (buf)
            ds = lstm_dataset_from_memory(task, buf, len, "<stdin>", 0, &err);
        else
            snprintf(err.msg, sizeof err.msg, "out of memory reading standard input");
        free(buf);
    } else {
        ds = lstm_dataset_read_unlabelled(task, pos[1], &err);
    }
    int status = 1;
    size_t n = ds ? (task == LSTM_TASK_TAG ? lstm_dataset_tokens(ds) : lstm_dataset_count(ds)) : 0;
    int *labels = malloc(sizeof(int) * (n + 1));
    float *probs = malloc(sizeof(float) * (n + 1));
    lstm_ctx *ctx = ds && labels && probs ? cli_ctx(V, threads) : NULL;
    if (!ds) {
        cli_error(V, "%s", err.msg);
    } else if (ctx && lstm_model_predict(m, ctx, ds, labels, probs, &err)) {
        cli_error(V, "%s", err.msg);
    } else if (ctx) {
        status = 0;
        if (task == LSTM_TASK_CLASSIFY) {
            for (size_t i = 0; i < n; i++)
                printf("__label__%s %.6f\n", lstm_model_label(m, labels[i]), probs[i]);
        } else {
            size_t nsent = lstm_dataset_count(ds), w = 0;
            for (size_t s = 0; s < nsent; s++) {
                size_t nw;
                const char *const *words = lstm_dataset_sentence(ds, s, &nw);
                for (size_t k = 0; k < nw; k++, w++)
                    printf("%s%s/%s", k ? " " : "", words[k], lstm_model_label(m, labels[w]));
                printf("\n");
            }
        }
    }
    free(labels);
    free(probs);
    lstm_ctx_free(ctx);
    lstm_dataset_free(ds);
    lstm_model_free(m);
    return status;
}
