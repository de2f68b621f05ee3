//! Training behaviour: reproducibility, thread counts, checkpoints and input checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sentio_model::bench::synthetic_windows;
use sentio_model::checkpoint::read_spec;
use sentio_model::{Adam, AdamConfig, Autoencoder, ModelError, ModelSpec};

const SPEC: ModelSpec = ModelSpec { features: 4, hidden: 16, bottleneck: 6, window: 12 };

fn train(seed: u64, threads: usize, steps: usize) -> (Autoencoder, Vec<f32>) {
    let mut model = Autoencoder::new(SPEC, seed).unwrap().with_threads(threads);
    let mut adam = Adam::with_config(AdamConfig {
        lr: 1e-2,
        max_grad_norm: Some(1.0),
        ..AdamConfig::default()
    });
    let losses = (0..steps)
        .map(|i| model.train_step(&synthetic_windows(&SPEC, 10, i as u64 % 3), &mut adam).unwrap())
        .collect();
    (model, losses)
}

#[test]
fn same_seed_same_weights() {
    for threads in [1, 2, 3] {
        let (a, la) = train(42, threads, 15);
        let (b, lb) = train(42, threads, 15);
        assert_eq!(la, lb, "{threads} threads");
        assert_eq!(a.params(), b.params(), "{threads} threads");
    }
    let (c, _) = train(43, 1, 15);
    assert_ne!(train(42, 1, 15).0.params(), c.params());
}

#[test]
fn thread_counts_agree_to_rounding() {
    let (one, l1) = train(1, 1, 5);
    let (two, l2) = train(1, 2, 5);
    for (a, b) in l1.iter().zip(&l2) {
        assert!((a - b).abs() <= 1e-5 * a.abs(), "{a} vs {b}");
    }
    for (a, b) in one.params().tensors().iter().zip(two.params().tensors()) {
        for (x, y) in a.data.iter().zip(b.data) {
            assert!((x - y).abs() < 1e-4, "{}: {x} vs {y}", a.name);
        }
    }
}

#[test]
fn training_reduces_the_loss() {
    let (_, losses) = train(3, 2, 60);
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    assert!(last < 0.5 * first, "loss {first} → {last}");
}

#[test]
fn safetensors_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let (model, _) = train(9, 1, 3);
    model.save_safetensors(&path).unwrap();
    assert_eq!(read_spec(&path).unwrap(), Some(SPEC));
    let loaded = Autoencoder::load_safetensors(&path, SPEC).unwrap();
    assert_eq!(loaded.params(), model.params());
    let batch = synthetic_windows(&SPEC, 3, 1);
    assert_eq!(loaded.loss(&batch).unwrap(), model.loss(&batch).unwrap());

    let other = ModelSpec { bottleneck: 0, ..SPEC };
    assert!(matches!(
        Autoencoder::load_safetensors(&path, other),
        Err(ModelError::UnexpectedTensor { .. } | ModelError::TensorShape { .. })
    ));
    let wider = ModelSpec { hidden: 17, ..SPEC };
    assert!(matches!(
        Autoencoder::load_safetensors(&path, wider),
        Err(ModelError::TensorShape { .. })
    ));
}

#[test]
fn window_errors_agree_with_reconstruct() {
    let model = Autoencoder::new(SPEC, 4).unwrap().with_threads(2);
    let batch = synthetic_windows(&SPEC, 5, 2);
    let mut out = vec![0.0; batch.len()];
    model.reconstruct(&batch, &mut out).unwrap();
    let errors = model.window_errors(&batch).unwrap();
    assert_eq!(errors.per_window.len(), 5);
    assert_eq!(errors.per_feature.len(), 5 * SPEC.features);
    let wl = SPEC.window_len();
    for w in 0..5 {
        let sq: f32 = batch[w * wl..(w + 1) * wl]
            .iter()
            .zip(&out[w * wl..])
            .map(|(x, y)| (x - y) * (x - y))
            .sum();
        assert!((sq / wl as f32 - errors.per_window[w]).abs() < 1e-6);
        let by_feature: f32 = errors.per_feature[w * SPEC.features..][..SPEC.features].iter().sum();
        assert!((by_feature / SPEC.features as f32 - errors.per_window[w]).abs() < 1e-6);
    }
    let mean = errors.per_window.iter().sum::<f32>() / 5.0;
    assert!((mean - model.loss(&batch).unwrap()).abs() < 1e-6);
}

#[test]
fn rejects_bad_shapes() {
    let mut model = Autoencoder::new(SPEC, 0).unwrap();
    let mut adam = Adam::new(1e-3);
    assert!(matches!(model.train_step(&[0.0; 7], &mut adam), Err(ModelError::BatchShape { .. })));
    assert!(matches!(model.loss(&[]), Err(ModelError::BatchShape { .. })));
    let batch = synthetic_windows(&SPEC, 2, 0);
    assert!(matches!(
        model.reconstruct(&batch, &mut [0.0; 3]),
        Err(ModelError::OutputShape { .. })
    ));
    assert!(matches!(
        Autoencoder::new(ModelSpec { hidden: 0, ..SPEC }, 0),
        Err(ModelError::Spec { .. })
    ));
}

/// Inference runs in chunks of windows with its own step loop (no tape): it must agree with the
/// training forward, and a window's score must not depend on the chunk or shard it lands in.
/// Hidden 16 takes the fused SIMD step on CPUs with AVX2 or AVX-512; hidden 12 fits no vector
/// width and takes the unfused one.
#[test]
fn inference_in_chunks_matches_the_training_forward() {
    let windows = 300; // two full chunks of 128 and a partial one
    for spec in [SPEC, ModelSpec { hidden: 12, ..SPEC }] {
        let batch = synthetic_windows(&spec, windows, 5);
        let wl = spec.window_len();
        for threads in [1, 3] {
            let mut model = Autoencoder::new(spec, 11).unwrap().with_threads(threads);
            let inferred = model.loss(&batch).unwrap();
            let (trained, _) = model.loss_and_gradients(&batch).unwrap();
            assert!((inferred - trained).abs() <= 1e-5 * trained, "{inferred} vs {trained}");
            let errors = model.window_errors(&batch).unwrap();
            for w in [0, 1, 5, 6, 127, 128, 200, 255, 256, 299] {
                let alone = model.window_errors(&batch[w * wl..(w + 1) * wl]).unwrap();
                let (got, want) = (errors.per_window[w], alone.per_window[0]);
                assert!((got - want).abs() <= 1e-6 * want, "window {w}: {got} vs {want} alone");
            }
        }
    }
}
