/* SPDX-License-Identifier: Apache-2.0 */
/* Population stability index and binned Kolmogorov-Smirnov statistic; see drift.h. */
#include "monitor/drift.h"

#include <math.h>
#include <stdbool.h>

/* Largest i in [0, n_bins-1] with v >= edges[i] (i >= 1), else 0: binary search. as_f32: each
 * edge rounded to float32 first (v is then a float32 value widened, so the comparison is the
 * float32 one). */
static size_t bin_of(const double *edges, size_t n_bins, double v, bool as_f32)
{
    size_t lo = 0, hi = n_bins - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo + 1) / 2;
        if (v >= (as_f32 ? (double)(float)edges[mid] : edges[mid]))
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

size_t drift_bin_of(const double *edges, size_t n_bins, double v)
{
    return bin_of(edges, n_bins, v, false);
}

size_t drift_bin_of_f32(const double *edges, size_t n_bins, float v)
{
    return bin_of(edges, n_bins, (double)v, true);
}

static double share(uint64_t c, uint64_t total)
{
    return (double)c / (double)total;
}

double drift_psi(const uint64_t *counts, const double *base_probs, size_t n_bins)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n_bins; i++)
        total += counts[i];
    if (total == 0)
        return NAN;
    double psi = 0;
    for (size_t i = 0; i < n_bins; i++) {
        double a = share(counts[i], total), e = base_probs[i];
        if (a < DRIFT_PSI_EPS)
            a = DRIFT_PSI_EPS;
        if (!(e >= DRIFT_PSI_EPS))
            e = DRIFT_PSI_EPS;
        psi += (a - e) * log(a / e);
    }
    return psi;
}

double drift_ks(const uint64_t *counts, const double *base_probs, size_t n_bins)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n_bins; i++)
        total += counts[i];
    if (total == 0)
        return NAN;
    double ca = 0, ce = 0, ks = 0;
    for (size_t i = 0; i < n_bins; i++) {
        ca += share(counts[i], total);
        ce += base_probs[i];
        double d = fabs(ca - ce);
        if (d > ks)
            ks = d;
    }
    return ks > 1.0 ? 1.0 : ks;
}
