# SPDX-License-Identifier: Apache-2.0
"""Boosters a team brings from Python that must not be served as they are (review16).

libxgboost trusts a booster file: a split on a feature the booster does not have, a child
index outside its tree or a loop makes it read out of bounds or never return. `model import`
(and every load in the server) refuses them first, naming the fault, and registers nothing.
Also: a booster saved after early stopping (which rounds were validated is ambiguous),
a booster whose output is not finite (refused at import, a 500 when served, never a null),
a file whose content is not what its name says, and quoted header names with blanks."""

import csv
import hashlib
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import xgboost as xgb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import aimedres_harness as h  # noqa: E402
from test_xgboost_equality import FEATURES, labels_for, make_data, make_root, write_csv  # noqa: E402

ROUNDS = 12


@pytest.fixture(scope="module")
def env_root(tmp_path_factory):
    root = make_root(tmp_path_factory, "import-safety")
    # one good model first: the store exists, and every refusal below must leave it as it is
    booster, _, _, data_csv = train(root, "binary", seed=6)
    good = os.path.join(root, "boosters", "base.json")
    booster.save_model(good)
    r = do_import(root, good, data_csv, "base")
    assert r.returncode == 0, r.stderr[-1000:]
    return root


def train(env_root, task, seed=1, rounds=ROUNDS):
    x, score = make_data(seed)
    y = labels_for(task, score)
    params = {"binary": {"objective": "binary:logistic"},
              "multiclass": {"objective": "multi:softprob", "num_class": 3},
              "regression": {"objective": "reg:squarederror"}}[task]
    booster = xgb.train(dict(params, max_depth=3, eta=0.3, seed=seed, nthread=1),
                        xgb.DMatrix(x, label=y, missing=np.nan, feature_names=FEATURES), num_boost_round=rounds)
    data_csv = os.path.join(env_root, "data", "%s-%d.csv" % (task, seed))
    write_csv(data_csv, x, y, task)
    return booster, x, y, data_csv


def save_edited(env_root, booster, name, edit, ext="json"):
    """booster's JSON, edited by edit(model dict), saved as boosters/<name>.<ext>."""
    path = os.path.join(env_root, "boosters", "%s.json" % name)
    booster.save_model(path)
    with open(path) as f:
        j = json.load(f)
    edit(j)
    out = os.path.join(env_root, "boosters", "%s.%s" % (name, ext))
    with open(out, "w") as f:
        json.dump(j, f)
    return out


def do_import(env_root, booster_path, data_csv, name, *extra):
    return h.run_cli(["model", "import", "--booster", booster_path, "--data", data_csv, "--label", "outcome",
                      "--name", name, "--version", "1"] + list(extra), env=h.demo_env(env_root), timeout=60)


def registered(env_root):
    r = h.run_cli(["model", "list", "--json"], env=h.demo_env(env_root))
    assert r.returncode == 0, r.stderr
    return {(m["name"], m["version"]) for m in json.loads(r.stdout)}


def trees(j):
    return j["learner"]["gradient_booster"]["model"]["trees"]


def gbparam(j):
    return j["learner"]["gradient_booster"]["model"]["gbtree_model_param"]


def set_node(tree_no, key, node, value):
    def edit(j):
        trees(j)[tree_no][key][node] = value
    return edit


def loop(j):
    t = trees(j)[0]
    t["left_children"][1] = 0
    t["right_children"][1] = 0


def shared_child(j):
    t = trees(j)[0]
    t["right_children"][0] = t["left_children"][0]


def group(j):
    j["learner"]["gradient_booster"]["model"]["tree_info"][0] = 1000


