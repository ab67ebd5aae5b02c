# SPDX-License-Identifier: Apache-2.0
"""Benchmark peer: the seed's stack (Flask under gunicorn, Python xgboost) serving one model version.

It does the same work per request as `aimedres serve` on POST /api/v1/models/{name}/predict for a
single row: parse the JSON body, validate every feature against the manifest (unknown, missing,
type, range), build the row in manifest order, predict with the same booster file, and answer
with label + class probabilities. It writes nothing (aimedres makes each prediction durable in
SQLite before answering), so the comparison favours this app. Used only by bench/run.sh.

Environment: BENCH_MODEL_DIR = <models>/<name>/<version> holding manifest.json and the booster.
Run: gunicorn -w N --chdir bench flask_app:app
"""

import json
import math
import os
import time
import uuid

import numpy as np
import xgboost as xgb
from flask import Flask, Response, request

MODEL_DIR = os.environ["BENCH_MODEL_DIR"]

with open(os.path.join(MODEL_DIR, "manifest.json"), encoding="utf-8") as fh:
    MANIFEST = json.load(fh)

BOOSTER = xgb.Booster()
BOOSTER_FILE = (MANIFEST.get("booster") or {}).get("file") or MANIFEST.get("booster_file", "model.json")
BOOSTER.load_model(os.path.join(MODEL_DIR, BOOSTER_FILE))
# One prediction thread per worker process: N workers on N cores, as aimedres runs N threads.
# Letting each worker spawn an OpenMP team per core would only oversubscribe the CPUs.
BOOSTER.set_param({"nthread": 1})

NAME = MANIFEST["name"]
VERSION = MANIFEST["version"]
TASK = MANIFEST.get("task", "binary")
LABELS = [str(x) for x in MANIFEST.get("class_labels", [])]
THRESHOLD = float(MANIFEST.get("threshold", 0.5))
# (name, type, required, min, max) in manifest (= booster) order.
FEATURES = [
    (f["name"], f.get("type", "number"), bool(f.get("required", True)), f.get("min"), f.get("max"))
    for f in MANIFEST["features"]
]
INDEX = {f[0]: i for i, f in enumerate(FEATURES)}
MAX_BODY = 1 << 20

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}

app = Flask(__name__)


def reply(status, obj, rid=None):
    resp = Response(json.dumps(obj, separators=(",", ":")), status=status, mimetype="application/json")
    resp.headers.update(SECURITY_HEADERS)
    resp.headers["X-Request-ID"] = rid or str(uuid.uuid4())
    return resp


def error(status, code, message, details=None):
    return reply(status, {"error": {"code": code, "message": message, "details": details}})


def check_value(ftype, v):
    """Returns the value as a float, or None when it has the wrong type."""
    if ftype == "boolean":
        if isinstance(v, bool):
            return float(v)
        if isinstance(v, int) and v in (0, 1):
            return float(v)
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if ftype == "integer" and isinstance(v, float) and not v.is_integer():
        return None
    x = float(v)
    return x if math.isfinite(x) else None


@app.route("/health", methods=["GET"])
def health():
    return reply(200, {"status": "healthy", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "version": "flask-bench"})


@app.route("/api/v1/models/<name>/predict", methods=["POST"])
def predict(name):
    t0 = time.perf_counter()
    if name != NAME:
        return error(404, "model_not_found", "no model named %s" % name)
    if request.mimetype != "application/json":
        return error(415, "unsupported_media_type", "expected Content-Type: application/json")
    if request.content_length is not None and request.content_length > MAX_BODY:
        return error(413, "payload_too_large", "body over %d bytes" % MAX_BODY)
    try:
        body = json.loads(request.get_data(cache=False))
    except ValueError as e:
        return error(400, "invalid_json", str(e))
    if not isinstance(body, dict) or not isinstance(body.get("features"), dict):
        return error(422, "validation_failed", "expected an object with \"features\"")
    pid = body.get("patient_id")
    if pid is not None and not isinstance(pid, str):
        return error(422, "validation_failed", "patient_id must be a string")

    feats = body["features"]
    problems = []
    for k in feats:
        if k not in INDEX:
            problems.append({"feature": k, "problem": "unknown", "message": "not a feature of this model"})
    row = np.full((1, len(FEATURES)), np.nan, dtype=np.float32)
    for i, (fname, ftype, required, lo, hi) in enumerate(FEATURES):
        v = feats.get(fname)
        if v is None:
            if required:
                problems.append({"feature": fname, "problem": "missing", "message": "required"})
            continue
        x = check_value(ftype, v)
        if x is None:
            problems.append({"feature": fname, "problem": "wrong_type", "message": "expected " + ftype})
            continue
        if (lo is not None and x < lo) or (hi is not None and x > hi):
            problems.append({"feature": fname, "problem": "out_of_range",
                             "message": "expected a value in [%s, %s]" % (lo, hi)})
            continue
        row[0, i] = x
    if problems:
        return error(422, "validation_failed", "invalid features", problems)

    out = np.asarray(BOOSTER.inplace_predict(row), dtype=np.float64).reshape(-1)
    if TASK == "regression":
        pred = {"value": float(out[0])}
    elif TASK == "binary":
        p1 = float(out[0])
        pred = {"label": LABELS[1] if p1 >= THRESHOLD else LABELS[0],
                "probabilities": {LABELS[0]: 1.0 - p1, LABELS[1]: p1}}
    else:
        k = int(np.argmax(out))
        pred = {"label": LABELS[k], "probabilities": {LABELS[j]: float(out[j]) for j in range(len(LABELS))}}
    rid = str(uuid.uuid4())
    return reply(200, {
        "prediction_id": str(uuid.uuid4()),
        "request_id": rid,
        "model": NAME,
        "version": VERSION,
        "predictions": [pred],
        "prediction": pred,
        "latency_ms": (time.perf_counter() - t0) * 1000.0,
    }, rid)
