//! One MQTT connection in the version `bridge.mqtt.version` names: rumqttc's 3.1.1 client or its
//! `v5` one behind the few operations the bridge and the publisher use, so that both have one
//! code path whatever the version.
//!
//! What differs between the versions stays here:
//!
//! - **The persistent session.** 3.1.1 has `clean_session = false`, which also keeps the session
//!   after a disconnect. MQTT 5 split it: `clean_start = false` resumes a kept session, and the
//!   session expiry interval says how long the broker keeps it after a disconnect, 0 (the
//!   default) meaning not at all. A persistent v5 session therefore sends 0xFFFFFFFF ("never
//!   expires", MQTT 5 §3.1.2.11.2), the 3.1.1 behaviour.
//! - **Packet size.** rumqttc's v5 client refuses incoming packets above 10 KiB unless the
//!   CONNECT's Maximum Packet Size says otherwise; both versions take up to 256 MiB in, so that an
//!   oversize payload reaches the dead-letter topic instead of breaking the connection.
//! - **Types.** Each version has its own packets, reason codes and errors; [`Event`],
//!   [`Message`] and [`LinkError`] are what the callers see.

use std::borrow::Cow;
use std::collections::VecDeque;

use bytes::Bytes;
use rumqttc::v5;
use sentio_config::{MqttBridgeConfig, MqttVersion};

/// The most an incoming packet may weigh: MQTT's own limit, near enough.
const MAX_INCOMING: usize = 256 << 20;
/// The most an outgoing packet may weigh (the publisher's reading messages are a few hundred
/// bytes; the bridge sends only acknowledgements and subscriptions).
const MAX_OUTGOING: usize = 64 << 10;

/// How the session is kept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Session {
    /// Keep the session (subscriptions, unacknowledged QoS 1 messages) while away and resume it.
    pub persistent: bool,
    /// Acknowledge incoming messages only through [`Client::ack`].
    pub manual_acks: bool,
    /// The most outgoing QoS 1 messages awaiting the broker's PUBACK (the broker's Receive
    /// Maximum lowers it in MQTT 5).
    pub outgoing_inflight: u16,
    /// The most incoming QoS 1 messages the broker may send before they are acknowledged: MQTT
    /// 5's Receive Maximum (`None`: the protocol's 65,535). MQTT 3.1.1 has no such field; there
    /// the broker's own setting decides (Mosquitto's `max_inflight_messages`).
    pub incoming_inflight: Option<u16>,
}

/// Sends requests to the event loop (cheap to clone).
#[derive(Clone)]
pub(crate) enum Client {
    V311(rumqttc::AsyncClient),
    V5(v5::AsyncClient),
}

/// The connection: polling it sends what the [`Client`] asked for and yields what happened.
pub(crate) enum EventLoop {
    V311(Box<rumqttc::EventLoop>),
    V5(Box<v5::EventLoop>),
}

/// A message the broker delivered.
#[derive(Debug, Clone)]
pub(crate) enum Message {
    V311(rumqttc::Publish),
    V5(v5::mqttbytes::v5::Publish),
}

/// What one poll of the event loop brought, in terms both versions share.
#[derive(Debug)]
pub(crate) enum Event {
    /// The broker accepted the connection; `session_present`: it resumed the kept session.
    Connected { session_present: bool },
    /// The broker answered a SUBSCRIBE: `refused` holds the reason codes of the filters it
    /// refused (empty when it granted all).
    Subscribed { refused: Vec<String> },
    /// A message from the broker.
    Message(Message),
    /// The broker acknowledged one of our QoS 1 messages (PUBACK in).
    Published,
    /// One of our acknowledgements left (PUBACK out).
    AckSent,
    /// Our DISCONNECT left.
    DisconnectSent,
    /// Anything else (pings, our own requests going out).
    Other,
}

