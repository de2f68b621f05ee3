#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The local backend: the tracking contract in a temporary directory, and its MLflow-like layout.

use std::path::Path;
use std::sync::Arc;

use sentio_tracking::contract::check_tracking;
use sentio_tracking::{LocalSettings, LocalTracking, Metric, RunStatus, Tracking};

#[tokio::test]
async fn local_passes_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let tracking = LocalSettings { root: dir.path().join("tracking") }.open().unwrap();
    check_tracking(tracking.as_ref()).await;
    // Again on the same directory: the contract makes new names each time.
    check_tracking(tracking.as_ref()).await;
}

#[tokio::test]
async fn the_layout_is_mlflows_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let tracking = LocalTracking::open(dir.path()).unwrap();
    let root = tracking.root().to_owned();
    let experiment = tracking.experiment("layout").await.unwrap();
    let run = tracking.create_run(&experiment, "r", &[("k".into(), "v".into())]).await.unwrap();
    tracking.log_params(&run, &[("lr".into(), "0.5".into())]).await.unwrap();
    tracking
        .log_metrics(
            &run,
            &[Metric::new("loss", 0.25, 3, 1000), Metric::new("loss", f64::NAN, 4, 1001)],
        )
        .await
        .unwrap();
    tracking.end_run(&run, RunStatus::Killed).await.unwrap();

    let run_dir = root.join("mlruns").join(experiment.as_str()).join(run.as_str());
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    assert_eq!(read(&run_dir.join("params/lr")), "0.5");
    assert_eq!(read(&run_dir.join("tags/k")), "v");
    assert_eq!(read(&run_dir.join("metrics/loss")), "1000 0.25 3\n1001 nan 4\n");
    let meta = read(&run_dir.join("meta.yaml"));
    assert!(meta.contains("status: 5"), "{meta}");
    assert!(meta.contains(&format!("run_id: {run}")), "{meta}");
    assert!(run_dir.join("artifacts").is_dir());
    assert!(root.join("mlruns").join(experiment.as_str()).join("meta.yaml").is_file());

    tracking.create_registered_model("detector").await.unwrap();
    let model = tracking.create_logged_model(&experiment, "model", Some(&run)).await.unwrap();
    let version = tracking
        .create_model_version("detector", &model.model_uri(), Some(&run), Some(&model.model_id))
        .await
        .unwrap();
    tracking.set_alias("detector", "champion", version.version).await.unwrap();
    assert!(root.join("models/detector/version-1/meta.yaml").is_file());
    assert_eq!(read(&root.join("models/detector/aliases/champion")), "1");
    assert!(
        root.join("mlruns")
            .join(experiment.as_str())
            .join("models")
            .join(model.model_id.as_str())
            .join("meta.yaml")
            .is_file()
    );
}

#[tokio::test]
async fn a_reopened_directory_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (experiment, run) = {
        let tracking: Arc<dyn Tracking> = Arc::new(LocalTracking::open(dir.path()).unwrap());
        let experiment = tracking.experiment("kept").await.unwrap();
        let run = tracking.create_run(&experiment, "r", &[]).await.unwrap();
        tracking.log_metrics(&run, &[Metric::new("m", 1.0, 0, 1)]).await.unwrap();
        (experiment, run)
    };
    let tracking = LocalTracking::open(dir.path()).unwrap();
    assert_eq!(tracking.experiment("kept").await.unwrap(), experiment);
    assert_eq!(tracking.get_run(&run).await.unwrap().metrics["m"].value, 1.0);
}
