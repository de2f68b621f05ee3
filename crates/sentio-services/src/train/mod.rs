//! `sentio train`: history from the store to a calibrated, registered LSTM autoencoder, one per
//! asset profile: the profile's channels are the model's features, its devices the data, and
//! each profile has its own registered model ([`model_name`]) with its own `champion`.
//!
//! 1. [`data`]: read the range from the store, align frames, split in time, fit the scaler on the
//!    training part, cut windows (labelled windows never train).
//! 2. [`fit`]: train with Adam and early stopping on the validation loss (blocking thread,
//!    cancellable between batches; the best weights are kept).
//! 3. [`calibrate`]: the threshold and per-sensor error statistics on the calibration split.
//! 4. [`artifact`]: the model directory (MLmodel, ONNX, safetensors, card).
//! 5. Tracking: a run with params and per-epoch metrics (logged as epochs finish), a logged model
//!    with the artifact, a new version of the registered model, and the `champion` alias moved
//!    when `train.promote` says so and the training was not cancelled ([`promote`]).
//!
//! Before it starts its run, a training ends as KILLED the runs of its experiment that killed
//! trainings on this host left RUNNING ([`stale`]).

pub mod artifact;
pub mod calibrate;
pub mod data;
pub mod fit;
pub mod promote;
pub mod stale;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use sentio_config::{Promote, TrainConfig};
use sentio_core::{DeviceId, Profile, Profiles};
use sentio_model::onnx::{OnnxSpec, export_autoencoder};
use sentio_store::ReadingStore;
use sentio_tracking::{LoggedModelStatus, Metric, RunId, RunStatus, Tracking, now_ms};
use tokio_util::sync::CancellationToken;

use artifact::{ModelCard, TrainingSummary};
use data::DataReport;
use fit::{EpochReport, Fitted, Observer};

/// The alias the detector follows.
pub const CHAMPION: &str = "champion";

/// The registered model of `profile`: `train.model_name` for the built-in pump (so models
/// registered before profiles keep their name), `sentio-<profile>` for any other.
pub fn model_name(config: &TrainConfig, profile: &str) -> String {
    if profile == sentio_core::profile::PUMP {
        config.model_name.clone()
    } else {
        format!("sentio-{profile}")
    }
}

/// What `train` is asked to do beyond `TrainConfig`.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    pub config: TrainConfig,
    /// The profiles of the configuration, and the one to train a model for.
    pub profiles: Profiles,
    pub profile: String,
    pub experiment: String,
    /// Range override; `None` takes `train.lookback` before the newest reading. Either way the
    /// train / validation / calibration split divides the time span of the data found in the
    /// range (first to last reading), not the range itself, so a range longer than the history
    /// still splits the history 70 / 15 / 15.
    pub from_ns: Option<i64>,
    pub to_ns: Option<i64>,
}

/// Progress of the whole pipeline; every method has a do-nothing default.
pub trait Progress: Observer {
    fn loading(&mut self, _done_ns: i64, _total_ns: i64, _readings: u64) {}
    fn prepared(&mut self, _report: &DataReport) {}
    fn stage(&mut self, _what: &str) {}
}

impl Progress for fit::Silent {}

/// What a finished `train` produced.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub run_id: RunId,
    pub model_name: String,
    pub version: u64,
    pub promotion: promote::Decision,
    pub card: ModelCard,
    pub history: Vec<EpochReport>,
}

