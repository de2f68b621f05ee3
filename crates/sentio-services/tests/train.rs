#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Training end to end on the embedded backends: simulated history in SQLite, a trained,
//! calibrated model registered in the local tracker, reproducible with a fixed seed, promoted
//! only when it beats the champion.

mod common;

use std::sync::Arc;

use common::{HOURS, START, config, history, simulate_until, train_once};
use sentio_config::{Config, Promote};
use sentio_core::Profiles;
use sentio_core::profile::PUMP;
use sentio_core::time::NANOS_PER_SEC;
use sentio_services::train::{CHAMPION, Progress, TrainOutcome, TrainRequest, train};
use sentio_store::ReadingStore;
use sentio_store::sqlite::SqliteStore;
use sentio_tracking::{LocalTracking, RunId, Tracking};
use tokio_util::sync::CancellationToken;

fn request(config: &Config) -> TrainRequest {
    TrainRequest {
        config: config.train.clone(),
        profiles: config.profiles().unwrap(),
        profile: sentio_core::profile::PUMP.into(),
        experiment: "test".into(),
        from_ns: Some(START),
        to_ns: Some(START + HOURS * 3_600 * NANOS_PER_SEC),
    }
}

async fn weights(tracking: &dyn Tracking, name: &str, version: u64) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    tracking.download_model_version(name, version, dir.path()).await.unwrap();
    std::fs::read(dir.path().join("weights.safetensors")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trains_registers_and_promotes_only_a_better_model() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    store.migrate().await.unwrap();
    let config = config();
    history(&store, &config).await;
    let tracking: Arc<dyn Tracking> = Arc::new(LocalTracking::open(&dir.path().join("t")).unwrap());

    let first = train_once(&store, &tracking, request(&config)).await.unwrap();
    let report = &first.card.data;
    assert_eq!(report.devices.len(), 3);
    assert!(report.labelled_windows > 0, "labelled windows exist and were left out");
    assert_eq!(report.train_windows, 600, "thinned to train.max_train_windows");
    assert!(first.history.len() <= 3 && !first.history.is_empty());
    assert!(first.card.calibration.threshold > first.card.calibration.score_mean);
    assert_eq!(first.version, 1);
    assert!(first.promotion.promote, "{:?}", first.promotion);

    // The run carries params and one metric value per epoch.
    let run = tracking.get_run(&first.run_id).await.unwrap();
    assert_eq!(run.params["window"], "16");
    assert_eq!(run.params["train_windows"], "600");
    let history = tracking.metric_history(&first.run_id, "validation_loss").await.unwrap();
    assert_eq!(history.len(), first.history.len());
    assert_eq!(run.status.as_str(), "FINISHED");
    let champion = tracking.get_alias(&config.train.model_name, CHAMPION).await.unwrap().unwrap();
    assert_eq!(champion.version, 1);

    // Same seed, data and threads: the same weights, which do not beat the champion.
    let second = train_once(&store, &tracking, request(&config)).await.unwrap();
    assert_eq!(second.version, 2);
    assert_eq!(
        weights(&*tracking, &config.train.model_name, 1).await,
        weights(&*tracking, &config.train.model_name, 2).await,
        "a fixed seed reproduces the model bit for bit"
    );
    assert!(!second.promotion.promote, "{:?}", second.promotion);
    assert_eq!(second.promotion.champion_version, Some(1));
    let loss = second.promotion.champion_loss.unwrap();
    assert!(
        (loss - second.promotion.new_loss).abs() < 1e-4 * loss.max(1e-9),
        "{loss} vs {}",
        second.promotion.new_loss
    );

    // A longer training beats the 3-epoch champion and takes the alias.
    let mut longer = config.clone();
    longer.train.epochs = 12;
    longer.train.patience = 12;
    let third = train_once(&store, &tracking, request(&longer)).await.unwrap();
    assert!(third.promotion.promote, "{:?}", third.promotion);
    let champion = tracking.get_alias(&config.train.model_name, CHAMPION).await.unwrap().unwrap();
    assert_eq!(champion.version, 3);

    // --no-promote keeps the alias.
    let mut never = config.clone();
    never.train.promote = Promote::Never;
    let fourth = train_once(&store, &tracking, request(&never)).await.unwrap();
    assert!(!fourth.promotion.promote);
    let _: RunId = fourth.run_id;
    assert_eq!(
        tracking.get_alias(&config.train.model_name, CHAMPION).await.unwrap().unwrap().version,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_store_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    store.migrate().await.unwrap();
    let tracking: Arc<dyn Tracking> = Arc::new(LocalTracking::open(&dir.path().join("t")).unwrap());
    let mut request = request(&config());
    request.from_ns = None;
    request.to_ns = None;
    let err = train_once(&store, &tracking, request).await.err().unwrap();
    assert!(err.to_string().contains("ingest readings first"), "{err:#}");
}

/// Cancels once `.1` epochs have finished (as SIGTERM or `--duration` running out would).
struct CancelAfter(CancellationToken, usize);
impl sentio_services::train::fit::Observer for CancelAfter {
    fn epoch_finished(&mut self, e: &sentio_services::train::fit::EpochReport) {
        if e.epoch >= self.1 {
            self.0.cancel();
        }
    }
}
impl Progress for CancelAfter {}

/// A configuration whose training would run for ever: only a cancellation ends it.
fn long_config() -> Config {
    let mut config = config();
    config.train.epochs = 1000;
    config.train.patience = 1000;
    config
}

/// A store holding the history, and local tracking, in a temporary directory.
async fn long_training() -> (tempfile::TempDir, SqliteStore, Arc<dyn Tracking>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    store.migrate().await.unwrap();
    history(&store, &long_config()).await;
    let tracking: Arc<dyn Tracking> = Arc::new(LocalTracking::open(&dir.path().join("t")).unwrap());
    (dir, store, tracking)
}

/// Trains with `config`, cancelling once `epochs` epochs have run.
async fn train_cancelled_after(
    store: &SqliteStore,
    tracking: &Arc<dyn Tracking>,
    config: &Config,
    epochs: usize,
) -> TrainOutcome {
    let stop = CancellationToken::new();
    train(
        store,
        tracking.clone(),
        request(config),
        stop.clone(),
        Box::new(CancelAfter(stop, epochs)),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_keeps_the_best_model_so_far() {
    let (_dir, store, tracking) = long_training().await;
    let config = long_config();

    let outcome = train_cancelled_after(&store, &tracking, &config, 2).await;
    assert_eq!(outcome.card.training.stopped, "cancelled");
    assert_eq!(outcome.history.len(), 2);
    let run = tracking.get_run(&outcome.run_id).await.unwrap();
    assert_eq!(run.status.as_str(), "KILLED");
    assert_eq!(outcome.version, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_training_is_registered_but_never_promoted() {
    let (_dir, store, tracking) = long_training().await;
    let mut config = long_config();

    // The first training of all (no champion to compare with), then one with promotion forced.
    for (promote, version) in [(Promote::IfBetter, 1), (Promote::Always, 2)] {
        config.train.promote = promote;
        let outcome = train_cancelled_after(&store, &tracking, &config, 1).await;
        assert_eq!(outcome.card.training.stopped, "cancelled");
        assert_eq!(outcome.history.len(), 1);
        assert_eq!(outcome.version, version, "a cancelled training is still registered");
        let p = &outcome.promotion;
        assert!(!p.promote, "{p:?}");
        assert!(p.reason.contains("cancelled"), "{p:?}");
        assert_eq!(p.champion_version, None, "{p:?}");
        if promote == Promote::Always {
            assert!(p.reason.contains("always"), "the reason says --promote was overruled: {p:?}");
        }
        assert_eq!(tracking.get_alias(&config.train.model_name, CHAMPION).await.unwrap(), None);
        let run = tracking.get_run(&outcome.run_id).await.unwrap();
        assert_eq!(run.status.as_str(), "KILLED");
    }
}

/// `minutes` of simulated history of 2 devices (4 sensors at 1 s) from [`START`].
async fn short_history(store: &SqliteStore, minutes: i64) -> Config {
    let mut config = config();
    config.simulator.devices = 2;
    config.train.epochs = 2;
    let readings = simulate_until(&config, START + minutes * 60 * NANOS_PER_SEC).await;
    store.insert_readings(&readings).await.unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_split_is_over_the_data_that_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    store.migrate().await.unwrap();
    // 40 minutes, as after a short `sentio demo`: far less than train.lookback (7 days).
    let config = short_history(&store, 40).await;
    let end = START + 40 * 60 * NANOS_PER_SEC;
    let tracking: Arc<dyn Tracking> = Arc::new(LocalTracking::open(&dir.path().join("t")).unwrap());

    let default_range = TrainRequest { from_ns: None, to_ns: None, ..request(&config) };
    // An explicit range much wider than the data means the same data, split the same way.
    let wide = TrainRequest {
        from_ns: Some(START - 24 * 3_600 * NANOS_PER_SEC),
        to_ns: Some(end + 3_600 * NANOS_PER_SEC),
        ..request(&config)
    };
    for request in [default_range, wide] {
        let outcome = train_once(&store, &tracking, request).await.unwrap();
        let r = &outcome.card.data;
        assert_eq!(r.devices.len(), 2);
        assert!(r.from_ns >= START && r.to_ns <= end + NANOS_PER_SEC, "{r:?}");
        // 70 / 15 / 15 of the 40 minutes.
        let train_s = (r.validation_from_ns - r.from_ns) / NANOS_PER_SEC;
        assert!((27 * 60..=29 * 60).contains(&train_s), "{train_s} s of training data: {r:?}");
        let calibration_s = (r.to_ns - r.calibration_from_ns) / NANOS_PER_SEC;
        assert!((5 * 60..=7 * 60).contains(&calibration_s), "{r:?}");
        assert!(r.train_windows > 0 && r.validation_windows > 0 && r.calibration_windows > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detrended_channels_count_their_weight_in_the_calibrated_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    store.migrate().await.unwrap();
    let mut config = short_history(&store, 40).await;
    let tracking: Arc<dyn Tracking> = Arc::new(LocalTracking::open(&dir.path().join("t")).unwrap());
    config.train.detrend = sentio_config::DetrendChannels::All;
    config.train.detrend_window = 60;
    config.train.smooth = 3;
    let full = train_once(&store, &tracking, request(&config)).await.unwrap();
    config.train.detrend_weight = 0.5;
    let half = train_once(&store, &tracking, request(&config)).await.unwrap();
    // Weight 1 is no weight (cards as before); 0.5 on every detrended channel.
    assert!(full.card.post.weights.is_empty());
    assert_eq!(half.card.post.weights, [0.5; 4]);
    let run = tracking.get_run(&half.run_id).await.unwrap();
    assert_eq!(run.params["detrend_weight"], "0.5");
    // The weights change the score, not the model: the same fit, and a threshold at half the
    // level (every channel counts half; the model's f32 mean against the f64 weighted one).
    let name = &config.train.model_name;
    assert_eq!(
        weights(tracking.as_ref(), name, full.version).await,
        weights(tracking.as_ref(), name, half.version).await
    );
    let (a, b) = (&full.card.calibration, &half.card.calibration);
    assert!(
        (b.threshold / a.threshold - 0.5).abs() < 1e-4,
        "{} against {}",
        b.threshold,
        a.threshold
    );
    assert!((b.score_mean / a.score_mean - 0.5).abs() < 1e-4);
    assert_eq!(a.sensor_mean, b.sensor_mean, "each column's own error is unweighted");

    // Nothing detrended, nothing weighed.
    config.train.detrend = sentio_config::DetrendChannels::None;
    let plain = train_once(&store, &tracking, request(&config)).await.unwrap();
    assert!(plain.card.post.weights.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_s_score_weight_reaches_the_card_times_the_detrend_weight() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    store.migrate().await.unwrap();
    let mut config = short_history(&store, 40).await;
    let tracking: Arc<dyn Tracking> = Arc::new(LocalTracking::open(&dir.path().join("t")).unwrap());
    // The pump with pressure (column 2) modelled but not scored, and humidity counting double.
    let with_weights = |config: &Config, weights: [f64; 4]| {
        let mut pump = config.profiles().unwrap().get(PUMP).unwrap().clone();
        for (c, w) in pump.channels.iter_mut().zip(weights) {
            c.score_weight = w;
        }
        TrainRequest { profiles: Profiles::new(vec![pump]).unwrap(), ..request(config) }
    };
    let plain =
        train_once(&store, &tracking, with_weights(&config, [1.0, 1.0, 0.0, 2.0])).await.unwrap();
    assert_eq!(plain.card.post.weights, [1.0, 1.0, 0.0, 2.0]);
    // The calibration's score is the weighted one: pressure's error is left out of it.
    let c = &plain.card.calibration;
    let expected = (c.sensor_mean[0] + c.sensor_mean[1] + 2.0 * c.sensor_mean[3]) / 4.0;
    assert!((c.score_mean / expected - 1.0).abs() < 1e-3, "{} against {expected}", c.score_mean);

    config.train.detrend = sentio_config::DetrendChannels::All;
    config.train.detrend_window = 60;
    config.train.detrend_weight = 0.5;
    let detrended =
        train_once(&store, &tracking, with_weights(&config, [1.0, 1.0, 0.0, 2.0])).await.unwrap();
    assert_eq!(detrended.card.post.weights, [0.5, 0.5, 0.0, 1.0]);

    let err = train_once(&store, &tracking, with_weights(&config, [0.0; 4])).await.unwrap_err();
    assert!(err.to_string().contains("score_weight"), "{err:#}");
}

/// This machine's host name, as the kernel has it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned()
}

/// The PID of a process that has exited (and been reaped).
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_training_ends_the_runs_that_killed_trainings_left_running() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    store.migrate().await.unwrap();
    let config = short_history(&store, 40).await;
    let tracking: Arc<dyn Tracking> = Arc::new(LocalTracking::open(&dir.path().join("t")).unwrap());
    let experiment = tracking.experiment("test").await.unwrap();
    let (host, dead) = (host_name(), dead_pid());
    let tags = |pid: u32, host: &str| {
        vec![
            ("sentio.pid".to_owned(), pid.to_string()),
            ("sentio.host".to_owned(), host.to_owned()),
        ]
    };
    // kill -9 of a training on this host: its process is gone.
    let gone = tracking.create_run(&experiment, "gone", &tags(dead, &host)).await.unwrap();
    // A training that still runs (this process), one on another host, one not by sentio.
    let alive =
        tracking.create_run(&experiment, "alive", &tags(std::process::id(), &host)).await.unwrap();
    let elsewhere =
        tracking.create_run(&experiment, "elsewhere", &tags(dead, "another-host")).await.unwrap();
    let notebook = tracking.create_run(&experiment, "notebook", &[]).await.unwrap();

    let forty_minutes = TrainRequest {
        from_ns: Some(START),
        to_ns: Some(START + 40 * 60 * NANOS_PER_SEC),
        ..request(&config)
    };
    let outcome = train_once(&store, &tracking, forty_minutes).await.unwrap();
    let status = async |run: &RunId| tracking.get_run(run).await.unwrap().status.as_str();
    assert_eq!(status(&gone).await, "KILLED");
    assert!(tracking.get_run(&gone).await.unwrap().end_time_ms.is_some());
    for run in [&alive, &elsewhere, &notebook] {
        assert_eq!(status(run).await, "RUNNING", "{run}");
    }
    let run = tracking.get_run(&outcome.run_id).await.unwrap();
    assert_eq!(run.status.as_str(), "FINISHED");
    assert_eq!(run.tags["sentio.pid"], std::process::id().to_string());
    assert_eq!(run.tags["sentio.host"], host);
}
