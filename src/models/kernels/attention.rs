//! Self-attention of one text and one head, `softmax(q kᵀ · scale + bias) v`, on the rows of
//! the packed QKV matrix.
//!
//! Texts are short (tens to a few hundred tokens) and heads narrow (32 or 64), so a general matrix
//! product per head spends more time being called than computing. This kernel works on register
//! tiles instead: scores by blocks of 4 query rows × 64 keys (the keys transposed once into a
//! scratch buffer), the weighted sum of values by blocks of 4 query rows × the whole head width
//! (when it is 16, 32, 48 or 64; other widths take a plain loop). The products are fused
//! multiply-adds where the CPU has them.

use super::norm;
use super::simd;

/// The rows of one text's queries, keys and values inside the packed QKV matrix.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// Queries: row `i` at `q[i · stride..][..d]`.
    pub q: &'a [f32],
    /// Keys, laid out as `q`.
    pub k: &'a [f32],
    /// Values, laid out as `q`.
    pub v: &'a [f32],
    /// Distance between consecutive rows (`3 · hidden` in the packed QKV matrix).
    pub stride: usize,
    /// Tokens of the text.
    pub len: usize,
    /// Head width.
    pub d: usize,
}

/// Computes one head of one text into `out` (`[len, d]`, row-major): `softmax(q kᵀ · scale +
/// bias) v`, where row `i` of the bias is `bias[start - i..][..len]` (MPNet's relative position
/// bias by key − query distance; none when `bias` is empty). `scratch` is reused between calls.
pub fn attention_head(
    head: Head<'_>,
    scale: f32,
    bias: &[f32],
    start: usize,
    scratch: &mut Vec<f32>,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        let cpu = simd::features();
        if cpu.avx512 {
            // SAFETY: the CPU has AVX-512 F/BW/DQ/VL, AVX2 and FMA (checked just now).
            return unsafe { attention_avx512(head, scale, bias, start, scratch, out) };
        }
        if cpu.avx2 {
            // SAFETY: the CPU has AVX2 and FMA (checked just now).
            return unsafe { attention_avx2(head, scale, bias, start, scratch, out) };
        }
    }
    attention_generic::<false, false>(head, scale, bias, start, scratch, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
unsafe fn attention_avx512(
    head: Head<'_>,
    scale: f32,
    bias: &[f32],
    start: usize,
    scratch: &mut Vec<f32>,
    out: &mut [f32],
) {
    attention_generic::<true, true>(head, scale, bias, start, scratch, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attention_avx2(
    head: Head<'_>,
    scale: f32,
    bias: &[f32],
    start: usize,
    scratch: &mut Vec<f32>,
    out: &mut [f32],
) {
    attention_generic::<true, false>(head, scale, bias, start, scratch, out)
}

/// `a · b + c`, fused when the CPU has FMA (`FMA`), so that it is one instruction there and no
/// library call elsewhere.
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Query rows per register tile.
const MR: usize = 4;
/// Lanes of one key block.
const LANES: usize = 16;

/// The attention with fused multiply-adds (`FMA`) and the AVX-512 register tiles (`AVX512`; the
/// caller guarantees the CPU has AVX-512 F when it is set).
#[inline(always)]
fn attention_generic<const FMA: bool, const AVX512: bool>(
    head: Head<'_>,
    scale: f32,
    bias: &[f32],
    start: usize,
    scratch: &mut Vec<f32>,
    out: &mut [f32],
) {
    let Head {
        q,
        k,
        v,
        stride,
        len,
        d,
    } = head;
    if len == 0 || d == 0 {
        return;
    }
    // Keys transposed, `[d, lp]`, zero-padded to whole 16-lane blocks, then the scores `[len, lp]`.
    let lp = len.div_ceil(LANES) * LANES;
    scratch.clear();
    scratch.resize(d * lp + len * lp, 0.0);
    let (kt, scores) = scratch.split_at_mut(d * lp);
    for j in 0..len {
        let row = &k[j * stride..j * stride + d];
        for (dd, x) in row.iter().enumerate() {
            kt[dd * lp + j] = *x;
        }
    }
    let mut i = 0;
    while i < len {
        let mr = (len - i).min(MR);
        let mut j = 0;
        while j < lp {
            let nc = ((lp - j) / LANES).min(4);
            macro_rules! tile {
                ($($m:literal),*) => {
                    match (mr, nc) {
                        $(
                            ($m, 1) => score::<FMA, AVX512, $m, 1>(q, stride, i, kt, lp, j, d, scale, scores),
                            ($m, 2) => score::<FMA, AVX512, $m, 2>(q, stride, i, kt, lp, j, d, scale, scores),
                            ($m, 3) => score::<FMA, AVX512, $m, 3>(q, stride, i, kt, lp, j, d, scale, scores),
                            ($m, _) => score::<FMA, AVX512, $m, 4>(q, stride, i, kt, lp, j, d, scale, scores),
                        )*
                        _ => {}
                    }
                };
            }
            tile!(1, 2, 3, 4);
            j += nc * LANES;
        }
        i += mr;
    }
    for (i, row) in scores.chunks_exact_mut(lp).enumerate() {
        let row = &mut row[..len];
        if bias.is_empty() {
            norm::softmax(row, None);
        } else {
            let first = start - i;
            norm::softmax(row, Some(&bias[first..first + len]));
        }
    }
    let mut i = 0;
    while i < len {
        let mr = (len - i).min(MR);
        macro_rules! tile {
            ($($m:literal),*) => {
                match (mr, d) {
                    $(
                        ($m, 16) => context::<FMA, AVX512, $m, 1>(scores, lp, v, stride, i, len, out),
                        ($m, 32) => context::<FMA, AVX512, $m, 2>(scores, lp, v, stride, i, len, out),
                        ($m, 48) => context::<FMA, AVX512, $m, 3>(scores, lp, v, stride, i, len, out),
                        ($m, 64) => context::<FMA, AVX512, $m, 4>(scores, lp, v, stride, i, len, out),
                    )*
                    _ => context_rows::<FMA>(scores, lp, v, stride, i, mr, len, d, out),
                }
            };
        }
        tile!(1, 2, 3, 4);
        i += mr;
    }
}

/// [`score_tile`], or its AVX-512 version.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn score<const FMA: bool, const AVX512: bool, const R: usize, const C: usize>(
    q: &[f32],
    stride: usize,
    i0: usize,
    kt: &[f32],
    lp: usize,
    j0: usize,
    d: usize,
    scale: f32,
    scores: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if AVX512 {
        // Every index the AVX-512 tile reads or writes is one the portable tile reads or
        // writes through a bounds-checked slice: check the extremes here instead.
        let ok = (i0 + R - 1) * stride + d <= q.len()
            && (d - 1) * lp + j0 + C * LANES <= kt.len()
            && (i0 + R - 1) * lp + j0 + C * LANES <= scores.len();
        if ok {
            // SAFETY: `attention_generic` sets AVX512 only when the CPU has AVX-512 F; the
            // bounds were checked just now.
            unsafe {
                x86::score_tile::<R, C>(
                    q.as_ptr(),
                    stride,
                    i0,
                    kt.as_ptr(),
                    lp,
                    j0,
                    d,
                    scale,
                    scores.as_mut_ptr(),
                )
            };
            return;
        }
    }
    score_tile::<FMA, R, C>(q, stride, i0, kt, lp, j0, d, scale, scores)
}

/// [`context_tile`], or its AVX-512 version.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn context<const FMA: bool, const AVX512: bool, const R: usize, const C: usize>(
    scores: &[f32],
    lp: usize,
    v: &[f32],
    stride: usize,
    i0: usize,
    len: usize,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if AVX512 {
        let d = C * LANES;
        let ok = (i0 + R - 1) * lp + len <= scores.len()
            && (len - 1) * stride + d <= v.len()
            && (i0 + R) * d <= out.len();
        if ok {
            // SAFETY: as in `score`.
            unsafe {
                x86::context_tile::<R, C>(
                    scores.as_ptr(),
                    lp,
                    v.as_ptr(),
                    stride,
                    i0,
                    len,
                    out.as_mut_ptr(),
                )
            };
            return;
        }
    }
    context_tile::<FMA, R, C>(scores, lp, v, stride, i0, len, out)
}

/// Scores of query rows `i0..i0 + R` against keys `j0..j0 + 16 · C`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn score_tile<const FMA: bool, const R: usize, const C: usize>(
    q: &[f32],
    stride: usize,
    i0: usize,
    kt: &[f32],
    lp: usize,
    j0: usize,
    d: usize,
    scale: f32,
    scores: &mut [f32],
) {
    let mut acc = [[[0f32; LANES]; C]; R];
    for dd in 0..d {
        let mut kv = [[0f32; LANES]; C];
        for (c, kv) in kv.iter_mut().enumerate() {
            let at = dd * lp + j0 + c * LANES;
            kv.copy_from_slice(&kt[at..at + LANES]);
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            let a = q[(i0 + r) * stride + dd];
            for (acc, kv) in acc.iter_mut().zip(&kv) {
                for (acc, kv) in acc.iter_mut().zip(kv) {
                    *acc = madd::<FMA>(a, *kv, *acc);
                }
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (c, acc) in acc.iter().enumerate() {
            let at = (i0 + r) * lp + j0 + c * LANES;
            for (s, a) in scores[at..at + LANES].iter_mut().zip(acc) {
                *s = a * scale;
            }
        }
    }
}

/// Output rows `i0..i0 + R` for a head of width `16 · C`: `Σ_j p[i, j] · v[j]`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn context_tile<const FMA: bool, const R: usize, const C: usize>(
    scores: &[f32],
    lp: usize,
    v: &[f32],
    stride: usize,
    i0: usize,
    len: usize,
    out: &mut [f32],
) {
    let d = C * LANES;
    let mut acc = [[[0f32; LANES]; C]; R];
    for j in 0..len {
        let mut vv = [[0f32; LANES]; C];
        for (c, vv) in vv.iter_mut().enumerate() {
            let at = j * stride + c * LANES;
            vv.copy_from_slice(&v[at..at + LANES]);
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            let p = scores[(i0 + r) * lp + j];
            for (acc, vv) in acc.iter_mut().zip(&vv) {
                for (acc, vv) in acc.iter_mut().zip(vv) {
                    *acc = madd::<FMA>(p, *vv, *acc);
                }
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (c, acc) in acc.iter().enumerate() {
            let at = (i0 + r) * d + c * LANES;
            out[at..at + LANES].copy_from_slice(acc);
        }
    }
}

/// Output rows `i0..i0 + rows` for any head width, row by row.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn context_rows<const FMA: bool>(
    scores: &[f32],
    lp: usize,
    v: &[f32],
    stride: usize,
    i0: usize,
    rows: usize,
    len: usize,
    d: usize,
    out: &mut [f32],
) {
    for i in i0..i0 + rows {
        let o = &mut out[i * d..(i + 1) * d];
        o.fill(0.0);
        for j in 0..len {
            let p = scores[i * lp + j];
            for (o, x) in o.iter_mut().zip(&v[j * stride..j * stride + d]) {
                *o = madd::<FMA>(p, *x, *o);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::LANES;

    /// AVX-512 version of [`super::score_tile`] (`R · C` accumulators in registers).
    ///
    /// # Safety
    /// The CPU has AVX-512 F; every index of the portable tile is in bounds.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn score_tile<const R: usize, const C: usize>(
        q: *const f32,
        stride: usize,
        i0: usize,
        kt: *const f32,
        lp: usize,
        j0: usize,
        d: usize,
        scale: f32,
        scores: *mut f32,
    ) {
        // SAFETY: the caller's bounds.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); C]; R];
            for dd in 0..d {
                let mut kv = [_mm512_setzero_ps(); C];
                for (c, kv) in kv.iter_mut().enumerate() {
                    *kv = _mm512_loadu_ps(kt.add(dd * lp + j0 + c * LANES));
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    let a = _mm512_set1_ps(*q.add((i0 + r) * stride + dd));
                    for (acc, kv) in acc.iter_mut().zip(&kv) {
                        *acc = _mm512_fmadd_ps(a, *kv, *acc);
                    }
                }
            }
            let s = _mm512_set1_ps(scale);
            for (r, acc) in acc.iter().enumerate() {
                for (c, acc) in acc.iter().enumerate() {
                    _mm512_storeu_ps(
                        scores.add((i0 + r) * lp + j0 + c * LANES),
                        _mm512_mul_ps(*acc, s),
                    );
                }
            }
        }
    }

    /// AVX-512 version of [`super::context_tile`].
    ///
    /// # Safety
    /// The CPU has AVX-512 F; every index of the portable tile is in bounds.
    #[inline(always)]
    pub(super) unsafe fn context_tile<const R: usize, const C: usize>(
        scores: *const f32,
        lp: usize,
        v: *const f32,
        stride: usize,
        i0: usize,
        len: usize,
        out: *mut f32,
    ) {
        // SAFETY: the caller's bounds.
        unsafe {
            let d = C * LANES;
            let mut acc = [[_mm512_setzero_ps(); C]; R];
            for j in 0..len {
                let mut vv = [_mm512_setzero_ps(); C];
                for (c, vv) in vv.iter_mut().enumerate() {
                    *vv = _mm512_loadu_ps(v.add(j * stride + c * LANES));
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    let p = _mm512_set1_ps(*scores.add((i0 + r) * lp + j));
                    for (acc, vv) in acc.iter_mut().zip(&vv) {
                        *acc = _mm512_fmadd_ps(p, *vv, *acc);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                for (c, acc) in acc.iter().enumerate() {
                    _mm512_storeu_ps(out.add((i0 + r) * d + c * LANES), *acc);
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

    /// The same attention in f64, naively.
    fn reference(head: &Head<'_>, scale: f32, bias: &[f32], start: usize) -> Vec<f64> {
        let Head {
            q,
            k,
            v,
            stride,
            len,
            d,
        } = *head;
        let mut out = vec![0f64; len * d];
        for i in 0..len {
            let s: Vec<f64> = (0..len)
                .map(|j| {
                    let dot: f64 = (0..d)
                        .map(|x| q[i * stride + x] as f64 * k[j * stride + x] as f64)
                        .sum();
                    dot * scale as f64
                        + if bias.is_empty() {
                            0.0
                        } else {
                            bias[start - i + j] as f64
                        }
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for j in 0..len {
                for x in 0..d {
                    out[i * d + x] += e[j] / z * v[j * stride + x] as f64;
                }
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn matches_the_naive_attention(
            len in 1usize..90,
            d in prop_oneof![Just(16usize), Just(32), Just(48), Just(64), 1usize..40],
            with_bias in any::<bool>(),
            seed in 0u32..1000,
        ) {
            let stride = 3 * d + 5;
            let gen = |n: usize, s: u32| -> Vec<f32> {
                (0..n).map(|i| {
                    let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(s.wrapping_mul(7919));
                    ((h >> 9) % 2001) as f32 / 1000.0 - 1.0
                }).collect()
            };
            let qkv = gen(len * stride, seed);
            let span = 2 * len + 3;
            let bias = if with_bias { gen(span, seed + 1) } else { Vec::new() };
            let start = len + 1;
            let head = Head { q: &qkv, k: &qkv[d..], v: &qkv[2 * d..], stride, len, d };
            let scale = 1.0 / (d as f32).sqrt();
            let mut out = vec![f32::NAN; len * d];
            let mut scratch = Vec::new();
            attention_head(head, scale, &bias, start, &mut scratch, &mut out);
            let want = reference(&head, scale, &bias, start);
            for (i, (o, w)) in out.iter().zip(&want).enumerate() {
                prop_assert!((*o as f64 - w).abs() < 1e-5, "{len}x{d} at {i}: {o} vs {w}");
            }
            let mut plain = vec![f32::NAN; len * d];
            attention_generic::<false, false>(head, scale, &bias, start, &mut scratch, &mut plain);
            for (o, w) in plain.iter().zip(&want) {
                prop_assert!((*o as f64 - w).abs() < 1e-5);
            }
        }
    }
}
