/* cmd_export_c.c - lstm export-c MODEL OUT.c: a model (a task model or a
 * bare nn.LSTM state_dict, float or int8-rowwise) as C source for the
 * embeddable runtime (include/lstm_embed.h): constant arrays and one
 * `const lstm_embed_model NAME`, so that firmware links the weights
 * without reading files. Floats are written as hexadecimal literals, so the
 * arrays hold the file's values exactly. */
#include "cli.h"
#include "lstm_embed.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *V = "export-c";

static int valid_name(const char *s) {
    if (!(isalpha((unsigned char)*s) || *s == '_'))
        return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_'))
            return 0;
    return 1;
}

static void floats(FILE *f, const char *name, const float *v, size_t n) {
    fprintf(f, "static const float %s[%zu] = {", name, n);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s%af", !i ? "\n    " : i % 6 ? ", " : ",\n    ", (double)v[i]);
    fprintf(f, "\n};\n");
}

static void int8s(FILE *f, const char *name, const int8_t *v, size_t n) {
    fprintf(f, "static const int8_t %s[%zu] = {", name, n);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s%d", !i ? "\n    " : i % 16 ? ", " : ",\n    ", v[i]);
    fprintf(f, "\n};\n");
}

/* A matrix's arrays as NAME_what_k(_q, _scale); its initializer in init. */
static void matrix(FILE *f, const char *name, const char *what, int k, const lstm_embed_matrix *a,
                   char *init, size_t cap) {
    char base[200], q[220], s[220];
    snprintf(base, sizeof base, "%s_%s%d", name, what, k);
    size_t n = (size_t)a->rows * (size_t)a->cols;
    if (a->w) {
        floats(f, base, a->w, n);
        snprintf(init, cap, "{%d, %d, %s, NULL, NULL}", a->rows, a->cols, base);
    } else {
        snprintf(q, sizeof q, "%s_q", base);
        snprintf(s, sizeof s, "%s_scale", base);
        int8s(f, q, a->q, n);
        floats(f, s, a->scale, (size_t)a->rows);
        snprintf(init, cap, "{%d, %d, NULL, %s, %s}", a->rows, a->cols, q, s);
    }
}

/* A C string literal of s. */
static void c_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f && c != '?') /* '?' : no trigraphs */
            fputc(c, f);
        else
            fprintf(f, "\\%03o", c);
    }
    fputc('"', f);
}

static size_t matrix_bytes(const lstm_embed_matrix *a) {
    size_t n = (size_t)a->rows * (size_t)a->cols;
    return a->w ? n * sizeof(float) : n + (size_t)a->rows * sizeof(float);
}

/* The bytes of constant data the model's arrays hold (weights, scales,
 * biases, the lm's byte maps; labels aside). */
static size_t model_bytes(const lstm_embed_model *m) {
    int K = m->num_layers * (m->bidirectional ? 2 : 1);
    size_t n = 0;
    for (int k = 0; k < K; k++) {
        n += matrix_bytes(&m->w_ih[k]) + matrix_bytes(&m->w_hh[k]);
        if (m->proj_size)
            n += matrix_bytes(&m->w_hr[k]);
        if (m->b_ih)
            n += 2 * 4 * (size_t)m->hidden_size * sizeof(float);
    }
    if (m->task != LSTM_EMBED_BARE) {
        for (int e = 0; e < m->nfeat; e++)
            n += matrix_bytes(&m->embedding[e]);
        n += matrix_bytes(&m->decoder) + (size_t)m->decoder.rows * sizeof(float);
    }
    if (m->crf_transitions)
        n += ((size_t)m->decoder.rows + 2) * (size_t)m->decoder.rows * sizeof(float);
    if (m->byte_ids)
        n += 256 * sizeof(int16_t) + (size_t)m->embedding[0].rows;
    return n;
}

static const char *task_names[] = {"LSTM_EMBED_BARE", "LSTM_EMBED_LM", "LSTM_EMBED_CLASSIFY",
                                   "LSTM_EMBED_TAG"};

