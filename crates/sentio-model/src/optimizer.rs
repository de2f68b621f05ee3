//! Adam, as `torch.optim.Adam` computes it, with optional gradient-norm clipping as
//! `torch.nn.utils.clip_grad_norm_` does.
//!
//! ```text
//! clip (optional):  n = ‖g‖₂ over all tensors;  g ← g · min(1, max_norm / (n + 1e-6))
//! m ← m + (1 − β1)(g − m)            v ← β2·v + (1 − β2)·g²
//! p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε)
//! ```
//!
//! The bias corrections are computed in f64, as PyTorch does with Python floats; the update
//! itself is f32, in PyTorch's operation order.

use serde::{Deserialize, Serialize};

use crate::params::Params;

/// Adam's settings; the defaults are PyTorch's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f32,
    /// Clip the global gradient norm to this before each step; `None` for no clipping.
    pub max_grad_norm: Option<f32>,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, max_grad_norm: None }
    }
}

/// Adam's state: its settings, the step count and the two moments.
#[derive(Clone, Debug)]
pub struct Adam {
    pub config: AdamConfig,
    step: u64,
    moments: Option<(Params, Params)>,
}

impl Adam {
    /// Adam with PyTorch's defaults and learning rate `lr`.
    pub fn new(lr: f32) -> Self {
        Adam::with_config(AdamConfig { lr, ..AdamConfig::default() })
    }

    pub fn with_config(config: AdamConfig) -> Self {
        Adam { config, step: 0, moments: None }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Clips `grads` if configured, then updates `params`. Returns the gradient norm before
    /// clipping when clipping is on.
    pub fn step(&mut self, params: &mut Params, grads: &mut Params) -> Option<f32> {
        let c = self.config;
        let norm = c.max_grad_norm.map(|max| {
            let norm = grads.norm();
            let coef = f64::from(max) / (norm + 1e-6);
            if coef < 1.0 {
                let coef = coef as f32;
                for (_, g) in grads.tensors_mut() {
                    g.iter_mut().for_each(|x| *x *= coef);
                }
            }
            norm as f32
        });
        self.step += 1;
        let (m, v) = self.moments.get_or_insert_with(|| {
            let mut zeros = params.clone();
            zeros.fill_zero();
            (zeros.clone(), zeros)
        });
        let t = self.step as i32;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2_sqrt = (1.0 - c.beta2.powi(t)).sqrt() as f32;
        let step_size = -(f64::from(c.lr) / bias1) as f32;
        let w1 = (1.0 - c.beta1) as f32;
        let beta2 = c.beta2 as f32;
        let w2 = (1.0 - c.beta2) as f32;
        let grads = grads.tensors();
        let tensors = params.tensors_mut().into_iter().zip(m.tensors_mut()).zip(v.tensors_mut());
        for ((((_, p), (_, m)), (_, v)), g) in tensors.zip(grads) {
            for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g.data) {
                *m += w1 * (g - *m);
                *v = *v * beta2 + w2 * g * g;
                *p += step_size * (*m / (v.sqrt() / bias2_sqrt + c.eps));
            }
        }
        norm
    }
}
