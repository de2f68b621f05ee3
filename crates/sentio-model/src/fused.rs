//! The inference step as one kernel: the recurrent GEMM, the input projection and the cell,
//! fused, on SIMD registers.
//!
//! The unfused step (`sequence::infer`) writes the recurrent term `h₍t−1₎·W_hhᵀ` (`[B, 4H]`) to
//! memory with a general GEMM, then reads it back to apply the gates. Here a block of `R` rows
//! and `L` hidden units keeps the `4·L` gate pre-activations it needs (`i`, `f`, `g` and `o` of
//! the same `L` units) in `R × 4` vector registers, accumulates them over the input and `h₍t−1₎`,
//! and applies the cell right there:
//!
//! ```text
//! for each block of R rows, for each block of L hidden units (jb):
//!   acc[r][gate][l] = base[r][gate·H + jb·L + l]                  bias, or the projected code
//!                   + Σ_k x[r][k] · W_ih[gate·H + jb·L + l][k]     the encoder's sensors
//!                   + Σ_k h₍t−1₎[r][k] · W_hh[gate·H + jb·L + l][k]
//!   c[r][jb·L + l] = σ(acc_f)·c + σ(acc_i)·tanh(acc_g);  h_t[r][jb·L + l] = σ(acc_o)·tanh(c)
//! ```
//!
//! The weights are packed once per call so that, for a unit block and an input `k`, the `4·L`
//! weights are contiguous (`[H/L][K][4][L]`). `L` is the vector width (16 floats with AVX-512, 8
//! with AVX2), and the arithmetic is written on `pulp`'s vector type, so `acc` lives in
//! registers and each `+= x·w` is one vector FMA. It runs only under `pulp`'s dispatch to one of
//! those two, and only when `L` divides `H`; otherwise `sequence::infer` uses the unfused step.
//! The activations are [`activation::tanh_fast`]'s operations on vectors.

use pulp::Simd;

use crate::activation;

/// Weights `W` (`[4H, K]`, PyTorch's layout) packed as `[H/L][K][4][L]`.
pub(crate) fn pack(weight: &[f32], hidden: usize, lanes: usize, out: &mut Vec<f32>) {
    let k_len = weight.len() / (4 * hidden);
    out.clear();
    out.reserve(weight.len());
    for jb in 0..hidden / lanes {
        for k in 0..k_len {
            for gate in 0..4 {
                let rows = gate * hidden + jb * lanes..gate * hidden + (jb + 1) * lanes;
                out.extend(rows.map(|row| weight[row * k_len + k]));
            }
        }
    }
}

/// What one step reads.
#[derive(Clone, Copy)]
pub(crate) struct Step<'a> {
    pub hidden: usize,
    /// `[4H]` (the fused bias, the same for every row) or `[B, 4H]` (a projected input with the
    /// bias in it), in PyTorch's gate order.
    pub base: &'a [f32],
    pub base_per_row: bool,
    /// `x_t` (`[B, F]`) and `W_ih` packed for it, when the input is projected here.
    pub x: Option<(&'a [f32], usize, &'a [f32])>,
    /// `h₍t−1₎` (`[B, H]`) and `W_hh` packed, absent at `t = 0`.
    pub h_prev: Option<(&'a [f32], &'a [f32])>,
}

/// Runs one step for every row: `c` (`[B, H]`) in place, `h_t` into `h`. `L`, the unit block, is
/// the SIMD width: `S::F32_LANES` must divide `H`.
#[inline(always)]
pub(crate) fn step<S: Simd, const R: usize>(simd: S, s: Step<'_>, c: &mut [f32], h: &mut [f32]) {
    let rows = c.len() / s.hidden;
    let full = rows - rows % R;
    for first in (0..full).step_by(R) {
        block::<S, R>(simd, s, first, c, h);
    }
    for first in full..rows {
        block::<S, 1>(simd, s, first, c, h);
    }
}

