//! Detection: a registered model scores windows of aligned frames, and per-device trackers turn
//! the scores into alerts.
//!
//! - [`Scorer`]: a model version loaded from its artifact directory (weights and card), scoring
//!   windows the way training calibrated them: the same frames, fill rules and scaler, the score
//!   being the window's mean squared reconstruction error in standardized units.
//! - [`alerts`]: the alert life cycle (open after a sustained excess, escalate, resolve after a
//!   cooldown) and each sensor's share of the error, so an alert names the sensor that deviated.
//! - [`replay`]: scores a stored time range and returns the alerts it raises, the code path the
//!   evaluation uses; [`save_replay_scores`] saves its windows' scores for the dashboard.
//! - [`score_point`]: a scored window as the store's `anomaly_scores` row.
//!
//! - [`message`]: the alert message v1 (`AlertV1`) for `anomaly-alerts`.
//!
//! - [`frames`]: live readings to frames and windows per device, in event time, with a grace
//!   period for late readings (the same windows as the batch path).
//! - [`service`]: the streaming detector on the bus: batched scoring across devices, alerts to
//!   `anomaly-alerts` and the `anomalies` table, model swaps when the alias moves.
//! - [`latency`]: the detection-latency histogram.

pub mod alerts;
pub mod flat;
pub mod frames;
pub mod latency;
pub mod message;
pub mod service;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use sentio_core::{Alert, DeviceId};
use sentio_model::{Autoencoder, ModelSpec};
use sentio_store::{ReadingStore, ScorePoint};
use sentio_tracking::Tracking;

pub use alerts::{
    AlertSettings, AlertTracker, ModelRef, ScoredWindow, named_shares, shares, top_sensor,
};
pub use message::AlertV1;

use crate::features::post::Smoother;
use crate::features::window::gather;
use crate::features::{AlignSettings, Columns, PostProcess, Series, WindowSettings, cut_windows};
use crate::train::artifact::ModelCard;
use crate::train::data::read_series;
use crate::train::fit;

/// Weights file inside a model's artifact directory.
const WEIGHTS_FILE: &str = "weights.safetensors";

/// Score points per `save_scores` call when saving a replay: each call is one transaction, and
/// the points of a call are held twice (as points and as columns) while it runs.
pub const SCORES_PER_CALL: usize = 10_000;

/// A model version ready to score windows.
pub struct Scorer {
    engine: Autoencoder,
    card: ModelCard,
    model: ModelRef,
    flat: flat::FlatCheck,
}

impl Scorer {
    /// Loads the model `name` version `version` in `dir` (as `sentio train` wrote it) for
    /// scoring on `threads` threads.
    pub fn load(dir: &Path, name: &str, version: &str, threads: usize) -> anyhow::Result<Scorer> {
        let card = ModelCard::read(dir)?;
        let model = ModelRef {
            name: name.to_owned(),
            version: version.to_owned(),
            sensors: card.columns()?,
        };
        let spec = ModelSpec {
            features: card.features,
            hidden: card.hidden,
            bottleneck: card.bottleneck,
            window: card.window,
        };
        let weights = dir.join(WEIGHTS_FILE);
        let engine = Autoencoder::load_safetensors(&weights, spec)
            .with_context(|| format!("loading the weights {}", weights.display()))?
            .with_threads(threads.max(1));
        let mut flat = flat::FlatCheck::new(
            card.calibration.longest_flat_run.as_deref(),
            card.window,
            card.fill_limit,
        );
        if !card.post.weights.is_empty() {
            // A channel that does not count in the score raises no stuck-sensor alarm either.
            flat = flat.weighted(&card.post.weights);
        }
        if let Some(&c) = card.post.detrend.iter().find(|&&c| c >= card.features) {
            anyhow::bail!(
                "the model card detrends column {c} of a model of {} features",
                card.features
            );
        }
        Ok(Scorer { engine, card, model, flat })
    }

