//! int8 linear layers: weights quantised per output channel once, at load; activations per row
//! (token) at every call; products summed exactly in i32, then scaled back to f32.
//!
//! `y[m, n] = sa[m] · sw[n] · Σ_k qa[m, k] · qw[n, k] + bias[n]`, where `qw = round(w / sw)` with
//! `sw = max_k |w[n, k]| / 127` and `qa = round(x / sa)` with `sa = max_k |x[m, k]| / 127`
//! (symmetric, no zero point, values in −127..=127).
//!
//! Three kernels compute the same integers:
//! - **AVX-512 VNNI** (`vpdpbusd`, u8 × i8 → i32, four products per lane): activations are stored
//!   shifted to unsigned (`qa + 128`) and `128 · Σ_k qw[n, k]` is subtracted at the end.
//! - **AVX2** (`vpmaddubsw` + `vpmaddwd`): `|qa| · (sign(qa) · qw)` pairs, which cannot saturate i16
//!   because both factors stay within 127.
//! - **portable** Rust, for other CPUs.
//!
//! Weights are packed for the kernels: blocks of 16 output channels, and inside a block, groups
//! of 4 consecutive inputs of each channel (`[n/16][k/4][16][4]` bytes), so that one 64-byte
//! load feeds 16 lanes × 4 products.

use candle_core::{bail, Result};

use super::activation::{self, Activation};
use super::simd;
use super::tiles::{for_each_tile, OutPtr};

/// Output channels per packed block (one 512-bit register of i32).
const BLOCK: usize = 16;
/// Blocks per channel group of a tile (64 channels).
const GROUP_BLOCKS: usize = 4;
/// Rows per register tile of the AVX-512 kernel.
const MR_512: usize = 6;
/// Rows per register tile of the AVX2 kernel.
const MR_256: usize = 4;

super::simd::multiversion! {
    /// Quantises one row symmetrically to −127..=127 (`+ 128` when `shift`, for the VNNI kernel's
    /// unsigned operand) and returns its scale, `max |x| / 127`.
    fn quantize_row(src: &[f32], dst: &mut [u8], shift: bool) -> f32 {
        let mut lanes = [0f32; 16];
        let mut chunks = src.chunks_exact(16);
        for c in &mut chunks {
            for (m, v) in lanes.iter_mut().zip(c) {
                *m = m.max(v.abs());
            }
        }
        let amax = chunks
            .remainder()
            .iter()
            .chain(lanes.iter())
            .fold(0f32, |a, v| a.max(v.abs()));
        let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
        let offset = if shift { 128 } else { 0 };
        for (d, v) in dst.iter_mut().zip(src) {
            let q = (v * inv).round_ties_even() as i32;
            *d = (q.clamp(-127, 127) + offset) as u8;
        }
        amax / 127.0
    }
}

/// Which kernel computes the products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// AVX-512 VNNI.
    Vnni,
    /// AVX2.
    Avx2,
    /// Portable Rust.
    Portable,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn best() -> Self {
        let cpu = simd::features();
        if cpu.avx512vnni {
            Self::Vnni
        } else if cpu.avx2 {
            Self::Avx2
        } else {
            Self::Portable
        }
    }

    /// Every kernel this CPU can run (for tests and benchmarks).
    pub fn available() -> Vec<Self> {
        let cpu = simd::features();
        let mut v = vec![Self::Portable];
        if cpu.avx2 {
            v.push(Self::Avx2);
        }
        if cpu.avx512vnni {
            v.push(Self::Vnni);
        }
        v
    }
}

/// A linear layer with int8 weights.
#[derive(Debug, Clone)]
pub struct Int8Linear {
    n: usize,
    k: usize,
    /// `k` rounded up to a multiple of 4.
    kp: usize,
    /// `[blocks][kp / 4][16][4]`, zero beyond `n` and `k`.
    packed: Vec<i8>,
    /// Per-channel weight scale, `[blocks · 16]`.
    scale: Vec<f32>,
    /// `128 · Σ_k qw[n, k]` (what the VNNI kernel's unsigned shift adds), `[blocks · 16]`.
    shift_comp: Vec<i32>,
    /// `[blocks · 16]`, zero beyond `n`.
    bias: Vec<f32>,
    kernel: Kernel,
}

