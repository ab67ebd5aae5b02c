/* SPDX-License-Identifier: Apache-2.0 */
/* Rollout gates computed on data, never drawn at random: the offline validation of a
 * candidate on its model's validation CSV (accuracy, F1, AUC, degradation against the
 * stable version on the same rows including p95 latency, demographic disparity across
 * the groups of a sensitive column, schema compatibility) and the helpers the live
 * checks (shadow, canary) use to record their verdicts. */
#ifndef AIMEDRES_ROLLOUT_GATES_H
#define AIMEDRES_ROLLOUT_GATES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "model/runtime.h"
#include "rollout/config.h"

/* A validation test entry {test_name, test_type, score, threshold, passed, executed_at,
 * comparison ("min" | "max")}. NAN score -> null. New reference. */
json_t *rollout_gate_test(const char *name, const char *type, double score, double threshold, bool is_min,
                          bool passed);

/* Runs every offline gate of cand (borrowed) against stable (borrowed; NULL = none, the
 * comparative gates are skipped) on csv_path, appending one entry per gate to tests. When
 * csv_path is ".../<model>_validation.csv" and ".../<model>_<cand version>_validation.csv"
 * exists (model train writes one per version), that one is used instead.
 * Returns 0 when all pass; 1 when a gate failed, with reason naming the first failing
 * gate and its numbers ("gate min_accuracy failed: accuracy 0.712 < 0.850"); or a
 * negative errno when the gates could not run (reason explains; e.g. no validation CSV). */
int rollout_gates_offline(const rollout_config_t *c, model_handle_t *cand, model_handle_t *stable,
                          const char *csv_path, json_t *tests, char *reason, size_t reasonlen);

/* Upper end of the one-sided 95% Wilson score interval (z = 1.6449) of the proportion
 * correct/n. The live accuracy gate fails only when this is below min_accuracy: the true
 * accuracy is then below the threshold with 95% confidence. NAN when n is 0 or correct > n. */
#define ROLLOUT_Z95_ONE_SIDED 1.6448536269514722
double rollout_wilson_upper95(unsigned long long correct, unsigned long long n);

/* Fine-grained latency histogram (5% wide buckets from 1 us to ~30 s) updated with
 * relaxed atomics; used for per-arm and shadow p95. */
#define ROLLOUT_LAT_BUCKETS 360
typedef struct rollout_latency {
    unsigned long long counts[ROLLOUT_LAT_BUCKETS]; /* accessed atomically */
} rollout_latency_t;
void rollout_latency_observe(rollout_latency_t *h, double seconds);
/* q-quantile in milliseconds (upper bucket bound); NAN when empty. */
double rollout_latency_quantile_ms(const rollout_latency_t *h, double q);
void rollout_latency_reset(rollout_latency_t *h);

#endif
