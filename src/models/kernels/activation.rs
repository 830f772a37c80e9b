//! Element-wise maths: a vectorisable `exp`, the exact (erf) GELU, its tanh approximation, ReLU.
//!
//! `f32::exp` and `erf` from libm are scalar calls that LLVM cannot vectorise; the versions here
//! are branch-free polynomials (Cephes' `expf`, Abramowitz & Stegun 7.1.26 for erf) accurate to a
//! few units in the last place of f32, so that loops over them vectorise.

/// The activation of a feed-forward block, as the checkpoints name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x · Φ(x)` with the exact normal CDF (`0.5 · x · (1 + erf(x / √2))`): HF's `gelu`.
    GeluErf,
    /// The tanh approximation of GELU: HF's `gelu_new` / `gelu_pytorch_tanh`.
    GeluTanh,
    /// `max(x, 0)`.
    Relu,
}

/// `e^x` for `x` in f32's range (inputs are clamped to `[-87.3, 88.3]`); relative error below
/// 2e-7.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // 1.5 · 2^23: adding it rounds to the nearest integer (ties to even) in the low bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    // Cody-Waite reduction: ln 2 = C1 - C2 with C1 exact in few bits.
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let z = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e = p * z + r + 1.0;
    // 2^n: n is in [-126, 127] after the clamp, so the biased exponent stays normal.
    let bits = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    e * f32::from_bits(((bits + 127) << 23) as u32)
}

/// `erf(x)`, absolute error below 3e-7 (Abramowitz & Stegun 7.1.26 evaluated in f32).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_8) * t - 0.284_496_74) * t
        + 0.254_829_6)
        * t;
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// The exact GELU, `0.5 · x · (1 + erf(x / √2))`.
#[inline(always)]
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU's tanh approximation, `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`.
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // √(2/π)
    let y = C * (x + 0.044_715 * x * x * x);
    // tanh(y) = 1 - 2 / (e^{2y} + 1), exact enough and saturating cleanly at both ends.
    let tanh = 1.0 - 2.0 / (exp(2.0 * y) + 1.0);
    0.5 * x * (1.0 + tanh)
}

super::simd::multiversion! {
    /// Applies `act` to every element of `xs` in place.
    pub fn apply(act: Activation, xs: &mut [f32]) {
        match act {
            Activation::GeluErf => {
                for x in xs.iter_mut() {
                    *x = gelu_erf(*x);
                }
            }
            Activation::GeluTanh => {
                for x in xs.iter_mut() {
                    *x = gelu_tanh(*x);
                }
            }
            Activation::Relu => {
                for x in xs.iter_mut() {
                    *x = x.max(0.0);
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// erf in f64 by its Taylor series (|x| < 3) or its asymptotic complement: the reference.
    fn erf64(x: f64) -> f64 {
        if x.abs() > 3.0 {
            // erfc(x) ≈ e^{-x²}/(x√π) · (1 - 1/(2x²) + 3/(4x⁴) - 15/(8x⁶)), enough for |x| > 3.
            let a = x.abs();
            let x2 = a * a;
            let c = (-x2).exp() / (a * std::f64::consts::PI.sqrt())
                * (1.0 - 1.0 / (2.0 * x2) + 3.0 / (4.0 * x2 * x2) - 15.0 / (8.0 * x2 * x2 * x2));
            return (1.0 - c).copysign(x);
        }
        let mut term = x;
        let mut sum = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn exp_matches_std() {
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let (ours, want) = (exp(x) as f64, (x as f64).exp());
            assert!(
                ((ours - want) / want).abs() < 3e-7,
                "exp({x}) = {ours}, want {want}"
            );
        }
        assert!(exp(-1000.0) >= 0.0 && exp(-1000.0) < 1e-37);
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn erf_and_gelu_match_f64() {
        for i in -1000..=1000 {
            let x = i as f32 / 100.0;
            let want = erf64(x as f64);
            assert!(
                (erf(x) as f64 - want).abs() < 3e-7,
                "erf({x}) = {}, want {want}",
                erf(x)
            );
            let g = 0.5 * x as f64 * (1.0 + erf64(x as f64 / std::f64::consts::SQRT_2));
            assert!(
                (gelu_erf(x) as f64 - g).abs() < 3e-7 * (1.0 + g.abs()),
                "gelu({x}) = {}, want {g}",
                gelu_erf(x)
            );
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let xd = x as f64;
            let gt = 0.5 * xd * (1.0 + (c * (xd + 0.044715 * xd * xd * xd)).tanh());
            assert!(
                (gelu_tanh(x) as f64 - gt).abs() < 1e-6 * (1.0 + gt.abs()),
                "gelu_tanh({x}) = {}, want {gt}",
                gelu_tanh(x)
            );
        }
        assert_eq!(gelu_erf(0.0), 0.0);
        assert_eq!(gelu_erf(-30.0), -0.0);
        assert_eq!(gelu_erf(30.0), 30.0);
    }
}
