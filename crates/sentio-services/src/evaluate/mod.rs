//! `sentio evaluate`: detection quality on labelled data.
//!
//! - [`metrics`]: point-wise precision, recall, F1, SKAB's FAR and MAR, event recall and
//!   precision, detection delays; pooled over files as SKAB pools them.
//! - [`stored`]: a registered model replays a stored range and its alerts are compared with the
//!   ground truth stored with the readings (the simulator's anomaly kinds, or an imported label
//!   column), per anomaly kind.
//! - [`inputs`]: the labelled CSV files of `sentio evaluate --csv`, which imports them into a
//!   scratch embedded stack, trains and evaluates there through [`stored`]: the same code as
//!   `sentio import`, `sentio train` and `sentio evaluate --from --to` by hand.

pub mod inputs;
pub mod metrics;
pub mod stored;

pub use inputs::list_inputs;
pub use metrics::{Confusion, Scores, Tally, evaluate};
pub use stored::{StoreEvaluation, evaluate_store};
