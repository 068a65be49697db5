/* driver.c - runs the models that lstm export-c wrote (listed in
 * models.inc as MODEL(name) lines) on fixed inputs and prints every output
 * as a hexadecimal float, so that two builds (x86-64 and ARM under
 * qemu-arm; the exported arrays and the same model read from its file) can
 * be compared byte for byte (tests/cli/embed.sh). Firmware-like: the
 * arena is a static buffer; the only library calls are printf's.
 *
 * With -DDRIVER_FROM_FILES (build/tests/embed_driver) it is linked with
 * liblstm and reads the models from files instead: arguments NAME=FILE. */
#include "lstm_embed.h"

#include <stdio.h>
#include <string.h>

#ifdef DRIVER_FROM_FILES
#include "lstm.h"
static struct {
    const char *name;
    const lstm_embed_model *m;
} models[16];
#else
#define MODEL(n) extern const lstm_embed_model n;
#include "models.inc"
#undef MODEL
#define MODEL(n) {#n, &n},
static struct {
    const char *name;
    const lstm_embed_model *m;
} models[] = {
#include "models.inc"
};
#endif

#define ARENA_FLOATS (1 << 20)
static float arena[ARENA_FLOATS];

/* A fixed pseudo-random sequence (a 32-bit LCG, Numerical Recipes'). */
static uint32_t lcg = 12345;
static uint32_t next(void) {
    lcg = lcg * 1664525u + 1013904223u;
    return lcg >> 8;
}
static float uniform(void) { return (float)next() / 8388608.0f * 2.0f - 1.0f; } /* [-1, 1) */

static void hex(const char *what, const float *v, int n) {
    printf("%s", what);
    for (int i = 0; i < n; i++)
        printf(" %a", (double)v[i]);
    printf("\n");
}

static int run(const char *name, const lstm_embed_model *m) {
    enum { TMAX = 40 };
    lstm_embed_ctx ctx;
    size_t need = lstm_embed_arena_size(m, TMAX);
    int s = lstm_embed_init(&ctx, m, TMAX, arena, sizeof arena);
    printf("model %s task %d arena %lu init %d\n", name, (int)m->task, (unsigned long)need, s);
    if (s)
        return 1;
    int V = m->decoder.rows, D = m->bidirectional ? 2 : 1;
    int Ho = m->proj_size ? m->proj_size : m->hidden_size;
    static float x[TMAX * 512], y[TMAX * 1024], logits[TMAX * 512];
    static int32_t ids[TMAX * LSTM_EMBED_MAX_FEATURES];
    static int tags[TMAX];
    if (m->task == LSTM_EMBED_BARE) {
        for (int t = 0; t < 6 * m->input_size; t++)
            x[t] = uniform();
        s = lstm_embed_run(&ctx, x, 6, y);
        hex("run", y, 6 * D * Ho);
        hex("h_n", ctx.h, m->num_layers * D * Ho);
        return s != 0;
    }
    static const int lengths[3] = {1, 9, TMAX};
    for (int k = 0; k < 3; k++) {
        int T = lengths[k];
        for (int t = 0; t < T; t++)
            for (int f = 0; f < m->nfeat; f++)
                ids[t * m->nfeat + f] = 1 + (int32_t)(next() % (uint32_t)(m->embedding[f].rows - 1));
        if (m->task == LSTM_EMBED_LM) {
            lstm_embed_reset(&ctx);
            for (int t = 0; t < T && !s; t++)
                s = lstm_embed_lm_step(&ctx, ids[t], logits);
            hex("lm", logits, V);
            /* greedy text from there */
            printf("text ");
            for (int t = 0; t < 30 && !s; t++) {
                int best = 0;
                for (int v = 1; v < V; v++)
                    best = logits[v] > logits[best] ? v : best;
                printf("%02x", m->id_bytes ? m->id_bytes[best] : best);
                s = lstm_embed_lm_step(&ctx, best, logits);
            }
            printf("\n");
        } else if (m->task == LSTM_EMBED_CLASSIFY) {
            int c = lstm_embed_classify(&ctx, ids, T, logits);
            printf("class %d %s\n", c, c >= 0 && m->labels ? m->labels[c] : "?");
            hex("logits", logits, V);
            s = c < 0;
        } else {
            s = lstm_embed_tag(&ctx, ids, T, logits, tags);
            printf("tags");
            for (int t = 0; t < T; t++)
                printf(" %d", tags[t]);
            printf("\n");
            hex("logits", logits, T * V);
        }
        if (s)
            break;
    }
    return s != 0;
}

int main(int argc, char **argv) {
    int bad = 0;
#ifdef DRIVER_FROM_FILES
    /* arguments NAME=FILE */
    int n = argc - 1;
    lstm_embed_host *hosts[16] = {0};
    if (n < 1 || n > 16) {
        fprintf(stderr, "usage: embed_driver NAME=MODEL.safetensors... (at most 16)\n");
        return 2;
    }
    for (int i = 0; i < n; i++) {
        char *eq = strchr(argv[i + 1], '=');
        if (!eq) {
            fprintf(stderr, "embed_driver: %s is not NAME=FILE\n", argv[i + 1]);
            return 2;
        }
        *eq = 0;
        lstm_error err;
        lstm_st *st = lstm_st_open(eq + 1, &err);
        hosts[i] = st ? lstm_embed_host_load(st, &err) : NULL;
        lstm_st_free(st);
        if (!hosts[i]) {
            fprintf(stderr, "embed_driver: %s\n", err.msg);
            return 2;
        }
        models[i].name = argv[i + 1];
        models[i].m = lstm_embed_host_model(hosts[i]);
    }
#else
    int n = (int)(sizeof models / sizeof *models);
    (void)argc, (void)argv;
#endif
    for (int i = 0; i < n; i++)
        bad |= run(models[i].name, models[i].m);
#ifdef DRIVER_FROM_FILES
    for (int i = 0; i < n; i++)
        lstm_embed_host_free(hosts[i]);
#endif
    return bad;
}