/// Activations quantised per row.
struct QuantRows {
    /// `[m, kp]`: `qa + 128` as u8 for the VNNI kernel, `qa` as i8 bits otherwise.
    data: Vec<u8>,
    /// `[m]`.
    scale: Vec<f32>,
}

impl Int8Linear {
    /// Quantises `weight` (`[n, k]` row-major, PyTorch's `[out, in]`) per output channel.
    ///
    /// # Shapes
    /// - `weight`: `[n · k]`; `bias`: `[n]`
    pub fn new(weight: &[f32], bias: Option<&[f32]>, n: usize, k: usize) -> Result<Self> {
        if weight.len() != n * k || n == 0 || k == 0 {
            bail!(
                "int8 linear: weight has {} values, expected {n} × {k} (both at least 1)",
                weight.len()
            );
        }
        if bias.is_some_and(|b| b.len() != n) {
            bail!("int8 linear: bias must have {n} values");
        }
        let kp = k.div_ceil(4) * 4;
        let blocks = n.div_ceil(BLOCK);
        let np = blocks * BLOCK;
        let mut packed = vec![0i8; blocks * kp * BLOCK];
        let mut scale = vec![0f32; np];
        let mut shift_comp = vec![0i32; np];
        let mut bias_p = vec![0f32; np];
        let kp4 = kp / 4;
        for ch in 0..n {
            let row = &weight[ch * k..(ch + 1) * k];
            let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let s = amax / 127.0;
            let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
            scale[ch] = s;
            bias_p[ch] = bias.map_or(0.0, |b| b[ch]);
            let (b, c) = (ch / BLOCK, ch % BLOCK);
            let mut sum = 0i32;
            for (kk, v) in row.iter().enumerate() {
                let q = (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8;
                sum += q as i32;
                let (g, j) = (kk / 4, kk % 4);
                packed[((b * kp4 + g) * BLOCK + c) * 4 + j] = q;
            }
            shift_comp[ch] = 128 * sum;
        }
        Ok(Self {
            n,
            k,
            kp,
            packed,
            scale,
            shift_comp,
            bias: bias_p,
            kernel: Kernel::best(),
        })
    }

    /// Uses `kernel` instead of the best one (it must be in [`Kernel::available`]).
    pub fn with_kernel(mut self, kernel: Kernel) -> Result<Self> {
        if !Kernel::available().contains(&kernel) {
            bail!("int8 linear: this CPU cannot run the {kernel:?} kernel");
        }
        self.kernel = kernel;
        Ok(self)
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.n
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        self.k
    }

    /// Bytes of weights held.
    pub fn weight_bytes(&self) -> usize {
        self.packed.len() + 12 * self.scale.len()
    }

    /// `out = act(x · Wᵀ + bias)`.
    ///
    /// # Shapes
    /// - `x`: `[m, k]`; `out`: `[m, n]`
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
                "int8 linear: x has {} values and out {}, expected {m} × {} and {m} × {}",
                x.len(),
                out.len(),
                self.k,
                self.n
            );
        }
        if m == 0 {
            return Ok(());
        }
        let q = self.quantize(x, m, parallel);
        let blocks = self.n.div_ceil(BLOCK);
        let groups = blocks.div_ceil(GROUP_BLOCKS);
        let ptr = OutPtr(out.as_mut_ptr());
        let kernel = self.kernel;
        for_each_tile(m, groups, parallel, |group, r0, r1| {
            let b0 = group * GROUP_BLOCKS;
            let nb = (blocks - b0).min(GROUP_BLOCKS);
            // SAFETY: this tile writes rows r0..r1 × channels of blocks b0..b0+nb of `out`
            // (clipped to n), which no other tile writes; `out` has m × n values (checked above).
            unsafe { self.tile(kernel, &q, r0, r1, b0, nb, ptr) };
            let (c0, c1) = (b0 * BLOCK, ((b0 + nb) * BLOCK).min(self.n));
            if let Some(act) = act {
                for r in r0..r1 {
                    // SAFETY: as above, this tile's own region of `out`.
                    let row = unsafe {
                        std::slice::from_raw_parts_mut(ptr.get().add(r * self.n + c0), c1 - c0)
                    };
                    activation::apply(act, row);
                }
            }
        });
        Ok(())
    }

    /// Quantises each row of `x` (`[m, k]`) to `[m, kp]` bytes in the kernel's format.
    fn quantize(&self, x: &[f32], m: usize, parallel: bool) -> QuantRows {
        let (k, kp) = (self.k, self.kp);
        let shift = self.kernel == Kernel::Vnni;
        let mut data = vec![if shift { 128u8 } else { 0 }; m * kp];
        let mut scale = vec![0f32; m];
        let one = |(row, (dst, s)): (usize, (&mut [u8], &mut f32))| {
            *s = quantize_row(&x[row * k..(row + 1) * k], &mut dst[..k], shift);
        };
        if parallel && m >= 64 && rayon::current_num_threads() > 1 {
            use rayon::prelude::*;
            data.par_chunks_mut(kp)
                .zip(scale.par_iter_mut())
                .enumerate()
                .for_each(one);
        } else {
            data.chunks_mut(kp)
                .zip(scale.iter_mut())
                .enumerate()
                .for_each(one);
        }
        QuantRows { data, scale }
    }

    /// Computes rows `r0..r1` × blocks `b0..b0 + nb` with `kernel`.
    ///
    /// # Safety
    /// `out` points at `[m, n]` f32 with `r1 ≤ m`; no other thread writes this region meanwhile.
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        &self,
        kernel: Kernel,
        q: &QuantRows,
        r0: usize,
        r1: usize,
        b0: usize,
        nb: usize,
        out: OutPtr,
    ) {
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni => {
                let mut r = r0;
                while r < r1 {
                    let mr = (r1 - r).min(MR_512);
                    // SAFETY: Kernel::Vnni is only selected when the CPU has AVX-512 VNNI
                    // (`Kernel::available`); the region is the caller's.
                    unsafe { x86::vnni_dispatch(self, q, r, mr, b0, nb, out.get()) };
                    r += mr;
                }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                for b in b0..b0 + nb {
                    let mut r = r0;
                    while r < r1 {
                        let mr = (r1 - r).min(MR_256);
                        // SAFETY: Kernel::Avx2 is only selected when the CPU has AVX2 and FMA.
                        unsafe { x86::avx2_dispatch(self, q, r, mr, b, out.get()) };
                        r += mr;
                    }
                }
            }
            _ => {
                for r in r0..r1 {
                    for b in b0..b0 + nb {
                        // SAFETY: the caller's region.
                        unsafe { self.portable_block(q, r, b, out.get()) };
                    }
                }
            }
        }
    }

    /// One row × one block in portable Rust.
    ///
    /// # Safety
    /// As [`Int8Linear::tile`].
    unsafe fn portable_block(&self, q: &QuantRows, r: usize, b: usize, out: *mut f32) {
        let kp4 = self.kp / 4;
        let a = &q.data[r * self.kp..(r + 1) * self.kp];
        let w = &self.packed[b * kp4 * BLOCK * 4..(b + 1) * kp4 * BLOCK * 4];
        let mut acc = [0i32; BLOCK];
        for g in 0..kp4 {
            for (c, acc) in acc.iter_mut().enumerate() {
                for j in 0..4 {
                    let av = a[g * 4 + j] as i8 as i32;
                    *acc += av * w[(g * BLOCK + c) * 4 + j] as i32;
                }
            }
        }
        for (c, acc) in acc.iter().enumerate() {
            let ch = b * BLOCK + c;
            if ch >= self.n {
                break;
            }
            let y = *acc as f32 * (q.scale[r] * self.scale[ch]) + self.bias[ch];
            // SAFETY: r < m and ch < n, inside the caller's region.
            unsafe { *out.add(r * self.n + ch) = y };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Int8Linear, QuantRows, BLOCK};

    /// # Safety
    /// The CPU has AVX-512 VNNI; `out` is `[m, n]` with rows `r..r + mr` inside and unshared.
    pub(super) unsafe fn vnni_dispatch(
        lin: &Int8Linear,
        q: &QuantRows,
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
                        ($m, 1) => vnni_tile::<$m, 1>(lin, q, r, b0, out),
                        ($m, 2) => vnni_tile::<$m, 2>(lin, q, r, b0, out),
                        ($m, 3) => vnni_tile::<$m, 3>(lin, q, r, b0, out),
                        ($m, 4) => vnni_tile::<$m, 4>(lin, q, r, b0, out),
                    )*
                    _ => {}
                }
            };
        }
        // SAFETY: forwarded from the caller.
        unsafe { go!(1, 2, 3, 4, 5, 6) }
    }

    /// `MR` rows × `NB` blocks of 16 channels, accumulated in `MR · NB` registers.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn vnni_tile<const MR: usize, const NB: usize>(
        lin: &Int8Linear,
        q: &QuantRows,
        r0: usize,
        b0: usize,
        out: *mut f32,
    ) {
        let kp = lin.kp;
        let kp4 = kp / 4;
        let mut acc = [[_mm512_setzero_si512(); NB]; MR];
        // SAFETY (whole function): `packed` holds `blocks · kp4 · 64` bytes and b0 + NB ≤ blocks;
        // `q.data` holds `m · kp` bytes and r0 + MR ≤ m; `scale`, `shift_comp` and `bias` hold
        // `blocks · 16` values; stores are masked to channels below n.
        unsafe {
            let w = lin.packed.as_ptr().add(b0 * kp4 * BLOCK * 4);
            let a = q.data.as_ptr().add(r0 * kp);
            for g in 0..kp4 {
                let mut wv = [_mm512_setzero_si512(); NB];
                for (j, wv) in wv.iter_mut().enumerate() {
                    *wv = _mm512_loadu_si512(w.add((j * kp4 + g) * BLOCK * 4) as *const _);
                }
                for (i, acc) in acc.iter_mut().enumerate() {
                    let av =
                        _mm512_set1_epi32((a.add(i * kp + g * 4) as *const i32).read_unaligned());
                    for (acc, wv) in acc.iter_mut().zip(&wv) {
                        *acc = _mm512_dpbusd_epi32(*acc, av, *wv);
                    }
                }
            }
            for (i, acc) in acc.iter().enumerate() {
                let row = r0 + i;
                let sa = _mm512_set1_ps(q.scale[row]);
                for (j, acc) in acc.iter().enumerate() {
                    let ch = (b0 + j) * BLOCK;
                    let comp = _mm512_loadu_si512(lin.shift_comp.as_ptr().add(ch) as *const _);
                    let v = _mm512_cvtepi32_ps(_mm512_sub_epi32(*acc, comp));
                    let s = _mm512_mul_ps(_mm512_loadu_ps(lin.scale.as_ptr().add(ch)), sa);
                    let y = _mm512_fmadd_ps(v, s, _mm512_loadu_ps(lin.bias.as_ptr().add(ch)));
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

    /// # Safety
    /// The CPU has AVX2 and FMA; `out` is `[m, n]` with rows `r..r + mr` inside and unshared.
    pub(super) unsafe fn avx2_dispatch(
        lin: &Int8Linear,
        q: &QuantRows,
        r: usize,
        mr: usize,
        b: usize,
        out: *mut f32,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe {
            match mr {
                1 => avx2_tile::<1>(lin, q, r, b, out),
                2 => avx2_tile::<2>(lin, q, r, b, out),
                3 => avx2_tile::<3>(lin, q, r, b, out),
                _ => avx2_tile::<4>(lin, q, r, b, out),
            }
        }
    }

    /// `MR` rows × one block of 16 channels (two 256-bit halves).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2_tile<const MR: usize>(
        lin: &Int8Linear,
        q: &QuantRows,
        r0: usize,
        b: usize,
        out: *mut f32,
    ) {
        let kp = lin.kp;
        let kp4 = kp / 4;
        let mut acc = [[_mm256_setzero_si256(); 2]; MR];
        let ones = _mm256_set1_epi16(1);
        // SAFETY (whole function): as in `vnni_tile`, for one block; the tail of the block
        // beyond n goes through a stack buffer.
        unsafe {
            let w = lin.packed.as_ptr().add(b * kp4 * BLOCK * 4);
            let a = q.data.as_ptr().add(r0 * kp);
            for g in 0..kp4 {
                let w0 = _mm256_loadu_si256(w.add(g * BLOCK * 4) as *const __m256i);
                let w1 = _mm256_loadu_si256(w.add(g * BLOCK * 4 + 32) as *const __m256i);
                for (i, acc) in acc.iter_mut().enumerate() {
                    let av =
                        _mm256_set1_epi32((a.add(i * kp + g * 4) as *const i32).read_unaligned());
                    let abs = _mm256_sign_epi8(av, av);
                    let p0 = _mm256_maddubs_epi16(abs, _mm256_sign_epi8(w0, av));
                    let p1 = _mm256_maddubs_epi16(abs, _mm256_sign_epi8(w1, av));
                    acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(p0, ones));
                    acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(p1, ones));
                }
            }
            let ch = b * BLOCK;
            let valid = lin.n.saturating_sub(ch).min(BLOCK);
            for (i, acc) in acc.iter().enumerate() {
                let row = r0 + i;
                let sa = _mm256_set1_ps(q.scale[row]);
                let mut y = [0f32; BLOCK];
                for (h, acc) in acc.iter().enumerate() {
                    let c = ch + 8 * h;
                    let v = _mm256_cvtepi32_ps(*acc);
                    let s = _mm256_mul_ps(_mm256_loadu_ps(lin.scale.as_ptr().add(c)), sa);
                    let r = _mm256_fmadd_ps(v, s, _mm256_loadu_ps(lin.bias.as_ptr().add(c)));
                    _mm256_storeu_ps(y.as_mut_ptr().add(8 * h), r);
                }
                std::ptr::copy_nonoverlapping(y.as_ptr(), out.add(row * lin.n + ch), valid);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn values(len: usize, seed: u64, scale: f32) -> Vec<f32> {
        // A small deterministic generator (xorshift), with a few large outliers.
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let u = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                if i % 37 == 5 {
                    u * scale * 8.0
                } else {
                    u * scale
                }
            })
            .collect()
    }

    /// The same quantised integers, computed naively.
    fn reference(w: &[f32], b: &[f32], x: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let quant = |row: &[f32]| {
            let amax = row.iter().fold(0f32, |a, v| a.max(v.abs()));
            let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
            let q: Vec<i32> = row
                .iter()
                .map(|v| (v * inv).round_ties_even().clamp(-127.0, 127.0) as i32)
                .collect();
            (q, amax / 127.0)
        };
        let qw: Vec<_> = (0..n).map(|c| quant(&w[c * k..(c + 1) * k])).collect();
        let mut out = vec![0f32; m * n];
        for r in 0..m {
            let (qa, sa) = quant(&x[r * k..(r + 1) * k]);
            for c in 0..n {
                let dot: i64 = qa.iter().zip(&qw[c].0).map(|(a, w)| (*a * *w) as i64).sum();
                out[r * n + c] = dot as f32 * (sa * qw[c].1) + b[c];
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn every_kernel_matches_the_naive_integers(
            m in 1usize..40, n in 1usize..90, k in 1usize..150, seed in 0u64..1000,
            parallel in any::<bool>(),
        ) {
            let w = values(n * k, seed, 0.2);
            let b = values(n, seed + 1, 1.0);
            let x = values(m * k, seed + 2, 3.0);
            let want = reference(&w, &b, &x, m, n, k);
            for kernel in Kernel::available() {
                let lin = Int8Linear::new(&w, Some(&b), n, k).unwrap().with_kernel(kernel).unwrap();
                let mut out = vec![f32::NAN; m * n];
                lin.forward(&x, m, &mut out, None, parallel).unwrap();
                for i in 0..m * n {
                    prop_assert!(
                        (out[i] - want[i]).abs() <= 1e-5 * (1.0 + want[i].abs()),
                        "{kernel:?} {m}x{n}x{k} at {i}: {} vs {}", out[i], want[i]
                    );
                }
            }
        }
    }

    #[test]
    fn int8_is_close_to_f32_and_applies_the_activation() {
        let (m, n, k) = (70, 100, 384);
        let w = values(n * k, 3, 0.1);
        let b = values(n, 4, 0.5);
        let x = values(m * k, 5, 2.0);
        let lin = Int8Linear::new(&w, Some(&b), n, k).unwrap();
        let mut out = vec![0f32; m * n];
        lin.forward(&x, m, &mut out, Some(Activation::GeluErf), true)
            .unwrap();
        let mut err = 0f64;
        let mut norm = 0f64;
        for r in 0..m {
            for c in 0..n {
                let y: f32 = (0..k).map(|i| x[r * k + i] * w[c * k + i]).sum::<f32>() + b[c];
                let y = activation::gelu_erf(y);
                err += ((out[r * n + c] - y) as f64).powi(2);
                norm += (y as f64).powi(2);
            }
        }
        let rel = (err / norm).sqrt();
        // One input in 37 is an 8× outlier, which leaves the others about 4 bits: a few percent.
        assert!(rel < 0.05, "relative error {rel}");
        assert!(Int8Linear::new(&w, None, n, k + 1).is_err());
    }
}
