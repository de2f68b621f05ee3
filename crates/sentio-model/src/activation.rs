//! Sigmoid and tanh over slices, exact or by a fast rational approximation.
//!
//! The exact forms are the textbook ones, `σ(x) = 1 / (1 + e^(−x))` and `tanh(x)` from the C
//! library: one libm call per element, which the compiler cannot vectorize.
//!
//! The fast forms are the rational approximation Eigen uses for `float` tanh: clamp `x` to
//! `[−7.9053, 7.9053]` (beyond it tanh rounds to ±1 in f32), then
//!
//! ```text
//! tanh(x) ≈ x · P(x²) / Q(x²),   P of degree 6 in x² (odd terms α1…α13), Q of degree 3 (β0…β6)
//! σ(x)    = ½ + ½ · tanh(x / 2)
//! ```
//!
//! It is branch-free (min, max, mul, add, one division), so the loops below compile to packed
//! SIMD with no `unsafe` and no `target-cpu`. Its error against f64 tanh is below 5e-7 absolute
//! over the whole line (`tests::fast_is_close`), two orders of magnitude inside the 1e-5 parity
//! tolerance against PyTorch, so the model uses it by default; gradient checks use [`Activation::Exact`].

use serde::{Deserialize, Serialize};

/// Which sigmoid and tanh the model evaluates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// libm `exp` and `tanh`, one call per element.
    Exact,
    /// The vectorized rational approximation (absolute error < 5e-7).
    #[default]
    Fast,
}

impl Activation {
    /// `xs[i] ← σ(xs[i])`.
    #[inline(always)]
    pub fn sigmoid(self, xs: &mut [f32]) {
        match self {
            Activation::Exact => xs.iter_mut().for_each(|x| *x = 1.0 / (1.0 + (-*x).exp())),
            Activation::Fast => xs.iter_mut().for_each(|x| *x = sigmoid_fast(*x)),
        }
    }

    /// `xs[i] ← tanh(xs[i])`.
    #[inline(always)]
    pub fn tanh(self, xs: &mut [f32]) {
        match self {
            Activation::Exact => xs.iter_mut().for_each(|x| *x = x.tanh()),
            Activation::Fast => xs.iter_mut().for_each(|x| *x = tanh_fast(*x)),
        }
    }
}

/// The rational approximation's constants (shared with the vector form in `fused.rs`).
pub(crate) mod tanh_coefficients {
    pub const CLAMP: f32 = 7.905_311;
    pub const A1: f32 = 4.893_524_6e-3;
    pub const A3: f32 = 6.372_619_3e-4;
    pub const A5: f32 = 1.485_722_4e-5;
    pub const A7: f32 = 5.122_297e-8;
    pub const A9: f32 = -8.604_672e-11;
    pub const A11: f32 = 2.000_188e-13;
    pub const A13: f32 = -2.760_768_5e-16;
    pub const B0: f32 = 4.893_525e-3;
    pub const B2: f32 = 2.268_434_6e-3;
    pub const B4: f32 = 1.185_347e-4;
    pub const B6: f32 = 1.198_258_4e-6;
}

/// tanh by Eigen's rational approximation (see the module docs).
#[inline(always)]
pub fn tanh_fast(x: f32) -> f32 {
    use tanh_coefficients::*;
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let mut p = x2.mul_add(A13, A11);
    p = p.mul_add(x2, A9);
    p = p.mul_add(x2, A7);
    p = p.mul_add(x2, A5);
    p = p.mul_add(x2, A3);
    p = p.mul_add(x2, A1);
    p *= x;
    let mut q = x2.mul_add(B6, B4);
    q = q.mul_add(x2, B2);
    q = q.mul_add(x2, B0);
    p / q
}

/// σ by [`tanh_fast`]: `σ(x) = ½ + ½ · tanh(x / 2)`.
#[inline(always)]
pub fn sigmoid_fast(x: f32) -> f32 {
    0.5f32.mul_add(tanh_fast(0.5 * x), 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_is_close() {
        let mut worst_tanh = 0.0f64;
        let mut worst_sigmoid = 0.0f64;
        for i in -200_000..=200_000 {
            let x = i as f32 * 1e-4;
            let t = f64::from(x).tanh();
            let s = 1.0 / (1.0 + (-f64::from(x)).exp());
            worst_tanh = worst_tanh.max((f64::from(tanh_fast(x)) - t).abs());
            worst_sigmoid = worst_sigmoid.max((f64::from(sigmoid_fast(x)) - s).abs());
        }
        assert!(worst_tanh < 5e-7, "tanh error {worst_tanh}");
        assert!(worst_sigmoid < 5e-7, "sigmoid error {worst_sigmoid}");
        assert_eq!(tanh_fast(1e9), tanh_fast(8.0));
        assert!(tanh_fast(f32::MAX) <= 1.0 && tanh_fast(f32::MIN) >= -1.0);
    }

    #[test]
    fn exact_matches_libm() {
        let mut xs = [-3.0f32, 0.0, 0.5, 10.0];
        Activation::Exact.tanh(&mut xs);
        assert_eq!(xs, [(-3.0f32).tanh(), 0.0, 0.5f32.tanh(), 10.0f32.tanh()]);
    }
}