/// Runs the whole pipeline. On failure the run (if started) is ended as FAILED; a cancelled
/// training still registers the best model so far, never promoted, and the run is ended as
/// KILLED.
pub async fn train(
    store: &dyn ReadingStore,
    tracking: Arc<dyn Tracking>,
    request: TrainRequest,
    stop: CancellationToken,
    mut progress: Box<dyn Progress>,
) -> anyhow::Result<TrainOutcome> {
    let profile = request.profiles.get(&request.profile).cloned().with_context(|| {
        format!(
            "no profile {:?} in the configuration; `sentio profile list` shows the profiles",
            request.profile
        )
    })?;
    let mut config = request.config.clone();
    config.model_name = model_name(&config, &profile.name);
    let (from_ns, to_ns) = range(store, &request).await?;
    let mine = profile_devices(store, &request.profiles, &profile).await?;
    if config.devices.is_empty() {
        config.devices = mine;
    } else {
        // `train.devices` picks among the profile's devices.
        let asked = std::mem::take(&mut config.devices);
        config.devices = asked.iter().filter(|d| mine.contains(d)).cloned().collect();
        if config.devices.is_empty() {
            anyhow::bail!(
                "none of train.devices ({}) is a stored device of profile {}: its devices are {}",
                asked.join(", "),
                profile.name,
                mine.join(", ")
            );
        }
    }
    let columns = crate::features::Columns::new(profile.channel_names());
    let (series, readings) =
        data::load_series(store, &config, &columns, from_ns, to_ns, |d, t, r| {
            progress.loading(d, t, r)
        })
        .await?;
    let score_weights: Vec<f64> = profile.channels.iter().map(|c| c.score_weight).collect();
    let prepared =
        data::prepare(columns, &score_weights, series, readings, &config, from_ns, to_ns)?;
    progress.prepared(&prepared.report);

    let experiment = tracking.experiment(&request.experiment).await?;
    let run_name = format!("train-{}", chrono::Utc::now().format("%Y%m%d-%H%M%S"));
    let mut tags = vec![
        ("mlflow.source.name".to_owned(), "sentio train".to_owned()),
        ("mlflow.source.type".to_owned(), "LOCAL".to_owned()),
        ("sentio.version".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
    ];
    if let Some(process) = stale::Process::current() {
        // Not being able to tidy up after killed trainings must not stop this one.
        if let Err(e) = stale::end_orphaned_runs(&*tracking, &experiment, &process).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "could not look for runs that killed trainings left RUNNING"
            );
        }
        tags.extend(process.tags());
    }
    let run = tracking.create_run(&experiment, &run_name, &tags).await?;
    let result =
        train_in_run(&*tracking, (&experiment, &run), &profile, prepared, &config, stop, progress)
            .await;
    let status = match &result {
        Ok(o) if o.card.training.stopped == fit::Stopped::Cancelled.as_str() => RunStatus::Killed,
        Ok(_) => RunStatus::Finished,
        Err(_) => RunStatus::Failed,
    };
    if let Err(e) = tracking.end_run(&run, status).await {
        tracing::warn!(run = %run, error = %e, "could not end the run");
    }
    result
}

/// The stored devices that belong to `profile` (the most specific pattern that matches them is
/// one of its own) and have stored readings of at least one of its channels.
pub async fn profile_devices(
    store: &dyn ReadingStore,
    profiles: &Profiles,
    profile: &Profile,
) -> anyhow::Result<Vec<String>> {
    let mut devices: Vec<String> = store
        .channels()
        .await
        .context("listing the stored devices")?
        .into_iter()
        .filter(|c| profile.position(&c.sensor).is_some())
        .map(|c| c.device)
        .filter(|d| profiles.for_device(d.as_str()).is_some_and(|p| p.name == profile.name))
        .map(|d: DeviceId| d.to_string())
        .collect();
    devices.sort();
    devices.dedup();
    if devices.is_empty() {
        anyhow::bail!(
            "the store holds no readings of a device of profile {} (devices {}): ingest its \
             readings first, or see `sentio profile list` for which device is which",
            profile.name,
            profile.devices.join(", ")
        );
    }
    Ok(devices)
}

/// The profiles with stored devices to train on (see [`profile_devices`]), the pump first.
pub async fn stored_profiles(
    store: &dyn ReadingStore,
    profiles: &Profiles,
) -> anyhow::Result<Vec<String>> {
    let channels = store.channels().await.context("listing the stored devices")?;
    let mut out: Vec<String> = profiles
        .iter()
        .filter(|p| {
            channels.iter().any(|c| {
                p.position(&c.sensor).is_some()
                    && profiles.for_device(c.device.as_str()).is_some_and(|q| q.name == p.name)
            })
        })
        .map(|p| p.name.clone())
        .collect();
    out.sort_by_key(|p| p != sentio_core::profile::PUMP);
    Ok(out)
}

