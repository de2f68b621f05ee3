//! The model artifact: one directory, identical in both tracking backends.
//!
//! ```text
//! model/
//!   MLmodel              flavors `onnx` and `python_function` (loader mlflow.onnx), signature
//!   model.onnx           the autoencoder with standard LSTM operators: [batch, T, C] -> same
//!   weights.safetensors  PyTorch `state_dict` names and layouts (strict load_state_dict works)
//!   sentio-model.json    the card: profile, spec, scaler, detrending and smoothing, channel order,
//!                        cadence, thresholds, data range
//!   requirements.txt, python_env.yaml, conda.yaml   what `mlflow.pyfunc` needs to load it
//! ```
//!
//! The model consumes and produces *standardized* windows (the card's scaler); the score of a
//! window is the mean of its squared reconstruction error.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::features::{PostProcess, Scaler};
use crate::train::calibrate::Calibration;
use crate::train::data::DataReport;

pub const CARD_FILE: &str = "sentio-model.json";
pub const WEIGHTS_FILE: &str = "weights.safetensors";
pub const ONNX_FILE: &str = "model.onnx";
pub const MLMODEL_FILE: &str = "MLmodel";
/// The artifact path of the model inside a run.
pub const ARTIFACT_PATH: &str = "model";
/// Format tag of [`ModelCard`]; bumped on incompatible changes.
pub const CARD_FORMAT: &str = "sentio-lstm-ae/1";

/// The versions the Python side is pinned to in the artifact's environment files.
const MLFLOW_VERSION: &str = "3.17.2";
const PYTHON_VERSION: &str = "3.11.7";

/// Everything besides the weights that scoring a window needs, and where the model came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub format: String,
    pub features: usize,
    pub hidden: usize,
    pub bottleneck: usize,
    /// Frames per window (T).
    pub window: usize,
    pub stride: usize,
    /// The asset profile the model is for (`pump` for models trained before profiles).
    #[serde(default = "pump_profile")]
    pub profile: String,
    /// Column order of every frame: the profile's channels.
    pub sensors: Vec<String>,
    pub cadence_ns: i64,
    pub fill_limit: u32,
    pub max_filled_fraction: f64,
    pub scaler: Scaler,
    /// Detrending and smoothing around the model (none for models trained before them).
    #[serde(default)]
    pub post: PostProcess,
    pub calibration: Calibration,
    pub data: DataReport,
    pub training: TrainingSummary,
    pub sentio_version: String,
}

/// How training went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    pub seed: u64,
    pub threads: usize,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub best_validation_loss: f64,
    pub final_train_loss: f64,
    pub stopped: String,
    pub learning_rate: f64,
    pub batch_size: usize,
    pub train_windows_per_s: f64,
    pub seconds: f64,
}

fn pump_profile() -> String {
    sentio_core::profile::PUMP.to_owned()
}

impl ModelCard {
    /// The frame's columns, from `sensors`.
    pub fn columns(&self) -> anyhow::Result<crate::features::Columns> {
        let channels = self
            .sensors
            .iter()
            .map(|s| {
                sentio_core::Channel::new(s)
                    .with_context(|| format!("the model card's sensors name {s:?}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(
            channels.len() == self.features && channels.len() == self.scaler.width(),
            "the model card lists {} sensors for a model of {} features and a scaler of {}",
            channels.len(),
            self.features,
            self.scaler.width()
        );
        let weights = &self.post.weights;
        anyhow::ensure!(
            weights.is_empty()
                || (weights.len() == channels.len()
                    && weights.iter().all(|w| w.is_finite() && *w >= 0.0)),
            "the model card's post.weights are {weights:?} for {} sensors: expected one              non-negative weight per sensor, or none",
            channels.len()
        );
        Ok(crate::features::Columns::new(channels))
    }

    pub fn read(dir: &Path) -> anyhow::Result<ModelCard> {
        let path = dir.join(CARD_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the model card {}", path.display()))?;
        let card: ModelCard = serde_json::from_str(&text)
            .with_context(|| format!("parsing the model card {}", path.display()))?;
        if card.format != CARD_FORMAT {
            anyhow::bail!(
                "{} is a {:?} model; this Sentio reads {CARD_FORMAT:?}",
                path.display(),
                card.format
            );
        }
        Ok(card)
    }
}

/// Writes the card, the ONNX graph and the MLflow metadata next to `weights.safetensors`, which
/// the caller has already written into `dir`.
pub fn write_artifact(
    dir: &Path,
    card: &ModelCard,
    onnx: &[u8],
    model_uuid: &str,
) -> anyhow::Result<()> {
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.join(name), bytes)
            .with_context(|| format!("writing {}", dir.join(name).display()))
    };
    write(CARD_FILE, &serde_json::to_vec_pretty(card)?)?;
    write(ONNX_FILE, onnx)?;
    write(MLMODEL_FILE, mlmodel(card, model_uuid).as_bytes())?;
    write("requirements.txt", requirements().as_bytes())?;
    write(
        "python_env.yaml",
        format!(
            "python: {PYTHON_VERSION}\nbuild_dependencies:\n- pip\n- setuptools\n- wheel\n\
             dependencies:\n- -r requirements.txt\n"
        )
        .as_bytes(),
    )?;
    write(
        "conda.yaml",
        format!(
            "channels:\n- conda-forge\ndependencies:\n- python={PYTHON_VERSION}\n- pip\n- pip:\n{}\
             name: mlflow-env\n",
            requirements().lines().map(|l| format!("  - {l}\n")).collect::<String>()
        )
        .as_bytes(),
    )?;
    Ok(())
}

fn requirements() -> String {
    format!("mlflow=={MLFLOW_VERSION}\nonnx\nonnxruntime\nnumpy\n")
}

/// The `MLmodel` file: the `onnx` flavor and `python_function` through `mlflow.onnx`, with a
/// tensor signature `[-1, T, C]` float32 in and out (C channels).
fn mlmodel(card: &ModelCard, model_uuid: &str) -> String {
    let created = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S%.6f");
    let tensor = |name: &str| {
        format!(
            "[{{\"type\": \"tensor\", \"name\": \"{name}\", \"tensor-spec\": {{\"dtype\": \
             \"float32\", \"shape\": [-1, {}, {}]}}}}]",
            card.window, card.features
        )
    };
    format!(
        "artifact_path: {ARTIFACT_PATH}\n\
         flavors:\n\
         \x20 onnx:\n\
         \x20   code: null\n\
         \x20   data: {ONNX_FILE}\n\
         \x20   onnx_version: 1.17.0\n\
         \x20   providers:\n\
         \x20   - CPUExecutionProvider\n\
         \x20 python_function:\n\
         \x20   data: {ONNX_FILE}\n\
         \x20   env:\n\
         \x20     conda: conda.yaml\n\
         \x20     virtualenv: python_env.yaml\n\
         \x20   loader_module: mlflow.onnx\n\
         \x20   python_version: {PYTHON_VERSION}\n\
         \x20 sentio:\n\
         \x20   card: {CARD_FILE}\n\
         \x20   format: {CARD_FORMAT}\n\
         \x20   weights: {WEIGHTS_FILE}\n\
         mlflow_version: {MLFLOW_VERSION}\n\
         model_uuid: {model_uuid}\n\
         signature:\n\
         \x20 inputs: '{}'\n\
         \x20 outputs: '{}'\n\
         \x20 params: null\n\
         utc_time_created: '{created}'\n",
        tensor("window"),
        tensor("reconstruction"),
    )
}
