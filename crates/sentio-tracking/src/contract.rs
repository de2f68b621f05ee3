//! The tracking contract, written once and run against every backend: a temporary directory in
//! this crate's tests, a real MLflow server in the integration tests.
//!
//! Every experiment and model name it makes is new, so it can run again and again against a
//! server that keeps everything.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use crate::{
    ArtifactRoot, ExperimentId, LoggedModelStatus, Metric, RunId, RunStatus, Tracking, now_ms,
};

/// Runs every check against `tracking`.
pub async fn check_tracking(tracking: &dyn Tracking) {
    let tag = format!("{:016x}", rand::random::<u64>());
    let experiment = experiments_are_get_or_create(tracking, &tag).await;
    let run = runs_round_trip(tracking, &experiment).await;
    runs_are_listed(tracking, &tag).await;
    many_values_in_one_call(tracking, &experiment).await;
    artifacts_round_trip(tracking, &run).await;
    registry_versions_and_aliases(tracking, &experiment, &run, &tag).await;
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Deterministic bytes that are not all alike, so that a shifted or truncated file shows.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Every file under `dir` with its bytes, by `/`-separated relative path.
pub fn read_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            if entry.file_type().unwrap().is_dir() {
                walk(&entry.path(), &rel, out);
            } else {
                out.insert(rel, std::fs::read(entry.path()).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, "", &mut out);
    out
}

fn write_tree(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (rel, bytes) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

/// A model folder as Sentio writes one: an `MLmodel`, weights, and nested files.
fn model_files(seed: u64) -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([
        ("MLmodel".to_owned(), format!("flavors: {{}}\nseed: {seed}\n").into_bytes()),
        ("weights.bin".to_owned(), pattern(3 * 1024 * 1024 + 7, seed)),
        ("nested/deep/config.json".to_owned(), format!("{{\"seed\": {seed}}}").into_bytes()),
        ("nested/empty.txt".to_owned(), Vec::new()),
        ("with space.txt".to_owned(), b"spaces in names".to_vec()),
    ])
}

fn assert_same_values(got: &[Metric], expected: &[Metric]) {
    assert_eq!(got.len(), expected.len(), "history length");
    for (g, e) in got.iter().zip(expected) {
        assert_eq!((&g.key, g.step, g.timestamp_ms), (&e.key, e.step, e.timestamp_ms));
        assert!(
            g.value.to_bits() == e.value.to_bits() || (g.value.is_nan() && e.value.is_nan()),
            "{} at step {}: {} != {}",
            g.key,
            g.step,
            g.value,
            e.value
        );
    }
}

async fn experiments_are_get_or_create(t: &dyn Tracking, tag: &str) -> ExperimentId {
    let name = format!("sentio-contract-{tag}");
    let first = t.experiment(&name).await.unwrap();
    let again = t.experiment(&name).await.unwrap();
    assert_eq!(first, again, "experiment() is get-or-create");
    let other = t.experiment(&format!("{name}-other")).await.unwrap();
    assert_ne!(first, other);
    first
}

async fn runs_round_trip(t: &dyn Tracking, experiment: &ExperimentId) -> RunId {
    let run = t
        .create_run(experiment, "contract-run", &pairs(&[("team", "sentio"), ("stage", "train")]))
        .await
        .unwrap();
    assert_eq!(run.as_str().len(), 32, "run ids are 32 hex digits: {run}");
    assert!(run.as_str().chars().all(|c| c.is_ascii_hexdigit()));

    let info = t.get_run(&run).await.unwrap();
    assert_eq!(info.run_id, run);
    assert_eq!(&info.experiment_id, experiment);
    assert_eq!(info.run_name, "contract-run");
    assert_eq!(info.status, RunStatus::Running);
    assert_eq!(info.end_time_ms, None);
    assert!(!info.artifact_uri.is_empty());
    assert_eq!(info.tags.get("team").map(String::as_str), Some("sentio"));
    assert_eq!(info.tags.get("mlflow.runName").map(String::as_str), Some("contract-run"));
    assert!(info.params.is_empty() && info.metrics.is_empty());

    // Params: logging the same value again is fine, changing one is refused.
    let params = pairs(&[("lr", "0.001"), ("window", "64"), ("model/hidden", "32")]);
    t.log_params(&run, &params).await.unwrap();
    t.log_params(&run, &params[..1]).await.unwrap();
    assert!(t.log_params(&run, &pairs(&[("lr", "0.1")])).await.is_err(), "param changed");
    assert!(t.log_params(&run, &pairs(&[("../escape", "x")])).await.is_err(), "bad key");

    // Metrics: NaN, infinity, out-of-order steps; the latest is the highest step.
    let t0 = now_ms();
    let loss: Vec<Metric> = [1.0, 0.5, f64::NAN, 0.25, 0.125]
        .into_iter()
        .enumerate()
        .map(|(i, v)| Metric::new("loss", v, i as i64, t0 + i as i64))
        .collect();
    let mut shuffled = loss.clone();
    shuffled.swap(0, 4);
    shuffled.swap(1, 3);
    t.log_metrics(&run, &shuffled).await.unwrap();
    t.log_metrics(
        &run,
        &[Metric::new("big", f64::INFINITY, 0, t0), Metric::new("neg", f64::NEG_INFINITY, 0, t0)],
    )
    .await
    .unwrap();
    assert_same_values(&t.metric_history(&run, "loss").await.unwrap(), &loss);
    assert!(t.metric_history(&run, "never-logged").await.unwrap().is_empty());

    let info = t.get_run(&run).await.unwrap();
    assert_eq!(info.params, params.iter().cloned().collect());
    assert_same_values(&[info.metrics["loss"].clone()], &loss[4..]);
    // MLflow's SQL store keeps ±infinity as ±f64::MAX.
    let big = info.metrics["big"].value;
    assert!(big == f64::INFINITY || big == f64::MAX, "{big}");
    let neg = info.metrics["neg"].value;
    assert!(neg == f64::NEG_INFINITY || neg == -f64::MAX, "{neg}");
    let history = t.metric_history(&run, "loss").await.unwrap();
    assert!(history[2].value.is_nan(), "NaN at step 2");

    // Tags: set and overwrite.
    t.set_tags(&run, &pairs(&[("stage", "done"), ("note", "ok")])).await.unwrap();
    t.end_run(&run, RunStatus::Finished).await.unwrap();
    let info = t.get_run(&run).await.unwrap();
    assert_eq!(info.tags.get("stage").map(String::as_str), Some("done"));
    assert_eq!(info.tags.get("note").map(String::as_str), Some("ok"));
    assert_eq!(info.status, RunStatus::Finished);
    assert!(info.end_time_ms.is_some_and(|end| end >= info.start_time_ms));

    // Another run ends FAILED.
    let failed = t.create_run(experiment, "contract-failed", &[]).await.unwrap();
    t.end_run(&failed, RunStatus::Failed).await.unwrap();
    assert_eq!(t.get_run(&failed).await.unwrap().status, RunStatus::Failed);

    let missing = RunId::new(format!("{:032x}", rand::random::<u128>()));
    let err = t.get_run(&missing).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    run
}

async fn runs_are_listed(t: &dyn Tracking, tag: &str) {
    let experiment = t.experiment(&format!("sentio-contract-{tag}-runs")).await.unwrap();
    assert!(t.list_runs(&experiment, None).await.unwrap().is_empty(), "a new experiment");
    let running =
        t.create_run(&experiment, "running", &pairs(&[("sentio.pid", "4242")])).await.unwrap();
    let finished = t.create_run(&experiment, "finished", &[]).await.unwrap();
    t.end_run(&finished, RunStatus::Finished).await.unwrap();
    let killed = t.create_run(&experiment, "killed", &[]).await.unwrap();
    t.end_run(&killed, RunStatus::Killed).await.unwrap();
    // A run of another experiment is not listed.
    let other = t.experiment(&format!("sentio-contract-{tag}-other")).await.unwrap();
    let elsewhere = t.create_run(&other, "elsewhere", &[]).await.unwrap();

    let mut all: Vec<RunId> =
        t.list_runs(&experiment, None).await.unwrap().into_iter().map(|r| r.run_id).collect();
    all.sort();
    let mut expected = vec![running.clone(), finished, killed.clone()];
    expected.sort();
    assert_eq!(all, expected);
    assert!(!all.contains(&elsewhere));

    let open = t.list_runs(&experiment, Some(RunStatus::Running)).await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].run_id, running);
    assert_eq!(open[0].status, RunStatus::Running);
    assert_eq!(open[0].run_name, "running");
    assert_eq!(open[0].tags.get("sentio.pid").map(String::as_str), Some("4242"));
    let ended = t.list_runs(&experiment, Some(RunStatus::Killed)).await.unwrap();
    assert_eq!(ended.iter().map(|r| &r.run_id).collect::<Vec<_>>(), [&killed]);

    // Ending the open run takes it off the RUNNING list.
    t.end_run(&running, RunStatus::Killed).await.unwrap();
    assert!(t.list_runs(&experiment, Some(RunStatus::Running)).await.unwrap().is_empty());
    t.end_run(&elsewhere, RunStatus::Finished).await.unwrap();
}

