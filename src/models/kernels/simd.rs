//! Which vector instructions this CPU has, and running a closure compiled for them.
//!
//! The element-wise kernels are written as plain loops over slices (lane arrays of 16 where they
//! reduce), which LLVM vectorises. The crate is built for baseline x86-64 (SSE2), so each is
//! defined with `multiversion!`: compiled again with AVX-512 (and with AVX2 + FMA) enabled, the
//! widest version the CPU has chosen at run time. The matrix kernels (`int8`, `bf16`) use
//! intrinsics directly and check [`Features`] themselves.

use std::sync::OnceLock;

/// The instruction-set extensions the kernels care about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// AVX2 and FMA.
    pub avx2: bool,
    /// AVX-512 F, BW, DQ and VL.
    pub avx512: bool,
    /// AVX-512 VNNI (`vpdpbusd`: u8 × i8 dot products of 4 into i32).
    pub avx512vnni: bool,
    /// AVX-512 BF16 (`vdpbf16ps`: bf16 × bf16 dot products of 2 into f32).
    pub avx512bf16: bool,
}

impl Features {
    /// None of the extensions: the portable code paths only.
    pub const NONE: Self = Self {
        avx2: false,
        avx512: false,
        avx512vnni: false,
        avx512bf16: false,
    };
}

/// The extensions of the CPU this runs on (detected once).
pub fn features() -> Features {
    static FEATURES: OnceLock<Features> = OnceLock::new();
    *FEATURES.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Features {
    let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    let avx512 = avx2
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512dq")
        && is_x86_feature_detected!("avx512vl");
    Features {
        avx2,
        avx512,
        avx512vnni: avx512 && is_x86_feature_detected!("avx512vnni"),
        avx512bf16: avx512 && is_x86_feature_detected!("avx512bf16"),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Features {
    Features::NONE
}

/// Defines a function twice more, compiled for AVX-512 and for AVX2 + FMA, and picks the widest
/// version the CPU runs at each call (the body is `#[inline(always)]` inside each version, so
/// that its loops are vectorised for those registers). Arguments must be plain (no generics).
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn inner($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    inner($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    inner($($arg),*)
                }
                let cpu = $crate::models::kernels::simd::features();
                if cpu.avx512 {
                    // SAFETY: the CPU has AVX-512 F/BW/DQ/VL, AVX2 and FMA (checked just now).
                    return unsafe { avx512($($arg),*) };
                }
                if cpu.avx2 {
                    // SAFETY: the CPU has AVX2 and FMA (checked just now).
                    return unsafe { avx2($($arg),*) };
                }
            }
            inner($($arg),*)
        }
    };
}
pub(crate) use multiversion;
