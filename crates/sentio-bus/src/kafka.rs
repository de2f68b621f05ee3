//! The Kafka backend, on librdkafka (`rdkafka`, bundled build).
//!
//! Every librdkafka string property is set here, from the typed configuration, and nowhere else.
//! The producer is idempotent (acks=all, ordered retries) and uses Kafka's murmur2 partitioner, so a
//! device lands on the same partition as with the Java client and the embedded bus. Consumers join
//! a group with auto-commit off: offsets move only when [`Consumer::commit`] is called, after the
//! caller has made the records durable; rebalances are cooperative (see `subscribe`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
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

/// How long a seek waits for librdkafka to start fetching a newly assigned partition: well inside
/// `max.poll.interval`, since the caller does not poll meanwhile.
const SEEK_WAIT: Duration = Duration::from_secs(10);

/// A connection to a Kafka cluster: one shared idempotent producer and an admin client.
pub struct KafkaBus {
    config: KafkaConfig,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// Topics the cluster has been seen to hold: a publish to one of them sends at once. Asking
    /// the cluster before every batch (a metadata round trip through a blocking thread) cost the
    /// MQTT bridge a broker request per batch (docs/benchmarks.md).
    known: std::sync::RwLock<std::collections::HashSet<String>>,
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

/// The client properties every producer, consumer and admin client shares: the one place they
/// are set (the benchmarks' bare-librdkafka peers start from them too).
pub fn base_config(config: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers)
        .set("client.id", &config.client_id)
        .set("security.protocol", config.security_protocol.as_str())
        .set("socket.keepalive.enable", "true")
        // Sentio creates its topics itself (`sentio migrate`), with the partitions and replication
        // it is configured for; a metadata request must never make the broker invent one.
        .set("allow.auto.create.topics", "false");
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

/// The properties of the idempotent producer every publish goes through: acks=all, murmur2
/// (Java's partitioner), lz4, `bus.kafka.linger`.
pub fn producer_config(config: &KafkaConfig) -> ClientConfig {
    let mut c = base_config(config);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", millis(config.linger))
        .set("delivery.timeout.ms", millis(config.delivery_timeout))
        .set("compression.type", "lz4");
    c
}

/// The idempotent producer every publish goes through.
fn new_producer(config: &KafkaConfig) -> Result<FutureProducer, BusError> {
    producer_config(config).create().map_err(backend("creating the Kafka producer"))
}

fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

impl KafkaBus {
    /// Creates the clients (librdkafka connects lazily; the first request reports a dead cluster).
    pub fn connect(config: &KafkaConfig) -> Result<KafkaBus, BusError> {
        let producer = new_producer(config)?;
        let admin =
            base_config(config).create().map_err(backend("creating the Kafka admin client"))?;
        Ok(KafkaBus { config: config.clone(), producer, admin, known: Default::default() })
    }

    /// The partition count of `topic`, or `None` when the cluster does not know it.
    pub async fn partition_count(&self, topic: &str) -> Result<Option<u32>, BusError> {
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
        let count = metadata.topics().iter().find(|t| t.name() == topic).and_then(|t| {
            let unknown = matches!(
                t.error().map(RDKafkaErrorCode::from),
                Some(RDKafkaErrorCode::UnknownTopicOrPartition)
            );
            (!unknown && !t.partitions().is_empty()).then(|| t.partitions().len() as u32)
        });
        self.remember(topic, count.is_some());
        Ok(count)
    }

    /// Records whether the cluster holds `topic` (see `known`).
    fn remember(&self, topic: &str, exists: bool) {
        let mut known = self.known.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if exists {
            if !known.contains(topic) {
                known.insert(topic.to_owned());
            }
        } else {
            known.remove(topic);
        }
    }

    fn is_known(&self, topic: &str) -> bool {
        self.known.read().unwrap_or_else(std::sync::PoisonError::into_inner).contains(topic)
    }

