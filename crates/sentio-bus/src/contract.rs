//! The bus contract: what every backend must do, written once. The embedded bus runs it in this
//! crate's tests; the Kafka backend runs it against a real broker.
//!
//! Every check makes its own topics under `prefix`, so runs never see each other's records, and
//! waits for outcomes with a deadline rather than for a fixed time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::{Bus, BusError, Consumer, Record};

/// How long any one expected outcome may take.
const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);

/// Runs every check. `prefix` must be unique to this run (e.g. a random suffix).
pub async fn check_bus(bus: &dyn Bus, prefix: &str) {
    check_topics(bus, &format!("{prefix}-topics")).await;
    check_keyed_order(bus, &format!("{prefix}-order")).await;
    check_bytes_intact(bus, &format!("{prefix}-bytes")).await;
    check_group_resume_and_independence(bus, &format!("{prefix}-resume")).await;
    check_shared_group(bus, &format!("{prefix}-shared")).await;
    check_seek(bus, &format!("{prefix}-seek")).await;
    check_end_offsets(bus, &format!("{prefix}-ends")).await;
    check_cancelled_polls(bus, &format!("{prefix}-cancel")).await;
}

/// Polls until `n` records arrived (fails after the deadline).
pub async fn poll_n(consumer: &mut dyn Consumer, n: usize) -> Vec<Record> {
    let deadline = Instant::now() + DEADLINE;
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} records arrived in {DEADLINE:?}",
            out.len()
        );
        out.extend(consumer.poll(n - out.len(), POLL).await.unwrap());
    }
    out
}

/// The offset after the last record seen, per partition.
pub fn next_offsets(records: &[Record]) -> BTreeMap<u32, u64> {
    let mut next = BTreeMap::new();
    for r in records {
        let e = next.entry(r.partition).or_insert(0);
        *e = (*e).max(r.offset + 1);
    }
    next
}

fn keyed(prefix: &str, keys: usize, per_key: usize) -> Vec<(Bytes, Bytes)> {
    (0..per_key)
        .flat_map(|seq| {
            (0..keys).map(move |k| {
                (Bytes::from(format!("{prefix}-key-{k}")), Bytes::from(format!("{k}:{seq}")))
            })
        })
        .collect()
}

pub async fn check_topics(bus: &dyn Bus, topic: &str) {
    bus.create_topic(topic, 3).await.unwrap();
    bus.create_topic(topic, 3).await.expect("creating an existing topic again succeeds");
    assert!(
        matches!(
            bus.create_topic(topic, 5).await,
            Err(BusError::PartitionMismatch { existing: 3, .. })
        ),
        "asking for another partition count is refused"
    );
    let missing = format!("{topic}-missing");
    assert!(
        matches!(
            bus.publish(&missing, b"k", Bytes::from_static(b"v")).await,
            Err(BusError::UnknownTopic { .. })
        ),
        "publishing to a topic that does not exist fails"
    );
    assert!(matches!(bus.create_topic("bad topic", 1).await, Err(BusError::InvalidTopic { .. })));
}

pub async fn check_keyed_order(bus: &dyn Bus, topic: &str) {
    bus.create_topic(topic, 4).await.unwrap();
    let records = keyed(topic, 10, 40);
    let mut deliveries = bus.publish_batch(topic, records[..200].to_vec()).await.unwrap();
    for (key, payload) in &records[200..] {
        deliveries.push(bus.publish(topic, key, payload.clone()).await.unwrap());
    }
    assert_eq!(deliveries.len(), 400);

    // One key, one partition; offsets grow by one within a partition.
    let mut key_partition: HashMap<&Bytes, u32> = HashMap::new();
    let mut last_offset: HashMap<u32, u64> = HashMap::new();
    for ((key, _), d) in records.iter().zip(&deliveries) {
        assert!(d.partition < 4);
        assert_eq!(
            *key_partition.entry(key).or_insert(d.partition),
            d.partition,
            "key moved partition"
        );
        if let Some(prev) = last_offset.insert(d.partition, d.offset) {
            assert_eq!(
                d.offset,
                prev + 1,
                "offsets on partition {} are not consecutive",
                d.partition
            );
        }
    }
    assert!(
        key_partition.values().collect::<BTreeSet<_>>().len() > 1,
        "10 keys all on one partition"
    );

    let mut c = bus.subscribe(topic, &format!("{topic}-g")).await.unwrap();
    let got = poll_n(c.as_mut(), 400).await;
    let mut seen: HashMap<(u32, u64), &Record> = HashMap::new();
    let mut last_seq: HashMap<Bytes, i64> = HashMap::new();
    for r in &got {
        assert!(
            seen.insert((r.partition, r.offset), r).is_none(),
            "duplicate record {}/{}",
            r.partition,
            r.offset
        );
        let text = std::str::from_utf8(&r.payload).unwrap();
        let seq: i64 = text.split(':').nth(1).unwrap().parse().unwrap();
        let prev = last_seq.insert(r.key.clone(), seq).unwrap_or(-1);
        assert_eq!(seq, prev + 1, "key {:?} out of order", r.key);
        assert_eq!(key_partition[&r.key], r.partition);
    }
    for ((key, payload), d) in records.iter().zip(&deliveries) {
        let r = seen[&(d.partition, d.offset)];
        assert_eq!(
            (&r.key, &r.payload),
            (key, payload),
            "delivery report points at another record"
        );
    }
    assert!(
        c.poll(10, Duration::from_millis(300)).await.unwrap().is_empty(),
        "more records than published"
    );
}

