/* cmd_bench.c - lstm bench: times training, inference and one-step
 * streaming of an LSTM with random weights, in PyTorch's vocabulary. */
#include "cli.h"

#include <jansson.h>
#include <math.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char *V = "bench";

/* A number for JSON: NaN and infinities (which JSON lacks) become null. */
static json_t *num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Multiply-adds times two of one forward over T steps (see --help). */
static double forward_flops(const lstm_rnn_config *c, int T, int B) {
    int D = c->bidirectional ? 2 : 1, H = c->hidden_size;
    int Ho = c->proj_size ? c->proj_size : H;
    double f = 0;
    for (int l = 0; l < c->num_layers; l++) {
        int In = l == 0 ? c->input_size : D * Ho;
        f += D * (2.0 * T * B * 4 * H * (In + Ho) + (c->proj_size ? 2.0 * T * B * Ho * H : 0));
    }
    return f;
}

int cmd_bench(int argc, char **argv) {
    const char *mode = "train", *precision = "fp32";
    int I = 256, H = 256, L = 1, B = 32, T = 50, bidir = 0, P = 0, threads = 2, repeat = 10;
    int json = 0;
    cli_opt opts[] = {
        {"mode", OPT_STR, &mode, "M", "train (forward + backward), infer (forward) or stream (one step)"},
        {"input", OPT_INT, &I, "I", "input size (256)"},
        {"hidden", OPT_INT, &H, "H", "hidden size (256)"},
        {"layers", OPT_INT, &L, "L", "layers (1)"},
        {"batch", OPT_INT, &B, "B", "batch size (32)"},
        {"steps", OPT_INT, &T, "T", "sequence length; for stream, steps averaged over (50)"},
        {"bidirectional", OPT_FLAG, &bidir, NULL, "two directions"},
        {"proj", OPT_INT, &P, "P", "projection size (0: none)"},
        {"threads", OPT_INT, &threads, "N", "threads (2)"},
        {"precision", OPT_STR, &precision, "fp32|bf16|int8", "bf16: products in bfloat16 (AVX-512 BF16), sums in float; int8: weights quantized as lstm quantize does, products in integers (infer, stream) (fp32)"},
        {"repeat", OPT_INT, &repeat, "R", "timed runs after the warm-up; the median is printed (10)"},
        {"json", OPT_FLAG, &json, NULL, "print one JSON object of the figures instead of the text"},
        OPT_END};
    const char *pos[1];
    int npos;
    int r = cli_parse(
        V, "lstm bench [--mode train|infer|stream] [--input I] [--hidden H] [--layers L] [--batch B]\n"
           "                  [--steps T] [--bidirectional] [--proj P] [--threads N] [--precision fp32|bf16|int8]\n"
           "                  [--repeat R] [--json]",
        "Times one nn.LSTM with random weights (fixed seed). train: forward and backward\n"
        "over the sequence with the input and all weight gradients (the work of\n"
        "y, _ = lstm(x); y.sum().backward()); infer: forward; stream: one step for a batch\n"
        "of B with the state carried, averaged over T steps. Prints the median\n"
        "milliseconds and GFLOP/s, counting 2*T*B*4H*(In+Hout) per layer and direction\n"
        "for a forward (plus 2*T*B*P*H with a projection), three times that for train.",
        opts, argc, argv, pos, 0, &npos);
    if (r)
        return r == 2 ? 0 : 1;
    struct rusage ru0; /* the process before any model or data exists */
    getrusage(RUSAGE_SELF, &ru0);
    int m = strcmp(mode, "train") == 0 ? 0 : strcmp(mode, "infer") == 0 ? 1
            : strcmp(mode, "stream") == 0 ? 2 : -1;
    if (m < 0)
        return cli_error(V, "--mode must be train, infer or stream, not '%s'", mode);
    if (T < 1 || B < 1 || repeat < 1 || (m == 2 && bidir))
        return cli_error(V, "need --steps, --batch, --repeat >= 1 (and stream is unidirectional)");

    lstm_error err;
    lstm_rnn_config cfg = lstm_rnn_config_default(I, H);
    cfg.num_layers = L;
    cfg.bidirectional = bidir;
    cfg.proj_size = P;
    lstm_params *p = lstm_params_create();
    lstm_rnn *rnn = lstm_rnn_create(&cfg, p, "", &err);
    if (!rnn || lstm_params_alloc(p, &err)) {
        lstm_params_free(p);
        return cli_error(V, "%s", err.msg);
    }
    /* int8: the weight matrices quantized (as lstm quantize writes them),
     * products in integers on the float context's int8 kernels */
    int int8 = strcmp(precision, "int8") == 0;
    if (int8 && m == 0) {
        lstm_rnn_free(rnn);
        lstm_params_free(p);
        return cli_error(V, "--precision int8 runs inference only: --mode infer or stream");
    }
    lstm_ctx *ctx = cli_precision_ctx(V, threads, int8 ? "fp32" : precision, NULL);
    if (!ctx) {
        lstm_rnn_free(rnn);
        lstm_params_free(p);
        return 1;
    }
    lstm_rng rng;
    lstm_rng_seed(&rng, 1);
    lstm_rnn_reset_parameters(rnn, p, &rng);
    for (int i = 0; int8 && i < lstm_params_count(p); i++)
        if (lstm_params_ndim(p, i) == 2 && lstm_params_quantize(p, i, &err)) {
            lstm_rnn_free(rnn);
            lstm_params_free(p);
            lstm_ctx_free(ctx);
            return cli_error(V, "%s", err.msg);
        }
    const char *kernels = int8 ? lstm_ctx_int8_kernels(ctx) : lstm_ctx_kernels(ctx);
    int D = bidir ? 2 : 1, Ho = P ? P : H;
    int Tx = m == 2 ? 1 : T;
    size_t nx = (size_t)Tx * B * I, ny = (size_t)Tx * B * D * Ho;
    float *x = malloc(sizeof(float) * nx), *y = malloc(sizeof(float) * ny);
    float *dy = malloc(sizeof(float) * ny), *dx = malloc(sizeof(float) * nx);
    float *h = calloc((size_t)L * B * Ho, sizeof(float)), *c = calloc((size_t)L * B * H, sizeof(float));
    double *times = malloc(sizeof(double) * repeat);
    if (!x || !y || !dy || !dx || !h || !c || !times)
        return cli_error(V, "out of memory");
    for (size_t i = 0; i < nx; i++)
        x[i] = lstm_rng_normal(&rng);
    for (size_t i = 0; i < ny; i++)
        dy[i] = 1; /* y.sum() */

    int status = 0;
    for (int it = -2; it < repeat && !status; it++) { /* two warm-up runs */
        double t0 = cli_now();
        if (m == 2) {
            for (int s = 0; s < T && !status; s++)
                status = lstm_rnn_step(rnn, ctx, p, B, x, h, c, y, &err) != LSTM_OK;
        } else {
            lstm_rnn_io io = {T, B, x, NULL, NULL, NULL, y, NULL, NULL};
            status = lstm_rnn_forward(rnn, ctx, p, &io, m == 0, &rng, &err) != LSTM_OK;
            if (!status && m == 0) {
                lstm_rnn_grads g = {.dy = dy, .dx = dx};
                status = lstm_rnn_backward(rnn, ctx, p, &g, &err) != LSTM_OK;
            }
        }
        double dt = cli_now() - t0;
        if (it >= 0)
            times[it] = m == 2 ? dt / T : dt;
    }
    if (status) {
        cli_error(V, "%s", err.msg);
    } else {
        qsort(times, (size_t)repeat, sizeof *times, cmp_double);
        double med = repeat % 2 ? times[repeat / 2] : (times[repeat / 2 - 1] + times[repeat / 2]) / 2;
        double flops = forward_flops(&cfg, m == 2 ? 1 : T, B) * (m == 0 ? 3 : 1);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        if (!json) {
            printf("%s I=%d H=%d L=%d%s%s B=%d T=%d threads=%d kernels=%s gemm=%s: %.3f ms%s, "
                   "%.1f GFLOP/s, peak RSS %.1f MiB (%.1f MiB above the start)\n",
                   mode, I, H, L, bidir ? " bidirectional" : "", P ? " proj" : "", B, T,
                   lstm_ctx_threads(ctx), kernels, lstm_ctx_gemm(ctx), med * 1e3,
                   m == 2 ? " per step" : "", flops / med * 1e-9, ru.ru_maxrss / 1024.0,
                   (ru.ru_maxrss - ru0.ru_maxrss) / 1024.0);
        } else { /* stdout holds this one JSON document and nothing else */
            json_t *o = json_pack(
                "{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:s, s:o, s:o, s:f, s:f}",
                "impl", "lstm", "mode", mode, "input", I, "hidden", H, "layers", L,
                "bidirectional", bidir, "proj", P, "batch", B, "steps", T, "threads",
                lstm_ctx_threads(ctx), "kernels", kernels, "gemm",
                lstm_ctx_gemm(ctx), "ms", num(med * 1e3), "gflops", num(flops / med * 1e-9),
                "peak_rss_mib", ru.ru_maxrss / 1024.0, "peak_rss_over_start_mib",
                (ru.ru_maxrss - ru0.ru_maxrss) / 1024.0);
            if (!o || json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER) || puts("") == EOF)
                status = cli_error(V, "cannot write the JSON to standard output");
            json_decref(o);
        }
    }
    free(x), free(y), free(dy), free(dx), free(h), free(c), free(times);
    lstm_rnn_free(rnn);
    lstm_params_free(p);
    lstm_ctx_free(ctx);
    return status;
}
