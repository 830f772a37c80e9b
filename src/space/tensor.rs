//! Tensor helpers shared by the latent-space modules: f32 matrices with typed errors, per-column
//! statistics, row norms checked for NaN/overflow/zero rows, duplicate-row checks, and the
//! multithreaded CPU kernels behind them (candle custom ops).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use crate::error::CandleContext;
use crate::{Error, Result};

/// Per-dimension statistics of a set of vectors, computed in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnStats {
    /// Mean of each dimension.
    pub mean: Vec<f64>,
    /// Population standard deviation of each dimension, with constant dimensions (std ≤ 10·ε·|mean|,
    /// or exactly 0) replaced by 1 so that dividing by it is safe.
    pub scale: Vec<f64>,
}

impl ColumnStats {
    /// Fits the statistics of the rows of `x`.
    ///
    /// # Shapes
    /// - `x`: `[n, d]`, `n ≥ 1`, any float dtype, any device.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `x` has no rows; [`Error::Candle`] when it is not a matrix
    /// or cannot be read as f64.
    pub fn fit(x: &Tensor) -> Result<Self> {
        let (n, d) = x
            .dims2()
            .map_err(|e| Error::candle("fitting column statistics", e))?;
        if n == 0 {
            return Err(Error::invalid("vectors", "no rows to fit statistics on"));
        }
        let v = to_f64_rows(x, "fitting column statistics")?;
        let mut mean = vec![0f64; d];
        for row in v.chunks_exact(d) {
            for (m, x) in mean.iter_mut().zip(row) {
                *m += x;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut var = vec![0f64; d];
        for row in v.chunks_exact(d) {
            for ((s, x), m) in var.iter_mut().zip(row).zip(&mean) {
                *s += (x - m) * (x - m);
            }
        }
        let scale = var
            .iter()
            .zip(&mean)
            .map(|(s, m)| {
                let sd = (s / n as f64).sqrt();
                if sd == 0.0 || sd <= 10.0 * f64::from(f32::EPSILON) * m.abs() {
                    1.0
                } else {
                    sd
                }
            })
            .collect();
        Ok(Self { mean, scale })
    }
}

/// `t` as a rank-2 f32 tensor, with a typed error for any other rank.
pub(crate) fn as_f32_matrix(t: &Tensor, what: &str) -> Result<Tensor> {
    if t.rank() != 2 {
        return Err(Error::shape(
            what,
            t.dims(),
            "expected a matrix [rows, dims]",
        ));
    }
    if t.dtype() == DType::F32 {
        return Ok(t.clone());
    }
    if !t.dtype().is_float() {
        return Err(Error::invalid(
            what,
            format!("dtype {:?}: expected floating-point values", t.dtype()),
        ));
    }
    t.to_dtype(DType::F32)
        .map_err(|e| Error::candle(format!("converting {what} to f32"), e))
}

/// All rows of a rank-2 tensor as one row-major `Vec<f64>` on the CPU.
pub(crate) fn to_f64_rows(t: &Tensor, ctx: &str) -> Result<Vec<f64>> {
    t.to_dtype(DType::F64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f64>())
        .map_err(|e| Error::candle(ctx, e))
}

/// Squared L2 norms of the rows of `x` (`[n, 1]`, same dtype and device), failing with a typed error
/// naming the first row (counted from `offset`) that holds NaN/infinite values, or, with `nonzero`
/// (the caller divides by the norms), the first zero row or row whose norm underflows or overflows.
/// Without `nonzero`, a finite row whose squared norm overflows is accepted (its entry is `inf`).
pub(crate) fn checked_sq_norms(
    x: &Tensor,
    nonzero: bool,
    what: &str,
    when: &str,
    offset: usize,
) -> Result<Tensor> {
    Ok(checked_sq_norms_vec(x, nonzero, what, when, offset)?.0)
}

/// [`checked_sq_norms`], also returning the norms as a vector.
pub(crate) fn checked_sq_norms_vec(
    x: &Tensor,
    nonzero: bool,
    what: &str,
    when: &str,
    offset: usize,
) -> Result<(Tensor, Vec<f64>)> {
    let ctx = || format!("computing the norms of {what}");
    let sq = row_sq_norms(x).context(ctx)?;
    let v = to_f64_rows(&sq, "reading the norms")?;
    // "invalid input: row 2 …", not "invalid the input: row 2 …".
    let what = what.strip_prefix("the ").unwrap_or(what);
    for (i, &s) in v.iter().enumerate() {
        if s.is_finite() && !(nonzero && s == 0.0) {
            continue;
        }
        // Only on the way to an error: look at the row to say what is really wrong.
        let row = x
            .get(i)
            .and_then(|r| r.to_dtype(DType::F64))
            .and_then(|r| r.to_vec1::<f64>())
            .map_err(|e| Error::candle(format!("reading row {} of {what}", i + offset), e))?;
        let largest = row.iter().fold(0f64, |m, v| m.max(v.abs()));
        // Shown at the input's precision (1e-30, not 1.0000000031710769e-30).
        let shown = if x.dtype() == DType::F64 {
            format!("{largest:e}")
        } else {
            format!("{:e}", largest as f32)
        };
        let i = i + offset;
        let dtype = format!("{:?}", x.dtype()).to_lowercase();
        if row.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid(
                what,
                format!("row {i} holds NaN or infinite values {when}"),
            ));
        }
        if !s.is_finite() {
            if !nonzero {
                // Finite values whose norm is not needed (the caller only checks for NaN/inf).
                continue;
            }
            return Err(Error::invalid(
                what,
                format!(
                    "row {i} holds values too large to square in {dtype} (largest |value| \
                     {shown}) {when}: its norm overflows; rescale the vectors (divide them \
                     by a constant) first"
                ),
            ));
        }
        if largest > 0.0 {
            return Err(Error::invalid(
                what,
                format!(
                    "row {i} is not zero but its norm is too small for {dtype} (largest |value| \
                     {shown}; its squared norm underflows to 0) {when}: rescale the vectors \
                     (multiply them by a constant) first"
                ),
            ));
        }
        return Err(Error::invalid(
            what,
            format!(
                "row {i} is a zero vector {when}: its cosine with anything is undefined; drop \
                 it, or do not center when it equals the anchors' mean"
            ),
        ));
    }
    Ok((sq, v))
}

