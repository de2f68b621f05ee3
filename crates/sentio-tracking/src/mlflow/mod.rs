//! The MLflow backend: a typed client of MLflow 3's REST API.
//!
//! - [`wire`]: the request and response messages.
//! - [`artifacts`]: upload, listing and download through the server's `mlflow-artifacts` proxy
//!   (`mlflow server --artifacts-destination …`), so clients need nothing but HTTP.
//!
//! Requests that fail on a connection error or HTTP 408/429/5xx are retried with doubling
//! delays, [`MlflowSettings::max_retries`] times. Everything logged is split into `log-batch`
//! requests within MLflow's limits ([`crate::batch`]).

mod artifacts;
mod wire;

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::batch::{self, MAX_PARAMS, MAX_TAGS};
use crate::error::is_transient_status;
use crate::types::now_ms;
use crate::{
    ArtifactRoot, ExperimentId, LoggedModel, LoggedModelId, LoggedModelStatus, Metric,
    MlflowSettings, ModelVersion, RegisteredModel, Result, RunId, RunInfo, RunStatus, Tracking,
    TrackingError, validate,
};

use wire::*;

/// The longest delay between two tries of a request.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Page size of searches and metric histories.
const PAGE: &str = "1000";
/// [`PAGE`] as a number, for searches sent as JSON.
const PAGE_SIZE: u32 = 1000;

/// A client of an MLflow tracking server (and its model registry).
#[derive(Debug, Clone)]
pub struct MlflowTracking {
    http: reqwest::Client,
    /// The server's base URL (any path prefix kept).
    base: Url,
    credentials: Option<Credentials>,
    max_retries: u32,
    retry_backoff: Duration,
}

