//! Reading `scripts/torch_reference.py`'s JSON and comparing the engine against it.
#![allow(dead_code)]

use std::collections::BTreeMap;

use sentio_model::{Activation, Adam, AdamConfig, Autoencoder, ModelSpec, Params};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct Reference {
    pub torch_version: String,
    pub seed: u64,
    pub cases: Vec<Case>,
}

#[derive(Deserialize)]
pub struct Case {
    pub spec: ModelSpec,
    pub batch: usize,
    pub lr: f32,
    /// Adam's eps; fixtures written before it was recorded used torch's default.
    #[serde(default = "torch_default_eps")]
    pub eps: f32,
    pub max_grad_norm: Option<f32>,
    pub params: BTreeMap<String, Vec<f32>>,
    pub input: Vec<f32>,
    pub output: Vec<f32>,
    pub loss: f32,
    pub grads: BTreeMap<String, Vec<f32>>,
    pub per_window: Vec<f32>,
    pub per_feature: Vec<f32>,
    pub adam_losses: Vec<f32>,
    pub params_after_adam: BTreeMap<String, Vec<f32>>,
}

fn torch_default_eps() -> f32 {
    1e-8
}

/// Builds `Params` for `spec` from flattened tensors by name (shapes come from the spec).
pub fn params_from(spec: &ModelSpec, tensors: &BTreeMap<String, Vec<f32>>) -> Params {
    let zeros = Params::zeros(spec);
    assert_eq!(tensors.len(), zeros.tensors().len(), "tensor count");
    Params::from_lookup(spec, |name| {
        let shape = zeros.get(name)?.shape();
        tensors.get(name).map(|d| (shape, d.clone()))
    })
    .unwrap()
}

/// `|a − b| ≤ abs + rel·|b|` everywhere, with the worst offender in the message.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], abs: f32, rel: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0.0f32, 0usize);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let excess = (g - w).abs() - (abs + rel * w.abs());
        assert!(g.is_finite(), "{what}[{i}] = {g}");
        if excess > worst.0 {
            worst = (excess, i);
        }
    }
    let i = worst.1;
    assert!(
        worst.0 <= 0.0,
        "{what}[{i}]: got {} want {} (tolerance {abs} + {rel}·|want|)",
        got[i],
        want[i]
    );
}

/// Checks forward, loss, gradients, window errors and the Adam steps of one case.
pub fn check_case(case: &Case, activation: Activation, threads: usize) {
    let (abs, rel) = (1e-5, 1e-4);
    let spec = case.spec;
    let params = params_from(&spec, &case.params);
    let mut model = Autoencoder::from_params(spec, params)
        .unwrap()
        .with_activation(activation)
        .with_threads(threads);
    assert_eq!(model.windows_in(&case.input).unwrap(), case.batch);

    let mut out = vec![0.0; case.input.len()];
    model.reconstruct(&case.input, &mut out).unwrap();
    assert_close("output", &out, &case.output, abs, rel);
    assert_close("loss", &[model.loss(&case.input).unwrap()], &[case.loss], abs, rel);

    let errors = model.window_errors(&case.input).unwrap();
    assert_close("per_window", &errors.per_window, &case.per_window, abs, rel);
    assert_close("per_feature", &errors.per_feature, &case.per_feature, abs, rel);

    let (loss, grads) = model.loss_and_gradients(&case.input).unwrap();
    assert_close("loss (training)", &[loss], &[case.loss], abs, rel);
    for t in grads.tensors() {
        assert_close(&format!("grad {}", t.name), t.data, &case.grads[t.name], abs, rel);
    }

    let mut adam = Adam::with_config(AdamConfig {
        lr: case.lr,
        eps: case.eps,
        max_grad_norm: case.max_grad_norm,
        ..AdamConfig::default()
    });
    let losses: Vec<f32> = (0..case.adam_losses.len())
        .map(|_| model.train_step(&case.input, &mut adam).unwrap())
        .collect();
    assert_close("adam losses", &losses, &case.adam_losses, abs, rel);
    let want = params_from(&spec, &case.params_after_adam);
    for (got, want) in model.params().tensors().iter().zip(want.tensors()) {
        assert_close(&format!("after adam {}", got.name), got.data, want.data, abs, rel);
    }
}
