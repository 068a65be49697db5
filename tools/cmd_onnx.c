/* cmd_onnx.c - lstm convert (an ONNX model of LSTM nodes to an nn.LSTM
 * state_dict) and lstm export (an nn.LSTM state_dict to an ONNX model). */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef LSTM_HAVE_ONNX
#include "onnx.h"

static const char *axes_text(const onnx_io *io, char *buf, size_t n) {
    static const char *names[] = {"T", "B", "D", "H", "D*H", "I", "L*D"};
    buf[0] = 0;
    for (int d = 0; d < io->rank; d++)
        snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", d ? ", " : "(", names[io->axes[d]]);
    snprintf(buf + strlen(buf), n - strlen(buf), ")");
    return buf;
}

int cmd_convert(int argc, char **argv) {
    const char *V = "convert";
    int quiet = 0;
    cli_opt opts[] = {{"quiet", OPT_FLAG, &quiet, NULL, "print nothing on success"}, OPT_END};
    const char *pos[2];
    int npos;
    int r = cli_parse(V, "lstm convert MODEL.onnx OUT.safetensors",
                      "Imports the LSTM nodes of an ONNX model (opsets 7 to 22) as one nn.LSTM and\n"
                      "writes its state_dict (weight_ih_l0, ...), which lstm forward runs. Imports\n"
                      "directions forward, reverse and bidirectional, layout 0 and 1, sequence_lens,\n"
                      "initial_h/initial_c, B, P (peepholes), clip, input_forget and the default\n"
                      "activations; several LSTM nodes joined by Transpose/Reshape/Squeeze, with\n"
                      "states sliced per layer and Y_h/Y_c concatenated, as torch.onnx.export writes\n"
                      "for a stacked nn.LSTM. Anything else is refused, naming the node.",
                      opts, argc, argv, pos, 2, &npos);
    if (r)
        return r == 2 ? 0 : 1;
    if (npos != 2)
        return cli_error(V, "expected MODEL.onnx OUT.safetensors (see lstm convert --help)");
    char *buf;
    size_t len;
    lstm_error err;
    onnx_import imp;
    if (lstm_read_file(pos[0], &buf, &len, &err))
        return cli_error(V, "%s", err.msg);
    lstm_status s = onnx_import_lstm(buf, len, pos[0], NULL, 0, &imp, &err);
    free(buf);
    if (s)
        return cli_error(V, "%s", err.msg);
    if (lstm_st_writer_save(imp.weights, pos[1], &err)) {
        onnx_import_free(&imp);
        return cli_error(V, "%s", err.msg);
    }
    if (!quiet) {
        const lstm_rnn_config *c = &imp.cfg;
        printf("%s: opset %d%s%s: nn.LSTM(%d, %d, num_layers=%d%s)%s%s%s%s -> %s\n", pos[0], imp.opset,
               imp.producer[0] ? ", from " : "", imp.producer, c->input_size, c->hidden_size,
               c->num_layers, c->bidirectional ? ", bidirectional=True" : "",
               c->peephole ? " with peepholes" : "", c->clip > 0 ? ", clip" : "",
               c->input_forget ? ", input_forget" : "", c->reverse ? ", reverse" : "", pos[1]);
        char ax[64];
        static const char *roles[] = {"the sequence", "initial h (h0)", "initial c (c0)",
                                      "sequence lengths", "unused", "a weight"};
        for (int k = 0; k < imp.nin; k++)
            printf("  input  %-16s %s %s\n", imp.in[k].name, roles[imp.in[k].role],
                   imp.in[k].rank ? axes_text(&imp.in[k], ax, sizeof ax) : "");
        for (int k = 0; k < imp.nout; k++) {
            const onnx_io *o = &imp.out[k];
            printf("  output %-16s %s %s", o->name,
                   o->role == ONNX_OUT_Y ? "output" : o->role == ONNX_OUT_H ? "h_n" : "c_n",
                   axes_text(o, ax, sizeof ax));
            if (o->role != ONNX_OUT_Y)
                printf(" rows [%d, %d)", o->lo, o->hi);
            printf("\n");
        }
        if (c->batch_first)
            printf("  the sequence is batch-first: lstm forward --batch-first\n");
    }
    onnx_import_free(&imp);
    return 0;
}

int cmd_export(int argc, char **argv) {
    const char *V = "export";
    onnx_export_options o = {0};
    cli_opt opts[] = {
        {"batch-first", OPT_FLAG, &o.batch_first, NULL, "input and output are (B, T, .)"},
        {"state", OPT_FLAG, &o.state, NULL, "inputs h0 and c0 (L*D, B, H) (default: zeros)"},
        {"lengths", OPT_FLAG, &o.lengths, NULL, "input lengths (B), int32: ONNX's sequence_lens"},
        {"prefix", OPT_STR, &o.prefix, "P", "the LSTM's tensors are P + weight_ih_l0 ... (default: found)"},
        OPT_END};
    const char *pos[2];
    int npos;
    int r = cli_parse(V, "lstm export MODEL.safetensors OUT.onnx [options]",
                      "Writes the nn.LSTM whose state_dict is in MODEL, or the task model MODEL, as an\n"
                      "ONNX model (opset 14). An nn.LSTM: one LSTM node per layer, input 'input',\n"
                      "outputs 'output', 'h_n', 'c_n' as lstm forward computes them.\n"
                      "proj_size cannot be expressed in ONNX's LSTM and is refused.\n"
                      "A task model (lstm train) exports whole: inputs ids.<feature> (T, B) int64\n"
                      "(the ids of its vocabularies, lstm.vocab.<feature> in its metadata) and\n"
                      "lengths (B) int32; output probs, (B, C) for classify (the mean over the real\n"
                      "steps, as lstm computes it) and (T, B, C) for lm and tag (with --crf 1, each\n"
                      "word's marginal under the CRF, from its forward-backward as two Scan nodes;\n"
                      "0 past a sentence's length). With --prefix lstm. its LSTM alone exports.",
                      opts, argc, argv, pos, 2, &npos);
    if (r)
        return r == 2 ? 0 : 1;
    if (npos != 2)
        return cli_error(V, "expected MODEL.safetensors OUT.onnx (see lstm export --help)");
    lstm_error err;
    if (onnx_export_lstm(pos[0], pos[1], &o, &err))
        return cli_error(V, "%s", err.msg);
    return 0;
}
#else
int cmd_convert(int argc, char **argv) {
    (void)argc, (void)argv;
    return cli_error("convert", "this build lacks ONNX support: rebuild with libprotobuf-c and protoc-c "
                                "(Debian: libprotobuf-c-dev protobuf-c-compiler)");
}

int cmd_export(int argc, char **argv) {
    (void)argc, (void)argv;
    return cli_error("export", "this build lacks ONNX support: rebuild with libprotobuf-c and protoc-c "
                               "(Debian: libprotobuf-c-dev protobuf-c-compiler)");
}
#endif
