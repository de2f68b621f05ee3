//! A dense layer (`nn.Linear`) over rows: the bottleneck and the output projection.
//!
//! ```text
//! forward    Y[R, out] = X[R, in] · Wᵀ + b
//! backward   dW += dYᵀ · X      db += Σ_rows dY      dX = dY · W
//! ```

use crate::gemm::{gemm, n, t};
use crate::params::LinearParams;
use crate::sequence::column_sums;

/// `y ← x · Wᵀ + b` for `rows` rows.
pub(crate) fn forward(p: &LinearParams, x: &[f32], rows: usize, y: &mut [f32]) {
    for row in y.chunks_exact_mut(p.output).take(rows) {
        row.copy_from_slice(&p.bias);
    }
    gemm(rows, p.output, p.input, 1.0, n(x, p.input), t(&p.weight, p.input), 1.0, y, p.output);
}

/// Adds `dW` and `db` into `grad`; writes `dX` (`[rows, in]`) when asked; `bias_scratch` holds
/// `out` floats.
pub(crate) fn backward(
    p: &LinearParams,
    x: &[f32],
    dy: &[f32],
    rows: usize,
    grad: &mut LinearParams,
    dx: Option<&mut [f32]>,
    bias_scratch: &mut Vec<f32>,
) {
    let (inp, out) = (p.input, p.output);
    gemm(out, inp, rows, 1.0, t(dy, out), n(x, inp), 1.0, &mut grad.weight, inp);
    bias_scratch.resize(out, 0.0);
    column_sums(&dy[..rows * out], out, bias_scratch);
    grad.bias.iter_mut().zip(bias_scratch.iter()).for_each(|(a, b)| *a += b);
    if let Some(dx) = dx {
        gemm(rows, inp, out, 1.0, n(dy, out), n(&p.weight, inp), 0.0, dx, inp);
    }
}