/// `0..n`, or `cap` indices spread evenly over it when `n` is larger (first index 0).
pub(crate) fn evenly_spaced(n: usize, cap: usize) -> Vec<usize> {
    if n <= cap {
        (0..n).collect()
    } else {
        (0..cap).map(|i| i * n / cap).collect()
    }
}

/// For every row of `a` (`[k, d]`), the index of the first row identical to it (itself when
/// none comes before); `+0.0` and `-0.0` are the same point. Rows are keyed by a hash of their
/// bits and compared in full only when hashes meet, so no copy of the rows is kept.
pub(crate) fn first_identical_rows(a: &Tensor) -> Result<Vec<usize>> {
    use std::hash::{Hash, Hasher};
    let ctx = || "reading the rows".to_string();
    let d = a.dim(1).context(ctx)?;
    let v = a
        .to_device(&Device::Cpu)
        .and_then(|t| t.to_dtype(DType::F32))
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .context(ctx)?;
    let bits = |row: &[f32]| {
        row.iter()
            .map(|x| (x + 0.0).to_bits())
            .collect::<Vec<u32>>()
    };
    let rows: Vec<&[f32]> = v.chunks_exact(d.max(1)).collect();
    let mut by_hash: HashMap<u64, Vec<usize>> = HashMap::new();
    let mut first = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let key = bits(row);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let same = by_hash.entry(h.finish()).or_default();
        match same.iter().copied().find(|&j| bits(rows[j]) == key) {
            Some(j) => first.push(j),
            None => {
                same.push(i);
                first.push(i);
            }
        }
    }
    Ok(first)
}

/// Fails when two rows of `a` (`[k, d]` f32) are identical.
pub(crate) fn check_distinct_rows(a: &Tensor) -> Result<()> {
    let first = first_identical_rows(a)?;
    if let Some((i, &j)) = first.iter().enumerate().find(|(i, j)| *i != **j) {
        return Err(Error::invalid(
            "anchor latents",
            format!(
                "anchors {j} and {i} are identical; duplicate anchors add nothing and make the \
                 anchor matrix singular — deduplicate the anchor samples"
            ),
        ));
    }
    Ok(())
}

/// `t` on `dev` (a cheap clone when it is already there).
pub(crate) fn on_device(t: &Tensor, dev: &Device) -> candle_core::Result<Tensor> {
    if t.device().same_device(dev) {
        Ok(t.clone())
    } else {
        t.to_device(dev)
    }
}

/// Where f64 work runs: the input's device, except Metal (no f64), which falls back to the CPU.
pub(crate) fn f64_device(dev: &Device) -> Device {
    if dev.is_metal() {
        Device::Cpu
    } else {
        dev.clone()
    }
}

/// Squared L2 norm of every row of a rank-2 tensor: `[n, 1]`, same dtype and device.
pub(crate) fn row_sq_norms(x: &Tensor) -> candle_core::Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) && x.rank() == 2 {
        x.apply_op1_no_bwd(&RowSqNorms)
    } else {
        x.sqr()?.sum_keepdim(1)
    }
}

/// `y` (`[n, k]`) with row `i` divided by `√sq[i]` — in place when `y` is a contiguous f32 CPU
/// tensor (`sq_vec` holds the same values as `sq`). `y` must own its storage (a fresh result, not
/// a clone of a tensor still in use), since the CPU path overwrites it.
pub(crate) fn divide_rows_by_norm(
    y: Tensor,
    sq: &Tensor,
    sq_vec: &[f64],
) -> candle_core::Result<Tensor> {
    if y.device().is_cpu() && y.dtype() == DType::F32 && y.is_contiguous() {
        let inv: Vec<f32> = sq_vec.iter().map(|&s| (1.0 / s.sqrt()) as f32).collect();
        y.inplace_op1(&ScaleRows { inv })?;
        Ok(y)
    } else {
        y.broadcast_div(&sq.sqrt()?)
    }
}