async fn many_values_in_one_call(t: &dyn Tracking, experiment: &ExperimentId) {
    let run = t.create_run(experiment, "contract-many", &[]).await.unwrap();
    let t0 = now_ms();
    let metrics: Vec<Metric> = (0..2500)
        .map(|i| Metric::new("batch/loss", 1.0 / (1.0 + i as f64), i, t0 + i))
        .chain((0..300).map(|i| Metric::new(format!("m{}", i % 3), i as f64, i, t0)))
        .collect();
    t.log_metrics(&run, &metrics).await.unwrap();
    let params: Vec<(String, String)> =
        (0..150).map(|i| (format!("p{i:03}"), format!("value-{i}"))).collect();
    t.log_params(&run, &params).await.unwrap();
    let tags: Vec<(String, String)> =
        (0..150).map(|i| (format!("t{i:03}"), "x".repeat(i))).collect();
    t.set_tags(&run, &tags).await.unwrap();

    let history = t.metric_history(&run, "batch/loss").await.unwrap();
    assert_same_values(&history, &metrics[..2500]);
    assert_eq!(t.metric_history(&run, "m1").await.unwrap().len(), 100);
    let info = t.get_run(&run).await.unwrap();
    assert_eq!(info.params.len(), 150);
    assert_eq!(info.params["p149"], "value-149");
    assert!(tags.iter().all(|(k, v)| info.tags.get(k) == Some(v)), "every tag set");
    assert_eq!(info.metrics["batch/loss"].step, 2499);
    t.end_run(&run, RunStatus::Finished).await.unwrap();
}