async fn range(store: &dyn ReadingStore, request: &TrainRequest) -> anyhow::Result<(i64, i64)> {
    let to_ns = match request.to_ns {
        Some(t) => t,
        None => match store.stats().await?.latest_ts_ns {
            Some(latest) => latest + 1,
            None => anyhow::bail!(
                "the store is empty: ingest readings first (`sentio demo`, or `sentio simulate \
                 --backfill` with `sentio ingest`)"
            ),
        },
    };
    let lookback = i64::try_from(request.config.lookback.as_nanos()).unwrap_or(i64::MAX);
    let from_ns = request.from_ns.unwrap_or(to_ns.saturating_sub(lookback));
    if from_ns >= to_ns {
        anyhow::bail!("the training range is empty: --from must come before --to");
    }
    Ok((from_ns, to_ns))
}

/// Sends finished epochs to the tracker while the blocking loop runs.
struct Forward {
    inner: Box<dyn Progress>,
    epochs: tokio::sync::mpsc::UnboundedSender<EpochReport>,
}

impl Observer for Forward {
    fn epoch_started(&mut self, epoch: usize, epochs: usize, batches: usize) {
        self.inner.epoch_started(epoch, epochs, batches);
    }
    fn batch_done(&mut self, epoch: usize, batch: usize, loss: f32, rate: f64) {
        self.inner.batch_done(epoch, batch, loss, rate);
    }
    fn epoch_finished(&mut self, report: &EpochReport) {
        self.inner.epoch_finished(report);
        let _ = self.epochs.send(report.clone());
    }
}

fn epoch_metrics(e: &EpochReport, at_ms: i64) -> Vec<Metric> {
    let step = i64::try_from(e.epoch).unwrap_or(i64::MAX);
    vec![
        Metric::new("train_loss", e.train_loss, step, at_ms),
        Metric::new("validation_loss", e.validation_loss, step, at_ms),
        Metric::new("train_windows_per_s", e.train_windows_per_s, step, at_ms),
        Metric::new("epoch_seconds", e.seconds, step, at_ms),
    ]
}