/// Why the connection failed; polling again reconnects.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error(transparent)]
    V311(#[from] rumqttc::ConnectionError),
    #[error(transparent)]
    V5(#[from] v5::ConnectionError),
    /// Acknowledgements asked for while the connection is down (none is sent).
    #[error("not connected to the MQTT broker")]
    NotConnected,
}

/// A client and its event loop for the broker of `config`, as `client_id`, in `config.version`;
/// `capacity` bounds the requests (acknowledgements, publishes) waiting for the event loop.
/// Reads the TLS files, so a wrong one fails here.
pub(crate) fn connect(
    config: &MqttBridgeConfig,
    client_id: &str,
    session: Session,
    capacity: usize,
) -> anyhow::Result<(Client, EventLoop)> {
    let transport = crate::tls::transport(config)?;
    let credentials = (!config.username.is_empty())
        .then(|| (config.username.clone(), config.password.expose().to_owned()));
    Ok(match config.version {
        MqttVersion::V311 => {
            let mut o = rumqttc::MqttOptions::new(client_id, config.host.clone(), config.port);
            o.set_keep_alive(config.keep_alive)
                .set_clean_session(!session.persistent)
                .set_manual_acks(session.manual_acks)
                .set_inflight(session.outgoing_inflight)
                .set_max_packet_size(MAX_INCOMING, MAX_OUTGOING);
            if let Some((user, password)) = credentials {
                o.set_credentials(user, password);
            }
            if let Some(t) = transport {
                o.set_transport(t);
            }
            let (client, events) = rumqttc::AsyncClient::new(o, capacity);
            (Client::V311(client), EventLoop::V311(Box::new(events)))
        }
        MqttVersion::V5 => {
            let mut o = v5::MqttOptions::new(client_id, config.host.clone(), config.port);
            o.set_keep_alive(config.keep_alive)
                .set_clean_start(!session.persistent)
                // 0 (none) ends the session at the disconnect; 0xFFFFFFFF never expires.
                .set_session_expiry_interval(session.persistent.then_some(u32::MAX))
                .set_manual_acks(session.manual_acks)
                .set_outgoing_inflight_upper_limit(session.outgoing_inflight)
                .set_receive_maximum(session.incoming_inflight)
                .set_max_packet_size(u32::try_from(MAX_INCOMING).ok());
            if let Some((user, password)) = credentials {
                o.set_credentials(user, password);
            }
            if let Some(t) = transport {
                o.set_transport(t);
            }
            let (client, events) = v5::AsyncClient::new(o, capacity);
            (Client::V5(client), EventLoop::V5(Box::new(events)))
        }
    })
}

impl Client {
    /// Subscribes to `filter` with QoS 1, without waiting for room in the request queue.
    pub fn try_subscribe(&self, filter: String) -> anyhow::Result<()> {
        match self {
            Client::V311(c) => c.try_subscribe(filter, rumqttc::QoS::AtLeastOnce)?,
            Client::V5(c) => c.try_subscribe(filter, v5::mqttbytes::QoS::AtLeastOnce)?,
        }
        Ok(())
    }

    /// Publishes `payload` on `topic` with QoS 1, not retained.
    pub async fn publish(&self, topic: String, payload: Bytes) -> anyhow::Result<()> {
        match self {
            Client::V311(c) => {
                c.publish_bytes(topic, rumqttc::QoS::AtLeastOnce, false, payload).await?;
            }
            Client::V5(c) => {
                c.publish_bytes(topic, v5::mqttbytes::QoS::AtLeastOnce, false, payload).await?;
            }
        }
        Ok(())
    }

    /// Asks for a DISCONNECT, without waiting for room in the queue.
    pub fn try_disconnect(&self) -> anyhow::Result<()> {
        match self {
            Client::V311(c) => c.try_disconnect()?,
            Client::V5(c) => c.try_disconnect()?,
        }
        Ok(())
    }
}

impl EventLoop {
    /// The next event; after an error, the next poll reconnects.
    pub async fn poll(&mut self) -> Result<Event, LinkError> {
        use rumqttc::Outgoing;
        Ok(match self {
            EventLoop::V311(events) => {
                use rumqttc::{Event as E, Packet as P};
                match events.poll().await? {
                    E::Incoming(P::ConnAck(ack)) => {
                        Event::Connected { session_present: ack.session_present }
                    }
                    E::Incoming(P::SubAck(ack)) => Event::Subscribed {
                        refused: ack
                            .return_codes
                            .iter()
                            .filter(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                            .map(|c| format!("{c:?}"))
                            .collect(),
                    },
                    E::Incoming(P::Publish(publish)) => Event::Message(Message::V311(publish)),
                    E::Incoming(P::PubAck(_)) => Event::Published,
                    E::Outgoing(Outgoing::PubAck(_)) => Event::AckSent,
                    E::Outgoing(Outgoing::Disconnect) => Event::DisconnectSent,
                    _ => Event::Other,
                }
            }
            EventLoop::V5(events) => {
                use v5::Event as E;
                use v5::mqttbytes::v5::{Packet as P, SubscribeReasonCode};
                match events.poll().await? {
                    E::Incoming(P::ConnAck(ack)) => {
                        Event::Connected { session_present: ack.session_present }
                    }
                    E::Incoming(P::SubAck(ack)) => Event::Subscribed {
                        refused: ack
                            .return_codes
                            .iter()
                            .filter(|c| !matches!(c, SubscribeReasonCode::Success(_)))
                            .map(|c| format!("{c:?}"))
                            .collect(),
                    },
                    E::Incoming(P::Publish(publish)) => Event::Message(Message::V5(publish)),
                    E::Incoming(P::PubAck(_)) => Event::Published,
                    E::Outgoing(Outgoing::PubAck(_)) => Event::AckSent,
                    E::Outgoing(Outgoing::Disconnect) => Event::DisconnectSent,
                    _ => Event::Other,
                }
            }
        })
    }

    /// Acknowledges the messages of `messages` (with manual acknowledgements), taking each one
    /// it acknowledged off the front, and returns how many of those wait in the request queue
    /// for [`EventLoop::poll`] to send (each then yields [`Event::AckSent`]); fails with
    /// [`LinkError::NotConnected`] while the connection is down.
    ///
    /// - In 3.1.1 the PUBACKs are written straight onto the connection (rumqttc's `network`),
    ///   all of them at once and flushed once, and none waits. Through the request queue,
    ///   rumqttc's event loop writes and flushes one request per poll, and a poll that reads
    ///   messages takes no request: while a backlog streamed in, about one message in ten was
    ///   acknowledged, and the rest only once the broker had sent everything
    ///   (docs/benchmarks.md).
    /// - In 5 rumqttc keeps its connection to itself: they go through the request queue, as
    ///   many as it has room for; the rest stay in `messages` for the next call.
    pub async fn acknowledge(
        &mut self,
        client: &Client,
        messages: &mut VecDeque<Message>,
    ) -> Result<u64, LinkError> {
        match (self, client) {
            (EventLoop::V311(events), _) => {
                let Some(network) = events.network.as_mut() else {
                    return Err(LinkError::NotConnected);
                };
                for message in messages.drain(..) {
                    if let Message::V311(p) = message {
                        let ack = rumqttc::Packet::PubAck(rumqttc::PubAck::new(p.pkid));
                        network.write(ack).await.map_err(rumqttc::ConnectionError::from)?;
                    }
                }
                network.flush().await.map_err(rumqttc::ConnectionError::from)?;
                Ok(0)
            }
            (EventLoop::V5(_), Client::V5(c)) => {
                let mut queued = 0;
                while let Some(message) = messages.front() {
                    if let Message::V5(p) = message {
                        // A full queue: the rest wait for the event loop to make room.
                        if c.try_ack(p).is_err() {
                            break;
                        }
                        queued += 1;
                    }
                    messages.pop_front();
                }
                Ok(queued)
            }
            // A client and its event loop come from one `connect`.
            (EventLoop::V5(_), Client::V311(_)) => Ok(0),
        }
    }
}

impl Message {
    /// The topic it was published on (MQTT topics are UTF-8; brokers check it).
    pub fn topic(&self) -> Cow<'_, str> {
        match self {
            Message::V311(p) => Cow::Borrowed(p.topic.as_str()),
            Message::V5(p) => String::from_utf8_lossy(&p.topic),
        }
    }

    pub fn payload(&self) -> &Bytes {
        match self {
            Message::V311(p) => &p.payload,
            Message::V5(p) => &p.payload,
        }
    }
}

/// The version's name for logs and errors ("MQTT 3.1.1", "MQTT 5").
pub(crate) fn describe(version: MqttVersion) -> String {
    format!("MQTT {version}")
}

/// What to check when the broker cannot be reached, for the publisher's error.
pub(crate) fn broker_url(config: &MqttBridgeConfig) -> String {
    let scheme = if config.tls { "mqtts" } else { "mqtt" };
    format!("{scheme}://{}:{}", config.host, config.port)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(version: MqttVersion) -> MqttBridgeConfig {
        let mut c = sentio_config::Config::defaults().unwrap().bridge.mqtt;
        c.version = version;
        c
    }

    /// The v5 options carry what a persistent session needs: clean_start false and an expiry
    /// interval (without one the broker drops the session at the disconnect), and a packet limit
    /// above rumqttc's 10 KiB default.
    #[tokio::test]
    async fn a_persistent_v5_session_never_expires_and_takes_large_packets() {
        let session = Session {
            persistent: true,
            manual_acks: true,
            outgoing_inflight: 100,
            incoming_inflight: Some(4000),
        };
        let (_, events) = connect(&config(MqttVersion::V5), "id", session, 10).unwrap();
        let EventLoop::V5(events) = events else { panic!("not v5") };
        assert!(!events.options.clean_start());
        assert_eq!(events.options.session_expiry_interval(), Some(u32::MAX));
        assert_eq!(events.options.max_packet_size(), Some(256 << 20));
        assert!(events.options.manual_acks());
        assert_eq!(events.options.receive_maximum(), Some(4000));

        let clean = Session {
            persistent: false,
            manual_acks: false,
            outgoing_inflight: 100,
            incoming_inflight: None,
        };
        let (_, events) = connect(&config(MqttVersion::V5), "id", clean, 10).unwrap();
        let EventLoop::V5(events) = events else { panic!("not v5") };
        assert!(events.options.clean_start());
        assert_eq!(events.options.session_expiry_interval(), None);
    }

    #[tokio::test]
    async fn a_persistent_3_1_1_session_has_clean_session_off() {
        let session = Session {
            persistent: true,
            manual_acks: true,
            outgoing_inflight: 100,
            incoming_inflight: None,
        };
        let (_, events) = connect(&config(MqttVersion::V311), "id", session, 10).unwrap();
        let EventLoop::V311(events) = events else { panic!("not 3.1.1") };
        assert!(!events.mqtt_options.clean_session());
        assert!(events.mqtt_options.manual_acks());
    }
}