    /// Downloads version `alias_or_version` of `name` (an alias such as `champion`, or a number)
    /// from the tracking backend into `cache` and loads it.
    pub async fn resolve(
        tracking: &dyn Tracking,
        name: &str,
        alias_or_version: &str,
        cache: &Path,
        threads: usize,
    ) -> anyhow::Result<Scorer> {
        let version = match alias_or_version.parse::<u64>() {
            Ok(v) => v,
            Err(_) => {
                let found = tracking.get_alias(name, alias_or_version).await;
                if let Err(e) = &found
                    && e.is_not_found()
                {
                    anyhow::bail!(
                        "no model {name:?} is registered in the tracking backend yet: train one \
                         with `sentio train` (`sentio demo` trains one too), then run this again"
                    );
                }
                found
                    .with_context(|| format!("looking up {name}@{alias_or_version}"))?
                    .with_context(|| {
                        format!(
                            "model {name:?} has no alias {alias_or_version:?}: train one with \
                             `sentio train`, or promote a version with `sentio model promote`"
                        )
                    })?
                    .version
            }
        };
        let dir = cache.join(format!("{name}-{version}"));
        if !dir.join(WEIGHTS_FILE).is_file() {
            let partial = cache.join(format!(".{name}-{version}.partial"));
            let _ = std::fs::remove_dir_all(&partial);
            std::fs::create_dir_all(&partial)
                .with_context(|| format!("creating {}", partial.display()))?;
            tracking
                .download_model_version(name, version, &partial)
                .await
                .with_context(|| format!("downloading {name} version {version}"))?;
            std::fs::rename(&partial, &dir)
                .with_context(|| format!("moving the model into {}", dir.display()))?;
        }
        Scorer::load(&dir, name, &version.to_string(), threads)
    }

    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    pub fn model(&self) -> &ModelRef {
        &self.model
    }

    /// The channels of the model's frames, in column order.
    pub fn columns(&self) -> &Columns {
        &self.model.sensors
    }

    /// The asset profile the model is for.
    pub fn profile(&self) -> &str {
        &self.card.profile
    }

    pub fn threshold(&self) -> f64 {
        self.card.calibration.threshold
    }

    /// How readings become frames for this model.
    pub fn align(&self) -> AlignSettings {
        AlignSettings { cadence_ns: self.card.cadence_ns, fill_limit: self.card.fill_limit }
    }

    /// The card's detrending and smoothing.
    pub fn post(&self) -> &PostProcess {
        &self.card.post
    }

    /// The stuck-sensor check without the columns whose weight is 0.
    pub fn flat_check(&self, weights: &[f64]) -> flat::FlatCheck {
        self.flat.weighted(weights)
    }

    /// Scores live windows (`card.window` frames each, with the model's inputs when they differ
    /// from the values), as [`Scorer::score_series`] does before its per-device steps, which
    /// [`Scorer::post_window`] then applies; `weights` scale each column's error in the score,
    /// on top of the card's (all 1: the calibrated score). Returns each window's score and per-column error relative
    /// to its normal level.
    pub fn score_windows(
        &self,
        windows: &[frames::ReadyWindow],
        weights: &[f64],
    ) -> anyhow::Result<Vec<(f64, Vec<f64>)>> {
        let t = self.card.window;
        let width = self.columns().len();
        anyhow::ensure!(
            weights.len() == width,
            "{} weights for a model of {width} channels",
            weights.len()
        );
        let mut data = Vec::with_capacity(windows.len() * t * width);
        for w in windows {
            let input = if w.inputs.is_empty() { &w.values } else { &w.inputs };
            anyhow::ensure!(
                input.len() == t * width,
                "a window of {} values for a model of {t} frames of {width}",
                input.len()
            );
            for frame in input.chunks_exact(width) {
                self.card.scaler.transform_into(frame, &mut data);
            }
        }
        let (scores, sensors) = fit::score(&self.engine, &data)?;
        let normal = &self.card.calibration.sensor_mean;
        let weighted = weights.iter().any(|&w| w != 1.0);
        let post = &self.card.post;
        Ok(scores
            .into_iter()
            .zip(sensors)
            .map(|(score, raw)| {
                let score = if weighted {
                    let card = |i: usize| post.weights.get(i).copied().unwrap_or(1.0);
                    raw.iter()
                        .zip(weights)
                        .enumerate()
                        .map(|(i, (e, w))| e * w * card(i))
                        .sum::<f64>()
                        / width as f64
                } else {
                    post.weigh(score, &raw)
                };
                let relative = (0..width)
                    .map(|i| {
                        let w = if post.scores(i) { weights[i] } else { 0.0 };
                        w * raw[i] / normal[i].max(f64::MIN_POSITIVE)
                    })
                    .collect();
                (score, relative)
            })
            .collect())
    }