fn params(
    config: &TrainConfig,
    profile: &Profile,
    report: &DataReport,
    post: &crate::features::PostProcess,
    threads: usize,
) -> Vec<(String, String)> {
    let t = sentio_core::time::format_rfc3339;
    let channels = profile.channel_names();
    let detrended: Vec<&str> =
        post.detrend.iter().filter_map(|&c| channels.get(c)).map(|c| c.as_str()).collect();
    [
        ("window", config.window.to_string()),
        ("stride", config.stride.to_string()),
        ("hidden", config.hidden.to_string()),
        ("bottleneck", config.bottleneck.to_string()),
        ("epochs", config.epochs.to_string()),
        ("batch_size", config.batch_size.to_string()),
        ("learning_rate", config.learning_rate.to_string()),
        ("profile", profile.name.clone()),
        (
            "channels",
            profile.channel_names().iter().map(|c| c.as_str()).collect::<Vec<_>>().join(","),
        ),
        ("patience", config.patience.to_string()),
        ("seed", config.seed.to_string()),
        ("threads", threads.to_string()),
        ("cadence", humantime::format_duration(config.cadence).to_string()),
        ("fill_limit", config.fill_limit.to_string()),
        ("max_filled_fraction", config.max_filled_fraction.to_string()),
        ("threshold_method", format!("{:?}", config.threshold).to_lowercase()),
        ("percentile", config.percentile.to_string()),
        ("threshold_factor", config.threshold_factor.to_string()),
        ("split", format!("{:?}", config.split).to_lowercase()),
        ("detrend", format!("{:?}", config.detrend).to_lowercase()),
        ("detrend_window", config.detrend_window.to_string()),
        ("detrended", detrended.join(",")),
        ("detrend_weight", config.detrend_weight.to_string()),
        ("smooth", config.smooth.to_string()),
        ("data_from", t(report.from_ns)),
        ("data_to", t(report.to_ns)),
        ("validation_from", t(report.validation_from_ns)),
        ("calibration_from", t(report.calibration_from_ns)),
        ("devices", report.devices.join(",")),
        ("readings", report.readings.to_string()),
        ("train_windows", report.train_windows.to_string()),
        ("validation_windows", report.validation_windows.to_string()),
        ("calibration_windows", report.calibration_windows.to_string()),
        ("labelled_windows_excluded", report.labelled_windows.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

async fn train_in_run(
    tracking: &dyn Tracking,
    (experiment, run): (&sentio_tracking::ExperimentId, &RunId),
    profile: &Profile,
    prepared: data::Prepared,
    config: &TrainConfig,
    stop: CancellationToken,
    progress: Box<dyn Progress>,
) -> anyhow::Result<TrainOutcome> {
    let threads = fit::threads(config);
    tracking
        .log_params(run, &params(config, profile, &prepared.report, &prepared.post, threads))
        .await?;

    // Training on a blocking thread; epochs reach the tracker as they finish.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut forward = Forward { inner: progress, epochs: tx };
    let cfg = config.clone();
    let prepared = Arc::new(prepared);
    let data = prepared.clone();
    let job = tokio::task::spawn_blocking(move || {
        let fitted = fit::fit(&data, &cfg, &stop, &mut forward);
        (fitted, forward.inner)
    });
    while let Some(epoch) = rx.recv().await {
        tracking.log_metrics(run, &epoch_metrics(&epoch, now_ms())).await?;
    }
    let (fitted, mut progress) = job.await.context("the training thread panicked")?;
    let fitted: Fitted = fitted?;

    progress.stage("calibrating the threshold");
    let (scores, sensors) = fit::score(&fitted.model, &prepared.calibration.data)?;
    let scores: Vec<f64> =
        scores.iter().zip(&sensors).map(|(&s, e)| prepared.post.weigh(s, e)).collect();
    let scores = smoothed_calibration(&prepared, &scores, config.window);
    let width = prepared.columns.len();
    let mut calibration = calibrate::calibrate(
        &scores,
        &sensors,
        width,
        config.threshold,
        config.percentile,
        config.pot_quantile,
        config.pot_risk,
    )
    .scaled(config.threshold_factor, &scores);
    calibration.longest_flat_run = Some(longest_normal_runs(&prepared, config.window));
    let last = fitted.history.last();
    let card = ModelCard {
        format: artifact::CARD_FORMAT.to_owned(),
        features: width,
        hidden: config.hidden,
        bottleneck: config.bottleneck,
        window: config.window,
        stride: config.stride,
        profile: profile.name.clone(),
        sensors: prepared.columns.channels().iter().map(|c| c.as_str().to_owned()).collect(),
        cadence_ns: i64::try_from(config.cadence.as_nanos()).unwrap_or(i64::MAX),
        fill_limit: config.fill_limit,
        max_filled_fraction: config.max_filled_fraction,
        scaler: prepared.scaler.clone(),
        post: prepared.post.clone(),
        calibration,
        data: prepared.report.clone(),
        training: TrainingSummary {
            seed: config.seed,
            threads: fitted.threads,
            epochs_run: fitted.history.len(),
            best_epoch: fitted.best_epoch,
            best_validation_loss: fitted.best_validation_loss,
            final_train_loss: last.map_or(f64::NAN, |e| e.train_loss),
            stopped: fitted.stopped.as_str().to_owned(),
            learning_rate: config.learning_rate,
            batch_size: config.batch_size,
            train_windows_per_s: mean_rate(&fitted.history),
            seconds: fitted.seconds,
        },
        sentio_version: env!("CARGO_PKG_VERSION").to_owned(),
    };

    progress.stage("writing the model artifact");
    let dir = tempfile::tempdir().context("creating a temporary directory for the artifact")?;
    write_model(dir.path(), &fitted, &card)?;
    let c = &card.calibration;
    let final_metrics = [
        ("best_validation_loss", fitted.best_validation_loss),
        ("threshold", c.threshold),
        ("calibration_score_mean", c.score_mean),
        ("calibration_exceed_fraction", c.exceed_fraction),
    ]
    .map(|(k, v)| Metric::new(k, v, 0, now_ms()));
    tracking.log_metrics(run, &final_metrics).await?;

    progress.stage("registering the model");
    let logged =
        tracking.create_logged_model(experiment, artifact::ARTIFACT_PATH, Some(run)).await?;
    let uploaded = tracking.log_model_artifacts(&logged.model_id, dir.path()).await;
    let status =
        if uploaded.is_ok() { LoggedModelStatus::Ready } else { LoggedModelStatus::UploadFailed };
    tracking.finalize_logged_model(&logged.model_id, status).await?;
    uploaded?;
    tracking.create_registered_model(&config.model_name).await?;
    let version = tracking
        .create_model_version(
            &config.model_name,
            &logged.model_uri(),
            Some(run),
            Some(&logged.model_id),
        )
        .await?;
    tracking
        .set_tags(run, &[("sentio.model_version".to_owned(), version.version.to_string())])
        .await?;

    progress.stage("comparing with the champion");
    let decision = promote::decide(tracking, config, &prepared, &fitted, version.version).await?;
    if decision.promote {
        tracking.set_alias(&config.model_name, CHAMPION, version.version).await?;
    }
    Ok(TrainOutcome {
        run_id: run.clone(),
        model_name: config.model_name.clone(),
        version: version.version,
        promotion: decision,
        card,
        history: fitted.history,
    })
}

/// The calibration windows' scores as the detector sees them: smoothed per device in time order
/// (the card's `post.smooth`), as `detect` smooths a live device's scores.
fn smoothed_calibration(prepared: &data::Prepared, scores: &[f64], window: usize) -> Vec<f64> {
    let refs = &prepared.calibration.refs;
    let mut out = Vec::with_capacity(scores.len());
    let mut current: Option<(usize, crate::features::post::Smoother)> = None;
    for (w, &score) in refs.iter().zip(scores) {
        let s = &prepared.series[w.series];
        let smoother = match &mut current {
            Some((series, smoother)) if *series == w.series => smoother,
            _ => &mut current.insert((w.series, prepared.post.smoother(s.cadence_ns))).1,
        };
        out.push(smoother.smooth(s.ts_ns(w.start + window), score));
    }
    out
}

/// Each sensor's longest run of identical consecutive values in the windows training used (all
/// free of ground-truth labels).
fn longest_normal_runs(prepared: &data::Prepared, window: usize) -> Vec<u32> {
    let parts = [&prepared.train, &prepared.validation, &prepared.calibration];
    let width = prepared.columns.len();
    let mut longest = vec![0u32; width];
    for w in parts.iter().flat_map(|p| &p.refs) {
        let frames = prepared.series[w.series].rows(w.start..w.start + window);
        let runs = crate::detect::flat::longest_runs(frames, width);
        for (l, r) in longest.iter_mut().zip(runs) {
            *l = (*l).max(r);
        }
    }
    longest
}

fn mean_rate(history: &[EpochReport]) -> f64 {
    let windows: f64 = history.iter().map(|e| e.train_windows_per_s * e.seconds).sum();
    let seconds: f64 = history.iter().map(|e| e.seconds).sum();
    windows / seconds.max(1e-9)
}

/// Writes weights, ONNX graph, card and MLflow metadata into `dir`.
pub fn write_model(dir: &Path, fitted: &Fitted, card: &ModelCard) -> anyhow::Result<()> {
    fitted.model.save_safetensors(&dir.join(artifact::WEIGHTS_FILE))?;
    let spec = OnnxSpec {
        features: card.features,
        hidden: card.hidden,
        bottleneck: card.bottleneck,
        window: card.window,
        producer_version: card.sentio_version.clone(),
    };
    let params = fitted.model.params();
    let tensors = params.tensors();
    let onnx = export_autoencoder(&spec, |name| {
        tensors.iter().find(|t| t.name == name).map(|t| (t.shape(), t.data.to_vec()))
    })
    .context("exporting the model to ONNX")?;
    let uuid = format!("{:032x}", rand::random::<u128>());
    artifact::write_artifact(dir, card, &onnx, &uuid)
}

/// Whether `promote` forces the decision.
pub fn forced(promote: Promote) -> Option<bool> {
    match promote {
        Promote::Always => Some(true),
        Promote::Never => Some(false),
        Promote::IfBetter => None,
    }
}
