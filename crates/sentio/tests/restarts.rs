#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Ingest rides out a PostgreSQL restart and a broker restart by itself, losing and duplicating
//! nothing. It restarts the machine's servers, so it lives in its own test binary (cargo runs test
//! binaries one at a time).

mod common;

use common::*;
use sentio_store::ReadingStore;

fn restart_postgres() {
    services(&["restart-postgres"]);
}

fn restart_broker() {
    services(&["restart-kafka"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_recovers_from_database_and_broker_restarts() {
    const SECONDS: i64 = 6_000; // 192,000 readings: the broker takes a while to carry them
    let stack = Stack::new("restarts");
    stack.run(&["migrate"]);
    let expected = stack.expected(21, SECONDS);
    let store = stack.store().await;
    let to = sentio_core::time::format_rfc3339(START_NS + SECONDS * 1_000_000_000);
    let mut producer = stack
        .sentio()
        .args(["simulate", "--seed", "21", "--from", START, "--to", &to])
        .spawn()
        .unwrap();
    let mut ingest = stack.spawn_ingest();

    // Both restarts land while readings are still flowing in.
    stack.wait_store(&store, "10,000 rows", |s| s.readings >= 10_000).await;
    restart_postgres();
    let at = store.stats().await.map(|s| s.readings).unwrap_or(0);
    eprintln!("PostgreSQL restarted at {at} rows");
    stack.wait_store(&store, "20,000 more rows", |s| s.readings >= at + 20_000).await;
    restart_broker();
    let at_broker = store.stats().await.unwrap().readings;
    eprintln!("broker restarted at {at_broker} rows");
    assert!(at_broker < expected.len() as u64, "the broker restart came after ingest had finished");

    let produced = producer.wait().unwrap();
    assert!(produced.success(), "the simulator gave up during the broker restart");
    stack.wait_store(&store, "every reading", |s| s.readings >= expected.len() as u64).await;
    assert!(ingest.try_wait().unwrap().is_none(), "ingest exited\n{}", stack.logs());
    stack.stop(ingest);

    let rows = stored(&store).await;
    assert_no_duplicates(&rows);
    assert_eq!(checksum(&rows), checksum(&expected));
}
