/* infer.c - the public entry points of inference on a trained model:
 * evaluation, prediction and sampling. They check what every task checks
 * and hand over to the task (task_ops). */
#include "task.h"

#include <stdlib.h>
#include <string.h>

void lstm_eval_free(lstm_eval *e) {
    if (!e)
        return;
    free(e->confusion);
    for (int i = 0; i < e->nunknown_labels; i++)
        free(e->unknown_labels[i]);
    free(e->unknown_labels);
    free(e->unknown_counts);
    e->confusion = NULL;
    e->unknown_labels = NULL;
    e->unknown_counts = NULL;
    e->nunknown_labels = 0;
}

lstm_status lstm_model_evaluate(lstm_model *m, lstm_ctx *ctx, const lstm_dataset *ds, int streams,
                                lstm_eval *out, lstm_error *err) {
    memset(out, 0, sizeof *out);
    out->task = m->cfg.task;
    if (ds->task != m->cfg.task)
        return lstm_fail(err, LSTM_ERR_INVALID, "%s: a %s data set for a %s model", ds->name,
                         lstm_task_name(ds->task), lstm_task_name(m->cfg.task));
    return m->ops->evaluate(m, ctx, ds, streams, NULL, out, err);
}

lstm_status lstm_model_predict(lstm_model *m, lstm_ctx *ctx, const lstm_dataset *ds, int *labels,
                               float *probs, lstm_error *err) {
    if (!m->ops->predict)
        return lstm_fail(err, LSTM_ERR_INVALID, "%s does not predict labels: use lstm sample",
                         m->ops->title);
    if (ds->task != m->cfg.task)
        return lstm_fail(err, LSTM_ERR_INVALID, "%s: a %s data set for a %s model", ds->name,
                         lstm_task_name(ds->task), lstm_task_name(m->cfg.task));
    return m->ops->predict(m, ctx, ds, labels, probs, err);
}

lstm_status lstm_model_sample(lstm_model *m, lstm_ctx *ctx, const char *prime, size_t prime_len,
                              size_t length, float temperature, int top_k, lstm_rng *rng,
                              void (*emit)(unsigned char byte, void *arg), void *arg,
                              lstm_error *err) {
    if (!m->ops->sample)
        return lstm_fail(err, LSTM_ERR_INVALID,
                         "%s does not write text: only a language model (lm) can sample text",
                         m->ops->title);
    if (!(temperature > 0) || top_k < 0)
        return lstm_fail(err, LSTM_ERR_INVALID, "temperature must be > 0 and top-k >= 0");
    if (prime_len && !prime)
        return lstm_fail(err, LSTM_ERR_INVALID, "lstm_model_sample: prime is NULL");
    return m->ops->sample(m, ctx, prime, prime_len, length, temperature, top_k, rng, emit, arg,
                          err);
}