MALFORMED = [
    ("feature7", set_node(0, "split_indices", 0, 7), "tree 0 node 0 splits on feature 7; the booster has 6 features"),
    ("feature1e8", set_node(0, "split_indices", 0, 10 ** 8), "splits on feature 100000000"),
    ("outside", set_node(3, "left_children", 0, 10 ** 6), "tree 3 node 0 has a child index outside the tree"),
    ("loop", loop, "tree 0 node 1 leads back to a node already reached"),
    ("shared", shared_child, "leads back to a node already reached"),
    # review49 #2: libxgboost trusts "parents"; one out of range crashed the import (SIGSEGV)
    ("parent", set_node(2, "parents", 3, 10 ** 6), "tree 2 node 3 has a parent outside the tree"),
    # review49 #1: XGBoost 3.1 writes base_score as a vector, which libxgboost 1.7 reads as 0.5
    ("base_vector", lambda j: j["learner"]["learner_model_param"].update(base_score="[3.7E-1]"),
     "base_score is [3.7E-1], not one number"),
    # review51 #1: libxgboost trusts the trees' ids (one given twice left a slot empty: SIGSEGV),
    # num_trees (tree_info read past its end, or an 8 GB allocation) and num_parallel_tree (a
    # 32-bit product wrapping to 0: SIGFPE)
    ("dup_id", lambda j: trees(j)[1].update(id=0), "tree 1 has id out of place"),
    ("num_trees", lambda j: gbparam(j).update(num_trees="2147483647"),
     "gbtree_model_param.num_trees is not the number of trees (12)"),
    ("parallel", lambda j: gbparam(j).update(num_parallel_tree="1073741824"),
     "gbtree_model_param.num_parallel_tree is not a count of at least 1"),
    # review53 #6: rounds that do not divide the trees: libxgboost (and the holdout metrics) read
    # 10 of the 12 trees, the served predictor all 12
    ("parallel_5", lambda j: gbparam(j).update(num_parallel_tree="5"), "divide the booster's 12 trees"),
]


@pytest.mark.parametrize("name,edit,why", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_booster_is_refused_and_changes_nothing(env_root, name, edit, why):
    booster, _, _, data_csv = train(env_root, "binary")
    before = registered(env_root)
    path = save_edited(env_root, booster, name, edit)
    r = do_import(env_root, path, data_csv, "bad_" + name)  # a 60 s timeout: a loop used to hang
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr[-2000:])
    assert "booster is malformed: " in r.stderr and why in r.stderr, r.stderr[-2000:]
    assert registered(env_root) == before

    # and the server, which checks every model it loads, refuses it too (a model put in
    # place by hand, or registered by an older version): it serves the others and answers 503
    # for this one, its log saying why
    vdir = os.path.join(env_root, "models", "bad_" + name, "1")
    if name == "feature7":
        good = os.path.join(env_root, "boosters", "good.json")
        booster.save_model(good)
        r = do_import(env_root, good, data_csv, "bad_" + name)
        assert r.returncode == 0, r.stderr[-1000:]
        with open(path, "rb") as f:
            bad = f.read()
        with open(os.path.join(vdir, "model.json"), "wb") as f:
            f.write(bad)
        man_path = os.path.join(vdir, "manifest.json")
        with open(man_path) as f:
            man = json.load(f)
        man["booster"]["sha256"] = hashlib.sha256(bad).hexdigest()
        with open(man_path, "w") as f:
            json.dump(man, f)
        srv = h.Server(env_root)
        srv.start()
        try:
            h.assert_error_body(srv.predict("bad_" + name, {"features": {"age": 50}}), 503, "model_unavailable")
        finally:
            rc, killed = srv.stop()
        assert rc == 0 and not killed
        assert why in srv.log_text(), srv.log_tail()


def test_malformed_multiclass_group_is_refused(env_root):
    booster, _, _, data_csv = train(env_root, "multiclass", seed=2)
    path = save_edited(env_root, booster, "group", group)
    r = do_import(env_root, path, data_csv, "bad_group")
    assert r.returncode == 1 and "tree 0 adds to output 1000; the booster has 3" in r.stderr, r.stderr[-2000:]
    assert ("bad_group", "1") not in registered(env_root)


def test_a_multi_output_booster_is_named_as_such(env_root):
    """review49 #4: a multi-output regression booster (num_target 2) was refused as "malformed"
    by the check before libxgboost reads it, not with the message that says what it is."""
    x, score = make_data(3)
    _, _, _, data_csv = train(env_root, "regression", seed=3)
    booster = xgb.train({"tree_method": "hist", "max_depth": 2, "nthread": 1},
                        xgb.DMatrix(x, label=np.c_[score, -score], missing=np.nan, feature_names=FEATURES),
                        num_boost_round=3)
    path = os.path.join(env_root, "boosters", "two_targets.json")
    booster.save_model(path)
    before = registered(env_root)
    r = do_import(env_root, path, data_csv, "two_targets")
    assert r.returncode == 1 and "multi-output boosters (num_target=2) are not supported" in r.stderr, r.stderr[-1000:]
    assert "malformed" not in r.stderr, r.stderr[-1000:]
    assert registered(env_root) == before


