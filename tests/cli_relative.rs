//! End-to-end tests of `relstitch relative`, `translate` and `compare`, running the built binary on
//! temporary files.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Result};
use candle_core::{Device, Tensor};
use relstitch::io::{write_safetensors, SafetensorsFile};

fn relstitch(args: &[&str]) -> Result<std::process::Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_relstitch"))
        .args(args)
        .output()?)
}

/// Runs the binary and fails with its stderr when it fails.
fn ok(args: &[&str]) -> Result<String> {
    let out = relstitch(args)?;
    ensure!(
        out.status.success(),
        "relstitch {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

fn write(path: &Path, name: &str, t: &Tensor) -> Result<()> {
    write_safetensors(path, &[(name, t)], &HashMap::new())?;
    Ok(())
}

fn read(path: &Path, name: &str) -> Result<(Tensor, HashMap<String, String>)> {
    let f = SafetensorsFile::read(path, &Device::Cpu)?;
    Ok((f.matrix(name)?, f.metadata))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    Ok((a - b)?.abs()?.max_all()?.to_scalar::<f32>()?)
}

/// A random orthogonal matrix from the QR-like Gram–Schmidt of a Gaussian one (f64 → f32).
fn rotation(d: usize) -> Result<Tensor> {
    let g = Tensor::randn(0f64, 1., (d, d), &Device::Cpu)?.to_vec2::<f64>()?;
    let mut q: Vec<Vec<f64>> = Vec::new();
    for mut v in g {
        for _ in 0..2 {
            for u in &q {
                let p: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(u).for_each(|(a, b)| *a -= p * b);
            }
        }
        let n = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        q.push(v.into_iter().map(|a| a / n).collect());
    }
    Ok(Tensor::new(q, &Device::Cpu)?.to_dtype(candle_core::DType::F32)?)
}

#[test]
fn relative_is_invariant_to_rotation_and_rescaling() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let x = Tensor::randn(0f32, 1., (200, 32), &Device::Cpu)?;
    let y = (x.matmul(&rotation(32)?)? * 3.7)?;
    write(Path::new(&p("x.safetensors")), "embeddings", &x)?;
    write(Path::new(&p("y.safetensors")), "embeddings", &y)?;
    for (input, output) in [
        ("x.safetensors", "rx.safetensors"),
        ("y.safetensors", "ry.safetensors"),
    ] {
        ok(&[
            "relative",
            "--embeddings",
            &p(input),
            "--anchors",
            "rows:0..40",
            "--projection",
            "cosine",
            "--output",
            &p(output),
        ])?;
    }
    let (rx, mx) = read(Path::new(&p("rx.safetensors")), "relative")?;
    let (ry, my) = read(Path::new(&p("ry.safetensors")), "relative")?;
    assert_eq!(rx.dims(), &[200, 40]);
    let diff = max_abs_diff(&rx, &ry)?;
    assert!(diff <= 1e-5, "max abs diff {diff}");
    // The metadata says how the vectors were made; the anchor samples are the same, their latents
    // are not.
    assert_eq!(mx["projection"], r#"{"kind":"cosine"}"#);
    assert_eq!(mx["num_anchors"], "40");
    assert_eq!(mx["anchor_set_sha256"], my["anchor_set_sha256"]);
    assert_ne!(mx["anchor_latents_sha256"], my["anchor_latents_sha256"]);
    assert!(mx.contains_key("pre_transform"));

    // Anchors given as a file of latents give the same result as rows.
    write(
        Path::new(&p("a.safetensors")),
        "embeddings",
        &x.narrow(0, 0, 40)?,
    )?;
    ok(&[
        "relative",
        "--embeddings",
        &p("x.safetensors"),
        "--anchors",
        &p("a.safetensors"),
        "--output",
        &p("ra.safetensors"),
    ])?;
    let (ra, _) = read(Path::new(&p("ra.safetensors")), "relative")?;
    assert_eq!(max_abs_diff(&ra, &rx)?, 0.0);

    // A translation needs --center; so does the relative projection.
    let t = (&y + 20.0)?;
    write(Path::new(&p("t.safetensors")), "embeddings", &t)?;
    for (input, output) in [
        ("x.safetensors", "cx.safetensors"),
        ("t.safetensors", "ct.safetensors"),
    ] {
        ok(&[
            "relative",
            "--embeddings",
            &p(input),
            "--anchors",
            "rows:0..40",
            "--center",
            "--output",
            &p(output),
        ])?;
    }
    let (cx, _) = read(Path::new(&p("cx.safetensors")), "relative")?;
    let (ct, _) = read(Path::new(&p("ct.safetensors")), "relative")?;
    let diff = max_abs_diff(&cx, &ct)?;
    assert!(diff <= 1e-4, "centred: max abs diff {diff}");

    // Other projections are reachable by name, with their parameters.
    ok(&[
        "relative",
        "--embeddings",
        &p("x.safetensors"),
        "--anchors",
        "rows:0..40",
        "--projection",
        "sparse_topk",
        "--k",
        "5",
        "--output",
        &p("s.safetensors"),
    ])?;
    let (_, ms) = read(Path::new(&p("s.safetensors")), "relative")?;
    assert_eq!(
        ms["projection"],
        r#"{"kind":"sparse_topk","k":5,"power":8.0}"#
    );
    ok(&[
        "relative",
        "--embeddings",
        &p("x.safetensors"),
        "--anchors",
        "rows:0..40",
        "--projection",
        "lp",
        "--p",
        "3",
        "--standardize",
        "--output",
        &p("l.safetensors"),
    ])?;
    Ok(())
}

#[test]
fn relative_reports_bad_input() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let x = dir.path().join("x.safetensors");
    write(
        &x,
        "embeddings",
        &Tensor::randn(0f32, 1., (10, 4), &Device::Cpu)?,
    )?;
    let x = x.to_string_lossy().into_owned();
    let out_path = dir
        .path()
        .join("r.safetensors")
        .to_string_lossy()
        .into_owned();
    for (anchors, needle) in [
        ("rows:3,12", "row 12 is out of range"),
        ("rows:1,1", "duplicate"),
        ("rows:2", "at least 2 anchors"),
        ("rows:", "no rows"),
    ] {
        let out = relstitch(&[
            "relative",
            "--embeddings",
            &x,
            "--anchors",
            anchors,
            "--output",
            &out_path,
        ])?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(needle),
            "{anchors}: {err}"
        );
    }
    let out = relstitch(&[
        "relative",
        "--embeddings",
        &x,
        "--anchors",
        "rows:0..4",
        "--projection",
        "lp",
        "--output",
        &out_path,
    ])?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --p"));
    assert!(!dir.path().join("r.safetensors").exists());
    Ok(())
}

