//! int8 linear layers: weights quantised per output channel once, at load; activations per row
//! (token) and per group of [`GROUP`] inputs at every call; products summed exactly in i32 within
//! a group, then scaled and summed in f32.
//!
//! `y[m, n] = sw[n] · Σ_g sa[m, g] · Σ_{k ∈ g} qa[m, k] · qw[n, k] + bias[n]`, where
//! `qw = round(w / sw)` with `sw = max_k |w[n, k]| / 127`, and `qa = round(x / sa)` with
//! `sa[m, g] = max_{k ∈ g} |x[m, k]| / 127` (symmetric, no zero point, values in −127..=127).
//!
//! Activation scales per group rather than per row: the token states of BERT-family models have a
//! few channels far larger than the rest (after LayerNorm, after GELU), and one scale for the whole
//! row leaves the other channels a handful of levels. Per group of 64 inputs, an outlier only
//! coarsens its own group. On the parity texts, all-mpnet-base-v2's mean / worst cosine to f32
//! went from 0.9946 / 0.9795 with one scale per row to 0.9979 / 0.9917 per group of 64
//! (all-MiniLM-L6-v2: 0.9951 / 0.9807 to 0.9985 / 0.9939), at the same speed.
//!
//! Three kernels compute the same integers:
//! - **AVX-512 VNNI** (`vpdpbusd`, u8 × i8 → i32, four products per lane): activations are stored
//!   shifted to unsigned (`qa + 128`) and `128 · Σ_{k ∈ g} qw[n, k]` is subtracted per group.
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

/// Inputs per activation scale.
pub const GROUP: usize = 64;
/// Output channels per packed block (one 512-bit register of i32).
const BLOCK: usize = 16;
/// Blocks per channel group of a tile (48 channels).
const GROUP_BLOCKS: usize = 3;
/// Rows per register tile of the AVX-512 kernel (4 rows × 3 blocks: 12 i32 and 12 f32
/// accumulators stay in registers).
const MR_512: usize = 4;
/// Rows per register tile of the AVX2 kernel.
const MR_256: usize = 4;

