/* SPDX-License-Identifier: Apache-2.0 */
/* Which build this is: the commit it was made from (`git describe --always --dirty`, e.g.
 * "35dca25c1d2e" or "35dca25c1d2e-dirty"), or "unknown" when built outside a git checkout.
 * Shown beside AIMEDRES_VERSION (which every build of a release shares) by --version, the
 * "listening" log line, GET / and /api/v1, and backup manifests' tool_version. */
#ifndef AIMEDRES_COMMON_BUILDINFO_H
#define AIMEDRES_COMMON_BUILDINFO_H

extern const char aimedres_build[];

#endif
