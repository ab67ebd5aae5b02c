/* SPDX-License-Identifier: Apache-2.0 */
/* Per model version and arm: predictions, prediction errors and model latency, counted
 * on the request path without a lock (series slots cached per thread). */
#ifndef AIMEDRES_MONITOR_MODELMETRICS_H
#define AIMEDRES_MONITOR_MODELMETRICS_H

#include <stdbool.h>
#include <stddef.h>

/* rows scored (or attempted, when failed) in one call that took seconds. */
void model_metrics_observe(const char *model, const char *version, const char *arm, size_t rows,
                           double seconds, bool failed);

#endif