/// Runs `f(first_row, rows)` over blocks of whole rows of `data` (`row_len` items each) on all
/// CPU threads, when the work (`work_per_row` per row) is worth the threads.
pub(crate) fn par_row_blocks<T: Send>(
    data: &mut [T],
    row_len: usize,
    work_per_row: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let rows = data.len() / row_len.max(1);
    let threads = candle_core::utils::get_num_threads().clamp(1, rows.max(1));
    if threads == 1 || rows * work_per_row < (1 << 18) {
        f(0, data);
        return;
    }
    let per = rows.div_ceil(threads);
    std::thread::scope(|scope| {
        for (b, block) in data.chunks_mut(per * row_len).enumerate() {
            let f = &f;
            scope.spawn(move || f(b * per, block));
        }
    });
}

/// Sum of squares of a slice, with independent accumulators so that it vectorises.
fn sum_sq<T: Copy + Into<f64>>(row: &[T]) -> f64 {
    let mut acc = [0f64; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            let v: f64 = v.into();
            *a += v * v;
        }
    }
    let mut s: f64 = acc.iter().sum();
    for &v in chunks.remainder() {
        let v: f64 = v.into();
        s += v * v;
    }
    s
}

/// Custom op: squared row norms of a rank-2 f32/f64 CPU tensor, accumulated in f64.
struct RowSqNorms;

impl candle_core::CustomOp1 for RowSqNorms {
    fn name(&self) -> &'static str {
        "row-sq-norms"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use candle_core::CpuStorage;
        let (n, d) = layout.shape().dims2()?;
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("row-sq-norms needs a contiguous tensor");
        };
        fn run<T: Copy + Into<f64> + Sync, O: Send + Default + Copy>(
            src: &[T],
            n: usize,
            d: usize,
            cast: impl Fn(f64) -> O + Sync,
        ) -> Vec<O> {
            let mut out = vec![O::default(); n];
            // Blocks of the output, each reading its own rows of the input.
            par_row_blocks(&mut out, 1, d, |first, block| {
                for (j, o) in block.iter_mut().enumerate() {
                    let r = first + j;
                    *o = cast(sum_sq(&src[r * d..(r + 1) * d]));
                }
            });
            out
        }
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(run(&v[start..end], n, d, |s| s as f32)),
            CpuStorage::F64(v) => CpuStorage::F64(run(&v[start..end], n, d, |s| s)),
            _ => candle_core::bail!("row-sq-norms supports f32 and f64"),
        };
        Ok((out, candle_core::Shape::from((n, 1))))
    }
}

/// In-place op: multiply row `i` of a contiguous `[n, k]` f32 CPU tensor by `inv[i]`.
struct ScaleRows {
    inv: Vec<f32>,
}

impl candle_core::InplaceOp1 for ScaleRows {
    fn name(&self) -> &'static str {
        "scale-rows"
    }

    fn cpu_fwd(
        &self,
        storage: &mut candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        let (n, k) = layout.shape().dims2()?;
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("scale-rows needs a contiguous tensor");
        };
        let candle_core::CpuStorage::F32(v) = storage else {
            candle_core::bail!("scale-rows supports f32");
        };
        if self.inv.len() != n {
            candle_core::bail!("scale-rows: {} factors for {n} rows", self.inv.len());
        }
        par_row_blocks(&mut v[start..end], k, k, |first, block| {
            for (j, row) in block.chunks_exact_mut(k).enumerate() {
                let s = self.inv[first + j];
                row.iter_mut().for_each(|x| *x *= s);
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evenly_spaced_keeps_at_most_the_cap_evenly() {
        assert_eq!(evenly_spaced(10, 2048), (0..10).collect::<Vec<_>>());
        let t = evenly_spaced(3 * 2048, 2048);
        assert_eq!(t.len(), 2048);
        assert_eq!((t[0], t[1], t[2047]), (0, 3, 3 * 2048 - 3));
    }

    #[test]
    fn identical_rows_point_to_their_first_and_are_refused_as_anchors() -> Result<()> {
        let rows = Tensor::new(
            &[
                [1.0f32, 2.0],
                [0.0, 1.0],
                [1.0, 2.0],
                [-0.0, 1.0],
                [3.0, 1.0],
            ],
            &Device::Cpu,
        )
        .context(|| "test".into())?;
        assert_eq!(first_identical_rows(&rows)?, [0, 1, 0, 1, 4]);
        let e = check_distinct_rows(&rows).err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("anchors 0 and 2 are identical")),
            "{e:?}"
        );
        let distinct = rows.narrow(0, 0, 2).context(|| "test".into())?;
        check_distinct_rows(&distinct)?;
        Ok(())
    }
}
