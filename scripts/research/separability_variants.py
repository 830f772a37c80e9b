#!/usr/bin/env python3
"""Scores the label-free separability variants of docs/results/compatibility_attempts.md.

Usage (from the repository root, on the commit the patch was made for):
    git apply scripts/research/separability_variants.patch
    cargo run --release --example stitch_robust -- \
        --datasets fortunes,spam-assassin,bible-genre-en,wordnet-lexnames \
        --methods hyb_cos_c --seeds 3 --out /tmp/variants.jsonl
    git checkout -- src examples
    (the published table's spam-assassin column: a separate run with
     --datasets spam-assassin --per-label 250,100)
    python3 scripts/research/separability_variants.py /tmp/variants.jsonl

For every variant: Spearman's rho of its separability ratio (new encoder / decoder's encoder)
with the measured retained score (stitched / decoder's own weighted F1; means over seeds), per
dataset and pooled, and a leave-one-dataset-out choice (choose on three datasets, score on the
fourth). Pure Python, no numpy.
"""
import collections
import json
import os
import statistics as st
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from spearman import spearman  # noqa: E402

NAMES = ["knn3", "knn3_white", "centroid", "centroid_white", "knn3_relative", "ridge_loo"]


recs = [json.loads(line) for line in open(sys.argv[1])]
by = collections.defaultdict(list)
for r in recs:
    by[(r["dataset"], r["enc"], r["dec"])].append(r)
datasets = sorted({r["dataset"] for r in recs})


def per_pair(f):
    return {k: st.mean(f(r) for r in v) for k, v in by.items()}


retained = per_pair(lambda r: r["wf1"] / r["own_dec"])
scores = {n: per_pair(lambda r, i=i: r["variants"][i][0] / r["variants"][i][1]) for i, n in enumerate(NAMES)}
scores["own-score ratio (labelled)"] = per_pair(lambda r: r["own_enc"] / r["own_dec"])


def rho(c, sel):
    ks = [k for k in retained if k[0] in sel]
    return spearman([c[k] for k in ks], [retained[k] for k in ks])


print("variant | " + " | ".join(datasets) + " | pooled | mean abs. error")
for n, c in scores.items():
    mae = st.mean(abs(c[k] - retained[k]) for k in retained)
    print(f"{n} | " + " | ".join(f"{rho(c, [d]):.2f}" for d in datasets) + f" | {rho(c, datasets):.2f} | {mae:.3f}")
print("\nleave one dataset out (choose among the label-free variants on three, score on the fourth):")
for d in datasets:
    rest = [x for x in datasets if x != d]
    best = max(NAMES, key=lambda n: rho(scores[n], rest))
    print(f"  held out {d}: chose {best} (rho {rho(scores[best], rest):.2f} on the others), held-out rho {rho(scores[best], [d]):.2f}")