pub async fn check_bytes_intact(bus: &dyn Bus, topic: &str) {
    bus.create_topic(topic, 1).await.unwrap();
    let binary: Vec<u8> = (0..=255).collect();
    let cases = vec![
        (Bytes::from_static(b"k"), Bytes::new()),
        (Bytes::from(binary.clone()), Bytes::from(binary.repeat(8))),
        (
            Bytes::from_static("pompe-é".as_bytes()),
            Bytes::from_static("{\"v\":1,\"unit\":\"°C\"}".as_bytes()),
        ),
    ];
    bus.publish_batch(topic, cases.clone()).await.unwrap();
    let mut c = bus.subscribe(topic, &format!("{topic}-g")).await.unwrap();
    let got: Vec<(Bytes, Bytes)> =
        poll_n(c.as_mut(), 3).await.into_iter().map(|r| (r.key, r.payload)).collect();
    assert_eq!(got, cases);
}

pub async fn check_group_resume_and_independence(bus: &dyn Bus, topic: &str) {
    bus.create_topic(topic, 2).await.unwrap();
    let records = keyed(topic, 6, 20);
    bus.publish_batch(topic, records.clone()).await.unwrap();
    let group = format!("{topic}-g");
    // Joined before anyone commits: a bounded bus may drop records every known group has passed.
    let mut other = bus.subscribe(topic, &format!("{topic}-other")).await.unwrap();

    let mut first = bus.subscribe(topic, &group).await.unwrap();
    let head = poll_n(first.as_mut(), 50).await;
    let committed = next_offsets(&head);
    first.commit(&committed).await.unwrap();
    drop(first);

    // The group resumes exactly where it committed: together the two reads hold every record once.
    let mut second = bus.subscribe(topic, &group).await.unwrap();
    let tail = poll_n(second.as_mut(), records.len() - head.len()).await;
    let mut all: Vec<(u32, u64)> =
        head.iter().chain(&tail).map(|r| (r.partition, r.offset)).collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), records.len(), "resume lost or repeated records");
    for r in &tail {
        assert!(r.offset >= committed.get(&r.partition).copied().unwrap_or(0));
    }

    // Another group starts from the beginning, unaffected by the first one's commits.
    assert_eq!(poll_n(other.as_mut(), records.len()).await.len(), records.len());
}

pub async fn check_shared_group(bus: &dyn Bus, topic: &str) {
    bus.create_topic(topic, 4).await.unwrap();
    let group = format!("{topic}-g");
    let mut a = bus.subscribe(topic, &group).await.unwrap();
    let mut b = bus.subscribe(topic, &group).await.unwrap();

    // Wait until the members agree on a split: disjoint, covering all partitions.
    let deadline = Instant::now() + DEADLINE;
    loop {
        assert!(Instant::now() < deadline, "members never split the partitions");
        assert!(a.poll(100, POLL).await.unwrap().is_empty());
        assert!(b.poll(100, POLL).await.unwrap().is_empty());
        let (sa, sb): (BTreeSet<u32>, BTreeSet<u32>) =
            (a.assignment().into_iter().collect(), b.assignment().into_iter().collect());
        if !sa.is_empty() && !sb.is_empty() && sa.is_disjoint(&sb) && sa.len() + sb.len() == 4 {
            break;
        }
    }

    let records = keyed(topic, 16, 10);
    bus.publish_batch(topic, records.clone()).await.unwrap();
    let deadline = Instant::now() + DEADLINE;
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    while got_a.len() + got_b.len() < records.len() {
        assert!(
            Instant::now() < deadline,
            "shared group read {} of {}",
            got_a.len() + got_b.len(),
            records.len()
        );
        got_a.extend(a.poll(1000, POLL).await.unwrap());
        got_b.extend(b.poll(1000, POLL).await.unwrap());
    }
    assert!(!got_a.is_empty() && !got_b.is_empty(), "one member did all the work");
    let mut all: Vec<(u32, u64)> =
        got_a.iter().chain(&got_b).map(|r| (r.partition, r.offset)).collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), records.len(), "a record was read twice or not at all");
    let pa: BTreeSet<u32> = got_a.iter().map(|r| r.partition).collect();
    let pb: BTreeSet<u32> = got_b.iter().map(|r| r.partition).collect();
    assert!(pa.is_disjoint(&pb), "a partition was read by both members");
}

