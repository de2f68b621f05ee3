#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Training end to end on the embedded backends: simulated history in SQLite, a trained,
//! calibrated model registered in the local tracker, reproducible with a fixed seed, promoted
//! only when it beats the champion.

mod common;

use std::sync::Arc;

use common::{HOURS, START, config, history, train_once};
use sentio_config::{Config, Promote};
use sentio_core::time::NANOS_PER_SEC;
use sentio_services::train::{CHAMPION, Progress, TrainRequest, train};
use sentio_store::ReadingStore;
use sentio_store::sqlite::SqliteStore;
use sentio_tracking::{LocalTracking, RunId, Tracking};
use tokio_util::sync::CancellationToken;

fn request(config: &Config) -> TrainRequest {
    TrainRequest {
        config: config.train.clone(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_keeps_the_best_model_so_far() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    store.migrate().await.unwrap();
    let mut config = config();
    config.train.epochs = 1000;
    config.train.patience = 1000;
    history(&store, &config).await;
    let tracking: Arc<dyn Tracking> = Arc::new(LocalTracking::open(&dir.path().join("t")).unwrap());

    /// Cancels once two epochs have finished.
    struct CancelAfter(CancellationToken, usize);
    impl sentio_services::train::fit::Observer for CancelAfter {
        fn epoch_finished(&mut self, e: &sentio_services::train::fit::EpochReport) {
            if e.epoch >= self.1 {
                self.0.cancel();
            }
        }
    }
    impl Progress for CancelAfter {}
    let stop = CancellationToken::new();
    let outcome = train(
        &store,
        tracking.clone(),
        request(&config),
        stop.clone(),
        Box::new(CancelAfter(stop, 2)),
    )
    .await
    .unwrap();
    assert_eq!(outcome.card.training.stopped, "cancelled");
    assert_eq!(outcome.history.len(), 2);
    let run = tracking.get_run(&outcome.run_id).await.unwrap();
    assert_eq!(run.status.as_str(), "KILLED");
    assert_eq!(outcome.version, 1);
}
