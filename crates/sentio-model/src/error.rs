//! The crate's error type.

use std::path::PathBuf;

use crate::ModelSpec;

/// What can go wrong building, feeding, saving or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid model spec {spec:?}: features, hidden and window must be positive")]
    Spec { spec: ModelSpec },
    #[error("batch of {len} floats is not a positive whole number of windows of {window_len}")]
    BatchShape { len: usize, window_len: usize },
    #[error("output buffer holds {len} floats, the batch needs {expected}")]
    OutputShape { len: usize, expected: usize },
    #[error("tensor {name} is missing")]
    MissingTensor { name: String },
    #[error("tensor {name} has shape {found:?}, the spec needs {expected:?}")]
    TensorShape { name: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("tensor {name} is {dtype}, expected F32")]
    TensorDtype { name: String, dtype: String },
    #[error("unexpected tensor {name} in the weights")]
    UnexpectedTensor { name: String },
    #[error("reading or writing {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("safetensors file {path}")]
    Safetensors {
        path: PathBuf,
        #[source]
        source: safetensors::SafeTensorError,
    },
}
