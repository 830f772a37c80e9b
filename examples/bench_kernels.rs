//! Matrix-product kernels of the packed encoder against each other and against candle's
//! quantized `QMatMul` (Q8_0), on the shapes of all-MiniLM-L6-v2 and all-mpnet-base-v2 layers.
//!
//! `cargo run --release --example bench_kernels [-- THREADS]`
//!
//! For each shape `[m, k] · [k, n]` (m = tokens of a batch) it prints GFLOP/s (2·m·k·n / median
//! wall time of several runs) of: f32 `gemm` (what the f32 encoder runs), relstitch's bf16 and
//! int8 kernels (activation rounding / quantisation included), candle's `QMatMul` with Q8_0
//! weights (activation quantisation to Q8 blocks included), and candle's f32 `matmul`. It also
//! times the element-wise kernels (GELU, residual + LayerNorm) in Gelem/s.

use std::time::Instant;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use relstitch::models::kernels::activation::{self, Activation};
use relstitch::models::kernels::{
    attention, bf16::Bf16Linear, for_row_chunks, gemm, int8, norm, Linear,
};
use relstitch::models::Precision;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

extern "C" {
    fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
}

/// Nanoseconds of CPU time this process's threads have used (`CLOCK_PROCESS_CPUTIME_ID`), so
/// that a kernel's cost can be read without the time other processes took the cores away.
fn cpu_ns() -> u64 {
    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
    let mut t = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec (two i64 on x86-64 Linux) into `t`.
    if unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut t) } != 0 {
        return 0;
    }
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Median wall seconds and median CPU seconds of `runs` calls (after one warm-up call).
fn time(runs: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (t, c) = (Instant::now(), cpu_ns());
        f();
        wall.push(t.elapsed().as_secs_f64());
        cpu.push((cpu_ns() - c) as f64 * 1e-9);
    }
    (median(wall), median(cpu))
}

fn data(len: usize, seed: u32, scale: f32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let h = (i as u32)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(seed.wrapping_mul(40_503));
            ((h >> 9) % 2001) as f32 / 1000.0 * scale - scale
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    if let Some(t) = std::env::args().nth(1) {
        relstitch::device::set_num_threads(t.parse()?)?;
    }
    println!("threads {}", rayon::current_num_threads());
    println!("GFLOP/s by wall time / per CPU-second (the second ignores time the cores were lent to other processes)");
    println!(
        "{:>5} {:>5} {:>5} | {:^13} {:^13} {:^13} {:^13} {:^13} {:^13}",
        "m", "k", "n", "f32 gemm", "bf16", "int8", "int8 1 thread", "candle Q8_0", "candle f32"
    );
    let shapes = [
        (384, 384, 1536),
        (512, 384, 1152),
        (4096, 384, 1152),
        (4096, 384, 1536),
        (4096, 1536, 384),
        (2048, 768, 2304),
        (2048, 768, 3072),
        (2048, 3072, 768),
    ];
    for (m, k, n) in shapes {
        let x = data(m * k, 1, 2.0);
        let w = data(n * k, 2, 0.1);
        let b = data(n, 3, 0.1);
        let mut out = vec![0f32; m * n];
        let flop = 2.0 * (m * k * n) as f64;
        let runs = if m * k * n > 1_000_000_000 { 3 } else { 7 };
        let f32_s = time(runs, || {
            let _ = gemm::linear(&x, m, k, &w, &b, n, &mut out, true);
        });
        let bf = Bf16Linear::new(&w, Some(&b), n, k)?;
        let bf16_s = time(runs, || {
            let _ = bf.forward(&x, m, &mut out, None, true);
        });
        let q = int8::Int8Linear::new(&w, Some(&b), n, k)?;
        let int8_s = time(runs, || {
            let _ = q.forward(&x, m, &mut out, None, true);
        });
        let int8_seq = time(runs, || {
            let _ = q.forward(&x, m, &mut out, None, false);
        });
        let wt = Tensor::from_vec(w.clone(), (n, k), &Device::Cpu)?;
        let xt = Tensor::from_vec(x.clone(), (m, k), &Device::Cpu)?;
        let qmm = QMatMul::from_qtensor(QTensor::quantize(&wt, GgmlDType::Q8_0)?)?;
        let cq_s = time(runs, || {
            let _ = qmm.forward(&xt);
        });
        let wtt = wt.t()?;
        let cf_s = time(runs, || {
            let _ = xt.matmul(&wtt);
        });
        let g = |t: (f64, f64)| format!("{:>6.0}/{:<6.0}", flop / t.0 / 1e9, flop / t.1 / 1e9);
        println!(
            "{m:>5} {k:>5} {n:>5} | {} {} {} {} {} {}",
            g(f32_s),
            g(bf16_s),
            g(int8_s),
            g(int8_seq),
            g(cq_s),
            g(cf_s)
        );
    }
    // Attention of one text, all heads, one after the other (12 heads).
    println!("attention, 12 heads of one text: GFLOP/s (4·len²·d per head) by wall / CPU time");
    for d in [32usize, 64] {
        for len in [12usize, 47, 128, 256, 384] {
            let h = 12 * d;
            let qkv = data(len * 3 * h, 9, 1.0);
            let mut out = vec![0f32; len * d];
            let mut scratch = Vec::new();
            let reps = (2_000_000 / (len * len * d)).max(1);
            let t = time(5, || {
                for _ in 0..reps {
                    for head in 0..12 {
                        let base = head * d;
                        let view = attention::Head {
                            q: &qkv[base..],
                            k: &qkv[base + h..],
                            v: &qkv[base + 2 * h..],
                            stride: 3 * h,
                            len,
                            d,
                        };
                        attention::attention_head(view, 0.125, &[], 0, &mut scratch, &mut out);
                    }
                }
            });
            let flop = (reps * 12 * 4 * len * len * d) as f64;
            println!(
                "  d {d:>3} len {len:>4}: {:>6.1} / {:>6.1}",
                flop / t.0 / 1e9,
                flop / t.1 / 1e9
            );
        }
    }
    // Element-wise kernels.
    let (rows, h, inter) = (4096usize, 384usize, 1536usize);
    let mut buf = data(rows * inter, 4, 3.0);
    let gelu = time(7, || {
        for_row_chunks(&mut buf, inter, true, |r| {
            activation::apply(Activation::GeluErf, r)
        })
    });
    let mut x = data(rows * h, 5, 3.0);
    let res = data(rows * h, 6, 3.0);
    let gamma = data(h, 7, 1.0);
    let beta = data(h, 8, 1.0);
    let ln = time(7, || {
        for_row_chunks(&mut x, h, true, |r| {
            norm::add_layer_norm_rows(r, None, &gamma, &beta, 1e-12)
        })
    });
    let _ = &res;
    println!(
        "GELU (erf) {:.2} Gelem/s per CPU-second; LayerNorm {:.2} Gelem/s per CPU-second",
        (rows * inter) as f64 / gelu.1 / 1e9,
        (rows * h) as f64 / ln.1 / 1e9
    );
    let _ = Linear::new(vec![0.0; 4], None, 2, 2, Precision::F32)?;
    Ok(())
}