    fn enqueue(
        producer: &FutureProducer,
        topic: &str,
        key: &[u8],
        payload: &[u8],
    ) -> Result<DeliveryFuture, BusError> {
        let record = FutureRecord::to(topic).key(key).payload(payload);
        producer.send_result(record).map_err(|(e, _)| backend("queueing a record")(e))
    }

    /// Sends every record and waits for each delivery, in order.
    ///
    /// librdkafka retries what is safe to retry (connection loss, leader moves, a broker restart)
    /// inside its idempotent session, so a broker that fails over stores each record once and in
    /// order; what comes back as an error is what it gave up on after `delivery_timeout`, and that
    /// is returned: sending such a record again as a new message could store it twice.
    async fn send_all(
        &self,
        topic: &str,
        records: &[(Bytes, Bytes)],
    ) -> Result<Vec<Delivery>, BusError> {
        let mut pending: std::collections::VecDeque<DeliveryFuture> =
            std::collections::VecDeque::with_capacity(records.len());
        let mut out = Vec::with_capacity(records.len());
        for (key, payload) in records {
            loop {
                match Self::enqueue(&self.producer, topic, key, payload) {
                    Ok(future) => {
                        pending.push_back(future);
                        break;
                    }
                    // The local queue is full: wait for the oldest record in flight, then retry.
                    Err(e) if e.is_transient() => match pending.pop_front() {
                        Some(oldest) => out.push(delivered(topic, oldest.await)?),
                        None => tokio::time::sleep(Duration::from_millis(5)).await,
                    },
                    Err(e) => return Err(e),
                }
            }
        }
        // The newest first: by the time it is delivered most of the others are too, so the task
        // wakes about once per broker response instead of once per record (a record's future
        // wakes it only when it is still pending when awaited, and the delivery thread completes
        // them one by one).
        let mut rest = Vec::with_capacity(pending.len());
        for future in pending.iter_mut().rev() {
            rest.push(future.await);
        }
        for result in rest.into_iter().rev() {
            out.push(delivered(topic, result)?);
        }
        Ok(out)
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
        if !self.is_known(topic) && self.partition_count(topic).await?.is_none() {
            return Err(BusError::UnknownTopic { topic: topic.into() });
        }
        let sent = self.send_all(topic, &records).await;
        // A topic deleted since: the next publish asks the cluster again.
        if let Err(BusError::UnknownTopic { .. }) = &sent {
            self.remember(topic, false);
        }
        sent
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
            .set("session.timeout.ms", millis(self.config.session_timeout))
            .set("heartbeat.interval.ms", millis(self.config.heartbeat_interval))
            .set("max.poll.interval.ms", millis(self.config.max_poll_interval))
            // librdkafka (since 2.4) waits this long before fetching a partition again once its
            // local queue has passed a threshold; the default 1 s stalled every partition of a
            // catching-up ETL in turn: 1,000,000 queued readings took 5.4 s to consume instead of
            // 0.7 s (docs/benchmarks.md).
            .set("fetch.queue.backoff.ms", "10")
            // The classic group protocol, stated: librdkafka's default is to change to KIP-848's
            // `consumer` protocol, which moves the session timeout and the assignor to the broker
            // (ours would be ignored) and has a rejoin bug fixed only in librdkafka 2.15
            // (docs/kafka.md).
            .set("group.protocol", "classic")
            // Cooperative rebalancing moves only the partitions that change owner: the members that
            // keep theirs go on reading through a rebalance (a member joining or dying).
            .set("partition.assignment.strategy", "cooperative-sticky")
            .create()
            .map_err(backend("creating a Kafka consumer"))?;
        consumer.subscribe(&[topic]).map_err(backend("subscribing"))?;
        Ok(Box::new(KafkaConsumer { topic: topic.to_owned(), consumer: Arc::new(consumer) }))
    }

