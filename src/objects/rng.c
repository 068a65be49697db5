/* rng.c - xoshiro256** (Blackman and Vigna), seeded with splitmix64. */
#include "lstm.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void lstm_rng_seed(lstm_rng *rng, uint64_t seed) {
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t lstm_rng_next(lstm_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float lstm_rng_uniform(lstm_rng *rng) {
    return (float)(lstm_rng_next(rng) >> 40) * (1.0f / 16777216.0f);
}

uint64_t lstm_rng_below(lstm_rng *rng, uint64_t n) {
    /* Rejection sampling: draw until the value falls in the largest
     * multiple of n that fits in 64 bits. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do
        r = lstm_rng_next(rng);
    while (r >= limit);
    return r % n;
}

float lstm_rng_normal(lstm_rng *rng) {
    /* Box-Muller with u1 in (0, 1] so the logarithm is finite. */
    double u1 = ((lstm_rng_next(rng) >> 11) + 1) * (1.0 / 9007199254740992.0);
    double u2 = (lstm_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
