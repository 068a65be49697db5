/* cmd_train.c - lstm train lm|classify|tag: reads the data, trains with a
 * progress bar (or plain lines when not on a terminal), writes a JSON-lines
 * log, checkpoints, and the model that did best on the validation data. */
#include "cli.h"

#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *V = "train";

typedef struct {
    FILE *log;
    const char *task;
    int tty, quiet;
    double last_plain;   /* when the last plain progress line was printed */
    double last_valid;   /* the last validation figure, for the bar */
    const char *metric;
    int have_valid;
    int epochs;
    double time_limit;
    double loss;         /* the last training loss (NAN: none yet) */
    double tps;          /* tokens per second of training, smoothed (NAN: none yet) */
    int bar_shown;
    int last_best;       /* the last validation was a new best */
    int best_saved;      /* --out holds a best model of this run */
    int interrupted;     /* the run ended on a signal (END: "interrupted") */
} progress;

static void fmt_time(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 359999)
        snprintf(buf, n, "--:--");
    else if (s >= 3600)
        snprintf(buf, n, "%d:%02d:%02d", (int)s / 3600, (int)s / 60 % 60, (int)s % 60);
    else
        snprintf(buf, n, "%02d:%02d", (int)s / 60, (int)s % 60);
}

/* A number for the log: JSON has no NaN or infinity, so those are null. */
static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static void log_event(progress *pr, const lstm_event *ev) {
    if (!pr->log)
        return;
    static const char *names[] = {"start", "train", "valid", "end"};
    json_t *o = json_pack("{s:s, s:i, s:I, s:o}", "event", names[ev->type], "epoch", ev->epoch,
                          "step", (json_int_t)ev->step, "time", num(ev->elapsed));
    if (!o)
        return;
    if (ev->type == LSTM_EV_START)
        json_object_set_new(o, "task", json_string(pr->task));
    if (ev->type == LSTM_EV_TRAIN) {
        json_object_set_new(o, "loss", num(ev->loss));
        json_object_set_new(o, "lr", num(ev->lr));
        json_object_set_new(o, "tokens_per_s", num(ev->tokens_per_s));
        if (ev->comm_seconds > 0)
            json_object_set_new(o, "comm_seconds", num(ev->comm_seconds));
    }
    if (ev->type == LSTM_EV_VALID) {
        json_object_set_new(o, "loss", num(ev->loss));
        json_object_set_new(o, "metric", json_string(ev->metric));
        json_object_set_new(o, "value", num(ev->value));
        json_object_set_new(o, "best", json_boolean(ev->best));
    }
    if (ev->type == LSTM_EV_END && ev->metric) {
        json_object_set_new(o, "best_metric", json_string(ev->metric));
        json_object_set_new(o, "best_value", num(ev->value));
    }
    if (ev->message)
        json_object_set_new(o, "message", json_string(ev->message));
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(7));
    json_decref(o);
    if (line) {
        fprintf(pr->log, "%s\n", line);
        fflush(pr->log);
        free(line);
    }
}

/* The log is a stream of JSON lines appended while training runs, read by
 * `tail -f` and `lstm plot` before it ends: not a document replaced whole,
 * so not lstm_write_file_atomic (docs/DESIGN.md, "Files"). Appended
 * (O_APPEND) through a buffer larger than any line, which log_event flushes
 * after each line: each line goes out in one write(), so a run that is
 * killed leaves whole lines. */
static FILE *open_log(const char *path, int append) {
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (append ? 0 : O_TRUNC), 0666);
    FILE *f = fd >= 0 ? fdopen(fd, "a") : NULL;
    if (!f) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    setvbuf(f, NULL, _IOFBF, 1 << 16);
    return f;
}

