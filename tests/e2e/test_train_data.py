# SPDX-License-Identifier: Apache-2.0
"""End-to-end tests of what `model train` and `model import` accept: labels must be the class
indices 0..K-1 with every class present (1/2 or yes/no codings are refused with a recode
hint), mistyped XGBoost parameters are refused instead of silently ignored, degenerate data
(too few rows, a one-row class) is refused and a constant column warned about, a stray
"N/A" cell is named by line without echoing it, and the exit status tells a usage error (2)
from data the model cannot be made of (1), with nothing left behind either way."""

import json
import os
import random

import pytest

import aimedres_harness as h


def out(r):
    return r.stdout + r.stderr


def write_csv(path, rows, header="age,score,outcome"):
    with open(path, "w") as f:
        f.write(header + "\n")
        for row in rows:
            f.write(",".join(str(v) for v in row) + "\n")
    return str(path)


def base_rows(n=200, labels=(0, 1)):
    rnd = random.Random(1)
    rows = []
    for i in range(n):
        k = i % len(labels)
        rows.append(["%.3f" % rnd.gauss(50 + 10 * k, 5), "%.3f" % rnd.gauss(1.0 - 0.3 * k, 0.2), labels[k]])
    return rows


@pytest.fixture
def env(tmp_path):
    root = tmp_path / "store"
    return {
        "MODEL_STORAGE_PATH": str(root / "models"),
        "DATA_DIR": str(root / "data"),
        "DATABASE_URL": "sqlite://" + str(root / "aimedres.db"),
    }


def train(env, data, name, *extra):
    return h.run_cli(["model", "train", "--data", data, "--label", "outcome", "--name", name, "--version", "1"]
                     + list(extra), env=env, timeout=120)


def assert_nothing_left(env, name):
    models = env["MODEL_STORAGE_PATH"]
    left = [e for e in os.listdir(models)] if os.path.isdir(models) else []
    assert name not in left and not [e for e in left if e.startswith(".")], left
    assert not os.path.exists(os.path.join(env["DATA_DIR"], "baseline", name + "_validation.csv"))


# --------------------------------------------------------------------------- labels


def test_labels_coded_1_2_are_refused(env, tmp_path):
    data = write_csv(tmp_path / "lab12.csv", base_rows(labels=(1, 2)))
    r = train(env, data, "lab12")
    assert r.returncode == 1, out(r)
    assert "no rows of class 0:" in r.stderr and "every class present" in r.stderr, out(r)
    assert "recode the label column to 0..1" in r.stderr and "--class-labels" in r.stderr, out(r)
    assert_nothing_left(env, "lab12")


def test_text_labels_hint_at_recoding(env, tmp_path):
    data = write_csv(tmp_path / "strlab.csv", base_rows(labels=("no", "yes")))
    r = train(env, data, "strlab")
    assert r.returncode == 1, out(r)
    assert "not a number at line 2" in r.stderr, out(r)
    assert "recode the label column to 0..K-1" in r.stderr and "--class-labels" in r.stderr, out(r)
    assert "--class-labels" in h.run_cli(["model", "train", "--help"]).stdout
    assert_nothing_left(env, "strlab")


# --------------------------------------------------------------------------- parameters


def test_mistyped_param_is_refused(env, tmp_path):
    data = write_csv(tmp_path / "base.csv", base_rows())
    r = train(env, data, "typo", "--param", "max_dpeth=8")
    assert r.returncode == 2, out(r)
    assert "unknown XGBoost parameter(s): max_dpeth" in r.stderr, out(r)
    assert_nothing_left(env, "typo")
    # the spelled-right parameter trains and is recorded as applied
    r = train(env, data, "typo", "--param", "max_depth=8")
    assert r.returncode == 0, out(r)
    man = json.load(open(os.path.join(env["MODEL_STORAGE_PATH"], "typo", "1", "manifest.json")))
    assert man["provenance"]["params"]["max_depth"] == "8"


def test_num_class_on_binary_data_names_the_task(env, tmp_path):
    data = write_csv(tmp_path / "base.csv", base_rows())
    r = train(env, data, "nc", "--param", "num_class=2")
    assert r.returncode == 2, out(r)
    assert "0 classes" not in r.stderr and "binary model" in r.stderr, out(r)


# --------------------------------------------------------------------------- degenerate data


