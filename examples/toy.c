/*
 * toy.c - the from-scratch LSTM tutorial's toy problem with liblstm: fit
 * four random input vectors (x_dim 50) to the targets [-0.5, 0.2, 0.1, -0.5]
 * with a 100-unit LSTM, the loss being the squared error of the first
 * hidden unit at each step, trained by plain SGD (lr 0.1) for 100 steps.
 * The tutorial's hand-written backward pass had a mistake in the gradient
 * of the cell state; this one is checked against finite differences and
 * PyTorch. Prints the loss falling and exits non-zero if it does not.
 *
 *   build/examples/toy [iterations]
 */
#include "lstm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    enum { T = 4, X = 50, H = 100 };
    const float target[T] = {-0.5f, 0.2f, 0.1f, -0.5f};
    int iterations = argc > 1 ? atoi(argv[1]) : 100;
    lstm_error err;

    lstm_ctx *ctx = lstm_ctx_create(NULL, &err);
    lstm_params *p = lstm_params_create();
    lstm_rnn_config cfg = lstm_rnn_config_default(X, H);
    lstm_rnn *rnn = lstm_rnn_create(&cfg, p, "", &err);
    if (!ctx || !rnn || lstm_params_alloc(p, &err)) {
        fprintf(stderr, "toy: %s\n", err.msg);
        return 1;
    }
    lstm_rng rng;
    lstm_rng_seed(&rng, 0);
    lstm_rnn_reset_parameters(rnn, p, &rng);

    float x[T * X], y[T * H], dy[T * H];
    for (int i = 0; i < T * X; i++)
        x[i] = lstm_rng_uniform(&rng) * 2 - 1;
    lstm_optim_config oc = lstm_optim_defaults(LSTM_OPT_SGD);
    lstm_optim *opt = lstm_optim_create(&oc, p, &err);

    double first = 0, loss = 0;
    for (int it = 0; it < iterations; it++) {
        lstm_rnn_io io = {.T = T, .B = 1, .x = x, .y = y};
        if (lstm_rnn_forward(rnn, ctx, p, &io, 1, NULL, &err)) {
            fprintf(stderr, "toy: %s\n", err.msg);
            return 1;
        }
        /* loss = sum_t (h_t[0] - target_t)^2, on the first hidden unit */
        loss = 0;
        memset(dy, 0, sizeof dy);
        printf("iter %3d: y_pred = [", it);
        for (int t = 0; t < T; t++) {
            float e = y[t * H] - target[t];
            loss += (double)e * e;
            dy[t * H] = 2 * e;
            printf("%s%+.5f", t ? ", " : "", y[t * H]);
        }
        printf("]  loss %.3e\n", loss);
        if (it == 0)
            first = loss;
        lstm_params_zero_grad(p);
        lstm_rnn_grads g = {.dy = dy};
        lstm_rnn_backward(rnn, ctx, p, &g, &err);
        lstm_optim_step(opt, p, 0.1f);
    }
    printf("loss %.3e -> %.3e\n", first, loss);
    lstm_optim_free(opt);
    lstm_rnn_free(rnn);
    lstm_params_free(p);
    lstm_ctx_free(ctx);
    return iterations > 1 && !(loss < first * 0.01);
}
