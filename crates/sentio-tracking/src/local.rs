//! The embedded backend: plain files in MLflow's file-store layout, safe for one process.
//!
//! ```text
//! <root>/mlruns/<experiment_id>/meta.yaml
//! <root>/mlruns/<experiment_id>/<run_id>/meta.yaml            status, times, artifact_uri
//! <root>/mlruns/<experiment_id>/<run_id>/params/<key>         the value
//! <root>/mlruns/<experiment_id>/<run_id>/metrics/<key>        "<timestamp> <value> <step>" lines
//! <root>/mlruns/<experiment_id>/<run_id>/tags/<key>           the value
//! <root>/mlruns/<experiment_id>/<run_id>/artifacts/…
//! <root>/mlruns/<experiment_id>/models/<model_id>/{meta.yaml, artifacts/…}   logged models
//! <root>/models/<name>/meta.yaml                              registered models
//! <root>/models/<name>/version-<n>/meta.yaml                  source, run, storage location
//! <root>/models/<name>/aliases/<alias>                        the version number
//! ```
//!
//! Keys with `/` become nested files, as in MLflow. Files are replaced atomically (a temporary
//! file, then a rename); metric files are appended to. One lock serializes the calls of a
//! process; two processes on one root are not supported.
//!
//! The `meta.yaml` files record absolute locations (`artifact_uri`, `artifact_location`,
//! `storage_location`), as MLflow's file store writes them. Reads never trust them: a run's and a
//! logged model's artifacts are found by their place under the root, a model version through its
//! logged model or its source, and an absolute path into another root's `mlruns/` is moved into
//! this one when the same files are here. So a copied or moved directory reads its own models,
//! not the old directory's; a path outside any `mlruns/` is read as it was recorded.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::types::now_ms;
use crate::{
    ArtifactRoot, ExperimentId, LoggedModel, LoggedModelId, LoggedModelStatus, Metric,
    ModelVersion, RegisteredModel, Result, RunId, RunInfo, RunStatus, Tracking, TrackingError,
    validate,
};

/// Prefix of the temporary files of atomic writes (skipped when reading a folder).
const TMP_PREFIX: &str = ".sentio-tmp-";
const META: &str = "meta.yaml";

/// The local backend: see the module documentation for the layout.
#[derive(Debug, Clone)]
pub struct LocalTracking {
    store: Arc<Store>,
}

#[derive(Debug)]
struct Store {
    root: PathBuf,
    lock: Mutex<()>,
}

impl LocalTracking {
    /// Opens (creating when missing) the tracking directory `root`.
    pub fn open(root: &Path) -> Result<Self> {
        let op = "open";
        fs::create_dir_all(root.join("mlruns")).map_err(io(op, root))?;
        fs::create_dir_all(root.join("models")).map_err(io(op, root))?;
        // Artifact URIs are absolute paths, valid from any working directory.
        let root = fs::canonicalize(root).map_err(io(op, root))?;
        Ok(Self { store: Arc::new(Store { root, lock: Mutex::new(()) }) })
    }

    pub fn root(&self) -> &Path {
        &self.store.root
    }

    /// Runs `f` on a blocking thread, holding the store's lock.
    async fn blocking<T, F>(&self, op: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            // A panic in another call leaves the files as consistent as any crash would.
            let _guard = store.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&store)
        })
        .await
        .map_err(|source| TrackingError::Task { op, source })?
    }
}

// ---------------------------------------------------------------------------------------------
// meta.yaml files

