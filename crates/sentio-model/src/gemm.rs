//! The one door to the GEMM kernel: matrixmultiply's `sgemm`, through ndarray's safe
//! `general_mat_mul` (sgemm itself is an `unsafe fn`, and the workspace forbids `unsafe`).
//!
//! Every matrix in this crate is a row-major `f32` slice with a leading dimension (the distance
//! between rows). A transposed operand is the same slice with its strides swapped, so no
//! transpose is ever copied.

use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder, linalg::general_mat_mul};

/// A row-major operand: `data` with leading dimension `ld`, used as itself or transposed.
#[derive(Clone, Copy)]
pub(crate) struct Operand<'a> {
    pub data: &'a [f32],
    pub ld: usize,
    pub transposed: bool,
}

/// `data` (leading dimension `ld`) used as stored.
pub(crate) fn n(data: &[f32], ld: usize) -> Operand<'_> {
    Operand { data, ld, transposed: false }
}

/// `data` (leading dimension `ld`) used transposed.
pub(crate) fn t(data: &[f32], ld: usize) -> Operand<'_> {
    Operand { data, ld, transposed: true }
}

impl<'a> Operand<'a> {
    /// The `rows × cols` view of `op(self)`.
    #[allow(clippy::expect_used, reason = "callers size every operand from the layer's shape")]
    fn view(self, rows: usize, cols: usize) -> ArrayView2<'a, f32> {
        let strides = if self.transposed { (1, self.ld) } else { (self.ld, 1) };
        ArrayView2::from_shape((rows, cols).strides(strides), self.data)
            .expect("GEMM operand fits its slice")
    }
}

/// `C ← α · op(A) · op(B) + β · C`, with `op(A)` of `m × k`, `op(B)` of `k × n` and `C` of
/// `m × n` (row-major, leading dimension `ldc`). With `β = 0`, `C` need not be initialized.
#[allow(clippy::expect_used, reason = "callers size C from the layer's shape")]
#[allow(clippy::too_many_arguments, reason = "this is the BLAS signature")]
pub(crate) fn gemm(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: Operand<'_>,
    b: Operand<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    let a = a.view(m, k);
    let b = b.view(k, n);
    let mut c =
        ArrayViewMut2::from_shape((m, n).strides((ldc, 1)), c).expect("GEMM output fits its slice");
    general_mat_mul(alpha, &a, &b, beta, &mut c);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposes_by_strides() {
        // A = [[1, 2, 3], [4, 5, 6]] (2×3); B = Aᵀ (3×2); A·Aᵀ = [[14, 32], [32, 77]].
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut c = [0.0; 4];
        gemm(2, 2, 3, 1.0, n(&a, 3), t(&a, 3), 0.0, &mut c, 2);
        assert_eq!(c, [14.0, 32.0, 32.0, 77.0]);
        // Aᵀ·A (3×3), accumulated onto ones with β = 1.
        let mut c = [1.0; 9];
        gemm(3, 3, 2, 1.0, t(&a, 3), n(&a, 3), 1.0, &mut c, 3);
        assert_eq!(c, [18.0, 23.0, 28.0, 23.0, 30.0, 37.0, 28.0, 37.0, 46.0]);
    }
}
