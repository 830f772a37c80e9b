#!/usr/bin/env bash
# Scale benchmark of streamed embeds: N short real texts (fortunes lines recombined, generated here,
# never committed), embedded by MiniLM-L6 in one process and as 4 shards + merge. Prints texts/s,
# peak RSS (from /usr/bin/time -v, or /proc when missing) and the merge time.
# usage: scripts/bench/scale_embed.sh N [THREADS]
set -euo pipefail
n=${1:?usage: scale_embed.sh N [THREADS]}
threads=${2:-2}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/target/release/relstitch
[ -x "$bin" ] || (cd "$root" && cargo build --release --quiet)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bin" data fetch fortunes --out "$tmp/fortunes" >/dev/null
python3 - "$tmp/fortunes" "$n" > "$tmp/corpus.jsonl" <<'PY'
import json, random, sys
src, n = sys.argv[1], int(sys.argv[2])
texts = [json.loads(l)["text"] for f in ("train.jsonl", "test.jsonl") for l in open(f"{src}/{f}")]
words = [t.split() for t in texts]
rng = random.Random(0)
for i in range(n):
    a, b = rng.choice(words), rng.choice(words)
    cut_a, cut_b = rng.randint(1, max(1, len(a))), rng.randint(0, len(b))
    text = " ".join(a[:cut_a] + b[cut_b:][:12])
    print(json.dumps({"id": f"doc-{i}", "text": text}))
PY
peak() { # runs "$@", prints "seconds peak_rss_mib"
    local start end
    start=$(date +%s.%N)
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f "%M" -o "$tmp/rss" "$@"
        end=$(date +%s.%N)
        echo "$(echo "$end - $start" | bc) $(( $(cat "$tmp/rss") / 1024 ))"
    else
        "$@" & local pid=$! max=0 r
        while kill -0 $pid 2>/dev/null; do
            r=$(awk '/VmHWM/ {print $2}' /proc/$pid/status 2>/dev/null || echo 0); [ "${r:-0}" -gt $max ] && max=$r
            sleep 0.2
        done
        wait $pid
        end=$(date +%s.%N)
        echo "$(echo "$end - $start" | bc) $(( max / 1024 ))"
    fi
}
flags=(--model all-MiniLM-L6-v2 --input "$tmp/corpus.jsonl" --id-field id --quiet)
read -r s1 r1 < <(peak "$bin" embed "${flags[@]}" --threads "$threads" --output "$tmp/one.safetensors")
shard_max=0; shard_sum=0
for i in 0 1 2 3; do
    read -r s r < <(peak "$bin" embed "${flags[@]}" --threads "$threads" --shard "$i/4" --output "$tmp/part-$i.safetensors")
    shard_sum=$(echo "$shard_sum + $s" | bc); [ "$r" -gt "$shard_max" ] && shard_max=$r
done
read -r sm rm < <(peak "$bin" merge "$tmp"/part-{0,1,2,3}.safetensors --output "$tmp/merged.safetensors")
cmp "$tmp/one.safetensors" "$tmp/merged.safetensors"
printf '{"texts": %d, "threads": %d, "one_process_s": %.1f, "texts_per_s": %.1f, "peak_rss_mib": %d, "shards_total_s": %.1f, "shard_peak_rss_mib": %d, "merge_s": %.2f, "merge_peak_rss_mib": %d, "merged_identical": true}\n' \
    "$n" "$threads" "$s1" "$(echo "$n / $s1" | bc -l)" "$r1" "$shard_sum" "$shard_max" "$sm" "$rm"
