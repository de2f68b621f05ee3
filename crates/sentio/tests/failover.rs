#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A three-broker Apache Kafka cluster (replication factor 3, `min.insync.replicas=2`) loses the
//! broker that leads most of the readings' partitions to `kill -9` while the simulator is
//! producing and ingest is storing, and gets it back later: the idempotent acks=all producer and
//! the ETL lose and duplicate nothing. The cluster is this test's own (`scripts/services.sh
//! cluster-up`, three more JVMs), so it lives in its own test binary (cargo runs test binaries one
//! at a time). Override the size with SENTIO_FAILOVER_READINGS.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use sentio_bus::Bus;
use sentio_bus::kafka::KafkaBus;
use sentio_store::ReadingStore;

/// The cluster, stopped and deleted when the test ends, passed or not.
struct Cluster {
    brokers: String,
}

impl Cluster {
    fn up() -> Cluster {
        let out = services(&["cluster-up"]);
        Cluster { brokers: out.lines().last().unwrap().trim().to_owned() }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("scripts/services.sh"))
            .arg("cluster-down")
            .status();
    }
}

/// How many of `topic`'s partitions each broker leads, from Debian's kcat (an independent client).
fn leaders(brokers: &str, topic: &str) -> BTreeMap<u32, usize> {
    let out = Command::new("kcat").args(["-b", brokers, "-L", "-t", topic]).output().unwrap();
    assert!(out.status.success(), "kcat -L: {}", String::from_utf8_lossy(&out.stderr));
    let mut counts = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "    partition 3, leader 2, replicas: 2,3,1, isrs: 2,3,1"
        if let Some(rest) = line.trim().strip_prefix("partition ")
            && let Some(leader) = rest.split(", leader ").nth(1)
        {
            let id: u32 = leader.split(',').next().unwrap().trim().parse().unwrap();
            *counts.entry(id).or_default() += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_partition_leaders_broker_loses_and_duplicates_nothing() {
    let readings: i64 = std::env::var("SENTIO_FAILOVER_READINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400_000);
    let seconds = (readings + 31) / 32;
    let cluster = Cluster::up();
    let mut stack = Stack::new("failover");
    stack.env.push(("SENTIO__BUS__KAFKA__BROKERS".into(), cluster.brokers.clone()));
    stack.env.push(("SENTIO__BUS__KAFKA__REPLICATION".into(), "3".into()));
    stack.run(&["migrate"]);
    let expected = stack.expected(31, seconds);
    let total = expected.len() as u64;
    let store = stack.store().await;
    let topic = stack.topic();
    let before = leaders(&cluster.brokers, &topic);
    eprintln!("partition leaders by broker: {before:?}");
    assert_eq!(before.values().sum::<usize>(), 4, "the stack's topics have 4 partitions");

    let to = sentio_core::time::format_rfc3339(START_NS + seconds * 1_000_000_000);
    let mut producer = stack
        .sentio()
        .args(["simulate", "--seed", "31", "--from", START, "--to", &to, "--no-archive"])
        .spawn()
        .unwrap();
    let mut ingest = stack.spawn_ingest();

    // Kill once a fifth has been produced, while the simulator is still sending.
    let mut config = sentio_it::kafka();
    config.brokers = cluster.brokers.clone();
    let bus = KafkaBus::connect(&config).unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let produced: u64 = bus.end_offsets(&topic).await.unwrap().values().sum();
        if produced >= total / 5 {
            break;
        }
        assert!(producer.try_wait().unwrap().is_none(), "the simulator exited early");
        assert!(Instant::now() < deadline, "the simulator produced {produced} of {total}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (&victim, _) = before.iter().max_by_key(|(_, count)| **count).unwrap();
    services(&["cluster-kill", &victim.to_string()]);
    let killed_at = store.stats().await.unwrap().readings;
    eprintln!("broker {victim} killed (SIGKILL) at {killed_at} rows stored");
    assert!(producer.try_wait().unwrap().is_none(), "the simulator finished before the kill");

    // The controller fences the dead broker once its session runs out, and the survivors lead its
    // partitions from the in-sync replicas; meanwhile the producer's records for them wait.
    let killed = Instant::now();
    let during = loop {
        let now = leaders(&cluster.brokers, &topic);
        if !now.contains_key(&victim) && now.values().sum::<usize>() == 4 {
            break now;
        }
        assert!(killed.elapsed() < Duration::from_secs(120), "leadership never moved: {now:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "leaders without broker {victim} after {:.1} s: {during:?}",
        killed.elapsed().as_secs_f64()
    );
    // It comes back while readings are still flowing, and catches up as a follower.
    let producing = producer.try_wait().unwrap().is_none();
    let at = store.stats().await.unwrap().readings;
    services(&["cluster-start", &victim.to_string()]);
    eprintln!(
        "broker {victim} restarted from {at} rows stored (simulator still sending then: \
         {producing}); back {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );

    let produced = producer.wait().unwrap();
    assert!(produced.success(), "the simulator gave up during the failover");
    stack.wait_store(&store, "every reading", |s| s.readings >= total).await;
    assert!(ingest.try_wait().unwrap().is_none(), "ingest exited\n{}", stack.logs());
    stack.stop(ingest);

    let rows = stored(&store).await;
    eprintln!("{} rows stored of {total} produced", rows.len());
    assert_no_duplicates(&rows);
    assert_eq!(rows.len() as u64, total);
    assert_eq!(checksum(&rows), checksum(&expected));
    let offsets: u64 = bus.end_offsets(&topic).await.unwrap().values().sum();
    assert_eq!(offsets, total, "the topic holds each reading once");
}