impl MlflowTracking {
    pub fn new(settings: &MlflowSettings) -> Result<Self> {
        let op = "connect";
        let base =
            Url::parse(settings.uri.trim_end_matches('/')).map_err(|e| TrackingError::Invalid {
                op,
                what: format!("tracking.mlflow.uri {:?}", settings.uri),
                reason: e.to_string(),
            })?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(TrackingError::Invalid {
                op,
                what: format!("tracking.mlflow.uri {:?}", settings.uri),
                reason: "expected an http:// or https:// URL".to_owned(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("sentio-tracking/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| TrackingError::Client { op, source })?;
        Ok(Self {
            http,
            base,
            credentials: settings
                .credentials()
                .map(|(user, password)| Credentials { user, password }),
            max_retries: settings.max_retries,
            retry_backoff: settings.retry_backoff,
        })
    }

    /// The server's base URL.
    pub fn uri(&self) -> &str {
        self.base.as_str()
    }

    /// `<base>/<segments…>`, each segment percent-encoded.
    fn url<'a>(&self, segments: impl IntoIterator<Item = &'a str>) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// `<base>/api/2.0/mlflow/<endpoint>`.
    fn api(&self, endpoint: &str) -> Url {
        self.url(["api", "2.0", "mlflow"].into_iter().chain(endpoint.split('/')))
    }

    /// Sends the request `build` makes, retrying transient failures; returns a successful
    /// response or the error the server answered with.
    async fn send(&self, op: &'static str, build: impl Fn() -> RequestBuilder) -> Result<Response> {
        let mut attempt = 0;
        loop {
            let mut request = build();
            if let Some(Credentials { user, password }) = &self.credentials {
                request = request.basic_auth(user, password.as_ref());
            }
            let failure = match request.send().await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let error = http_error(op, response).await;
                    if !is_transient_status(status) || attempt >= self.max_retries {
                        return Err(error);
                    }
                    error
                }
                Err(source) if source.is_builder() => {
                    return Err(TrackingError::Client { op, source });
                }
                Err(source) => {
                    let error =
                        TrackingError::Unreachable { op, uri: self.base.to_string(), source };
                    if attempt >= self.max_retries {
                        return Err(error);
                    }
                    error
                }
            };
            let delay = self.retry_backoff.saturating_mul(1 << attempt.min(16)).min(MAX_BACKOFF);
            tracing::debug!(op, attempt, ?delay, error = %failure, "retrying MLflow request");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn decode<T: DeserializeOwned>(&self, op: &'static str, response: Response) -> Result<T> {
        let bytes = response.bytes().await.map_err(|source| TrackingError::Unreachable {
            op,
            uri: self.base.to_string(),
            source,
        })?;
        let bytes = if bytes.iter().all(u8::is_ascii_whitespace) { &b"{}"[..] } else { &bytes };
        serde_json::from_slice(bytes).map_err(|source| TrackingError::Decode { op, source })
    }

    async fn get<T: DeserializeOwned>(
        &self,
        op: &'static str,
        endpoint: &str,
        query: &[(&str, &str)],
    ) -> Result<T> {
        let url = self.api(endpoint);
        let response = self.send(op, || self.http.get(url.clone()).query(query)).await?;
        self.decode(op, response).await
    }

    async fn call<B: Serialize + Sync, T: DeserializeOwned>(
        &self,
        op: &'static str,
        method: Method,
        endpoint: &str,
        body: &B,
    ) -> Result<T> {
        let url = self.api(endpoint);
        let response =
            self.send(op, || self.http.request(method.clone(), url.clone()).json(body)).await?;
        self.decode(op, response).await
    }

    async fn post<B: Serialize + Sync, T: DeserializeOwned>(
        &self,
        op: &'static str,
        endpoint: &str,
        body: &B,
    ) -> Result<T> {
        self.call(op, Method::POST, endpoint, body).await
    }

    async fn log_batch(&self, op: &'static str, batch: LogBatch<'_>) -> Result<()> {
        self.post::<_, Empty>(op, "runs/log-batch", &batch).await.map(drop)
    }

    async fn run(&self, op: &'static str, run: &RunId) -> Result<Run> {
        let response: RunResponse = self.get(op, "runs/get", &[("run_id", run.as_str())]).await?;
        Ok(response.run)
    }

    async fn logged_model(&self, op: &'static str, model: &LoggedModelId) -> Result<LoggedModel> {
        validate::id(op, "logged model id", model.as_str())?;
        let response: LoggedModelResponse =
            self.get(op, &format!("logged-models/{model}"), &[]).await?;
        Ok(response.model.info.into())
    }

    async fn registered_model(&self, op: &'static str, name: &str) -> Result<RegisteredModelJson> {
        let response: RegisteredModelResponse =
            self.get(op, "registered-models/get", &[("name", name)]).await?;
        Ok(response.registered_model)
    }

    /// The artifact URI (as the server writes it) an [`ArtifactRoot`] stands for.
    async fn resolve_root(&self, op: &'static str, root: &ArtifactRoot) -> Result<String> {
        match root {
            ArtifactRoot::Run(run) => Ok(self.run(op, run).await?.info.artifact_uri),
            ArtifactRoot::LoggedModel(model) => {
                Ok(self.logged_model(op, model).await?.artifact_uri)
            }
            ArtifactRoot::Uri(uri) => {
                if let Some(model) = uri.strip_prefix("models:/").filter(|m| m.starts_with("m-")) {
                    let model = LoggedModelId::new(model.trim_end_matches('/'));
                    return Ok(self.logged_model(op, &model).await?.artifact_uri);
                }
                if let Some(rest) = uri.strip_prefix("runs:/") {
                    let (run, path) = rest.split_once('/').unwrap_or((rest, ""));
                    validate::artifact_path(op, path)?;
                    let base = self.run(op, &RunId::new(run)).await?.info.artifact_uri;
                    return Ok(artifacts::join(&base, path));
                }
                Ok(uri.clone())
            }
        }
    }
}

/// Basic-auth user and password; `Debug` shows neither.
#[derive(Clone)]
struct Credentials {
    user: String,
    password: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

/// The error a non-success response stands for, with MLflow's `error_code` and `message`.
async fn http_error(op: &'static str, response: Response) -> TrackingError {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(ErrorBody { error_code, message }) => TrackingError::Http {
            op,
            status,
            code: error_code,
            message: message.unwrap_or_default(),
        },
        Err(_) => TrackingError::Http {
            op,
            status,
            code: None,
            message: text.chars().take(500).collect(),
        },
    }
}

/// A run as the port speaks it.
fn run_info(Run { info, data }: Run) -> RunInfo {
    RunInfo {
        run_id: RunId::new(info.run_id),
        experiment_id: ExperimentId::new(info.experiment_id),
        run_name: info.run_name,
        status: info.status,
        start_time_ms: info.start_time,
        end_time_ms: info.end_time.filter(|t| *t > 0),
        artifact_uri: info.artifact_uri,
        params: data.params.into_iter().map(|p| (p.key, p.value)).collect(),
        metrics: data.metrics.into_iter().map(|m| (m.key.clone(), Metric::from(m))).collect(),
        tags: data.tags.into_iter().map(|t| (t.key, t.value)).collect(),
    }
}

/// A single-quoted string for a search filter.
fn filter_string(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[async_trait::async_trait]
impl Tracking for MlflowTracking {
    fn backend(&self) -> &'static str {
        "mlflow"
    }

    async fn experiment(&self, name: &str) -> Result<ExperimentId> {
        let op = "experiment";
        for _ in 0..2 {
            match self
                .get::<GetExperimentResponse>(
                    op,
                    "experiments/get-by-name",
                    &[("experiment_name", name)],
                )
                .await
            {
                Ok(found) => {
                    let id = found.experiment.experiment_id;
                    if found.experiment.lifecycle_stage == "deleted" {
                        self.post::<_, Empty>(
                            op,
                            "experiments/restore",
                            &ExperimentRef { experiment_id: &id },
                        )
                        .await?;
                    }
                    return Ok(ExperimentId::new(id));
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            match self
                .post::<_, CreateExperimentResponse>(
                    op,
                    "experiments/create",
                    &CreateExperiment { name },
                )
                .await
            {
                Ok(created) => return Ok(ExperimentId::new(created.experiment_id)),
                // Another client created it in between: look it up again.
                Err(e) if e.is_already_exists() => {}
                Err(e) => return Err(e),
            }
        }
        Err(TrackingError::NotFound {
            op,
            what: format!("experiment {name:?} (created, then gone)"),
        })
    }

    async fn create_run(
        &self,
        experiment: &ExperimentId,
        run_name: &str,
        tags: &[(String, String)],
    ) -> Result<RunId> {
        let op = "create_run";
        let (first, rest) = tags.split_at(tags.len().min(MAX_TAGS));
        let body = CreateRun {
            experiment_id: experiment.as_str(),
            run_name,
            start_time: now_ms(),
            tags: key_values(first),
        };
        let response: RunResponse = self.post(op, "runs/create", &body).await?;
        let run = RunId::new(response.run.info.run_id);
        if !rest.is_empty() {
            self.set_tags(&run, rest).await?;
        }
        Ok(run)
    }

    async fn log_params(&self, run: &RunId, params: &[(String, String)]) -> Result<()> {
        for chunk in batch::pair_chunks(params, MAX_PARAMS) {
            let body =
                LogBatch { run_id: run.as_str(), params: key_values(chunk), ..LogBatch::default() };
            self.log_batch("log_params", body).await?;
        }
        Ok(())
    }

    async fn log_metrics(&self, run: &RunId, metrics: &[Metric]) -> Result<()> {
        for chunk in batch::metric_chunks(metrics) {
            let body = LogBatch {
                run_id: run.as_str(),
                metrics: chunk.iter().map(MetricJson::from).collect(),
                ..LogBatch::default()
            };
            self.log_batch("log_metrics", body).await?;
        }
        Ok(())
    }

    async fn set_tags(&self, run: &RunId, tags: &[(String, String)]) -> Result<()> {
        for chunk in batch::pair_chunks(tags, MAX_TAGS) {
            let body =
                LogBatch { run_id: run.as_str(), tags: key_values(chunk), ..LogBatch::default() };
            self.log_batch("set_tags", body).await?;
        }
        Ok(())
    }

    async fn end_run(&self, run: &RunId, status: RunStatus) -> Result<()> {
        let body = UpdateRun {
            run_id: run.as_str(),
            status,
            end_time: status.is_terminated().then(now_ms),
        };
        self.post::<_, Empty>("end_run", "runs/update", &body).await.map(drop)
    }

    async fn get_run(&self, run: &RunId) -> Result<RunInfo> {
        Ok(run_info(self.run("get_run", run).await?))
    }

    async fn list_runs(
        &self,
        experiment: &ExperimentId,
        status: Option<RunStatus>,
    ) -> Result<Vec<RunInfo>> {
        let op = "list_runs";
        let filter = status
            .map(|s| format!("attributes.status = {}", filter_string(s.as_str())))
            .unwrap_or_default();
        let mut out: Vec<RunInfo> = Vec::new();
        let mut token = String::new();
        loop {
            let body = SearchRuns {
                experiment_ids: [experiment.as_str()],
                filter: filter.clone(),
                run_view_type: "ACTIVE_ONLY",
                max_results: PAGE_SIZE,
                page_token: &token,
            };
            let page: SearchRunsResponse = self.post(op, "runs/search", &body).await?;
            out.extend(page.runs.into_iter().map(run_info));
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) => token = next,
                None => break,
            }
        }
        out.sort_by(|a, b| (a.start_time_ms, &a.run_id).cmp(&(b.start_time_ms, &b.run_id)));
        Ok(out)
    }

    async fn metric_history(&self, run: &RunId, key: &str) -> Result<Vec<Metric>> {
        let op = "metric_history";
        let mut out: Vec<Metric> = Vec::new();
        let mut token = String::new();
        loop {
            let mut query =
                vec![("run_id", run.as_str()), ("metric_key", key), ("max_results", PAGE)];
            if !token.is_empty() {
                query.push(("page_token", &token));
            }
            let page: MetricHistoryResponse = self.get(op, "metrics/get-history", &query).await?;
            out.extend(page.metrics.into_iter().map(Metric::from));
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) => token = next,
                None => break,
            }
        }
        out.sort_by_key(|m| (m.step, m.timestamp_ms));
        Ok(out)
    }

