//! Throughput of the relative-representation core, against plain candle in the same run.
//!
//! - Cosine relative projection of `N` × `D` latents onto `K` anchors (default 100 000 × 768 onto
//!   768), in GFLOP/s (`2·N·D·K` flops), next to a bare candle matmul of the same shape; the ratio
//!   is the projection's overhead (normalisation, checks).
//! - The other projections on a slice of the rows.
//! - Every metric of `compare_spaces` on 10 000 samples, in seconds.
//!
//! ```text
//! cargo run --release --example bench_relative [-- N D K]
//! ```

use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor};
use relstitch::space::projection::{PreTransform, Projection, RelativeProjector};
use relstitch::space::similarity;

/// Best wall time of `reps` runs of `f`, in seconds.
fn best<T>(reps: usize, mut f: impl FnMut() -> Result<T>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        let out = f()?;
        best = best.min(t.elapsed().as_secs_f64());
        drop(out);
    }
    Ok(best)
}

fn main() -> Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(100_000);
    let d = args.get(1).copied().unwrap_or(768);
    let k = args.get(2).copied().unwrap_or(768);
    let dev = Device::Cpu;
    println!(
        "device: CPU, {} threads (RAYON_NUM_THREADS overrides)",
        candle_core::utils::get_num_threads()
    );

    let x = Tensor::randn(0f32, 1., (n, d), &dev)?;
    let anchors = x.narrow(0, 0, k)?.contiguous()?;
    let anchors_t = anchors.t()?.contiguous()?;
    let flops = 2.0 * n as f64 * d as f64 * k as f64;

    let t = Instant::now();
    let projector = RelativeProjector::fit(&anchors, Projection::Cosine, PreTransform::default())?;
    let fit = t.elapsed().as_secs_f64();
    // Warm-up of both paths.
    x.narrow(0, 0, 1024)?.matmul(&anchors_t)?;
    projector.project(&x.narrow(0, 0, 1024)?)?;

    // Interleaved, best of `reps` each, so that load from other processes hits both alike.
    let reps = 5;
    let (mut t_mm, mut t_cos) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..reps {
        t_mm = t_mm.min(best(1, || Ok(x.matmul(&anchors_t)?))?);
        t_cos = t_cos.min(best(1, || Ok(projector.project(&x)?))?);
    }
    println!("\ncosine relative projection, {n} × {d} onto {k} anchors (best of {reps}):");
    println!(
        "  plain candle matmul   {:>8.3} s  {:>7.1} GFLOP/s",
        t_mm,
        flops / t_mm / 1e9
    );
    println!(
        "  RelativeProjector     {:>8.3} s  {:>7.1} GFLOP/s",
        t_cos,
        flops / t_cos / 1e9
    );
    println!(
        "  ratio (projector / matmul throughput): {:.1}%",
        100.0 * t_mm / t_cos
    );
    println!("  fit on the anchors: {:.3} s", fit);

    let rows = (n / 10).max(1).min(n);
    let xs = x.narrow(0, 0, rows)?;
    println!("\nother projections, {rows} × {d} onto {k} anchors:");
    for p in [
        Projection::Angular,
        Projection::Euclidean,
        Projection::ChangeOfBasis,
        Projection::SparseTopK { k: 32, power: 8.0 },
        Projection::L1,
    ] {
        let xs = if matches!(p, Projection::L1) {
            xs.narrow(0, 0, rows.min(1000))?
        } else {
            xs.clone()
        };
        let t = Instant::now();
        let proj = RelativeProjector::fit(&anchors, p, PreTransform::default())?;
        let fit = t.elapsed().as_secs_f64();
        let t = Instant::now();
        proj.project(&xs)?;
        let run = t.elapsed().as_secs_f64();
        println!(
            "  {:<28} fit {fit:>7.3} s, project {:>6} rows {run:>7.3} s",
            p.to_string(),
            xs.dim(0)?
        );
    }

    let m = 10_000.min(n);
    let a = x.narrow(0, 0, m)?;
    let noise = Tensor::randn(0f32, 0.5, (m, d), &dev)?;
    let b = (&a + noise)?;
    println!("\nmetrics on {m} samples × {d} dims:");
    let t = Instant::now();
    let c = similarity::compare_spaces(&a, &b, 10)?;
    let all = t.elapsed().as_secs_f64();
    for (name, secs) in [
        (
            "linear CKA",
            best(1, || Ok(similarity::linear_cka(&a, &b)?))?,
        ),
        (
            "debiased CKA",
            best(1, || Ok(similarity::debiased_cka(&a, &b)?))?,
        ),
        (
            "k-NN (one space)",
            best(1, || Ok(similarity::knn(&a, 10)?))?,
        ),
        (
            "retrieval MRR/top-1",
            best(1, || Ok(similarity::retrieval(&a, &b)?))?,
        ),
        (
            "mean cosine",
            best(1, || Ok(similarity::mean_cosine(&a, &b)?))?,
        ),
    ] {
        println!("  {name:<22} {secs:>7.3} s");
    }
    println!("  compare_spaces (all)   {all:>7.3} s");
    println!("  -> {}", serde_json::to_string(&c)?);
    Ok(())
}
