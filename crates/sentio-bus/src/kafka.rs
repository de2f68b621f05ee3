//! The Kafka backend, on librdkafka (`rdkafka`, bundled build).
//!
//! Every librdkafka string property is set here, from the typed configuration, and nowhere else.
//! The producer is idempotent (acks=all, ordered retries) and uses Kafka's murmur2 partitioner, so a
//! device lands on the same partition as with the Java client and the embedded bus. Consumers join
//! a group with auto-commit off: offsets move only when [`Consumer::commit`] is called, after the
//! caller has made the records durable.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::{Offset, TopicPartitionList};
use sentio_config::KafkaConfig;

use crate::{Bus, BusError, Consumer, Delivery, Record, same_partitions, validate_topic};

/// How long metadata and admin requests may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to a Kafka cluster: one shared idempotent producer and an admin client.
pub struct KafkaBus {
    config: KafkaConfig,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
}

fn backend(operation: &'static str) -> impl Fn(KafkaError) -> BusError {
    move |e| {
        let transient = e.rdkafka_error_code().is_some_and(is_retriable);
        BusError::Backend { operation, transient, source: Box::new(e) }
    }
}

fn is_retriable(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::OperationTimedOut
            | C::RequestTimedOut
            | C::NetworkException
            | C::NotCoordinator
            | C::CoordinatorNotAvailable
            | C::CoordinatorLoadInProgress
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::RebalanceInProgress
            | C::QueueFull
            | C::MessageTimedOut
    )
}

/// The client properties every producer, consumer and admin client shares.
fn base_config(config: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers)
        .set("client.id", &config.client_id)
        .set("security.protocol", config.security_protocol.as_str())
        .set("socket.keepalive.enable", "true");
    if config.security_protocol.uses_sasl() {
        c.set("sasl.mechanisms", &config.sasl_mechanism)
            .set("sasl.username", &config.sasl_username)
            .set("sasl.password", config.sasl_password.expose());
    }
    if !config.ssl_ca_location.as_os_str().is_empty() {
        c.set("ssl.ca.location", config.ssl_ca_location.display().to_string());
    }
    c
}

fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

impl KafkaBus {
    /// Creates the clients (librdkafka connects lazily; the first request reports a dead cluster).
    pub fn connect(config: &KafkaConfig) -> Result<KafkaBus, BusError> {
        let producer: FutureProducer = base_config(config)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", millis(config.linger))
            .set("delivery.timeout.ms", millis(config.delivery_timeout))
            .set("compression.type", "lz4")
            .create()
            .map_err(backend("creating the Kafka producer"))?;
        let admin =
            base_config(config).create().map_err(backend("creating the Kafka admin client"))?;
        Ok(KafkaBus { config: config.clone(), producer, admin })
    }

    /// The partition count of `topic`, or `None` when the cluster does not know it.
    async fn partition_count(&self, topic: &str) -> Result<Option<u32>, BusError> {
        let producer = self.producer.clone();
        let name = topic.to_owned();
        let metadata = tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(Some(&name), REQUEST_TIMEOUT)
        })
        .await
        .map_err(|e| BusError::Backend {
            operation: "fetching metadata",
            transient: false,
            source: Box::new(e),
        })?
        .map_err(backend("fetching topic metadata"))?;
        Ok(metadata.topics().iter().find(|t| t.name() == topic).and_then(|t| {
            let unknown = matches!(
                t.error().map(RDKafkaErrorCode::from),
                Some(RDKafkaErrorCode::UnknownTopicOrPartition)
            );
            (!unknown && !t.partitions().is_empty()).then(|| t.partitions().len() as u32)
        }))
    }

    fn enqueue(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<DeliveryFuture, BusError> {
        let record = FutureRecord::to(topic).key(key).payload(payload);
        self.producer.send_result(record).map_err(|(e, _)| backend("queueing a record")(e))
    }
}

fn delivered(
    topic: &str,
    result: Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        futures::channel::oneshot::Canceled,
    >,
) -> Result<Delivery, BusError> {
    match result {
        Ok(Ok(d)) => Ok(Delivery { partition: d.partition as u32, offset: d.offset as u64 }),
        Ok(Err((e, _)))
            if e.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition) =>
        {
            Err(BusError::UnknownTopic { topic: topic.into() })
        }
        Ok(Err((e, _))) => Err(backend("delivering a record")(e)),
        Err(_) => Err(BusError::Closed),
    }
}