    async fn log_artifacts(
        &self,
        run: &RunId,
        local_dir: &Path,
        artifact_path: &str,
    ) -> Result<()> {
        let op = "log_artifacts";
        validate::artifact_path(op, artifact_path)?;
        let root = self.run(op, run).await?.info.artifact_uri;
        self.upload_tree(op, &artifacts::join(&root, artifact_path), local_dir).await
    }

    async fn download_artifacts(
        &self,
        root: &ArtifactRoot,
        path: &str,
        local_dir: &Path,
    ) -> Result<PathBuf> {
        let op = "download_artifacts";
        validate::artifact_path(op, path)?;
        let root = self.resolve_root(op, root).await?;
        self.download_tree(op, &root, path, local_dir).await
    }

    async fn create_logged_model(
        &self,
        experiment: &ExperimentId,
        name: &str,
        source_run: Option<&RunId>,
    ) -> Result<LoggedModel> {
        let body = CreateLoggedModel {
            experiment_id: experiment.as_str(),
            name,
            source_run_id: source_run.map(RunId::as_str),
        };
        let response: LoggedModelResponse =
            self.post("create_logged_model", "logged-models", &body).await?;
        Ok(response.model.info.into())
    }

    async fn log_model_artifacts(&self, model: &LoggedModelId, local_dir: &Path) -> Result<()> {
        let op = "log_model_artifacts";
        let root = self.logged_model(op, model).await?.artifact_uri;
        self.upload_tree(op, &root, local_dir).await
    }

