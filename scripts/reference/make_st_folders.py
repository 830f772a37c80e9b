#!/usr/bin/env python3
"""Reference vectors for complete sentence-transformers folders: a Dense module, prompts, Matryoshka
truncation (relstitch's tests/st_folders.rs).

What
    From the real all-MiniLM-L6-v2 folder, sentence-transformers builds and saves two folders:

      minilm-dense     Transformer → Pooling(mean) → Dense(384→128, Tanh) → Normalize
      minilm-prompts   Transformer → Pooling(mean) → Normalize, with prompts
                       {"query": "query: ", "passage": "passage: "}, default_prompt_name "query",
                       similarity_fn_name "dot"

    The Dense weights are not random draws but a closed formula that the Rust test computes too
    (so no weights are committed):
        W[o, i] = 0.08 * sin(0.37 * o + 0.11 * i + 0.5)     (float64, then float32)
        b[o]    = 0.02 * cos(0.3 * o)

    Written:
      tests/fixtures/st_folders/<folder>/...   the configuration files sentence-transformers wrote
                                               (modules.json, 1_Pooling/config.json,
                                               2_Dense/config.json, config_sentence_transformers.json,
                                               sentence_bert_config.json, tokenizer_config.json):
                                               no weights
      tests/fixtures/reference/st-<case>.safetensors   tensor `embeddings` [n, d] float32 for the
                                               texts of tests/fixtures/parity_texts.jsonl:
          st-minilm-dense              model.encode(texts)
          st-minilm-dense-truncate64   model.encode(texts, truncate_dim=64)  (sentence-transformers
                                       does not normalise again after truncating; cosine parity
                                       is what the test checks)
          st-minilm-prompts-default    model.encode(texts)   (the default prompt, "query: ")
          st-minilm-prompts-passage    model.encode(texts, prompt_name="passage")

How
    /work/venv-ref/bin/python scripts/reference/make_st_folders.py \\
        --model-dir ~/.cache/relstitch/models/all-MiniLM-L6-v2
    (the folder `relstitch fetch all-MiniLM-L6-v2` makes; any all-MiniLM-L6-v2 folder will do)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Dense, Normalize

ROOT = Path(__file__).resolve().parents[2]
CONFIG_FILES = [
    "modules.json",
    "1_Pooling/config.json",
    "2_Dense/config.json",
    "config_sentence_transformers.json",
    "sentence_bert_config.json",
    # sentence-transformers ≥ 6 keeps max_seq_length here, as the tokenizer's model_max_length.
    "tokenizer_config.json",
]


def dense_weights(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    o = np.arange(n_out, dtype=np.float64)[:, None]
    i = np.arange(n_in, dtype=np.float64)[None, :]
    w = (0.08 * np.sin(0.37 * o + 0.11 * i + 0.5)).astype(np.float32)
    b = (0.02 * np.cos(0.3 * np.arange(n_out, dtype=np.float64))).astype(np.float32)
    return w, b


def save(out: Path, name: str, emb: np.ndarray, texts_sha: str, note: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    meta = {"model": name, "reference": note, "texts_sha256": texts_sha}
    save_file({"embeddings": np.ascontiguousarray(emb, dtype=np.float32)}, str(out / f"st-{name}.safetensors"), meta)
    print(f"st-{name}: {emb.shape}")


def keep_configs(saved: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    for rel in CONFIG_FILES:
        src = saved / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest / rel)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, default=Path.home() / ".cache/relstitch/models/all-MiniLM-L6-v2")
    ap.add_argument("--texts", type=Path, default=ROOT / "tests/fixtures/parity_texts.jsonl")
    ap.add_argument("--out", type=Path, default=ROOT / "tests/fixtures/reference")
    ap.add_argument("--folders", type=Path, default=ROOT / "tests/fixtures/st_folders")
    args = ap.parse_args()
    torch.manual_seed(0)
    raw = args.texts.read_bytes()
    texts_sha = hashlib.sha256(raw).hexdigest()
    texts = [json.loads(line)["text"] for line in raw.decode().splitlines() if line.strip()]

    base = SentenceTransformer(str(args.model_dir), device="cpu")
    transformer, pooling = base[0], base[1]
    width = base.get_sentence_embedding_dimension()

    dense = Dense(width, 128, activation_function=torch.nn.Tanh())
    w, b = dense_weights(128, width)
    with torch.no_grad():
        dense.linear.weight.copy_(torch.from_numpy(w))
        dense.linear.bias.copy_(torch.from_numpy(b))
    model = SentenceTransformer(modules=[transformer, pooling, dense, Normalize()], device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        model.save(tmp)
        keep_configs(Path(tmp), args.folders / "minilm-dense")
        # What the test checks: the folder as saved loads back to the same vectors.
        model = SentenceTransformer(tmp, device="cpu")
        save(args.out, "minilm-dense", model.encode(texts, batch_size=16), texts_sha,
             "sentence-transformers: saved folder, encode(texts)")
        save(args.out, "minilm-dense-truncate64", model.encode(texts, batch_size=16, truncate_dim=64), texts_sha,
             "sentence-transformers: encode(texts, truncate_dim=64), not normalised again")

    prompts = SentenceTransformer(
        modules=[transformer, pooling, Normalize()],
        device="cpu",
        prompts={"query": "query: ", "passage": "passage: "},
        default_prompt_name="query",
        similarity_fn_name="dot",
    )
    with tempfile.TemporaryDirectory() as tmp:
        prompts.save(tmp)
        keep_configs(Path(tmp), args.folders / "minilm-prompts")
        prompts = SentenceTransformer(tmp, device="cpu")
        save(args.out, "minilm-prompts-default", prompts.encode(texts, batch_size=16), texts_sha,
             "sentence-transformers: encode(texts), default prompt query")
        save(args.out, "minilm-prompts-passage", prompts.encode(texts, batch_size=16, prompt_name="passage"),
             texts_sha, "sentence-transformers: encode(texts, prompt_name='passage')")


if __name__ == "__main__":
    main()