/* The terminal's width in columns (80 when it cannot be told). */
static int term_width(void) {
    struct winsize ws;
    if (ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    const char *c = getenv("COLUMNS");
    int n = c ? atoi(c) : 0;
    return n > 0 ? n : 80;
}

/* A figure, or "-" while there is none. */
static void fmt_num(char *buf, size_t n, const char *fmt, double v) {
    if (isfinite(v))
        snprintf(buf, n, fmt, v);
    else
        snprintf(buf, n, "-");
}

/* The progress line: epoch, bar and percentage, step, loss, the last
 * validation figure (marked * when it was a new best), tokens/s, elapsed <
 * left. On a terminal the line is redrawn in place and fits its width:
 * fields are dropped, the least useful first (bar, elapsed < left, tok/s,
 * step), as tqdm does; a line wider than the terminal would wrap and
 * leave a copy behind at every refresh. */
static void show(progress *pr, const lstm_event *ev, int final) {
    char el[16], left[16], loss[24], tps[24], valid[48] = "valid -";
    fmt_time(el, sizeof el, ev->elapsed);
    double eta = ev->progress > 0.001 ? ev->elapsed * (1 - ev->progress) / ev->progress : -1;
    if (pr->time_limit > 0 && (pr->epochs == 0 || pr->time_limit - ev->elapsed < eta))
        eta = pr->time_limit - ev->elapsed;
    fmt_time(left, sizeof left, eta);
    fmt_num(loss, sizeof loss, "%.4f", pr->loss);
    fmt_num(tps, sizeof tps, "%.0f", pr->tps);
    if (pr->have_valid)
        snprintf(valid, sizeof valid, "valid %.4g %s%s", pr->last_valid, pr->metric,
                 pr->last_best ? "*" : "");
    char ep[32];
    if (pr->epochs > 0)
        snprintf(ep, sizeof ep, "epoch %d/%d", ev->epoch, pr->epochs);
    else
        snprintf(ep, sizeof ep, "epoch %d", ev->epoch);
    if (!pr->tty) {
        fprintf(stderr, "%s step %ld (%.0f%%) loss %s, %s tok/s, %s elapsed, %s left, %s\n", ep,
                ev->step, ev->progress * 100, loss, tps, el, left, valid);
        fflush(stderr);
        return;
    }
    char bar[32], f[7][64];
    int width = 20, fill = (int)(ev->progress * width + 0.5);
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '-';
    bar[width] = 0;
    /* in display order; keep[] by priority: 0 is kept longest */
    snprintf(f[0], sizeof f[0], "%s", ep);
    snprintf(f[1], sizeof f[1], " [%s] %3.0f%%", bar, ev->progress * 100);
    snprintf(f[2], sizeof f[2], " step %ld", ev->step);
    snprintf(f[3], sizeof f[3], " loss %s", loss);
    snprintf(f[4], sizeof f[4], " | %s tok/s", tps);
    snprintf(f[5], sizeof f[5], " | %s < %s", el, left);
    snprintf(f[6], sizeof f[6], " | %s", valid);
    static const int priority[7] = {0, 6, 4, 1, 5, 3, 2}; /* per field */
    int cols = term_width() - 1, used = 0, on[7] = {0};
    for (int p = 0; p < 7; p++)
        for (int i = 0; i < 7; i++)
            if (priority[i] == p && used + (int)strlen(f[i]) <= cols) {
                on[i] = 1;
                used += (int)strlen(f[i]);
            }
    fputs("\r\033[K", stderr);
    for (int i = 0; i < 7; i++)
        if (on[i])
            fputs(f[i], stderr);
    if (final)
        fputc('\n', stderr);
    pr->bar_shown = !final;
    fflush(stderr);
}

static void on_event(const lstm_event *ev, void *arg) {
    progress *pr = arg;
    log_event(pr, ev);
    if (ev->type == LSTM_EV_VALID)
        pr->best_saved |= ev->best; /* --out was written before the event */
    if (ev->type == LSTM_EV_END && ev->message)
        pr->interrupted = strncmp(ev->message, "interrupted", 11) == 0;
    if (pr->quiet)
        return;
    switch (ev->type) {
    case LSTM_EV_START:
        if (ev->message)
            fprintf(stderr, "%s\n", ev->message);
        break;
    case LSTM_EV_TRAIN:
        pr->loss = ev->loss;
        /* smoothed: one interval's rate swings with the batch lengths */
        pr->tps = isfinite(pr->tps) ? 0.7 * pr->tps + 0.3 * ev->tokens_per_s : ev->tokens_per_s;
        if (pr->tty || ev->elapsed - pr->last_plain >= 10) {
            show(pr, ev, 0);
            pr->last_plain = ev->elapsed;
        }
        break;
    case LSTM_EV_VALID:
        pr->last_valid = ev->value;
        pr->metric = ev->metric;
        pr->have_valid = 1;
        pr->last_best = ev->best;
        if (pr->tty) {
            show(pr, ev, 1);
        } else {
            fprintf(stderr, "epoch %d step %ld: valid %s %.4f (loss %.4f)%s\n", ev->epoch,
                    ev->step, ev->metric, ev->value, ev->loss, ev->best ? ", best so far" : "");
            pr->last_plain = ev->elapsed;
        }
        break;
    case LSTM_EV_END:
        if (pr->tty && pr->bar_shown)
            fputc('\n', stderr);
        if (ev->metric)
            fprintf(stderr, "%s after %.0f s, %ld steps: best valid %s %.4f\n", ev->message,
                    ev->elapsed, ev->step, ev->metric, ev->value);
        else
            fprintf(stderr, "%s after %.0f s, %ld steps\n", ev->message, ev->elapsed, ev->step);
        break;
    }
}

/* The signal that asked the run to stop (SIGINT, SIGTERM), or 0. The
 * program's, not the library's: a handler can only reach a global. */
static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) { stop_signal = sig; }

