/* cli.c - option parsing and messages for the lstm program. */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int cli_error(const char *verb, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lstm %s: ", verb);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

static void print_help(const char *verb, const char *usage, const char *about,
                       const cli_opt *opts) {
    printf("usage: %s\n", usage);
    if (about && *about)
        printf("\n%s\n", about);
    if (opts && opts[0].name) {
        printf("\noptions:\n");
        for (const cli_opt *o = opts; o->name; o++) {
            char left[64];
            if (o->type == OPT_FLAG)
                snprintf(left, sizeof left, "--%s", o->name);
            else
                snprintf(left, sizeof left, "--%s %s", o->name, o->arg ? o->arg : "X");
            printf("  %-26s %s\n", left, o->help ? o->help : "");
        }
    }
    printf("  %-26s %s\n", "--help", "show this help");
    (void)verb;
}

static int parse_value(const char *verb, const cli_opt *o, const char *v) {
    char *end;
    errno = 0;
    switch (o->type) {
    case OPT_INT:
    case OPT_LONG: {
        long long x = strtoll(v, &end, 10);
        if (end == v || *end || errno || (o->type == OPT_INT && (x < INT_MIN || x > INT_MAX)))
            return cli_error(verb, "--%s expects an integer, not '%s'", o->name, v);
        if (o->type == OPT_INT)
            *(int *)o->dst = (int)x;
        else
            *(long *)o->dst = (long)x;
        return 0;
    }
    case OPT_FLOAT:
    case OPT_DOUBLE: {
        double x = strtod(v, &end);
        if (end == v || *end || errno || !isfinite(x))
            return cli_error(verb, "--%s expects a number, not '%s'", o->name, v);
        if (o->type == OPT_FLOAT)
            *(float *)o->dst = (float)x;
        else
            *(double *)o->dst = x;
        return 0;
    }
    case OPT_STR:
        *(const char **)o->dst = v;
        return 0;
    case OPT_FLAG:
        break;
    }
    return 0;
}

int cli_parse(const char *verb, const char *usage, const char *about, const cli_opt *opts,
              int argc, char **argv, const char **pos, int maxpos, int *npos) {
    *npos = 0;
    int only_positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_positional || a[0] != '-' || a[1] == 0) { /* "-" is a file: stdin */
            if (*npos >= maxpos)
                return cli_error(verb, "unexpected argument '%s' (see lstm %s --help)", a, verb);
            pos[(*npos)++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_positional = 1;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_help(verb, usage, about, opts);
            return 2;
        }
        if (a[1] != '-')
            return cli_error(verb, "unknown option '%s' (options start with --)", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const cli_opt *o = NULL;
        for (const cli_opt *q = opts; q && q->name; q++)
            if (strlen(q->name) == len && strncmp(q->name, name, len) == 0)
                o = q;
        if (!o)
            return cli_error(verb, "unknown option '--%.*s' (see lstm %s --help)", (int)len, name,
                             verb);
        if (o->type == OPT_FLAG) {
            if (eq)
                return cli_error(verb, "--%s takes no value", o->name);
            *(int *)o->dst = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v)
            return cli_error(verb, "--%s needs a value (%s)", o->name, o->arg ? o->arg : "X");
        if (parse_value(verb, o, v))
            return 1;
    }
    return 0;
}

int cli_nproc(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

lstm_ctx *cli_ctx(const char *verb, int threads) {
    lstm_error err;
    lstm_ctx_config c = {threads > 0 ? threads : cli_nproc(), LSTM_KERNELS_AUTO, LSTM_BLAS_AUTO};
    const char *k = getenv("LSTM_KERNELS");
    if (k && *k) {
        static const char *names[] = {"auto", "reference", "generic", "avx2", "avx512",
                                      "avx512bf16"};
        int found = 0;
        for (int i = 0; i < 6; i++)
            if (strcmp(k, names[i]) == 0) {
                c.kernels = (lstm_kernels)i;
                found = 1;
            }
        if (!found) {
            cli_error(verb, "LSTM_KERNELS=%s: expected auto, reference, generic, avx2, avx512 or avx512bf16",
                      k);
            return NULL;
        }
    }
    const char *b = getenv("LSTM_BLAS");
    if (b && *b) {
        if (strcmp(b, "on") == 0)
            c.blas = LSTM_BLAS_ON;
        else if (strcmp(b, "off") == 0)
            c.blas = LSTM_BLAS_OFF;
        else if (strcmp(b, "auto") != 0) {
            cli_error(verb, "LSTM_BLAS=%s: expected auto, on or off", b);
            return NULL;
        }
    }
    lstm_ctx *ctx = lstm_ctx_create(&c, &err);
    if (!ctx)
        cli_error(verb, "%s", err.msg);
    return ctx;
}

lstm_ctx *cli_precision_ctx(const char *verb, int threads, const char *precision,
                            lstm_ctx **eval) {
    int bf16;
    lstm_ctx_config c = {threads > 0 ? threads : cli_nproc(), LSTM_KERNELS_AVX512_BF16,
                         LSTM_BLAS_AUTO};
    lstm_error err;
    if (eval)
        *eval = NULL;
    if (strcmp(precision, "fp32") == 0) {
        bf16 = 0;
    } else if (strcmp(precision, "bf16") == 0) {
        bf16 = 1;
    } else if (strcmp(precision, "auto") == 0) {
        const char *k = getenv("LSTM_KERNELS");
        lstm_ctx_config one = c; /* a probe: no worker threads */
        one.threads = 1;
        lstm_ctx *probe = k && *k ? NULL : lstm_ctx_create(&one, NULL);
        bf16 = probe != NULL;
        lstm_ctx_free(probe);
    } else {
        cli_error(verb, "--precision %s: expected auto, fp32 or bf16", precision);
        return NULL;
    }
    if (!bf16)
        return cli_ctx(verb, threads);
    lstm_ctx *ctx = lstm_ctx_create(&c, &err);
    if (!ctx) {
        cli_error(verb, "--precision bf16: %s", err.msg);
        return NULL;
    }
    if (eval && !(*eval = cli_ctx(verb, threads))) {
        lstm_ctx_free(ctx);
        return NULL;
    }
    return ctx;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The prefix under which the file holds weight_ih_l0 ("" or "lstm." ...),
 * or NULL (after an error message) when there is none or more than one. */
const char *cli_lstm_prefix(const char *V, const lstm_st *st, char *buf, size_t n) {
    lstm_error err;
    if (lstm_rnn_find_prefix(st, buf, n, &err)) {
        cli_error(V, "%s", err.msg);
        return NULL;
    }
    return buf;
}

int cli_int8_part(const lstm_params *p, const char *name) {
    size_t len = strlen(name);
    for (int k = 0; k < 2; k++) {
        const char *suf = k ? ".scale" : ".int8";
        size_t sl = strlen(suf);
        char base[512];
        if (len > sl && len - sl < sizeof base && strcmp(name + len - sl, suf) == 0) {
            memcpy(base, name, len - sl);
            base[len - sl] = 0;
            if (lstm_params_is_int8(p, lstm_params_find(p, base)))
                return 1;
        }
    }
    return 0;
}
