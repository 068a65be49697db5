/* main.c - the lstm program: dispatches to one verb per command. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    verb_fn fn;
    const char *summary;
} verbs[] = {
    {"forward", cmd_forward, "run an nn.LSTM state_dict on inputs from a safetensors file"},
    {"train", cmd_train, "train a language model, a classifier or a tagger"},
    {"eval", cmd_eval, "a trained model's figures on labelled data"},
    {"predict", cmd_predict, "label texts (classify) or tag sentences (tag)"},
    {"sample", cmd_sample, "generate text from a character language model"},
    {"quantize", cmd_quantize, "write a model or an nn.LSTM state_dict with int8 weights"},
    {"bench", cmd_bench, "time training, inference or streaming of an LSTM"},
    {"convert", cmd_convert, "import an ONNX model of LSTM nodes as an nn.LSTM state_dict"},
    {"export", cmd_export, "write an nn.LSTM state_dict as an ONNX model"},
    {"export-c", cmd_export_c, "write a model as C source for the embeddable runtime"},
    {"plot", cmd_plot, "draw a training log's loss and metric curves as an SVG"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: lstm VERB [options] [arguments]\n\n"
               "LSTM networks in C, numerically PyTorch's nn.LSTM.\n\nverbs:\n");
    for (size_t i = 0; i < sizeof verbs / sizeof *verbs; i++)
        fprintf(f, "  %-10s %s\n", verbs[i].name, verbs[i].summary);
    fprintf(f, "\n'lstm VERB --help' describes a verb; 'lstm --version' prints the version.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        /* what a default context chooses on this processor */
        lstm_ctx_config cc = {1, LSTM_KERNELS_AUTO, LSTM_BLAS_AUTO},
                        bf = {1, LSTM_KERNELS_AVX512_BF16, LSTM_BLAS_AUTO};
        lstm_ctx *ctx = lstm_ctx_create(&cc, NULL), *bctx = lstm_ctx_create(&bf, NULL);
        printf("lstm %s (on this processor: %s kernels, %s matrix products, bfloat16 training %s; "
               "BLAS linked: %s)\n",
               LSTM_VERSION, ctx ? lstm_ctx_kernels(ctx) : "?", ctx ? lstm_ctx_gemm(ctx) : "?",
               bctx ? "available" : "not available", lstm_blas_name());
        lstm_ctx_free(ctx);
        lstm_ctx_free(bctx);
        return 0;
    }
    for (size_t i = 0; i < sizeof verbs / sizeof *verbs; i++)
        if (strcmp(argv[1], verbs[i].name) == 0)
            return verbs[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "lstm: unknown verb '%s'\n\n", argv[1]);
    usage(stderr);
    return 1;
}