async fn artifacts_round_trip(t: &dyn Tracking, run: &RunId) {
    let scratch = tempfile::tempdir().unwrap();
    let src = scratch.path().join("src");
    let files = model_files(1);
    write_tree(&src, &files);
    t.log_artifacts(run, &src, "model").await.unwrap();
    let extra = scratch.path().join("extra");
    write_tree(&extra, &BTreeMap::from([("report.txt".to_owned(), b"report".to_vec())]));
    t.log_artifacts(run, &extra, "").await.unwrap();

    // The folder, byte-identical.
    let root = ArtifactRoot::Run(run.clone());
    let dst = scratch.path().join("dst");
    assert_eq!(t.download_artifacts(&root, "model", &dst).await.unwrap(), dst);
    assert_eq!(read_tree(&dst), files);

    // Everything, through the run's artifact URI.
    let uri = ArtifactRoot::Uri(t.get_run(run).await.unwrap().artifact_uri);
    let all = scratch.path().join("all");
    t.download_artifacts(&uri, "", &all).await.unwrap();
    let mut expected: BTreeMap<String, Vec<u8>> =
        files.iter().map(|(k, v)| (format!("model/{k}"), v.clone())).collect();
    expected.insert("report.txt".to_owned(), b"report".to_vec());
    assert_eq!(read_tree(&all), expected);

    // One file.
    let one = scratch.path().join("one");
    let got = t.download_artifacts(&root, "model/nested/deep/config.json", &one).await.unwrap();
    assert_eq!(got, one.join("config.json"));
    assert_eq!(std::fs::read(&got).unwrap(), files["nested/deep/config.json"]);

    let err = t.download_artifacts(&root, "model/missing.bin", &one).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(t.log_artifacts(run, &src, "../escape").await.is_err());
}

