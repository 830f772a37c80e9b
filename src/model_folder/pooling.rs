//! Pooling token states into one vector per text, as sentence-transformers does.

use candle_core::{DType, Result, Tensor, D};

/// How token states become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Pooling {
    /// Mean of the non-padding token states.
    Mean,
    /// The state of the first token (`[CLS]` / `<s>`).
    Cls,
    /// Element-wise maximum over the non-padding token states.
    Max,
    /// Sum of the non-padding token states divided by the square root of their number.
    MeanSqrtLen,
    /// The state of the last non-padding token (decoder-style embedders such as
    /// Qwen3-Embedding, whose tokenizer appends an end-of-text token). Works for padding on
    /// either side: the last position whose mask is 1 is taken.
    LastToken,
}

impl Pooling {
    /// The name used in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::Cls => "cls",
            Self::Max => "max",
            Self::MeanSqrtLen => "mean_sqrt_len",
            Self::LastToken => "last_token",
        }
    }

    /// Pools token states over the attention mask.
    ///
    /// # Shapes
    /// - `hidden`: `[batch, seq, dim]` f32
    /// - `mask`: `[batch, seq]` (any numeric dtype; 1 = token, 0 = padding)
    /// - returns `[batch, dim]` f32
    ///
    /// # Errors
    /// A [`candle_core::Error`] (this is tensor code, not the public [`crate::Error`]) when
    /// `hidden` is not rank 3, `mask` is not rank 2, or their batch and sequence sizes differ.
    pub fn pool(self, hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, t, d) = hidden.dims3()?;
        let (mb, mt) = mask.dims2()?;
        if (mb, mt) != (b, t) {
            candle_core::bail!("pooling: mask is [{mb}, {mt}] but hidden states are [{b}, {t}, _]");
        }
        let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // [b, t, 1]
        match self {
            Self::Cls => hidden.narrow(1, 0, 1)?.squeeze(1),
            Self::Mean | Self::MeanSqrtLen => {
                let sum = hidden.broadcast_mul(&m)?.sum(1)?; // [b, d]
                let n = m.sum(1)?.clamp(1e-9, f32::MAX)?; // [b, 1]
                let n = match self {
                    Self::Mean => n,
                    _ => n.sqrt()?,
                };
                sum.broadcast_div(&n)
            }
            Self::Max => {
                // Padding positions are set to -1e9 before the maximum, like sentence-transformers.
                let neg = ((m.ones_like()? - &m)? * -1e9)?;
                hidden.broadcast_mul(&m)?.broadcast_add(&neg)?.max(1)
            }
            Self::LastToken => {
                // sentence-transformers: the last position whose mask is 1, whichever side the
                // padding is on; a row without any token pools to zeros.
                let rows = mask.to_dtype(DType::F32)?.to_vec2::<f32>()?;
                let mut index = Vec::with_capacity(b);
                let mut keep = Vec::with_capacity(b);
                for (r, row) in rows.iter().enumerate() {
                    let last = row.iter().rposition(|&v| v != 0.0);
                    index.push((r * t + last.unwrap_or(0)) as u32);
                    keep.push(if last.is_some() { 1f32 } else { 0. });
                }
                let index = Tensor::new(index, hidden.device())?;
                let keep = Tensor::new(keep, hidden.device())?.unsqueeze(1)?;
                hidden
                    .reshape((b * t, d))?
                    .index_select(&index, 0)?
                    .broadcast_mul(&keep)
            }
        }
    }
}

impl Pooling {
    /// Pools the token states of one text, given as its own rows (no padding), into `out`, with
    /// the same arithmetic as [`Pooling::pool`] on a padded batch. A text without tokens pools
    /// to zeros.
    ///
    /// # Shapes
    /// - `rows`: `[len, dim]` f32, row-major; `out`: `[dim]`
    pub fn pool_rows(self, rows: &[f32], dim: usize, out: &mut [f32]) {
        out.fill(0.0);
        let len = rows.len().checked_div(dim).unwrap_or(0);
        if len == 0 {
            return;
        }
        match self {
            Self::Cls => out.copy_from_slice(&rows[..dim]),
            Self::Mean | Self::MeanSqrtLen => {
                for row in rows.chunks_exact(dim) {
                    for (o, v) in out.iter_mut().zip(row) {
                        *o += v;
                    }
                }
                let n = (len as f32).max(1e-9);
                let n = if self == Self::Mean { n } else { n.sqrt() };
                out.iter_mut().for_each(|o| *o /= n);
            }
            Self::LastToken => out.copy_from_slice(&rows[(len - 1) * dim..len * dim]),
            Self::Max => {
                out.copy_from_slice(&rows[..dim]);
                for row in rows.chunks_exact(dim).skip(1) {
                    for (o, v) in out.iter_mut().zip(row) {
                        *o = o.max(*v);
                    }
                }
            }
        }
    }
}

