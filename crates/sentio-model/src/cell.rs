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

use crate::activation::Activation;

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
pub(crate) fn forward(act: Activation, hidden: usize, s: StepForward<'_>) {
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
    hidden: usize,
    gates: &mut [f32],
    c_prev: &[f32],
    tanh_c: &[f32],
    dh: &[f32],
    dc: &mut [f32],
) {
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
