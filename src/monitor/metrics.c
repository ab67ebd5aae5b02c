/* SPDX-License-Identifier: Apache-2.0 */
/* Sharded metrics registry and text exposition; see metrics.h for the design. */
#include "monitor/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

const double metrics_latency_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                          0.1,    0.25,  0.5,    1.0,   2.5,  5.0,   10.0};
const size_t metrics_latency_buckets_n = sizeof(metrics_latency_buckets) / sizeof(metrics_latency_buckets[0]);

typedef struct series {
    struct series *next;
    char *labels;
    uint32_t slot;
} series_t;

struct metric_family {
    struct metric_family *next;
    char *name;
    char *help;
    metric_type_t type;
    size_t n_buckets;
    double buckets[METRICS_MAX_BUCKETS];
    series_t *series, *series_tail;
};

typedef struct collector {
    struct collector *next;
    metrics_collector_fn fn;
    void *arg;
} collector_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static metric_family_t *families, *families_tail;
static collector_t *collectors, *collectors_tail;
static uint32_t next_slot = 0;
static _Atomic(uint64_t *) shards[METRICS_MAX_SHARDS];
static atomic_uint next_shard;
static _Atomic uint64_t gauges[METRICS_MAX_SLOTS]; /* double bits for METRIC_GAUGE slots */
static _Thread_local _Atomic uint64_t *tls_shard;

/* The calling thread's shard, allocated on first use. calloc of 512 KiB is served by
 * fresh zero pages, so unused slots cost no resident memory. */
static _Atomic uint64_t *my_shard(void)
{
    if (tls_shard)
        return tls_shard;
    unsigned idx = atomic_fetch_add(&next_shard, 1);
    if (idx >= METRICS_MAX_SHARDS)
        idx = METRICS_MAX_SHARDS - 1;
    uint64_t *s = atomic_load(&shards[idx]);
    if (!s) {
        uint64_t *fresh = calloc(METRICS_MAX_SLOTS, sizeof(uint64_t));
        if (!fresh)
            abort();
        uint64_t *expected = NULL;
        if (atomic_compare_exchange_strong(&shards[idx], &expected, fresh))
            s = fresh;
        else {
            free(fresh);
            s = expected;
        }
    }
    tls_shard = (_Atomic uint64_t *)s;
    return tls_shard;
}

