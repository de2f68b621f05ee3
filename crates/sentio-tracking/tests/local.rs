#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The local backend: the tracking contract in a temporary directory, and its MLflow-like layout.

use std::path::Path;
use std::sync::Arc;

use sentio_tracking::contract::check_tracking;
use sentio_tracking::{
    ArtifactRoot, LocalSettings, LocalTracking, LoggedModelStatus, Metric, RunStatus, Tracking,
};

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

/// Copies the files under `from` into `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_copied_directory_reads_its_own_models_and_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let files = dir.path().join("files");
    std::fs::create_dir_all(files.join("nested")).unwrap();
    std::fs::write(files.join("MLmodel"), "flavors: {}\n").unwrap();
    std::fs::write(files.join("nested/weights.bin"), [1u8, 2, 3]).unwrap();
    let (run, model, old_uri) = {
        let tracking = LocalTracking::open(&a).unwrap();
        let experiment = tracking.experiment("moved").await.unwrap();
        let run = tracking.create_run(&experiment, "r", &[]).await.unwrap();
        tracking.log_artifacts(&run, &files, "model").await.unwrap();
        tracking.end_run(&run, RunStatus::Finished).await.unwrap();
        let model = tracking.create_logged_model(&experiment, "model", Some(&run)).await.unwrap();
        tracking.log_model_artifacts(&model.model_id, &files).await.unwrap();
        tracking.finalize_logged_model(&model.model_id, LoggedModelStatus::Ready).await.unwrap();
        tracking.create_registered_model("detector").await.unwrap();
        let v = tracking
            .create_model_version("detector", &model.model_uri(), Some(&run), Some(&model.model_id))
            .await
            .unwrap();
        tracking.set_alias("detector", "champion", v.version).await.unwrap();
        let old_uri = tracking.get_run(&run).await.unwrap().artifact_uri;
        (run, model.model_id, old_uri)
    };
    copy_dir(&a, &b);
    std::fs::remove_dir_all(&a).unwrap();

    let tracking = LocalTracking::open(&b).unwrap();
    let root = tracking.root().to_owned();
    let champion = tracking.get_alias("detector", "champion").await.unwrap().unwrap();
    let out = dir.path().join("champion");
    tracking.download_model_version("detector", champion.version, &out).await.unwrap();
    assert_eq!(std::fs::read(out.join("nested/weights.bin")).unwrap(), [1, 2, 3]);

    // Run and logged-model artifacts resolve inside the copy too.
    let info = tracking.get_run(&run).await.unwrap();
    assert!(Path::new(&info.artifact_uri).starts_with(&root), "{}", info.artifact_uri);
    let through_uri = dir.path().join("through-uri");
    tracking
        .download_artifacts(&ArtifactRoot::Uri(info.artifact_uri), "model", &through_uri)
        .await
        .unwrap();
    assert!(through_uri.join("MLmodel").is_file());
    let logged = tracking.get_logged_model(&model).await.unwrap();
    assert!(Path::new(&logged.artifact_uri).starts_with(&root), "{}", logged.artifact_uri);
    let source = dir.path().join("source");
    tracking.download_artifacts(&ArtifactRoot::Uri(champion.source), "", &source).await.unwrap();
    assert!(source.join("MLmodel").is_file());
    // A path recorded in the old directory (kept by a user, or in an old meta.yaml) is read here.
    let old = dir.path().join("old-uri");
    tracking.download_artifacts(&ArtifactRoot::Uri(old_uri), "model", &old).await.unwrap();
    assert!(old.join("nested/weights.bin").is_file());
}
