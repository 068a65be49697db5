/* cmd_quantize.c - lstm quantize: a task model, or an nn.LSTM state_dict,
 * written again with int8 weight matrices.
 *
 * The file format (fixed; docs/DESIGN.md "int8", and lstm.h above
 * lstm_params_quantize): every quantized matrix NAME (rows, cols), i.e.
 * the LSTM's weight_ih_l*, weight_hh_l*, weight_hr_l* (with "_reverse",
 * under any prefix such as "lstm.") and a task model's decoder.weight,
 * becomes two tensors:
 *     NAME.int8   I8  (rows, cols)  q in [-127, 127]
 *     NAME.scale  F32 (rows)        scale[r] = max_c |w[r][c]| / 127 (0: a zero row)
 * with w[r][c] ~= scale[r] * q[r][c], q = round-to-nearest-even(w / scale)
 * clamped to [-127, 127]. NAME itself is absent, so an older reader fails
 * with "missing tensor" rather than misreading. Biases and embeddings stay
 * F32 under their own names; every other tensor is copied as it is. The
 * metadata keeps what the input had and adds "lstm.quantization":
 * "int8-rowwise". Activations are quantized when the model runs (per row:
 * s_a = max|a| / 127, q_a = rne(a * (127 / max|a|)); products are exact
 * int32 sums, scaled by s_a * scale[r] in float). */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *V = "quantize";

/* A task model (or a checkpoint's best weights): lstm_model_quantize. */
static int quantize_model(const char *in, const char *out) {
    lstm_error err;
    lstm_model *m = lstm_model_load(in, &err);
    if (!m || lstm_model_quantize(m, &err) || lstm_model_save(m, out, &err)) {
        lstm_model_free(m);
        return cli_error(V, "%s", err.msg);
    }
    lstm_model_free(m);
    return 0;
}

/* A plain state_dict: the LSTM's matrices quantized, the rest copied. */
static int quantize_state_dict(const lstm_st *st, const char *prefix, const char *out) {
    int status = 1;
    lstm_error err;
    char pbuf[512];
    lstm_params *p = lstm_params_create();
    lstm_rnn *rnn = NULL;
    lstm_st_writer *w = lstm_st_writer_create();
    lstm_rnn_config cfg;
    if (!prefix && !(prefix = cli_lstm_prefix(V, st, pbuf, sizeof pbuf)))
        goto out;
    if (lstm_rnn_config_infer(&cfg, st, prefix, &err) ||
        !(rnn = lstm_rnn_create(&cfg, p, prefix, &err)) || lstm_params_alloc(p, &err) ||
        lstm_params_read(p, st, "", 0, &err)) {
        cli_error(V, "%s", err.msg);
        goto out;
    }
    for (int i = 0; i < lstm_params_count(p); i++)
        if (lstm_params_ndim(p, i) == 2 && !lstm_params_is_int8(p, i) &&
            lstm_params_quantize(p, i, &err)) {
            cli_error(V, "%s: %s", lstm_st_name(st), err.msg);
            goto out;
        }
    if (lstm_params_write(p, w, "", &err))
        goto fail;
    for (size_t i = 0; i < lstm_st_count(st); i++) { /* the rest, as it is */
        const lstm_st_tensor *t = lstm_st_tensor_at(st, i);
        if (lstm_params_find(p, t->name) >= 0 || cli_int8_part(p, t->name))
            continue;
        if (lstm_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, &err))
            goto fail;
    }
    for (size_t i = 0; i < lstm_st_meta_count(st); i++) {
        const char *k, *v;
        lstm_st_meta_at(st, i, &k, &v);
        if (strcmp(k, "lstm.quantization") != 0 && lstm_st_writer_meta(w, k, v, &err))
            goto fail;
    }
    if (lstm_st_writer_meta(w, "lstm.quantization", "int8-rowwise", &err) ||
        lstm_st_writer_save(w, out, &err))
        goto fail;
    status = 0;
    goto out;
fail:
    cli_error(V, "%s", err.msg);
out:
    lstm_st_writer_free(w);
    lstm_rnn_free(rnn);
    lstm_params_free(p);
    return status;
}

int cmd_quantize(int argc, char **argv) {
    const char *prefix = NULL;
    cli_opt opts[] = {
        {"prefix", OPT_STR, &prefix, "P",
         "a state_dict's LSTM tensors are P + weight_ih_l0 ... (default: found)"},
        OPT_END};
    const char *pos[2];
    int npos;
    int r = cli_parse(
        V, "lstm quantize MODEL.safetensors OUT.safetensors [--prefix P]",
        "Writes MODEL again with int8 weights and a float scale per output row\n"
        "(symmetric: scale = max|row| / 127), for inference only: eval, predict,\n"
        "sample, forward and the step API run such a file with int8 products,\n"
        "quantizing each row of their inputs as it comes. MODEL is a model of lstm\n"
        "train (every matrix of its LSTM and its decoder; the embeddings stay float),\n"
        "a checkpoint (its best weights), or an nn.LSTM state_dict as lstm forward\n"
        "reads it (its weight matrices; other tensors are copied).",
        opts, argc, argv, pos, 2, &npos);
    if (r)
        return r == 2 ? 0 : 1;
    if (npos != 2)
        return cli_error(V, "expected MODEL OUT (see lstm quantize --help)");
    lstm_error err;
    lstm_st *st = lstm_st_open(pos[0], &err);
    if (!st)
        return cli_error(V, "%s", err.msg);
    int is_model = lstm_st_meta(st, "lstm.task") != NULL;
    int status = is_model ? quantize_model(pos[0], pos[1]) : quantize_state_dict(st, prefix, pos[1]);
    lstm_st_free(st);
    return status;
}