async fn registry_versions_and_aliases(
    t: &dyn Tracking,
    experiment: &ExperimentId,
    run: &RunId,
    tag: &str,
) {
    let name = format!("sentio-contract-model-{tag}");
    t.create_registered_model(&name).await.unwrap();
    t.create_registered_model(&name).await.unwrap();

    let scratch = tempfile::tempdir().unwrap();
    let mut trees = Vec::new();
    for version in 1..=2u64 {
        let model = t.create_logged_model(experiment, "model", Some(run)).await.unwrap();
        assert_eq!(model.status, LoggedModelStatus::Pending);
        assert_eq!(model.source_run_id.as_ref(), Some(run));
        assert!(model.model_id.as_str().starts_with("m-"), "{}", model.model_id);
        let files = model_files(10 + version);
        let src = scratch.path().join(format!("v{version}"));
        write_tree(&src, &files);
        t.log_model_artifacts(&model.model_id, &src).await.unwrap();
        let ready =
            t.finalize_logged_model(&model.model_id, LoggedModelStatus::Ready).await.unwrap();
        assert_eq!(ready.status, LoggedModelStatus::Ready);
        assert_eq!(t.get_logged_model(&model.model_id).await.unwrap(), ready);

        // The logged model's own artifacts.
        let dst = scratch.path().join(format!("logged-{version}"));
        t.download_artifacts(&ArtifactRoot::LoggedModel(model.model_id.clone()), "", &dst)
            .await
            .unwrap();
        assert_eq!(read_tree(&dst), files);

        let mv = t
            .create_model_version(&name, &model.model_uri(), Some(run), Some(&model.model_id))
            .await
            .unwrap();
        assert_eq!(mv.version, version);
        assert_eq!(mv.name, name);
        assert_eq!(mv.source, model.model_uri());
        assert_eq!(mv.run_id.as_ref(), Some(run));
        assert_eq!(mv.status, "READY");
        trees.push(files);
    }

    let v1 = t.get_model_version(&name, 1).await.unwrap();
    assert_eq!(v1.version, 1);
    assert!(v1.aliases.is_empty());
    let versions = t.list_model_versions(&name).await.unwrap();
    assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2]);
    let err = t.get_model_version(&name, 99).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");

    // Aliases: set, move, get, delete.
    assert_eq!(t.get_alias(&name, "champion").await.unwrap(), None);
    t.set_alias(&name, "champion", 1).await.unwrap();
    let champion = t.get_alias(&name, "champion").await.unwrap().unwrap();
    assert_eq!((champion.version, champion.aliases.clone()), (1, vec!["champion".to_owned()]));
    t.set_alias(&name, "champion", 2).await.unwrap();
    t.set_alias(&name, "challenger", 1).await.unwrap();
    assert_eq!(t.get_alias(&name, "champion").await.unwrap().unwrap().version, 2);
    assert_eq!(t.get_model_version(&name, 1).await.unwrap().aliases, ["challenger"]);
    assert_eq!(t.get_model_version(&name, 2).await.unwrap().aliases, ["champion"]);
    let listed = t.list_model_versions(&name).await.unwrap();
    assert_eq!(listed[1].aliases, ["champion"]);
    let models = t.list_registered_models().await.unwrap();
    let model = models.iter().find(|m| m.name == name).unwrap();
    assert_eq!(model.latest_version, Some(2));
    assert_eq!(
        model.aliases,
        BTreeMap::from([("challenger".to_owned(), 1), ("champion".to_owned(), 2)])
    );
    assert!(t.set_alias(&name, "latest", 1).await.is_err(), "reserved alias");
    assert!(t.set_alias(&name, "champion", 99).await.is_err(), "missing version");

    // Download by version, and by the version's source.
    let by_version = scratch.path().join("by-version");
    t.download_model_version(&name, 2, &by_version).await.unwrap();
    assert_eq!(read_tree(&by_version), trees[1]);
    let by_source = scratch.path().join("by-source");
    t.download_artifacts(&ArtifactRoot::Uri(v1.source.clone()), "", &by_source).await.unwrap();
    assert_eq!(read_tree(&by_source), trees[0]);

    t.delete_alias(&name, "champion").await.unwrap();
    t.delete_alias(&name, "champion").await.unwrap();
    assert_eq!(t.get_alias(&name, "champion").await.unwrap(), None);
    assert_eq!(t.get_alias(&name, "challenger").await.unwrap().unwrap().version, 1);

    let err = t.get_model_version(&format!("{name}-missing"), 1).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}