def test_a_corrupt_ubj_booster_is_refused_not_crashed_on(env_root):
    """review49 #3: a .ubj booster reached libxgboost's loader unchecked (only JSON was checked
    first): single corrupt bytes crashed the import (SIGSEGV, SIGABRT) or hung it while its
    memory grew. The UBJSON is now decoded and checked first, every count against the bytes
    left. 60 single-byte corruptions of one booster, chosen by a fixed seed: each is refused
    with a reason or imported, never a crash or a hang."""
    import random

    booster, _, _, data_csv = train(env_root, "binary", seed=4)
    good = os.path.join(env_root, "boosters", "fuzz-good.ubj")
    booster.save_model(good)
    raw = bytearray(open(good, "rb").read())
    rnd = random.Random(49)
    before = registered(env_root)
    crashes = []
    for k in range(60):
        bad = bytearray(raw)
        i = rnd.randrange(len(bad))
        bad[i] = rnd.randrange(256)
        path = os.path.join(env_root, "boosters", "fuzz-%d.ubj" % k)
        with open(path, "wb") as f:
            f.write(bad)
        try:  # bytes: libxgboost's messages may quote the corrupt bytes
            r = subprocess.run([h.require_binary(), "model", "import", "--booster", path, "--data", data_csv,
                                "--label", "outcome", "--name", "fuzz_%d" % k, "--version", "1"],
                               env=h.base_env(h.demo_env(env_root)), capture_output=True, timeout=60)
        except subprocess.TimeoutExpired:
            crashes.append((k, i, "hung"))
            continue
        if r.returncode not in (0, 1):
            crashes.append((k, i, r.returncode, r.stderr[-300:]))
    assert not crashes, crashes
    assert set(before) <= set(registered(env_root))


def _ubj(v):
    """UBJSON of v (a list of (key, value) pairs stands for an object that may repeat a key)."""
    import struct

    def n(k):
        return b"L" + struct.pack(">q", k)
    if isinstance(v, Pairs):
        return b"{" + b"".join(n(len(k.encode())) + k.encode() + _ubj(x) for k, x in v) + b"}"
    if isinstance(v, dict):
        return _ubj(Pairs(v.items()))
    if isinstance(v, list):
        return b"[" + b"".join(_ubj(x) for x in v) + b"]"
    if isinstance(v, bool):
        return b"T" if v else b"F"
    if v is None:
        return b"Z"
    if isinstance(v, int):
        return b"L" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"d" + struct.pack(">f", v)  # libxgboost reads float32 only
    return b"S" + n(len(v.encode())) + v.encode()


class Pairs(list):
    pass


def test_a_ubj_key_given_twice_is_refused(env_root):
    """review50 #1: the UBJSON check kept the last of two values of one key (jansson), while
    libxgboost reads the first: an out-of-range "parents" first and a good one last passed the
    check and crashed the import. A key given twice (or holding a NUL byte, which cut it) is
    refused. The booster's own JSON, written as UBJSON here, imports as it is."""
    booster, _, _, data_csv = train(env_root, "binary", seed=5)
    j = json.loads(booster.save_raw("json"))
    plain = os.path.join(env_root, "boosters", "by-hand.ubj")
    with open(plain, "wb") as f:
        f.write(_ubj(j))
    r = do_import(env_root, plain, data_csv, "by_hand")
    assert r.returncode == 0, r.stderr[-1000:]
    tree = trees(j)[0]
    bad_parents = list(tree["parents"])
    bad_parents[3] = 10 ** 6
    trees(j)[0] = Pairs([("parents", bad_parents)] + list(tree.items()))
    assert_ubj_refused(env_root, j, "twice", data_csv, "a key given twice in one object")


def assert_ubj_refused(env_root, j, name, data_csv, why):
    """j written as boosters/<name>.ubj: its import fails saying why, and registers nothing."""
    path = os.path.join(env_root, "boosters", name + ".ubj")
    with open(path, "wb") as f:
        f.write(_ubj(j))
    before = registered(env_root)
    r = do_import(env_root, path, data_csv, name)
    assert r.returncode == 1 and why in r.stderr, (r.returncode, r.stderr[-1000:])
    assert registered(env_root) == before


