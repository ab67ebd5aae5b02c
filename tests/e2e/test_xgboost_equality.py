# SPDX-License-Identifier: Apache-2.0
"""Predictions served by aimedres equal Python xgboost's for the same booster and rows.

Boosters are trained here with Debian's python3-xgboost (binary:logistic, multi:softprob
with 3 classes, reg:squarederror) on generated data with missing values, saved as JSON
and as UBJSON, imported through `aimedres model import`, served by `aimedres serve`, and
every returned probability or value is compared with Booster.inplace_predict (and the
DMatrix path) within float32 precision."""

import csv
import math
import os
import sys

import numpy as np
import pytest
import xgboost as xgb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import aimedres_harness as h  # noqa: E402

N_ROWS = 400
N_PREDICT = 60
FEATURES = ["age", "bmi", "systolic_bp", "biomarker_a", "biomarker_b", "smoker"]
REL, ABS = 1e-6, 1e-7
TASKS = {
    "binary": {"objective": "binary:logistic"},
    "multiclass": {"objective": "multi:softprob", "num_class": 3},
    "regression": {"objective": "reg:squarederror"},
}


def make_data(seed):
    """Clinical-looking columns: integer age, reals, a 0/1 flag; ~8% missing outside age."""
    rng = np.random.default_rng(seed)
    x = np.empty((N_ROWS, len(FEATURES)), dtype=np.float64)
    x[:, 0] = rng.integers(20, 91, N_ROWS)  # integral: schema type integer
    x[:, 1] = rng.normal(27.0, 4.5, N_ROWS)
    x[:, 2] = rng.normal(128.0, 15.0, N_ROWS)
    x[:, 3] = rng.lognormal(0.0, 0.6, N_ROWS)
    x[:, 4] = rng.uniform(-2.0, 2.0, N_ROWS)
    x[:, 5] = rng.integers(0, 2, N_ROWS)  # 0/1: schema type boolean (or integer)
    mask = rng.random(x.shape) < 0.08
    mask[:, 0] = False
    x[mask] = np.nan
    score = (
        0.04 * (x[:, 0] - 55)
        + 0.15 * np.nan_to_num(x[:, 1] - 27)
        + 0.6 * np.nan_to_num(x[:, 3])
        + 0.8 * np.nan_to_num(x[:, 5])
        + rng.normal(0, 0.5, N_ROWS)
    )
    return x, score


def labels_for(task, score):
    if task == "binary":
        return (score > np.median(score)).astype(np.int64)
    if task == "multiclass":
        q = np.quantile(score, [1 / 3, 2 / 3])
        return np.digitize(score, q).astype(np.int64)  # 0, 1, 2
    return score


def write_csv(path, x, y, task):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(FEATURES + ["outcome"])
        for row, label in zip(x, y):
            cells = ["" if math.isnan(v) else repr(float(v)) for v in row]
            cells.append(str(int(label)) if task != "regression" else repr(float(label)))
            w.writerow(cells)


def instances(x):
    """JSON rows: features with a NaN are omitted; values are Python floats."""
    return [{FEATURES[j]: float(v) for j, v in enumerate(row) if not math.isnan(v)} for row in x]


def close(got, want):
    return math.isfinite(got) and abs(got - want) <= max(ABS, REL * abs(want))


def make_root(tmp_path_factory, name):
    """An empty installation for imported boosters: models/, data/, boosters/."""
    h.require_binary()
    root = str(tmp_path_factory.mktemp(name))
    for d in ("models", "data", "boosters"):
        os.makedirs(os.path.join(root, d))
    return root


@pytest.fixture(scope="module")
def env_root(tmp_path_factory):
    return make_root(tmp_path_factory, "xgb-equality")


