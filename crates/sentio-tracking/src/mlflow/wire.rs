//! MLflow's REST messages (protobuf JSON): what is sent and what is read back.
//!
//! Protobuf JSON writes a double's NaN and infinities as the strings `"NaN"`, `"Infinity"` and
//! `"-Infinity"`, and may write 64-bit integers as strings; both are read here.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use crate::{
    ExperimentId, LoggedModel, LoggedModelId, LoggedModelStatus, Metric, ModelVersion, RunId,
    RunStatus,
};

// ---------------------------------------------------------------------------------------------
// numbers

/// A double as protobuf JSON writes it: NaN and the infinities as strings.
pub(crate) fn serialize_f64<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
    if value.is_nan() {
        s.serialize_str("NaN")
    } else if value.is_infinite() {
        s.serialize_str(if *value > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        s.serialize_f64(*value)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Float(f64),
    Int(i64),
    Text(String),
}

fn deserialize_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    match NumberOrString::deserialize(d)? {
        NumberOrString::Float(v) => Ok(v),
        NumberOrString::Int(v) => Ok(v as f64),
        NumberOrString::Text(t) => match t.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other.parse().map_err(de::Error::custom),
        },
    }
}

fn deserialize_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match NumberOrString::deserialize(d)? {
        NumberOrString::Int(v) => Ok(v),
        NumberOrString::Float(v) if v.fract() == 0.0 => Ok(v as i64),
        NumberOrString::Float(v) => Err(de::Error::custom(format!("{v} is not an integer"))),
        NumberOrString::Text(t) => t.parse().map_err(de::Error::custom),
    }
}

fn deserialize_opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    deserialize_i64(d).map(Some)
}

/// An optional id where the server writes `""` for none.
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

// ---------------------------------------------------------------------------------------------
// errors

/// MLflow's error body.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    pub error_code: Option<String>,
    pub message: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// experiments and runs

