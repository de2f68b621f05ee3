//! `sentio bench`: the harnesses that measure Sentio against a named peer in the same run and
//! report ratios (docs/benchmarks.md). They drive the same pieces the commands do: the
//! configured backends through `sentio_app::wiring`, the simulator, the ETL, training and the
//! streaming detector of `sentio-services`.
//!
//! - [`bench`] (the entry point): the embedded pipeline's readings/s next to its parts;
//! - `bench_real`: Kafka and PostgreSQL against a raw binary COPY and bare librdkafka;
//! - `bench_train`: the model engine against PyTorch;
//! - `bench_detect`: the detection path against PyTorch, and the streaming detector's latency;
//! - `bench_bridge`: the MQTT bridge against `mosquitto_sub` on the same broker.
//! - `bench_http`: the HTTP ingest endpoint against the bus taking the same readings directly.

#[macro_use]
extern crate sentio_app;

pub mod bench;
mod bench_bridge;
mod bench_detect;
mod bench_http;
mod bench_real;
mod bench_train;

pub use bench::{Args, run};