/// L2-normalises one row in place (`x / max(‖x‖, 1e-12)`), as [`l2_normalize`] does for each
/// row of a matrix.
pub fn l2_normalize_row(x: &mut [f32]) {
    let norm = x.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    x.iter_mut().for_each(|v| *v /= norm);
}

/// L2-normalises each row (`x / max(‖x‖, 1e-12)`, like `torch.nn.functional.normalize`).
///
/// # Shapes
/// - `x`: `[n, d]` f32; returns `[n, d]`
///
/// # Errors
/// A [`candle_core::Error`] when a tensor operation fails (e.g. `x` is not a floating-point
/// tensor).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f32::MAX)?;
    x.broadcast_div(&norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn pooling_ignores_padding() -> Result<()> {
        let h = Tensor::new(
            &[
                [[1f32, 2.], [3., 4.], [100., -100.]],
                [[5., 6.], [7., 8.], [9., 10.]],
            ],
            &Device::Cpu,
        )?;
        let m = Tensor::new(&[[1u32, 1, 0], [1, 1, 1]], &Device::Cpu)?;
        assert_eq!(
            Pooling::Mean.pool(&h, &m)?.to_vec2::<f32>()?,
            [[2., 3.], [7., 8.]]
        );
        assert_eq!(
            Pooling::Cls.pool(&h, &m)?.to_vec2::<f32>()?,
            [[1., 2.], [5., 6.]]
        );
        assert_eq!(
            Pooling::Max.pool(&h, &m)?.to_vec2::<f32>()?,
            [[3., 4.], [9., 10.]]
        );
        assert_eq!(
            Pooling::LastToken.pool(&h, &m)?.to_vec2::<f32>()?,
            [[3., 4.], [9., 10.]]
        );
        // Left padding: the last token is still the last position whose mask is 1.
        let left = Tensor::new(&[[0u32, 1, 1], [0, 0, 0]], &Device::Cpu)?;
        assert_eq!(
            Pooling::LastToken.pool(&h, &left)?.to_vec2::<f32>()?,
            [[100., -100.], [0., 0.]]
        );
        let s = Pooling::MeanSqrtLen.pool(&h, &m)?.to_vec2::<f32>()?;
        assert!((s[0][0] - 4. / 2f32.sqrt()).abs() < 1e-6);
        let n = l2_normalize(&Tensor::new(&[[3f32, 4.], [0., 0.]], &Device::Cpu)?)?;
        assert_eq!(n.to_vec2::<f32>()?, [[0.6, 0.8], [0., 0.]]);
        // The packed form agrees with the padded one, text by text.
        let hv = h.to_vec3::<f32>()?;
        for pooling in [
            Pooling::Mean,
            Pooling::Cls,
            Pooling::Max,
            Pooling::MeanSqrtLen,
            Pooling::LastToken,
        ] {
            let padded = pooling.pool(&h, &m)?.to_vec2::<f32>()?;
            for (r, len) in [2usize, 3].into_iter().enumerate() {
                let rows: Vec<f32> = hv[r][..len].iter().flatten().copied().collect();
                let mut out = [0f32; 2];
                pooling.pool_rows(&rows, 2, &mut out);
                assert!(
                    out.iter()
                        .zip(&padded[r])
                        .all(|(a, b)| (a - b).abs() < 1e-6),
                    "{pooling:?} {r}: {out:?} vs {:?}",
                    padded[r]
                );
            }
        }
        let mut row = [3f32, 4.];
        l2_normalize_row(&mut row);
        assert_eq!(row, [0.6, 0.8]);
        Ok(())
    }
}