def test_a_booster_saved_before_xgboost_1_6_still_imports(env_root):
    """review53 #1: XGBoost before 1.6 did not write gbtree_model_param.num_parallel_tree, which
    libxgboost reads as 1; the check of review51 #1 refused such boosters as malformed, and a
    model registered with one stopped loading after the upgrade."""
    booster, _, _, data_csv = train(env_root, "binary", seed=9)
    path = save_edited(env_root, booster, "before_1_6", lambda j: gbparam(j).pop("num_parallel_tree"))
    r = do_import(env_root, path, data_csv, "before_1_6")
    assert r.returncode == 0, r.stderr[-1000:]
    assert ("before_1_6", "1") in registered(env_root)


def test_tree_ids_and_counts_are_checked_in_ubj_too(env_root):
    """review51 #1, the UBJSON form: a repeated tree id crashed the import (SIGSEGV) there too."""
    booster, _, _, data_csv = train(env_root, "binary", seed=7)
    j = json.loads(booster.save_raw("json"))
    trees(j)[2]["id"] = 1
    assert_ubj_refused(env_root, j, "dup_id_ubj", data_csv, "tree 2 has id out of place")


def test_a_booster_over_the_size_limit_is_refused_as_such(env_root):
    """review51 #4: the .json path had no limit (50 MB of input took 1.09 GB), and the UBJSON
    limit was worded as "malformed". One limit of keys and values now holds for both, checked
    before jansson builds them, and said as a size limit."""
    _, _, _, data_csv = train(env_root, "binary", seed=8)
    path = os.path.join(env_root, "boosters", "huge.json")
    with open(path, "w") as f:
        f.write("{\"learner\":[" + "0," * (1 << 25) + "0]}")  # 2^25 + 3 keys and values, 64 MiB
    try:
        before = registered(env_root)
        r = do_import(env_root, path, data_csv, "huge")
        assert r.returncode == 1, (r.returncode, r.stderr[-1000:])
        assert "the booster is too large for this server" in r.stderr, r.stderr[-1000:]
        assert "malformed" not in r.stderr, r.stderr[-1000:]
        assert registered(env_root) == before
    finally:
        os.unlink(path)


def test_a_file_that_is_not_what_its_name_says(env_root):
    booster, _, _, data_csv = train(env_root, "binary")
    d = os.path.join(env_root, "boosters")
    empty = os.path.join(d, "empty.json")
    open(empty, "w").close()
    ubj_as_json = os.path.join(d, "ubj_as.json")
    booster.save_model(os.path.join(d, "real.ubj"))
    os.replace(os.path.join(d, "real.ubj"), ubj_as_json)
    json_as_ubj = os.path.join(d, "json_as.ubj")
    booster.save_model(os.path.join(d, "real.json"))
    os.replace(os.path.join(d, "real.json"), json_as_ubj)
    text = os.path.join(d, "notes.json")
    with open(text, "w") as f:
        f.write("not a model\n")
    upper = os.path.join(d, "UPPER.JSON")  # review49 #6: passed import's check, then failed libxgboost's
    booster.save_model(os.path.join(d, "upper.json"))
    os.replace(os.path.join(d, "upper.json"), upper)
    for path, why in ((empty, "is empty: not a booster saved by XGBoost"),
                      (ubj_as_json, "is UBJSON, not JSON: name it .ubj"),
                      (json_as_ubj, "is JSON, not UBJSON: name it .json"),
                      (text, "is not a booster saved by XGBoost")):
        r = do_import(env_root, path, data_csv, "wrong_format")
        assert r.returncode == 1 and why in r.stderr, (path, r.stderr[-1000:])
    r = do_import(env_root, upper, data_csv, "wrong_format")  # a wrong option: usage (2)
    assert r.returncode == 2 and "the extension in lower case (XGBoost picks the format by it); rename it" in r.stderr, \
        r.stderr[-1000:]
    assert ("wrong_format", "1") not in registered(env_root)


