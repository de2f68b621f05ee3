#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Kafka bus against Apache Kafka (single-node KRaft, from `scripts/services.sh up`).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use sentio_bus::contract::check_bus;
use sentio_bus::kafka::KafkaBus;
use sentio_it::{kafka, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_bus_passes_the_contract() {
    let bus = KafkaBus::connect(&kafka()).unwrap();
    check_bus(&bus, &unique("contract")).await;
}

/// Our consumers' session timeout lies within every broker's `group.min.session.timeout.ms` and
/// `group.max.session.timeout.ms`: outside them the coordinator refuses each JoinGroup. With the
/// classic group protocol (set in `KafkaBus::subscribe`) the timeout is the client's to choose,
/// and these bounds are what the broker checks it against.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_brokers_session_timeout_bounds_admit_ours() {
    let config = kafka();
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &config.brokers).create().unwrap();
    let metadata = admin.inner().fetch_metadata(None, Duration::from_secs(30)).unwrap();
    assert!(!metadata.brokers().is_empty());
    let ours = u64::try_from(config.session_timeout.as_millis()).unwrap();
    for broker in metadata.brokers() {
        let resource = ResourceSpecifier::Broker(broker.id());
        let described = admin.describe_configs([&resource], &AdminOptions::new()).await.unwrap();
        let entries = described.into_iter().next().unwrap().unwrap();
        let setting = |name: &str| -> u64 {
            let entry = entries.get(name).unwrap_or_else(|| panic!("broker has no {name}"));
            entry.value.as_deref().unwrap().parse().unwrap()
        };
        let (min, max) =
            (setting("group.min.session.timeout.ms"), setting("group.max.session.timeout.ms"));
        assert!(
            (min..=max).contains(&ours),
            "bus.kafka.session_timeout is {ours} ms; broker {} accepts {min}..={max} ms",
            broker.id()
        );
        // The heartbeat must fit in the session several times over, or one late heartbeat
        // expires the member.
        assert!(config.heartbeat_interval * 3 <= config.session_timeout);
    }
}
