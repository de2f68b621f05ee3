//! Experiment tracking and the model registry: the port is `Arc<dyn Tracking>`, backed by a local
//! directory in MLflow's file-store layout (embedded default) or an MLflow 3 server over REST.
//!
//! - [`types`]: ids, [`Metric`], [`RunInfo`], [`LoggedModel`], [`ModelVersion`], ...
//! - [`error`]: [`TrackingError`], naming the operation and, for HTTP, MLflow's error code.
//! - [`settings`]: [`LocalSettings`] and [`MlflowSettings`], each backend's factory.
//! - [`batch`]: splits what a call logs into requests within MLflow's `log-batch` limits.
//! - [`validate`]: the names MLflow accepts (keys, model names, aliases).
//! - [`local`]: [`LocalTracking`], `<root>/mlruns/…` and `<root>/models/…` as plain files.
//! - [`mlflow`]: [`MlflowTracking`], the typed REST client (with artifacts through the server's
//!   `mlflow-artifacts` proxy).
//! - `contract` (feature `testkit`): `check_tracking`, the suite every backend must pass.

pub mod batch;
#[cfg(feature = "testkit")]
pub mod contract;
pub mod error;
pub mod local;
pub mod mlflow;
pub mod settings;
pub mod types;
pub mod validate;

use std::path::{Path, PathBuf};

pub use error::TrackingError;
pub use local::LocalTracking;
pub use mlflow::MlflowTracking;
pub use settings::{LocalSettings, MlflowSettings};
pub use types::{
    ArtifactRoot, ExperimentId, LoggedModel, LoggedModelId, LoggedModelStatus, Metric,
    ModelVersion, RegisteredModel, RunId, RunInfo, RunStatus, now_ms,
};

pub type Result<T, E = TrackingError> = std::result::Result<T, E>;

/// Experiment tracking and the model registry, as MLflow defines them.
///
/// Keys of params, metrics and tags: letters, digits, `_ - . /` and spaces, no `..` (MLflow's
/// rule). Param values cannot change once logged; logging the same value again is fine.
#[async_trait::async_trait]
pub trait Tracking: Send + Sync {
    /// `"local"` or `"mlflow"`.
    fn backend(&self) -> &'static str;

    /// The experiment called `name`, created when missing.
    async fn experiment(&self, name: &str) -> Result<ExperimentId>;

    /// Starts a run (status RUNNING) in `experiment`.
    async fn create_run(
        &self,
        experiment: &ExperimentId,
        run_name: &str,
        tags: &[(String, String)],
    ) -> Result<RunId>;

    async fn log_params(&self, run: &RunId, params: &[(String, String)]) -> Result<()>;

    /// Logs any number of metric values (chunked into MLflow's request limits).
    async fn log_metrics(&self, run: &RunId, metrics: &[Metric]) -> Result<()>;

    /// Sets tags, overwriting values of existing keys.
    async fn set_tags(&self, run: &RunId, tags: &[(String, String)]) -> Result<()>;

    /// Ends a run with `status` (FINISHED, FAILED or KILLED).
    async fn end_run(&self, run: &RunId, status: RunStatus) -> Result<()>;

    async fn get_run(&self, run: &RunId) -> Result<RunInfo>;

    /// The runs of `experiment` (deleted ones left out), only those with `status` when given,
    /// ordered by start time, then run id.
    async fn list_runs(
        &self,
        experiment: &ExperimentId,
        status: Option<RunStatus>,
    ) -> Result<Vec<RunInfo>>;

    /// Every value logged for `key`, ordered by step, then timestamp (empty when none).
    async fn metric_history(&self, run: &RunId, key: &str) -> Result<Vec<Metric>>;

    /// Uploads the files under `local_dir` (recursively) to `artifact_path` in the run's
    /// artifacts (`""` for its root). Empty folders are not kept.
    async fn log_artifacts(&self, run: &RunId, local_dir: &Path, artifact_path: &str)
    -> Result<()>;

    /// Downloads `path` (`""` for everything) under `root` into `local_dir`: a folder's contents
    /// land directly in `local_dir`, a file as `local_dir/<file name>`. Returns that local path.
    async fn download_artifacts(
        &self,
        root: &ArtifactRoot,
        path: &str,
        local_dir: &Path,
    ) -> Result<PathBuf>;

    /// Creates a logged model (status PENDING) in `experiment`, made by `source_run`.
    async fn create_logged_model(
        &self,
        experiment: &ExperimentId,
        name: &str,
        source_run: Option<&RunId>,
    ) -> Result<LoggedModel>;

    /// Uploads the files under `local_dir` (recursively) to the logged model's artifact root.
    async fn log_model_artifacts(&self, model: &LoggedModelId, local_dir: &Path) -> Result<()>;

    /// Marks the logged model READY (or UPLOAD_FAILED).
    async fn finalize_logged_model(
        &self,
        model: &LoggedModelId,
        status: LoggedModelStatus,
    ) -> Result<LoggedModel>;

    async fn get_logged_model(&self, model: &LoggedModelId) -> Result<LoggedModel>;

    /// Creates the registered model `name`; succeeds when it exists already.
    async fn create_registered_model(&self, name: &str) -> Result<()>;

    /// Registers a new version of `name` (numbered 1, 2, ...) pointing at `source`: usually
    /// [`LoggedModel::model_uri`] with the logged model's run and id, as MLflow's Python client
    /// registers models.
    async fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run: Option<&RunId>,
        model: Option<&LoggedModelId>,
    ) -> Result<ModelVersion>;

    async fn get_model_version(&self, name: &str, version: u64) -> Result<ModelVersion>;

    /// Every registered model, sorted by name.
    async fn list_registered_models(&self) -> Result<Vec<RegisteredModel>>;

    /// Every version of `name`, sorted by version.
    async fn list_model_versions(&self, name: &str) -> Result<Vec<ModelVersion>>;

    /// Points `alias` (e.g. `champion`) at `version`, moving it from where it pointed before.
    async fn set_alias(&self, name: &str, alias: &str, version: u64) -> Result<()>;

    /// The version `alias` points at, or `None` when the alias is not set.
    async fn get_alias(&self, name: &str, alias: &str) -> Result<Option<ModelVersion>>;

    /// Removes `alias`; succeeds when it is not set.
    async fn delete_alias(&self, name: &str, alias: &str) -> Result<()>;

    /// Downloads every artifact of a model version into `local_dir` (its `MLmodel` lands at
    /// `local_dir/MLmodel`).
    async fn download_model_version(
        &self,
        name: &str,
        version: u64,
        local_dir: &Path,
    ) -> Result<()>;
}
