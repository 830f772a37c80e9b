//! bf16 linear layers: weights rounded to bfloat16 once, at load; activations rounded to
//! bfloat16 at every call; products of pairs accumulated in f32.
//!
//! With AVX-512 BF16 (`vdpbf16ps`: two bf16 products per f32 lane and instruction) the kernel
//! reads the packed bf16 weights (half the bytes of f32). Other CPUs get the same numbers (up to
//! the order of the f32 sums) from the f32 `gemm` on the rounded values: the product of two bf16
//! numbers is exact in f32.
//!
//! Weights are packed as blocks of 16 output channels and, inside a block, pairs of consecutive
//! inputs of each channel (`[n/16][k/2][16][2]` bf16).

use candle_core::{bail, Result};

use super::activation::{self, Activation};
use super::simd;
use super::tiles::{for_each_tile, OutPtr};

/// Output channels per packed block (one 512-bit register of f32).
const BLOCK: usize = 16;
/// Blocks per channel group of a tile (64 channels).
const GROUP_BLOCKS: usize = 4;
/// Rows per register tile.
const MR: usize = 6;

/// `x` rounded to the nearest bfloat16 (ties to even), as its 16 bits. Finite inputs only (the
/// encoder's activations and weights are checked finite).
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    let round = 0x7FFF + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// The f32 value of bfloat16 bits.
#[inline(always)]
pub fn from_bf16(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

super::simd::multiversion! {
    /// `dst[i] = to_bf16(src[i])`.
    fn round_row(src: &[f32], dst: &mut [u16]) {
        for (d, v) in dst.iter_mut().zip(src) {
            *d = to_bf16(*v);
        }
    }
}

/// Which kernel computes the products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// AVX-512 BF16 (`vdpbf16ps`).
    Avx512Bf16,
    /// f32 `gemm` on the rounded values.
    Gemm,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn best() -> Self {
        if simd::features().avx512bf16 {
            Self::Avx512Bf16
        } else {
            Self::Gemm
        }
    }

    /// Every kernel this CPU can run.
    pub fn available() -> Vec<Self> {
        let mut v = vec![Self::Gemm];
        if simd::features().avx512bf16 {
            v.push(Self::Avx512Bf16);
        }
        v
    }
}

/// A linear layer with bfloat16 weights.
#[derive(Debug, Clone)]
pub struct Bf16Linear {
    n: usize,
    k: usize,
    /// `k` rounded up to a multiple of 2.
    kp: usize,
    /// `[blocks][kp / 2][16][2]` bf16 bits (AVX-512 BF16 kernel only).
    packed: Vec<u16>,
    /// The rounded weights as f32, `[n, k]` (gemm kernel only).
    rounded: Vec<f32>,
    /// `[blocks · 16]`, zero beyond `n`.
    bias: Vec<f32>,
    kernel: Kernel,
}

impl Bf16Linear {
    /// Rounds `weight` (`[n, k]` row-major, PyTorch's `[out, in]`) to bfloat16.
    ///
    /// # Shapes
    /// - `weight`: `[n · k]`; `bias`: `[n]`
    ///
    /// # Errors
    /// A [`candle_core::Error`] when the sizes do not match `n · k`.
    pub fn new(weight: &[f32], bias: Option<&[f32]>, n: usize, k: usize) -> Result<Self> {
        Self::with_kernel(weight, bias, n, k, Kernel::best())
    }

    /// As [`Bf16Linear::new`] with `kernel` (it must be in [`Kernel::available`]).
    ///
    /// # Errors
    /// A [`candle_core::Error`] when the sizes do not match `n · k` or `kernel` is not available on this CPU.
    pub fn with_kernel(
        weight: &[f32],
        bias: Option<&[f32]>,
        n: usize,
        k: usize,
        kernel: Kernel,
    ) -> Result<Self> {
        if weight.len() != n * k || n == 0 || k == 0 {
            bail!(
                "bf16 linear: weight has {} values, expected {n} × {k} (both at least 1)",
                weight.len()
            );
        }
        if bias.is_some_and(|b| b.len() != n) {
            bail!("bf16 linear: bias must have {n} values");
        }
        if !Kernel::available().contains(&kernel) {
            bail!("bf16 linear: this CPU cannot run the {kernel:?} kernel");
        }
        let kp = k.div_ceil(2) * 2;
        let blocks = n.div_ceil(BLOCK);
        let mut bias_p = vec![0f32; blocks * BLOCK];
        if let Some(b) = bias {
            bias_p[..n].copy_from_slice(b);
        }
        let (mut packed, mut rounded) = (Vec::new(), Vec::new());
        match kernel {
            Kernel::Avx512Bf16 => {
                packed = vec![0u16; blocks * kp * BLOCK];
                let kp2 = kp / 2;
                for ch in 0..n {
                    let (b, c) = (ch / BLOCK, ch % BLOCK);
                    for (kk, v) in weight[ch * k..(ch + 1) * k].iter().enumerate() {
                        let (g, j) = (kk / 2, kk % 2);
                        packed[((b * kp2 + g) * BLOCK + c) * 2 + j] = to_bf16(*v);
                    }
                }
            }
            Kernel::Gemm => {
                rounded = weight.iter().map(|v| from_bf16(to_bf16(*v))).collect();
            }
        }
        Ok(Self {
            n,
            k,
            kp,
            packed,
            rounded,
            bias: bias_p,
            kernel,
        })
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.n
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        self.k
    }