pub async fn check_seek(bus: &dyn Bus, topic: &str) {
    bus.create_topic(topic, 1).await.unwrap();
    bus.publish_batch(topic, keyed(topic, 1, 10)).await.unwrap();
    let mut c = bus.subscribe(topic, &format!("{topic}-g")).await.unwrap();
    let first = poll_n(c.as_mut(), 10).await;
    c.seek(0, 4).await.unwrap();
    let again = poll_n(c.as_mut(), 6).await;
    assert_eq!(again, first[4..].to_vec(), "seek did not rewind to offset 4");
    assert!(matches!(c.seek(7, 0).await, Err(BusError::NotAssigned { partition: 7, .. })));
}

pub async fn check_end_offsets(bus: &dyn Bus, topic: &str) {
    bus.create_topic(topic, 3).await.unwrap();
    assert_eq!(
        bus.end_offsets(topic).await.unwrap(),
        BTreeMap::from([(0, 0), (1, 0), (2, 0)]),
        "a fresh topic does not end at offset 0 on every partition"
    );

    // Each partition ends after the records that landed on it, as the deliveries report them.
    let records = keyed(topic, 12, 5);
    let deliveries = bus.publish_batch(topic, records.clone()).await.unwrap();
    let mut landed: BTreeMap<u32, u64> = (0..3).map(|p| (p, 0)).collect();
    for d in &deliveries {
        *landed.entry(d.partition).or_default() += 1;
    }
    assert!(landed.values().filter(|n| **n > 0).count() > 1, "12 keys all on one partition");
    let ends = bus.end_offsets(topic).await.unwrap();
    assert_eq!(ends.values().sum::<u64>(), records.len() as u64, "end offsets {ends:?}");
    assert_eq!(ends, landed, "end offsets differ from the records published per partition");

    // A consumer reading everything stops exactly at the end offsets: its lag is zero.
    let mut c = bus.subscribe(topic, &format!("{topic}-g")).await.unwrap();
    let got = poll_n(c.as_mut(), records.len()).await;
    let read = next_offsets(&got);
    for (p, end) in &ends {
        assert_eq!(read.get(p).copied().unwrap_or(0), *end, "partition {p} read up to another end");
    }

    let missing = format!("{topic}-missing");
    match bus.end_offsets(&missing).await {
        Err(e @ BusError::UnknownTopic { .. }) => {
            assert!(e.to_string().contains(&missing), "the error does not name the topic: {e}");
        }
        other => panic!("end offsets of a topic that does not exist: {other:?}"),
    }
}

/// A poll dropped before it returns (a `select!` that took another branch, as the ETL's does when
/// a store write completes) loses no record: however the polls are cut short, every record still
/// arrives, once.
pub async fn check_cancelled_polls(bus: &dyn Bus, topic: &str) {
    bus.create_topic(topic, 2).await.unwrap();
    let sent = keyed(topic, 4, 500);
    bus.publish_batch(topic, sent.clone()).await.unwrap();
    let mut c = bus.subscribe(topic, &format!("{topic}-g")).await.unwrap();
    let deadline = Instant::now() + DEADLINE;
    let mut got = Vec::new();
    while got.len() < sent.len() {
        assert!(
            Instant::now() < deadline,
            "only {} of {} records arrived in {DEADLINE:?}",
            got.len(),
            sent.len()
        );
        // Each poll may take everything left, so it collects until the fetched records run out;
        // each is cut short at the next timer tick, which is when a poll that waits after
        // collecting would be dropped with what it holds.
        tokio::select! {
            polled = c.poll(sent.len() - got.len(), POLL) => got.extend(polled.unwrap()),
            () = tokio::time::sleep(Duration::from_micros(100)) => {}
        }
    }
    let mut got: Vec<(Bytes, Bytes)> = got.into_iter().map(|r| (r.key, r.payload)).collect();
    let mut want = sent;
    got.sort();
    want.sort();
    assert_eq!(got.len(), want.len(), "records arrived twice");
    assert_eq!(got, want);
}