#[test]
fn translate_fit_and_apply() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let x = Tensor::randn(0f32, 1., (100, 16), &Device::Cpu)?;
    let y = (x.matmul(&rotation(16)?)? * 2.0)?;
    write(Path::new(&p("x.safetensors")), "embeddings", &x)?;
    write(Path::new(&p("y.safetensors")), "embeddings", &y)?;
    ok(&[
        "translate",
        "fit",
        "--source",
        &p("x.safetensors"),
        "--target",
        &p("y.safetensors"),
        "--method",
        "procrustes",
        "--scaling",
        "isotropic",
        "--out",
        &p("t.safetensors"),
    ])?;
    ok(&[
        "translate",
        "apply",
        "--map",
        &p("t.safetensors"),
        "--embeddings",
        &p("x.safetensors"),
        "--output",
        &p("yx.safetensors"),
    ])?;
    let (yx, meta) = read(Path::new(&p("yx.safetensors")), "embeddings")?;
    let diff = max_abs_diff(&yx, &y)?;
    assert!(diff <= 1e-4, "max abs diff {diff}");
    assert_eq!(meta["method"], "procrustes");
    for method in ["linear", "affine"] {
        ok(&[
            "translate",
            "fit",
            "--source",
            &p("x.safetensors"),
            "--target",
            &p("y.safetensors"),
            "--method",
            method,
            "--out",
            &p("m.safetensors"),
        ])?;
    }
    Ok(())
}

fn fixture() -> Result<serde_json::Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/metrics_reference.json"
    );
    Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
}

fn fixture_matrix(v: &serde_json::Value) -> Result<Tensor> {
    let rows: Vec<Vec<f32>> = serde_json::from_value(v.clone())?;
    let (n, d) = (rows.len(), rows[0].len());
    Ok(Tensor::from_vec(rows.concat(), (n, d), &Device::Cpu)?)
}

fn assert_json_matches(got: &serde_json::Value, want: &serde_json::Value) {
    let keys = [
        "linear_cka",
        "debiased_cka",
        "jaccard_at_k",
        "mrr",
        "top1",
        "mean_cosine",
        "mutual_knn",
        "k",
        "n",
    ];
    let mut got_keys: Vec<&str> = got
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    got_keys.sort();
    let mut sorted = keys.to_vec();
    sorted.sort();
    assert_eq!(got_keys, sorted);
    for key in keys {
        match (got[key].as_f64(), want[key].as_f64()) {
            (Some(a), Some(b)) => assert!((a - b).abs() <= 1e-5, "{key}: {a} vs numpy {b}"),
            _ => assert!(
                got[key].is_null() && want[key].is_null(),
                "{key}: {} vs {}",
                got[key],
                want[key]
            ),
        }
    }
}