static int should_stop(void *arg) {
    (void)arg;
    return stop_signal != 0;
}

/* SIGINT and SIGTERM end the run at the end of the step under way; a
 * second one ends the program at once (SA_RESETHAND). */
static void catch_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* Before any data is read: can `path` (given as --OPT) be written? Its
 * folder must exist and be writable, and it must not be a folder. */
static int check_writable(const char *opt, const char *path) {
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return cli_error(V, "--%s %s: is a folder", opt, path);
    char *copy = strdup(path);
    if (!copy)
        return cli_error(V, "out of memory");
    const char *dir = dirname(copy); /* POSIX: "." for a bare name */
    int rc = 0;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        rc = cli_error(V, "--%s %s: the folder %s does not exist", opt, path, dir);
    else if (access(dir, W_OK | X_OK) != 0)
        rc = cli_error(V, "--%s %s: the folder %s is not writable", opt, path, dir);
    free(copy);
    return rc;
}

/* 1 when --name (or --name=...) is among the arguments. */
static int given(int argc, char **argv, const char *name) {
    size_t n = strlen(name);
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], "--", 2) == 0 && strncmp(argv[i] + 2, name, n) == 0 &&
            (argv[i][2 + n] == 0 || argv[i][2 + n] == '='))
            return 1;
    return 0;
}

/* --resume continues the run a checkpoint holds: an option given with it
 * that says otherwise would be silently ignored, so the run is refused
 * with the names of such options (--time-limit may change: it replaces the
 * checkpoint's). mc, tc: the options as given over the task's defaults. */
