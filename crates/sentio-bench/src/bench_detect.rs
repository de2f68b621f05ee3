//! `sentio bench detect`: the detection path's throughput against PyTorch's inference of the same
//! model on the same windows (`scripts/bench_torch_detect.py`), and the streaming detector's
//! end-to-end latency on the embedded bus at a given reading rate, measured in one run.
//!
//! The model is trained here, briefly, on simulated history at the live run's cadence (a few
//! seconds), through the real `train` path into a scratch tracking directory, so that the card
//! (scaler, threshold, stuck-sensor limits) is what the detector would load. Throughput does not
//! depend on how well the weights are trained: an LSTM costs the same for any values.
//!
//! 1. Throughput: the same 4,096 raw windows (cut from the simulated history by the detector's
//!    own framing) in batches of `detect.batch_windows`, through `Scorer::score_windows` (scaler,
//!    autoencoder, per-window and per-sensor errors, stuck-sensor check) and through PyTorch
//!    (standardize, reconstruct under `no_grad`, the same reductions) with the weights Sentio
//!    wrote. Rust and PyTorch alternate within each round, as in `bench train`; PyTorch's scores
//!    must equal Sentio's, so the numbers are for the same model. The autoencoder alone on the
//!    same windows, standardized beforehand, shows what the path adds around it.
//! 2. Latency: the simulator publishes in real time onto the memory bus and the streaming
//!    `Detector` scores every window (`detect.stride`); its latency histograms give "newest
//!    reading's event time → window scored" and "→ alert published", after a warm-up of one
//!    window span plus 2 s.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sentio_config::FleetDevice;
use sentio_config::{BusKind, Config, StoreKind, TrackingKind};
use sentio_core::time::now_ns;
use sentio_core::{DeviceId, Reading};
use sentio_model::{Autoencoder, ModelSpec};
use sentio_services::detect::Scorer;
use sentio_services::detect::frames::{DeviceFrames, ReadyWindow};
use sentio_services::detect::service::{DetectStats, Detector};
use sentio_services::simulator::machine::Machine;
use sentio_services::simulator::model::DeviceModel;
use sentio_services::simulator::{Output, Simulator, device_ids};
use sentio_services::train::{TrainRequest, fit};
use tokio_util::sync::CancellationToken;

use super::bench_train::{cell, ratio, resolve_python, thousands};
use sentio_app::wiring;

/// The PyTorch side, embedded so that the command runs from any directory.
const BENCH_TORCH_DETECT_PY: &str = include_str!("../../../scripts/bench_torch_detect.py");
const TORCH_REFERENCE_PY: &str = include_str!("../../../scripts/torch_reference.py");

/// Devices of the simulated history the model is trained on and the benchmark windows come from.
const HISTORY_DEVICES: u32 = 16;
/// Frames of history per device (8 minutes at 100 ms).
const HISTORY_FRAMES: i64 = 4_800;
/// Windows scored by both sides: four batches of 1,024, 256 per history device.
const WINDOWS: usize = 4_096;
/// Training: a couple of epochs on at most this many windows, enough for a sane card.
const TRAIN_EPOCHS: usize = 2;
const TRAIN_MAX_WINDOWS: usize = 4_096;
/// Untimed batches before the timed ones (besides the first pass over all windows).
const WARMUP_BATCHES: usize = 2;
/// Latency beyond the window span that the detector aims for (the goal, at p99).
const LATENCY_GOAL: Duration = Duration::from_millis(100);
/// Agreement asked of PyTorch's scores: |a − b| ≤ REL·|b| + ABS.
const REL_TOLERANCE: f64 = 1e-4;
const ABS_TOLERANCE: f64 = 1e-6;

pub struct Options {
    /// Thread counts of the throughput comparison, each on both sides.
    pub threads: Vec<usize>,
    /// Timed scoring calls (batches of `detect.batch_windows`) per measurement.
    pub steps: usize,
    /// Rounds of throughput measurements; the median is reported.
    pub rounds: usize,
    /// The Python with torch; `None` for the venv of `scripts/torch-env.sh`.
    pub python: Option<PathBuf>,
    /// Readings per second the simulator publishes in the latency run.
    pub rate: u32,
    /// Simulated pumps in the latency run (four sensors each), unless the configuration's
    /// `demo.profiles` names a mixed fleet.
    pub devices: u32,
    /// Measured span of the latency run, after the warm-up.
    pub duration: Duration,
}

/// Windows per wall-clock second and per CPU-second, one side, one measurement.
#[derive(Clone, Copy, Debug)]
struct Rates {
    wall: f64,
    cpu: Option<f64>,
}

/// Each window's score and per-sensor error, as the detection path returns them.
type Scores = Vec<(f64, Vec<f64>)>;

