//! One LSTM cell step over a batch, forward and backward, on the fused gate matrix.
//!
//! A row of the gate matrix holds the four gates of one window side by side, in PyTorch's order
//! `[i | f | g | o]`, each `H` wide. Forward, with `a = x·W_ihᵀ + b_ih + h₍t−1₎·W_hhᵀ + b_hh`
//! already in the row (the layer computes it, see `sequence.rs`):
//!
//! ```text
//! i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
//! c_t = f ⊙ c₍t−1₎ + i ⊙ g
//! h_t = o ⊙ tanh(c_t)
//! ```
//!
//! Backward, given `∂L/∂h_t` (from the layer's output and from step `t+1`) and `∂L/∂c_t` carried
//! from step `t+1`:
//!
//! ```text
//! dc  = ∂L/∂c_t + ∂L/∂h_t ⊙ o ⊙ (1 − tanh²(c_t))
//! da_i = dc ⊙ g ⊙ i(1 − i)          da_f = dc ⊙ c₍t−1₎ ⊙ f(1 − f)
//! da_g = dc ⊙ i ⊙ (1 − g²)          da_o = ∂L/∂h_t ⊙ tanh(c_t) ⊙ o(1 − o)
//! ∂L/∂c₍t−1₎ = dc ⊙ f
//! ```
//!
//! The backward step overwrites the activated gates with `da` in place: the step reads each
//! gate once, and the layer then feeds `da` to its GEMMs without another buffer.
//!
//! Inference ([`infer`]) keeps nothing for backward: per row it adds the input projection to the
//! recurrent term in a small scratch row, then computes the four gates, `c_t` (in place) and `h_t`
//! in one pass over `j`, without writing the activated gates back.
//!
//! Every loop here runs under `pulp`'s runtime dispatch (`Arch::dispatch`), which compiles its body
//! again for AVX-512 and for AVX2 + FMA and picks the copy the CPU can run; the rest of the crate
//! is built for the x86-64 baseline (SSE2, 4 lanes).

use pulp::{Arch, Simd, WithSimd};

use crate::activation::{self, Activation};

/// Per-step state the backward pass needs, all `[B, H]` (`gates` is `[B, 4H]`).
pub(crate) struct StepForward<'a> {
    /// In: pre-activations `a`. Out: activated gates `[i | f | g | o]`.
    pub gates: &'a mut [f32],
    pub c_prev: &'a [f32],
    pub c: &'a mut [f32],
    pub tanh_c: &'a mut [f32],
    pub h: &'a mut [f32],
}

/// The forward step: activates the gates and writes `c_t`, `tanh(c_t)` and `h_t`.
pub(crate) fn forward(arch: Arch, act: Activation, hidden: usize, s: StepForward<'_>) {
    arch.dispatch(ForwardRows { act, hidden, s });
}

/// [`forward`] as a `pulp` operation. A struct, not a closure: a closure handed to `dispatch`
/// was compiled as a function of its own, outside the copy built for the CPU's features (seen in
/// `perf`: scalar SSE code), while `with_simd` is inlined into that copy.
struct ForwardRows<'a> {
    act: Activation,
    hidden: usize,
    s: StepForward<'a>,
}

impl WithSimd for ForwardRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        forward_rows(self.act, self.hidden, self.s);
    }
}

#[inline(always)]
fn forward_rows(act: Activation, hidden: usize, s: StepForward<'_>) {
    let h4 = 4 * hidden;
    let rows = s
        .gates
        .chunks_exact_mut(h4)
        .zip(s.c_prev.chunks_exact(hidden))
        .zip(s.c.chunks_exact_mut(hidden))
        .zip(s.tanh_c.chunks_exact_mut(hidden))
        .zip(s.h.chunks_exact_mut(hidden));
    for ((((gates, c_prev), c), tanh_c), h) in rows {
        let (ifg, o) = gates.split_at_mut(3 * hidden);
        let (i_f, g) = ifg.split_at_mut(2 * hidden);
        act.sigmoid(i_f);
        act.tanh(g);
        act.sigmoid(o);
        let (i, f) = i_f.split_at(hidden);
        for j in 0..hidden {
            c[j] = f[j] * c_prev[j] + i[j] * g[j];
        }
        tanh_c.copy_from_slice(c);
        act.tanh(tanh_c);
        for j in 0..hidden {
            h[j] = o[j] * tanh_c[j];
        }
    }
}

/// The backward step: `gates` (activated) becomes `da`; `dc` goes from `∂L/∂c_t` to
/// `∂L/∂c₍t−1₎`; `dh` is `∂L/∂h_t`.
pub(crate) fn backward(
    arch: Arch,
    hidden: usize,
    gates: &mut [f32],
    c_prev: &[f32],
    tanh_c: &[f32],
    dh: &[f32],
    dc: &mut [f32],
) {
    arch.dispatch(BackwardRows { hidden, gates, c_prev, tanh_c, dh, dc });
}

/// [`backward`] as a `pulp` operation (a struct for the reason given at [`ForwardRows`]).
struct BackwardRows<'a> {
    hidden: usize,
    gates: &'a mut [f32],
    c_prev: &'a [f32],
    tanh_c: &'a [f32],
    dh: &'a [f32],
    dc: &'a mut [f32],
}

impl WithSimd for BackwardRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        self.run();
    }
}

