//! `sentio bridge mqtt`: an MQTT subscriber that publishes readings on the bus.
//!
//! Delivery is at least once, end to end:
//!
//! - The bridge connects with a fixed client id and a persistent session (in MQTT 3.1.1
//!   `clean_session = false`; in MQTT 5 `clean_start = false` and a session expiry interval that
//!   never ends, see `link.rs`) and subscribes with QoS 1, so the broker keeps the messages
//!   published while the bridge is away and delivers them when it is back.
//! - Acknowledgements are manual: a message is acknowledged to the broker only after the bus has
//!   acknowledged its readings (or its dead letter), in the order the messages arrived. A bridge
//!   killed in between gets the message again from the broker. On a bus that does not outlive the
//!   process (the embedded one), a [`Settle`] makes it wait until the store holds them too.
//! - Acknowledgements go out from the task that polls the connection, in bulk: in MQTT 3.1.1
//!   written straight onto it and flushed once; in MQTT 5 through rumqttc's request queue,
//!   those it has no room for waiting their turn (`EventLoop::acknowledge`). A message is
//!   acknowledged only on the connection it came on.
//! - Backpressure: at most `max_inflight` messages wait for the bus; while they do, the bridge
//!   reads no more from the broker, which then keeps the rest. In MQTT 5 the event loop, which
//!   sends the acknowledgements there, is still polled while any is owed, and in both once per
//!   half keep-alive (a bridge that stopped polling with acknowledgements owed would wait for
//!   ever: the broker for them, the forwarding task for room to make more).
//! - A message that carries no reading (malformed, a topic of another shape, a bad device id) goes
//!   to the dead-letter topic with the MQTT topic and the reason, and is acknowledged: the bridge
//!   never stops on input.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use bytes::Bytes;
use sentio_bus::{Bus, Delivery};
use sentio_config::{MqttBridgeConfig, TopicTemplate};
use sentio_core::message::DecodeLimits;
use sentio_core::{Unit, encode_reading};
use serde::Serialize;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::link::{self, Client, Event, EventLoop, Message, Session};
use crate::payload::{Decoder, Rejected};

/// Counters a caller (the CLI, the pipeline page) reads while the bridge runs.
#[derive(Debug, Default)]
pub struct BridgeStats {
    /// MQTT messages taken in.
    pub messages: AtomicU64,
    /// Readings published on the bus.
    pub readings: AtomicU64,
    /// Readings that carried no timestamp (stamped with their arrival time).
    pub arrival_time: AtomicU64,
    /// Messages sent to the dead-letter topic.
    pub dead_letters: AtomicU64,
    /// Messages acknowledged to the broker.
    pub acknowledged: AtomicU64,
    /// Whether the broker connection is up.
    pub connected: AtomicBool,
    /// Connections made (1 after the first).
    pub connections: AtomicU64,
    /// Subscriptions the broker has confirmed, or kept in the session it resumed (each one again
    /// after every connection).
    pub subscribed: AtomicU64,
}

/// A dead letter of the bridge, on the dead-letter topic (docs/bridge.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MqttDeadLetter {
    pub v: u32,
    pub source: &'static str,
    pub code: String,
    pub reason: String,
    pub mqtt_topic: String,
    pub client_id: String,
    pub received_at: String,
    pub payload_base64: String,
}

/// What a message's acknowledgement waits for after the bus has its readings: on the embedded
/// bus, which dies with the process, that the ETL has stored (or dead-lettered) them.
#[async_trait::async_trait]
pub trait Settle: Send + Sync {
    /// Returns once every record of `deliveries` on `topic` is settled, or `stop` is cancelled.
    async fn settled(
        &self,
        topic: &str,
        deliveries: &[Delivery],
        stop: &CancellationToken,
    ) -> anyhow::Result<()>;
}

/// The messages whose readings the bus has, handed by the forwarding task to the task that owns
/// the connection, which acknowledges them ([`Connection::acknowledge`]).
#[derive(Default)]
struct Acks {
    /// In arrival order, each with the number of the connection it came on.
    ready: std::sync::Mutex<Vec<(u64, Message)>>,
    more: Notify,
}

impl Acks {
    fn hand(&self, messages: impl IntoIterator<Item = (u64, Message)>) {
        self.ready.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(messages);
        self.more.notify_one();
    }

