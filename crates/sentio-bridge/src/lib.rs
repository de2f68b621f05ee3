//! Devices in: bridges from the protocols devices speak to Sentio's readings topic.
//!
//! - [`mqtt`]: `sentio bridge mqtt`, an MQTT subscriber (docs/bridge.md).
//! - [`http`]: `POST /api/v1/readings`, on `sentio bridge http` and in `sentio demo` (docs/api.md).
//! - [`publish`]: readings out to an MQTT broker as devices would send them (`simulate --mqtt`).
//! - [`payload`]: how one message's payload becomes readings, per subscription format.
//! - `link`: one MQTT connection in either version (3.1.1 or 5), for the bridge and the publisher.
//! - [`tls`]: TLS to the broker.
//! - [`report`]: a bridge's status reports on the status topic, for the pipeline page.

pub mod http;
mod link;
pub mod mqtt;
pub mod payload;
pub mod publish;
pub mod report;
pub mod tls;

pub use http::{HttpDeadLetter, HttpIngest, HttpStats};
pub use mqtt::{BridgeStats, MqttBridge, MqttDeadLetter, Settle, Topics};
pub use payload::{Decoded, Decoder, Rejected};
pub use publish::MqttPublisher;
