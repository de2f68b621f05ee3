#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Kafka bus against a real Kafka-protocol broker (Tansu, from `scripts/services.sh up`).

use sentio_bus::contract::check_bus;
use sentio_bus::kafka::KafkaBus;
use sentio_it::{kafka, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_bus_passes_the_contract() {
    let bus = KafkaBus::connect(&kafka()).unwrap();
    check_bus(&bus, &unique("contract")).await;
}
