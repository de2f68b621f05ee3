//! The dead-letter message, version 1, on `sensor-data.dlq` (see docs/messages.md).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use sentio_store::DeadLetter;
use serde::{Deserialize, Serialize};

/// What the ETL publishes for a message it could not decode: the original bytes, why, and where it
/// came from. Keyed like the original.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterV1 {
    pub v: u32,
    pub code: String,
    pub reason: String,
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub group: String,
    pub key_base64: String,
    pub payload_base64: String,
}

impl DeadLetterV1 {
    pub fn new(topic: &str, group: &str, d: &DeadLetter) -> Self {
        Self {
            v: 1,
            code: d.code.clone(),
            reason: d.reason.clone(),
            topic: topic.to_owned(),
            partition: d.source.partition,
            offset: d.source.offset,
            group: group.to_owned(),
            key_base64: STANDARD.encode(&d.key),
            payload_base64: STANDARD.encode(&d.payload),
        }
    }

    /// (key, payload) for the bus.
    pub fn to_record(&self) -> (Bytes, Bytes) {
        let key = STANDARD.decode(&self.key_base64).unwrap_or_default();
        // A struct of strings and integers always serializes.
        let payload = serde_json::to_vec(self).unwrap_or_default();
        (Bytes::from(key), Bytes::from(payload))
    }

    pub fn payload(&self) -> Result<Vec<u8>, base64::DecodeError> {
        STANDARD.decode(&self.payload_base64)
    }
}