metric_family_t *metrics_family(const char *name, const char *help, metric_type_t type, const double *buckets,
                                size_t n_buckets)
{
    pthread_mutex_lock(&lock);
    metric_family_t *f;
    for (f = families; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            goto out;
    f = calloc(1, sizeof(*f));
    if (!f)
        goto out;
    f->name = strdup(name);
    f->help = strdup(help);
    f->type = type;
    if (type == METRIC_HISTOGRAM) {
        f->n_buckets = n_buckets > METRICS_MAX_BUCKETS ? METRICS_MAX_BUCKETS : n_buckets;
        memcpy(f->buckets, buckets, f->n_buckets * sizeof(double));
    }
    if (!f->name || !f->help) {
        free(f->name);
        free(f->help);
        free(f);
        f = NULL;
        goto out;
    }
    if (families_tail)
        families_tail->next = f;
    else
        families = f;
    families_tail = f;
out:
    pthread_mutex_unlock(&lock);
    return f;
}

static uint32_t slots_per_series(const metric_family_t *f)
{
    /* histogram: one per bucket, +Inf, count, sum */
    return f->type == METRIC_HISTOGRAM ? (uint32_t)f->n_buckets + 3 : 1;
}

uint32_t metrics_series(metric_family_t *f, const char *labels)
{
    if (!f)
        return UINT32_MAX;
    uint32_t slot = UINT32_MAX;
    pthread_mutex_lock(&lock);
    for (series_t *s = f->series; s; s = s->next)
        if (strcmp(s->labels, labels) == 0) {
            slot = s->slot;
            goto out;
        }
    uint32_t need = slots_per_series(f);
    if (next_slot + need > METRICS_MAX_SLOTS)
        goto out;
    series_t *s = calloc(1, sizeof(*s));
    if (!s || !(s->labels = strdup(labels))) {
        free(s);
        goto out;
    }
    s->slot = next_slot;
    next_slot += need;
    if (f->series_tail)
        f->series_tail->next = s;
    else
        f->series = s;
    f->series_tail = s;
    slot = s->slot;
out:
    pthread_mutex_unlock(&lock);
    return slot;
}

void metrics_series_each(metric_family_t *f, const char *prefix, metrics_series_fn fn, void *arg)
{
    if (!f)
        return;
    size_t n = strlen(prefix);
    pthread_mutex_lock(&lock);
    for (series_t *s = f->series; s; s = s->next)
        if (strncmp(s->labels, prefix, n) == 0)
            fn(s->labels, arg);
    pthread_mutex_unlock(&lock);
}

void metrics_counter_add(uint32_t slot, uint64_t v)
{
    if (slot >= METRICS_MAX_SLOTS)
        return;
    atomic_fetch_add_explicit(&my_shard()[slot], v, memory_order_relaxed);
}

void metrics_histogram_observe(const metric_family_t *f, uint32_t slot, double v)
{
    if (!f || slot >= METRICS_MAX_SLOTS)
        return;
    _Atomic uint64_t *sh = my_shard();
    size_t b = 0;
    while (b < f->n_buckets && v > f->buckets[b])
        b++;
    atomic_fetch_add_explicit(&sh[slot + b], 1, memory_order_relaxed); /* b == n_buckets: +Inf */
    atomic_fetch_add_explicit(&sh[slot + f->n_buckets + 1], 1, memory_order_relaxed);
    double ns = v > 0 ? v * 1e9 : 0;
    atomic_fetch_add_explicit(&sh[slot + f->n_buckets + 2], (uint64_t)llround(ns), memory_order_relaxed);
}

void metrics_gauge_set(uint32_t slot, double v)
{
    if (slot >= METRICS_MAX_SLOTS)
        return;
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    atomic_store_explicit(&gauges[slot], bits, memory_order_relaxed);
}

static double gauge_get(uint32_t slot)
{
    uint64_t bits = atomic_load_explicit(&gauges[slot], memory_order_relaxed);
    double v;
    memcpy(&v, &bits, sizeof(v));
    return v;
}

uint64_t metrics_counter_value(uint32_t slot)
{
    if (slot >= METRICS_MAX_SLOTS)
        return 0;
    uint64_t sum = 0;
    for (size_t i = 0; i < METRICS_MAX_SHARDS; i++) {
        uint64_t *s = atomic_load(&shards[i]);
        if (s)
            sum += atomic_load_explicit((_Atomic uint64_t *)&s[slot], memory_order_relaxed);
    }
    return sum;
}

uint64_t metrics_histogram_count(const metric_family_t *f, uint32_t slot)
{
    return f ? metrics_counter_value(slot + (uint32_t)f->n_buckets + 1) : 0;
}

double metrics_histogram_quantile(const metric_family_t *f, uint32_t slot, double q)
{
    if (!f || slot >= METRICS_MAX_SLOTS)
        return NAN;
    uint64_t counts[METRICS_MAX_BUCKETS + 1];
    uint64_t total = 0;
    for (size_t b = 0; b <= f->n_buckets; b++) {
        counts[b] = metrics_counter_value(slot + (uint32_t)b);
        total += counts[b];
    }
    if (total == 0)
        return NAN;
    double rank = q * (double)total;
    uint64_t cum = 0;
    for (size_t b = 0; b <= f->n_buckets; b++) {
        uint64_t prev = cum;
        cum += counts[b];
        if ((double)cum >= rank) {
            if (b == f->n_buckets) /* +Inf bucket: the highest finite bound, as Prometheus does */
                return f->n_buckets ? f->buckets[f->n_buckets - 1] : NAN;
            double lo = b == 0 ? 0.0 : f->buckets[b - 1], hi = f->buckets[b];
            double in = counts[b] ? (rank - (double)prev) / (double)counts[b] : 0.0;
            return lo + (hi - lo) * in;
        }
    }
    return f->n_buckets ? f->buckets[f->n_buckets - 1] : NAN;
}

void metrics_register_collector(metrics_collector_fn fn, void *arg)
{
    collector_t *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->fn = fn;
    c->arg = arg;
    pthread_mutex_lock(&lock);
    if (collectors_tail)
        collectors_tail->next = c;
    else
        collectors = c;
    collectors_tail = c;
    pthread_mutex_unlock(&lock);
}

void metrics_escape(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
    for (; *in && o + 3 < outlen; in++) {
        if (*in == '\\' || *in == '"') {
            out[o++] = '\\';
            out[o++] = *in;
        } else if (*in == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *in;
        }
    }
    out[o] = '\0';
}

static void print_double(FILE *out, double v)
{
    if (isnan(v))
        fputs("NaN", out);
    else if (isinf(v))
        fputs(v > 0 ? "+Inf" : "-Inf", out);
    else {
        /* shortest text that reads back as the same double: 0.1, not 0.10000000000000001 */
        char buf[32];
        for (int prec = 6; prec <= 17; prec++) {
            snprintf(buf, sizeof(buf), "%.*g", prec, v);
            if (strtod(buf, NULL) == v)
                break;
        }
        fputs(buf, out);
    }
}

static void render_series(FILE *out, const metric_family_t *f, const series_t *s)
{
    const char *sep = s->labels[0] ? "," : "";
    switch (f->type) {
    case METRIC_COUNTER:
        fprintf(out, "%s%s%s%s %llu\n", f->name, s->labels[0] ? "{" : "", s->labels, s->labels[0] ? "}" : "",
                (unsigned long long)metrics_counter_value(s->slot));
        break;
    case METRIC_GAUGE:
        fprintf(out, "%s%s%s%s ", f->name, s->labels[0] ? "{" : "", s->labels, s->labels[0] ? "}" : "");
        print_double(out, gauge_get(s->slot));
        fputc('\n', out);
        break;
    case METRIC_HISTOGRAM: {
        uint64_t cum = 0;
        for (size_t b = 0; b <= f->n_buckets; b++) {
            cum += metrics_counter_value(s->slot + (uint32_t)b);
            fprintf(out, "%s_bucket{%s%sle=\"", f->name, s->labels, sep);
            if (b == f->n_buckets)
                fputs("+Inf", out);
            else
                print_double(out, f->buckets[b]);
            fprintf(out, "\"} %llu\n", (unsigned long long)cum);
        }
        /* _count is the +Inf bucket of this same pass (the count slot, read separately, could be
         * ahead of the buckets under concurrent observations: Prometheus requires them equal) */
        uint64_t count = cum;
        double sum = (double)metrics_counter_value(s->slot + (uint32_t)f->n_buckets + 2) / 1e9;
        fprintf(out, "%s_sum%s%s%s ", f->name, s->labels[0] ? "{" : "", s->labels, s->labels[0] ? "}" : "");
        print_double(out, sum);
        fprintf(out, "\n%s_count%s%s%s %llu\n", f->name, s->labels[0] ? "{" : "", s->labels,
                s->labels[0] ? "}" : "", (unsigned long long)count);
        break;
    }
    }
}

static const char *type_name(metric_type_t t)
{
    return t == METRIC_COUNTER ? "counter" : t == METRIC_GAUGE ? "gauge" : "histogram";
}

char *metrics_render(size_t *ret_len)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    if (!out)
        return NULL;
    /* The lock only guards the family and series lists (appended on first use of a label
     * set, never on the hot path); the values are read with atomic loads. */
    pthread_mutex_lock(&lock);
    for (metric_family_t *f = families; f; f = f->next) {
        if (!f->series)
            continue;
        fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, type_name(f->type));
        for (series_t *s = f->series; s; s = s->next)
            render_series(out, f, s);
    }
    collector_t *cols = collectors;
    pthread_mutex_unlock(&lock);
    for (collector_t *c = cols; c; c = c->next)
        c->fn(out, c->arg);
    fclose(out);
    if (ret_len)
        *ret_len = len;
    return buf;
}