    /// `out = act(x · Wᵀ + bias)` with `x` and `W` rounded to bfloat16.
    ///
    /// # Shapes
    /// - `x`: `[m, k]`; `out`: `[m, n]`
    ///
    /// # Errors
    /// A [`candle_core::Error`] when the slices do not match the shapes.
    pub fn forward(
        &self,
        x: &[f32],
        m: usize,
        out: &mut [f32],
        act: Option<Activation>,
        parallel: bool,
    ) -> Result<()> {
        if x.len() != m * self.k || out.len() != m * self.n {
            bail!(
                "bf16 linear: x has {} values and out {}, expected {m} × {} and {m} × {}",
                x.len(),
                out.len(),
                self.k,
                self.n
            );
        }
        if m == 0 {
            return Ok(());
        }
        match self.kernel {
            Kernel::Gemm => {
                let xr: Vec<f32> = x.iter().map(|v| from_bf16(to_bf16(*v))).collect();
                super::gemm::linear(
                    &xr,
                    m,
                    self.k,
                    &self.rounded,
                    &self.bias[..self.n],
                    self.n,
                    out,
                    parallel,
                )?;
                if let Some(act) = act {
                    super::for_row_chunks(out, self.n, parallel, |rows| {
                        activation::apply(act, rows)
                    });
                }
                Ok(())
            }
            Kernel::Avx512Bf16 => {
                let (k, kp) = (self.k, self.kp);
                let mut a = vec![0u16; m * kp];
                let one = |(row, dst): (usize, &mut [u16])| {
                    round_row(&x[row * k..(row + 1) * k], &mut dst[..k])
                };
                if parallel && m >= 64 && rayon::current_num_threads() > 1 {
                    use rayon::prelude::*;
                    a.par_chunks_mut(kp).enumerate().for_each(one);
                } else {
                    a.chunks_mut(kp).enumerate().for_each(one);
                }
                let blocks = self.n.div_ceil(BLOCK);
                let groups = blocks.div_ceil(GROUP_BLOCKS);
                let ptr = OutPtr(out.as_mut_ptr());
                for_each_tile(m, groups, parallel, |group, r0, r1| {
                    let b0 = group * GROUP_BLOCKS;
                    let nb = (blocks - b0).min(GROUP_BLOCKS);
                    #[cfg(target_arch = "x86_64")]
                    {
                        let mut r = r0;
                        while r < r1 {
                            let mr = (r1 - r).min(MR);
                            // SAFETY: this kernel is only selected when the CPU has AVX-512
                            // BF16; the tile writes rows r..r+mr × its blocks (clipped to n) of
                            // `out` ([m, n], checked above), which no other tile writes.
                            unsafe { x86::dispatch(self, &a, r, mr, b0, nb, ptr.get()) };
                            r += mr;
                        }
                    }
                    let (c0, c1) = (b0 * BLOCK, ((b0 + nb) * BLOCK).min(self.n));
                    if let Some(act) = act {
                        for r in r0..r1 {
                            // SAFETY: this tile's own region of `out`.
                            let row = unsafe {
                                std::slice::from_raw_parts_mut(
                                    ptr.get().add(r * self.n + c0),
                                    c1 - c0,
                                )
                            };
                            activation::apply(act, row);
                        }
                    }
                });
                Ok(())
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Bf16Linear, BLOCK};

    /// # Safety
    /// The CPU has AVX-512 BF16; `out` is `[m, n]` with rows `r..r + mr` inside and unshared;
    /// `a` is `[m, kp]`.
    pub(super) unsafe fn dispatch(
        lin: &Bf16Linear,
        a: &[u16],
        r: usize,
        mr: usize,
        b0: usize,
        nb: usize,
        out: *mut f32,
    ) {
        macro_rules! go {
            ($($m:literal),*) => {
                match (mr, nb) {
                    $(
                        ($m, 1) => tile::<$m, 1>(lin, a, r, b0, out),
                        ($m, 2) => tile::<$m, 2>(lin, a, r, b0, out),
                        ($m, 3) => tile::<$m, 3>(lin, a, r, b0, out),
                        ($m, 4) => tile::<$m, 4>(lin, a, r, b0, out),
                    )*
                    _ => {}
                }
            };
        }
        // SAFETY: forwarded from the caller.
        unsafe { go!(1, 2, 3, 4, 5, 6) }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn tile<const MR: usize, const NB: usize>(
        lin: &Bf16Linear,
        a: &[u16],
        r0: usize,
        b0: usize,
        out: *mut f32,
    ) {
        let kp = lin.kp;
        let kp2 = kp / 2;
        let mut acc = [[_mm512_setzero_ps(); NB]; MR];
        // SAFETY (whole function): `packed` holds `blocks · kp2 · 32` values and b0 + NB ≤
        // blocks; `a` holds `m · kp` values and r0 + MR ≤ m; `bias` holds `blocks · 16`; stores
        // are masked to channels below n.
        unsafe {
            let w = lin.packed.as_ptr().add(b0 * kp2 * BLOCK * 2);
            let ap = a.as_ptr().add(r0 * kp);
            for g in 0..kp2 {
                let mut wv = [_mm512_setzero_si512(); NB];
                for (j, wv) in wv.iter_mut().enumerate() {
                    *wv = _mm512_loadu_si512(w.add((j * kp2 + g) * BLOCK * 2) as *const _);
                }
                for (i, acc) in acc.iter_mut().enumerate() {
                    let av =
                        _mm512_set1_epi32((ap.add(i * kp + g * 2) as *const i32).read_unaligned());
                    let av: __m512bh = std::mem::transmute(av);
                    for (acc, wv) in acc.iter_mut().zip(&wv) {
                        let wb: __m512bh = std::mem::transmute(*wv);
                        *acc = _mm512_dpbf16_ps(*acc, av, wb);
                    }
                }
            }
            for (i, acc) in acc.iter().enumerate() {
                let row = r0 + i;
                for (j, acc) in acc.iter().enumerate() {
                    let ch = (b0 + j) * BLOCK;
                    let y = _mm512_add_ps(*acc, _mm512_loadu_ps(lin.bias.as_ptr().add(ch)));
                    let valid = lin.n.saturating_sub(ch).min(BLOCK);
                    let mask: __mmask16 = if valid >= BLOCK {
                        0xFFFF
                    } else {
                        (1u16 << valid) - 1
                    };
                    _mm512_mask_storeu_ps(out.add(row * lin.n + ch), mask, y);
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rounding_is_to_nearest_even() {
        for v in [1.0f32, -2.5, 3.140625, 1e-3, 65504.0, -1e30, 0.0] {
            assert_eq!(to_bf16(v), half::bf16::from_f32(v).to_bits(), "{v}");
        }
        // 1 + 2^-8 is exactly halfway between two bf16 values: ties to even (1.0).
        assert_eq!(from_bf16(to_bf16(1.0 + 1.0 / 256.0)), 1.0);
        assert_eq!(from_bf16(to_bf16(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn every_kernel_matches_the_naive_rounded_product(
            m in 1usize..30, n in 1usize..80, k in 1usize..130, seed in 0u32..1000,
            parallel in any::<bool>(),
        ) {
            let gen = |len: usize, s: u32, scale: f32| -> Vec<f32> {
                (0..len).map(|i| {
                    let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(s.wrapping_mul(97));
                    ((h >> 8) % 2001) as f32 / 1000.0 * scale - scale
                }).collect()
            };
            let w = gen(n * k, seed, 0.3);
            let b = gen(n, seed + 1, 1.0);
            let x = gen(m * k, seed + 2, 2.0);
            let r = |v: f32| from_bf16(to_bf16(v)) as f64;
            for kernel in Kernel::available() {
                let lin = Bf16Linear::with_kernel(&w, Some(&b), n, k, kernel).unwrap();
                let mut out = vec![f32::NAN; m * n];
                lin.forward(&x, m, &mut out, None, parallel).unwrap();
                for row in 0..m {
                    for c in 0..n {
                        let want: f64 = (0..k).map(|i| r(x[row * k + i]) * r(w[c * k + i])).sum::<f64>()
                            + b[c] as f64;
                        let mag: f64 = (0..k).map(|i| (r(x[row * k + i]) * r(w[c * k + i])).abs()).sum();
                        let got = out[row * n + c] as f64;
                        prop_assert!((got - want).abs() <= 1e-5 * (1.0 + mag),
                            "{kernel:?} {m}x{n}x{k} at ({row},{c}): {got} vs {want}");
                    }
                }
            }
        }
    }
}
