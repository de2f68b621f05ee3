//! The message bus: named topics split into partitions, records keyed so that one key always lands
//! on one partition (in order), and consumer groups that share a topic's partitions and remember
//! where they stopped.
//!
//! - [`Bus`] and [`Consumer`]: the port every backend implements.
//! - [`memory`]: the embedded backend, bounded, with backpressure.
//! - [`kafka`]: Apache Kafka (or any Kafka-protocol broker) through librdkafka.
//! - [`partition`]: the key-to-partition hash (Kafka's murmur2, so keys map alike everywhere).
//! - `contract` (feature `testkit`): the suite every backend must pass, written once.
//!
//! Delivery is at least once: a consumer that stops before committing sees its records again.
//! Sentio's ETL makes that exactly once by storing offsets with the rows they cover.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

#[cfg(feature = "testkit")]
pub mod contract;
pub mod kafka;
pub mod memory;
pub mod partition;

/// A record read from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: u32,
    pub offset: u64,
    pub key: Bytes,
    pub payload: Bytes,
    /// When the bus accepted the record, milliseconds since the epoch.
    pub timestamp_ms: i64,
}

/// Where a published record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub partition: u32,
    pub offset: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(
        "topic {topic:?} does not exist; create it first (`sentio migrate` creates Sentio's topics)"
    )]
    UnknownTopic { topic: String },
    #[error("topic {topic:?} exists with {existing} partitions; {requested} were requested")]
    PartitionMismatch { topic: String, existing: u32, requested: u32 },
    #[error("partition {partition} of {topic:?} is not assigned to this consumer")]
    NotAssigned { topic: String, partition: u32 },
    #[error("invalid topic name {topic:?}: {reason}")]
    InvalidTopic { topic: String, reason: &'static str },
    #[error("the bus is shut down")]
    Closed,
    #[error("{operation} failed")]
    Backend {
        operation: &'static str,
        transient: bool,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl BusError {
    /// Whether the same call may succeed if retried.
    pub fn is_transient(&self) -> bool {
        matches!(self, BusError::Backend { transient: true, .. })
    }
}

/// The bus port.
#[async_trait::async_trait]
pub trait Bus: Send + Sync {
    /// Creates `topic` with `partitions` partitions; succeeds if it already exists with as many.
    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), BusError>;

    /// Publishes one record and waits until the bus holds it.
    async fn publish(&self, topic: &str, key: &[u8], payload: Bytes) -> Result<Delivery, BusError> {
        let mut deliveries =
            self.publish_batch(topic, vec![(Bytes::copy_from_slice(key), payload)]).await?;
        deliveries.pop().ok_or(BusError::Closed)
    }

    /// Publishes records (key, payload) and waits until the bus holds all of them. Records with the
    /// same key keep their order. Backends pipeline this; it is the fast path for producers.
    async fn publish_batch(
        &self,
        topic: &str,
        records: Vec<(Bytes, Bytes)>,
    ) -> Result<Vec<Delivery>, BusError>;

    /// Joins consumer group `group` on `topic`. The group's members share the partitions; a new
    /// group starts from the earliest record still held.
    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Consumer>, BusError>;

    /// The offset the next message published to each partition of `topic` will get (the high
    /// watermark), per partition. A topic that does not exist is an error naming it.
    ///
    /// A group's lag on a partition is this minus the offset it committed there.
    async fn end_offsets(&self, topic: &str) -> Result<BTreeMap<u32, u64>, BusError>;
}

/// One member of a consumer group.
#[async_trait::async_trait]
pub trait Consumer: Send {
    /// Waits up to `timeout` for records and returns at most `max` of them, in order within each
    /// partition; an empty vector means the timeout passed.
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>, BusError>;

    /// Records, per partition, the offset the group resumes from. Call it only once everything
    /// before those offsets is durable downstream.
    async fn commit(&mut self, next_offsets: &BTreeMap<u32, u64>) -> Result<(), BusError>;

    /// Moves this consumer's position on an assigned partition.
    async fn seek(&mut self, partition: u32, offset: u64) -> Result<(), BusError>;

    /// The partitions currently assigned to this member.
    fn assignment(&self) -> Vec<u32>;
}

/// Kafka's rule for topic names, applied by every backend so a name valid on one is valid on all.
pub(crate) fn validate_topic(topic: &str) -> Result<(), BusError> {
    if topic.is_empty() || topic.len() > 249 {
        return Err(BusError::InvalidTopic {
            topic: topic.into(),
            reason: "must be 1 to 249 characters",
        });
    }
    if !topic.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return Err(BusError::InvalidTopic {
            topic: topic.into(),
            reason: "only ASCII letters, digits, '.', '_' and '-' are allowed",
        });
    }
    Ok(())
}

/// An existing topic is acceptable only with the partition count asked for.
pub(crate) fn same_partitions(topic: &str, existing: u32, requested: u32) -> Result<(), BusError> {
    if existing == requested {
        Ok(())
    } else {
        Err(BusError::PartitionMismatch { topic: topic.into(), existing, requested })
    }
}