static void write_model(FILE *f, const lstm_embed_model *m, const char *name, const char *from) {
    int D = m->bidirectional ? 2 : 1, K = m->num_layers * D;
    fprintf(f, "/* %s: written by lstm export-c from ", name);
    for (const char *c = from; *c; c++) /* nothing that could end the comment */
        fputc(*c == '*' || (unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f ? '_' : *c, f);
    fprintf(f,
            ".\n * %s: input %d, hidden %d, proj_size %d, layers %d, %s; %s.\n",
            task_names[m->task], m->input_size, m->hidden_size, m->proj_size, m->num_layers,
            m->bidirectional ? "bidirectional" : "unidirectional",
            m->w_hh[0].q ? "int8-rowwise" : "float");
    fprintf(f, " * Constant data (weights, scales, biases): %zu bytes.\n", model_bytes(m));
    if (lstm_embed_arena_size(m, 64) != lstm_embed_arena_size(m, 0))
        fprintf(f, " * Arena (lstm_embed_arena_size(&%s, max_steps)): %zu bytes for sequences "
                   "of up to 64 steps, %zu for 256.\n", name, lstm_embed_arena_size(m, 64),
                lstm_embed_arena_size(m, 256));
    else
        fprintf(f, " * Arena (lstm_embed_arena_size(&%s, 0)): %zu bytes, for sequences of any "
                   "length.\n", name, lstm_embed_arena_size(m, 0));
    fprintf(f, " * Declare it with: extern const lstm_embed_model %s; */\n", name);
    fprintf(f, "#include \"lstm_embed.h\"\n\n#include <stddef.h>\n#include <stdint.h>\n\n");
    char (*ih)[512] = calloc((size_t)K * 3, 512), (*hh)[512] = ih + K, (*hr)[512] = ih + 2 * K;
    for (int k = 0; k < K; k++) {
        matrix(f, name, "w_ih", k, &m->w_ih[k], ih[k], 512);
        matrix(f, name, "w_hh", k, &m->w_hh[k], hh[k], 512);
        if (m->proj_size)
            matrix(f, name, "w_hr", k, &m->w_hr[k], hr[k], 512);
        if (m->b_ih) {
            char b[200];
            snprintf(b, sizeof b, "%s_b_ih%d", name, k);
            floats(f, b, m->b_ih[k], 4 * (size_t)m->hidden_size);
            snprintf(b, sizeof b, "%s_b_hh%d", name, k);
            floats(f, b, m->b_hh[k], 4 * (size_t)m->hidden_size);
        }
    }
    const char *lists[3] = {"w_ih", "w_hh", "w_hr"};
    char (*inits[3])[512] = {ih, hh, hr};
    for (int i = 0; i < (m->proj_size ? 3 : 2); i++) {
        fprintf(f, "static const lstm_embed_matrix %s_%s[%d] = {\n", name, lists[i], K);
        for (int k = 0; k < K; k++)
            fprintf(f, "    %s,\n", inits[i][k]);
        fprintf(f, "};\n");
    }
    free(ih);
    for (int i = 0; m->b_ih && i < 2; i++) {
        fprintf(f, "static const float *const %s_b_%s[%d] = {", name, i ? "hh" : "ih", K);
        for (int k = 0; k < K; k++)
            fprintf(f, "%s%s_b_%s%d", k ? ", " : "", name, i ? "hh" : "ih", k);
        fprintf(f, "};\n");
    }
    char emb[LSTM_EMBED_MAX_FEATURES][512], dec[512] = "{0, 0, NULL, NULL, NULL}";
    if (m->task != LSTM_EMBED_BARE) {
        for (int e = 0; e < m->nfeat; e++)
            matrix(f, name, "embedding", e, &m->embedding[e], emb[e], 512);
        matrix(f, name, "decoder", 0, &m->decoder, dec, 512);
        char b[200];
        snprintf(b, sizeof b, "%s_decoder_bias", name);
        floats(f, b, m->decoder_bias, (size_t)m->decoder.rows);
    }
    if (m->crf_transitions) {
        char b[200];
        size_t V = (size_t)m->decoder.rows;
        snprintf(b, sizeof b, "%s_crf_transitions", name);
        floats(f, b, m->crf_transitions, V * V);
        snprintf(b, sizeof b, "%s_crf_start", name);
        floats(f, b, m->crf_start, V);
        snprintf(b, sizeof b, "%s_crf_end", name);
        floats(f, b, m->crf_end, V);
    }
    if (m->labels) {
        fprintf(f, "static const char *const %s_labels[%d] = {\n", name, m->nlabels);
        for (int i = 0; i < m->nlabels; i++) {
            fprintf(f, "    ");
            c_string(f, m->labels[i]);
            fprintf(f, ",\n");
        }
        fprintf(f, "};\n");
    }
    if (m->byte_ids) {
        fprintf(f, "static const int16_t %s_byte_ids[256] = {", name);
        for (int b = 0; b < 256; b++)
            fprintf(f, "%s%d", !b ? "\n    " : b % 16 ? ", " : ",\n    ", m->byte_ids[b]);
        fprintf(f, "\n};\nstatic const uint8_t %s_id_bytes[%d] = {", name, m->embedding[0].rows);
        for (int i = 0; i < m->embedding[0].rows; i++)
            fprintf(f, "%s%d", !i ? "\n    " : i % 16 ? ", " : ",\n    ", m->id_bytes[i]);
        fprintf(f, "\n};\n");
    }
    fprintf(f, "\nconst lstm_embed_model %s = {\n", name);
    fprintf(f, "    .task = %s,\n    .input_size = %d,\n    .hidden_size = %d,\n"
               "    .proj_size = %d,\n    .num_layers = %d,\n    .bidirectional = %d,\n",
            task_names[m->task], m->input_size, m->hidden_size, m->proj_size, m->num_layers,
            m->bidirectional);
    fprintf(f, "    .w_ih = %s_w_ih,\n    .w_hh = %s_w_hh,\n", name, name);
    if (m->proj_size)
        fprintf(f, "    .w_hr = %s_w_hr,\n", name);
    if (m->b_ih)
        fprintf(f, "    .b_ih = %s_b_ih,\n    .b_hh = %s_b_hh,\n", name, name);
    if (m->task != LSTM_EMBED_BARE) {
        fprintf(f, "    .nfeat = %d,\n    .embedding = {", m->nfeat);
        for (int e = 0; e < m->nfeat; e++)
            fprintf(f, "%s%s", e ? ", " : "", emb[e]);
        fprintf(f, "},\n    .decoder = %s,\n    .decoder_bias = %s_decoder_bias,\n", dec, name);
    }
    if (m->crf_transitions)
        fprintf(f, "    .crf_transitions = %s_crf_transitions,\n    .crf_start = %s_crf_start,\n"
                   "    .crf_end = %s_crf_end,\n", name, name, name);
    if (m->labels)
        fprintf(f, "    .nlabels = %d,\n    .labels = %s_labels,\n", m->nlabels, name);
    if (m->byte_ids)
        fprintf(f, "    .byte_ids = %s_byte_ids,\n    .id_bytes = %s_id_bytes,\n", name, name);
    fprintf(f, "};\n");
}

int cmd_export_c(int argc, char **argv) {
    const char *name = "lstm_model";
    int lstm_only = 0;
    cli_opt opts[] = {{"name", OPT_STR, &name, "NAME",
                       "the C name of the model (lstm_model); arrays are NAME_..."},
                      {"lstm-only", OPT_FLAG, &lstm_only, NULL,
                       "a task model's LSTM alone (a bare model: no embeddings, no decoder)"},
                      OPT_END};
    const char *pos[2];
    int npos;
    int r = cli_parse(V, "lstm export-c MODEL OUT.c [--name NAME] [--lstm-only]",
                      "Writes MODEL (a model of lstm train, float or int8-rowwise as lstm quantize\n"
                      "writes it, or an nn.LSTM state_dict) as C source for the embeddable runtime\n"
                      "(include/lstm_embed.h): constant arrays and `const lstm_embed_model NAME`.\n"
                      "Compile it with src/embed/lstm_embed.c; no file is read at run time.",
                      opts, argc, argv, pos, 2, &npos);
    if (r)
        return r == 2 ? 0 : 1;
    if (npos != 2)
        return cli_error(V, "expected MODEL OUT.c (see lstm export-c --help)");
    if (!valid_name(name) || strlen(name) > 100)
        return cli_error(V, "--name %s: not a C identifier (letters, digits, _; at most 100)",
                         name);
    lstm_error err;
    lstm_st *st = lstm_st_open(pos[0], &err);
    if (!st)
        return cli_error(V, "%s", err.msg);
    lstm_embed_host *h = lstm_embed_host_load(st, &err);
    lstm_st_free(st);
    if (!h)
        return cli_error(V, "%s", err.msg);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        lstm_embed_host_free(h);
        return cli_error(V, "out of memory");
    }
    const char *base = strrchr(pos[0], '/');
    lstm_embed_model m = *lstm_embed_host_model(h);
    if (lstm_only) { /* the LSTM's arrays only */
        lstm_embed_model bare = {0};
        bare.task = LSTM_EMBED_BARE;
        bare.input_size = m.input_size, bare.hidden_size = m.hidden_size;
        bare.proj_size = m.proj_size, bare.num_layers = m.num_layers;
        bare.bidirectional = m.bidirectional;
        bare.w_ih = m.w_ih, bare.w_hh = m.w_hh, bare.w_hr = m.w_hr;
        bare.b_ih = m.b_ih, bare.b_hh = m.b_hh;
        m = bare;
    }
    write_model(f, &m, name, base ? base + 1 : pos[0]);
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    lstm_embed_host_free(h);
    if (bad) {
        free(buf);
        return cli_error(V, "out of memory writing the C source");
    }
    lstm_status s = lstm_write_file_atomic(pos[1], buf, len, &err);
    free(buf);
    return s ? cli_error(V, "%s", err.msg) : 0;
}
