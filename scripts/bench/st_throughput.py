#!/usr/bin/env python3
"""sentence-transformers throughput: the Python peer of `relstitch bench`.

What
    Loads a sentence-transformers model folder on the CPU, embeds a JSONL file of texts
    (field "text") with `model.encode(texts, batch_size=B)` R times after W warm-up runs, and
    prints ONE line of JSON:

        {"impl": "sentence-transformers", "version": ..., "torch": ..., "texts": n,
         "batch_size": B, "threads": T, "seconds": best, "texts_per_s": n / best}

    `seconds` is the best (minimum) wall time of the R timed runs: the least noisy estimate of
    what the library can do, which is also how the Rust benchmark reports.

Why
    To compare relstitch's candle encoder with the reference implementation on the same texts,
    batch size and thread count.

How
    python scripts/bench/st_throughput.py --model-dir ~/.cache/relstitch-reference/models/all-MiniLM-L6-v2 \
        --texts texts.jsonl --batch-size 32 --threads 2 --repeats 3 [--warmup 1]
    (any folder SentenceTransformer(DIR) can load; scripts/reference/make_reference.py unpacks
    the catalog models under ~/.cache/relstitch-reference/models/).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="sentence-transformers CPU throughput, one JSON line")
    ap.add_argument("--model-dir", required=True, help="a sentence-transformers model folder")
    ap.add_argument("--texts", required=True, help="JSONL file, one {\"text\": ...} per line")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args(argv)

    # Thread pools read these at import time, so set them before importing torch.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)

    with open(args.texts, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]

    model = SentenceTransformer(args.model_dir, device="cpu")

    def run() -> float:
        t0 = time.perf_counter()
        model.encode(texts, batch_size=args.batch_size, show_progress_bar=False)
        return time.perf_counter() - t0

    with torch.inference_mode():
        for _ in range(args.warmup):
            run()
        best = min(run() for _ in range(max(args.repeats, 1)))

    print(json.dumps({
        "impl": "sentence-transformers",
        "version": sentence_transformers.__version__,
        "torch": torch.__version__,
        "texts": len(texts),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "seconds": round(best, 6),
        "texts_per_s": round(len(texts) / best, 3),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