    /// One device's steps after the model, for its windows in time order: the score smoothed
    /// with the device's earlier ones, then the stuck-sensor check on the window's measured
    /// `frames` against `threshold`.
    pub fn post_window(
        &self,
        flat: &flat::FlatCheck,
        smoother: &mut Smoother,
        end_ns: i64,
        frames: &[f64],
        (score, sensor_error): (f64, Vec<f64>),
    ) -> (f64, Vec<f64>) {
        let score = smoother.smooth(end_ns, score);
        flat.apply(frames, self.threshold(), score, sensor_error)
    }

    /// A fresh smoother for one device's scores.
    pub fn smoother(&self) -> Smoother {
        self.card.post.smoother(self.card.cadence_ns)
    }

    /// How live readings become this model's frames and windows.
    pub fn frame_settings(&self, grace_ns: i64, stride: usize) -> frames::FrameSettings {
        frames::FrameSettings {
            cadence_ns: self.card.cadence_ns,
            fill_limit: self.card.fill_limit,
            grace_ns,
            window: self.card.window,
            stride: stride.max(1),
            max_filled_fraction: self.card.max_filled_fraction,
        }
    }

    /// Scores every usable window of `series` starting every `stride` frames (no hole, not too
    /// filled, as in training; labelled windows too: detection must see them), in time order
    /// per device: the model's inputs (detrended where the card says), the model, then per
    /// device the smoothing and the stuck-sensor check, as the streaming detector does. Each
    /// sensor's error is given relative to its mean on the calibration data.
    pub fn score_series(
        &self,
        series: &[Series],
        stride: usize,
    ) -> anyhow::Result<BTreeMap<DeviceId, Vec<ScoredWindow>>> {
        let t = self.card.window;
        let settings = WindowSettings {
            window: t,
            stride: stride.max(1),
            max_filled_fraction: self.card.max_filled_fraction,
        };
        let windows = cut_windows(series, settings);
        let inputs = self.card.post.model_inputs(series);
        let data = gather(inputs.as_deref().unwrap_or(series), &windows, t, &self.card.scaler);
        let (scores, sensors) = fit::score(&self.engine, &data)?;
        let normal = &self.card.calibration.sensor_mean;
        let mut out: BTreeMap<DeviceId, Vec<ScoredWindow>> = BTreeMap::new();
        let mut smoother: Option<(usize, Smoother)> = None;
        for ((w, score), raw) in windows.iter().zip(scores).zip(sensors) {
            let score = self.card.post.weigh(score, &raw);
            // Relative to each sensor's normal error, so that a sensor the model always
            // reconstructs loosely (vibration) does not outvote the one that deviated.
            let post = &self.card.post;
            let sensor_error: Vec<f64> = raw
                .iter()
                .zip(normal)
                .enumerate()
                .map(|(i, (r, n))| if post.scores(i) { r / n.max(f64::MIN_POSITIVE) } else { 0.0 })
                .collect();
            let s = &series[w.series];
            let device_smoother = match &mut smoother {
                Some((i, current)) if *i == w.series => current,
                _ => &mut smoother.insert((w.series, self.smoother())).1,
            };
            let frames = s.rows(w.start..w.start + t);
            let end_ns = s.ts_ns(w.start + t);
            let (score, sensor_error) = self.post_window(
                &self.flat,
                device_smoother,
                end_ns,
                frames,
                (score, sensor_error),
            );
            out.entry(s.device.clone()).or_default().push(ScoredWindow {
                start_ns: s.ts_ns(w.start),
                end_ns: s.ts_ns(w.start + t),
                score,
                sensor_error,
            });
        }
        Ok(out)
    }
}

/// What a replay found.
#[derive(Debug, Default)]
pub struct Replay {
    /// Every alert message, in event-time order per device.
    pub alerts: Vec<Alert>,
    /// Every scored window, per device.
    pub scores: BTreeMap<DeviceId, Vec<ScoredWindow>>,
    pub readings: u64,
}

