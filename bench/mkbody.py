#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The one-row predict body every benchmark sends: the midpoint of each feature's valid
range (the bound when only one is given, the manifest's mean or 0 when none; integers
rounded, booleans false), as compact JSON.

usage: mkbody.py MANIFEST OUT [PATIENT_ID]"""
import json
import sys


def main(argv):
    if len(argv) not in (3, 4):
        sys.exit(__doc__.split("\n\n")[-1])
    m = json.load(open(argv[1], encoding="utf-8"))
    feats = {}
    for f in m["features"]:
        t, lo, hi = f.get("type", "number"), f.get("min"), f.get("max")
        if t == "boolean":
            feats[f["name"]] = False
            continue
        if lo is not None and hi is not None:
            v = (lo + hi) / 2.0
        elif lo is not None or hi is not None:
            v = lo if lo is not None else hi
        else:
            v = f.get("mean", 0.0)
        feats[f["name"]] = int(round(v)) if t == "integer" else v
    body = {"features": feats}
    if len(argv) == 4:
        body["patient_id"] = argv[3]
    with open(argv[2], "w", encoding="utf-8") as out:
        json.dump(body, out, separators=(",", ":"))


if __name__ == "__main__":
    main(sys.argv)
