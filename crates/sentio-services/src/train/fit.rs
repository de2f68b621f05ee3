//! The training loop: shuffled mini-batches, Adam, validation after every epoch, early stopping
//! that keeps the best weights, and cancellation between batches.

use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use sentio_config::TrainConfig;
use sentio_model::{Adam, Autoencoder, ModelSpec, Params};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::data::{Prepared, Windows};

/// Windows per forward pass when only scoring (validation, calibration).
const SCORE_CHUNK: usize = 1024;

/// One finished epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// From 1.
    pub epoch: usize,
    pub train_loss: f64,
    pub validation_loss: f64,
    pub train_windows_per_s: f64,
    pub seconds: f64,
    /// Whether this epoch gave the best validation loss so far (its weights are kept).
    pub best: bool,
}

/// What the loop reports as it goes; every method has a do-nothing default.
pub trait Observer: Send {
    fn epoch_started(&mut self, _epoch: usize, _epochs: usize, _batches: usize) {}
    fn batch_done(&mut self, _epoch: usize, _batch: usize, _loss: f32, _windows_per_s: f64) {}
    fn epoch_finished(&mut self, _report: &EpochReport) {}
}

/// An observer that reports nothing.
pub struct Silent;
impl Observer for Silent {}

/// Why training ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stopped {
    /// All `train.epochs` ran.
    Epochs,
    /// `train.patience` epochs passed without a better validation loss.
    EarlyStopping,
    /// Cancelled (Ctrl-C): the best weights so far are kept.
    Cancelled,
}

impl Stopped {
    pub fn as_str(self) -> &'static str {
        match self {
            Stopped::Epochs => "epochs",
            Stopped::EarlyStopping => "early-stopping",
            Stopped::Cancelled => "cancelled",
        }
    }
}

pub struct Fitted {
    /// The model with the best validation loss.
    pub model: Autoencoder,
    pub history: Vec<EpochReport>,
    pub best_epoch: usize,
    pub best_validation_loss: f64,
    pub stopped: Stopped,
    pub seconds: f64,
    pub threads: usize,
}

/// The thread count `train.threads` means (0: every core).
pub fn threads(config: &TrainConfig) -> usize {
    threads_or_all(config.threads)
}

/// `threads`, or every core when it is 0 (the meaning of the `threads` settings).
pub fn threads_or_all(threads: usize) -> usize {
    if threads > 0 {
        threads
    } else {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    }
}

/// The model spec `config` asks for, over `features` columns.
pub fn spec(config: &TrainConfig, features: usize) -> ModelSpec {
    ModelSpec {
        features,
        hidden: config.hidden,
        bottleneck: config.bottleneck,
        window: config.window,
    }
}

/// Mean squared error over all windows, computed in chunks.
pub fn mean_loss(model: &Autoencoder, windows: &Windows) -> anyhow::Result<f64> {
    let len = model.spec().window_len();
    let mut total = 0.0f64;
    let mut count = 0usize;
    for chunk in windows.data.chunks(SCORE_CHUNK * len) {
        let n = chunk.len() / len;
        total += f64::from(model.loss(chunk)?) * n as f64;
        count += n;
    }
    Ok(total / count.max(1) as f64)
}

/// Each window's score (mean squared error) and per-column mean squared error.
pub fn score(model: &Autoencoder, data: &[f32]) -> anyhow::Result<(Vec<f64>, Vec<Vec<f64>>)> {
    let len = model.spec().window_len();
    let f = model.spec().features;
    let mut scores = Vec::with_capacity(data.len() / len.max(1));
    let mut sensors = Vec::with_capacity(scores.capacity());
    for chunk in data.chunks(SCORE_CHUNK * len) {
        let e = model.window_errors(chunk)?;
        scores.extend(e.per_window.iter().map(|&s| f64::from(s)));
        for w in e.per_feature.chunks_exact(f) {
            sensors.push(w.iter().map(|&v| f64::from(v)).collect());
        }
    }
    Ok((scores, sensors))
}

/// Trains a fresh model on `prepared` (blocking: call it from a blocking thread).
pub fn fit(
    prepared: &Prepared,
    config: &TrainConfig,
    stop: &CancellationToken,
    observer: &mut dyn Observer,
) -> anyhow::Result<Fitted> {
    let started = Instant::now();
    let threads = threads(config);
    let spec = spec(config, prepared.scaler.width());
    let mut model = Autoencoder::new(spec, config.seed)?.with_threads(threads);
    let mut adam = Adam::new(config.learning_rate as f32);
    let len = spec.window_len();
    let n = prepared.train.len();
    let batches = n.div_ceil(config.batch_size);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x5e47_10a3);
    let mut order: Vec<usize> = (0..n).collect();
    let mut batch = Vec::with_capacity(config.batch_size * len);
    let mut history = Vec::new();
    let mut best: Option<(f64, usize, Params)> = None;
    let mut stopped = Stopped::Epochs;

    'epochs: for epoch in 1..=config.epochs {
        observer.epoch_started(epoch, config.epochs, batches);
        order.shuffle(&mut rng);
        let epoch_start = Instant::now();
        let mut loss_sum = 0.0f64;
        let mut seen = 0usize;
        for (b, ids) in order.chunks(config.batch_size).enumerate() {
            if stop.is_cancelled() {
                stopped = Stopped::Cancelled;
                break 'epochs;
            }
            batch.clear();
            for &i in ids {
                batch.extend_from_slice(&prepared.train.data[i * len..(i + 1) * len]);
            }
            let loss = model.train_step(&batch, &mut adam)?;
            loss_sum += f64::from(loss) * ids.len() as f64;
            seen += ids.len();
            let rate = seen as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9);
            observer.batch_done(epoch, b + 1, loss, rate);
        }
        let seconds = epoch_start.elapsed().as_secs_f64();
        let train_loss = loss_sum / seen.max(1) as f64;
        // With no validation windows (`train.split = "none"`) every epoch counts as the best so
        // far: the last one is kept, and its training loss stands in for the validation loss.
        let validated = !prepared.validation.is_empty();
        let validation_loss =
            if validated { mean_loss(&model, &prepared.validation)? } else { train_loss };
        if !train_loss.is_finite() || !validation_loss.is_finite() {
            anyhow::bail!(
                "training diverged in epoch {epoch} (loss {train_loss}, validation {validation_loss}): \
                 lower train.learning_rate"
            );
        }
        let improved = !validated || best.as_ref().is_none_or(|(b, _, _)| validation_loss < *b);
        if improved {
            best = Some((validation_loss, epoch, model.params().clone()));
        }
        let report = EpochReport {
            epoch,
            train_loss,
            validation_loss,
            train_windows_per_s: seen as f64 / seconds.max(1e-9),
            seconds,
            best: improved,
        };
        observer.epoch_finished(&report);
        history.push(report);
        let best_epoch = best.as_ref().map_or(epoch, |(_, e, _)| *e);
        if epoch - best_epoch >= config.patience {
            stopped = Stopped::EarlyStopping;
            break;
        }
    }
    let Some((best_validation_loss, best_epoch, params)) = best else {
        anyhow::bail!("training was cancelled before the first epoch finished; nothing to keep");
    };
    let model = Autoencoder::from_params(spec, params)?.with_threads(threads);
    Ok(Fitted {
        model,
        history,
        best_epoch,
        best_validation_loss,
        stopped,
        seconds: started.elapsed().as_secs_f64(),
        threads,
    })
}
