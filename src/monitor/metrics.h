/* SPDX-License-Identifier: Apache-2.0 */
/* Metrics registry and Prometheus text exposition.
 *
 * DESIGN
 * - Every counter, histogram bucket, histogram count and histogram sum is a "slot": an
 *   index into per-thread shard arrays of 64-bit integers. A thread adds to its own shard
 *   with a relaxed atomic add; a scrape sums the slot over all shards. So counting on the
 *   hot path touches no lock and no cache line written by another thread.
 * - Slots are allocated once per series (family + label set) under a mutex and never
 *   freed; callers cache slot numbers (see metrics_series) so the hot path never looks a
 *   series up by name. Histogram sums are kept in integer nanounits (value * 1e9).
 * - Gauges are either set (a global slot holding a double) or computed at scrape time by
 *   collectors (process, host, model quality figures), which append their own lines.
 * - Threads beyond METRICS_MAX_SHARDS share the last shard; atomics keep that correct. */
#ifndef AIMEDRES_MONITOR_METRICS_H
#define AIMEDRES_MONITOR_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define METRICS_MAX_SHARDS 64
#define METRICS_MAX_SLOTS (1u << 16)
#define METRICS_MAX_BUCKETS 24

typedef enum { METRIC_COUNTER = 0, METRIC_GAUGE, METRIC_HISTOGRAM } metric_type_t;

typedef struct metric_family metric_family_t;

/* Returns the family with this name, creating it (idempotent; the first definition
 * wins). buckets: ascending upper bounds for histograms (+Inf is implicit). Never NULL
 * except on out-of-memory. */
metric_family_t *metrics_family(const char *name, const char *help, metric_type_t type, const double *buckets,
                                size_t n_buckets);

/* Slot base of the series with labels (preformatted: `method="GET",route="/health"`,
 * values escaped with metrics_escape; "" for none), creating it. Idempotent. Takes a
 * mutex: call once and cache the result. Returns UINT32_MAX when the slot space is full. */
uint32_t metrics_series(metric_family_t *f, const char *labels);

/* Calls fn with the labels of each series of f whose labels start with prefix, in creation
 * order (series are never removed). Takes the registry's mutex: fn must not call back into
 * the registry. */
typedef void (*metrics_series_fn)(const char *labels, void *arg);
void metrics_series_each(metric_family_t *f, const char *prefix, metrics_series_fn fn, void *arg);

void metrics_counter_add(uint32_t slot, uint64_t v);
void metrics_histogram_observe(const metric_family_t *f, uint32_t slot, double v);
void metrics_gauge_set(uint32_t slot, double v);

/* Sum of a counter slot over all shards (tests, the monitor loop). */
uint64_t metrics_counter_value(uint32_t slot);
/* Histogram totals and an estimated quantile (linear within the bucket), as Prometheus'
 * histogram_quantile does. */
uint64_t metrics_histogram_count(const metric_family_t *f, uint32_t slot);
double metrics_histogram_quantile(const metric_family_t *f, uint32_t slot, double q);

/* A scrape-time collector appends complete exposition lines (with HELP/TYPE) to out. */
typedef void (*metrics_collector_fn)(FILE *out, void *arg);
void metrics_register_collector(metrics_collector_fn fn, void *arg);

/* Renders every family and collector in the text format (version 0.0.4) into a
 * malloc'd buffer; caller frees. */
char *metrics_render(size_t *ret_len);

/* Escapes a label value (backslash, quote, newline) into out (NUL-terminated, truncated
 * to outlen). */
void metrics_escape(const char *in, char *out, size_t outlen);

/* Default latency buckets in seconds (0.5 ms .. 10 s). */
extern const double metrics_latency_buckets[];
extern const size_t metrics_latency_buckets_n;

#endif
