#!/usr/bin/env bash
# Peak memory of a streamed `relstitch embed` against the number of texts.
#
# The corpus: real texts from the registry datasets (`relstitch data fetch`: bible-genre-en and
# bible-genre-es verses, fortunes quotations), interleaved, cycled to N records with distinct ids
# (`PASS:ID`); generated in a temporary folder, never committed. For each N, one `relstitch embed`
# of MiniLM-L6 under /usr/bin/time -v; prints one JSON line per N: texts, seconds, peak RSS (MiB).
# usage: scripts/bench/embed_memory.sh [THREADS] N...     e.g.  embed_memory.sh 2 2000 20000 100000
# Env: EXTRA="--chunk-rows 512 --batch-size 16" adds flags; OUT_EXT=npy|parquet (default safetensors).
set -euo pipefail
threads=${1:?usage: embed_memory.sh THREADS N...}
shift
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/target/release/relstitch
[ -x "$bin" ] || (cd "$root" && cargo build --release --quiet)
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (Debian package time)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for d in bible-genre-en bible-genre-es fortunes; do
    "$bin" data fetch "$d" --out "$tmp/$d" --quiet >/dev/null
done
max=0
for n in "$@"; do [ "$n" -gt "$max" ] && max=$n; done
python3 - "$tmp" "$max" > "$tmp/corpus.jsonl" <<'PY'
import itertools, json, sys
root, n = sys.argv[1], int(sys.argv[2])
def read(name):
    for split in ("train", "test"):
        with open(f"{root}/{name}/{split}.jsonl") as f:
            for line in f:
                r = json.loads(line)
                yield f"{name}/{r['id']}", r["text"]
sources = [list(read(d)) for d in ("bible-genre-en", "bible-genre-es", "fortunes")]
mixed = [r for group in itertools.zip_longest(*sources) for r in group if r is not None]
out = 0
for p in itertools.count():
    for rid, text in mixed:
        if out == n:
            sys.exit(0)
        print(json.dumps({"id": f"{p}:{rid}", "text": text}, ensure_ascii=False))
        out += 1
PY
for n in "$@"; do
    head -n "$n" "$tmp/corpus.jsonl" > "$tmp/in.jsonl"
    out=$tmp/out.${OUT_EXT:-safetensors}
    rm -f "$out"
    # shellcheck disable=SC2086
    /usr/bin/time -v -o "$tmp/time" "$bin" embed --model all-MiniLM-L6-v2 --input "$tmp/in.jsonl" \
        --id-field id --output "$out" --threads "$threads" --quiet ${EXTRA:-} 2>"$tmp/err" \
        || { cat "$tmp/err" "$tmp/time" >&2; exit 1; }
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tmp/time")
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$tmp/time")
    secs=$(echo "$wall" | awk -F: '{ if (NF == 3) print $1 * 3600 + $2 * 60 + $3; else print $1 * 60 + $2 }')
    printf '{"texts": %d, "threads": %d, "seconds": %.1f, "texts_per_s": %.0f, "peak_rss_mib": %d, "extra": "%s", "output_bytes": %d}\n' \
        "$n" "$threads" "$secs" "$(echo "$n / $secs" | bc -l)" "$((rss / 1024))" "${EXTRA:-}" "$(stat -c %s "$out")"
done