#[derive(Debug, Serialize, Deserialize)]
struct ExperimentMeta {
    experiment_id: String,
    name: String,
    artifact_location: String,
    lifecycle_stage: String,
    creation_time: i64,
    last_update_time: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct RunMeta {
    run_id: String,
    run_uuid: String,
    run_name: String,
    experiment_id: String,
    /// MLflow's numeric `RunStatus`.
    status: u8,
    start_time: i64,
    end_time: Option<i64>,
    artifact_uri: String,
    lifecycle_stage: String,
    user_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct LoggedModelMeta {
    model_id: String,
    experiment_id: String,
    name: String,
    source_run_id: Option<String>,
    status: LoggedModelStatus,
    artifact_location: String,
    creation_timestamp: i64,
    last_updated_timestamp: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct RegisteredModelMeta {
    name: String,
    creation_timestamp: i64,
    last_updated_timestamp: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ModelVersionMeta {
    name: String,
    version: u64,
    source: String,
    run_id: Option<String>,
    model_id: Option<String>,
    status: String,
    /// The folder holding the version's artifacts (the source, resolved).
    storage_location: String,
    creation_timestamp: i64,
    last_updated_timestamp: i64,
}

impl LoggedModelMeta {
    /// The logged model whose folder is `dir` (its artifacts in `dir/artifacts`, wherever the
    /// root was when it was written).
    fn to_model(&self, dir: &Path) -> LoggedModel {
        LoggedModel {
            model_id: LoggedModelId::new(&self.model_id),
            experiment_id: ExperimentId::new(&self.experiment_id),
            name: self.name.clone(),
            source_run_id: self.source_run_id.as_deref().map(RunId::new),
            status: self.status,
            artifact_uri: dir.join("artifacts").to_string_lossy().into_owned(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// files

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TrackingError + use<> {
    let path = path.to_owned();
    move |source| TrackingError::Io { op, path, source }
}

fn not_found(op: &'static str, what: String) -> TrackingError {
    TrackingError::NotFound { op, what }
}

/// 32 random hex digits, as MLflow's ids.
fn random_hex() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Replaces `path` with `bytes` atomically (a temporary file in the same folder, then a rename).
fn write_atomic(op: &'static str, path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io(op, dir))?;
    let tmp = dir.join(format!("{TMP_PREFIX}{}", random_hex()));
    let written = fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_data()
        })
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(source) = written {
        let _ = fs::remove_file(&tmp);
        return Err(TrackingError::Io { op, path: path.to_owned(), source });
    }
    Ok(())
}

fn write_yaml<T: Serialize>(op: &'static str, path: &Path, value: &T) -> Result<()> {
    let text = serde_yaml::to_string(value).map_err(|source| TrackingError::Yaml {
        op,
        path: path.to_owned(),
        source,
    })?;
    write_atomic(op, path, text.as_bytes())
}

fn read_yaml<T: DeserializeOwned>(op: &'static str, path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).map_err(io(op, path))?;
    serde_yaml::from_str(&text).map_err(|source| TrackingError::Yaml {
        op,
        path: path.to_owned(),
        source,
    })
}

/// The subfolders of `dir` (none when it does not exist).
fn subdirs(op: &'static str, dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(op, dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(op, dir))?;
        if entry.file_type().map_err(io(op, dir))?.is_dir() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Every file under `dir`, as (`/`-separated relative path, path), sorted; temporary files
/// skipped. Nothing when `dir` does not exist.
pub(crate) fn files_under(op: &'static str, dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    fn walk(
        op: &'static str,
        dir: &Path,
        prefix: &str,
        out: &mut Vec<(String, PathBuf)>,
    ) -> Result<()> {
        for entry in fs::read_dir(dir).map_err(io(op, dir))? {
            let entry = entry.map_err(io(op, dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(TMP_PREFIX) {
                continue;
            }
            let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            let path = entry.path();
            // Follows symlinks: a linked file uploads its content.
            if fs::metadata(&path).map_err(io(op, &path))?.is_dir() {
                walk(op, &path, &rel, out)?;
            } else {
                out.push((rel, path));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    if dir.is_dir() {
        walk(op, dir, "", &mut out)?;
    }
    out.sort();
    Ok(out)
}

/// Copies the files under `from` into `to` (recursively), each atomically.
fn copy_tree(op: &'static str, from: &Path, to: &Path) -> Result<()> {
    if !from.is_dir() {
        return Err(not_found(op, format!("folder {}", from.display())));
    }
    fs::create_dir_all(to).map_err(io(op, to))?;
    for (rel, path) in files_under(op, from)? {
        copy_file(op, &path, &to.join(rel))?;
    }
    Ok(())
}

fn copy_file(op: &'static str, from: &Path, to: &Path) -> Result<()> {
    let bytes = fs::read(from).map_err(io(op, from))?;
    write_atomic(op, to, &bytes)
}

/// `path` (`/`-separated, validated) under `dir`.
fn join_rel(dir: &Path, rel: &str) -> PathBuf {
    rel.split('/').filter(|p| !p.is_empty()).fold(dir.to_owned(), |acc, part| acc.join(part))
}

/// Reads `<dir>/<key>` files into a map (params, tags).
fn read_values(op: &'static str, dir: &Path) -> Result<BTreeMap<String, String>> {
    files_under(op, dir)?
        .into_iter()
        .map(|(key, path)| Ok((key, fs::read_to_string(&path).map_err(io(op, &path))?)))
        .collect()
}

/// A metric value as MLflow's file store writes it (`nan`, `inf`, `-inf` for the special ones).
fn format_value(value: f64) -> String {
    if value.is_nan() {
        "nan".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{value:?}")
    }
}

fn parse_metric_file(op: &'static str, key: &str, path: &Path) -> Result<Vec<Metric>> {
    let text = fs::read_to_string(path).map_err(io(op, path))?;
    let bad = |line: &str| TrackingError::Invalid {
        op,
        what: format!("metric file {}", path.display()),
        reason: format!("line {line:?} is not \"<timestamp> <value> <step>\""),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut parts = line.split_whitespace();
            let (Some(ts), Some(value), step) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad(line));
            };
            Ok(Metric {
                key: key.to_owned(),
                timestamp_ms: ts.parse().map_err(|_| bad(line))?,
                value: value.parse().map_err(|_| bad(line))?,
                step: step.map_or(Ok(0), str::parse).map_err(|_| bad(line))?,
            })
        })
        .collect()
}

/// Orders a metric's history by step, then timestamp, keeping the logging order of ties.
fn sort_history(history: &mut [Metric]) {
    history.sort_by_key(|m| (m.step, m.timestamp_ms));
}

// ---------------------------------------------------------------------------------------------
// the store's operations (called on a blocking thread, under the lock)

impl Store {
    fn mlruns(&self) -> PathBuf {
        self.root.join("mlruns")
    }

    fn models(&self) -> PathBuf {
        self.root.join("models")
    }

    fn experiment_dir(&self, op: &'static str, id: &ExperimentId) -> Result<PathBuf> {
        validate::id(op, "experiment id", id.as_str())?;
        let dir = self.mlruns().join(id.as_str());
        if !dir.join(META).is_file() {
            return Err(not_found(op, format!("experiment {id}")));
        }
        Ok(dir)
    }

    fn get_or_create_experiment(&self, op: &'static str, name: &str) -> Result<ExperimentId> {
        if name.trim().is_empty() {
            return Err(TrackingError::Invalid {
                op,
                what: "experiment name".to_owned(),
                reason: "empty".to_owned(),
            });
        }
        let mut max_id = 0u64;
        for dir in subdirs(op, &self.mlruns())? {
            let meta_path = dir.join(META);
            if !meta_path.is_file() {
                continue;
            }
            let meta: ExperimentMeta = read_yaml(op, &meta_path)?;
            if meta.name == name {
                return Ok(ExperimentId::new(meta.experiment_id));
            }
            max_id = max_id.max(meta.experiment_id.parse().unwrap_or(0));
        }
        let id = (max_id + 1).to_string();
        let dir = self.mlruns().join(&id);
        let now = now_ms();
        let meta = ExperimentMeta {
            experiment_id: id.clone(),
            name: name.to_owned(),
            artifact_location: dir.to_string_lossy().into_owned(),
            lifecycle_stage: "active".to_owned(),
            creation_time: now,
            last_update_time: now,
        };
        write_yaml(op, &dir.join(META), &meta)?;
        Ok(ExperimentId::new(id))
    }

    fn run_dir(&self, op: &'static str, run: &RunId) -> Result<PathBuf> {
        validate::id(op, "run id", run.as_str())?;
        for exp in subdirs(op, &self.mlruns())? {
            let dir = exp.join(run.as_str());
            if dir.join(META).is_file() {
                return Ok(dir);
            }
        }
        Err(not_found(op, format!("run {run}")))
    }

    fn create_run(
        &self,
        op: &'static str,
        experiment: &ExperimentId,
        run_name: &str,
        tags: &[(String, String)],
    ) -> Result<RunId> {
        let exp_dir = self.experiment_dir(op, experiment)?;
        for (k, _) in tags {
            validate::key(op, "tag", k)?;
        }
        let id = random_hex();
        let dir = exp_dir.join(&id);
        for sub in ["params", "metrics", "tags", "artifacts"] {
            fs::create_dir_all(dir.join(sub)).map_err(io(op, &dir))?;
        }
        let mut all_tags = tags.to_vec();
        all_tags.push(("mlflow.runName".to_owned(), run_name.to_owned()));
        self.write_values(op, &dir.join("tags"), &all_tags, true)?;
        let meta = RunMeta {
            run_id: id.clone(),
            run_uuid: id.clone(),
            run_name: run_name.to_owned(),
            experiment_id: experiment.to_string(),
            status: RunStatus::Running.code(),
            start_time: now_ms(),
            end_time: None,
            artifact_uri: dir.join("artifacts").to_string_lossy().into_owned(),
            lifecycle_stage: "active".to_owned(),
            user_id: String::new(),
        };
        write_yaml(op, &dir.join(META), &meta)?;
        Ok(RunId::new(id))
    }

    /// Writes `<dir>/<key>` files; with `overwrite` false, a different value for an existing
    /// key is refused (MLflow's rule for params).
    fn write_values(
        &self,
        op: &'static str,
        dir: &Path,
        values: &[(String, String)],
        overwrite: bool,
    ) -> Result<()> {
        for (k, _) in values {
            validate::key(op, if overwrite { "tag" } else { "param" }, k)?;
        }
        for (k, v) in values {
            let path = join_rel(dir, k);
            if !overwrite && path.is_file() {
                let old = fs::read_to_string(&path).map_err(io(op, &path))?;
                if &old == v {
                    continue;
                }
                return Err(TrackingError::Invalid {
                    op,
                    what: format!("param {k:?}"),
                    reason: format!("changing param values is not allowed ({old:?} to {v:?})"),
                });
            }
            write_atomic(op, &path, v.as_bytes())?;
        }
        Ok(())
    }

    fn log_metrics(&self, op: &'static str, run: &RunId, metrics: &[Metric]) -> Result<()> {
        let dir = self.run_dir(op, run)?.join("metrics");
        let mut by_key: BTreeMap<&str, String> = BTreeMap::new();
        for m in metrics {
            validate::key(op, "metric", &m.key)?;
            let line = format!("{} {} {}\n", m.timestamp_ms, format_value(m.value), m.step);
            by_key.entry(&m.key).or_default().push_str(&line);
        }
        for (key, lines) in by_key {
            let path = join_rel(&dir, key);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(io(op, parent))?;
            }
            // One write of whole lines: a crash leaves at most a torn last line.
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(lines.as_bytes()))
                .map_err(io(op, &path))?;
        }
        Ok(())
    }

    fn end_run(&self, op: &'static str, run: &RunId, status: RunStatus) -> Result<()> {
        let path = self.run_dir(op, run)?.join(META);
        let mut meta: RunMeta = read_yaml(op, &path)?;
        meta.status = status.code();
        meta.end_time = status.is_terminated().then(now_ms);
        write_yaml(op, &path, &meta)
    }

    fn get_run(&self, op: &'static str, run: &RunId) -> Result<RunInfo> {
        let dir = self.run_dir(op, run)?;
        let meta: RunMeta = read_yaml(op, &dir.join(META))?;
        self.run_info(op, &dir, meta)
    }

    /// The run in `dir`, whose `meta.yaml` says `meta`.
    fn run_info(&self, op: &'static str, dir: &Path, meta: RunMeta) -> Result<RunInfo> {
        let mut metrics = BTreeMap::new();
        for (key, path) in files_under(op, &dir.join("metrics"))? {
            let history = parse_metric_file(op, &key, &path)?;
            // The last in (step, timestamp) order; of equals, the last logged.
            let latest = history.into_iter().reduce(|a, b| if b.is_after(&a) { b } else { a });
            if let Some(latest) = latest {
                metrics.insert(key, latest);
            }
        }
        Ok(RunInfo {
            run_id: RunId::new(meta.run_id),
            experiment_id: ExperimentId::new(meta.experiment_id),
            run_name: meta.run_name,
            status: RunStatus::from_code(meta.status).unwrap_or(RunStatus::Running),
            start_time_ms: meta.start_time,
            end_time_ms: meta.end_time,
            // Where `log_artifacts` writes, in this root (not the recorded one).
            artifact_uri: dir.join("artifacts").to_string_lossy().into_owned(),
            params: read_values(op, &dir.join("params"))?,
            metrics,
            tags: read_values(op, &dir.join("tags"))?,
        })
    }

    fn list_runs(
        &self,
        op: &'static str,
        experiment: &ExperimentId,
        status: Option<RunStatus>,
    ) -> Result<Vec<RunInfo>> {
        let exp_dir = self.experiment_dir(op, experiment)?;
        let mut runs = Vec::new();
        // Run folders are the ones with a `meta.yaml` (`models/` holds logged models).
        for dir in subdirs(op, &exp_dir)? {
            let path = dir.join(META);
            if !path.is_file() {
                continue;
            }
            let meta: RunMeta = read_yaml(op, &path)?;
            let run_status = RunStatus::from_code(meta.status).unwrap_or(RunStatus::Running);
            if meta.lifecycle_stage == "deleted" || status.is_some_and(|s| s != run_status) {
                continue;
            }
            runs.push(self.run_info(op, &dir, meta)?);
        }
        runs.sort_by(|a, b| (a.start_time_ms, &a.run_id).cmp(&(b.start_time_ms, &b.run_id)));
        Ok(runs)
    }

    fn metric_history(&self, op: &'static str, run: &RunId, key: &str) -> Result<Vec<Metric>> {
        let dir = self.run_dir(op, run)?;
        validate::key(op, "metric", key)?;
        let path = join_rel(&dir.join("metrics"), key);
        if !path.is_file() {
            return Ok(Vec::new());
        }
        let mut history = parse_metric_file(op, key, &path)?;
        sort_history(&mut history);
        Ok(history)
    }

    fn logged_model_dir(&self, op: &'static str, model: &LoggedModelId) -> Result<PathBuf> {
        validate::id(op, "logged model id", model.as_str())?;
        for exp in subdirs(op, &self.mlruns())? {
            let dir = exp.join("models").join(model.as_str());
            if dir.join(META).is_file() {
                return Ok(dir);
            }
        }
        Err(not_found(op, format!("logged model {model}")))
    }

    fn create_logged_model(
        &self,
        op: &'static str,
        experiment: &ExperimentId,
        name: &str,
        source_run: Option<&RunId>,
    ) -> Result<LoggedModel> {
        let exp_dir = self.experiment_dir(op, experiment)?;
        if let Some(run) = source_run {
            self.run_dir(op, run)?;
        }
        let id = format!("m-{}", random_hex());
        let dir = exp_dir.join("models").join(&id);
        fs::create_dir_all(dir.join("artifacts")).map_err(io(op, &dir))?;
        let now = now_ms();
        let meta = LoggedModelMeta {
            model_id: id,
            experiment_id: experiment.to_string(),
            name: name.to_owned(),
            source_run_id: source_run.map(RunId::to_string),
            status: LoggedModelStatus::Pending,
            artifact_location: dir.join("artifacts").to_string_lossy().into_owned(),
            creation_timestamp: now,
            last_updated_timestamp: now,
        };
        write_yaml(op, &dir.join(META), &meta)?;
        Ok(meta.to_model(&dir))
    }

    fn finalize_logged_model(
        &self,
        op: &'static str,
        model: &LoggedModelId,
        status: LoggedModelStatus,
    ) -> Result<LoggedModel> {
        let dir = self.logged_model_dir(op, model)?;
        let path = dir.join(META);
        let mut meta: LoggedModelMeta = read_yaml(op, &path)?;
        meta.status = status;
        meta.last_updated_timestamp = now_ms();
        write_yaml(op, &path, &meta)?;
        Ok(meta.to_model(&dir))
    }

    fn get_logged_model(&self, op: &'static str, model: &LoggedModelId) -> Result<LoggedModel> {
        let dir = self.logged_model_dir(op, model)?;
        Ok(read_yaml::<LoggedModelMeta>(op, &dir.join(META))?.to_model(&dir))
    }

    /// `path`, recorded absolute, in this root: a path into another root's `mlruns/` (this
    /// directory before it was copied or moved) becomes the same path under this root when that
    /// exists here; any other path stays as it is.
    fn relocate(&self, path: &Path) -> PathBuf {
        if path.starts_with(&self.root) {
            return path.to_owned();
        }
        let parts: Vec<_> = path.components().collect();
        let normal = |c: &std::path::Component<'_>| matches!(c, std::path::Component::Normal(_));
        let Some(at) = parts.iter().rposition(|c| c.as_os_str() == "mlruns") else {
            return path.to_owned();
        };
        if !parts[at..].iter().all(normal) {
            return path.to_owned();
        }
        let here = parts[at..].iter().fold(self.root.clone(), |acc, c| acc.join(c));
        if here.exists() { here } else { path.to_owned() }
    }

    /// Where a model version's files are in this root: its logged model's artifacts, or what
    /// its source stands for (the recorded `storage_location` may be another root's).
    fn version_storage(&self, op: &'static str, meta: &ModelVersionMeta) -> Result<PathBuf> {
        if let Some(model) = &meta.model_id {
            match self.logged_model_dir(op, &LoggedModelId::new(model)) {
                Ok(dir) => return Ok(dir.join("artifacts")),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        match self.resolve_uri(op, &meta.source) {
            Ok(path) => Ok(path),
            Err(_) => Ok(self.relocate(Path::new(&meta.storage_location))),
        }
    }

    /// The local folder an artifact root stands for.
    fn resolve_root(&self, op: &'static str, root: &ArtifactRoot) -> Result<PathBuf> {
        match root {
            ArtifactRoot::Run(run) => Ok(self.run_dir(op, run)?.join("artifacts")),
            ArtifactRoot::LoggedModel(model) => {
                Ok(self.logged_model_dir(op, model)?.join("artifacts"))
            }
            ArtifactRoot::Uri(uri) => self.resolve_uri(op, uri),
        }
    }

    fn resolve_uri(&self, op: &'static str, uri: &str) -> Result<PathBuf> {
        let unsupported = |reason| TrackingError::ArtifactUri { op, uri: uri.to_owned(), reason };
        if let Some(rest) = uri.strip_prefix("models:/") {
            if rest.starts_with("m-") && !rest.contains('/') {
                let model = LoggedModelId::new(rest);
                return Ok(self.logged_model_dir(op, &model)?.join("artifacts"));
            }
            return Err(unsupported("only models:/<model_id> is supported here"));
        }
        if let Some(rest) = uri.strip_prefix("runs:/") {
            let (run, path) = rest.split_once('/').unwrap_or((rest, ""));
            validate::artifact_path(op, path)?;
            let dir = self.run_dir(op, &RunId::new(run))?.join("artifacts");
            return Ok(join_rel(&dir, path));
        }
        let path = Path::new(uri.strip_prefix("file://").unwrap_or(uri));
        if path.is_absolute() {
            return Ok(self.relocate(path));
        }
        Err(unsupported("expected an absolute path, file://, runs:/ or models:/<model_id>"))
    }

    fn download(
        &self,
        op: &'static str,
        root: &ArtifactRoot,
        path: &str,
        to: &Path,
    ) -> Result<PathBuf> {
        validate::artifact_path(op, path)?;
        let from = join_rel(&self.resolve_root(op, root)?, path);
        if from.is_dir() {
            copy_tree(op, &from, to)?;
            return Ok(to.to_owned());
        }
        if from.is_file() {
            let name = from.file_name().unwrap_or_default();
            let target = to.join(name);
            copy_file(op, &from, &target)?;
            return Ok(target);
        }
        Err(not_found(op, format!("artifact {path:?} under {root:?}")))
    }

    fn registered_dir(&self, op: &'static str, name: &str) -> Result<PathBuf> {
        validate::model_name(op, name)?;
        let dir = self.models().join(name);
        if !dir.join(META).is_file() {
            return Err(not_found(op, format!("registered model {name:?}")));
        }
        Ok(dir)
    }

    fn create_registered_model(&self, op: &'static str, name: &str) -> Result<()> {
        validate::model_name(op, name)?;
        let path = self.models().join(name).join(META);
        if path.is_file() {
            return Ok(());
        }
        let now = now_ms();
        let meta = RegisteredModelMeta {
            name: name.to_owned(),
            creation_timestamp: now,
            last_updated_timestamp: now,
        };
        write_yaml(op, &path, &meta)
    }

    /// The version numbers of a registered model, ascending.
    fn versions(&self, op: &'static str, dir: &Path) -> Result<Vec<u64>> {
        let mut out: Vec<u64> = subdirs(op, dir)?
            .iter()
            .filter_map(|d| d.file_name()?.to_str()?.strip_prefix("version-")?.parse().ok())
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Alias to version.
    fn aliases(&self, op: &'static str, dir: &Path) -> Result<BTreeMap<String, u64>> {
        read_values(op, &dir.join("aliases"))?
            .into_iter()
            .map(|(alias, v)| {
                let version = v.trim().parse().map_err(|_| TrackingError::Invalid {
                    op,
                    what: format!("alias file {alias:?} in {}", dir.display()),
                    reason: format!("{v:?} is not a version number"),
                })?;
                Ok((alias, version))
            })
            .collect()
    }

    fn create_model_version(
        &self,
        op: &'static str,
        name: &str,
        source: &str,
        run: Option<&RunId>,
        model: Option<&LoggedModelId>,
    ) -> Result<ModelVersion> {
        let dir = self.registered_dir(op, name)?;
        if let Some(run) = run {
            self.run_dir(op, run)?;
        }
        let storage = match model {
            Some(model) => self.logged_model_dir(op, model)?.join("artifacts"),
            None => self.resolve_uri(op, source)?,
        };
        let version = self.versions(op, &dir)?.last().copied().unwrap_or(0) + 1;
        let now = now_ms();
        let meta = ModelVersionMeta {
            name: name.to_owned(),
            version,
            source: source.to_owned(),
            run_id: run.map(RunId::to_string),
            model_id: model.map(LoggedModelId::to_string),
            status: "READY".to_owned(),
            storage_location: storage.to_string_lossy().into_owned(),
            creation_timestamp: now,
            last_updated_timestamp: now,
        };
        write_yaml(op, &dir.join(format!("version-{version}")).join(META), &meta)?;
        self.get_model_version(op, name, version)
    }

    fn version_meta(&self, op: &'static str, name: &str, version: u64) -> Result<ModelVersionMeta> {
        let path = self.registered_dir(op, name)?.join(format!("version-{version}")).join(META);
        if !path.is_file() {
            return Err(not_found(op, format!("version {version} of model {name:?}")));
        }
        read_yaml(op, &path)
    }

    fn get_model_version(
        &self,
        op: &'static str,
        name: &str,
        version: u64,
    ) -> Result<ModelVersion> {
        let meta = self.version_meta(op, name, version)?;
        let aliases = self
            .aliases(op, &self.registered_dir(op, name)?)?
            .into_iter()
            .filter(|(_, v)| *v == version)
            .map(|(alias, _)| alias)
            .collect();
        Ok(ModelVersion {
            name: meta.name,
            version: meta.version,
            source: meta.source,
            run_id: meta.run_id.map(RunId::new),
            status: meta.status,
            aliases,
            creation_timestamp_ms: meta.creation_timestamp,
        })
    }

    fn list_registered_models(&self, op: &'static str) -> Result<Vec<RegisteredModel>> {
        let mut out = Vec::new();
        for dir in subdirs(op, &self.models())? {
            if !dir.join(META).is_file() {
                continue;
            }
            let meta: RegisteredModelMeta = read_yaml(op, &dir.join(META))?;
            out.push(RegisteredModel {
                name: meta.name,
                aliases: self.aliases(op, &dir)?,
                latest_version: self.versions(op, &dir)?.last().copied(),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn list_model_versions(&self, op: &'static str, name: &str) -> Result<Vec<ModelVersion>> {
        let dir = self.registered_dir(op, name)?;
        self.versions(op, &dir)?.into_iter().map(|v| self.get_model_version(op, name, v)).collect()
    }

    fn set_alias(&self, op: &'static str, name: &str, alias: &str, version: u64) -> Result<()> {
        validate::alias(op, alias)?;
        self.version_meta(op, name, version)?;
        let path = self.registered_dir(op, name)?.join("aliases").join(alias);
        write_atomic(op, &path, version.to_string().as_bytes())
    }

    fn get_alias(&self, op: &'static str, name: &str, alias: &str) -> Result<Option<ModelVersion>> {
        validate::alias(op, alias)?;
        let dir = self.registered_dir(op, name)?;
        match self.aliases(op, &dir)?.get(alias) {
            Some(&version) => Ok(Some(self.get_model_version(op, name, version)?)),
            None => Ok(None),
        }
    }

    fn delete_alias(&self, op: &'static str, name: &str, alias: &str) -> Result<()> {
        validate::alias(op, alias)?;
        let path = self.registered_dir(op, name)?.join("aliases").join(alias);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(op, &path)(e)),
        }
    }

    fn download_model_version(
        &self,
        op: &'static str,
        name: &str,
        version: u64,
        to: &Path,
    ) -> Result<()> {
        let meta = self.version_meta(op, name, version)?;
        copy_tree(op, &self.version_storage(op, &meta)?, to)
    }
}

// ---------------------------------------------------------------------------------------------

#[async_trait::async_trait]
impl Tracking for LocalTracking {
    fn backend(&self) -> &'static str {
        "local"
    }

    async fn experiment(&self, name: &str) -> Result<ExperimentId> {
        let name = name.to_owned();
        self.blocking("experiment", move |s| s.get_or_create_experiment("experiment", &name)).await
    }

    async fn create_run(
        &self,
        experiment: &ExperimentId,
        run_name: &str,
        tags: &[(String, String)],
    ) -> Result<RunId> {
        let (experiment, run_name, tags) = (experiment.clone(), run_name.to_owned(), tags.to_vec());
        self.blocking("create_run", move |s| {
            s.create_run("create_run", &experiment, &run_name, &tags)
        })
        .await
    }

    async fn log_params(&self, run: &RunId, params: &[(String, String)]) -> Result<()> {
        let (run, params) = (run.clone(), params.to_vec());
        self.blocking("log_params", move |s| {
            let dir = s.run_dir("log_params", &run)?.join("params");
            s.write_values("log_params", &dir, &params, false)
        })
        .await
    }

    async fn log_metrics(&self, run: &RunId, metrics: &[Metric]) -> Result<()> {
        let (run, metrics) = (run.clone(), metrics.to_vec());
        self.blocking("log_metrics", move |s| s.log_metrics("log_metrics", &run, &metrics)).await
    }

    async fn set_tags(&self, run: &RunId, tags: &[(String, String)]) -> Result<()> {
        let (run, tags) = (run.clone(), tags.to_vec());
        self.blocking("set_tags", move |s| {
            let dir = s.run_dir("set_tags", &run)?.join("tags");
            s.write_values("set_tags", &dir, &tags, true)
        })
        .await
    }

    async fn end_run(&self, run: &RunId, status: RunStatus) -> Result<()> {
        let run = run.clone();
        self.blocking("end_run", move |s| s.end_run("end_run", &run, status)).await
    }

    async fn get_run(&self, run: &RunId) -> Result<RunInfo> {
        let run = run.clone();
        self.blocking("get_run", move |s| s.get_run("get_run", &run)).await
    }

    async fn list_runs(
        &self,
        experiment: &ExperimentId,
        status: Option<RunStatus>,
    ) -> Result<Vec<RunInfo>> {
        let experiment = experiment.clone();
        self.blocking("list_runs", move |s| s.list_runs("list_runs", &experiment, status)).await
    }

    async fn metric_history(&self, run: &RunId, key: &str) -> Result<Vec<Metric>> {
        let (run, key) = (run.clone(), key.to_owned());
        self.blocking("metric_history", move |s| s.metric_history("metric_history", &run, &key))
            .await
    }

    async fn log_artifacts(
        &self,
        run: &RunId,
        local_dir: &Path,
        artifact_path: &str,
    ) -> Result<()> {
        let (run, from, path) = (run.clone(), local_dir.to_owned(), artifact_path.to_owned());
        self.blocking("log_artifacts", move |s| {
            let op = "log_artifacts";
            validate::artifact_path(op, &path)?;
            let to = join_rel(&s.run_dir(op, &run)?.join("artifacts"), &path);
            copy_tree(op, &from, &to)
        })
        .await
    }

    async fn download_artifacts(
        &self,
        root: &ArtifactRoot,
        path: &str,
        local_dir: &Path,
    ) -> Result<PathBuf> {
        let (root, path, to) = (root.clone(), path.to_owned(), local_dir.to_owned());
        self.blocking("download_artifacts", move |s| {
            s.download("download_artifacts", &root, &path, &to)
        })
        .await
    }

    async fn create_logged_model(
        &self,
        experiment: &ExperimentId,
        name: &str,
        source_run: Option<&RunId>,
    ) -> Result<LoggedModel> {
        let (experiment, name, run) = (experiment.clone(), name.to_owned(), source_run.cloned());
        self.blocking("create_logged_model", move |s| {
            s.create_logged_model("create_logged_model", &experiment, &name, run.as_ref())
        })
        .await
    }

    async fn log_model_artifacts(&self, model: &LoggedModelId, local_dir: &Path) -> Result<()> {
        let (model, from) = (model.clone(), local_dir.to_owned());
        self.blocking("log_model_artifacts", move |s| {
            let op = "log_model_artifacts";
            copy_tree(op, &from, &s.logged_model_dir(op, &model)?.join("artifacts"))
        })
        .await
    }

    async fn finalize_logged_model(
        &self,
        model: &LoggedModelId,
        status: LoggedModelStatus,
    ) -> Result<LoggedModel> {
        let model = model.clone();
        self.blocking("finalize_logged_model", move |s| {
            s.finalize_logged_model("finalize_logged_model", &model, status)
        })
        .await
    }

    async fn get_logged_model(&self, model: &LoggedModelId) -> Result<LoggedModel> {
        let model = model.clone();
        self.blocking("get_logged_model", move |s| s.get_logged_model("get_logged_model", &model))
            .await
    }

    async fn create_registered_model(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.blocking("create_registered_model", move |s| {
            s.create_registered_model("create_registered_model", &name)
        })
        .await
    }

    async fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run: Option<&RunId>,
        model: Option<&LoggedModelId>,
    ) -> Result<ModelVersion> {
        let (name, source, run, model) =
            (name.to_owned(), source.to_owned(), run.cloned(), model.cloned());
        self.blocking("create_model_version", move |s| {
            s.create_model_version(
                "create_model_version",
                &name,
                &source,
                run.as_ref(),
                model.as_ref(),
            )
        })
        .await
    }

    async fn get_model_version(&self, name: &str, version: u64) -> Result<ModelVersion> {
        let name = name.to_owned();
        self.blocking("get_model_version", move |s| {
            s.get_model_version("get_model_version", &name, version)
        })
        .await
    }

    async fn list_registered_models(&self) -> Result<Vec<RegisteredModel>> {
        self.blocking("list_registered_models", |s| {
            s.list_registered_models("list_registered_models")
        })
        .await
    }

    async fn list_model_versions(&self, name: &str) -> Result<Vec<ModelVersion>> {
        let name = name.to_owned();
        self.blocking("list_model_versions", move |s| {
            s.list_model_versions("list_model_versions", &name)
        })
        .await
    }

    async fn set_alias(&self, name: &str, alias: &str, version: u64) -> Result<()> {
        let (name, alias) = (name.to_owned(), alias.to_owned());
        self.blocking("set_alias", move |s| s.set_alias("set_alias", &name, &alias, version)).await
    }

    async fn get_alias(&self, name: &str, alias: &str) -> Result<Option<ModelVersion>> {
        let (name, alias) = (name.to_owned(), alias.to_owned());
        self.blocking("get_alias", move |s| s.get_alias("get_alias", &name, &alias)).await
    }

    async fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        let (name, alias) = (name.to_owned(), alias.to_owned());
        self.blocking("delete_alias", move |s| s.delete_alias("delete_alias", &name, &alias)).await
    }

    async fn download_model_version(
        &self,
        name: &str,
        version: u64,
        local_dir: &Path,
    ) -> Result<()> {
        let (name, to) = (name.to_owned(), local_dir.to_owned());
        self.blocking("download_model_version", move |s| {
            s.download_model_version("download_model_version", &name, version, &to)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn metric_values_round_trip_through_the_file_format() {
        for v in [0.0, -0.0, 1.5, 1e300, 5e-324, -1e-9, f64::MAX, f64::INFINITY, f64::NEG_INFINITY]
        {
            let parsed: f64 = format_value(v).parse().unwrap();
            assert_eq!(parsed.to_bits(), v.to_bits(), "{v}");
        }
        assert!(format_value(f64::NAN).parse::<f64>().unwrap().is_nan());
        // What MLflow's Python file store writes.
        for (text, v) in [("nan", f64::NAN), ("inf", f64::INFINITY), ("-inf", f64::NEG_INFINITY)] {
            let parsed: f64 = text.parse().unwrap();
            assert!(parsed == v || (parsed.is_nan() && v.is_nan()));
        }
    }
}
