/* cmd_sample.c - lstm sample MODEL: text from a character language model,
 * one byte at a time with the state carried. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const char *V = "sample";

/* The prime goes out with the first sampled byte, so a prime the model
 * refuses leaves standard output empty. */
static void put(unsigned char b, void *arg) {
    const char **prime = arg;
    if (*prime) {
        fputs(*prime, stdout);
        *prime = NULL;
    }
    putchar(b);
}

int cmd_sample(int argc, char **argv) {
    const char *prime = "";
    int length = 500, top_k = 0, seed = 1, threads = 1;
    float temperature = 1;
    cli_opt opts[] = {
        {"prime", OPT_STR, &prime, "TEXT", "text the model reads first (and that is printed)"},
        {"length", OPT_INT, &length, "N", "bytes to draw (500)"},
        {"temperature", OPT_FLOAT, &temperature, "T", "divides the logits: < 1 safer, > 1 wilder (1)"},
        {"top-k", OPT_INT, &top_k, "K", "draw only among the K likeliest bytes (0: all)"},
        {"seed", OPT_INT, &seed, "S", "seed of the draws (1)"},
        {"threads", OPT_INT, &threads, "N", "threads (1)"},
        OPT_END};
    const char *pos[1];
    int npos;
    int r = cli_parse(V,
                      "lstm sample MODEL [--prime TEXT] [--length N] [--temperature T] [--top-k K] "
                      "[--seed S]",
                      "Writes text from a character language model (lstm train lm) to standard\n"
                      "output: the prime text, then the bytes it draws.",
                      opts, argc, argv, pos, 1, &npos);
    if (r)
        return r == 2 ? 0 : 1;
    if (npos != 1)
        return cli_error(V, "expected MODEL (see lstm sample --help)");
    if (length < 0 || !(temperature > 0) || top_k < 0)
        return cli_error(V, "--length and --top-k must be >= 0, --temperature > 0");
    lstm_error err;
    lstm_model *m = lstm_model_load(pos[0], &err);
    if (!m)
        return cli_error(V, "%s", err.msg);
    int status = 1;
    lstm_ctx *ctx = cli_ctx(V, threads);
    lstm_rng rng;
    lstm_rng_seed(&rng, (uint64_t)seed);
    if (ctx) {
        const char *pending = prime;
        if (lstm_model_sample(m, ctx, prime, strlen(prime), (size_t)length, temperature, top_k,
                              &rng, put, &pending, &err)) {
            if (!pending) /* an error after some text: end its line first */
                putchar('\n');
            fflush(stdout);
            cli_error(V, "%s: %s", pos[0], err.msg);
        } else {
            if (pending)
                fputs(pending, stdout);
            putchar('\n');
            status = 0;
        }
    }
    lstm_ctx_free(ctx);
    lstm_model_free(m);
    return status;
}
