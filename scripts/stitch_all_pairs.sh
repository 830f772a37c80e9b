#!/usr/bin/env bash
# Every ordered pair of the five catalog encoders through the command line, with the defaults, as
# a new user would run it (issue 16's "done when"):
#   1. fetch a built-in dataset and keep the first TRAIN/TEST texts per label of its split;
#   2. `relstitch fit` one checkpoint per encoder, every option at its default;
#   3. `stitch-two-checkpoints --eval --json` for all 20 ordered pairs;
#   4. print the 5×5 table of stitched weighted F1, kept (stitched over the weaker checkpoint's
#      own) mean and worst pair, and the Spearman correlation of the printed label-free prediction
#      with the measured retained score (stitched over the decoder's own).
# Usage: scripts/stitch_all_pairs.sh [DATASET [TRAIN_PER_LABEL [TEST_PER_LABEL]]]
#        (default: wordnet-lexnames 150 100, i.e. 1,200 train / 800 test texts in 8 classes)
# Outputs go to $RELSTITCH_DEMO_DIR/pairs-DATASET (default target/demo/pairs-DATASET).
set -euo pipefail
cd "$(dirname "$0")/.."
dataset=${1:-wordnet-lexnames}
train_n=${2:-150}
test_n=${3:-100}
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release
out=${RELSTITCH_DEMO_DIR:-target/demo}/pairs-$dataset
mkdir -p "$out"
"$bin/relstitch" data fetch "$dataset" --out "$out/data" --quiet
python3 - "$out/data" "$train_n" "$test_n" <<'EOF'
import json, sys, collections
d, n_train, n_test = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for split, n in (("train", n_train), ("test", n_test)):
    seen = collections.Counter()
    with open(f"{d}/{split}.jsonl") as f, open(f"{d}/{split}-small.jsonl", "w") as g:
        for line in f:
            r = json.loads(line)
            if seen[r["label"]] < n:
                seen[r["label"]] += 1
                g.write(line)
    print(f"{split}: {sum(seen.values())} texts, {len(seen)} labels", file=sys.stderr)
EOF
models=(all-MiniLM-L6-v2 all-mpnet-base-v2 paraphrase-MiniLM-L3-v2 multilingual-e5-small sre-embedding-model)
for m in "${models[@]}"; do
  if [ ! -f "$out/ckpt-$m/config.json" ]; then
    "$bin/relstitch" fit --model "$m" --train "$out/data/train-small.jsonl" --out "$out/ckpt-$m" --quiet
  fi
done
: > "$out/pairs.jsonl"
for a in "${models[@]}"; do
  for b in "${models[@]}"; do
    [ "$a" = "$b" ] && continue
    "$bin/stitch-two-checkpoints" --encoder-from "$out/ckpt-$a" --decoder-from "$out/ckpt-$b" \
      --eval "$out/data/test-small.jsonl" --json 2>>"$out/stitch.log" \
      | python3 -c 'import json,sys; r=json.load(sys.stdin); r["a"]=sys.argv[1]; r["b"]=sys.argv[2]; print(json.dumps(r))' "$a" "$b" \
      >> "$out/pairs.jsonl"
  done
done
python3 - "$out/pairs.jsonl" "${models[@]}" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
models = sys.argv[2:]
short = {m: m.split("-")[0] if not m.startswith("all-") else m[4:] for m in models}
own = {}
for r in rows:
    own[r["a"]] = r["encoder_checkpoint"]["weighted_f1"]
    own[r["b"]] = r["decoder_checkpoint"]["weighted_f1"]
cell = {(r["a"], r["b"]): r["stitched"]["weighted_f1"] for r in rows}
print("| encoder ↓ decoder → | " + " | ".join(short[m] for m in models) + " |")
print("|---|" + "---|" * len(models))
for a in models:
    vals = [f"*{own[a]:.3f}*" if a == b else f"{cell[(a, b)]:.3f}" for b in models]
    print(f"| {short[a]} | " + " | ".join(vals) + " |")
kept = {k: v / min(own[k[0]], own[k[1]]) for k, v in cell.items()}
worst = min(kept, key=kept.get)
print(f"\nkept (stitched / weaker own): mean {sum(kept.values()) / len(kept):.3f}, "
      f"worst {kept[worst]:.3f} ({worst[0]} → {worst[1]})")
sys.path.insert(0, "scripts")
from spearman import spearman
pred = [r["compatibility"]["predicted_retained"] for r in rows if r.get("compatibility")]
ret = [r["stitched"]["weighted_f1"] / r["decoder_checkpoint"]["weighted_f1"] for r in rows if r.get("compatibility")]
print(f"label-free prediction vs measured retained score over {len(pred)} pairs: Spearman "
      f"{spearman(pred, ret):.2f}, mean abs. error {sum(abs(p - q) for p, q in zip(pred, ret)) / len(pred):.3f}")
EOF
