#!/usr/bin/env bash
# CI check of the Ray runner: a real local Ray cluster (`ray start --head`), 4 shards of real texts
# (fortunes) embedded as 4 Ray tasks running the relstitch binary, one of them killed with SIGKILL
# mid-shard (its Ray worker too) and retried by Ray, then `relstitch merge`; the merged output must
# be bit-identical to a single-process `relstitch embed`. Installs ray in a virtual environment
# under target/ when missing (RELSTITCH_RAY_VENV to reuse one).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=${RELSTITCH_RAY_VENV:-$root/target/ray-venv}
if [ ! -x "$venv/bin/ray" ]; then
    echo "== creating $venv (ray)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "ray==2.*"
fi
bin=$root/target/release/relstitch
[ -x "$bin" ] || cargo build --release --quiet
tmp=$(mktemp -d)
export RAY_TMPDIR=$tmp/ray
mkdir -p "$RAY_TMPDIR"
stop() { "$venv/bin/ray" stop --force >/dev/null 2>&1 || true; rm -rf "$tmp"; }
trap stop EXIT

"$bin" data fetch fortunes --out "$tmp/fortunes" >/dev/null
head -400 "$tmp/fortunes/train.jsonl" > "$tmp/corpus.jsonl"
flags=(--id-field id --chunk-rows 25)

echo "== single process"
"$bin" embed --model all-MiniLM-L6-v2 --input "$tmp/corpus.jsonl" --output "$tmp/single.safetensors" \
    --threads 2 --quiet "${flags[@]}"

echo "== local Ray cluster, 4 shards, shard 2 killed once"
# No --node-ip-address: Ray replaces a loopback address there with the machine's routable one
# (ray._private.services.resolve_ip_for_localhost, Ray 2.60), so `--node-ip-address 127.0.0.1`
# was ignored and the node, its workers and the driver's "auto" address used that IP anyway.
"$venv/bin/ray" start --head --num-cpus 4 --disable-usage-stats \
    --include-dashboard=false \
    --temp-dir "$RAY_TMPDIR" >/dev/null
start=$(date +%s)
"$venv/bin/python" scripts/ray_embed.py --relstitch "$bin" --model all-MiniLM-L6-v2 \
    --input "$tmp/corpus.jsonl" --output "$tmp/ray.safetensors" --shards 4 --address auto \
    --chaos-kill-shard 2 -- "${flags[@]}"
echo "   ray run: $(( $(date +%s) - start )) s"
cmp "$tmp/single.safetensors" "$tmp/ray.safetensors"
echo "== ray: merged output is bit-identical to the single-process run"
