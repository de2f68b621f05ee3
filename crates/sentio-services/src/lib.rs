//! Sentio's roles, each a long-running async service that talks to the world only through ports.
//!
//! - [`simulator`]: simulated devices publishing readings to the bus and raw batches to objects.
//! - [`etl`]: the consumer that lands readings in the store, exactly once, with a dead-letter topic.
//! - [`detect`]: a registered model scoring windows, and the alert life cycle.
//! - [`evaluate`]: detection quality on labelled data (CSV benchmarks such as SKAB, and the
//!   simulator's ground truth in the store).
//! - [`import`]: CSV history published as readings through the ETL (`sentio import`).
//! - [`features`]: readings to frames, gaps, scaling, windows and splits (training and detection).
//! - [`rejoin`]: the watchdog that makes a consumer-group member left without partitions join
//!   again (the ETL and the streaming detector).
//! - [`shutdown`]: one cancellation token and task tracker for every role in a process.

pub mod detect;
pub mod etl;
pub mod evaluate;
pub mod features;
pub mod import;
pub mod rejoin;
pub mod shutdown;
pub mod simulator;
pub mod train;