    fn take(&self) -> Vec<(u64, Message)> {
        std::mem::take(&mut *self.ready.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// The broker connection, as the task that polls it knows it.
struct Connection {
    client: Client,
    events: EventLoop,
    /// Connections made so far: a message is acknowledged only on the connection it came on
    /// (after a reconnect the broker sends it again, and an old packet id may name another
    /// message by then).
    number: u64,
    /// Messages of this connection to acknowledge that the request queue had no room for yet
    /// (MQTT 5).
    unqueued: VecDeque<Message>,
    /// Acknowledgements put in the request queue, and those the event loop has sent (MQTT 5):
    /// while any is owed, the event loop is polled even when no more messages are wanted, or
    /// the broker would wait for them for ever.
    queued: u64,
    sent: u64,
}

impl Connection {
    fn new(client: Client, events: EventLoop) -> Connection {
        Connection { client, events, number: 0, unqueued: VecDeque::new(), queued: 0, sent: 0 }
    }

    /// Acknowledges what the forwarding task has handed over and came on this connection.
    async fn acknowledge(&mut self, acks: &Acks, stats: &BridgeStats) {
        let number = self.number;
        self.unqueued
            .extend(acks.take().into_iter().filter_map(|(n, m)| (n == number).then_some(m)));
        if self.unqueued.is_empty() {
            return;
        }
        let before = self.unqueued.len();
        match self.events.acknowledge(&self.client, &mut self.unqueued).await {
            Ok(queued) => {
                self.queued += queued;
                let done = before - self.unqueued.len();
                stats.acknowledged.fetch_add(done as u64, Ordering::Relaxed);
            }
            // The next poll reports a broken connection and reconnects; the broker sends these
            // messages again.
            Err(e) => {
                tracing::debug!(error = %e, "acknowledgements not sent");
                self.unqueued.clear();
            }
        }
    }

    fn owed(&self) -> u64 {
        self.queued.saturating_sub(self.sent) + self.unqueued.len() as u64
    }

    /// A new connection: what the last one owed is acknowledged on it no more.
    fn connected(&mut self) {
        self.number += 1;
        self.unqueued.clear();
    }

    /// The connection is lost: the acknowledgements still owed are not waited for (the broker
    /// delivers their messages again).
    fn lost(&mut self) {
        self.sent = self.queued;
    }
}

/// Where the bridge publishes.
#[derive(Debug, Clone)]
pub struct Topics {
    pub readings: String,
    pub dead_letters: String,
}

struct Route {
    template: TopicTemplate,
    decoder: Decoder,
}

/// One message taken in, and what it carries to the bus: its readings, or its dead letter.
struct Taken {
    message: Message,
    /// The number of the connection it came on.
    connection: u64,
    /// (key, payload) for the readings topic, or the one dead letter's for the dead-letter topic.
    records: Vec<(Bytes, Bytes)>,
    arrival_time: bool,
    dead_letter: bool,
}

impl Taken {
    fn readings(&self) -> u64 {
        if self.dead_letter { 0 } else { self.records.len() as u64 }
    }
}

pub struct MqttBridge {
    config: MqttBridgeConfig,
    bus: Arc<dyn Bus>,
    topics: Topics,
    routes: Vec<Route>,
    stats: Arc<BridgeStats>,
    settle: Option<Arc<dyn Settle>>,
}

impl MqttBridge {
    /// A bridge for `config`'s subscriptions; `limits` bound each reading as the ETL does.
    pub fn new(
        config: MqttBridgeConfig,
        bus: Arc<dyn Bus>,
        topics: Topics,
        limits: DecodeLimits,
    ) -> anyhow::Result<MqttBridge> {
        anyhow::ensure!(
            !config.subscriptions.is_empty(),
            "bridge.mqtt.subscriptions is empty: add one to your --config file, e.g.\n\n  \
             [[bridge.mqtt.subscriptions]]\n  topic = \"plant/{{device}}/{{sensor}}\"\n  \
             format = \"number\"\n\n(docs/bridge.md lists the formats)"
        );
        // TLS files are read now, so that a wrong one stops the bridge before it starts.
        crate::tls::transport(&config)?;
        let limits = DecodeLimits { max_bytes: config.max_payload_bytes, ..limits };
        let routes = config
            .subscriptions
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let template = TopicTemplate::parse(&s.topic).map_err(|why| {
                    anyhow::anyhow!("bridge.mqtt.subscriptions[{i}].topic {:?}: {why}", s.topic)
                })?;
                let unit = Unit::new(&s.unit)
                    .with_context(|| format!("bridge.mqtt.subscriptions[{i}].unit"))?;
                let profiles = Arc::new(sentio_core::Profiles::builtin());
                Ok(Route {
                    template,
                    decoder: Decoder { format: s.format, unit, limits, profiles },
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(MqttBridge { config, bus, topics, routes, stats: Arc::default(), settle: None })
    }

    /// The profiles that give a value sent without a unit its channel's unit (the built-in pump
    /// profile by default).
    pub fn with_profiles(mut self, profiles: sentio_core::Profiles) -> MqttBridge {
        let profiles = Arc::new(profiles);
        for route in &mut self.routes {
            route.decoder.profiles = profiles.clone();
        }
        self
    }

    /// Acknowledges a message only once `settle` says its records are settled (see [`Settle`]).
    pub fn with_settle(mut self, settle: Arc<dyn Settle>) -> MqttBridge {
        self.settle = Some(settle);
        self
    }

    pub fn stats(&self) -> Arc<BridgeStats> {
        self.stats.clone()
    }

    /// Runs until `stop`: connects (again after any failure, with a growing pause), takes
    /// messages in and forwards them. Returns once the messages taken in are forwarded and
    /// acknowledged.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let inflight = usize::from(self.config.max_inflight);
        // Room for the acknowledgements of what is on the bus at once.
        let requests = inflight + self.routes.len() + 16;
        // A persistent session with manual acknowledgements, in the configured MQTT version;
        // incoming packets up to MQTT's limit, so that an oversize payload reaches the
        // dead-letter topic instead of breaking the connection (and coming back after every
        // reconnect). The bridge publishes nothing: the outgoing window is rumqttc's default.
        let session = Session {
            persistent: true,
            manual_acks: true,
            outgoing_inflight: 100,
            incoming_inflight: Some(self.config.max_inflight),
        };
        let (client, events) =
            link::connect(&self.config, &self.config.client_id, session, requests)?;
        let mut link = Connection::new(client, events);
        let (tx, rx) = mpsc::channel::<Taken>(inflight);
        let acks = Arc::new(Acks::default());
        let mut forward = tokio::spawn(forward(
            (self.bus.clone(), self.topics.clone(), self.settle.clone()),
            (acks.clone(), inflight),
            rx,
            self.stats.clone(),
            stop.clone(),
        ));
        let result = self.take_in(&mut link, (tx, &acks), &stop).await;
        // The messages taken in go out and are acknowledged; the event loop keeps running so
        // that the acknowledgements reach the broker.
        let forwarded = loop {
            tokio::select! {
                done = &mut forward => break done.context("the bridge's forwarding task panicked")?,
                () = acks.more.notified() => link.acknowledge(&acks, &self.stats).await,
                event = link.events.poll() => {
                    if event.is_err() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        };
        link.acknowledge(&acks, &self.stats).await;
        // MQTT 5: those the request queue had no room for go in as the event loop sends the
        // others (each poll sends one).
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while !link.unqueued.is_empty() && link.events.poll().await.is_ok() {
                link.acknowledge(&acks, &self.stats).await;
            }
        })
        .await;
        // Send the last acknowledgements, then leave (never waiting on a full request queue:
        // nothing else polls the event loop now).
        let _ = link.client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(event) = link.events.poll().await {
                if matches!(event, Event::DisconnectSent) {
                    break;
                }
            }
        })
        .await;
        self.stats.connected.store(false, Ordering::Relaxed);
        result.and(forwarded)
    }

    /// Polls the event loop for what the broker sends, and acknowledges what the forwarding
    /// task hands back: messages taken in wait in `waiting` until the forwarding channel has
    /// room. Once `max_inflight` wait and no acknowledgement is owed to the broker, no more are
    /// taken in (the broker keeps them) until there is room, save one poll per half keep-alive
    /// so that the connection stays up while the bus is slow.
    async fn take_in(
        &self,
        link: &mut Connection,
        (tx, acks): (mpsc::Sender<Taken>, &Acks),
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        let inflight = usize::from(self.config.max_inflight);
        let tick = self.config.keep_alive / 2;
        let mut waiting: VecDeque<Taken> = VecDeque::new();
        let mut pause = Duration::from_millis(250);
        loop {
            link.acknowledge(acks, &self.stats).await;
            while tx.capacity() > 0 {
                let Some(taken) = waiting.pop_front() else { break };
                // The forwarding task ended (on a bus error it reports).
                if tx.try_send(taken).is_err() {
                    return Ok(());
                }
            }
            if waiting.len() >= inflight && link.owed() == 0 {
                tokio::select! {
                    permit = tx.reserve() => {
                        let Ok(permit) = permit else { return Ok(()) };
                        if let Some(taken) = waiting.pop_front() {
                            permit.send(taken);
                        }
                        continue;
                    }
                    () = acks.more.notified() => continue,
                    () = tokio::time::sleep(tick) => {}
                    () = stop.cancelled() => return Ok(()),
                }
            }
            let event = tokio::select! {
                event = link.events.poll() => event,
                () = acks.more.notified() => continue,
                () = stop.cancelled() => return Ok(()),
            };
            match event {
                Ok(Event::AckSent) => link.sent += 1,
                Ok(Event::Connected { session_present }) => {
                    link.connected();
                    pause = Duration::from_millis(250);
                    self.stats.connected.store(true, Ordering::Relaxed);
                    self.stats.connections.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        host = %self.config.host,
                        port = self.config.port,
                        protocol = %link::describe(self.config.version),
                        session_present,
                        "connected to the MQTT broker"
                    );
                    // A resumed session has its subscriptions already (and its SUBACK for the
                    // renewal may come after the session's backlog).
                    if session_present {
                        self.stats
                            .subscribed
                            .fetch_add(self.routes.len() as u64, Ordering::Relaxed);
                    }
                    // Subscribing again to a kept session changes nothing; a broker that lost
                    // the session gets the subscriptions back.
                    for route in &self.routes {
                        link.client
                            .try_subscribe(route.template.filter())
                            .context("subscribing")?;
                    }
                }
                Ok(Event::Subscribed { refused }) => {
                    if !refused.is_empty() {
                        tracing::error!(
                            reasons = ?refused,
                            "the broker refused a subscription (its ACL?)"
                        );
                    } else {
                        self.stats.subscribed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(Event::Message(message)) => {
                    self.stats.messages.fetch_add(1, Ordering::Relaxed);
                    waiting.push_back(self.take(message, link.number));
                }
                Ok(_) => {}
                Err(e) => {
                    link.lost();
                    if self.stats.connected.swap(false, Ordering::Relaxed) {
                        tracing::warn!(error = %e, "lost the MQTT broker; reconnecting");
                    } else {
                        tracing::warn!(error = %e, retry_in = ?pause, "cannot reach the MQTT broker");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = stop.cancelled() => return Ok(()),
                    }
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// What `message` carries to the bus: its readings, or a dead letter.
    fn take(&self, message: Message, connection: u64) -> Taken {
        let now = sentio_core::time::now_ns();
        let topic = message.topic().into_owned();
        let decoded = self
            .routes
            .iter()
            .find_map(|r| r.template.matches(&topic).map(|names| (r, names)))
            .ok_or_else(|| Rejected {
                code: "unknown_topic",
                reason: format!(
                    "topic {topic:?} has the shape of no subscription ({})",
                    self.routes.iter().map(|r| r.template.filter()).collect::<Vec<_>>().join(", ")
                ),
            })
            .and_then(|(route, names)| route.decoder.decode(names, message.payload(), now));
        match decoded {
            Ok(d) => {
                let records = d
                    .readings
                    .iter()
                    .map(|r| {
                        let key = Bytes::copy_from_slice(r.device.as_str().as_bytes());
                        (key, Bytes::from(encode_reading(r)))
                    })
                    .collect();
                Taken {
                    message,
                    connection,
                    records,
                    arrival_time: d.arrival_time,
                    dead_letter: false,
                }
            }
            Err(rejected) => {
                tracing::warn!(topic = %topic, code = rejected.code, reason = %rejected.reason, "dead letter");
                let letter = MqttDeadLetter {
                    v: 1,
                    source: "mqtt",
                    code: rejected.code.to_owned(),
                    reason: rejected.reason,
                    mqtt_topic: topic.clone(),
                    client_id: self.config.client_id.clone(),
                    received_at: sentio_core::time::format_rfc3339(now),
                    payload_base64: base64::engine::general_purpose::STANDARD
                        .encode(message.payload()),
                };
                let json = serde_json::to_vec(&letter).unwrap_or_default();
                let record = (Bytes::from(topic.into_bytes()), Bytes::from(json));
                Taken {
                    message,
                    connection,
                    records: vec![record],
                    arrival_time: false,
                    dead_letter: true,
                }
            }
        }
    }
}

/// The most messages [`forward`] publishes at once.
const FORWARD_BATCH: usize = 512;
/// Publishes what was taken in, in batches of which up to `inflight` messages are on the bus at
/// once (each batch waits for the bus's acknowledgement: on Kafka, 12-16 ms for 512 readings),
/// and hands each message back to be acknowledged, in arrival order, after the bus has
/// acknowledged everything it carried; retries the bus until it answers or `stop`.
async fn forward(
    (bus, topics, settle): (Arc<dyn Bus>, Topics, Option<Arc<dyn Settle>>),
    (acks, inflight): (Arc<Acks>, usize),
    mut rx: mpsc::Receiver<Taken>,
    stats: Arc<BridgeStats>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut on_bus = futures::stream::FuturesOrdered::new();
    let mut messages_on_bus = 0usize;
    let mut open = true;
    loop {
        let room = inflight.saturating_sub(messages_on_bus).min(FORWARD_BATCH);
        let take = open && room > 0;
        if !take && on_bus.is_empty() {
            return Ok(());
        }
        tokio::select! {
            batch = recv_batch(&mut rx, room), if take => match batch {
                Some(batch) => {
                    messages_on_bus += batch.len();
                    let (bus, topics, settle) = (bus.clone(), topics.clone(), settle.clone());
                    on_bus.push_back(deliver(bus, topics, settle, batch, stop.clone()));
                }
                None => open = false,
            },
            Some(delivered) = futures::StreamExt::next(&mut on_bus) => {
                // Not known to be on the bus (or stored): unacknowledged, delivered again.
                let Some(batch) = delivered? else { return Ok(()) };
                messages_on_bus -= batch.len();
                for taken in &batch {
                    stats.readings.fetch_add(taken.readings(), Ordering::Relaxed);
                    if taken.arrival_time {
                        stats.arrival_time.fetch_add(taken.readings(), Ordering::Relaxed);
                    }
                    if taken.dead_letter {
                        stats.dead_letters.fetch_add(1, Ordering::Relaxed);
                    }
                }
                acks.hand(batch.into_iter().map(|taken| (taken.connection, taken.message)));
            }
        }
    }
}

/// Up to `max` messages, once at least one is there; `None` once the channel is closed and empty.
async fn recv_batch(rx: &mut mpsc::Receiver<Taken>, max: usize) -> Option<Vec<Taken>> {
    let mut batch = Vec::with_capacity(max);
    (rx.recv_many(&mut batch, max).await > 0).then_some(batch)
}

/// Puts one batch's readings and dead letters on the bus (and, with a [`Settle`], waits until
/// they are settled), retrying until the bus answers; the batch, or `None` if `stop` came first.
async fn deliver(
    bus: Arc<dyn Bus>,
    topics: Topics,
    settle: Option<Arc<dyn Settle>>,
    batch: Vec<Taken>,
    stop: CancellationToken,
) -> anyhow::Result<Option<Vec<Taken>>> {
    let (mut readings, mut letters) = (Vec::new(), Vec::new());
    for taken in &batch {
        let to = if taken.dead_letter { &mut letters } else { &mut readings };
        to.extend(taken.records.iter().cloned());
    }
    let mut pause = Duration::from_millis(100);
    for (topic, records) in [(&topics.readings, readings), (&topics.dead_letters, letters)] {
        if records.is_empty() {
            continue;
        }
        loop {
            match bus.publish_batch(topic, records.clone()).await {
                Ok(deliveries) => {
                    if let Some(settle) = &settle {
                        settle.settled(topic, &deliveries, &stop).await?;
                        if stop.is_cancelled() {
                            return Ok(None);
                        }
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, topic = %topic, "the bus refused readings; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = stop.cancelled() => return Ok(None),
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
    Ok(Some(batch))
}