def test_early_stopped_booster_needs_its_rounds_said(env_root):
    booster, x, _, data_csv = train(env_root, "binary", seed=3)
    booster.set_attr(best_iteration="3")  # what early_stopping_rounds leaves in the file
    full = os.path.join(env_root, "boosters", "es_full.json")
    booster.save_model(full)
    r = do_import(env_root, full, data_csv, "es")
    assert r.returncode == 1, r.stdout
    assert "best_iteration is 3 but it holds %d rounds" % ROUNDS in r.stderr, r.stderr[-1000:]
    assert "--all-rounds" in r.stderr and "booster[:4]" in r.stderr
    assert ("es", "1") not in registered(env_root)

    # the rounds the team validated, sliced as the message says, import as they are
    best = os.path.join(env_root, "boosters", "es_best.json")
    booster[:4].save_model(best)
    r = do_import(env_root, best, data_csv, "es_best")
    assert r.returncode == 0, r.stderr[-2000:]
    # or every round, said explicitly
    r = do_import(env_root, full, data_csv, "es_all", "--all-rounds")
    assert r.returncode == 0, r.stderr[-2000:]

    srv = h.Server(env_root)
    srv.start()
    try:
        rows = x[:40]
        inst = [{FEATURES[j]: float(v) for j, v in enumerate(row) if not math.isnan(v)} for row in rows]
        dm = xgb.DMatrix(rows, missing=np.nan, feature_names=FEATURES)
        for name, want in (("es_best", booster.predict(dm, iteration_range=(0, 4))),
                           ("es_all", booster.predict(dm))):
            resp = srv.predict(name, {"instances": inst})
            assert resp.status_code == 200, resp.text
            got = np.float32([p["probabilities"]["1"] for p in resp.json()["predictions"]])
            assert np.array_equal(got, np.float32(want)), (name, np.abs(got - want).max())
    finally:
        rc, killed = srv.stop()
    assert rc == 0 and not killed


def test_non_finite_output_refused_at_import_and_never_served_as_null(env_root):
    booster, x, y, data_csv = train(env_root, "regression", seed=4)
    dm = xgb.DMatrix(x, missing=np.nan, feature_names=FEATURES)
    leaves = booster.predict(dm, pred_leaf=True).astype(int)
    # one row whose leaves in trees 0 and 1 overflow float32 when added: that row only
    target = int(np.argmin(x[:, 0]))
    j_leaf = [leaves[target, t] for t in (0, 1)]
    hit = np.all(leaves[:, :2] == j_leaf, axis=1)

    def overflow(j):
        for t, leaf in zip((0, 1), j_leaf):
            trees(j)[t]["base_weights"][leaf] = 3e38
            trees(j)[t]["split_conditions"][leaf] = 3e38
    path = save_edited(env_root, booster, "overflow", overflow)
    b = xgb.Booster()
    b.load_model(path)
    assert np.isinf(b.predict(xgb.DMatrix(x[target:target + 1], missing=np.nan, feature_names=FEATURES))[0])

    r = do_import(env_root, path, data_csv, "overflow")
    assert r.returncode == 1 and "is not finite (infinity)" in r.stderr, r.stderr[-1000:]
    assert ("overflow", "1") not in registered(env_root)

    # registered on data without those rows, it meets one in a request
    keep = os.path.join(env_root, "data", "overflow-kept.csv")
    write_csv(keep, x[~hit], y[~hit], "regression")
    r = do_import(env_root, path, keep, "overflow")
    assert r.returncode == 0, r.stderr[-1000:]
    srv = h.Server(env_root)
    srv.start()
    try:
        row = {FEATURES[j]: float(v) for j, v in enumerate(x[target]) if not math.isnan(v)}
        resp = srv.predict("overflow", {"features": row, "patient_id": "PHI-ZZ-4242"})
        h.assert_error_body(resp, 500, "internal_error")
        ok = srv.predict("overflow", {"features": {FEATURES[j]: float(v) for j, v in enumerate(x[~hit][0])
                                                   if not math.isnan(v)}})
        assert ok.status_code == 200 and math.isfinite(ok.json()["predictions"][0]["value"]), ok.text
    finally:
        rc, killed = srv.stop()
    assert rc == 0 and not killed
    log = srv.log_text()
    assert "row 0: the booster produced a non-finite output (infinity)" in log
    assert "PHI-ZZ-4242" not in log and repr(float(x[target][1])) not in log


