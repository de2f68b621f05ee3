//! The other way: readings published to an MQTT broker as a device would, one QoS 1 message per
//! reading on `{prefix}/{device}/{sensor}` (`sentio simulate --mqtt`, `sentio demo --mqtt`).
//!
//! The payload is the reading message v1 itself, so that nothing is lost on the way (its unit and
//! the simulator's ground truth, `injected`): a bridge takes it back with the subscription
//! `{prefix}/{device}/{sensor}`, format "reading".

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use sentio_config::MqttBridgeConfig;
use serde::Deserialize;
use tokio::sync::Notify;

use crate::link::{self, Client, Event, Session};

/// How long the broker may take to acknowledge what was published before the publisher gives up.
const ACK_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Acked {
    count: AtomicU64,
    more: Notify,
    connected: AtomicBool,
}

pub struct MqttPublisher {
    client: Client,
    acked: Arc<Acked>,
    sent: u64,
    prefix: String,
    task: tokio::task::JoinHandle<()>,
    broker: String,
}

/// The names a reading message carries.
#[derive(Deserialize)]
struct Names<'a> {
    #[serde(borrow)]
    device: &'a str,
    #[serde(borrow)]
    sensor: &'a str,
}

impl MqttPublisher {
    /// Connects to the broker of `config` (host, port, MQTT version, TLS, credentials) as
    /// `client_id`, with a clean session; fails with what to check when the broker does not
    /// answer within 10 s.
    pub async fn connect(
        config: &MqttBridgeConfig,
        client_id: &str,
        prefix: &str,
    ) -> anyhow::Result<MqttPublisher> {
        // Up to 1,000 messages awaiting their PUBACK (in MQTT 5, fewer if the broker's Receive
        // Maximum says so: Mosquitto's is its max_inflight_messages, 20 by default).
        let session = Session {
            persistent: false,
            manual_acks: false,
            outgoing_inflight: 1000,
            incoming_inflight: None,
        };
        let (client, mut events) = link::connect(config, client_id, session, 4096)?;
        let acked = Arc::new(Acked::default());
        let broker = link::broker_url(config);
        let task = tokio::spawn({
            let acked = acked.clone();
            let broker = broker.clone();
            async move {
                loop {
                    match events.poll().await {
                        Ok(Event::Published) => {
                            acked.count.fetch_add(1, Ordering::Relaxed);
                            acked.more.notify_waiters();
                        }
                        Ok(Event::Connected { .. }) => {
                            acked.connected.store(true, Ordering::Relaxed);
                            acked.more.notify_waiters();
                        }
                        Ok(_) => {}
                        Err(e) => {
                            // rumqttc sends what was not acknowledged again once reconnected.
                            if acked.connected.swap(false, Ordering::Relaxed) {
                                tracing::warn!(%broker, error = %e, "lost the MQTT broker; reconnecting");
                            }
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                    }
                }
            }
        });
        let publisher =
            MqttPublisher { client, acked, sent: 0, prefix: prefix.to_owned(), task, broker };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !publisher.acked.connected.load(Ordering::Relaxed) {
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "cannot reach the MQTT broker at {} ({}) within 10 s: is it running \
                     (scripts/services.sh up starts Mosquitto), and are bridge.mqtt.host, port \
                     and version right?",
                    publisher.broker,
                    link::describe(config.version)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(publisher)
    }

    /// The topic a reading of `device` and `sensor` goes to.
    pub fn topic(prefix: &str, device: &str, sensor: &str) -> String {
        format!("{prefix}/{device}/{sensor}")
    }

    /// Publishes each reading message of `batch` (QoS 1) and returns once the broker has
    /// acknowledged every one.
    pub async fn publish(&mut self, batch: Vec<(Bytes, Bytes)>) -> anyhow::Result<()> {
        for (_, payload) in batch {
            let names: Names<'_> =
                serde_json::from_slice(&payload).context("a reading message to publish")?;
            let topic = Self::topic(&self.prefix, names.device, names.sensor);
            self.client
                .publish(topic, payload.clone())
                .await
                .context("publishing to the MQTT broker")?;
            self.sent += 1;
        }
        let deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
        loop {
            let more = self.acked.more.notified();
            if self.acked.count.load(Ordering::Relaxed) >= self.sent {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, more).await.is_err() {
                bail!(
                    "the MQTT broker at {} acknowledged {} of {} messages in {} s",
                    self.broker,
                    self.acked.count.load(Ordering::Relaxed),
                    self.sent,
                    ACK_TIMEOUT.as_secs()
                );
            }
        }
    }
}

impl Drop for MqttPublisher {
    fn drop(&mut self) {
        let _ = self.client.try_disconnect();
        self.task.abort();
    }
}
