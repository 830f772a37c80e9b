//! Bad command lines and bad inputs to the `relstitch` and `stitch-two-checkpoints` binaries: each
//! must be refused at once with a message that says what is wrong and what to do — never ignored,
//! never a panic, a hang, a huge allocation or non-finite numbers in an output file.
//!
//! Every run gets its own `RELSTITCH_HOME` (a temporary folder), so nothing touches a real cache.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use candle_core::{Device, Tensor};
use relstitch::io::write_safetensors;

/// A temporary folder that is also the run's `RELSTITCH_HOME`.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Result<Self> {
        Ok(Self {
            dir: tempfile::tempdir()?,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }

    fn home(&self) -> PathBuf {
        self.path("home")
    }

    /// Runs `bin` with `args`, killed after 60 s (a hang is a failure, not a stuck test).
    fn run_bin(&self, bin: &str, args: &[&str]) -> Result<Output> {
        let mut child = Command::new(bin)
            .args(args)
            .env("RELSTITCH_HOME", self.home())
            .env_remove("RAYON_NUM_THREADS")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let start = Instant::now();
        while child.try_wait()?.is_none() {
            if start.elapsed() > Duration::from_secs(60) {
                child.kill()?;
                anyhow::bail!("{bin} {} hung for 60 s", args.join(" "));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(child.wait_with_output()?)
    }

    fn run(&self, args: &[&str]) -> Result<Output> {
        self.run_bin(env!("CARGO_BIN_EXE_relstitch"), args)
    }

    /// Runs `relstitch`, expects a failure (not a crash) and returns its stderr.
    fn fails(&self, args: &[&str]) -> Result<String> {
        self.fails_bin(env!("CARGO_BIN_EXE_relstitch"), args)
    }

    fn fails_bin(&self, bin: &str, args: &[&str]) -> Result<String> {
        let out = self.run_bin(bin, args)?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        ensure!(
            !out.status.success(),
            "{} succeeded but should have failed; stderr: {stderr}",
            args.join(" ")
        );
        // 1: an error returned from main; 2: clap's usage error. A panic is 101, an abort a signal.
        ensure!(
            matches!(out.status.code(), Some(1) | Some(2)),
            "{} crashed ({:?}): {stderr}",
            args.join(" "),
            out.status
        );
        ensure!(
            !stderr.contains("panicked"),
            "{} panicked: {stderr}",
            args.join(" ")
        );
        Ok(stderr)
    }

    fn matrix(&self, name: &str, t: &Tensor) -> Result<String> {
        write_safetensors(&self.path(name), &[("embeddings", t)], &HashMap::new())?;
        Ok(self.arg(name))
    }

    fn text(&self, name: &str, contents: &str) -> Result<String> {
        std::fs::write(self.path(name), contents)?;
        Ok(self.arg(name))
    }
}

#[track_caller]
fn mentions(stderr: &str, needles: &[&str]) {
    for n in needles {
        assert!(
            stderr.contains(n),
            "stderr does not mention `{n}`:\n{stderr}"
        );
    }
}

fn randn(n: usize, d: usize) -> Result<Tensor> {
    Ok(Tensor::randn(0f32, 1., (n, d), &Device::Cpu)?)
}

fn train_jsonl(s: &Sandbox) -> Result<String> {
    let mut t = String::new();
    for i in 0..12 {
        t.push_str(&format!(
            "{{\"text\": \"sample {i}\", \"label\": \"{}\"}}\n",
            ["a", "b"][i % 2]
        ));
    }
    s.text("train.jsonl", &t)
}

// 1. Flags a command accepts must do something.

#[test]
fn predict_and_eval_refuse_encoder_overrides_they_would_ignore() -> Result<()> {
    let s = Sandbox::new()?;
    let ckpt = s.arg("ckpt");
    let input = s.text("in.txt", "hello\n")?;
    for flag in [
        ["--pooling", "mean"],
        ["--normalize", "true"],
        ["--max-length", "8"],
        ["--prefix", "query: "],
    ] {
        let mut args = vec!["predict", "--checkpoint", &ckpt, "--input", &input];
        args.extend(flag);
        let e = s.fails(&args)?;
        mentions(&e, &[&format!("unexpected argument '{}'", flag[0])]);
        let mut args = vec!["eval", "--checkpoint", &ckpt, "--test", &input];
        args.extend(flag);
        let e = s.fails(&args)?;
        mentions(&e, &[&format!("unexpected argument '{}'", flag[0])]);
    }
    // What they do use is still accepted by the parser (then the missing checkpoint is reported).
    let e = s.fails(&[
        "predict",
        "--checkpoint",
        &ckpt,
        "--input",
        &input,
        "--device",
        "cpu",
        "--batch-size",
        "4",
    ])?;
    assert!(!e.contains("unexpected argument"), "{e}");
    Ok(())
}

#[test]
fn other_commands_refuse_flags_that_would_be_ignored() -> Result<()> {
    let s = Sandbox::new()?;
    let x = s.matrix("x.safetensors", &randn(20, 4)?)?;
    let out = s.arg("r.safetensors");
    // relative: parameters of another projection.
    let e = s.fails(&[
        "relative",
        "--embeddings",
        &x,
        "--anchors",
        "rows:0..5",
        "--p",
        "3",
        "--output",
        &out,
    ])?;
    mentions(&e, &["--p only applies to --projection lp", "cosine"]);
    let e = s.fails(&[
        "relative",
        "--embeddings",
        &x,
        "--anchors",
        "rows:0..5",
        "--projection",
        "l1",
        "--k",
        "2",
        "--output",
        &out,
    ])?;
    mentions(&e, &["--k only applies to --projection sparse_topk", "l1"]);
    let e = s.fails(&[
        "relative",
        "--embeddings",
        &x,
        "--anchors",
        "rows:0..5",
        "--power",
        "4",
        "--output",
        &out,
    ])?;
    mentions(&e, &["--power only applies to --projection sparse_topk"]);
    assert!(!s.path("r.safetensors").exists());
    // compare: projection flags on absolute spaces, encoder flags without --model.
    let y = s.matrix("y.safetensors", &randn(20, 5)?)?;
    for extra in [
        vec!["--center"],
        vec!["--projection", "euclidean"],
        vec!["--top-k", "3"],
    ] {
        let mut args = vec!["compare", "--a", &x, "--b", &y];
        args.extend(extra);
        let e = s.fails(&args)?;
        mentions(&e, &["only applies to --space relative"]);
    }
    let e = s.fails(&[
        "compare",
        "--a",
        &x,
        "--b",
        &y,
        "--space",
        "relative",
        "--anchors",
        "rows:0..5",
        "--top-k",
        "2",
    ])?;
    mentions(&e, &["--top-k only applies to --projection sparse_topk"]);
    for extra in [
        ["--pooling", "cls"],
        ["--threads", "1"],
        ["--batch-size", "8"],
        ["--device", "cpu"],
    ] {
        let mut args = vec!["compare", "--a", &x, "--b", &y];
        args.extend(extra);
        let e = s.fails(&args)?;
        mentions(&e, &["only apply with --model"]);
    }
    let e = s.fails(&["compare", "--a", &x, "--b", &y, "--field", "body"])?;
    mentions(&e, &["--model"]);
    // fit: head and space flags that the chosen head or space does not read.
    let train = train_jsonl(&s)?;
    let ckpt = s.arg("ckpt");
    let fit = |extra: &[&str]| -> Result<String> {
        let mut args = vec![
            "fit",
            "--model",
            "no-such-model",
            "--train",
            &train,
            "--out",
            &ckpt,
        ];
        args.extend(extra);
        s.fails(&args)
    };
    mentions(
        &fit(&["--hidden", "64"])?,
        &["--hidden only applies to --head mlp"],
    );
    mentions(
        &fit(&["--space", "absolute", "--center", "--projection", "l1"])?,
        &["--projection, --center only apply to --space relative"],
    );
    let anchors = s.text("anchors.jsonl", "{\"text\": \"sample 1\"}\n")?;
    mentions(
        &fit(&["--anchors", &anchors, "--anchor-strategy", "kmeans"])?,
        &["--anchor-strategy only applies when --anchors is a number"],
    );
    assert!(!s.path("ckpt").exists());
    // stitch-two-checkpoints: --json without --eval.
    let e = s.fails_bin(
        env!("CARGO_BIN_EXE_stitch-two-checkpoints"),
        &["--encoder-from", &ckpt, "--decoder-from", &ckpt, "--json"],
    )?;
    mentions(&e, &["--eval"]);
    // ... and `relstitch stitch`, the same command.
    let e = s.fails(&[
        "stitch",
        "--encoder-from",
        &ckpt,
        "--decoder-from",
        &ckpt,
        "--json",
    ])?;
    mentions(&e, &["--eval"]);
    Ok(())
}

// 2. compare over anchors of different counts.

#[test]
fn compare_refuses_anchor_files_of_different_counts() -> Result<()> {
    let s = Sandbox::new()?;
    let x = s.matrix("x.safetensors", &randn(30, 6)?)?;
    let y = s.matrix("y.safetensors", &randn(30, 8)?)?;
    let ax = s.matrix("ax.safetensors", &randn(5, 6)?)?;
    let ay = s.matrix("ay.safetensors", &randn(7, 8)?)?;
    let spec = format!("{ax},{ay}");
    let e = s.fails(&["compare", "--a", &x, "--b", &y, "--anchors", &spec])?;
    mentions(
        &e,
        &[
            "5 anchors for the first space but 7 for the second",
            "same anchor samples",
        ],
    );
    // Same counts are fine.
    let ay5 = s.matrix("ay5.safetensors", &randn(5, 8)?)?;
    let spec = format!("{ax},{ay5}");
    let out = s.run(&[
        "compare",
        "--a",
        &x,
        "--b",
        &y,
        "--anchors",
        &spec,
        "--json",
    ])?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

// 3. translate fit on a degenerate side.

#[test]
fn translate_fit_refuses_constant_or_zero_anchors() -> Result<()> {
    let s = Sandbox::new()?;
    let good = s.matrix("good.safetensors", &randn(10, 4)?)?;
    let zero = s.matrix(
        "zero.safetensors",
        &Tensor::zeros((10, 4), candle_core::DType::F32, &Device::Cpu)?,
    )?;
    let constant = s.matrix(
        "const.safetensors",
        &Tensor::new(&[1.5f32, -2.0, 0.5, 3.0], &Device::Cpu)?
            .unsqueeze(0)?
            .repeat((10, 1))?,
    )?;
    let out = s.arg("t.safetensors");
    for method in ["procrustes", "linear", "affine"] {
        let e = s.fails(&[
            "translate",
            "fit",
            "--source",
            &zero,
            "--target",
            &good,
            "--method",
            method,
            "--out",
            &out,
        ])?;
        mentions(
            &e,
            &[
                "source anchors",
                "all 10 rows are zero vectors",
                "zero.safetensors (source)",
            ],
        );
        let e = s.fails(&[
            "translate",
            "fit",
            "--source",
            &constant,
            "--target",
            &good,
            "--method",
            method,
            "--out",
            &out,
        ])?;
        mentions(&e, &["source anchors", "all 10 rows are the same vector"]);
        let e = s.fails(&[
            "translate",
            "fit",
            "--source",
            &good,
            "--target",
            &zero,
            "--method",
            method,
            "--out",
            &out,
        ])?;
        mentions(&e, &["target anchors", "zero vectors"]);
    }
    assert!(!s.path("t.safetensors").exists(), "a map was saved");
    Ok(())
}

// 4. Values near f32::MAX: never write non-finite numbers.

#[test]
fn relative_never_writes_inf() -> Result<()> {
    let s = Sandbox::new()?;
    // Opposite rows 1.5 × f32::MAX apart.
    let big = f32::MAX * 0.75;
    let x = Tensor::new(
        &[
            [big, 0.0, 1.0],
            [-big, 1.0, 0.0],
            [0.0, big, -big],
            [1.0, 2.0, 3.0],
        ],
        &Device::Cpu,
    )?;
    let x = s.matrix("x.safetensors", &x)?;
    let out = s.arg("r.safetensors");
    for projection in ["euclidean", "l1", "linf", "lp"] {
        let mut args = vec![
            "relative",
            "--embeddings",
            &x,
            "--anchors",
            "rows:0..3",
            "--projection",
            projection,
            "--output",
            &out,
        ];
        if projection == "lp" {
            args.extend(["--p", "3"]);
        }
        let e = s.fails(&args)?;
        mentions(&e, &["overflows f32", "rescale"]);
        assert!(
            !s.path("r.safetensors").exists(),
            "{projection} wrote its output"
        );
    }
    // Cosine is scale-invariant: the same file projects, and the output is finite.
    let ok = s.run(&[
        "relative",
        "--embeddings",
        &x,
        "--anchors",
        "rows:0..3",
        "--output",
        &out,
    ])?;
    if ok.status.success() {
        let f = relstitch::io::SafetensorsFile::read(&s.path("r.safetensors"), &Device::Cpu)?;
        let v = f.matrix("relative")?.flatten_all()?.to_vec1::<f32>()?;
        assert!(v.iter().all(|v| v.is_finite()), "{v:?}");
    } else {
        mentions(&String::from_utf8_lossy(&ok.stderr), &["too large"]);
    }
    Ok(())
}

#[test]
fn tiny_vectors_are_not_called_zero_vectors() -> Result<()> {
    let s = Sandbox::new()?;
    let x = Tensor::new(&[[1f32, 0.0], [0.0, 1.0], [1e-30, 0.0]], &Device::Cpu)?;
    let x = s.matrix("x.safetensors", &x)?;
    let e = s.fails(&[
        "relative",
        "--embeddings",
        &x,
        "--anchors",
        "rows:0,1",
        "--output",
        &s.arg("r.safetensors"),
    ])?;
    mentions(
        &e,
        &[
            "row 2 is not zero but its norm is too small for f32",
            "1e-30",
            "rescale",
        ],
    );
    assert!(!e.contains("zero vector"), "{e}");
    Ok(())
}

// 5. Absurd training sizes and options.

#[test]
fn fit_refuses_absurd_sizes_before_embedding() -> Result<()> {
    let s = Sandbox::new()?;
    let train = train_jsonl(&s)?;
    let ckpt = s.arg("ckpt");
    // The model does not exist: each refusal must come before the model is even looked up.
    for (extra, needle) in [
        (
            vec!["--head", "mlp", "--hidden", "0"],
            "hidden width (--hidden): 0",
        ),
        (
            vec!["--head", "mlp", "--hidden", "99999999999"],
            "hidden width",
        ),
        (vec!["--epochs", "0"], "epochs"),
        (vec!["--lr", "0"], "learning rate"),
        (vec!["--lr=-1"], "learning rate"),
        (vec!["--lr", "NaN"], "learning rate"),
        (vec!["--val-fraction", "1.5"], "validation fraction"),
        (vec!["--val-fraction", "NaN"], "validation fraction"),
    ] {
        let mut args = vec![
            "fit",
            "--model",
            "no-such-model",
            "--train",
            &train,
            "--out",
            &ckpt,
        ];
        args.extend(extra.iter().copied());
        let e = s.fails(&args)?;
        mentions(&e, &[needle]);
        assert!(
            !e.contains("no-such-model"),
            "the model was looked up first: {e}"
        );
    }
    Ok(())
}

// 6. Row ranges are checked before they are expanded.

#[test]
fn huge_reversed_and_repeated_row_ranges_are_refused_at_once() -> Result<()> {
    let s = Sandbox::new()?;
    let x = s.matrix("x.safetensors", &randn(10, 4)?)?;
    let out = s.arg("r.safetensors");
    let relative = |anchors: &str| {
        s.fails(&[
            "relative",
            "--embeddings",
            &x,
            "--anchors",
            anchors,
            "--output",
            &out,
        ])
    };
    let start = Instant::now();
    let e = relative("rows:0..99999999999")?;
    mentions(
        &e,
        &["row range `0..99999999999` is out of range", "10 rows"],
    );
    assert!(start.elapsed() < Duration::from_secs(20));
    mentions(&relative("rows:18446744073709551615")?, &["too large"]);
    mentions(&relative("rows:3,10")?, &["row 10 is out of range"]);
    mentions(&relative("rows:5..2")?, &["empty row range `5..2`"]);
    mentions(&relative("rows:4..4")?, &["empty row range"]);
    mentions(&relative("rows:1,1")?, &["duplicate row 1"]);
    mentions(
        &relative("rows:0..5,3")?,
        &["duplicate row 3: named twice (by `0..5` and by `3`)"],
    );
    // compare resolves the same rows in both spaces.
    let y = s.matrix("y.safetensors", &randn(10, 3)?)?;
    let e = s.fails(&[
        "compare",
        "--a",
        &x,
        "--b",
        &y,
        "--anchors",
        "rows:0..99999999999",
    ])?;
    mentions(&e, &["out of range"]);
    Ok(())
}

#[test]
fn duplicate_rows_in_an_anchor_file_read_as_a_sentence() -> Result<()> {
    let s = Sandbox::new()?;
    let x = s.matrix("x.safetensors", &randn(10, 4)?)?;
    let anchors = s.text(
        "anchors.jsonl",
        "{\"row\": 2}\n{\"row\": 5}\n{\"row\": 2}\n",
    )?;
    let e = s.fails(&[
        "relative",
        "--embeddings",
        &x,
        "--anchors",
        &anchors,
        "--output",
        &s.arg("r.safetensors"),
    ])?;
    assert!(!e.contains("AnchorSample") && !e.contains("Some("), "{e}");
    mentions(&e, &["row 2"]);
    Ok(())
}

// 7. Thread counts.

#[test]
fn absurd_thread_counts_are_refused_with_the_maximum() -> Result<()> {
    let s = Sandbox::new()?;
    let input = s.text("in.txt", "hello\n")?;
    let out = s.arg("e.safetensors");
    let max = relstitch::device::max_num_threads();
    for n in ["5000", "0"] {
        let e = s.fails(&[
            "embed",
            "--model",
            "no-such-model",
            "--input",
            &input,
            "--output",
            &out,
            "--threads",
            n,
        ])?;
        mentions(&e, &["thread count", &format!("use 1 to {max}")]);
        let e = s.fails_bin(
            env!("CARGO_BIN_EXE_stitch-two-checkpoints"),
            &["--encoder-from", "a", "--decoder-from", "b", "--threads", n],
        )?;
        mentions(&e, &[&format!("use 1 to {max}")]);
    }
    Ok(())
}

// 8. Messages.

#[test]
fn non_object_jsonl_lines_are_called_what_they_are() -> Result<()> {
    let s = Sandbox::new()?;
    for (line, kind) in [
        ("[1,2]", "an array"),
        ("\"abc\"", "a string"),
        ("42", "a number"),
        ("null", "null"),
    ] {
        let p = s.path("t.jsonl");
        std::fs::write(&p, format!("{{\"text\": \"fine\"}}\n{line}\n"))?;
        let msg = relstitch::io::read_texts(&p, "text")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.contains(":2") && msg.contains(&format!("not a JSON object (found {kind})")),
            "{msg}"
        );
        assert!(!msg.contains("no field"), "{msg}");
        // Through the command line too (texts are read before any model is loaded).
        let e = s.fails(&[
            "compare",
            "--model",
            "m1",
            "--model",
            "m2",
            "--input",
            &s.arg("t.jsonl"),
        ])?;
        mentions(&e, &[&format!("not a JSON object (found {kind})")]);
    }
    let p = s.path("t.jsonl");
    std::fs::write(&p, "not json\n")?;
    let msg = relstitch::io::read_texts(&p, "text")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.contains("not valid JSON"), "{msg}");
    Ok(())
}

#[test]
fn split_settings_are_checked_before_any_download() -> Result<()> {
    let s = Sandbox::new()?;
    for f in ["1.5", "0", "-0.2", "NaN"] {
        let start = Instant::now();
        let flag = format!("--test-fraction={f}");
        let e = s.fails(&["data", "fetch", "fortunes", &flag, "--quiet"])?;
        mentions(&e, &["test fraction", "strictly between 0 and 1"]);
        assert!(start.elapsed() < Duration::from_secs(20));
        let downloads = s.home().join("downloads");
        assert!(
            !downloads.exists() || std::fs::read_dir(&downloads)?.next().is_none(),
            "something was downloaded for --test-fraction {f}"
        );
    }
    let data = s.text(
        "d.jsonl",
        "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": \"x\"}\n",
    )?;
    let e = s.fails(&[
        "data",
        "split",
        &data,
        "--test-fraction",
        "1",
        "--out",
        &s.arg("split"),
    ])?;
    mentions(&e, &["test fraction"]);
    assert!(!s.path("split").exists());
    Ok(())
}

#[test]
fn an_io_cause_is_printed_once() -> Result<()> {
    let s = Sandbox::new()?;
    let missing = s.arg("missing.safetensors");
    let e = s.fails(&[
        "relative",
        "--embeddings",
        &missing,
        "--anchors",
        "rows:0,1",
        "--output",
        &s.arg("r.safetensors"),
    ])?;
    mentions(&e, &["missing.safetensors", "not found"]);
    assert_eq!(e.matches("No such file or directory").count(), 1, "{e}");
    let e = s.fails(&[
        "translate",
        "apply",
        "--map",
        &missing,
        "--embeddings",
        &missing,
        "--output",
        &s.arg("y.safetensors"),
    ])?;
    assert_eq!(e.matches("No such file or directory").count(), 1, "{e}");
    Ok(())
}

/// No command overwrites one of its own inputs: the output is refused before any work and the
/// input is left as it was.
#[test]
fn outputs_that_are_inputs_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let x = dir.path().join("x.safetensors");
    let t = candle_core::Tensor::randn(0f32, 1., (10, 4), &candle_core::Device::Cpu)?;
    relstitch::io::write_safetensors(&x, &[("embeddings", &t)], &Default::default())?;
    let before = std::fs::read(&x)?;
    let xs = x.to_string_lossy().into_owned();
    let runs: [&[&str]; 4] = [
        &[
            "relative",
            "--embeddings",
            &xs,
            "--anchors",
            "rows:0..3",
            "--output",
            &xs,
        ],
        &[
            "translate",
            "fit",
            "--source",
            &xs,
            "--target",
            &xs,
            "--out",
            &xs,
        ],
        &[
            "translate",
            "apply",
            "--map",
            &xs,
            "--embeddings",
            &xs,
            "--output",
            &xs,
        ],
        &[
            "embed",
            "--model",
            "all-MiniLM-L6-v2",
            "--input",
            &xs,
            "--output",
            &xs,
        ],
    ];
    for args in runs {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_relstitch"))
            .args(args)
            .env("RELSTITCH_HOME", dir.path().join("home"))
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains("also an input"), "{args:?}: {err}");
        assert_eq!(std::fs::read(&x)?, before, "{args:?} changed its input");
    }
    Ok(())
}

/// `fit --out` into a folder that is not a relstitch checkpoint is refused before any model is
/// looked up or any text embedded, and the folder is left as it was.
#[test]
fn fit_refuses_a_foreign_out_folder_before_any_work() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hf = dir.path().join("hf-model");
    std::fs::create_dir(&hf)?;
    std::fs::write(hf.join("config.json"), r#"{"model_type": "bert"}"#)?;
    std::fs::write(hf.join("tokenizer.json"), "{}")?;
    let train = dir.path().join("train.jsonl");
    std::fs::write(&train, "{\"text\": \"a\", \"label\": \"x\"}\n")?;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relstitch"))
        .args(["fit", "--model", "no-such-model-anywhere", "--train"])
        .arg(&train)
        .arg("--out")
        .arg(&hf)
        .env("RELSTITCH_HOME", dir.path().join("home"))
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("not a relstitch checkpoint"), "{err}");
    assert!(
        !err.contains("no-such-model"),
        "the model was looked up first: {err}"
    );
    assert_eq!(std::fs::read_to_string(hf.join("tokenizer.json"))?, "{}");
    Ok(())
}
