//! [`TrackingError`]: every failure of this crate, naming the operation.

use std::path::PathBuf;

/// MLflow's `error_code` for a missing entity.
pub(crate) const RESOURCE_DOES_NOT_EXIST: &str = "RESOURCE_DOES_NOT_EXIST";
/// MLflow's `error_code` when creating something that exists.
pub(crate) const RESOURCE_ALREADY_EXISTS: &str = "RESOURCE_ALREADY_EXISTS";

/// Everything that can go wrong in this crate. `op` names the operation (`log_metrics`,
/// `create_model_version`, ...); causes stay in `#[source]`, so `{:#}` prints each once.
#[derive(Debug, thiserror::Error)]
pub enum TrackingError {
    #[error(
        "tracking {op}: cannot reach the MLflow server at {uri}; start it with \
         `scripts/services.sh up` or check tracking.mlflow.uri"
    )]
    Unreachable {
        op: &'static str,
        uri: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "tracking {op}: MLflow answered HTTP {status}{}: {message}",
        code.as_ref().map(|c| format!(" {c}")).unwrap_or_default()
    )]
    Http {
        op: &'static str,
        status: u16,
        /// MLflow's `error_code` (`RESOURCE_DOES_NOT_EXIST`, `INVALID_PARAMETER_VALUE`, ...).
        code: Option<String>,
        /// MLflow's `message`, or the start of the body when it sent no JSON error.
        message: String,
    },
    #[error("tracking {op}: unexpected answer from MLflow")]
    Decode {
        op: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("tracking {op}: invalid MLflow client settings")]
    Client {
        op: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("tracking {op}: {what} not found")]
    NotFound { op: &'static str, what: String },
    #[error("tracking {op}: invalid {what}: {reason}")]
    Invalid { op: &'static str, what: String, reason: String },
    #[error("tracking {op}: cannot use artifact URI {uri:?}: {reason}")]
    ArtifactUri { op: &'static str, uri: String, reason: &'static str },
    #[error("tracking {op}: I/O on {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tracking {op}: cannot parse {}", path.display())]
    Yaml {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("tracking {op}: the blocking task failed")]
    Task {
        op: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl TrackingError {
    /// Whether the thing asked for does not exist (a run, a model version, an artifact...).
    pub fn is_not_found(&self) -> bool {
        match self {
            TrackingError::NotFound { .. } => true,
            TrackingError::Http { status, code, .. } => {
                *status == 404 || code.as_deref() == Some(RESOURCE_DOES_NOT_EXIST)
            }
            _ => false,
        }
    }

    /// Whether it failed because the thing to create exists already.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, TrackingError::Http { code: Some(c), .. } if c == RESOURCE_ALREADY_EXISTS)
    }

    /// Whether retrying later may succeed: the server was unreachable or overloaded.
    pub fn is_transient(&self) -> bool {
        match self {
            TrackingError::Unreachable { .. } => true,
            TrackingError::Http { status, .. } => is_transient_status(*status),
            _ => false,
        }
    }
}

/// The HTTP statuses that MLflow's Python client retries too.
pub(crate) fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}