static int check_resume(int argc, char **argv, const lstm_model_config *mc,
                        const lstm_train_config *tc) {
    lstm_model_config cm;
    lstm_train_config ct = *tc;
    lstm_error err;
    if (lstm_checkpoint_config(tc->resume, &cm, &ct, &err))
        return cli_error(V, "--resume: %s", err.msg);
    /* option name, differs; what the checkpoint holds (for the message) */
    struct {
        const char *opt;
        int differs;
        double was;
    } o[] = {
        {"layers", mc->layers != cm.layers, cm.layers},
        {"hidden", mc->hidden != cm.hidden, cm.hidden},
        {"proj", mc->proj != cm.proj, cm.proj},
        {"embedding", mc->embedding != cm.embedding, cm.embedding},
        {"bidirectional", mc->bidirectional != cm.bidirectional, cm.bidirectional},
        {"dropout", mc->dropout != cm.dropout, cm.dropout},
        {"vocab-size", mc->vocab_size != cm.vocab_size, cm.vocab_size},
        {"min-count", mc->min_count != cm.min_count, cm.min_count},
        {"tokens", mc->byte_tokens != cm.byte_tokens, cm.byte_tokens},
        {"max-length", mc->max_length != cm.max_length, cm.max_length},
        {"no-char-features", mc->char_features != cm.char_features, cm.char_features},
        {"suffixes", (mc->suffixes ? mc->suffixes : 3) != (cm.suffixes ? cm.suffixes : 3),
         cm.suffixes ? cm.suffixes : 3},
        {"prefixes", mc->prefixes != cm.prefixes, cm.prefixes},
        {"forget-bias", 1, NAN}, /* initialisation only: nothing to continue */
        {"peephole", mc->peephole != cm.peephole, cm.peephole},
        {"cell-clip", mc->cell_clip != cm.cell_clip, cm.cell_clip},
        {"input-forget", mc->input_forget != cm.input_forget, cm.input_forget},
        {"crf", mc->crf != cm.crf, cm.crf},
        {"epochs", tc->epochs != ct.epochs, ct.epochs},
        {"batch", tc->batch != ct.batch, ct.batch},
        {"seq-len", tc->seq_len != ct.seq_len, ct.seq_len},
        {"seed", tc->seed != ct.seed, (double)ct.seed},
        {"optimizer", tc->optim.type != ct.optim.type, ct.optim.type},
        {"lr", tc->optim.lr != ct.optim.lr, ct.optim.lr},
        {"momentum", tc->optim.momentum != ct.optim.momentum, ct.optim.momentum},
        {"weight-decay", tc->optim.weight_decay != ct.optim.weight_decay, ct.optim.weight_decay},
        {"beta2", tc->optim.beta2 != ct.optim.beta2, ct.optim.beta2},
        {"lazy-adam", tc->optim.lazy != ct.optim.lazy, ct.optim.lazy},
        {"schedule", tc->schedule != ct.schedule, ct.schedule},
        {"lr-min", tc->lr_min != ct.lr_min, ct.lr_min},
        {"decay", tc->decay != ct.decay, ct.decay},
        {"warmup", tc->warmup != ct.warmup, ct.warmup},
        {"clip", tc->clip != ct.clip, ct.clip},
        {"ema", tc->ema != ct.ema, ct.ema},
        {"patience", tc->patience != ct.patience, ct.patience},
        {"valid-every", tc->valid_every != ct.valid_every, ct.valid_every},
    };
    char names[512] = "";
    for (size_t i = 0; i < sizeof o / sizeof o[0]; i++)
        if (given(argc, argv, o[i].opt) && o[i].differs) {
            size_t n = strlen(names);
            if (isfinite(o[i].was))
                snprintf(names + n, sizeof names - n, "%s --%s (the checkpoint's: %g)",
                         n ? "," : "", o[i].opt, o[i].was);
            else
                snprintf(names + n, sizeof names - n, "%s --%s", n ? "," : "", o[i].opt);
        }
    if (names[0])
        return cli_error(V, "--resume %s continues the run it holds; these options contradict it:"
                            "%s (leave them out to resume; --time-limit may change)",
                         tc->resume, names);
    return 0;
}

