//! One LSTM layer over a whole sequence: forward, and backpropagation through time (BPTT).
//!
//! Everything inside a layer is time-major, `[T, B, ·]`, so that one time step's rows are
//! contiguous and a span of steps is one matrix. With `G = 4H` the fused gate width:
//!
//! ```text
//! forward
//!   A[T·B, G]  = X[T·B, in] · W_ihᵀ + (b_ih + b_hh)          one GEMM for all steps
//!                (a repeated input — the decoder's — is projected once, [B, G], and copied)
//!   for t:  A_t += h₍t−1₎ · W_hhᵀ                             [B, H]·[H, G], skipped at t = 0
//!           cell step (cell.rs): A_t → gates_t, c_t, h_t      h₋₁ = c₋₁ = 0
//!
//! backward, given ∂L/∂h_t from above (every step, or the last step only)
//!   for t = T−1 … 0:
//!           dh = ∂L/∂h_t (above) + dA₍t+1₎ · W_hh              the recurrent path
//!           cell step backward: gates_t → dA_t, dc carried to t−1
//!   dW_hh += dA[1..T]ᵀ · h[0..T−1]                            one GEMM for all steps
//!   db_ih = db_hh += Σ_rows dA
//!   dW_ih += dA ᵀ · X                                         one GEMM for all steps
//!           (repeated input: S = Σ_t dA_t, dW_ih += Sᵀ·x, ∂L/∂x = S · W_ih)
//! ```
//!
//! Step `t`'s `h₍t−1₎` lives in slot `t` of an `[T+1, B, H]` buffer whose slot 0 is the zero
//! initial state, so `h[0..T−1]` above is one contiguous matrix.

use pulp::{Arch, Simd, WithSimd};

use crate::activation::Activation;
use crate::cell::{self, StepForward, StepInput};
use crate::fused;
use crate::gemm::{gemm, n, t};
use crate::params::LstmParams;