super::simd::multiversion! {
    /// Quantises one row symmetrically to −127..=127 per group of [`GROUP`] values (`+ 128` when
    /// `shift`, for the VNNI kernel's unsigned operand) and writes each group's scale,
    /// `max |x| / 127`, to `scales`.
    fn quantize_row(src: &[f32], dst: &mut [u8], scales: &mut [f32], shift: bool) {
        let offset = if shift { 128 } else { 0 };
        for ((src, dst), scale) in src
            .chunks(GROUP)
            .zip(dst.chunks_mut(GROUP))
            .zip(scales.iter_mut())
        {
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
            for (d, v) in dst.iter_mut().zip(src) {
                let q = (v * inv).round_ties_even() as i32;
                *d = (q.clamp(-127, 127) + offset) as u8;
            }
            *scale = amax / 127.0;
        }
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
    /// `k` rounded up to a multiple of [`GROUP`].
    kp: usize,
    /// `[blocks][kp / 4][16][4]`, zero beyond `n` and `k`.
    packed: Vec<i8>,
    /// Per-channel weight scale, `[blocks · 16]`.
    scale: Vec<f32>,
    /// `128 · Σ_{k ∈ g} qw[n, k]` (what the VNNI kernel's unsigned shift adds to group `g`),
    /// `[kp / GROUP][blocks · 16]`.
    shift_comp: Vec<i32>,
    /// `[blocks · 16]`, zero beyond `n`.
    bias: Vec<f32>,
    kernel: Kernel,
}

/// Activations quantised per row and group.
struct QuantRows {
    /// `[m, kp]`: `qa + 128` as u8 for the VNNI kernel, `qa` as i8 bits otherwise.
    data: Vec<u8>,
    /// `[m, kp / GROUP]`.
    scale: Vec<f32>,
}

impl Int8Linear {
    /// Quantises `weight` (`[n, k]` row-major, PyTorch's `[out, in]`) per output channel.
    ///
    /// # Shapes
    /// - `weight`: `[n · k]`; `bias`: `[n]`
    ///
    /// # Errors
    /// A [`candle_core::Error`] when the sizes do not match `n · k` or are zero.
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
        let kp = k.div_ceil(GROUP) * GROUP;
        let blocks = n.div_ceil(BLOCK);
        let np = blocks * BLOCK;
        let groups = kp / GROUP;
        let mut packed = vec![0i8; blocks * kp * BLOCK];
        let mut scale = vec![0f32; np];
        let mut shift_comp = vec![0i32; groups * np];
        let mut bias_p = vec![0f32; np];
        let kp4 = kp / 4;
        for ch in 0..n {
            let row = &weight[ch * k..(ch + 1) * k];
            let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
            scale[ch] = amax / 127.0;
            bias_p[ch] = bias.map_or(0.0, |b| b[ch]);
            let (b, c) = (ch / BLOCK, ch % BLOCK);
            for (kk, v) in row.iter().enumerate() {
                let q = (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8;
                shift_comp[(kk / GROUP) * np + ch] += 128 * q as i32;
                let (g, j) = (kk / 4, kk % 4);
                packed[((b * kp4 + g) * BLOCK + c) * 4 + j] = q;
            }
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
    ///
    /// # Errors
    /// A [`candle_core::Error`] when `kernel` is not available on this CPU.
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

    /// `out = act(x · Wᵀ + bias)`.
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
        let tile_groups = blocks.div_ceil(GROUP_BLOCKS);
        let ptr = OutPtr(out.as_mut_ptr());
        let kernel = self.kernel;
        for_each_tile(m, tile_groups, parallel, |group, r0, r1| {
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
        let groups = kp / GROUP;
        let shift = self.kernel == Kernel::Vnni;
        let mut data = vec![if shift { 128u8 } else { 0 }; m * kp];
        let mut scale = vec![0f32; m * groups];
        let one = |(row, (dst, s)): (usize, (&mut [u8], &mut [f32]))| {
            quantize_row(&x[row * k..(row + 1) * k], &mut dst[..k], s, shift);
        };
        if parallel && m >= 64 && rayon::current_num_threads() > 1 {
            use rayon::prelude::*;
            data.par_chunks_mut(kp)
                .zip(scale.par_chunks_mut(groups))
                .enumerate()
                .for_each(one);
        } else {
            data.chunks_mut(kp)
                .zip(scale.chunks_mut(groups))
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
        let groups = self.kp / GROUP;
        let a = &q.data[r * self.kp..(r + 1) * self.kp];
        let w = &self.packed[b * kp4 * BLOCK * 4..(b + 1) * kp4 * BLOCK * 4];
        let mut total = [0f32; BLOCK];
        for grp in 0..groups {
            let mut acc = [0i32; BLOCK];
            for g in grp * GROUP / 4..(grp + 1) * GROUP / 4 {
                for (c, acc) in acc.iter_mut().enumerate() {
                    for j in 0..4 {
                        let av = a[g * 4 + j] as i8 as i32;
                        *acc += av * w[(g * BLOCK + c) * 4 + j] as i32;
                    }
                }
            }
            let sa = q.scale[r * groups + grp];
            for (t, acc) in total.iter_mut().zip(&acc) {
                *t += *acc as f32 * sa;
            }
        }
        for (c, t) in total.iter().enumerate() {
            let ch = b * BLOCK + c;
            if ch >= self.n {
                break;
            }
            let y = t * self.scale[ch] + self.bias[ch];
            // SAFETY: r < m and ch < n, inside the caller's region.
            unsafe { *out.add(r * self.n + ch) = y };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Int8Linear, QuantRows, BLOCK, GROUP};

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
                    )*
                    _ => {}
                }
            };
        }
        // SAFETY: forwarded from the caller.
        unsafe { go!(1, 2, 3, 4) }
    }

    /// `MR` rows × `NB` blocks of 16 channels: per group of inputs, i32 sums in `MR · NB`
    /// registers, then scaled into as many f32 registers.
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
        let groups = kp / GROUP;
        let np = lin.scale.len();
        let mut total = [[_mm512_setzero_ps(); NB]; MR];
        // SAFETY (whole function): `packed` holds `blocks · kp4 · 64` bytes and b0 + NB ≤ blocks;
        // `q.data` holds `m · kp` bytes and `q.scale` `m · groups` values with r0 + MR ≤ m;
        // `scale` and `bias` hold `np = blocks · 16` values and `shift_comp` `groups · np`;
        // stores are masked to channels below n.
        unsafe {
            let w = lin.packed.as_ptr().add(b0 * kp4 * BLOCK * 4);
            let a = q.data.as_ptr().add(r0 * kp);
            for grp in 0..groups {
                let mut acc = [[_mm512_setzero_si512(); NB]; MR];
                for g in grp * GROUP / 4..(grp + 1) * GROUP / 4 {
                    let mut wv = [_mm512_setzero_si512(); NB];
                    for (j, wv) in wv.iter_mut().enumerate() {
                        *wv = _mm512_loadu_si512(w.add((j * kp4 + g) * BLOCK * 4) as *const _);
                    }
                    for (i, acc) in acc.iter_mut().enumerate() {
                        let av = _mm512_set1_epi32(
                            (a.add(i * kp + g * 4) as *const i32).read_unaligned(),
                        );
                        for (acc, wv) in acc.iter_mut().zip(&wv) {
                            *acc = _mm512_dpbusd_epi32(*acc, av, *wv);
                        }
                    }
                }
                let comp = lin.shift_comp.as_ptr().add(grp * np + b0 * BLOCK);
                let mut cv = [_mm512_setzero_si512(); NB];
                for (j, cv) in cv.iter_mut().enumerate() {
                    *cv = _mm512_loadu_si512(comp.add(j * BLOCK) as *const _);
                }
                for (i, (acc, total)) in acc.iter().zip(total.iter_mut()).enumerate() {
                    let sa = _mm512_set1_ps(*q.scale.get_unchecked((r0 + i) * groups + grp));
                    for ((acc, total), cv) in acc.iter().zip(total.iter_mut()).zip(&cv) {
                        let v = _mm512_cvtepi32_ps(_mm512_sub_epi32(*acc, *cv));
                        *total = _mm512_fmadd_ps(v, sa, *total);
                    }
                }
            }
            for (i, total) in total.iter().enumerate() {
                let row = r0 + i;
                for (j, total) in total.iter().enumerate() {
                    let ch = (b0 + j) * BLOCK;
                    let y = _mm512_fmadd_ps(
                        *total,
                        _mm512_loadu_ps(lin.scale.as_ptr().add(ch)),
                        _mm512_loadu_ps(lin.bias.as_ptr().add(ch)),
                    );
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
        let groups = kp / GROUP;
        let ones = _mm256_set1_epi16(1);
        let mut total = [[_mm256_setzero_ps(); 2]; MR];
        // SAFETY (whole function): as in `vnni_tile`, for one block; the tail of the block
        // beyond n goes through a stack buffer.
        unsafe {
            let w = lin.packed.as_ptr().add(b * kp4 * BLOCK * 4);
            let a = q.data.as_ptr().add(r0 * kp);
            for grp in 0..groups {
                let mut acc = [[_mm256_setzero_si256(); 2]; MR];
                for g in grp * GROUP / 4..(grp + 1) * GROUP / 4 {
                    let w0 = _mm256_loadu_si256(w.add(g * BLOCK * 4) as *const __m256i);
                    let w1 = _mm256_loadu_si256(w.add(g * BLOCK * 4 + 32) as *const __m256i);
                    for (i, acc) in acc.iter_mut().enumerate() {
                        let av = _mm256_set1_epi32(
                            (a.add(i * kp + g * 4) as *const i32).read_unaligned(),
                        );
                        let abs = _mm256_sign_epi8(av, av);
                        let p0 = _mm256_maddubs_epi16(abs, _mm256_sign_epi8(w0, av));
                        let p1 = _mm256_maddubs_epi16(abs, _mm256_sign_epi8(w1, av));
                        acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(p0, ones));
                        acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(p1, ones));
                    }
                }
                for (i, (acc, total)) in acc.iter().zip(total.iter_mut()).enumerate() {
                    let sa = _mm256_set1_ps(*q.scale.get_unchecked((r0 + i) * groups + grp));
                    for (acc, total) in acc.iter().zip(total.iter_mut()) {
                        *total = _mm256_fmadd_ps(_mm256_cvtepi32_ps(*acc), sa, *total);
                    }
                }
            }
            let ch = b * BLOCK;
            let valid = lin.n.saturating_sub(ch).min(BLOCK);
            for (i, total) in total.iter().enumerate() {
                let row = r0 + i;
                let mut y = [0f32; BLOCK];
                for (h, total) in total.iter().enumerate() {
                    let c = ch + 8 * h;
                    let r = _mm256_fmadd_ps(
                        *total,
                        _mm256_loadu_ps(lin.scale.as_ptr().add(c)),
                        _mm256_loadu_ps(lin.bias.as_ptr().add(c)),
                    );
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

    /// The same quantised integers, computed naively (i64 sums per group, f64 scaling).
    fn reference(w: &[f32], b: &[f32], x: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let quant = |row: &[f32]| {
            let amax = row.iter().fold(0f32, |a, v| a.max(v.abs()));
            let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
            let q: Vec<i64> = row
                .iter()
                .map(|v| (v * inv).round_ties_even().clamp(-127.0, 127.0) as i64)
                .collect();
            (q, amax / 127.0)
        };
        let qw: Vec<_> = (0..n).map(|c| quant(&w[c * k..(c + 1) * k])).collect();
        let mut out = vec![0f32; m * n];
        for r in 0..m {
            let groups: Vec<_> = x[r * k..(r + 1) * k].chunks(GROUP).map(quant).collect();
            for c in 0..n {
                let mut y = 0f64;
                for (g, (qa, sa)) in groups.iter().enumerate() {
                    let dot: i64 = qa
                        .iter()
                        .zip(&qw[c].0[g * GROUP..])
                        .map(|(a, w)| a * w)
                        .sum();
                    y += dot as f64 * *sa as f64;
                }
                out[r * n + c] = (y * qw[c].1 as f64 + b[c] as f64) as f32;
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn every_kernel_matches_the_naive_integers(
            m in 1usize..40, n in 1usize..90, k in 1usize..300, seed in 0u64..1000,
            parallel in any::<bool>(),
        ) {
            let w = values(n * k, seed, 0.2);
            let b = values(n, seed + 1, 1.0);
            let x = values(m * k, seed + 2, 3.0);
            let want = reference(&w, &b, &x, m, n, k);
            let mag: f32 = want.iter().fold(0f32, |a, v| a.max(v.abs()));
            for kernel in Kernel::available() {
                let lin = Int8Linear::new(&w, Some(&b), n, k).unwrap().with_kernel(kernel).unwrap();
                let mut out = vec![f32::NAN; m * n];
                lin.forward(&x, m, &mut out, None, parallel).unwrap();
                for i in 0..m * n {
                    prop_assert!(
                        (out[i] - want[i]).abs() <= 1e-5 * (1.0 + mag),
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
        // One input in 37 is an 8× outlier, which leaves the others of its group about 4 bits:
        // a few percent.
        assert!(rel < 0.05, "relative error {rel}");
        assert!(Int8Linear::new(&w, None, n, k + 1).is_err());
    }
}