    async fn end_offsets(&self, topic: &str) -> Result<BTreeMap<u32, u64>, BusError> {
        let Some(partitions) = self.partition_count(topic).await? else {
            return Err(BusError::UnknownTopic { topic: topic.into() });
        };
        // librdkafka's watermark query blocks (one ListOffsets round trip per partition): run it
        // off the async threads, on the producer's client (a cheap handle, so no connection per
        // call), with one deadline for the whole topic.
        let producer = self.producer.clone();
        let name = topic.to_owned();
        let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
        let ends = tokio::task::spawn_blocking(move || {
            (0..partitions)
                .map(|p| {
                    let partition = i32::try_from(p).unwrap_or(i32::MAX);
                    // A partition whose leader is still being elected (a topic created a moment
                    // ago, a broker that just died) answers NOT_LEADER for a while: ask again.
                    loop {
                        let left = deadline.saturating_duration_since(std::time::Instant::now());
                        match producer.client().fetch_watermarks(&name, partition, left) {
                            Ok((_low, high)) => return Ok((p, high)),
                            Err(e)
                                if e.rdkafka_error_code().is_some_and(is_retriable)
                                    && left > Duration::from_millis(100) =>
                            {
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            Err(e) => return Err(e),
                        }
                    }
                })
                .collect::<Result<Vec<(u32, i64)>, KafkaError>>()
        })
        .await
        .map_err(|e| BusError::Backend {
            operation: "fetching end offsets",
            transient: false,
            source: Box::new(e),
        })?
        .map_err(|e| match e.rdkafka_error_code() {
            // Deleted between the metadata and the offsets request.
            Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {
                BusError::UnknownTopic { topic: topic.into() }
            }
            _ => backend("fetching end offsets")(e),
        })?;
        ends.into_iter()
            .map(|(p, high)| match u64::try_from(high) {
                Ok(end) => Ok((p, end)),
                Err(_) => Err(BusError::Backend {
                    operation: "fetching end offsets",
                    transient: true,
                    source: format!("the broker gave no end offset for {topic:?}/{p}").into(),
                }),
            })
            .collect()
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
    /// Cancellation-safe: it awaits only while it holds no record, so a caller that drops it (a
    /// `select!` taking another branch) loses nothing. What follows the first record is taken
    /// without awaiting: a record held across an await would be gone from the consumer's queue
    /// and lost with the dropped future.
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>, BusError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let first = loop {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Err(_) => return Ok(Vec::new()),
                Ok(Ok(m)) => break self.record(&m),
                Ok(Err(e)) => {
                    let error = backend("consuming")(e);
                    if !error.is_transient() {
                        return Err(error);
                    }
                    tracing::warn!(error = %error, "transient consumer error");
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(Vec::new());
                    }
                }
            }
        };
        let mut out = vec![first];
        // Whatever is already fetched; `now_or_never` polls once and never waits.
        while out.len() < max {
            match self.consumer.recv().now_or_never() {
                None => break,
                Some(Ok(m)) => out.push(self.record(&m)),
                Some(Err(e)) => {
                    let error = backend("consuming")(e);
                    if error.is_transient() {
                        tracing::warn!(error = %error, "transient consumer error");
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
        // A partition shows up in the assignment before librdkafka starts fetching it (it first
        // asks the coordinator for the committed offset), and a seek in between fails with
        // ERR__STATE; so does one on a partition being revoked (ERR__PREV_IN_PROGRESS). Wait for
        // the fetcher while the partition stays assigned.
        let deadline = tokio::time::Instant::now() + SEEK_WAIT;
        loop {
            if !self.assignment().contains(&partition) {
                return Err(BusError::NotAssigned { topic: self.topic.clone(), partition });
            }
            let mut list = TopicPartitionList::new();
            list.add_partition_offset(&self.topic, partition as i32, Offset::Offset(offset as i64))
                .map_err(backend("seeking"))?;
            let result =
                self.blocking("seeking", move |c| c.seek_partitions(list, REQUEST_TIMEOUT)).await?;
            let error = result.elements().into_iter().find_map(|e| e.error().err());
            match error {
                None => return Ok(()),
                Some(e)
                    if matches!(
                        e.rdkafka_error_code(),
                        Some(RDKafkaErrorCode::State | RDKafkaErrorCode::PreviousInProgress)
                    ) && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Some(e) => return Err(backend("seeking")(e)),
            }
        }
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