@pytest.fixture(scope="module")
def imported(env_root):
    """Trains, saves (.json and .ubj) and imports every booster; returns
    {model name: (python Booster, task, rows used for prediction)}."""
    env = h.demo_env(env_root)
    out = {}
    for seed, (task, params) in enumerate(sorted(TASKS.items()), start=1):
        x, score = make_data(seed)
        y = labels_for(task, score)
        data_csv = os.path.join(env_root, "data", "%s.csv" % task)
        write_csv(data_csv, x, y, task)
        dtrain = xgb.DMatrix(x, label=y, missing=np.nan, feature_names=FEATURES)
        booster = xgb.train(
            dict(params, max_depth=4, eta=0.3, seed=seed, nthread=1), dtrain, num_boost_round=12
        )
        for fmt in ("json", "ubj"):
            path = os.path.join(env_root, "boosters", "%s.%s" % (task, fmt))
            booster.save_model(path)
            name = "eq_%s_%s" % (task, fmt)
            r = h.run_cli(
                ["model", "import", "--booster", path, "--data", data_csv, "--label", "outcome",
                 "--name", name, "--version", "1"],
                env=env,
                timeout=300,
            )
            assert r.returncode == 0, "import %s failed (exit %d)\nstdout:\n%s\nstderr:\n%s" % (
                name, r.returncode, r.stdout[-3000:], r.stderr[-3000:])
            reloaded = xgb.Booster()
            reloaded.load_model(path)  # predict with exactly what was imported
            out[name] = (reloaded, task, x[:N_PREDICT])
    # a linear booster (gblinear), which libxgboost predicts through a DMatrix
    x, score = make_data(9)
    y = labels_for("binary", score)
    data_csv = os.path.join(env_root, "data", "linear.csv")
    write_csv(data_csv, x, y, "binary")
    dtrain = xgb.DMatrix(x, label=y, missing=np.nan, feature_names=FEATURES)
    booster = xgb.train({"objective": "binary:logistic", "booster": "gblinear", "seed": 9, "nthread": 1},
                        dtrain, num_boost_round=10)
    path = os.path.join(env_root, "boosters", "linear.json")
    booster.save_model(path)
    r = h.run_cli(["model", "import", "--booster", path, "--data", data_csv, "--label", "outcome",
                   "--name", "eq_binary_linear", "--version", "1"], env=env, timeout=300)
    assert r.returncode == 0, "import of the gblinear booster failed\n%s" % r.stderr[-3000:]
    reloaded = xgb.Booster()
    reloaded.load_model(path)
    out["eq_binary_linear"] = (reloaded, "binary", x[:N_PREDICT])
    return out


@pytest.fixture(scope="module")
def server(env_root, imported):
    srv = h.Server(env_root)
    try:
        srv.start()
    except Exception:
        srv.stop(timeout=5)
        raise
    yield srv
    rc, killed = srv.stop()
    assert not killed and rc == 0, "server did not stop cleanly (rc=%s)\n%s" % (rc, srv.log_tail())


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("fmt", ["json", "ubj"])
def test_predictions_equal_python_xgboost(server, imported, task, fmt):
    name = "eq_%s_%s" % (task, fmt)
    booster, task_, x = imported[name]
    assert task_ == task
    assert np.isnan(x).any(), "the rows must exercise missing values"
    want = booster.inplace_predict(x, missing=np.nan)
    via_dmatrix = booster.predict(xgb.DMatrix(x, missing=np.nan, feature_names=FEATURES))
    np.testing.assert_allclose(want, via_dmatrix, rtol=REL, atol=ABS)
    check_served(server, name, task, x, want)


def test_gblinear_equals_python_xgboost(server, imported):
    booster, task, x = imported["eq_binary_linear"]
    assert booster.save_config().find('"gblinear"') >= 0
    want = booster.predict(xgb.DMatrix(x, missing=np.nan, feature_names=FEATURES))
    check_served(server, "eq_binary_linear", task, x, want)


def check_served(server, name, task, x, want):
    """The server's batch and single-row answers for rows x equal want (Python's)."""
    # Batch request, then a few single-row requests ({"features": {...}}).
    resp = server.predict(name, {"instances": instances(x)})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == name
    assert body["version"] == "1"
    assert body["prediction_id"]
    preds = body["predictions"]
    assert len(preds) == len(x)
    for i in range(3):
        r1 = server.predict(name, {"features": instances(x[i : i + 1])[0]})
        assert r1.status_code == 200, r1.text
        assert r1.json()["predictions"] == [preds[i]]

    bad = []
    for i, pred in enumerate(preds):
        if task == "regression":
            if not close(pred["value"], float(want[i])):
                bad.append((i, pred["value"], float(want[i])))
            continue
        probs = pred["probabilities"]
        if task == "binary":
            p1 = float(want[i])
            expect = {"0": 1.0 - p1, "1": p1}
            label = "1" if p1 >= 0.5 else "0"
        else:
            expect = {str(k): float(want[i][k]) for k in range(3)}
            label = str(int(np.argmax(want[i])))
        assert set(probs) == set(expect), probs
        for k, v in expect.items():
            if not close(probs[k], v):
                bad.append((i, k, probs[k], v))
        if pred["label"] != label:
            bad.append((i, "label", pred["label"], label))
    assert not bad, "%d mismatches, first: %s" % (len(bad), bad[:5])


def test_manifests_match_boosters(env_root, imported):
    """import wrote a manifest whose schema order and sha256 match the booster files."""
    import hashlib
    import json

    for name, (booster, task, _) in imported.items():
        with open(os.path.join(env_root, "models", name, "1", "manifest.json")) as f:
            m = json.load(f)
        assert m["task"] == task
        assert [f["name"] for f in m["features"]] == FEATURES
        bfile = os.path.join(env_root, "models", name, "1", m["booster"]["file"])
        with open(bfile, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == m["booster"]["sha256"]
        assert m["booster"]["format"] == ("ubj" if name.endswith("_ubj") else "json")
        if task != "regression":
            assert m["class_labels"] == [str(k) for k in range(2 if task == "binary" else 3)]