pub async fn run(mut config: Config, options: Options) -> anyhow::Result<()> {
    if options.threads.is_empty() || options.threads.contains(&0) {
        bail!("--threads needs one or more thread counts, each at least 1");
    }
    if options.steps == 0 || options.rounds == 0 {
        bail!("--steps and --rounds must be at least 1");
    }
    if options.rate == 0 || options.devices == 0 || options.duration.is_zero() {
        bail!("--rate, --devices and --duration must be above 0");
    }
    let python = resolve_python(options.python.clone())?;
    if cfg!(debug_assertions) {
        say_err!(
            "warning: this sentio is a debug build, so the Rust side runs unoptimized and its \
             numbers mean nothing; build with `cargo build --release -p sentio`"
        );
    }

    // The latency run's fleet: `--devices` pumps, or the mixed fleet of `demo.profiles`, each
    // profile with a model of its own.
    config.simulator.devices = options.devices;
    let fleet = config.fleet()?;
    let per_tick: u64 = fleet.iter().map(|d| d.profile.channels.len() as u64).sum();
    // One cadence for the simulator and the models: the fleet's readings every cadence.
    let cadence_ns = (per_tick * 1_000_000_000).div_ceil(u64::from(options.rate));
    let cadence = Duration::from_nanos(cadence_ns);
    let cadence_ns = i64::try_from(cadence_ns).context("--devices / --rate is too slow")?;
    let dir = tempfile::Builder::new()
        .prefix("sentio-bench-detect-")
        .tempdir()
        .context("creating a temporary directory")?;
    embedded(&mut config, dir.path());
    config.simulator.cadence = cadence;
    config.simulator.speedup = 1.0;
    config.train.cadence = cadence;
    config.train.epochs = TRAIN_EPOCHS;
    config.train.patience = TRAIN_EPOCHS;
    config.train.max_train_windows = TRAIN_MAX_WINDOWS;
    config.validate()?;
    let t = &config.train;
    let batch = config.detect.batch_windows.max(1);
    say!(
        "sentio bench detect: LSTM autoencoder T={} F=4 H={} Z={}, batches of {batch} windows, \
         {} timed batches per measurement, threads {:?}, {} round(s); then {} readings/s \
         ({} every {}) for {}; {} cores",
        t.window,
        t.hidden,
        t.bottleneck,
        options.steps,
        options.threads,
        options.rounds,
        thousands(1e9 * per_tick as f64 / cadence_ns as f64),
        describe(&fleet),
        humantime::format_duration(cadence),
        humantime::format_duration(options.duration),
        std::thread::available_parallelism().map_or(1, usize::from)
    );

    // The model: trained briefly on simulated history at this cadence, then loaded from its
    // artifact directory like the detector loads it.
    let started = Instant::now();
    let (history, history_to) = simulate_history(&config, cadence_ns)?;
    let store = wiring::open_store(&config).await?;
    for chunk in history.chunks(config.ingest.batch_size.max(1)) {
        store.insert_readings(chunk).await.context("storing the simulated history")?;
    }
    let tracking = wiring::open_tracking(&config)?;
    let history_from = history_to - HISTORY_FRAMES * cadence_ns;
    let train = |profiles: sentio_core::Profiles, profile: &str| {
        let request = TrainRequest {
            config: config.train.clone(),
            profiles,
            profile: profile.to_owned(),
            experiment: config.tracking.experiment.clone(),
            from_ns: Some(history_from),
            to_ns: Some(history_to),
        };
        let (store, tracking) = (store.clone(), tracking.clone());
        let profile = profile.to_owned();
        async move {
            let stop = CancellationToken::new();
            sentio_services::train::train(
                store.as_ref(),
                tracking,
                request,
                stop,
                Box::new(fit::Silent),
            )
            .await
            .with_context(|| format!("training the benchmark's {profile} model"))
        }
    };
    let outcome = train(sentio_core::Profiles::builtin(), sentio_core::profile::PUMP).await?;
    let model_dir = dir.path().join("model");
    tracking
        .download_model_version(&outcome.model_name, outcome.version, &model_dir)
        .await
        .context("downloading the trained model")?;
    let version = outcome.version.to_string();
    let load = |threads: usize| {
        Scorer::load(&model_dir, &outcome.model_name, &version, threads)
            .map(Arc::new)
            .with_context(|| format!("loading the model from {}", model_dir.display()))
    };
    let reference = load(1)?;
    let model = reference.model().clone();
    let card = reference.card().clone();
    say!(
        "model: {} v{} trained for {} epoch(s) on {} windows of {} devices x {} frames ({:.1} s \
         with simulating and storing), threshold {:.4}",
        model.name,
        model.version,
        card.training.epochs_run,
        card.data.train_windows,
        HISTORY_DEVICES,
        HISTORY_FRAMES,
        started.elapsed().as_secs_f64(),
        card.calibration.threshold
    );

    // 1. Throughput against PyTorch on the same windows.
    let windows = Arc::new(cut_windows(&reference, &history, WINDOWS));
    drop(history);
    if windows.len() < batch {
        bail!("only {} windows to score; the history is too short", windows.len());
    }
    let raw = dir.path().join("windows.f64");
    write_raw(&raw, &windows)?;
    let scripts = dir.path().join("torch");
    std::fs::create_dir_all(&scripts)
        .and_then(|()| std::fs::write(scripts.join("bench_torch_detect.py"), BENCH_TORCH_DETECT_PY))
        .and_then(|()| std::fs::write(scripts.join("torch_reference.py"), TORCH_REFERENCE_PY))
        .with_context(|| format!("writing the PyTorch script to {}", scripts.display()))?;
    let torch = TorchRun {
        python: python.clone(),
        script: scripts.join("bench_torch_detect.py"),
        weights: model_dir.join(sentio_services::train::artifact::WEIGHTS_FILE),
        windows: raw,
        count: windows.len(),
        mean: card.scaler.mean.clone(),
        std: card.scaler.std.clone(),
        spec: (card.features, card.hidden, card.bottleneck, card.window),
        batch,
        steps: options.steps,
    };
    let scorers: Vec<Arc<Scorer>> =
        options.threads.iter().map(|&n| load(n)).collect::<anyhow::Result<_>>()?;
    // The autoencoder alone on the same windows, standardized up front: what the detection path
    // adds around it.
    let spec = ModelSpec {
        features: card.features,
        hidden: card.hidden,
        bottleneck: card.bottleneck,
        window: card.window,
    };
    let standardized: Arc<Vec<f32>> = Arc::new(
        windows
            .iter()
            .flat_map(|w| w.values.chunks_exact(card.features))
            .flat_map(|f| card.scaler.transform(f))
            .collect(),
    );
    let engines: Vec<Arc<Autoencoder>> = options
        .threads
        .iter()
        .map(|&n| {
            Autoencoder::load_safetensors(&torch.weights, spec)
                .map(|e| Arc::new(e.with_threads(n)))
                .with_context(|| format!("loading {}", torch.weights.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut engine_alone: Vec<Vec<f64>> = vec![Vec::new(); options.threads.len()];
    let normal = card.calibration.sensor_mean.clone();
    let threshold = card.calibration.threshold;
    let mut measured: Vec<Vec<(Rates, Rates)>> = vec![Vec::new(); options.threads.len()];
    let mut torch_version = String::new();
    let mut agreement: Option<Agreement> = None;
    for round in 1..=options.rounds {
        for (i, &threads) in options.threads.iter().enumerate() {
            // The first round also checks every window's scores against PyTorch's.
            let first = round == 1;
            let (scorer, w, steps) = (scorers[i].clone(), windows.clone(), options.steps);
            let (rust, scores) =
                tokio::task::spawn_blocking(move || measure_rust(&scorer, &w, batch, steps, first))
                    .await
                    .context("the Rust benchmark thread")?
                    .with_context(|| format!("Sentio's scoring, {threads} thread(s)"))?;
            let (engine, data, steps) = (engines[i].clone(), standardized.clone(), options.steps);
            let alone = tokio::task::spawn_blocking(move || {
                measure_engine(&engine, &data, batch * spec.window_len(), steps)
            })
            .await
            .context("the Rust benchmark thread")??;
            engine_alone[i].push(alone);
            let check = first.then(|| dir.path().join(format!("torch-{threads}.f64")));
            let (torch_rates, version) = torch.run(threads, check.as_deref()).await?;
            torch_version = version;
            if let (Some(path), Some(scores)) = (&check, &scores) {
                let theirs = read_torch_scores(path, windows.len())?;
                let a = compare(scores, &theirs, &normal, threshold).with_context(|| {
                    format!(
                        "PyTorch's scores differ from Sentio's at {threads} thread(s): not the \
                         same model, or a bug"
                    )
                })?;
                agreement = Some(agreement.map_or(a, |b| b.merge(a)));
            }
            say!(
                "round {round}, {threads} thread(s): {:.0} vs {:.0} windows/s (Sentio vs torch; \
                 Sentio's autoencoder alone {alone:.0})",
                rust.wall,
                torch_rates.wall
            );
            measured[i].push((rust, torch_rates));
        }
    }

    // 2. End-to-end latency on the memory bus, every profile of the fleet by its own model: the
    // pump's above, any other trained the same way on its own devices' history.
    let detector_threads = fit::threads_or_all(config.detect.threads);
    let mut scorers = vec![load(detector_threads)?];
    let profiles = config.profiles()?;
    let mut others: Vec<&str> = fleet
        .iter()
        .map(|d| d.profile.name.as_str())
        .filter(|p| *p != sentio_core::profile::PUMP)
        .collect();
    others.sort_unstable();
    others.dedup();
    for profile in others {
        let devices: Vec<FleetDevice> = fleet
            .iter()
            .filter(|d| d.profile.name == profile)
            .take(HISTORY_DEVICES as usize)
            .cloned()
            .collect();
        let history = simulate_machines(&config, &devices, cadence_ns, history_to);
        for chunk in history.chunks(config.ingest.batch_size.max(1)) {
            store.insert_readings(chunk).await.context("storing the simulated history")?;
        }
        let trained = train(profiles.clone(), profile).await?;
        let version = trained.version.to_string();
        let cache = dir.path().join("models");
        let scorer = Scorer::resolve(
            tracking.as_ref(),
            &trained.model_name,
            &version,
            &cache,
            detector_threads,
        )
        .await?;
        say!(
            "model: {} v{} for the {} {profile} device(s), {} channels, threshold {:.4}",
            trained.model_name,
            version,
            fleet.iter().filter(|d| d.profile.name == profile).count(),
            scorer.columns().len(),
            scorer.threshold()
        );
        scorers.push(Arc::new(scorer));
    }
    say!(
        "\nstreaming: {} readings/s for {} after a warm-up of one window span and 2 s ...",
        thousands(1e9 * per_tick as f64 / cadence_ns as f64),
        humantime::format_duration(options.duration)
    );
    let latency =
        stream(&config, store, scorers, fleet, options.duration, detector_threads).await?;

    say!("\ntorch {torch_version} ({}); median of {} round(s)", python.display(), options.rounds);
    throughput_table(&options.threads, &measured, batch);
    if let Some(a) = agreement {
        say!(
            "\nPyTorch's scores equal Sentio's on {} window(s) (largest relative difference \
             {:.1e}, tolerance {REL_TOLERANCE:.0e}){}",
            a.compared,
            a.max_relative,
            if a.stuck > 0 {
                format!(
                    "; {} window(s) that the stuck-sensor check raised (not a model output) were \
                     left out",
                    a.stuck
                )
            } else {
                String::new()
            }
        );
    }
    say!("ratio = Sentio / torch (above 1: Sentio is faster)");
    let alone: Vec<String> = options
        .threads
        .iter()
        .zip(&engine_alone)
        .map(|(n, r)| format!("{} at {n} thread(s)", cell(r)))
        .collect();
    say!(
        "Sentio's autoencoder alone (`Autoencoder::window_errors` on the same windows, \
         standardized beforehand), windows/s: {}",
        alone.join(", ")
    );
    latency.print(card.window, cadence);
    Ok(())
}

/// The benchmark runs on the embedded backends in `dir`, whatever the configuration names.
fn embedded(config: &mut Config, dir: &Path) {
    config.bus.kind = BusKind::Memory;
    config.store.kind = StoreKind::Sqlite;
    config.store.sqlite.path = dir.join("bench.db");
    config.tracking.kind = TrackingKind::Local;
    config.tracking.local.root = dir.join("tracking");
    config.archive.enabled = false;
}

/// `HISTORY_FRAMES` ticks of `HISTORY_DEVICES` simulated devices ending at the last whole
/// cadence before now, in time order; and the end of the range (exclusive).
fn simulate_history(config: &Config, cadence_ns: i64) -> anyhow::Result<(Vec<Reading>, i64)> {
    let mut sim = config.simulator.clone();
    sim.devices = HISTORY_DEVICES;
    let mut models: Vec<DeviceModel> = device_ids(&sim)?
        .into_iter()
        .zip(0u32..)
        .map(|(d, i)| DeviceModel::new(d, i, &sim))
        .collect();
    let to = now_ns().div_euclid(cadence_ns) * cadence_ns;
    let from = to - HISTORY_FRAMES * cadence_ns;
    let mut out = Vec::with_capacity(usize::try_from(HISTORY_FRAMES)? * models.len() * 4);
    for k in 0..HISTORY_FRAMES {
        for m in &mut models {
            out.extend(m.sample(from + k * cadence_ns));
        }
    }
    Ok((out, to))
}

/// `HISTORY_FRAMES` ticks of `devices` (of any profile) ending at `to`, as the simulator samples
/// them.
fn simulate_machines(
    config: &Config,
    devices: &[FleetDevice],
    cadence_ns: i64,
    to: i64,
) -> Vec<Reading> {
    let mut machines: Vec<Machine> =
        devices.iter().map(|d| Machine::new(d, &config.simulator)).collect();
    let from = to - HISTORY_FRAMES * cadence_ns;
    let mut out = Vec::new();
    for k in 0..HISTORY_FRAMES {
        for m in &mut machines {
            m.sample_each(from + k * cadence_ns, |_, r| out.push(r));
        }
    }
    out
}

/// "1000 devices: 500 pump (4 channels), 500 compressor (6 channels)".
fn describe(fleet: &[FleetDevice]) -> String {
    let mut per: Vec<(&str, usize, usize)> = Vec::new();
    for d in fleet {
        match per.iter_mut().find(|(p, _, _)| *p == d.profile.name) {
            Some((_, n, _)) => *n += 1,
            None => per.push((&d.profile.name, 1, d.profile.channels.len())),
        }
    }
    let parts: Vec<String> =
        per.iter().map(|(p, n, c)| format!("{n} {p} ({c} channels)")).collect();
    format!("{} devices: {}", fleet.len(), parts.join(", "))
}

/// The last `count / devices` windows (stride 1) of each device in `history`, framed the way the
/// streaming detector frames live readings.
fn cut_windows(scorer: &Scorer, history: &[Reading], count: usize) -> Vec<ReadyWindow> {
    let settings = scorer.frame_settings(0, 1);
    let per_device = count / HISTORY_DEVICES as usize;
    let span = i64::try_from(per_device + settings.window - 1).unwrap_or(i64::MAX);
    let to = history.iter().map(|r| r.ts_ns).max().unwrap_or(0) + settings.cadence_ns;
    let from = to.saturating_sub(span.saturating_mul(settings.cadence_ns));
    let mut devices: BTreeMap<DeviceId, DeviceFrames> = BTreeMap::new();
    for r in history.iter().filter(|r| r.ts_ns >= from) {
        devices
            .entry(r.device.clone())
            .or_insert_with(|| {
                DeviceFrames::new(settings, scorer.columns().clone(), scorer.post().detrender())
            })
            .push(r);
    }
    let mut out = Vec::with_capacity(count);
    for frames in devices.values_mut() {
        frames.release(&mut out);
    }
    out.truncate(count);
    out
}

/// The model's inputs before scaling `[N, T, C]` (the raw values, or their detrended form where
/// the card says), little-endian f64, for the PyTorch side.
fn write_raw(path: &Path, windows: &[ReadyWindow]) -> anyhow::Result<()> {
    let mut bytes = Vec::with_capacity(windows.iter().map(|w| w.values.len() * 8).sum());
    for w in windows {
        let input = if w.inputs.is_empty() { &w.values } else { &w.inputs };
        for v in input {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// With `all`, first scores every window once (the scores PyTorch is checked against); then
/// `WARMUP_BATCHES` untimed and `steps` timed batches, cycling over the windows.
fn measure_rust(
    scorer: &Scorer,
    windows: &[ReadyWindow],
    batch: usize,
    steps: usize,
    all: bool,
) -> anyhow::Result<(Rates, Option<Scores>)> {
    let weights = vec![1.0; scorer.columns().len()];
    let batches: Vec<&[ReadyWindow]> = windows.chunks(batch).collect();
    let mut scores = Vec::with_capacity(if all { windows.len() } else { 0 });
    if all {
        for b in &batches {
            scores.extend(scorer.score_windows(b, &weights)?);
        }
    }
    for i in 0..WARMUP_BATCHES {
        std::hint::black_box(scorer.score_windows(batches[i % batches.len()], &weights)?);
    }
    let (start, cpu) = (Instant::now(), sentio_model::bench::cpu_seconds());
    let mut scored = 0usize;
    for i in 0..steps {
        let b = batches[i % batches.len()];
        std::hint::black_box(scorer.score_windows(b, &weights)?);
        scored += b.len();
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu.zip(sentio_model::bench::cpu_seconds()).map(|(a, b)| b - a).filter(|s| *s > 0.0);
    let n = scored as f64;
    Ok((Rates { wall: n / wall, cpu: cpu.map(|s| n / s) }, all.then_some(scores)))
}

/// Windows per second of the autoencoder alone on standardized `data`, `chunk` values a call:
/// `WARMUP_BATCHES` untimed and `steps` timed calls, cycling over the chunks.
fn measure_engine(
    engine: &Autoencoder,
    data: &[f32],
    chunk: usize,
    steps: usize,
) -> anyhow::Result<f64> {
    let chunks: Vec<&[f32]> = data.chunks(chunk.max(1)).collect();
    for i in 0..WARMUP_BATCHES {
        std::hint::black_box(engine.window_errors(chunks[i % chunks.len()])?);
    }
    let start = Instant::now();
    let mut windows = 0usize;
    for i in 0..steps {
        windows +=
            std::hint::black_box(engine.window_errors(chunks[i % chunks.len()])?).per_window.len();
    }
    Ok(windows as f64 / start.elapsed().as_secs_f64())
}

/// How to run `scripts/bench_torch_detect.py` on the benchmark's windows.
struct TorchRun {
    python: PathBuf,
    script: PathBuf,
    weights: PathBuf,
    windows: PathBuf,
    count: usize,
    mean: Vec<f64>,
    std: Vec<f64>,
    /// Features, hidden, bottleneck, window.
    spec: (usize, usize, usize, usize),
    batch: usize,
    steps: usize,
}

impl TorchRun {
    /// Runs the PyTorch side once on `threads` threads; with `scores_out`, it also writes every
    /// window's scores there. Returns its rates and torch's version.
    async fn run(
        &self,
        threads: usize,
        scores_out: Option<&Path>,
    ) -> anyhow::Result<(Rates, String)> {
        let list = |v: &[f64]| v.iter().map(|x| format!("{x:e}")).collect::<Vec<_>>().join(",");
        let (features, hidden, bottleneck, window) = self.spec;
        let mut cmd = tokio::process::Command::new(&self.python);
        cmd.arg(&self.script)
            .arg("--weights")
            .arg(&self.weights)
            .arg("--windows")
            .arg(&self.windows)
            .args(["--count", &self.count.to_string()])
            .args(["--mean", &list(&self.mean), "--std", &list(&self.std)])
            .args(["--threads", &threads.to_string(), "--steps", &self.steps.to_string()])
            .args(["--warmup", &WARMUP_BATCHES.to_string(), "--batch", &self.batch.to_string()])
            .args(["--features", &features.to_string(), "--hidden", &hidden.to_string()])
            .args(["--bottleneck", &bottleneck.to_string(), "--window", &window.to_string()]);
        if let Some(path) = scores_out {
            cmd.arg("--scores-out").arg(path);
        }
        let (json, line) = super::bench_train::torch_json(cmd, &self.python).await?;
        let rate = |key: &str| json.get(key).and_then(serde_json::Value::as_f64);
        let Some(wall) = rate("windows_per_s") else {
            bail!("the PyTorch benchmark's output lacks windows_per_s: {line}");
        };
        let version = json.get("torch_version").and_then(|v| v.as_str()).unwrap_or("?").to_owned();
        Ok((Rates { wall, cpu: rate("windows_per_cpu_s") }, version))
    }
}

/// PyTorch's `[N, 5]` scores file: per window the score and the four per-sensor errors.
fn read_torch_scores(path: &Path, count: usize) -> anyhow::Result<Vec<[f64; 5]>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() != count * 40 {
        bail!("{} holds {} bytes, not the scores of {count} windows", path.display(), bytes.len());
    }
    Ok(bytes
        .chunks_exact(40)
        .map(|row| {
            std::array::from_fn(|i| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&row[i * 8..i * 8 + 8]);
                f64::from_le_bytes(b)
            })
        })
        .collect())
}

/// How PyTorch's scores compared with Sentio's.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Agreement {
    /// Windows whose score and per-sensor errors were compared (all agreed).
    compared: usize,
    /// Windows the stuck-sensor check had raised on Sentio's side (no model output to compare).
    stuck: usize,
    /// The largest |a − b| / |b| seen.
    max_relative: f64,
}

impl Agreement {
    fn merge(self, other: Agreement) -> Agreement {
        Agreement {
            compared: self.compared + other.compared,
            stuck: self.stuck + other.stuck,
            max_relative: self.max_relative.max(other.max_relative),
        }
    }
}

/// Checks PyTorch's per-window score and per-sensor errors against Sentio's. Sentio reports each
/// sensor's error relative to its normal level (`normal`, the card's calibration), so it is scaled
/// back first. A window the stuck-sensor check raised (a score of at least twice the threshold, all
/// of the error on one sensor, above the reconstruction error) carries no model output and is
/// only counted.
fn compare(
    sentio: &[(f64, Vec<f64>)],
    torch: &[[f64; 5]],
    normal: &[f64],
    threshold: f64,
) -> anyhow::Result<Agreement> {
    // The PyTorch side reports the pump's four sensors.
    if normal.len() != 4 {
        bail!("the benchmark compares four-sensor models; this one has {}", normal.len());
    }
    if sentio.len() != torch.len() {
        bail!("{} scores from Sentio, {} from PyTorch", sentio.len(), torch.len());
    }
    let close = |a: f64, b: f64| (a - b).abs() <= REL_TOLERANCE * b.abs() + ABS_TOLERANCE;
    let mut agreement = Agreement { compared: 0, stuck: 0, max_relative: 0.0 };
    for (i, ((score, relative), theirs)) in sentio.iter().zip(torch).enumerate() {
        let errors: Vec<f64> =
            (0..4).map(|s| relative[s] * normal[s].max(f64::MIN_POSITIVE)).collect();
        let same = close(*score, theirs[0]) && (0..4).all(|s| close(errors[s], theirs[s + 1]));
        if !same {
            let one_sensor = relative.iter().filter(|e| **e != 0.0).count() == 1;
            if one_sensor && *score >= 2.0 * threshold && *score > theirs[0] {
                agreement.stuck += 1;
                continue;
            }
            bail!(
                "window {i}: Sentio's score {score:.6e} and per-sensor errors {errors:?}, \
                 PyTorch's {:.6e} and {:?}",
                theirs[0],
                &theirs[1..]
            );
        }
        agreement.compared += 1;
        for (a, b) in
            std::iter::once((*score, theirs[0])).chain((0..4).map(|s| (errors[s], theirs[s + 1])))
        {
            if b != 0.0 {
                agreement.max_relative = agreement.max_relative.max((a - b).abs() / b.abs());
            }
        }
    }
    Ok(agreement)
}

/// The throughput table: per thread count, the medians (and ranges) of both sides, wall-clock and
/// per CPU-second, and their ratios.
fn throughput_table(threads: &[usize], measured: &[Vec<(Rates, Rates)>], batch: usize) {
    let cpu_known = measured.iter().flatten().all(|(r, t)| r.cpu.is_some() && t.cpu.is_some());
    say!();
    say!(
        "| threads | Sentio windows/s (`Scorer::score_windows`, batch {batch}) | torch (`no_grad`) | \
         ratio | Sentio windows/CPU-s | torch | ratio |"
    );
    say!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (&n, rounds) in threads.iter().zip(measured) {
        let pick = |f: fn(&(Rates, Rates)) -> Option<f64>| -> Vec<f64> {
            rounds.iter().filter_map(f).collect()
        };
        let (rust, torch) = (pick(|m| Some(m.0.wall)), pick(|m| Some(m.1.wall)));
        let (rust_cpu, torch_cpu) = if cpu_known {
            (pick(|m| m.0.cpu), pick(|m| m.1.cpu))
        } else {
            (Vec::new(), Vec::new())
        };
        say!(
            "| {n} | {} | {} | {} | {} | {} | {} |",
            cell(&rust),
            cell(&torch),
            ratio(&rust, &torch),
            cell(&rust_cpu),
            cell(&torch_cpu),
            ratio(&rust_cpu, &torch_cpu),
        );
    }
}

/// What the streaming run measured, after its warm-up.
struct Latency {
    rate: f64,
    devices: u32,
    seconds: f64,
    warmup: Duration,
    threads: usize,
    scored: Vec<(Duration, u64)>,
    alerted: Vec<(Duration, u64)>,
    published: u64,
    readings: u64,
    windows: u64,
    late: u64,
    alerts: u64,
    cpu: Option<f64>,
    /// How far the simulator's clock was behind the wall clock at the end.
    sim_behind: Duration,
}

/// Runs the simulator in real time on the memory bus with the streaming detector consuming it;
/// measures `duration` after a warm-up of one window span plus 2 s.
async fn stream(
    config: &Config,
    store: Arc<dyn sentio_store::ReadingStore>,
    scorers: Vec<Arc<Scorer>>,
    fleet: Vec<FleetDevice>,
    duration: Duration,
    threads: usize,
) -> anyhow::Result<Latency> {
    let cadence_ns = i64::try_from(config.simulator.cadence.as_nanos())?;
    let window = scorers.iter().map(|s| s.card().window).max().unwrap_or(0);
    let span = Duration::from_nanos(u64::try_from(cadence_ns)?) * u32::try_from(window)?;
    let warmup = span + Duration::from_secs(2);
    let bus = wiring::open_bus(config, None).await?;
    let settings = wiring::stream_settings(config, None)?;
    let detector = Detector::new(bus.clone(), store, settings);
    let stats = detector.stats();
    let stop = CancellationToken::new();
    let detect_task = tokio::spawn(detector.run(scorers, stop.clone()));

    let output = Output::Bus { bus, topic: config.topics.readings.clone() };
    let devices = u32::try_from(fleet.len())?;
    let mut sim = Simulator::with_fleet(&config.simulator, fleet, output, None)?;
    let sim_stats = sim.stats();
    // Start on a whole tick a little ahead and wait for the wall clock to reach it, so each
    // reading's event time is when the simulator publishes it.
    let from = (now_ns().div_euclid(cadence_ns) + 2) * cadence_ns;
    tokio::time::sleep(Duration::from_nanos(u64::try_from(from - now_ns()).unwrap_or(0))).await;
    let sim_stop = stop.clone();
    let sim_task = tokio::spawn(async move {
        let result = sim.real_time(from, &sim_stop).await;
        (sim, result)
    });

    tokio::time::sleep(warmup).await;
    let before = Snapshot::take(&stats, sim_stats.published.load(Ordering::Relaxed));
    tokio::time::sleep(duration).await;
    let after = Snapshot::take(&stats, sim_stats.published.load(Ordering::Relaxed));
    let sim_time = sim_stats.sim_time_ns.load(Ordering::Relaxed);
    let sim_behind =
        Duration::from_nanos(u64::try_from(now_ns() - sim_time - cadence_ns).unwrap_or(0));
    stop.cancel();
    let (_, sim_result) = sim_task.await.context("the simulator task panicked")?;
    sim_result.context("the simulator")?;
    detect_task.await.context("the detect task panicked")?.context("the detector")?;

    let seconds = after.at.duration_since(before.at).as_secs_f64();
    Ok(Latency {
        rate: (after.published - before.published) as f64 / seconds,
        devices,
        seconds,
        warmup,
        threads,
        scored: bucket_diff(&after.scored, &before.scored),
        alerted: bucket_diff(&after.alerted, &before.alerted),
        published: after.published - before.published,
        readings: after.readings - before.readings,
        windows: after.windows - before.windows,
        late: after.late - before.late,
        alerts: after.alerts - before.alerts,
        cpu: after.cpu.zip(before.cpu).map(|(a, b)| a - b),
        sim_behind,
    })
}

/// The detector's and simulator's counters at one instant.
struct Snapshot {
    at: Instant,
    cpu: Option<f64>,
    published: u64,
    readings: u64,
    windows: u64,
    late: u64,
    alerts: u64,
    scored: Vec<(Duration, u64)>,
    alerted: Vec<(Duration, u64)>,
}

impl Snapshot {
    fn take(stats: &DetectStats, published: u64) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            cpu: sentio_model::bench::cpu_seconds(),
            published,
            readings: stats.readings.load(Ordering::Relaxed),
            windows: stats.windows_scored.load(Ordering::Relaxed),
            late: stats.late.load(Ordering::Relaxed),
            alerts: stats.alerts_published.load(Ordering::Relaxed),
            scored: stats.latency.buckets(),
            alerted: stats.alert_latency.buckets(),
        }
    }
}

impl Latency {
    fn print(&self, window: usize, cadence: Duration) {
        let span = cadence * u32::try_from(window).unwrap_or(u32::MAX);
        let ms = |d: Option<Duration>| {
            d.map_or("–".to_owned(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3))
        };
        let count = |b: &[(Duration, u64)]| b.iter().map(|(_, n)| n).sum::<u64>();
        say!(
            "\nEnd to end on the memory bus: {} readings/s published ({} devices, each reporting \
             every {}), measured for {:.1} s after a {:.1} s warm-up; detector on {} thread(s)",
            thousands(self.rate),
            self.devices,
            humantime::format_duration(cadence),
            self.seconds,
            self.warmup.as_secs_f64(),
            self.threads
        );
        say!();
        say!("| latency from the newest reading's event time | p50 | p99 | max | windows |");
        say!("| --- | ---: | ---: | ---: | ---: |");
        for (name, b) in [
            ("window scored", &self.scored),
            ("alert published and saved (windows that raised one)", &self.alerted),
        ] {
            say!(
                "| {name} | {} | {} | {} | {} |",
                ms(upper_quantile(b, 0.5)),
                ms(upper_quantile(b, 0.99)),
                ms(b.last().map(|(d, _)| *d)),
                thousands(count(b) as f64)
            );
        }
        say!(
            "\n(each latency is its histogram bucket's upper bound, at most 9 % above the true \
             value.) A window spans {window} x {} = {:.1} s: its oldest reading waits that span \
             plus the latency above.",
            humantime::format_duration(cadence),
            span.as_secs_f64()
        );
        let per_s = |n: u64| thousands(n as f64 / self.seconds);
        say!(
            "Achieved: {} readings/s published, {} decoded by the detector, {} windows scored/s, \
             {} late readings, {} alert messages{}; the simulator ended {:.0} ms behind the wall \
             clock.",
            per_s(self.published),
            per_s(self.readings),
            per_s(self.windows),
            self.late,
            self.alerts,
            self.cpu.map_or(String::new(), |c| format!(
                ", CPU {:.2} of {} cores",
                c / self.seconds,
                std::thread::available_parallelism().map_or(1, usize::from)
            )),
            self.sim_behind.as_secs_f64() * 1e3
        );
        match upper_quantile(&self.scored, 0.99) {
            Some(p99) => say!(
                "Goal p99 < {} ms beyond the window span: {} (p99 {:.1} ms).",
                LATENCY_GOAL.as_millis(),
                if p99 < LATENCY_GOAL { "met" } else { "missed" },
                p99.as_secs_f64() * 1e3
            ),
            None => say!("No window was scored in the measured span."),
        }
    }
}

/// Per bucket (upper bound), the count `after` holds beyond `before`: the histogram of what
/// happened between two snapshots of [`Histogram::buckets`].
///
/// [`Histogram::buckets`]: sentio_services::detect::latency::Histogram::buckets
fn bucket_diff(after: &[(Duration, u64)], before: &[(Duration, u64)]) -> Vec<(Duration, u64)> {
    let earlier: HashMap<Duration, u64> = before.iter().copied().collect();
    after
        .iter()
        .map(|(d, n)| (*d, n.saturating_sub(earlier.get(d).copied().unwrap_or(0))))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The `q` quantile (0..=1) of `buckets` (ascending upper bounds with counts), as its bucket's
/// upper bound; `None` when empty.
fn upper_quantile(buckets: &[(Duration, u64)], q: f64) -> Option<Duration> {
    let total: u64 = buckets.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    buckets.iter().find_map(|(d, n)| {
        seen += n;
        (seen >= rank).then_some(*d)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn quantiles_of_a_bucket_difference() {
        let before = vec![(MS(1), 5), (MS(2), 1)];
        let after = vec![(MS(1), 5), (MS(2), 11), (MS(4), 89), (MS(8), 1)];
        let diff = bucket_diff(&after, &before);
        assert_eq!(diff, vec![(MS(2), 10), (MS(4), 89), (MS(8), 1)]);
        assert_eq!(upper_quantile(&diff, 0.0), Some(MS(2)));
        assert_eq!(upper_quantile(&diff, 0.1), Some(MS(2)));
        assert_eq!(upper_quantile(&diff, 0.5), Some(MS(4)));
        assert_eq!(upper_quantile(&diff, 0.99), Some(MS(4)));
        assert_eq!(upper_quantile(&diff, 1.0), Some(MS(8)));
        assert_eq!(upper_quantile(&[], 0.5), None);
        assert_eq!(bucket_diff(&before, &before), vec![]);
    }

    #[test]
    fn torch_scores_must_match_except_where_the_stuck_check_raised_them() {
        let normal = [0.5, 1.0, 2.0, 4.0];
        // Sentio reports each sensor's error relative to its normal level.
        let sentio = vec![(1.0, vec![2.0, 1.0, 0.5, 0.25]), (6.0, vec![0.0, 0.0, 3.0, 0.0])];
        let torch = vec![[1.00001, 1.0, 1.0, 1.0, 1.0], [0.9, 1.0, 1.0, 0.6, 1.0]];
        let a = compare(&sentio, &torch, &normal, 2.0).unwrap();
        assert_eq!((a.compared, a.stuck), (1, 1));
        assert!(a.max_relative < 2e-5, "{a:?}");

        let off = vec![[1.01, 1.0, 1.0, 1.0, 1.0], torch[1]];
        let err = compare(&sentio, &off, &normal, 2.0).unwrap_err();
        assert!(format!("{err:#}").contains("window 0"), "{err:#}");
        // A one-sensor error below twice the threshold is a model output: it must match.
        assert!(compare(&sentio, &torch, &normal, 4.0).is_err());
        assert!(compare(&sentio[..1], &torch, &normal, 2.0).is_err());
    }

    #[test]
    fn raw_windows_are_little_endian_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.f64");
        let w = ReadyWindow {
            start_ns: 0,
            end_ns: 2,
            newest_ns: 1,
            values: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
            inputs: vec![],
        };
        write_raw(&path, &[w.clone(), w]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 2 * 2 * 4 * 8);
        assert_eq!(f64::from_le_bytes(bytes[8..16].try_into().unwrap()), 2.0);
        assert_eq!(f64::from_le_bytes(bytes[64..72].try_into().unwrap()), 1.0);
        // The same layout the scores file is read back in, five values a row.
        std::fs::write(&path, &bytes[..80]).unwrap();
        let rows = read_torch_scores(&path, 2).unwrap();
        assert_eq!(rows[0], [1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(rows[1], [6.0, 7.0, 8.0, 1.0, 2.0]);
        assert!(read_torch_scores(&path, 3).is_err());
    }
}
