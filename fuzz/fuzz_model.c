/* fuzz_model.c - libFuzzer target: any bytes as a model file; what loads
 * must also evaluate, predict and sample without trouble. */
#include "lstm.h"

#include <stdint.h>
#include <stdlib.h>

static void sink(unsigned char b, void *arg) { (void)b, (void)arg; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lstm_model *m = lstm_model_from_memory(data, size, "fuzz", NULL);
    if (!m)
        return 0;
    lstm_ctx *ctx = lstm_ctx_create(NULL, NULL);
    static const char text[] = "__label__a The cat sat .\nThe\tdt\ncat\tnn\n\n";
    lstm_task task = lstm_model_task(m);
    lstm_dataset *ds = lstm_dataset_from_memory(task, text, sizeof text - 1, "text", 0, NULL);
    if (ds && task != LSTM_TASK_LM) {
        size_t n = task == LSTM_TASK_TAG ? lstm_dataset_tokens(ds) : lstm_dataset_count(ds);
        int *labels = malloc(sizeof(int) * (n + 1));
        float *probs = malloc(sizeof(float) * (n + 1));
        lstm_model_predict(m, ctx, ds, labels, probs, NULL);
        for (size_t i = 0; i < n; i++)
            if (labels[i] < 0 || labels[i] >= lstm_model_labels(m))
                abort();
        free(labels);
        free(probs);
    }
    if (task == LSTM_TASK_LM) {
        lstm_rng rng;
        lstm_rng_seed(&rng, 1);
        lstm_model_sample(m, ctx, "", 0, 20, 1.0f, 0, &rng, sink, NULL, NULL);
        lstm_eval e;
        lstm_dataset *t = lstm_dataset_from_memory(task, text, sizeof text - 1, "text", 1, NULL);
        if (t && lstm_model_evaluate(m, ctx, t, 2, &e, NULL) == LSTM_OK)
            lstm_eval_free(&e);
        lstm_dataset_free(t);
    }
    lstm_dataset_free(ds);
    lstm_ctx_free(ctx);
    lstm_model_free(m);
    return 0;
}