    async fn finalize_logged_model(
        &self,
        model: &LoggedModelId,
        status: LoggedModelStatus,
    ) -> Result<LoggedModel> {
        let op = "finalize_logged_model";
        validate::id(op, "logged model id", model.as_str())?;
        let body = FinalizeLoggedModel { model_id: model.as_str(), status };
        let response: LoggedModelResponse =
            self.call(op, Method::PATCH, &format!("logged-models/{model}"), &body).await?;
        let logged: LoggedModel = response.model.info.into();
        if let (LoggedModelStatus::Ready, Some(run)) = (status, &logged.source_run_id) {
            let outputs = LogOutputs {
                run_id: run.as_str(),
                models: [ModelOutput { model_id: model.as_str(), step: 0 }],
            };
            self.post::<_, Empty>(op, "runs/outputs", &outputs).await?;
        }
        Ok(logged)
    }

    async fn get_logged_model(&self, model: &LoggedModelId) -> Result<LoggedModel> {
        self.logged_model("get_logged_model", model).await
    }

    async fn create_registered_model(&self, name: &str) -> Result<()> {
        match self
            .post::<_, Empty>("create_registered_model", "registered-models/create", &Name { name })
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_already_exists() => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run: Option<&RunId>,
        model: Option<&LoggedModelId>,
    ) -> Result<ModelVersion> {
        let body = CreateModelVersion {
            name,
            source,
            run_id: run.map(RunId::as_str),
            model_id: model.map(LoggedModelId::as_str),
        };
        let response: ModelVersionResponse =
            self.post("create_model_version", "model-versions/create", &body).await?;
        Ok(response.model_version.into())
    }

    async fn get_model_version(&self, name: &str, version: u64) -> Result<ModelVersion> {
        let version = version.to_string();
        let response: ModelVersionResponse = self
            .get(
                "get_model_version",
                "model-versions/get",
                &[("name", name), ("version", &version)],
            )
            .await?;
        Ok(response.model_version.into())
    }

