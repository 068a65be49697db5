/* onnx.h - ONNX files for the lstm program: importing a graph of ONNX LSTM
 * nodes as an nn.LSTM state_dict, exporting lstm's models as ONNX graphs,
 * and reading TensorProto files (ONNX's test data). Built only when
 * libprotobuf-c is found (LSTM_HAVE_ONNX); the schema is tools/onnx.proto.
 *
 * ONNX's LSTM operator (opsets 7 to 22) against nn.LSTM:
 *   gates      ONNX i, o, f, c          nn.LSTM i, f, g, o
 *   W (D,4H,I) R (D,4H,H) B (D,8H) = Wb, Rb   weight_ih, weight_hh, bias_ih, bias_hh
 *   P (D,3H) in the order i, o, f     weight_peephole (3H) in the order i, f, o
 *   Y (T,D,B,H) layout 0, (B,T,D,H) layout 1;  Y_h, Y_c (D,B,H) or (B,D,H)
 * A graph of several LSTM nodes, each fed by the one before through
 * Transpose, Reshape and Squeeze nodes that turn (T,D,B,H) into (T,B,D*H),
 * is a stacked nn.LSTM (the pattern torch.onnx.export writes). */
#ifndef LSTM_ONNX_H
#define LSTM_ONNX_H

#include "lstm.h"

#include <stddef.h>
#include <stdint.h>

/* Axis names in the descriptions of a graph's inputs and outputs. */
typedef enum {
    ONNX_AX_T,  /* time */
    ONNX_AX_B,  /* batch */
    ONNX_AX_D,  /* direction (size D) */
    ONNX_AX_H,  /* hidden (size H) */
    ONNX_AX_F,  /* features of a layer's output: D*H, direction-major */
    ONNX_AX_I,  /* the first layer's input features */
    ONNX_AX_S   /* layers*directions of a state, as nn.LSTM's h_n */
} onnx_axis;

/* What a graph input or output is, in nn.LSTM's terms. */
typedef enum {
    ONNX_IN_X,       /* the sequence: axes (T,B,I) or (B,T,I) */
    ONNX_IN_H0,      /* initial h: axes (S,B,H) or (B,S,H) */
    ONNX_IN_C0,      /* initial c */
    ONNX_IN_LENGTHS, /* sequence_lens (B), integers */
    ONNX_IN_UNUSED,  /* not read by anything the outputs need */
    ONNX_IN_WEIGHT,  /* a weight given as a graph input (fed at import) */
    ONNX_OUT_Y,      /* the top layer's output sequence */
    ONNX_OUT_H,      /* rows [lo, hi) of h_n (L*D, B, H) */
    ONNX_OUT_C       /* rows [lo, hi) of c_n */
} onnx_role;

#define ONNX_MAX_IO 16

typedef struct {
    char name[128];
    onnx_role role;
    int rank;
    onnx_axis axes[4];
    int lo, hi; /* ONNX_OUT_H, ONNX_OUT_C, ONNX_IN_H0/C0: rows of the L*D states */
} onnx_io;

/* A tensor read from a TensorProto, converted: float for FLOAT, DOUBLE,
 * FLOAT16, BFLOAT16; int64 for INT32, INT64. */
typedef struct {
    char name[128];
    int ndim;
    int64_t shape[LSTM_MAX_DIMS];
    size_t numel;
    float *f;     /* malloc'd, or NULL for an integer tensor */
    int64_t *i;   /* malloc'd, or NULL for a float tensor */
} onnx_tensor;

/* The result of an import. */
typedef struct {
    lstm_rnn_config cfg;   /* batch_first: whether x is (B,T,I) */
    lstm_st_writer *weights; /* the state_dict (weight_ih_l0 ...), metadata lstm.clip,
                                lstm.input_forget, lstm.reverse when set */
    int opset;             /* the default domain's operator set version */
    int nin, nout;
    onnx_io in[ONNX_MAX_IO];   /* the graph's inputs, in order */
    onnx_io out[ONNX_MAX_IO];  /* the graph's outputs, in order */
    char producer[64];
} onnx_import;

/* Imports the ONNX model in buf (len bytes; `name` for messages) as one
 * nn.LSTM: every LSTM node of the graph must be a layer of one stack, and
 * every node the outputs depend on one of the patterns described above
 * (onnx_import.c lists them). feeds (n of them, may be NULL) give values
 * to graph inputs that are LSTM weights (ONNX's node tests feed W, R, B, P
 * as inputs); other weights must be initializers or Constant nodes.
 * LSTM_ERR_FORMAT for a file that is not a valid ONNX model (with where),
 * LSTM_ERR_UNSUPPORTED for a valid graph outside what imports (naming the
 * node and the attribute or operator), LSTM_ERR_SHAPE for a tensor of the
 * wrong shape or type. On success fill *out (free with onnx_import_free). */
lstm_status onnx_import_lstm(const void *buf, size_t len, const char *name,
                             const onnx_tensor *feeds, int nfeeds, onnx_import *out,
                             lstm_error *err);
void onnx_import_free(onnx_import *imp);

/* Reads a serialized TensorProto (ONNX test data's input_0.pb ...). */
lstm_status onnx_tensor_read(const void *buf, size_t len, const char *name, onnx_tensor *t,
                             lstm_error *err);
void onnx_tensor_free(onnx_tensor *t);

/* What the exported graph takes besides `input`. */
typedef struct {
    int batch_first; /* input (B,T,I) and output (B,T,D*H); else (T,B,.) */
    int state;       /* graph inputs h0, c0 (L*D,B,H); else zeros */
    int lengths;     /* graph input lengths (B) int32, as sequence_lens */
    const char *prefix; /* the LSTM's tensors are prefix + weight_ih_l0 ...; NULL: found */
} onnx_export_options;

/* Writes the nn.LSTM whose state_dict is in the safetensors file in_path
 * (prefix found as lstm forward finds it), or the task model in_path whole
 * when no prefix is given (see lstm export --help; with prefix "lstm." its
 * LSTM alone), as an ONNX model (opset 14) at
 * out_path, atomically: inputs `input` (and h0, c0, lengths as asked),
 * outputs `output`, `h_n`, `c_n`, as lstm forward writes them.
 * LSTM_ERR_UNSUPPORTED for what ONNX's LSTM cannot express (proj_size). */
lstm_status onnx_export_lstm(const char *in_path, const char *out_path,
                             const onnx_export_options *o, lstm_error *err);

#endif
