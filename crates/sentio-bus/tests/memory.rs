#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The embedded bus: the shared contract, plus what only a bounded in-process bus promises.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use sentio_bus::contract::{check_bus, next_offsets, poll_n};
use sentio_bus::memory::MemoryBus;
use sentio_bus::{Bus, BusError};

#[tokio::test]
async fn memory_bus_passes_the_contract() {
    check_bus(&MemoryBus::new(1024), "contract").await;
}

fn msg(i: usize) -> (Bytes, Bytes) {
    (Bytes::from(format!("dev-{}", i % 3)), Bytes::from(i.to_string()))
}

#[tokio::test(start_paused = true)]
async fn a_full_partition_makes_the_producer_wait_for_the_slowest_group() {
    let bus = Arc::new(MemoryBus::new(16));
    bus.create_topic("t", 1).await.unwrap();
    let mut fast = bus.subscribe("t", "fast").await.unwrap();
    let mut slow = bus.subscribe("t", "slow").await.unwrap();
    bus.publish_batch("t", (0..16).map(msg).collect()).await.unwrap();

    // Full: the next publish waits (time is paused, so this timeout is virtual, not a sleep).
    let blocked =
        tokio::time::timeout(Duration::from_secs(5), bus.publish("t", b"k", Bytes::new())).await;
    assert!(blocked.is_err(), "publish into a full partition returned");
    assert_eq!(bus.held("t").unwrap(), 16);

    // One group committing is not enough while the other holds the records back.
    let got = poll_n(fast.as_mut(), 16).await;
    fast.commit(&next_offsets(&got)).await.unwrap();
    let still =
        tokio::time::timeout(Duration::from_secs(5), bus.publish("t", b"k", Bytes::new())).await;
    assert!(still.is_err(), "the slow group's records were dropped");

    // A producer task makes progress as soon as the slow group commits.
    let producer = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.publish_batch("t", (16..100).map(msg).collect()).await })
    };
    let mut read = 0usize;
    let mut total = Vec::new();
    while read < 100 {
        for (is_slow, c) in [(false, &mut fast), (true, &mut slow)] {
            let got = c.poll(8, Duration::from_millis(10)).await.unwrap();
            if !got.is_empty() {
                c.commit(&next_offsets(&got)).await.unwrap();
            }
            if is_slow {
                read += got.len();
                total.extend(got);
            }
        }
        assert!(bus.held("t").unwrap() <= 16, "memory grew past the capacity");
    }
    assert_eq!(producer.await.unwrap().unwrap().len(), 84);
    let payloads: Vec<usize> =
        total.iter().map(|r| std::str::from_utf8(&r.payload).unwrap().parse().unwrap()).collect();
    assert_eq!(payloads, (0..100).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_topic_nobody_reads_keeps_only_its_newest_records() {
    let bus = MemoryBus::new(16);
    bus.create_topic("dlq", 1).await.unwrap();
    bus.publish_batch("dlq", (0..100).map(msg).collect()).await.unwrap();
    assert_eq!(bus.held("dlq").unwrap(), 16);
    // Dropping old records does not move the end: lag counts every record published.
    assert_eq!(bus.end_offsets("dlq").await.unwrap(), BTreeMap::from([(0, 100)]));
    let mut late = bus.subscribe("dlq", "late").await.unwrap();
    let got = poll_n(late.as_mut(), 16).await;
    assert_eq!(got.first().map(|r| r.offset), Some(84));
}

#[tokio::test]
async fn offsets_continue_from_the_given_start() {
    let bus = MemoryBus::new(64);
    bus.create_topic_at("t", 2, &BTreeMap::from([(0, 500), (1, 7)])).unwrap();
    let d = bus.publish_batch("t", (0..20).map(msg).collect()).await.unwrap();
    for p in [0u32, 1] {
        let first = d.iter().filter(|d| d.partition == p).map(|d| d.offset).min();
        if let Some(first) = first {
            assert_eq!(first, if p == 0 { 500 } else { 7 });
        }
    }
    let landed = |p: u32| d.iter().filter(|d| d.partition == p).count() as u64;
    assert_eq!(
        bus.end_offsets("t").await.unwrap(),
        BTreeMap::from([(0, 500 + landed(0)), (1, 7 + landed(1))])
    );
}

#[tokio::test]
async fn a_leaving_member_hands_its_partitions_over_from_the_committed_offset() {
    let bus = MemoryBus::new(1024);
    bus.create_topic("t", 2).await.unwrap();
    let mut a = bus.subscribe("t", "g").await.unwrap();
    let mut b = bus.subscribe("t", "g").await.unwrap();
    assert!(a.poll(10, Duration::from_millis(1)).await.unwrap().is_empty());
    assert!(b.poll(10, Duration::from_millis(1)).await.unwrap().is_empty());
    assert_eq!((a.assignment().len(), b.assignment().len()), (1, 1));
    bus.publish_batch(
        "t",
        (0..60).map(|i| (Bytes::from(format!("k{i}")), Bytes::from(i.to_string()))).collect(),
    )
    .await
    .unwrap();
    let from_b = b.poll(1000, Duration::from_millis(10)).await.unwrap();
    assert!(!from_b.is_empty());
    drop(b); // b read but never committed: its records come back to a
    let all = poll_n(a.as_mut(), 60).await;
    assert_eq!(a.assignment(), vec![0, 1]);
    assert!(from_b.iter().all(|r| all.contains(r)));
    assert!(matches!(a.commit(&BTreeMap::from([(9, 1)])).await, Err(BusError::NotAssigned { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the keys, partition count and batch split, a group reads every record exactly once,
    /// in publish order per key.
    #[test]
    fn partitioning_never_drops_or_duplicates(
        keys in proptest::collection::vec(0u8..40, 1..400),
        partitions in 1u32..12,
        split in 1usize..50,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let bus = MemoryBus::new(10_000);
            bus.create_topic("t", partitions).await.unwrap();
            let mut c = bus.subscribe("t", "g").await.unwrap();
            let records: Vec<(Bytes, Bytes)> = keys.iter().enumerate()
                .map(|(i, k)| (Bytes::from(vec![*k]), Bytes::from(i.to_string()))).collect();
            for chunk in records.chunks(split) {
                bus.publish_batch("t", chunk.to_vec()).await.unwrap();
            }
            let got = poll_n(c.as_mut(), records.len()).await;
            prop_assert!(c.poll(1, Duration::from_millis(1)).await.unwrap().is_empty());
            let mut seen: Vec<usize> = got.iter().map(|r| std::str::from_utf8(&r.payload).unwrap().parse().unwrap()).collect();
            for k in 0u8..40 {
                let order: Vec<usize> = got.iter().filter(|r| r.key[0] == k)
                    .map(|r| std::str::from_utf8(&r.payload).unwrap().parse().unwrap()).collect();
                prop_assert!(order.windows(2).all(|w| w[0] < w[1]), "key {} out of order", k);
            }
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..records.len()).collect::<Vec<_>>());
            Ok(())
        })?;
    }
}
