#!/usr/bin/env bash
# Runs the quick mode of each paper-reproduction example and checks that its last line of output
# is one JSON object with the keys the example promises. Usage: scripts/examples_quick.sh [NAME...]
# (default: all five). Models and data are fetched on first use; embeddings are cached.
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A KEYS=(
  [stitch_text]="abs_not_stitched_wf1 abs_stitched_wf1 rel_not_stitched_wf1 rel_stitched_wf1 translated_stitched_wf1 whitened_not_stitched_wf1 whitened_stitched_wf1 whitened_kept_worst chance_wf1"
  [stitch_images]="abs_not_stitched_acc abs_stitched_acc rel_not_stitched_acc rel_stitched_acc abs_stitched_mse rel_stitched_mse"
  [stitch_languages]="es_not_stitched_wf1 en_to_es_rel_stitched_wf1 en_to_es_translated_wf1 chance_wf1"
  [latent_similarity]="pairs"
  [migrate]="reembedded_recall_at_k best_method_1024 best_retained_1024 rows"
)
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(stitch_text stitch_images stitch_languages latent_similarity migrate)

for name in "${names[@]}"; do
  echo "== example $name --quick"
  start=$(date +%s)
  out=$(cargo run --release --quiet --example "$name" -- --quick)
  line=$(printf '%s\n' "$out" | tail -n 1)
  echo "$line"
  python3 - "$line" ${KEYS[$name]} <<'PY'
import json, math, sys
obj = json.loads(sys.argv[1])
missing = [k for k in sys.argv[2:] if k not in obj]
if missing:
    sys.exit(f"missing keys: {missing}")
def check(v, path):
    if isinstance(v, float) and not math.isfinite(v):
        sys.exit(f"{path} is not finite")
    if isinstance(v, dict):
        for k, x in v.items(): check(x, f"{path}.{k}")
    if isinstance(v, list):
        for i, x in enumerate(v): check(x, f"{path}[{i}]")
check(obj, "$")
if "pairs" in obj:
    need = {"a", "b", "abs_jaccard", "rel_jaccard", "abs_mrr", "rel_mrr", "rel_mean_cosine", "linear_cka"}
    for p in obj["pairs"]:
        if need - set(p):
            sys.exit(f"pair misses {need - set(p)}")
if "best_retained_1024" in obj and obj["best_retained_1024"] < 0.90:
    sys.exit(f"migrate: best retained recall@10 at 1,024 anchors is {obj['best_retained_1024']:.3f} < 0.90 (issue 13's target)")
PY
  echo "   ok in $(( $(date +%s) - start )) s"
done