impl BackwardRows<'_> {
    #[inline(always)]
    fn run(self) {
        let BackwardRows { hidden, gates, c_prev, tanh_c, dh, dc } = self;
        let h4 = 4 * hidden;
        let rows = gates
            .chunks_exact_mut(h4)
            .zip(c_prev.chunks_exact(hidden))
            .zip(tanh_c.chunks_exact(hidden))
            .zip(dh.chunks_exact(hidden))
            .zip(dc.chunks_exact_mut(hidden));
        for ((((gates, c_prev), tanh_c), dh), dc) in rows {
            let (gi, rest) = gates.split_at_mut(hidden);
            let (gf, rest) = rest.split_at_mut(hidden);
            let (gg, go) = rest.split_at_mut(hidden);
            let (gf, gg, go) = (&mut gf[..hidden], &mut gg[..hidden], &mut go[..hidden]);
            for j in 0..hidden {
                let (i, f, g, o) = (gi[j], gf[j], gg[j], go[j]);
                let tc = tanh_c[j];
                let dht = dh[j];
                let dct = dc[j] + dht * o * (1.0 - tc * tc);
                gi[j] = dct * g * i * (1.0 - i);
                gf[j] = dct * c_prev[j] * f * (1.0 - f);
                gg[j] = dct * i * (1.0 - g * g);
                go[j] = dht * tc * o * (1.0 - o);
                dc[j] = dct * f;
            }
        }
    }
}

/// Where an inference step's input projection `x_t·W_ihᵀ + b` comes from.
#[derive(Clone, Copy)]
pub(crate) enum StepInput<'a> {
    /// Already projected, `[B, 4H]` (the decoder's repeated code, bias included).
    Projected(&'a [f32]),
    /// `x_t` (`[B, in]`) with `W_ihᵀ` stored `[in, 4H]` and the fused bias `[4H]`: a handful of
    /// inputs (the encoder reads the sensors), cheaper as a few vector FMAs per gate than as a GEMM.
    Features { x: &'a [f32], weight_t: &'a [f32], bias: &'a [f32] },
}

/// One inference step over `B` rows: `a = input projection (+ recurrent term)`, then the gates,
/// `c ← f ⊙ c + i ⊙ g` in place and `h_t = o ⊙ tanh(c)`. `recurrent` is `h₍t−1₎·W_hhᵀ`
/// (`[B, 4H]`), absent at `t = 0`; `scratch` holds one row of `4H`.
#[allow(clippy::too_many_arguments, reason = "one step's operands, each its own buffer")]
pub(crate) fn infer(
    arch: Arch,
    act: Activation,
    hidden: usize,
    input: StepInput<'_>,
    recurrent: Option<&[f32]>,
    c: &mut [f32],
    h: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    scratch.resize(4 * hidden, 0.0);
    let rows = InferRows { hidden, input, recurrent, c, h, a: scratch };
    match act {
        Activation::Fast => arch.dispatch(rows),
        Activation::Exact => rows.run(|x: f32| 1.0 / (1.0 + (-x).exp()), f32::tanh),
    }
}

/// [`infer`]'s operands, as a `pulp` operation: `with_simd` is inlined into the copy of
/// `dispatch` compiled for the detected CPU features, and everything it calls is inlined too.
struct InferRows<'a> {
    hidden: usize,
    input: StepInput<'a>,
    recurrent: Option<&'a [f32]>,
    c: &'a mut [f32],
    h: &'a mut [f32],
    /// One row's pre-activations, `[4H]`.
    a: &'a mut [f32],
}

impl WithSimd for InferRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        self.run(activation::sigmoid_fast, activation::tanh_fast);
    }
}

impl InferRows<'_> {
    #[inline(always)]
    fn run<S: Fn(f32) -> f32, T: Fn(f32) -> f32>(self, sigmoid: S, tanh: T) {
        let InferRows { hidden, input, recurrent, c, h, a } = self;
        let g4 = 4 * hidden;
        for (row, (c, h)) in c.chunks_exact_mut(hidden).zip(h.chunks_exact_mut(hidden)).enumerate()
        {
            match input {
                StepInput::Projected(p) => a.copy_from_slice(&p[row * g4..(row + 1) * g4]),
                StepInput::Features { x, weight_t, bias } => {
                    let inp = weight_t.len() / g4;
                    a.copy_from_slice(bias);
                    for (xk, w) in
                        x[row * inp..(row + 1) * inp].iter().zip(weight_t.chunks_exact(g4))
                    {
                        a.iter_mut().zip(w).for_each(|(a, w)| *a += xk * w);
                    }
                }
            }
            if let Some(r) = recurrent {
                a.iter_mut().zip(&r[row * g4..(row + 1) * g4]).for_each(|(a, r)| *a += r);
            }
            let (ai, rest) = a.split_at(hidden);
            let (af, rest) = rest.split_at(hidden);
            let (ag, ao) = rest.split_at(hidden);
            let gates = ai.iter().zip(af).zip(ag).zip(ao);
            for ((((&ai, &af), &ag), &ao), (c, h)) in gates.zip(c.iter_mut().zip(h.iter_mut())) {
                let cj = sigmoid(af) * *c + sigmoid(ai) * tanh(ag);
                *c = cj;
                *h = sigmoid(ao) * tanh(cj);
            }
        }
    }
}
