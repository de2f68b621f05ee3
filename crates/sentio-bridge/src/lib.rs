//! Devices in: bridges from the protocols devices speak to Sentio's readings topic.
//!
//! - [`mqtt`]: `sentio bridge mqtt`, an MQTT subscriber (docs/bridge.md).
//! - [`http`]: `POST /api/v1/readings`, on `sentio bridge http` and in `sentio demo` (docs/api.md).
//! - [`payload`]: how one message's payload becomes readings, per subscription format.

pub mod http;
pub mod mqtt;
pub mod payload;

pub use http::{HttpDeadLetter, HttpIngest, HttpStats};
pub use mqtt::{BridgeStats, MqttBridge, MqttDeadLetter, Settle, Topics};
pub use payload::{Decoded, Decoder, Rejected};
