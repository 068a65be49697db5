/* cmd_eval.c - lstm eval MODEL FILE: the model's figures on labelled data
 * (bits per character and perplexity, or accuracy, per-class precision and
 * recall, accuracy on unseen words); with --json, stdout holds one JSON
 * object and nothing else. */
#include "cli.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *V = "eval";

/* A number for JSON: NaN and infinities (which JSON lacks) become null. */
static json_t *num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

/* A figure as text: "%.4f", or "-" when it was not measured (NaN, as
 * over no example) or is infinite. Returns buf. */
static const char *fig(double x, char *buf, size_t cap) {
    if (isfinite(x))
        snprintf(buf, cap, "%.4f", x);
    else
        snprintf(buf, cap, "-");
    return buf;
}

/* A label as JSON text: itself when it is valid UTF-8, else with every
 * byte above 0x7f written as \xNN (a label may hold any bytes). Returns
 * buf or s. */
static const char *utf8(const char *s, char *buf, size_t cap) {
    json_t *j = json_string(s);
    if (j) {
        json_decref(j);
        return s;
    }
    size_t n = 0;
    for (const unsigned char *c = (const unsigned char *)s; *c && n + 5 < cap; c++)
        n += (size_t)(*c < 0x80 ? snprintf(buf + n, cap - n, "%c", *c)
                                : snprintf(buf + n, cap - n, "\\x%02x", *c));
    buf[n] = 0;
    return buf;
}

/* The figures of a classifier: the per-class table (stdout, unless json)
 * and its JSON fields (into o). */
static void classify_figures(const lstm_model *m, const lstm_eval *e, int json, json_t *o) {
    int C = e->nlabels;
    json_t *labels = json_array(), *per = json_object(), *conf = json_array();
    if (!json)
        printf("%-20s %9s %9s %9s %9s\n", "label", "precision", "recall", "f1", "support");
    for (int c = 0; c < C; c++) {
        long tp = e->confusion[(size_t)c * C + c], col = 0, row = 0;
        json_t *r = json_array();
        for (int k = 0; k < C; k++) {
            col += e->confusion[(size_t)k * C + c];
            row += e->confusion[(size_t)c * C + k];
            json_array_append_new(r, json_integer(e->confusion[(size_t)c * C + k]));
        }
        /* over no prediction (precision) or no example (recall) of the
         * class, nothing was measured: NaN, printed as - or null; F1 is
         * 2 tp / (2 tp + fp + fn), defined when either is */
        double p = col ? (double)tp / col : NAN, rc = row ? (double)tp / row : NAN;
        double f1 = row + col ? 2.0 * tp / (double)(row + col) : NAN;
        char f[3][32];
        if (!json)
            printf("%-20s %9s %9s %9s %9ld\n", lstm_model_label(m, c), fig(p, f[0], sizeof f[0]),
                   fig(rc, f[1], sizeof f[1]), fig(f1, f[2], sizeof f[2]), row);
        char buf[512];
        const char *name = utf8(lstm_model_label(m, c), buf, sizeof buf);
        json_array_append_new(labels, json_string(name));
        json_object_set_new(per, name,
                            json_pack("{s:o, s:o, s:o, s:I}", "precision", num(p), "recall",
                                      num(rc), "f1", num(f1), "support", (json_int_t)row));
        json_array_append_new(conf, r);
    }
    if (!json) {
        printf("confusion (rows: true label, columns: predicted):\n");
        for (int c = 0; c < C; c++) {
            printf("%-20s", lstm_model_label(m, c));
            for (int k = 0; k < C; k++)
                printf(" %7ld", e->confusion[(size_t)c * C + k]);
            printf("\n");
        }
    }
    json_object_set_new(o, "labels", labels);
    json_object_set_new(o, "per_class", per);
    json_object_set_new(o, "confusion", conf);
}

int cmd_eval(int argc, char **argv) {
    int json = 0, threads = 0, streams = 1;
    cli_opt opts[] = {
        {"json", OPT_FLAG, &json, NULL, "print one JSON object of the figures instead of the text (non-finite figures: null)"},
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
        json_t *o = json_object();
        json_object_set_new(o, "task", json_string(lstm_task_name(task)));
        char f[3][32];
        if (e.skipped > 0) { /* one warning line, on stderr in every mode */
            int tag = task == LSTM_TASK_TAG, one = e.skipped == 1;
            fprintf(stderr, "lstm eval: warning: %zu %s whose %s the model does not know "
                    "left out of every figure:", e.skipped,
                    tag ? (one ? "word" : "words") : (one ? "document" : "documents"),
                    tag ? "tag" : "label");
            for (int i = 0; i < e.nunknown_labels; i++)
                fprintf(stderr, "%s %s (%zu)", i ? "," : "", e.unknown_labels[i],
                        e.unknown_counts[i]);
            fprintf(stderr, "\n");
            json_t *u = json_object();
            for (int i = 0; i < e.nunknown_labels; i++) {
                char buf[512];
                json_object_set_new(u, utf8(e.unknown_labels[i], buf, sizeof buf),
                                    json_integer((json_int_t)e.unknown_counts[i]));
            }
            json_object_set_new(o, "skipped", json_integer((json_int_t)e.skipped));
            json_object_set_new(o, "unknown_labels", u);
        }
        if (task == LSTM_TASK_LM) {
            if (!json)
                printf("bytes %zu, unknown %zu\nloss %s nats/byte\nbpc %s\nperplexity %s\n",
                       e.tokens + 1, e.unknown, fig(e.loss, f[0], sizeof f[0]),
                       fig(e.bpc, f[1], sizeof f[1]), fig(e.perplexity, f[2], sizeof f[2]));
            json_object_set_new(o, "bytes", json_integer((json_int_t)e.tokens + 1));
            json_object_set_new(o, "unknown", json_integer((json_int_t)e.unknown));
            json_object_set_new(o, "bpc", num(e.bpc));
            json_object_set_new(o, "perplexity", num(e.perplexity));
        } else if (task == LSTM_TASK_TAG) {
            if (!json)
                printf("words %zu\naccuracy %s\nunseen words %zu, accuracy %s\nloss %s\n",
                       e.tokens, fig(e.accuracy, f[0], sizeof f[0]), e.unseen_tokens,
                       fig(e.unseen_accuracy, f[1], sizeof f[1]), fig(e.loss, f[2], sizeof f[2]));
            json_object_set_new(o, "words", json_integer((json_int_t)e.tokens));
            json_object_set_new(o, "unseen_words", json_integer((json_int_t)e.unseen_tokens));
            json_object_set_new(o, "unseen_accuracy", num(e.unseen_accuracy));
        } else {
            if (!json)
                printf("documents %zu\naccuracy %s\nloss %s\n", e.tokens,
                       fig(e.accuracy, f[0], sizeof f[0]), fig(e.loss, f[1], sizeof f[1]));
            json_object_set_new(o, "documents", json_integer((json_int_t)e.tokens));
            classify_figures(m, &e, json, o);
        }
        json_object_set_new(o, "loss", num(e.loss));
        json_object_set_new(o, "accuracy", num(e.accuracy));
        if (json) {
            /* stdout holds this one document and nothing else */
            if (json_dumpf(o, stdout, JSON_COMPACT | JSON_REAL_PRECISION(9)) || puts("") == EOF)
                status = cli_error(V, "cannot write the JSON to standard output");
        }
        json_decref(o);
        lstm_eval_free(&e);
    }
    lstm_ctx_free(ctx);
    lstm_dataset_free(ds);
    lstm_model_free(m);
    return status;
}