/// Scores `[from_ns, to_ns)` of the store (the `devices`, or all when empty) with `scorer`,
/// one window every `stride` frames, and runs the alert life cycle over the scores; alerts still
/// open at the end are resolved.
///
/// Every window whose last frame lies in the range is scored, as a detector running all along
/// would have scored it: the history before `from_ns` that those windows and the card's
/// detrending and smoothing need ([`PostProcess::warmup_frames`]) is read too, and only its
/// windows ending after `from_ns` are kept.
pub async fn replay(
    store: &dyn ReadingStore,
    scorer: Arc<Scorer>,
    devices: &[DeviceId],
    from_ns: i64,
    to_ns: i64,
    stride: usize,
    settings: AlertSettings,
) -> anyhow::Result<Replay> {
    let align = scorer.align();
    let warmup = scorer.card().window.saturating_sub(1) + scorer.post().warmup_frames();
    let read_from = from_ns
        .saturating_sub(i64::try_from(warmup).unwrap_or(i64::MAX).saturating_mul(align.cadence_ns));
    let (series, readings) =
        read_series(store, devices, scorer.columns(), align, read_from, to_ns, |_, _, _| {})
            .await?;
    let scoring = scorer.clone();
    let mut scores = tokio::task::spawn_blocking(move || scoring.score_series(&series, stride))
        .await
        .context("the scoring thread failed")??;
    for windows in scores.values_mut() {
        windows.retain(|w| w.end_ns > from_ns);
    }
    scores.retain(|_, windows| !windows.is_empty());
    let threshold = scorer.threshold();
    let now = sentio_core::time::now_ns();
    let mut alerts = Vec::new();
    for (device, windows) in &scores {
        let mut tracker = AlertTracker::new(device.clone(), settings);
        for w in windows {
            alerts.extend(tracker.observe(w, threshold, scorer.model(), now));
        }
        alerts.extend(tracker.resolve(threshold, scorer.model(), now));
    }
    Ok(Replay { alerts, scores, readings })
}

/// The `anomaly_scores` row of `device`'s scored `window`: its score against `threshold` (the one
/// its alert tracker compared it with), the sensor with the largest share of its error, and the
/// model version. `None` when the score or the threshold is not finite: the store keeps finite
/// values only, and refuses a whole call for one that is not.
pub fn score_point(
    device: &DeviceId,
    window: &ScoredWindow,
    threshold: f64,
    model: &ModelRef,
) -> Option<ScorePoint> {
    (window.score.is_finite() && threshold.is_finite()).then(|| ScorePoint {
        device: device.clone(),
        ts_ns: window.end_ns,
        score: window.score,
        threshold,
        top_sensor: model.sensors.channels()[top_sensor(&window.sensor_error)].clone(),
        model_version: model.version.clone(),
    })
}

/// Saves the windows a [`replay`] by `scorer` scored (`Replay::scores`) in the store's
/// `anomaly_scores`, against the model's threshold as the replay's alerts are, in calls of
/// [`SCORES_PER_CALL`] points: the dashboard's score history. A window scored already (by the
/// stream, or an earlier replay) is overwritten. Windows with a non-finite score are left out.
/// Returns the rows written.
pub async fn save_replay_scores(
    store: &dyn ReadingStore,
    scores: &BTreeMap<DeviceId, Vec<ScoredWindow>>,
    scorer: &Scorer,
) -> anyhow::Result<u64> {
    let (threshold, model) = (scorer.threshold(), scorer.model());
    let mut points = scores
        .iter()
        .flat_map(|(device, windows)| windows.iter().map(move |w| (device, w)))
        .filter_map(|(device, w)| score_point(device, w, threshold, model))
        .peekable();
    let mut written = 0;
    let mut chunk = Vec::with_capacity(SCORES_PER_CALL);
    while points.peek().is_some() {
        chunk.clear();
        chunk.extend(points.by_ref().take(SCORES_PER_CALL));
        written += store
            .save_scores(&chunk)
            .await
            .with_context(|| format!("saving {} replayed scores", chunk.len()))?;
    }
    Ok(written)
}
