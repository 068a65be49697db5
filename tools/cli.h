/* cli.h - what the verbs of the lstm program share: option parsing,
 * messages, and the verb table. */
#ifndef LSTM_CLI_H
#define LSTM_CLI_H

#include "lstm.h"

#include <stddef.h>

typedef enum { OPT_FLAG, OPT_INT, OPT_LONG, OPT_FLOAT, OPT_DOUBLE, OPT_STR } opt_type;

typedef struct {
    const char *name; /* without the leading "--" */
    opt_type type;
    void *dst;        /* int* for FLAG/INT, long*, float*, double*, const char** */
    const char *arg;  /* the value's name in --help, e.g. "N" */
    const char *help;
} cli_opt;

/* The end of an option table. */
#define OPT_END {NULL, OPT_FLAG, NULL, NULL, NULL}

/* Parses argv[1..argc) (argv[0] is the verb) into opts and positional
 * arguments (at most maxpos). Returns 0 to go on, 1 after printing an
 * error, 2 after printing --help. `usage` is the synopsis line(s) and
 * `about` a paragraph shown by --help. */
int cli_parse(const char *verb, const char *usage, const char *about, const cli_opt *opts,
              int argc, char **argv, const char **pos, int maxpos, int *npos);

/* "lstm VERB: message" on stderr; returns 1 (the exit status). */
int cli_error(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A context for `threads` threads (0: all processors), automatic kernels. */
lstm_ctx *cli_ctx(const char *verb, int threads);

/* The context of a verb with --precision: "fp32" is cli_ctx; "bf16" the
 * AVX-512 BF16 kernels (products in bfloat16, sums and state in float; an
 * error where the processor lacks them); "auto" bf16 where the processor
 * has it and LSTM_KERNELS is unset, else fp32. With bf16 and eval not
 * NULL, *eval is a float context (cli_ctx) for evaluating; else NULL. */
lstm_ctx *cli_precision_ctx(const char *verb, int threads, const char *precision,
                            lstm_ctx **eval);

/* lstm_rnn_find_prefix, with its error printed: buf, or NULL. */
const char *cli_lstm_prefix(const char *verb, const lstm_st *st, char *buf, size_t n);
/* 1 when name is NAME.int8 or NAME.scale of an int8 tensor NAME of p. */
int cli_int8_part(const lstm_params *p, const char *name);

/* Number of online processors. */
int cli_nproc(void);

/* Wall-clock seconds since an arbitrary point. */
double cli_now(void);

/* Data-parallel training (mpi.c). cli_comm_start: when the launcher
 * started several processes, MPI is initialised and comm filled (1); one
 * process: comm untouched (0); launched as several but built without MPI
 * (-2) or MPI failed to start (-1). cli_comm_abort ends every rank of the
 * job (after an error on one); cli_comm_end finalises. */
int cli_launched_ranks(void);
int cli_comm_start(lstm_comm *comm, int *argc, char ***argv);
void cli_comm_end(const lstm_comm *comm);
void cli_comm_abort(const lstm_comm *comm, int status);

typedef int (*verb_fn)(int argc, char **argv);

int cmd_forward(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_convert(int argc, char **argv); /* cmd_onnx.c */
int cmd_export(int argc, char **argv);
int cmd_export_c(int argc, char **argv);
int cmd_quantize(int argc, char **argv);

#endif