int cmd_train(int argc, char **argv) {
    if (argc < 2 || argv[1][0] == '-') {
        if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
            printf("usage: lstm train lm|classify|tag --train FILE [--valid FILE] --out MODEL "
                   "[options]\n\n'lstm train TASK --help' lists the options and defaults of a task.\n");
            return 0;
        }
        return cli_error(V, "expected a task: lm, classify or tag (see lstm train --help)");
    }
    int task = lstm_task_parse(argv[1]);
    if (task < 0)
        return cli_error(V, "unknown task '%s': expected lm, classify or tag", argv[1]);
    lstm_model_config mc = lstm_model_defaults((lstm_task)task);
    lstm_train_config tc = lstm_train_defaults((lstm_task)task);
    const char *train_path = NULL, *valid_path = NULL, *out = NULL, *log_path = NULL;
    const char *optimizer = NULL, *schedule = NULL, *tokens = NULL, *precision = "auto";
    double valid_portion = 0.05;
    int threads = 0, quiet = 0, epochs = -1, no_char = 0, seed = 1, log_append = 0;
    int no_overlap = 0;
    float weight_decay = -1, momentum = -1, beta2 = -1;
    int lazy = -1;
    cli_opt opts[] = {
        {"train", OPT_STR, &train_path, "FILE", "training data (required)"},
        {"valid", OPT_STR, &valid_path, "FILE", "validation data (default: hold out --valid-portion)"},
        {"valid-portion", OPT_DOUBLE, &valid_portion, "P", "share of the training data held out when there is no --valid (0.05)"},
        {"out", OPT_STR, &out, "MODEL", "where the model that did best on valid goes, written at every new best (required)"},
        {"time-limit", OPT_DOUBLE, &tc.time_limit, "SECONDS", "stop in time (validation included); without --epochs, train until then"},
        {"epochs", OPT_INT, &epochs, "N", "passes over the training data"},
        {"seed", OPT_INT, &seed, "S", "seed of every random choice (1)"},
        {"threads", OPT_INT, &threads, "N", "threads (default: all processors)"},
        {"precision", OPT_STR, &precision, "auto|fp32|bf16", "products in bfloat16 (float sums; validation in float): auto = where the processor has AVX-512 BF16"},
        {"log", OPT_STR, &log_path, "FILE", "write the metrics as JSON lines (for lstm plot); a new file"},
        {"log-append", OPT_FLAG, &log_append, NULL, "add to the --log file instead (lstm plot draws each run apart; --resume always adds)"},
        {"checkpoint", OPT_STR, &tc.checkpoint, "FILE", "save the whole training state at each validation"},
        {"checkpoint-every", OPT_DOUBLE, &tc.checkpoint_every, "SECONDS", "and at least this often (300)"},
        {"resume", OPT_STR, &tc.resume, "FILE", "continue from a checkpoint (same data)"},
        {"quiet", OPT_FLAG, &quiet, NULL, "no progress output"},
        {"no-overlap", OPT_FLAG, &no_overlap, NULL, "under mpirun: sum the gradients after the backward, not during it"},
        {"layers", OPT_INT, &mc.layers, "N", "LSTM layers"},
        {"hidden", OPT_INT, &mc.hidden, "H", "LSTM hidden size (per direction)"},
        {"proj", OPT_INT, &mc.proj, "P", "LSTM projection size (0: none)"},
        {"embedding", OPT_INT, &mc.embedding, "E", "embedding size"},
        {"bidirectional", OPT_INT, &mc.bidirectional, "0|1", "a bidirectional LSTM (classify, tag)"},
        {"dropout", OPT_FLOAT, &mc.dropout, "P", "dropout on embeddings, between layers, before the decoder"},
        {"vocab-size", OPT_INT, &mc.vocab_size, "N", "most frequent words kept (classify, tag; 0: all)"},
        {"min-count", OPT_INT, &mc.min_count, "N", "rarer words become <unk> (classify, tag)"},
        {"tokens", OPT_STR, &tokens, "word|byte", "classify: what a token is"},
        {"max-length", OPT_INT, &mc.max_length, "N", "classify: tokens kept from the start of a text (0: all)"},
        {"no-char-features", OPT_FLAG, &no_char, NULL, "tag: the word embedding only, no suffix/shape features"},
        {"suffixes", OPT_INT, &mc.suffixes, "N", "tag: embed the last 1 to N letters (1-5; files before it: 3)"},
        {"prefixes", OPT_INT, &mc.prefixes, "N", "tag: embed the first 1 to N letters (0-4; 0: none, as files before it)"},
        {"crf", OPT_INT, &mc.crf, "0|1", "tag: score whole tag sequences with a linear-chain CRF"},
        {"forget-bias", OPT_FLOAT, &mc.forget_bias, "F", "added to the forget gates' initial bias"},
        {"peephole", OPT_FLAG, &mc.peephole, NULL, "ONNX's peephole connections: i, f read c_{t-1}, o reads c_t"},
        {"cell-clip", OPT_FLOAT, &mc.cell_clip, "C", "ONNX's clip: the gates' pre-activations clamped to [-C, C] (0: off)"},
        {"input-forget", OPT_FLAG, &mc.input_forget, NULL, "ONNX's input_forget: coupled gates, f = 1 - i"},
        {"batch", OPT_INT, &tc.batch, "B", "batch size (lm: parallel streams)"},
        {"seq-len", OPT_INT, &tc.seq_len, "T", "lm: steps of truncated backpropagation"},
        {"optimizer", OPT_STR, &optimizer, "NAME", "sgd, adam, adamw, rmsprop, adadelta (another than the default starts from PyTorch's settings for it)"},
        {"lr", OPT_FLOAT, &tc.optim.lr, "R", "learning rate"},
        {"momentum", OPT_FLOAT, &momentum, "M", "sgd, rmsprop momentum"},
        {"weight-decay", OPT_FLOAT, &weight_decay, "W", "weight decay"},
        {"beta2", OPT_FLOAT, &beta2, "B", "adam, adamw: the second moment's decay"},
        {"lazy-adam", OPT_INT, &lazy, "0|1", "adam, adamw: leave the embedding rows a batch did not use as they are (LazyAdam)"},
        {"schedule", OPT_STR, &schedule, "S", "constant, cosine, step (decay per epoch), exponential"},
        {"lr-min", OPT_FLOAT, &tc.lr_min, "F", "cosine: the final rate as a fraction of --lr"},
        {"decay", OPT_FLOAT, &tc.decay, "G", "step/exponential: factor per epoch"},
        {"warmup", OPT_LONG, &tc.warmup, "STEPS", "linear warm-up"},
        {"clip", OPT_FLOAT, &tc.clip, "NORM", "clip the gradients' global norm (0: off)"},
        {"ema", OPT_FLOAT, &tc.ema, "DECAY", "validate and save a moving average of the weights with this decay per step (0: off)"},
        {"patience", OPT_INT, &tc.patience, "N", "stop after N validations without a new best (0: never)"},
        {"valid-every", OPT_LONG, &tc.valid_every, "STEPS", "validate every so many steps (0: at the end of each epoch)"},
        OPT_END};
    char usage[128], about[1024];
    snprintf(usage, sizeof usage, "lstm train %s --train FILE [--valid FILE] --out MODEL [options]",
             argv[1]);
    snprintf(about, sizeof about,
             "Trains %s %s model and writes the one that did best on the validation data.\n"
             "Defaults: %d layer(s) of %d%s, embedding %d, dropout %.2g; batch %d%s, Adam lr %g\n"
             "(beta2 %g), cosine decay to %g x lr, clipping at %g, %d epochs%s\n"
             "(with --time-limit and no --epochs: until the time is up).",
             task == LSTM_TASK_LM ? "an" : "a", argv[1], mc.layers, mc.hidden,
             mc.bidirectional ? " per direction" : "", mc.embedding, (double)mc.dropout, tc.batch,
             task == LSTM_TASK_LM ? " streams" : "", (double)tc.optim.lr, (double)tc.optim.beta2,
             (double)tc.lr_min, (double)tc.clip, tc.epochs, tc.patience ? " with early stopping" : "");
    if (tc.ema > 0)
        snprintf(about + strlen(about), sizeof about - strlen(about),
                 "\nThe model validated and saved: the weights' moving average (--ema %g).",
                 (double)tc.ema);
    if (tc.optim.lazy)
        snprintf(about + strlen(about), sizeof about - strlen(about),
                 "\nAdam leaves the embedding rows a batch did not use as they are (--lazy-adam 1).");
    if (task == LSTM_TASK_CLASSIFY)
        snprintf(about + strlen(about), sizeof about - strlen(about),
                 "\nThe first %d tokens of each text.", mc.max_length);
    if (task == LSTM_TASK_TAG)
        snprintf(about + strlen(about), sizeof about - strlen(about),
                 "\nBeside the word: its last 1 to %d letters, its shape, its first 1 to %d "
                 "letters (--suffixes, --prefixes).", mc.suffixes ? mc.suffixes : 3, mc.prefixes);
    if (task == LSTM_TASK_LM)
        snprintf(about + strlen(about), sizeof about - strlen(about),
                 "\nTruncated backpropagation over %d steps, validation every %ld steps.",
                 tc.seq_len, tc.valid_every);
    static const char *formats[] = {
        "Data: any file, as bytes.",
        "Data: fastText lines \"__label__NAME text\", or a folder DIR/NAME/*.txt.",
        ("Data: word<TAB>tag lines, a blank line after each sentence; one tab a line,\n"
         "spaces around either field are not part of it (else the line is refused).")};
    snprintf(about + strlen(about), sizeof about - strlen(about),
             "\n%s\nA UTF-8 byte-order mark at the start of a file is skipped.", formats[task]);
    const char *pos[1];
    int npos;
    int r = cli_parse(V, usage, about, opts, argc - 1, argv + 1, pos, 0, &npos);
    if (r)
        return r == 2 ? 0 : 1;
    if (!train_path || !out)
        return cli_error(V, "--train and --out are required (see lstm train %s --help)", argv[1]);
    if (epochs >= 0)
        tc.epochs = epochs;
    else if (tc.time_limit > 0)
        tc.epochs = 0; /* until the time limit */
    tc.seed = (uint64_t)seed;
    if (no_char) /* the word alone: no affix tables either */
        mc.char_features = 0, mc.suffixes = 0, mc.prefixes = 0;
    for (int k = 0; k < 2; k++) { /* --suffixes, --prefixes */
        const char *name = k ? "prefixes" : "suffixes";
        int v = k ? mc.prefixes : mc.suffixes, lo = k ? 0 : 1, hi = k ? 4 : 5;
        if (!given(argc - 1, argv + 1, name))
            continue;
        if (task != LSTM_TASK_TAG)
            return cli_error(V, "--%s is the tagger's (lstm train tag), not %s's", name, argv[1]);
        if (no_char)
            return cli_error(V, "--%s adds to the suffix and shape features: it cannot go "
                                "with --no-char-features", name);
        if (v < lo || v > hi)
            return cli_error(V, "--%s must be %d to %d, not %d", name, lo, hi, v);
    }
    if (given(argc - 1, argv + 1, "crf")) {
        if (task != LSTM_TASK_TAG)
            return cli_error(V, "--crf is the tagger's (lstm train tag), not %s's", argv[1]);
        if (mc.crf != 0 && mc.crf != 1)
            return cli_error(V, "--crf must be 0 or 1, not %d", mc.crf);
    }
    if (tokens) {
        if (strcmp(tokens, "word") && strcmp(tokens, "byte"))
            return cli_error(V, "--tokens must be word or byte, not '%s'", tokens);
        mc.byte_tokens = strcmp(tokens, "byte") == 0;
    }
    if (optimizer) {
        int o = lstm_optimizer_parse(optimizer);
        if (o < 0)
            return cli_error(V, "unknown optimizer '%s': sgd, adam, adamw, rmsprop or adadelta",
                             optimizer);
        /* another optimizer starts from PyTorch's defaults for it (an --lr
         * given is kept); naming the task's own keeps its tuned settings */
        if ((lstm_optimizer)o != tc.optim.type) {
            float lr = tc.optim.lr;
            tc.optim = lstm_optim_defaults((lstm_optimizer)o);
            if (given(argc - 1, argv + 1, "lr"))
                tc.optim.lr = lr;
        }
    }
    if (momentum >= 0)
        tc.optim.momentum = momentum;
    if (weight_decay >= 0)
        tc.optim.weight_decay = weight_decay;
    if (beta2 >= 0)
        tc.optim.beta2 = beta2;
    if (lazy != -1) {
        if (lazy != 0 && lazy != 1)
            return cli_error(V, "--lazy-adam must be 0 or 1, not %d", lazy);
        tc.optim.lazy = lazy;
    }
    if (schedule) {
        static const char *names[] = {"constant", "step", "exponential", "cosine"};
        int found = -1;
        for (int i = 0; i < 4; i++)
            if (strcmp(schedule, names[i]) == 0)
                found = i;
        if (found < 0)
            return cli_error(V, "unknown schedule '%s': constant, cosine, step or exponential",
                             schedule);
        tc.schedule = (lstm_schedule_type)found;
    }
    if (!(valid_portion > 0 && valid_portion < 1))
        return cli_error(V, "--valid-portion must be between 0 and 1");
    if (log_append && !log_path)
        return cli_error(V, "--log-append goes with --log FILE");

    /* several processes under mpirun: one data-parallel job (tools/mpi.c) */
    lstm_comm comm = {.rank = 0, .size = 1};
    int mpi = cli_comm_start(&comm, NULL, NULL);
    if (mpi == -2)
        return cli_error(V, "started as %d processes (mpirun), but this lstm was built without "
                            "MPI: each would train a model of its own. Rebuild with MPI "
                            "(apt-get install libopenmpi-dev; make MPI=1), or run one process",
                         cli_launched_ranks());
    if (mpi < 0)
        return cli_error(V, "started under mpirun, but MPI did not start");
    if (mpi > 0) {
        tc.comm = &comm;
        if (no_overlap)
            comm.start_allreduce_float = NULL, comm.progress = NULL, comm.wait_all = NULL;
        if (comm.rank != 0) { /* one voice, one writer: rank 0 */
            quiet = 1;
            log_path = NULL;
        }
    }
    /* the files the run will write, before hours of reading and training:
     * rank 0's alone (only it writes; other machines need not have the folders) */
    if ((comm.rank == 0 && (check_writable("out", out) ||
                            (tc.checkpoint && check_writable("checkpoint", tc.checkpoint)) ||
                            (log_path && check_writable("log", log_path)))) ||
        (tc.resume && check_resume(argc - 1, argv + 1, &mc, &tc))) {
        cli_comm_abort(&comm, 1);
        return 1;
    }

    lstm_error err;
    /* the numbers too, before the data (a resumed run takes the checkpoint's) */
    if (!tc.resume && lstm_train_config_check(&tc, &err)) {
        cli_error(V, "%s", err.msg);
        cli_comm_abort(&comm, 1);
        return 1;
    }
    int status = 1;
    lstm_dataset *train = NULL, *valid = NULL, *rest = NULL;
    lstm_ctx *ctx = NULL, *valid_ctx = NULL;
    lstm_model *model = NULL;
    progress pr = {0};
    if (!(train = lstm_dataset_read((lstm_task)task, train_path, &err))) {
        cli_error(V, "%s", err.msg);
        goto done;
    }
    if (valid_path) {
        if (!(valid = lstm_dataset_read((lstm_task)task, valid_path, &err))) {
            cli_error(V, "%s", err.msg);
            goto done;
        }
    } else {
        if (lstm_dataset_split(train, valid_portion, tc.seed, &rest, &valid, &err)) {
            cli_error(V, "%s: cannot hold out a validation part: %s", train_path, err.msg);
            goto done;
        }
        lstm_dataset_free(train);
        train = rest;
        rest = NULL;
    }
    /* a resumed run adds to the log of the run it resumes */
    if (log_path && !(pr.log = open_log(log_path, log_append || tc.resume))) {
        cli_error(V, "%s: cannot open the log for writing", log_path);
        goto done;
    }
    pr.task = argv[1];
    pr.tty = isatty(2);
    pr.quiet = quiet;
    pr.epochs = tc.epochs;
    pr.time_limit = tc.time_limit;
    pr.loss = pr.tps = NAN;
    tc.on_event = on_event;
    tc.event_arg = &pr;
    tc.out = out;
    tc.should_stop = should_stop;
    catch_signals();
    if (!(ctx = cli_precision_ctx(V, threads, precision, &valid_ctx)))
        goto done;
    tc.valid_ctx = valid_ctx;
    if (!quiet)
        fprintf(stderr, "training %s on %s (%zu %ss), validating on %s (%zu), %d thread(s), "
                        "%s kernels%s%s%s\n",
                argv[1], lstm_dataset_name(train), lstm_dataset_count(train),
                lstm_task_example(lstm_dataset_task(train)),
                lstm_dataset_name(valid), lstm_dataset_count(valid), lstm_ctx_threads(ctx),
                lstm_ctx_kernels(ctx), valid_ctx ? " (validation: " : "",
                valid_ctx ? lstm_ctx_kernels(valid_ctx) : "", valid_ctx ? ")" : "");
    if (!(model = lstm_train(&mc, &tc, ctx, train, valid, &err))) {
        if (pr.tty && pr.bar_shown)
            fputc('\n', stderr);
        if (pr.best_saved)
            cli_error(V, "%s; the best model so far is in %s", err.msg, out);
        else
            cli_error(V, "%s", err.msg);
        goto done;
    }
    /* the model returned is the best one, which --out already holds when a
     * validation chose it: no second write (under mpirun, a signal gives
     * the ranks about a second before SIGKILL) */
    if (comm.rank == 0 && !pr.best_saved && lstm_model_save(model, out, &err)) {
        cli_error(V, "%s", err.msg);
        goto done;
    }
    status = 0;
    /* the shell's convention: 128 + the signal, when the run ended on it (a
     * signal during the last validation or save leaves a finished run) */
    if (stop_signal && pr.interrupted) { /* rank 0 knows; the other ranks exit 0 */
        status = 128 + stop_signal;
        if (comm.rank == 0)
            fprintf(stderr, "lstm train: stopped by %s: %s is in %s%s%s\n",
                stop_signal == SIGINT ? "SIGINT" : "SIGTERM",
                pr.best_saved ? "the best model so far" : "the model so far (no validation chose it)", out,
                tc.checkpoint ? ", the training state in " : "",
                tc.checkpoint ? tc.checkpoint : "");
    } else if (!quiet) {
        fprintf(stderr, "model written to %s\n", out);
    }
done:
    if (status == 1 && comm.size > 1) {
        /* a rank that fails ends the whole job, at once, saying which */
        fprintf(stderr, "lstm train: rank %d of %d failed (above): ending the job\n", comm.rank,
                comm.size);
        cli_comm_abort(&comm, 1);
    }
    if (pr.log)
        fclose(pr.log);
    lstm_model_free(model);
    lstm_ctx_free(ctx);
    lstm_ctx_free(valid_ctx);
    lstm_dataset_free(train);
    lstm_dataset_free(valid);
    lstm_dataset_free(rest);
    cli_comm_end(&comm);
    return status;
}
