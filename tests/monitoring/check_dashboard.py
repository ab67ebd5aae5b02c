#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Checks the shipped Grafana dashboard: valid JSON in Grafana's dashboard model (uid, panels with
gridPos and Prometheus targets), every PromQL expression parses (each becomes a recording rule
checked by `promtool check rules`, after Grafana's variables are replaced by sample values), and
the deployment guide's key metrics are all charted. Used by tests/monitoring/check.sh."""

import json
import os
import re
import subprocess
import sys
import tempfile

KEY_METRICS = (
    "http_requests_total", "http_request_duration_seconds_bucket", "model_predictions_total",
    "model_prediction_duration_seconds_bucket", "model_accuracy", "data_drift_score",
    "data_quality_score", "host_cpu_usage_percent", "host_memory_usage_percent", "host_disk_usage_percent",
)
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "30s", "$__range": "1h", "$job": ".*", "$instance": ".*",
                "$model": ".*"}


def main(path):
    with open(path) as f:
        dash = json.load(f)
    problems = []
    if not dash.get("uid") or not dash.get("title"):
        problems.append("dashboard has no uid or title")
    exprs = []
    for p in dash.get("panels", []):
        if p.get("type") == "row":
            continue
        gp = p.get("gridPos", {})
        if not all(isinstance(gp.get(k), int) for k in ("h", "w", "x", "y")) or gp["x"] + gp["w"] > 24:
            problems.append("panel %r: bad gridPos %r" % (p.get("title"), gp))
        targets = p.get("targets") or []
        if not targets:
            problems.append("panel %r has no targets" % p.get("title"))
        for t in targets:
            if not t.get("expr"):
                problems.append("panel %r: target without expr" % p.get("title"))
            else:
                exprs.append((p.get("title"), t["expr"]))
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("expr"):
            exprs.append(("annotation " + a.get("name", ""), a["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v.get("query"), dict) else v.get("query", "")
            m = re.match(r"label_values\((.*),\s*\w+\)$", q) or re.match(r"label_values\((\w+)\)$", q)
            if not m:
                problems.append("variable %s: unexpected query %r" % (v.get("name"), q))
            else:
                exprs.append(("variable " + v["name"], m.group(1)))
    joined = "\n".join(e for _, e in exprs)
    for metric in KEY_METRICS:
        if metric not in joined:
            problems.append("key metric %s is not on the dashboard" % metric)

    rules = {"groups": [{"name": "dashboard", "rules": []}]}
    for i, (title, expr) in enumerate(exprs):
        e = expr
        for k in sorted(GRAFANA_VARS, key=len, reverse=True):
            e = e.replace(k, GRAFANA_VARS[k])
        if "$" in e:
            problems.append("%s: unknown variable in %r" % (title, expr))
        rules["groups"][0]["rules"].append({"record": "dashboard:expr_%d" % i, "expr": e})
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as tf:
        json.dump(rules, tf)  # JSON is YAML
        tmp = tf.name
    try:
        r = subprocess.run(["promtool", "check", "rules", tmp], capture_output=True, text=True)
        if r.returncode != 0:
            problems.append("promtool rejects a dashboard expression:\n" + r.stdout + r.stderr)
    finally:
        os.unlink(tmp)
    for p in problems:
        print("dashboard: " + p, file=sys.stderr)
    print("dashboard: %d panels, %d expressions checked" % (len(dash.get("panels", [])), len(exprs)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