def test_quoted_header_names_keep_their_blanks(env_root):
    x, score = make_data(5)
    y = labels_for("binary", score)
    names = [" age", "bmi "] + FEATURES[2:]
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "seed": 5, "nthread": 1},
                        xgb.DMatrix(x, label=y, missing=np.nan, feature_names=names), num_boost_round=5)
    path = os.path.join(env_root, "boosters", "blanks.json")
    booster.save_model(path)

    def write(p, quoting):
        with open(p, "w", newline="") as f:
            w = csv.writer(f, quoting=quoting)
            w.writerow(names + ["outcome"])
            w = csv.writer(f)
            for row, label in zip(x, y):
                w.writerow(["" if math.isnan(v) else repr(float(v)) for v in row] + [str(int(label))])
    quoted = os.path.join(env_root, "data", "blanks-quoted.csv")
    plain = os.path.join(env_root, "data", "blanks-plain.csv")
    write(quoted, csv.QUOTE_ALL)
    write(plain, csv.QUOTE_MINIMAL)
    r = do_import(env_root, path, plain, "blanks")
    assert r.returncode == 1 and "trained with ' age' but column 1 of the data is 'age'" in r.stderr, r.stderr
    r = do_import(env_root, path, quoted, "blanks")
    assert r.returncode == 0, r.stderr[-1000:]


def test_categorical_booster_checked_before_libxgboost_reads_it(env_root):
    """review18: a categorical booster whose categories_segments point past its categories
    crashed libxgboost's loader itself (exit 139), before any check of the loaded model. A
    JSON booster is now checked from the file first. A valid one, and one saved with wide
    indentation, import."""
    rng = np.random.default_rng(7)
    x = np.column_stack([rng.integers(0, 6, 300).astype(float), rng.normal(size=300)])
    y = ((x[:, 0] % 2 == 0) ^ (x[:, 1] > 0)).astype(int)
    dm = xgb.DMatrix(x, label=y, feature_names=["site", "score"], feature_types=["c", "q"],
                     enable_categorical=True)
    booster = xgb.train({"objective": "binary:logistic", "tree_method": "hist", "max_depth": 3,
                         "max_cat_to_onehot": 1, "nthread": 1, "seed": 7}, dm, 5)
    data_csv = os.path.join(env_root, "data", "categorical.csv")
    with open(data_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["site", "score", "outcome"])
        for row, label in zip(x, y):
            w.writerow([repr(float(row[0])), repr(float(row[1])), str(int(label))])
    good = os.path.join(env_root, "boosters", "categorical.json")
    booster.save_model(good)
    with open(good) as f:
        j = json.load(f)
    wide = os.path.join(env_root, "boosters", "categorical-wide.json")
    with open(wide, "w") as f:
        json.dump(j, f, indent=70)
    for path, name in ((good, "cat_ok"), (wide, "cat_wide")):
        r = do_import(env_root, path, data_csv, name)
        assert r.returncode == 0, (name, r.stderr[-1000:])

    def bad_segments(j):
        t = trees(j)[0]
        assert t["categories_segments"], "the first tree has no categorical split"
        t["categories_segments"] = [10 ** 6 for _ in t["categories_segments"]]
    def numeric_node_listed(j):  # review20: crashed libxgboost's export (SIGABRT)
        t = trees(j)[0]
        numeric = [i for i, st in enumerate(t["split_type"]) if st == 0 and t["left_children"][i] != -1]
        assert numeric, "tree 0 has no numeric split"
        t["categories_nodes"][0] = numeric[0]

    def leaf_listed(j):
        t = trees(j)[0]
        t["categories_nodes"][0] = t["left_children"].index(-1)

    def negative_category(j):
        trees(j)[0]["categories"][0] = -1

    for name, edit, why in (("segments", bad_segments, "categorical split 0 points outside its node or category arrays"),
                            ("numeric", numeric_node_listed, "which is not a categorical split"),
                            ("leaf", leaf_listed, "which is not a categorical split"),
                            ("negative", negative_category, "category 0 is not a category number")):
        path = save_edited(env_root, booster, "categorical-" + name, edit)
        r = do_import(env_root, path, data_csv, "cat_bad_" + name)
        assert r.returncode == 1, (name, r.returncode, r.stderr[-1000:])
        assert "booster is malformed: tree 0 " in r.stderr and why in r.stderr, (name, r.stderr[-1000:])
        assert ("cat_bad_" + name, "1") not in registered(env_root)