#[derive(Debug, Deserialize)]
pub(crate) struct GetExperimentResponse {
    pub experiment: Experiment,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Experiment {
    pub experiment_id: String,
    #[serde(default)]
    pub lifecycle_stage: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct CreateExperiment<'a> {
    pub name: &'a str,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CreateExperimentResponse {
    pub experiment_id: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct ExperimentRef<'a> {
    pub experiment_id: &'a str,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct KeyValue {
    pub key: String,
    pub value: String,
}

pub(crate) fn key_values(pairs: &[(String, String)]) -> Vec<KeyValue> {
    pairs.iter().map(|(key, value)| KeyValue { key: key.clone(), value: value.clone() }).collect()
}

#[derive(Debug, Serialize)]
pub(crate) struct CreateRun<'a> {
    pub experiment_id: &'a str,
    pub run_name: &'a str,
    pub start_time: i64,
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RunResponse {
    pub run: Run,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Run {
    pub info: RunInfo,
    #[serde(default)]
    pub data: RunData,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RunInfo {
    pub run_id: String,
    pub experiment_id: String,
    #[serde(default)]
    pub run_name: String,
    pub status: RunStatus,
    #[serde(default, deserialize_with = "deserialize_i64")]
    pub start_time: i64,
    #[serde(default, deserialize_with = "deserialize_opt_i64")]
    pub end_time: Option<i64>,
    #[serde(default)]
    pub artifact_uri: String,
}

/// `runs/search`.
#[derive(Debug, Serialize)]
pub(crate) struct SearchRuns<'a> {
    pub experiment_ids: [&'a str; 1],
    #[serde(skip_serializing_if = "String::is_empty")]
    pub filter: String,
    pub run_view_type: &'static str,
    pub max_results: u32,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub page_token: &'a str,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SearchRunsResponse {
    #[serde(default)]
    pub runs: Vec<Run>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RunData {
    #[serde(default)]
    pub metrics: Vec<MetricJson>,
    #[serde(default)]
    pub params: Vec<KeyValue>,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MetricJson {
    pub key: String,
    #[serde(serialize_with = "serialize_f64", deserialize_with = "deserialize_f64")]
    pub value: f64,
    #[serde(default, deserialize_with = "deserialize_i64")]
    pub timestamp: i64,
    #[serde(default, deserialize_with = "deserialize_i64")]
    pub step: i64,
}

impl From<&Metric> for MetricJson {
    fn from(m: &Metric) -> Self {
        Self { key: m.key.clone(), value: m.value, timestamp: m.timestamp_ms, step: m.step }
    }
}

impl From<MetricJson> for Metric {
    fn from(m: MetricJson) -> Self {
        Metric { key: m.key, value: m.value, step: m.step, timestamp_ms: m.timestamp }
    }
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct LogBatch<'a> {
    pub run_id: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricJson>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<KeyValue>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Serialize)]
pub(crate) struct UpdateRun<'a> {
    pub run_id: &'a str,
    pub status: RunStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct MetricHistoryResponse {
    #[serde(default)]
    pub metrics: Vec<MetricJson>,
    pub next_page_token: Option<String>,
}

/// Any response whose content is not needed (`{}`).
#[derive(Debug, Deserialize)]
pub(crate) struct Empty {}

// ---------------------------------------------------------------------------------------------
// logged models

#[derive(Debug, Serialize)]
pub(crate) struct CreateLoggedModel<'a> {
    pub experiment_id: &'a str,
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_run_id: Option<&'a str>,
}

/// `runs/outputs`: links a logged model to the run that produced it (the run page's "Logged
/// models"), as MLflow's Python client does after `log_model`.
#[derive(Debug, Serialize)]
pub(crate) struct LogOutputs<'a> {
    pub run_id: &'a str,
    pub models: [ModelOutput<'a>; 1],
}

#[derive(Debug, Serialize)]
pub(crate) struct ModelOutput<'a> {
    pub model_id: &'a str,
    pub step: i64,
}

#[derive(Debug, Serialize)]
pub(crate) struct FinalizeLoggedModel<'a> {
    pub model_id: &'a str,
    pub status: LoggedModelStatus,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoggedModelResponse {
    pub model: LoggedModelJson,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoggedModelJson {
    pub info: LoggedModelInfo,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoggedModelInfo {
    pub model_id: String,
    pub experiment_id: String,
    #[serde(default)]
    pub name: String,
    pub source_run_id: Option<String>,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub artifact_uri: String,
}

impl From<LoggedModelInfo> for LoggedModel {
    fn from(info: LoggedModelInfo) -> Self {
        let status = match info.status.as_str() {
            "LOGGED_MODEL_READY" => LoggedModelStatus::Ready,
            "LOGGED_MODEL_UPLOAD_FAILED" => LoggedModelStatus::UploadFailed,
            _ => LoggedModelStatus::Pending,
        };
        LoggedModel {
            model_id: LoggedModelId::new(info.model_id),
            experiment_id: ExperimentId::new(info.experiment_id),
            name: info.name,
            source_run_id: non_empty(info.source_run_id).map(RunId::new),
            status,
            artifact_uri: info.artifact_uri,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// registry

#[derive(Debug, Serialize)]
pub(crate) struct Name<'a> {
    pub name: &'a str,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RegisteredModelResponse {
    pub registered_model: RegisteredModelJson,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RegisteredModelJson {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<AliasJson>,
    #[serde(default)]
    pub latest_versions: Vec<ModelVersionJson>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AliasJson {
    pub alias: String,
    #[serde(deserialize_with = "deserialize_version")]
    pub version: u64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SearchRegisteredModelsResponse {
    #[serde(default)]
    pub registered_models: Vec<RegisteredModelJson>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct CreateModelVersion<'a> {
    pub name: &'a str,
    pub source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ModelVersionResponse {
    pub model_version: ModelVersionJson,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ModelVersionJson {
    pub name: String,
    #[serde(deserialize_with = "deserialize_version")]
    pub version: u64,
    #[serde(default)]
    pub source: String,
    pub run_id: Option<String>,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default, deserialize_with = "deserialize_i64")]
    pub creation_timestamp: i64,
}

/// A version number: MLflow writes it as a string.
fn deserialize_version<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = deserialize_i64(d)?;
    u64::try_from(v).map_err(de::Error::custom)
}

impl From<ModelVersionJson> for ModelVersion {
    fn from(v: ModelVersionJson) -> Self {
        let mut aliases = v.aliases;
        aliases.sort();
        ModelVersion {
            name: v.name,
            version: v.version,
            source: v.source,
            run_id: non_empty(v.run_id).map(RunId::new),
            status: v.status,
            aliases,
            creation_timestamp_ms: v.creation_timestamp,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct SearchModelVersionsResponse {
    #[serde(default)]
    pub model_versions: Vec<ModelVersionJson>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct SetAlias<'a> {
    pub name: &'a str,
    pub alias: &'a str,
    pub version: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct DeleteAlias<'a> {
    pub name: &'a str,
    pub alias: &'a str,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DownloadUriResponse {
    pub artifact_uri: String,
}

// ---------------------------------------------------------------------------------------------
// artifacts (the mlflow-artifacts proxy)

#[derive(Debug, Deserialize)]
pub(crate) struct ListArtifactsResponse {
    #[serde(default)]
    pub files: Vec<FileInfo>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct FileInfo {
    pub path: String,
    #[serde(default)]
    pub is_dir: bool,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn special_doubles_use_protobuf_json_strings() {
        let json = |v: f64| serde_json::to_string(&MetricJson::from(&Metric::new("m", v, 1, 2)));
        assert!(json(f64::NAN).unwrap().contains(r#""value":"NaN""#));
        assert!(json(f64::INFINITY).unwrap().contains(r#""value":"Infinity""#));
        assert!(json(f64::NEG_INFINITY).unwrap().contains(r#""value":"-Infinity""#));
        assert!(json(1.5).unwrap().contains(r#""value":1.5"#));

        let read = |text: &str| serde_json::from_str::<MetricJson>(text).unwrap().value;
        assert!(read(r#"{"key":"m","value":"NaN","timestamp":1,"step":0}"#).is_nan());
        assert_eq!(read(r#"{"key":"m","value":"-Infinity","timestamp":"1"}"#), f64::NEG_INFINITY);
        assert_eq!(read(r#"{"key":"m","value":3,"timestamp":1}"#), 3.0);
    }

    #[test]
    fn versions_and_timestamps_may_be_strings() {
        let v: ModelVersionJson = serde_json::from_str(
            r#"{"name":"n","version":"12","creation_timestamp":"1795925847616","run_id":""}"#,
        )
        .unwrap();
        let v = ModelVersion::from(v);
        assert_eq!((v.version, v.creation_timestamp_ms, v.run_id), (12, 1_795_925_847_616, None));
    }
}
