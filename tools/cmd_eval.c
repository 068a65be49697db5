/* cmd_eval.c - lstm eval MODEL FILE: the model's figures on labelled data
 * (bits per character and perplexity, or accuracy, per-class precision and
 * recall, accuracy on unseen words); --json ends with one JSON object. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *V = "eval";

/* A string as a JSON string literal. */
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(f, "\\%c", *c);
        else if (*c < 0x20)
            fprintf(f, "\\u%04x", *c);
        else
            fputc(*c, f);
    }
    fputc('"', f);
}

int cmd_eval(int argc, char **argv) {
    int json = 0, threads = 0, streams = 1;
    cli_opt opts[] = {
        {"json", OPT_FLAG, &json, NULL, "end with one JSON object of the figures"},
        {"streams", OPT_INT, &streams, "N", "lm: parallel streams (1: the state carried through the whole text)"},
        {"threads", OPT_INT, &threads, "N", "threads (default: all processors)"},
        OPT_END};
    const char *pos[2];
    int npos;
    int r = cli_parse(V, "lstm eval MODEL FILE [--json]",
                      "Evaluates a model on labelled data of its task (lm: any text; classify:\n"
                      "fastText lines or a directory of labelled texts; tag: word<TAB>tag lines).",
                      opts, argc, argv, pos, 2, &npos);
    if (r)
        return r == 2 ? 0 : 1;
    if (npos != 2)
        return cli_error(V, "expected MODEL FILE (see lstm eval --help)");
    if (streams < 1)
        return cli_error(V, "--streams must be at least 1");
    lstm_error err;
    lstm_model *m = lstm_model_load(pos[0], &err);
    if (!m)
        return cli_error(V, "%s", err.msg);
    lstm_task task = lstm_model_task(m);
    lstm_dataset *ds = lstm_dataset_read(task, pos[1], &err);
    lstm_ctx *ctx = ds ? cli_ctx(V, threads) : NULL;
    lstm_eval e;
    int status = 1;
    if (!ds) {
        cli_error(V, "%s (the model is a %s model)", err.msg, lstm_task_name(task));
    } else if (ctx && lstm_model_evaluate(m, ctx, ds, streams, &e, &err)) {
        cli_error(V, "%s", err.msg);
    } else if (ctx) {
        status = 0;
        if (task == LSTM_TASK_LM) {
            printf("bytes %zu, unknown %zu\nloss %.4f nats/byte\nbpc %.4f\nperplexity %.4f\n",
                   e.tokens + 1, e.unknown, e.loss, e.bpc, e.perplexity);
            if (json)
                printf("{\"task\":\"lm\",\"bytes\":%zu,\"unknown\":%zu,\"loss\":%.6f,\"bpc\":%.6f,"
                       "\"perplexity\":%.6f,\"accuracy\":%.6f}\n",
                       e.tokens + 1, e.unknown, e.loss, e.bpc, e.perplexity, e.accuracy);
        } else if (task == LSTM_TASK_TAG) {
            printf("words %zu\naccuracy %.4f\nunseen words %zu, accuracy %.4f\nloss %.4f\n",
                   e.tokens, e.accuracy, e.unseen_tokens, e.unseen_accuracy, e.loss);
            if (json)
                printf("{\"task\":\"tag\",\"words\":%zu,\"accuracy\":%.6f,\"unseen_words\":%zu,"
                       "\"unseen_accuracy\":%.6f,\"loss\":%.6f}\n",
                       e.tokens, e.accuracy, e.unseen_tokens, e.unseen_accuracy, e.loss);
        } else {
            int C = e.nlabels;
            printf("documents %zu\naccuracy %.4f\nloss %.4f\n", e.tokens, e.accuracy, e.loss);
            printf("%-20s %9s %9s %9s %9s\n", "label", "precision", "recall", "f1", "support");
            for (int c = 0; c < C; c++) {
                long tp = e.confusion[(size_t)c * C + c], col = 0, row = 0;
                for (int k = 0; k < C; k++) {
                    col += e.confusion[(size_t)k * C + c];
                    row += e.confusion[(size_t)c * C + k];
                }
                double p = col ? (double)tp / col : 0, rc = row ? (double)tp / row : 0;
                printf("%-20s %9.4f %9.4f %9.4f %9ld\n", lstm_model_label(m, c), p, rc,
                       p + rc > 0 ? 2 * p * rc / (p + rc) : 0, row);
            }
            printf("confusion (rows: true label, columns: predicted):\n");
            for (int c = 0; c < C; c++) {
                printf("%-20s", lstm_model_label(m, c));
                for (int k = 0; k < C; k++)
                    printf(" %7ld", e.confusion[(size_t)c * C + k]);
                printf("\n");
            }
            if (json) {
                printf("{\"task\":\"classify\",\"documents\":%zu,\"accuracy\":%.6f,\"loss\":%.6f,"
                       "\"labels\":[",
                       e.tokens, e.accuracy, e.loss);
                for (int c = 0; c < C; c++) {
                    if (c)
                        printf(",");
                    json_str(stdout, lstm_model_label(m, c));
                }
                printf("],\"per_class\":{");
                for (int c = 0; c < C; c++) {
                    long tp = e.confusion[(size_t)c * C + c], col = 0, row = 0;
                    for (int k = 0; k < C; k++) {
                        col += e.confusion[(size_t)k * C + c];
                        row += e.confusion[(size_t)c * C + k];
                    }
                    double p = col ? (double)tp / col : 0, rc = row ? (double)tp / row : 0;
                    printf("%s", c ? "," : "");
                    json_str(stdout, lstm_model_label(m, c));
                    printf(":{\"precision\":%.6f,\"recall\":%.6f,\"f1\":%.6f,\"support\":%ld}", p,
                           rc, p + rc > 0 ? 2 * p * rc / (p + rc) : 0, row);
                }
                printf("},\"confusion\":[");
                for (int c = 0; c < C; c++) {
                    printf("%s[", c ? "," : "");
                    for (int k = 0; k < C; k++)
                        printf("%s%ld", k ? "," : "", e.confusion[(size_t)c * C + k]);
                    printf("]");
                }
                printf("]}\n");
            }
        }
        lstm_eval_free(&e);
    }
    lstm_ctx_free(ctx);
    lstm_dataset_free(ds);
    lstm_model_free(m);
    return status;
}
