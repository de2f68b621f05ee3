//! What the tracking port speaks: ids, metrics, runs, logged models and registry entries. The
//! same values come out of both backends.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// An experiment's id (MLflow: a decimal number as a string).
    ExperimentId
);
id_type!(
    /// A run's id: 32 lowercase hex digits, as MLflow makes them.
    RunId
);
id_type!(
    /// A logged model's id: `m-` and 32 hex digits, as MLflow 3 makes them.
    LoggedModelId
);

/// One value of a metric at a step.
///
/// Values may be NaN or infinite. NaN round-trips everywhere; MLflow's SQL store keeps ±infinity
/// as ±`f64::MAX`, the local backend keeps it as is.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    pub step: i64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

impl Metric {
    pub fn new(key: impl Into<String>, value: f64, step: i64, timestamp_ms: i64) -> Self {
        Self { key: key.into(), value, step, timestamp_ms }
    }

    /// Whether `self` comes after `other` in a metric's history: a higher step, then a later
    /// timestamp. The latest value of a metric is its last one in this order.
    pub fn is_after(&self, other: &Metric) -> bool {
        (self.step, self.timestamp_ms) >= (other.step, other.timestamp_ms)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A run's lifecycle status (MLflow's `RunStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    Running,
    Scheduled,
    Finished,
    Failed,
    Killed,
}

impl RunStatus {
    /// The name MLflow's REST API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Scheduled => "SCHEDULED",
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Killed => "KILLED",
        }
    }

    /// The number MLflow's file store writes into a run's `meta.yaml`.
    pub fn code(self) -> u8 {
        match self {
            RunStatus::Running => 1,
            RunStatus::Scheduled => 2,
            RunStatus::Finished => 3,
            RunStatus::Failed => 4,
            RunStatus::Killed => 5,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        [Self::Running, Self::Scheduled, Self::Finished, Self::Failed, Self::Killed]
            .into_iter()
            .find(|s| s.code() == code)
    }

    pub fn is_terminated(self) -> bool {
        matches!(self, RunStatus::Finished | RunStatus::Failed | RunStatus::Killed)
    }
}

/// A run as read back: its info, parameters, the latest value of each metric, and tags.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    pub run_id: RunId,
    pub experiment_id: ExperimentId,
    pub run_name: String,
    pub status: RunStatus,
    pub start_time_ms: i64,
    pub end_time_ms: Option<i64>,
    /// Where the run's artifacts live: a directory path (local) or `mlflow-artifacts:/…` (MLflow).
    pub artifact_uri: String,
    pub params: BTreeMap<String, String>,
    /// The latest value of each metric: the one with the highest step, then the latest timestamp.
    pub metrics: BTreeMap<String, Metric>,
    /// User tags and the system tags MLflow adds (`mlflow.runName`).
    pub tags: BTreeMap<String, String>,
}

/// A logged model's status (MLflow 3's `LoggedModelStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LoggedModelStatus {
    #[serde(rename = "LOGGED_MODEL_PENDING")]
    Pending,
    #[serde(rename = "LOGGED_MODEL_READY")]
    Ready,
    #[serde(rename = "LOGGED_MODEL_UPLOAD_FAILED")]
    UploadFailed,
}

impl LoggedModelStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LoggedModelStatus::Pending => "LOGGED_MODEL_PENDING",
            LoggedModelStatus::Ready => "LOGGED_MODEL_READY",
            LoggedModelStatus::UploadFailed => "LOGGED_MODEL_UPLOAD_FAILED",
        }
    }
}

/// An MLflow 3 logged model: a named artifact folder in an experiment, usually made by a run,
/// that model versions point at (`models:/<model_id>`).
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedModel {
    pub model_id: LoggedModelId,
    pub experiment_id: ExperimentId,
    pub name: String,
    pub source_run_id: Option<RunId>,
    pub status: LoggedModelStatus,
    pub artifact_uri: String,
}

impl LoggedModel {
    /// The source to register a version of this model with: `models:/<model_id>`, as MLflow's
    /// Python client does.
    pub fn model_uri(&self) -> String {
        format!("models:/{}", self.model_id)
    }
}

/// A registered model and its aliases.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredModel {
    pub name: String,
    /// Alias to version.
    pub aliases: BTreeMap<String, u64>,
    /// The highest version number, if any version exists.
    pub latest_version: Option<u64>,
}

/// One version of a registered model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelVersion {
    pub name: String,
    pub version: u64,
    /// What was registered: `models:/<model_id>`, a run's artifact URI, ...
    pub source: String,
    pub run_id: Option<RunId>,
    /// `READY` once registration finished (immediately for both backends here).
    pub status: String,
    /// The aliases pointing at this version (sorted).
    pub aliases: Vec<String>,
    pub creation_timestamp_ms: i64,
}

/// Where to download artifacts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactRoot {
    /// A run's artifact folder.
    Run(RunId),
    /// A logged model's artifact folder.
    LoggedModel(LoggedModelId),
    /// A URI as a backend reports it: a run's `artifact_uri`, a model version's `source`
    /// (`models:/<model_id>`), `runs:/<run_id>/<path>`, or (local) a directory path.
    Uri(String),
}
