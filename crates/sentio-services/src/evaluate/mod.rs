//! `sentio evaluate`: detection quality on labelled data.
//!
//! - [`metrics`]: point-wise precision, recall, F1, SKAB's FAR and MAR, event recall and
//!   precision, detection delays; pooled over files as SKAB pools them.
//! - [`csv`]: labelled CSV files (SKAB's `;`-separated format, generic `,`-separated ones); it
//!   lives in [`crate::import::csv`], which `sentio import` shares.
//! - [`files`]: the CSV path: per file, an LSTM autoencoder trained on the leading normal part
//!   (or a separate anomaly-free file), a threshold from the training residuals, per-point
//!   predictions on the rest.
//! - [`stored`]: the store path: a registered model replays a stored range and its alerts are
//!   compared with the simulator's ground truth, per anomaly kind.

pub use crate::import::csv;
pub mod files;
pub mod metrics;
pub mod stored;

pub use files::{
    CsvEvaluation, Features, FileReport, FileSettings, PointScore, evaluate_files, list_inputs,
};
pub use metrics::{Confusion, Scores, Tally, evaluate};
pub use stored::{StoreEvaluation, evaluate_store};