    async fn list_registered_models(&self) -> Result<Vec<RegisteredModel>> {
        let op = "list_registered_models";
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut query = vec![("max_results", PAGE)];
            if !token.is_empty() {
                query.push(("page_token", &token));
            }
            let page: SearchRegisteredModelsResponse =
                self.get(op, "registered-models/search", &query).await?;
            out.extend(page.registered_models.into_iter().map(|m| RegisteredModel {
                latest_version: m.latest_versions.iter().map(|v| v.version).max(),
                aliases: m.aliases.into_iter().map(|a| (a.alias, a.version)).collect(),
                name: m.name,
            }));
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) => token = next,
                None => break,
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn list_model_versions(&self, name: &str) -> Result<Vec<ModelVersion>> {
        let op = "list_model_versions";
        // A missing model is an error here, as in the local backend (a search finds nothing).
        self.registered_model(op, name).await?;
        let filter = format!("name = {}", filter_string(name));
        let mut out: Vec<ModelVersion> = Vec::new();
        let mut token = String::new();
        loop {
            let mut query = vec![("filter", filter.as_str()), ("max_results", PAGE)];
            if !token.is_empty() {
                query.push(("page_token", &token));
            }
            let page: SearchModelVersionsResponse =
                self.get(op, "model-versions/search", &query).await?;
            out.extend(page.model_versions.into_iter().map(ModelVersion::from));
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) => token = next,
                None => break,
            }
        }
        // Search results carry no aliases: take them from the registered model.
        let aliases = self.registered_model(op, name).await?.aliases;
        for v in &mut out {
            v.aliases = aliases
                .iter()
                .filter(|a| a.version == v.version)
                .map(|a| a.alias.clone())
                .collect();
            v.aliases.sort();
        }
        out.sort_by_key(|v| v.version);
        Ok(out)
    }

    async fn set_alias(&self, name: &str, alias: &str, version: u64) -> Result<()> {
        let body = SetAlias { name, alias, version: version.to_string() };
        self.post::<_, Empty>("set_alias", "registered-models/alias", &body).await.map(drop)
    }

    async fn get_alias(&self, name: &str, alias: &str) -> Result<Option<ModelVersion>> {
        let op = "get_alias";
        // MLflow answers a missing alias with a generic INVALID_PARAMETER_VALUE; the registered
        // model's alias list tells it apart without reading messages.
        let model = self.registered_model(op, name).await?;
        if !model.aliases.iter().any(|a| a.alias == alias) {
            return Ok(None);
        }
        let response: ModelVersionResponse =
            self.get(op, "registered-models/alias", &[("name", name), ("alias", alias)]).await?;
        Ok(Some(response.model_version.into()))
    }

    async fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        let op = "delete_alias";
        let model = self.registered_model(op, name).await?;
        if !model.aliases.iter().any(|a| a.alias == alias) {
            return Ok(());
        }
        let body = DeleteAlias { name, alias };
        self.call::<_, Empty>(op, Method::DELETE, "registered-models/alias", &body).await.map(drop)
    }

    async fn download_model_version(
        &self,
        name: &str,
        version: u64,
        local_dir: &Path,
    ) -> Result<()> {
        let op = "download_model_version";
        let version = version.to_string();
        let response: DownloadUriResponse = self
            .get(op, "model-versions/get-download-uri", &[("name", name), ("version", &version)])
            .await?;
        let root = self.resolve_root(op, &ArtifactRoot::Uri(response.artifact_uri)).await?;
        self.download_tree(op, &root, "", local_dir).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn urls_keep_a_path_prefix_and_encode_segments() {
        let client = MlflowTracking::new(&MlflowSettings::new("http://h:5000/prefix/")).unwrap();
        assert_eq!(client.api("runs/get").as_str(), "http://h:5000/prefix/api/2.0/mlflow/runs/get");
        let plain = MlflowTracking::new(&MlflowSettings::new("http://h:5000")).unwrap();
        assert_eq!(plain.api("runs/get").as_str(), "http://h:5000/api/2.0/mlflow/runs/get");
        assert_eq!(plain.url(["a b", "c#d"]).as_str(), "http://h:5000/a%20b/c%23d");
        assert!(MlflowTracking::new(&MlflowSettings::new("file:///x")).is_err());
    }

    #[test]
    fn filter_strings_are_quoted() {
        assert_eq!(filter_string("a'b"), r"'a\'b'");
    }

    #[test]
    fn the_password_never_shows_in_debug() {
        let mut settings = MlflowSettings::new("http://h");
        settings.username = Some("u".to_owned());
        settings.password = Some("hunter2".to_owned());
        assert!(!format!("{settings:?}").contains("hunter2"));
        let client = MlflowTracking::new(&settings).unwrap();
        assert!(!format!("{client:?}").contains("hunter2"));
    }
}