#[async_trait::async_trait]
impl Bus for KafkaBus {
    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), BusError> {
        validate_topic(topic)?;
        if let Some(existing) = self.partition_count(topic).await? {
            return same_partitions(topic, existing, partitions);
        }
        let new = NewTopic::new(
            topic,
            i32::try_from(partitions).unwrap_or(i32::MAX),
            TopicReplication::Fixed(i32::try_from(self.config.replication).unwrap_or(1)),
        );
        let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
        let results = self
            .admin
            .create_topics([&new], &options)
            .await
            .map_err(backend("creating a topic"))?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(BusError::Backend {
                        operation: "creating a topic",
                        transient: is_retriable(code),
                        source: format!("topic {name:?}: {code}").into(),
                    });
                }
            }
        }
        // Metadata catches up with the controller asynchronously.
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        loop {
            match self.partition_count(topic).await? {
                Some(existing) => return same_partitions(topic, existing, partitions),
                None if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                None => {
                    return Err(BusError::Backend {
                        operation: "creating a topic",
                        transient: true,
                        source: format!(
                            "topic {topic:?} was created but never showed up in metadata"
                        )
                        .into(),
                    });
                }
            }
        }
    }

    async fn publish_batch(
        &self,
        topic: &str,
        records: Vec<(Bytes, Bytes)>,
    ) -> Result<Vec<Delivery>, BusError> {
        if self.partition_count(topic).await?.is_none() {
            return Err(BusError::UnknownTopic { topic: topic.into() });
        }
        let mut pending = Vec::with_capacity(records.len());
        let mut out = Vec::with_capacity(records.len());
        for (key, payload) in &records {
            loop {
                match self.enqueue(topic, key, payload) {
                    Ok(future) => {
                        pending.push(future);
                        break;
                    }
                    // The local queue is full: wait for the oldest record in flight, then retry.
                    Err(e) if e.is_transient() && !pending.is_empty() => {
                        let oldest = pending.remove(0);
                        out.push(delivered(topic, oldest.await)?);
                    }
                    Err(e) if e.is_transient() => {
                        tokio::time::sleep(Duration::from_millis(5)).await
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        for future in pending {
            out.push(delivered(topic, future.await)?);
        }
        Ok(out)
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Consumer>, BusError> {
        if self.partition_count(topic).await?.is_none() {
            return Err(BusError::UnknownTopic { topic: topic.into() });
        }
        let consumer: StreamConsumer = base_config(&self.config)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("allow.auto.create.topics", "false")
            .set("session.timeout.ms", millis(self.config.session_timeout))
            .set("heartbeat.interval.ms", millis(self.config.heartbeat_interval))
            .set("max.poll.interval.ms", millis(self.config.max_poll_interval))
            .create()
            .map_err(backend("creating a Kafka consumer"))?;
        consumer.subscribe(&[topic]).map_err(backend("subscribing"))?;
        Ok(Box::new(KafkaConsumer { topic: topic.to_owned(), consumer: Arc::new(consumer) }))
    }
}

/// A member of a Kafka consumer group. Dropping it leaves the group.
pub struct KafkaConsumer {
    topic: String,
    consumer: Arc<StreamConsumer>,
}

impl KafkaConsumer {
    fn record(&self, m: &rdkafka::message::BorrowedMessage<'_>) -> Record {
        Record {
            partition: m.partition() as u32,
            offset: m.offset() as u64,
            key: Bytes::copy_from_slice(m.key().unwrap_or_default()),
            payload: Bytes::copy_from_slice(m.payload().unwrap_or_default()),
            timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
        }
    }

    /// Runs a blocking librdkafka call off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        operation: &'static str,
        call: impl FnOnce(&StreamConsumer) -> Result<T, KafkaError> + Send + 'static,
    ) -> Result<T, BusError> {
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || call(&consumer))
            .await
            .map_err(|e| BusError::Backend { operation, transient: false, source: Box::new(e) })?
            .map_err(backend(operation))
    }
}

#[async_trait::async_trait]
impl Consumer for KafkaConsumer {
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>, BusError> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        // Wait for the first record; then take what is already fetched, without waiting.
        while out.len() < max.max(1) {
            let wait = if out.is_empty() { deadline } else { tokio::time::Instant::now() };
            match tokio::time::timeout_at(wait, self.consumer.recv()).await {
                Err(_) => break,
                Ok(Ok(m)) => out.push(self.record(&m)),
                Ok(Err(e)) => {
                    let error = backend("consuming")(e);
                    if error.is_transient() {
                        tracing::warn!(error = %error, "transient consumer error");
                        if out.is_empty() && tokio::time::Instant::now() < deadline {
                            continue;
                        }
                        break;
                    }
                    return Err(error);
                }
            }
        }
        Ok(out)
    }

    async fn commit(&mut self, next_offsets: &BTreeMap<u32, u64>) -> Result<(), BusError> {
        let mut list = TopicPartitionList::new();
        for (p, o) in next_offsets {
            list.add_partition_offset(&self.topic, *p as i32, Offset::Offset(*o as i64))
                .map_err(backend("committing offsets"))?;
        }
        // A synchronous commit has no deadline of its own in librdkafka; a broker that stops
        // answering must not stall the caller, whose store already holds the offsets.
        let commit =
            self.blocking("committing offsets", move |c| c.commit(&list, CommitMode::Sync));
        match tokio::time::timeout(REQUEST_TIMEOUT, commit).await {
            Ok(result) => result,
            Err(_) => Err(BusError::Backend {
                operation: "committing offsets",
                transient: true,
                source: format!("no answer within {REQUEST_TIMEOUT:?}").into(),
            }),
        }
    }

    async fn seek(&mut self, partition: u32, offset: u64) -> Result<(), BusError> {
        if !self.assignment().contains(&partition) {
            return Err(BusError::NotAssigned { topic: self.topic.clone(), partition });
        }
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&self.topic, partition as i32, Offset::Offset(offset as i64))
            .map_err(backend("seeking"))?;
        let result =
            self.blocking("seeking", move |c| c.seek_partitions(list, REQUEST_TIMEOUT)).await?;
        for element in result.elements() {
            if let Err(e) = element.error() {
                return Err(backend("seeking")(e));
            }
        }
        Ok(())
    }

    fn assignment(&self) -> Vec<u32> {
        self.consumer
            .assignment()
            .map(|list| {
                list.elements_for_topic(&self.topic).iter().map(|e| e.partition() as u32).collect()
            })
            .unwrap_or_default()
    }
}
