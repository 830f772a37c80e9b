#!/usr/bin/env python3
"""Peer throughput for `relstitch bench`: sentence-transformers (PyTorch) or ONNX Runtime.

What
    Loads a sentence-transformers model folder on the CPU and embeds a JSONL file of texts
    (field "text") with one engine, at each batch size of --batch-sizes: W warm-up runs, then R
    timed runs. Prints ONE line of JSON:

        {"impl": ..., "engine": ..., "versions": {...}, "texts": n, "threads": T,
         "runs": [{"batch_size": B, "seconds": [..R..], "median_s": .., "texts_per_s": ..}, ...],
         "best": {"batch_size": B, "median_s": .., "texts_per_s": ..}}

    `best` is the batch size with the lowest median wall time. With --save FILE, the embeddings
    of the best batch size (input order) are written to FILE (safetensors, tensor "embeddings",
    float32) so that relstitch can measure the peer's fidelity to its own vectors.

Engines
    sentence-transformers  `SentenceTransformer(DIR).encode(texts, batch_size=B)` (PyTorch).
    onnxruntime            The folder's transformer exported to ONNX by torch.onnx (opset 17,
                           dynamic batch and length, cached under --onnx-cache), run by an
                           onnxruntime InferenceSession (all graph optimisations, T intra-op
                           threads); tokenisation is sentence-transformers' own, texts are
                           batched longest first and padded to the longest of each batch (as
                           sentence-transformers does), pooling and normalisation follow the
                           folder's modules (mean or cls pooling, Normalize). This is the engine
                           under fastembed.
    onnxruntime-int8       The same graph after onnxruntime.quantization.quantize_dynamic
                           (int8 weights, per tensor unless --per-channel, uint8 activations
                           quantised at run time).

How
    python scripts/bench/peer_throughput.py --engine onnxruntime \\
        --model-dir ~/.cache/relstitch/models/all-MiniLM-L6-v2 --texts texts.jsonl \\
        --batch-sizes 16,32,64,128 --threads 2 --repeats 3 [--warmup 1] [--save out.safetensors]

    With --serve, the script loads the model and then times single runs on request, one line of
    JSON per answer (see serve()): `relstitch bench` uses this to interleave its own runs with
    the peers', so that a change in the machine's load affects every side alike.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="peer CPU throughput, one JSON line")
    ap.add_argument("--engine", default="sentence-transformers",
                    choices=["sentence-transformers", "onnxruntime", "onnxruntime-int8"])
    ap.add_argument("--model-dir", required=True, help="a sentence-transformers model folder")
    ap.add_argument("--texts", required=True, help="JSONL file, one {\"text\": ...} per line")
    ap.add_argument("--field", default="text")
    ap.add_argument("--batch-sizes", default="16,32,64,128")
    # Kept for older callers: a single batch size.
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--save", default=None, help="write the best run's embeddings here")
    ap.add_argument("--onnx-cache", default=str(Path.home() / ".cache" / "relstitch" / "bench-onnx"))
    ap.add_argument("--per-channel", action="store_true", help="int8: per-channel weight scales")
    ap.add_argument("--serve", action="store_true",
                    help="load, then time runs on request (see serve()) instead of timing them all")
    args = ap.parse_args(argv)

    # Thread pools read these at import time, so set them before importing torch.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import numpy as np
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)

    with open(args.texts, encoding="utf-8") as f:
        texts = [json.loads(line)[args.field] for line in f if line.strip()]
    sizes = [args.batch_size] if args.batch_size else [int(b) for b in args.batch_sizes.split(",")]

    model = SentenceTransformer(args.model_dir, device="cpu")
    versions = {"sentence-transformers": sentence_transformers.__version__, "torch": torch.__version__}

    if args.engine == "sentence-transformers":
        impl = f"sentence-transformers {sentence_transformers.__version__} (torch {torch.__version__})"

        def encode(batch_size: int):
            return model.encode(texts, batch_size=batch_size, show_progress_bar=False,
                                convert_to_numpy=True)
    else:
        import onnxruntime as ort
        versions["onnxruntime"] = ort.__version__
        onnx_path = export_onnx(model, args, torch)
        if args.engine == "onnxruntime-int8":
            onnx_path = quantize(onnx_path, args.per_channel)
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        input_names = {i.name for i in session.get_inputs()}
        pooling = pooling_mode(model)
        normalize = any(type(m).__name__ == "Normalize" for m in model)
        tokenize = model.preprocess if hasattr(model, "preprocess") else model.tokenize
        kind = "int8 dynamic" + (", per channel" if args.per_channel else "") \
            if args.engine == "onnxruntime-int8" else "fp32"
        impl = f"onnxruntime {ort.__version__} {kind}"

        def encode(batch_size: int):
            # Longest first, like sentence-transformers (by character length).
            order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
            out = np.zeros((len(texts), model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else model.get_sentence_embedding_dimension()), np.float32)
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
                feats = tokenize([texts[i] for i in idx])
                feed = {k: v.numpy().astype(np.int64) for k, v in feats.items()
                        if k in input_names}
                hidden = session.run(["last_hidden_state"], feed)[0]
                mask = feats["attention_mask"].numpy().astype(np.float32)[:, :, None]
                if pooling == "mean":
                    pooled = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
                else:
                    pooled = hidden[:, 0]
                if normalize:
                    pooled = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True),
                                              1e-12, None)
                out[idx] = pooled
            return out

    if args.serve:
        return serve(encode, impl, versions, len(texts), args.threads, torch, np)

    runs = []
    best_out = None
    with torch.inference_mode():
        for b in sizes:
            for _ in range(args.warmup):
                encode(b)
            seconds = []
            for _ in range(max(args.repeats, 1)):
                t0 = time.perf_counter()
                emb = encode(b)
                seconds.append(time.perf_counter() - t0)
            med = statistics.median(seconds)
            runs.append({"batch_size": b, "seconds": [round(s, 6) for s in seconds],
                         "median_s": round(med, 6), "texts_per_s": round(len(texts) / med, 3)})
            if min(r["median_s"] for r in runs) == med:
                best_out = emb
    best = min(runs, key=lambda r: r["median_s"])
    if args.save and best_out is not None:
        from safetensors.numpy import save_file
        save_file({"embeddings": np.ascontiguousarray(best_out, dtype=np.float32)}, args.save)
    print(json.dumps({
        "impl": impl,
        "engine": args.engine,
        "versions": versions,
        "texts": len(texts),
        "threads": args.threads,
        "runs": runs,
        "best": {k: best[k] for k in ("batch_size", "median_s", "texts_per_s")},
    }))
    return 0


def serve(encode, impl, versions, n, threads, torch, np) -> int:
    """Line protocol on stdin/stdout, so that the caller can interleave this peer's runs with its
    own (the same machine load for every side):

        -> {"ready": true, "impl": ..., "versions": {...}, "texts": n, "threads": T}
        <- run B            -> {"seconds": s}        one timed encode at batch size B
        <- save B PATH      -> {"saved": PATH}       encode at batch size B, write the embeddings
        <- (end of input)   exit
    """
    print(json.dumps({"ready": True, "impl": impl, "versions": versions, "texts": n,
                      "threads": threads}), flush=True)
    with torch.inference_mode():
        for line in sys.stdin:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "run":
                t0 = time.perf_counter()
                encode(int(parts[1]))
                print(json.dumps({"seconds": time.perf_counter() - t0}), flush=True)
            elif parts[0] == "save":
                from safetensors.numpy import save_file
                emb = encode(int(parts[1]))
                save_file({"embeddings": np.ascontiguousarray(emb, dtype=np.float32)}, parts[2])
                print(json.dumps({"saved": parts[2]}), flush=True)
            else:
                print(json.dumps({"error": f"unknown command {parts[0]!r}"}), flush=True)
    return 0


def pooling_mode(model) -> str:
    for m in model:
        mode = getattr(m, "pooling_mode", None)
        if mode is None and hasattr(m, "get_pooling_mode_str"):
            mode = m.get_pooling_mode_str()
        if mode is not None:
            mode = str(mode).lower()
            if "mean" in mode:
                return "mean"
            if "cls" in mode:
                return "cls"
            raise SystemExit(f"pooling {mode!r} is not supported by the onnxruntime peer")
    return "mean"


def export_onnx(model, args, torch) -> Path:
    """Exports the folder's transformer once (cached by the folder's weights and config)."""
    folder = Path(args.model_dir)
    weights = next((folder / f for f in ("model.safetensors", "pytorch_model.bin")
                    if (folder / f).is_file()), None)
    h = hashlib.sha256((folder / "config.json").read_bytes())
    if weights is not None:
        h.update(str(weights.stat().st_size).encode())
        h.update(str(weights.stat().st_mtime_ns).encode())
    out = Path(args.onnx_cache) / f"{folder.name}-{h.hexdigest()[:12]}" / "model.onnx"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    auto = model[0].auto_model.eval()

    class Body(torch.nn.Module):
        """The transformer body with two named inputs and its last hidden state as output."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              return_dict=True).last_hidden_state

    ids = torch.ones((2, 8), dtype=torch.long)
    mask = torch.ones((2, 8), dtype=torch.long)
    tmp = out.with_suffix(".tmp.onnx")
    torch.onnx.export(
        Body(auto).eval(), (ids, mask), str(tmp),
        input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                      "last_hidden_state": {0: "batch", 1: "seq"}},
        opset_version=17, dynamo=False,
    )
    tmp.replace(out)
    return out


def quantize(fp32: Path, per_channel: bool) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    out = fp32.with_name("model-int8" + ("-pc" if per_channel else "") + ".onnx")
    if not out.is_file():
        tmp = out.with_suffix(".tmp.onnx")
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=per_channel)
        tmp.replace(out)
    return out


if __name__ == "__main__":
    sys.exit(main())
