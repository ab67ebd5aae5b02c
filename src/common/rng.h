/* SPDX-License-Identifier: Apache-2.0 */
/* A small deterministic PRNG (xoshiro256** seeded through splitmix64) for reproducible
 * data work: the synthetic cohorts and the stratified training split. Not for secrets:
 * util_random is. The same seed gives the same sequence on every machine. */
#ifndef AIMEDRES_COMMON_RNG_H
#define AIMEDRES_COMMON_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct rng_state {
    uint64_t s[4];
} rng_state_t;

void rng_seed(rng_state_t *r, uint64_t seed);
uint64_t rng_next(rng_state_t *r);
/* Uniform in [0, 1) from the top 53 bits (exactly representable). */
double rng_uniform(rng_state_t *r);
/* Uniform in [0, n) (Lemire's multiply-shift; bias below n / 2^64). */
size_t rng_below(rng_state_t *r, size_t n);

#endif
