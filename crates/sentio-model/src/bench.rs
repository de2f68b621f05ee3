//! Training and inference throughput on synthetic windows, the numbers `sentio bench train`
//! reports next to PyTorch's (`scripts/bench_torch.py`, which runs the identical model and
//! workload).
//!
//! The workload: windows of `T = 64` steps of `F = 4` sine channels with seeded phases and noise,
//! `H = 64`, no bottleneck; `steps` Adam steps (lr 1e-3) on batches of 64 windows, then `steps`
//! reconstructions of batches of 256 windows. Two warm-up iterations of each are not timed.

use std::time::Instant;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Adam, Autoencoder, ModelError, ModelSpec};

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchConfig {
    pub spec: ModelSpec,
    /// Windows per training step.
    pub batch: usize,
    /// Windows per inference call.
    pub infer_batch: usize,
    /// Timed training steps, and timed inference calls.
    pub steps: usize,
    /// Untimed iterations of each before timing.
    pub warmup: usize,
    pub threads: usize,
    pub seed: u64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            spec: ModelSpec { features: 4, hidden: 64, bottleneck: 0, window: 64 },
            batch: 64,
            infer_batch: 256,
            steps: 20,
            warmup: 2,
            threads: 1,
            seed: 7,
        }
    }
}

/// Measured throughput.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    pub config: BenchConfig,
    /// Training windows (forward, backward and Adam) per wall-clock second.
    pub train_windows_per_s: f64,
    /// Reconstructed windows per wall-clock second.
    pub infer_windows_per_s: f64,
    /// Training windows per CPU-second of the process (all threads), where `/proc` tells:
    /// steadier than wall-clock time on a busy machine.
    pub train_windows_per_cpu_s: Option<f64>,
    /// Reconstructed windows per CPU-second of the process, where `/proc` tells.
    pub infer_windows_per_cpu_s: Option<f64>,
    /// The loss of the last training step (a sanity check: it should fall).
    pub last_loss: f32,
}

/// The default workload with `threads` threads and `steps` timed steps.
pub fn bench_train(threads: usize, steps: usize) -> Result<BenchResult, ModelError> {
    bench(&BenchConfig { threads, steps, ..BenchConfig::default() })
}

/// Measures `config`.
pub fn bench(config: &BenchConfig) -> Result<BenchResult, ModelError> {
    let spec = config.spec;
    let mut model = Autoencoder::new(spec, config.seed)?.with_threads(config.threads);
    let mut adam = Adam::new(1e-3);
    let train = synthetic_windows(&spec, config.batch, config.seed);
    let infer = synthetic_windows(&spec, config.infer_batch, config.seed + 1);
    let mut out = vec![0.0; infer.len()];

    let mut last_loss = f32::NAN;
    for _ in 0..config.warmup {
        model.train_step(&train, &mut adam)?;
    }
    let (start, cpu) = (Instant::now(), cpu_seconds());
    for _ in 0..config.steps {
        last_loss = model.train_step(&train, &mut adam)?;
    }
    let train_s = start.elapsed().as_secs_f64();
    let train_cpu = cpu.zip(cpu_seconds()).map(|(a, b)| b - a);

    for _ in 0..config.warmup {
        model.reconstruct(&infer, &mut out)?;
    }
    let (start, cpu) = (Instant::now(), cpu_seconds());
    for _ in 0..config.steps {
        model.reconstruct(&infer, &mut out)?;
    }
    let infer_s = start.elapsed().as_secs_f64();
    let infer_cpu = cpu.zip(cpu_seconds()).map(|(a, b)| b - a);
    let train_windows = (config.steps * config.batch) as f64;
    let infer_windows = (config.steps * config.infer_batch) as f64;

    Ok(BenchResult {
        config: *config,
        train_windows_per_s: train_windows / train_s,
        infer_windows_per_s: infer_windows / infer_s,
        train_windows_per_cpu_s: train_cpu.filter(|s| *s > 0.0).map(|s| train_windows / s),
        infer_windows_per_cpu_s: infer_cpu.filter(|s| *s > 0.0).map(|s| infer_windows / s),
        last_loss,
    })
}

/// The process's user + system CPU time from `/proc/self/stat` (all threads, 10 ms ticks:
/// Linux's `USER_HZ` is 100), or `None` elsewhere.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesized command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// `windows` windows `[B, T, F]` of sines with seeded phases and frequencies plus noise in
/// ±0.05: feature `k` of window `b` at step `t` is `sin(ω_bk·t + φ_bk) + noise`.
pub fn synthetic_windows(spec: &ModelSpec, windows: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut unit = move || (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32;
    let (t, f) = (spec.window, spec.features);
    let mut data = vec![0.0; windows * t * f];
    for window in data.chunks_exact_mut(t * f) {
        let waves: Vec<(f32, f32)> =
            (0..f).map(|_| (0.05 + 0.3 * unit(), std::f32::consts::TAU * unit())).collect();
        for (ti, step) in window.chunks_exact_mut(f).enumerate() {
            for (x, (omega, phi)) in step.iter_mut().zip(&waves) {
                *x = (omega * ti as f32 + phi).sin() + 0.1 * (unit() - 0.5);
            }
        }
    }
    data
}
