//! Each backend's settings; a settings struct is its backend's factory (`connect` / `open`).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::{LocalTracking, MlflowTracking, Tracking, TrackingError};

/// The embedded backend: a directory in MLflow's file-store layout.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSettings {
    /// The directory holding `mlruns/` (experiments, runs, logged models) and `models/` (the
    /// registry). Created when missing.
    pub root: PathBuf,
}

impl Default for LocalSettings {
    fn default() -> Self {
        Self { root: PathBuf::from("sentio-data/tracking") }
    }
}

impl LocalSettings {
    pub fn open(&self) -> Result<Arc<dyn Tracking>, TrackingError> {
        Ok(Arc::new(LocalTracking::open(&self.root)?))
    }
}

/// An MLflow 3 tracking server, with artifacts served through it (`mlflow server
/// --artifacts-destination …`, the default of `mlflow server`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MlflowSettings {
    /// The server's base URL, e.g. `http://127.0.0.1:5000`.
    pub uri: String,
    /// HTTP basic-auth user; when unset (with `password`), `MLFLOW_TRACKING_USERNAME` is used.
    pub username: Option<String>,
    /// HTTP basic-auth password; when unset, `MLFLOW_TRACKING_PASSWORD` is used. Never logged.
    pub password: Option<String>,
    /// The limit for one HTTP request, an artifact upload or download included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How often a request that failed on a connection error or HTTP 408/429/5xx is retried.
    pub max_retries: u32,
    /// The first retry's delay; each next one doubles it (capped at 10 s).
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
}

impl Default for MlflowSettings {
    fn default() -> Self {
        Self {
            uri: "http://127.0.0.1:5000".to_owned(),
            username: None,
            password: None,
            timeout: Duration::from_secs(120),
            max_retries: 4,
            retry_backoff: Duration::from_millis(250),
        }
    }
}

impl fmt::Debug for MlflowSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MlflowSettings")
            .field("uri", &self.uri)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_backoff", &self.retry_backoff)
            .finish()
    }
}

impl MlflowSettings {
    pub fn new(uri: impl Into<String>) -> Self {
        Self { uri: uri.into(), ..Self::default() }
    }

    /// The client for this server. Sends nothing yet: an unreachable server shows on the first
    /// call, as [`TrackingError::Unreachable`].
    pub fn connect(&self) -> Result<Arc<dyn Tracking>, TrackingError> {
        Ok(Arc::new(MlflowTracking::new(self)?))
    }

    /// The credentials to send: these settings', else MLflow's environment variables (the
    /// convention of every MLflow client).
    pub(crate) fn credentials(&self) -> Option<(String, Option<String>)> {
        if self.username.is_some() || self.password.is_some() {
            return Some((self.username.clone().unwrap_or_default(), self.password.clone()));
        }
        let user = std::env::var("MLFLOW_TRACKING_USERNAME").ok();
        let password = std::env::var("MLFLOW_TRACKING_PASSWORD").ok();
        match (user, password) {
            (None, None) => None,
            (user, password) => Some((user.unwrap_or_default(), password)),
        }
    }
}
