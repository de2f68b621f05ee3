//! Finite-difference checks of every parameter's gradient, with and without a bottleneck, on
//! exact activations (the fast ones are checked against PyTorch in `parity.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sentio_model::bench::synthetic_windows;
use sentio_model::{Activation, Autoencoder, ModelSpec};

/// Central differences `(L(p + ε) − L(p − ε)) / 2ε` for every scalar, against backprop.
fn check(spec: ModelSpec, batch: usize, threads: usize) {
    let windows = synthetic_windows(&spec, batch, 11);
    let mut model =
        Autoencoder::new(spec, 5).unwrap().with_activation(Activation::Exact).with_threads(threads);
    let (_, grads) = model.loss_and_gradients(&windows).unwrap();
    let eps = 1e-2f32;
    let names: Vec<&str> = grads.tensors().iter().map(|t| t.name).collect();
    for name in names {
        let analytic = grads.get(name).unwrap().data.to_vec();
        let mut numeric = Vec::with_capacity(analytic.len());
        for i in 0..analytic.len() {
            let at = |model: &mut Autoencoder, delta: f32| {
                let (_, data) =
                    model.params_mut().tensors_mut().into_iter().find(|(n, _)| *n == name).unwrap();
                data[i] += delta;
            };
            at(&mut model, eps);
            let plus = f64::from(model.loss(&windows).unwrap());
            at(&mut model, -2.0 * eps);
            let minus = f64::from(model.loss(&windows).unwrap());
            at(&mut model, eps);
            numeric.push(((plus - minus) / (2.0 * f64::from(eps))) as f32);
        }
        // Elementwise: f32 rounding in the loss limits the numeric side to about 1e-3 of the
        // tensor's largest gradient (the encoder's are small), far below what a wrong term gives.
        let largest = analytic.iter().fold(0.0f32, |m, a| m.max(a.abs()));
        for (i, (a, n)) in analytic.iter().zip(&numeric).enumerate() {
            assert!(
                (a - n).abs() <= 1e-2 * largest + 1e-2 * a.abs(),
                "{name}[{i}] (Z={}): backprop {a}, numeric {n}",
                spec.bottleneck
            );
        }
        // Along the gradient itself the loss moves most, so the directional derivative is the
        // sharp check: it must equal ‖g‖.
        let norm = analytic.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
        if norm > 0.0 {
            let step = |model: &mut Autoencoder, sign: f32| {
                let (_, data) =
                    model.params_mut().tensors_mut().into_iter().find(|(n, _)| *n == name).unwrap();
                for (x, a) in data.iter_mut().zip(&analytic) {
                    *x += sign * eps * (f64::from(*a) / norm) as f32;
                }
            };
            let before = model.params().clone();
            step(&mut model, 1.0);
            let plus = f64::from(model.loss(&windows).unwrap());
            *model.params_mut() = before.clone();
            step(&mut model, -1.0);
            let minus = f64::from(model.loss(&windows).unwrap());
            *model.params_mut() = before;
            let directional = (plus - minus) / (2.0 * f64::from(eps));
            let error = (directional - norm).abs() / norm;
            eprintln!("{name} (Z={}): directional relative error {error:.1e}", spec.bottleneck);
            assert!(
                error < 2e-3,
                "{name} (Z={}): directional {directional}, ‖g‖ {norm}",
                spec.bottleneck
            );
        }
    }
}

#[test]
fn gradients_with_bottleneck() {
    check(ModelSpec { features: 3, hidden: 5, bottleneck: 2, window: 6 }, 3, 1);
}

#[test]
fn gradients_without_bottleneck() {
    check(ModelSpec { features: 3, hidden: 5, bottleneck: 0, window: 6 }, 3, 1);
}

#[test]
fn gradients_sharded_across_threads() {
    check(ModelSpec { features: 2, hidden: 4, bottleneck: 3, window: 4 }, 5, 3);
}

#[test]
fn one_step_window() {
    check(ModelSpec { features: 2, hidden: 3, bottleneck: 0, window: 1 }, 2, 1);
}