#[test]
fn compare_json_matches_numpy_fixture() -> Result<()> {
    let f = fixture()?;
    let dir = tempfile::tempdir()?;
    let a = dir.path().join("a.safetensors");
    let b = dir.path().join("b.safetensors");
    write(&a, "embeddings", &fixture_matrix(&f["a"])?)?;
    write(&b, "embeddings", &fixture_matrix(&f["b"])?)?;
    let (a, b) = (
        a.to_string_lossy().into_owned(),
        b.to_string_lossy().into_owned(),
    );
    let k = f["k"].to_string();
    let abs: serde_json::Value = serde_json::from_str(&ok(&[
        "compare", "--a", &a, "--b", &b, "--k", &k, "--json",
    ])?)?;
    assert_json_matches(&abs, &f["absolute"]);
    let rows = format!(
        "rows:0..{}",
        f["anchor_rows"].as_array().map_or(0, Vec::len)
    );
    let rel: serde_json::Value = serde_json::from_str(&ok(&[
        "compare",
        "--a",
        &a,
        "--b",
        &b,
        "--k",
        &k,
        "--anchors",
        &rows,
        "--space",
        "relative",
        "--json",
    ])?)?;
    assert_json_matches(&rel, &f["relative"]);
    // The readable table.
    let table = ok(&["compare", "--a", &a, "--b", &b, "--k", &k])?;
    assert!(
        table.contains("linear CKA") && table.contains("n/a (widths differ)"),
        "{table}"
    );
    // Bad k is an error, not a panic.
    let out = relstitch(&["compare", "--a", &a, "--b", &b, "--k", "60", "--json"])?;
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("k = 60"));
    Ok(())
}

/// `project_file` streams the embeddings in chunks of `CHUNK_ROWS` rows: a file of two chunks and a
/// bit gives the projection of the whole matrix in memory, for each kind of anchor spec.
#[test]
fn streamed_relative_file_equals_the_whole_projection() -> Result<()> {
    use relstitch::space::relative_file::{
        latents_sha256, project_file, AnchorSpec, RelativeSummary, ANCHOR_LATENTS_SHA256,
        ANCHOR_SET_SHA256, CHUNK_ROWS, RELATIVE,
    };
    use relstitch::{AnchorSet, PreTransform, Projection, RelativeProjector};
    let dir = tempfile::tempdir()?;
    let x_path = dir.path().join("x.safetensors");
    let n = 2 * CHUNK_ROWS + 5;
    let x = Tensor::randn(0f32, 1., (n, 6), &Device::Cpu)?;
    write(&x_path, "embeddings", &x)?;
    let set = AnchorSet::from_rows(&[4, 0, n - 1, 9])?;
    let jsonl = dir.path().join("anchors.jsonl");
    set.save_jsonl(&jsonl)?;
    let rows = format!("rows:4,0,{},9", n - 1);
    for (spec, projection) in [
        (rows.parse::<AnchorSpec>()?, Projection::Cosine),
        (AnchorSpec::Jsonl(jsonl.clone()), Projection::Euclidean),
        (
            rows.parse::<AnchorSpec>()?,
            Projection::SparseTopK { k: 2, power: 8.0 },
        ),
    ] {
        let pre = PreTransform::default().with_center(true);
        let out = dir.path().join("r.safetensors");
        let made = project_file(&x_path, &spec, "embeddings", projection, pre, &out)?;
        assert_eq!(
            made,
            RelativeSummary {
                rows: n,
                anchors: 4
            }
        );
        let (got, meta) = read(&out, RELATIVE)?;
        let anchors = set.latents(&x)?;
        let whole = RelativeProjector::fit(&anchors, projection, pre)?.project(&x)?;
        let diff = max_abs_diff(&got, &whole)?;
        assert!(diff <= 1e-6, "{spec}: {diff}");
        assert_eq!(meta[ANCHOR_SET_SHA256], set.hash());
        assert_eq!(meta[ANCHOR_LATENTS_SHA256], latents_sha256(&anchors)?);
    }
    // A row of the anchor set past the end is refused, and nothing is written.
    AnchorSet::from_rows(&[1, n + 30])?.save_jsonl(&jsonl)?;
    let out = dir.path().join("never.safetensors");
    let e = project_file(
        &x_path,
        &AnchorSpec::Jsonl(jsonl),
        "embeddings",
        Projection::Cosine,
        PreTransform::default(),
        &out,
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        e.contains(&format!("row {} (named by", n + 30)) && e.contains("is out of range"),
        "{e}"
    );
    assert!(!out.exists());
    Ok(())
}