/// Rows `first..first + R`, every unit block.
#[inline(always)]
fn block<S: Simd, const R: usize>(
    simd: S,
    s: Step<'_>,
    first: usize,
    c: &mut [f32],
    h: &mut [f32],
) {
    let l = S::F32_LANES;
    let hid = s.hidden;
    let g4 = 4 * hid;
    for jb in 0..hid / l {
        let mut acc = [[simd.splat_f32s(0.0); 4]; R];
        for (r, acc) in acc.iter_mut().enumerate() {
            let base = if s.base_per_row { &s.base[(first + r) * g4..] } else { s.base };
            for (gate, acc) in acc.iter_mut().enumerate() {
                *acc = load::<S>(&base[gate * hid + jb * l..][..l]);
            }
        }
        if let Some((x, inputs, packed)) = s.x {
            accumulate::<S, R>(simd, &mut acc, x, inputs, first, &packed[jb * inputs * 4 * l..]);
        }
        if let Some((h_prev, packed)) = s.h_prev {
            accumulate::<S, R>(simd, &mut acc, h_prev, hid, first, &packed[jb * hid * 4 * l..]);
        }
        for (r, [ai, af, ag, ao]) in acc.into_iter().enumerate() {
            let at = (first + r) * hid + jb * l;
            let (cv, _) = S::as_mut_simd_f32s(&mut c[at..at + l]);
            let (hv, _) = S::as_mut_simd_f32s(&mut h[at..at + l]);
            let ig = simd.mul_f32s(sigmoid(simd, ai), tanh(simd, ag));
            let cj = simd.mul_add_e_f32s(sigmoid(simd, af), cv[0], ig);
            cv[0] = cj;
            hv[0] = simd.mul_f32s(sigmoid(simd, ao), tanh(simd, cj));
        }
    }
}

/// The first vector of `slice` (which holds exactly one).
#[inline(always)]
fn load<S: Simd>(slice: &[f32]) -> S::f32s {
    S::as_simd_f32s(slice).0[0]
}

/// `acc[r][gate] += Σ_k input[first + r][k] · packed[k][gate]`, `input` of width `width`.
#[inline(always)]
fn accumulate<S: Simd, const R: usize>(
    simd: S,
    acc: &mut [[S::f32s; 4]; R],
    input: &[f32],
    width: usize,
    first: usize,
    packed: &[f32],
) {
    let (weights, _) = S::as_simd_f32s(&packed[..width * 4 * S::F32_LANES]);
    let rows = &input[first * width..(first + R) * width];
    for (k, w) in weights.chunks_exact(4).enumerate() {
        for (r, acc) in acc.iter_mut().enumerate() {
            let v = simd.splat_f32s(rows[r * width + k]);
            for (acc, &w) in acc.iter_mut().zip(w) {
                *acc = simd.mul_add_e_f32s(v, w, *acc);
            }
        }
    }
}

/// [`activation::tanh_fast`] on a vector, the same operations in the same order.
#[inline(always)]
fn tanh<S: Simd>(simd: S, x: S::f32s) -> S::f32s {
    use activation::tanh_coefficients as k;
    let x = simd.min_f32s(simd.max_f32s(x, simd.splat_f32s(-k::CLAMP)), simd.splat_f32s(k::CLAMP));
    let x2 = simd.mul_f32s(x, x);
    let fma = |p, c: f32| simd.mul_add_e_f32s(p, x2, simd.splat_f32s(c));
    let p = simd.mul_add_e_f32s(x2, simd.splat_f32s(k::A13), simd.splat_f32s(k::A11));
    let p = fma(fma(fma(fma(fma(p, k::A9), k::A7), k::A5), k::A3), k::A1);
    let p = simd.mul_f32s(p, x);
    let q = simd.mul_add_e_f32s(x2, simd.splat_f32s(k::B6), simd.splat_f32s(k::B4));
    let q = fma(fma(q, k::B2), k::B0);
    simd.div_f32s(p, q)
}

/// [`activation::sigmoid_fast`] on a vector: `½ + ½ · tanh(x / 2)`.
#[inline(always)]
fn sigmoid<S: Simd>(simd: S, x: S::f32s) -> S::f32s {
    let half = simd.splat_f32s(0.5);
    simd.mul_add_e_f32s(half, tanh(simd, simd.mul_f32s(half, x)), half)
}