def test_single_row_class_and_few_rows_are_refused(env, tmp_path):
    rows = base_rows(20)
    for i, row in enumerate(rows):
        row[2] = 1 if i == 0 else 0
    r = train(env, write_csv(tmp_path / "one_pos.csv", rows), "onepos")
    assert r.returncode == 1 and "class 1 has 1 row" in r.stderr and "at least 2 rows" in r.stderr, out(r)
    assert_nothing_left(env, "onepos")
    r = train(env, write_csv(tmp_path / "few.csv", base_rows(4)), "few")
    assert r.returncode == 1 and "4 data rows" in r.stderr and "at least 10" in r.stderr, out(r)
    assert_nothing_left(env, "few")


def test_constant_column_trains_with_a_warning(env, tmp_path):
    rows = [[a, b, 7, y] for a, b, y in base_rows()]
    data = write_csv(tmp_path / "const.csv", rows, header="age,score,k,outcome")
    r = train(env, data, "const")
    assert r.returncode == 0, out(r)
    assert "warning: column 'k' has the same value in every row" in r.stderr and "--drop k" in r.stderr, out(r)
    r = train(env, data, "const2", "--drop", "k")
    assert r.returncode == 0 and "warning" not in r.stderr, out(r)


@pytest.mark.parametrize("cell", ["N/A", "NULL", "?"])
def test_stray_missing_marker_is_named_not_echoed(env, tmp_path, cell):
    rows = base_rows()
    rows[2][0] = cell  # line 4
    r = train(env, write_csv(tmp_path / "stray.csv", rows), "stray")
    assert r.returncode == 1, out(r)
    assert "line 4, column 'age': value is not a number" in r.stderr, out(r)
    assert "only an empty cell, NA or nan mean missing" in r.stderr, out(r)
    assert "not numeric" not in r.stderr and cell not in r.stderr, out(r)
    assert_nothing_left(env, "stray")


# --------------------------------------------------------------------------- exit status


@pytest.mark.parametrize("extra", [
    ["--task", "foo"],
    ["--param", "eta"],
    ["--param", "max_dpeth=8"],
    ["--param", "validate_parameters=0"],
    ["--units", "age"],
    ["--units", "nope=mg"],
    ["--rounds", "0"],
    ["--seed", "abc"],
    ["--drop", "nope"],
    ["--class-labels", "a,b,c"],
    ["--param", "objective=multi:softmax"],
])
def test_train_usage_errors_exit_2(env, tmp_path, extra):
    data = write_csv(tmp_path / "base.csv", base_rows())
    r = train(env, data, "usage", *extra)
    assert r.returncode == 2, "%s -> %d\n%s" % (extra, r.returncode, out(r))
    assert r.stderr.strip()
    assert_nothing_left(env, "usage")


def test_import_exit_status(env, tmp_path):
    xgb = pytest.importorskip("xgboost")
    np = pytest.importorskip("numpy")
    rows = base_rows()
    data = write_csv(tmp_path / "base.csv", rows)
    x = np.array([[float(a), float(b), 1.0] for a, b, _ in rows])
    y = np.array([float(v) for _, _, v in rows])
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2},
                        xgb.DMatrix(x, label=y, feature_names=["age", "score", "extra"]), 5)
    bpath = str(tmp_path / "three.json")
    booster.save_model(bpath)
    imp = ["model", "import", "--data", data, "--label", "outcome", "--name", "imp", "--version", "1"]
    r = h.run_cli(imp + ["--booster", str(tmp_path / "three.txt")], env=env)
    assert r.returncode == 2 and ".json or .ubj" in r.stderr, out(r)
    r = h.run_cli(imp + ["--booster", bpath, "--units", "age"], env=env)
    assert r.returncode == 2, out(r)
    r = h.run_cli(imp + ["--booster", bpath], env=env)  # 3 booster features, 2 columns: the data
    assert r.returncode == 1 and "expects 3 features" in r.stderr, out(r)
    assert_nothing_left(env, "imp")


@pytest.mark.parametrize("cmd", ["train", "import"])
def test_help_documents_exit_status(cmd):
    r = h.run_cli(["model", cmd, "--help"])
    assert r.returncode == 0
    assert "Exit status:" in r.stdout and "2 usage error" in r.stdout, r.stdout
