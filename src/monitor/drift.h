/* SPDX-License-Identifier: Apache-2.0 */
/* Input drift statistics against a model's training baseline: the bin a value falls in
 * (the same rule training used to build the baseline), the population stability index
 * and the Kolmogorov-Smirnov statistic between binned distributions. Pure functions, no
 * allocation; the monitor applies them to its sliding windows (monitor/quality.h). */
#ifndef AIMEDRES_MONITOR_DRIFT_H
#define AIMEDRES_MONITOR_DRIFT_H

#include <stddef.h>
#include <stdint.h>

/* Proportions below this are raised to it before taking logs, so an empty bin gives a
 * large but finite PSI term instead of infinity (the common 1e-4 convention). */
#define DRIFT_PSI_EPS 1e-4

/* Bin of v for n_bins bins with n_bins+1 ascending edges: bin i holds [e_i, e_i+1), the
 * last bin is closed, values below e_0 go to bin 0 and values above the last edge to the
 * last bin (as model/train.c counted the training values). n_bins must be >= 1. */
size_t drift_bin_of(const double *edges, size_t n_bins, double v);
/* The same for a value the server holds as float32 (the model's input): compared with each edge
 * rounded to float32, so that a value equal to an edge in the data ("0.005") lands in the bin
 * training put it in (float32(0.005) is below the double 0.005). */
size_t drift_bin_of_f32(const double *edges, size_t n_bins, float v);

/* PSI = sum over bins of (a_i - e_i) * ln(a_i / e_i), a_i = counts[i] / total, e_i =
 * base_probs[i], both floored at DRIFT_PSI_EPS. NAN when the counts total 0. */
double drift_psi(const uint64_t *counts, const double *base_probs, size_t n_bins);

/* KS statistic on the binned CDFs: max over bin boundaries of |A(i) - E(i)| with A and E
 * the cumulative shares. In [0, 1]; NAN when the counts total 0. */
double drift_ks(const uint64_t *counts, const double *base_probs, size_t n_bins);

#endif