/// What a layer reads.
#[derive(Clone, Copy)]
pub(crate) enum Input<'a> {
    /// A time-major sequence `[T, B, in]`.
    Sequence(&'a [f32]),
    /// `[B, in]`, the same at every step.
    Repeated(&'a [f32]),
}

/// The gradient of the loss with respect to the layer's outputs `h_t`.
#[derive(Clone, Copy)]
pub(crate) enum OutputGrad<'a> {
    /// `[T, B, H]`: every step's output is used.
    All(&'a [f32]),
    /// `[B, H]`: only the last step's output is used.
    Last(&'a [f32]),
}

/// The forward pass's record (the tape) and the backward pass's scratch, reused across batches.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tape {
    steps: usize,
    batch: usize,
    hidden: usize,
    /// `[T, B, 4H]`: activated gates after forward, `dA` after backward.
    gates: Vec<f32>,
    /// `[T+1, B, H]`, slot 0 zero.
    c: Vec<f32>,
    /// `[T+1, B, H]`, slot 0 zero.
    h: Vec<f32>,
    /// `[T, B, H]`.
    tanh_c: Vec<f32>,
    /// `[B, H]` each: backward scratch.
    dh: Vec<f32>,
    dh_next: Vec<f32>,
    dc: Vec<f32>,
    /// `[B, 4H]`: the repeated input's projection forward, `Σ_t dA_t` backward.
    repeated: Vec<f32>,
    /// `[4H]`: the fused bias, then the bias gradient.
    bias: Vec<f32>,
}

impl Tape {
    fn shape(&mut self, steps: usize, batch: usize, hidden: usize) {
        self.steps = steps;
        self.batch = batch;
        self.hidden = hidden;
        let bh = batch * hidden;
        self.gates.resize(steps * 4 * bh, 0.0);
        self.c.resize((steps + 1) * bh, 0.0);
        self.h.resize((steps + 1) * bh, 0.0);
        self.c[..bh].fill(0.0);
        self.h[..bh].fill(0.0);
        self.tanh_c.resize(steps * bh, 0.0);
        self.dh.resize(bh, 0.0);
        self.dh_next.resize(bh, 0.0);
        self.dc.resize(bh, 0.0);
        self.repeated.resize(4 * bh, 0.0);
        self.bias.resize(4 * hidden, 0.0);
    }

    /// Every step's output `h_t`, `[T, B, H]`.
    pub(crate) fn outputs(&self) -> &[f32] {
        &self.h[self.batch * self.hidden..]
    }

    /// The last step's output `h₍T−1₎`, `[B, H]`.
    pub(crate) fn last(&self) -> &[f32] {
        &self.h[self.steps * self.batch * self.hidden..]
    }
}

/// Runs the layer over `steps` steps of `batch` rows, recording in `tape` what backward needs.
pub(crate) fn forward(
    p: &LstmParams,
    arch: Arch,
    act: Activation,
    input: Input<'_>,
    steps: usize,
    batch: usize,
    tape: &mut Tape,
) {
    let (hid, inp) = (p.hidden, p.input);
    let g4 = 4 * hid;
    let bh = batch * hid;
    tape.shape(steps, batch, hid);
    fuse_bias(p, &mut tape.bias);
    match input {
        Input::Sequence(x) => {
            for row in tape.gates.chunks_exact_mut(g4) {
                row.copy_from_slice(&tape.bias);
            }
            let gates = &mut tape.gates[..steps * batch * g4];
            gemm(steps * batch, g4, inp, 1.0, n(x, inp), t(&p.weight_ih, inp), 1.0, gates, g4);
        }
        Input::Repeated(x) => {
            project_repeated(p, x, batch, &tape.bias, &mut tape.repeated);
            for step in tape.gates.chunks_exact_mut(batch * g4) {
                step.copy_from_slice(&tape.repeated);
            }
        }
    }
    for s in 0..steps {
        let (c_prev, c_next) = tape.c.split_at_mut((s + 1) * bh);
        let gates = &mut tape.gates[s * batch * g4..(s + 1) * batch * g4];
        let (h_prev, h_next) = tape.h.split_at_mut((s + 1) * bh);
        let h_prev = &h_prev[s * bh..];
        if s > 0 {
            gemm(batch, g4, hid, 1.0, n(h_prev, hid), t(&p.weight_hh, hid), 1.0, gates, g4);
        }
        let step = StepForward {
            gates,
            c_prev: &c_prev[s * bh..],
            c: &mut c_next[..bh],
            tanh_c: &mut tape.tanh_c[s * bh..(s + 1) * bh],
            h: &mut h_next[..bh],
        };
        cell::forward(arch, act, hid, step);
    }
}

/// `b_ih + b_hh`.
fn fuse_bias(p: &LstmParams, bias: &mut Vec<f32>) {
    bias.clear();
    bias.extend(p.bias_ih.iter().zip(&p.bias_hh).map(|(x, y)| x + y));
}

/// `out[B, 4H] = x[B, in] · W_ihᵀ + bias`: a repeated input's projection, the same every step.
fn project_repeated(p: &LstmParams, x: &[f32], batch: usize, bias: &[f32], out: &mut [f32]) {
    let g4 = 4 * p.hidden;
    for row in out.chunks_exact_mut(g4) {
        row.copy_from_slice(bias);
    }
    gemm(batch, g4, p.input, 1.0, n(x, p.input), t(&p.weight_ih, p.input), 1.0, out, g4);
}

/// Inference scratch for one layer: only the current step lives in it, so a chunk of windows
/// runs in cache whatever the window length.
#[derive(Clone, Debug, Default)]
pub(crate) struct InferState {
    /// `[B, 4H]`: the recurrent term `h₍t−1₎·W_hhᵀ`.
    recurrent: Vec<f32>,
    /// `[B, H]`: the cell state, updated in place.
    c: Vec<f32>,
    /// `[2, B, H]`: `h₍t−1₎` and `h_t`, alternating.
    h: Vec<f32>,
    /// `[B, 4H]`: a repeated input's projection.
    repeated: Vec<f32>,
    /// `[4H]`: the fused bias.
    bias: Vec<f32>,
    /// `[in, 4H]`: `W_ihᵀ` for a sequence input.
    weight_t: Vec<f32>,
    /// `[H, 4H]`: `W_hhᵀ`, stored so that the GEMM packs it from contiguous rows.
    weight_hh_t: Vec<f32>,
    /// `W_ih` and `W_hh` packed for the fused step (`fused.rs`).
    packed_ih: Vec<f32>,
    packed_hh: Vec<f32>,
    /// `[4H]`: one row's pre-activations.
    row: Vec<f32>,
    /// Which half of `h` holds the last output.
    last: usize,
    bh: usize,
}

impl InferState {
    /// The last step's output `h₍T−1₎`, `[B, H]`.
    pub(crate) fn last(&self) -> &[f32] {
        &self.h[self.last * self.bh..(self.last + 1) * self.bh]
    }
}

/// Runs the layer over `steps` steps of `batch` rows without recording anything for backward,
/// calling `each(t, h_t)` after every step. The same math as [`forward`]; the sums are formed in
/// another order (the fused step accumulates input by input), so results agree to rounding.
#[allow(clippy::too_many_arguments, reason = "forward's arguments plus the step callback")]
pub(crate) fn infer(
    p: &LstmParams,
    arch: Arch,
    act: Activation,
    input: Input<'_>,
    steps: usize,
    batch: usize,
    state: &mut InferState,
    mut each: impl FnMut(usize, &[f32]),
) {
    let (hid, inp) = (p.hidden, p.input);
    let g4 = 4 * hid;
    let bh = batch * hid;
    state.bh = bh;
    state.c.clear();
    state.c.resize(bh, 0.0);
    state.h.resize(2 * bh, 0.0);
    fuse_bias(p, &mut state.bias);
    if let Input::Repeated(x) = input {
        state.repeated.resize(batch * g4, 0.0);
        project_repeated(p, x, batch, &state.bias, &mut state.repeated);
    }
    // The fused step needs the fast activations and whole vectors of hidden units.
    let lanes = if act == Activation::Fast { arch.dispatch(Lanes) } else { 0 };
    let fused = matches!(lanes, 8 | 16) && hid % lanes == 0;
    if fused {
        fused::pack(&p.weight_hh, hid, lanes, &mut state.packed_hh);
        if let Input::Sequence(_) = input {
            fused::pack(&p.weight_ih, hid, lanes, &mut state.packed_ih);
        }
    } else {
        if let Input::Sequence(_) = input {
            transpose(&p.weight_ih, inp, &mut state.weight_t);
        }
        transpose(&p.weight_hh, hid, &mut state.weight_hh_t);
        state.recurrent.resize(batch * g4, 0.0);
    }
    for s in 0..steps {
        let (h_prev, h_next) = state.h.split_at_mut(bh);
        let (h_prev, h_next) = if s % 2 == 0 { (h_next, h_prev) } else { (h_prev, h_next) };
        let x_t = match input {
            Input::Sequence(x) => &x[s * batch * inp..(s + 1) * batch * inp],
            Input::Repeated(_) => &[],
        };
        if fused {
            let step = fused::Step {
                hidden: hid,
                base: match input {
                    Input::Repeated(_) => &state.repeated,
                    Input::Sequence(_) => &state.bias,
                },
                base_per_row: matches!(input, Input::Repeated(_)),
                x: match input {
                    Input::Repeated(_) => None,
                    Input::Sequence(_) => Some((x_t, inp, &state.packed_ih[..])),
                },
                h_prev: (s > 0).then_some((&h_prev[..], &state.packed_hh[..])),
            };
            arch.dispatch(FusedStep { step, c: &mut state.c, h: h_next });
        } else {
            let recurrent = if s > 0 {
                let w = n(&state.weight_hh_t, g4);
                gemm(batch, g4, hid, 1.0, n(h_prev, hid), w, 0.0, &mut state.recurrent, g4);
                Some(&state.recurrent[..])
            } else {
                None
            };
            let step_input = match input {
                Input::Repeated(_) => StepInput::Projected(&state.repeated),
                Input::Sequence(_) => {
                    StepInput::Features { x: x_t, weight_t: &state.weight_t, bias: &state.bias }
                }
            };
            cell::infer(
                arch,
                act,
                hid,
                step_input,
                recurrent,
                &mut state.c,
                h_next,
                &mut state.row,
            );
        }
        each(s, h_next);
    }
    state.last = if steps % 2 == 1 { 0 } else { 1 };
}

/// Backpropagates through the steps `forward` recorded: adds the weight gradients into `grad`
/// and, for a repeated input, writes `∂L/∂x` (`[B, in]`) into `d_input`. Consumes the tape's
/// gates (they become `dA`).
pub(crate) fn backward(
    p: &LstmParams,
    arch: Arch,
    input: Input<'_>,
    out_grad: OutputGrad<'_>,
    tape: &mut Tape,
    grad: &mut LstmParams,
    d_input: Option<&mut [f32]>,
) {
    let (hid, inp) = (p.hidden, p.input);
    let (steps, batch) = (tape.steps, tape.batch);
    let g4 = 4 * hid;
    let bh = batch * hid;
    tape.dc.fill(0.0);
    tape.dh_next.fill(0.0);
    for s in (0..steps).rev() {
        match out_grad {
            OutputGrad::All(d) => {
                let d = &d[s * bh..(s + 1) * bh];
                for ((dh, a), b) in tape.dh.iter_mut().zip(d).zip(&tape.dh_next) {
                    *dh = a + b;
                }
            }
            OutputGrad::Last(d) if s + 1 == steps => {
                for ((dh, a), b) in tape.dh.iter_mut().zip(d).zip(&tape.dh_next) {
                    *dh = a + b;
                }
            }
            OutputGrad::Last(_) => tape.dh.copy_from_slice(&tape.dh_next),
        }
        let d_gates = &mut tape.gates[s * batch * g4..(s + 1) * batch * g4];
        cell::backward(
            arch,
            hid,
            d_gates,
            &tape.c[s * bh..(s + 1) * bh],
            &tape.tanh_c[s * bh..(s + 1) * bh],
            &tape.dh,
            &mut tape.dc,
        );
        if s > 0 {
            gemm(
                batch,
                hid,
                g4,
                1.0,
                n(d_gates, g4),
                n(&p.weight_hh, hid),
                0.0,
                &mut tape.dh_next,
                hid,
            );
        }
    }
    let d_gates = &tape.gates[..steps * batch * g4];
    if steps > 1 {
        // dW_hh += Σ_{t≥1} dA_tᵀ · h₍t−1₎ (the t = 0 term is zero: h₋₁ = 0).
        let rows = (steps - 1) * batch;
        gemm(
            g4,
            hid,
            rows,
            1.0,
            t(&d_gates[batch * g4..], g4),
            n(&tape.h[bh..bh + rows * hid], hid),
            1.0,
            &mut grad.weight_hh,
            hid,
        );
    }
    match input {
        Input::Sequence(x) => {
            column_sums(d_gates, g4, &mut tape.bias);
            gemm(
                g4,
                inp,
                steps * batch,
                1.0,
                t(d_gates, g4),
                n(x, inp),
                1.0,
                &mut grad.weight_ih,
                inp,
            );
        }
        Input::Repeated(x) => {
            let sum = &mut tape.repeated;
            sum.fill(0.0);
            for step in d_gates.chunks_exact(batch * g4) {
                sum.iter_mut().zip(step).for_each(|(a, b)| *a += b);
            }
            column_sums(sum, g4, &mut tape.bias);
            gemm(g4, inp, batch, 1.0, t(sum, g4), n(x, inp), 1.0, &mut grad.weight_ih, inp);
            if let Some(d_input) = d_input {
                gemm(batch, inp, g4, 1.0, n(sum, g4), n(&p.weight_ih, inp), 0.0, d_input, inp);
            }
        }
    }
    for ((a, b), d) in grad.bias_ih.iter_mut().zip(grad.bias_hh.iter_mut()).zip(&tape.bias) {
        *a += d;
        *b += d;
    }
}

/// The number of `f32` lanes of the SIMD level `pulp` dispatches to (16, 8, or 1 without one).
struct Lanes;

impl WithSimd for Lanes {
    type Output = usize;

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> usize {
        S::F32_LANES
    }
}

/// One fused step (`fused.rs`) at the dispatched vector width: 16 lanes × 6 rows with AVX-512
/// (24 accumulator registers of 32; 6 measured a little faster than 4 here), 8 lanes × 2 rows
/// with AVX2 (8 of 16).
struct FusedStep<'a> {
    step: fused::Step<'a>,
    c: &'a mut [f32],
    h: &'a mut [f32],
}

impl WithSimd for FusedStep<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let FusedStep { step, c, h } = self;
        match S::F32_LANES {
            16 => fused::step::<S, 6>(simd, step, c, h),
            _ => fused::step::<S, 2>(simd, step, c, h),
        }
    }
}

/// `out = mᵀ` for a row-major `m` of width `width`.
fn transpose(m: &[f32], width: usize, out: &mut Vec<f32>) {
    let rows = m.len() / width;
    out.resize(m.len(), 0.0);
    for (r, row) in m.chunks_exact(width).enumerate() {
        for (k, &v) in row.iter().enumerate() {
            out[k * rows + r] = v;
        }
    }
}

/// `out[j] = Σ_r m[r, j]` for a row-major `m` of width `width`.
pub(crate) fn column_sums(m: &[f32], width: usize, out: &mut [f32]) {
    out.fill(0.0);
    for row in m.chunks_exact(width) {
        out.iter_mut().zip(row).for_each(|(a, b)| *a += b);
    }
}
