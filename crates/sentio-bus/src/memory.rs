//! The embedded bus: every topic lives in this process, in bounded memory.
//!
//! Each partition is a log with a base offset. Records leave the log once every consumer group of
//! the topic has committed past them; a producer that finds a partition full waits until that
//! happens, so a slow consumer slows the producer instead of growing memory. A topic that no group
//! has joined keeps only its newest `capacity` records per partition, like a retention limit.
//!
//! Groups split partitions among their live members (partition `p` goes to the member ranked
//! `p % members`); a member joining or leaving bumps the group's generation and every member picks
//! up its new share on its next poll, starting from the group's committed offset.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::partition::partition_for;
use crate::{Bus, BusError, Consumer, Delivery, Record, same_partitions, validate_topic};

/// The in-process bus. Cheap to share behind an `Arc`.
pub struct MemoryBus {
    capacity: usize,
    topics: Mutex<HashMap<String, Arc<Topic>>>,
    next_member: AtomicU64,
}

struct Topic {
    name: String,
    partitions: Vec<Mutex<Log>>,
    groups: Mutex<HashMap<String, Arc<Mutex<Group>>>>,
    /// Woken on every publish (consumers wait on it).
    data: Notify,
    /// Woken whenever records leave a log (producers wait on it).
    space: Notify,
}

struct Log {
    /// Offset of `records[0]`.
    base: u64,
    records: VecDeque<Record>,
}

impl Log {
    fn next_offset(&self) -> u64 {
        self.base + self.records.len() as u64
    }

    fn trim_to(&mut self, offset: u64) -> bool {
        let mut trimmed = false;
        while self.base < offset && self.records.pop_front().is_some() {
            self.base += 1;
            trimmed = true;
        }
        trimmed
    }
}

#[derive(Default)]
struct Group {
    committed: HashMap<u32, u64>,
    members: Vec<u64>,
    generation: u64,
}

/// A poisoned lock means a thread panicked while holding it; the data is plain counters and logs
/// that every critical section leaves consistent, so carrying on is safe.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl MemoryBus {
    /// A bus whose partitions hold at most `capacity` records each.
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), topics: Mutex::default(), next_member: AtomicU64::new(1) }
    }

    /// Creates `topic` with its partitions starting at the given offsets instead of 0. The process
    /// that owns an embedded bus uses this to continue the offsets its store already recorded, so
    /// that offsets stay unique across restarts.
    pub fn create_topic_at(
        &self,
        topic: &str,
        partitions: u32,
        start: &BTreeMap<u32, u64>,
    ) -> Result<(), BusError> {
        validate_topic(topic)?;
        let mut topics = lock(&self.topics);
        if let Some(existing) = topics.get(topic) {
            let existing = existing.partitions.len() as u32;
            return same_partitions(topic, existing, partitions);
        }
        if partitions == 0 {
            return Err(BusError::InvalidTopic {
                topic: topic.into(),
                reason: "needs at least one partition",
            });
        }
        let logs = (0..partitions)
            .map(|p| {
                Mutex::new(Log {
                    base: start.get(&p).copied().unwrap_or(0),
                    records: VecDeque::new(),
                })
            })
            .collect();
        topics.insert(
            topic.to_owned(),
            Arc::new(Topic {
                name: topic.to_owned(),
                partitions: logs,
                groups: Mutex::default(),
                data: Notify::new(),
                space: Notify::new(),
            }),
        );
        Ok(())
    }

    fn topic(&self, topic: &str) -> Result<Arc<Topic>, BusError> {
        lock(&self.topics)
            .get(topic)
            .cloned()
            .ok_or_else(|| BusError::UnknownTopic { topic: topic.into() })
    }

    /// Records currently held by the partitions of `topic` (for tests and metrics).
    pub fn held(&self, topic: &str) -> Result<usize, BusError> {
        Ok(self.topic(topic)?.partitions.iter().map(|p| lock(p).records.len()).sum())
    }

    /// Appends `records` to partition `p`, waiting for room as needed.
    async fn append(
        &self,
        topic: &Topic,
        p: u32,
        records: Vec<(Bytes, Bytes)>,
        out: &mut Vec<(usize, Delivery)>,
        indices: Vec<usize>,
    ) {
        let mut pending = records.into_iter().zip(indices).peekable();
        while pending.peek().is_some() {
            let space = topic.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            let has_groups = !lock(&topic.groups).is_empty();
            let appended = {
                let mut log = lock(&topic.partitions[p as usize]);
                let mut appended = false;
                while let Some(((key, payload), index)) = pending.peek().cloned() {
                    if log.records.len() >= self.capacity {
                        if has_groups {
                            break;
                        }
                        // Nobody reads this topic: keep the newest records only.
                        log.records.pop_front();
                        log.base += 1;
                    }
                    pending.next();
                    let offset = log.next_offset();
                    log.records.push_back(Record {
                        partition: p,
                        offset,
                        key,
                        payload,
                        timestamp_ms: now_ms(),
                    });
                    out.push((index, Delivery { partition: p, offset }));
                    appended = true;
                }
                appended
            };
            if appended {
                topic.data.notify_waiters();
            }
            if pending.peek().is_some() {
                space.await;
            }
        }
    }
}

#[async_trait::async_trait]
impl Bus for MemoryBus {
    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), BusError> {
        self.create_topic_at(topic, partitions, &BTreeMap::new())
    }

    async fn publish_batch(
        &self,
        topic: &str,
        records: Vec<(Bytes, Bytes)>,
    ) -> Result<Vec<Delivery>, BusError> {
        let topic = self.topic(topic)?;
        let n = topic.partitions.len() as u32;
        let total = records.len();
        let mut by_partition: BTreeMap<u32, (Vec<(Bytes, Bytes)>, Vec<usize>)> = BTreeMap::new();
        for (index, (key, payload)) in records.into_iter().enumerate() {
            let entry = by_partition.entry(partition_for(&key, n)).or_default();
            entry.0.push((key, payload));
            entry.1.push(index);
        }
        let mut out = Vec::with_capacity(total);
        for (p, (records, indices)) in by_partition {
            self.append(&topic, p, records, &mut out, indices).await;
        }
        out.sort_unstable_by_key(|(index, _)| *index);
        Ok(out.into_iter().map(|(_, d)| d).collect())
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Consumer>, BusError> {
        let topic = self.topic(topic)?;
        let member = self.next_member.fetch_add(1, Ordering::Relaxed);
        let group_state = {
            let mut groups = lock(&topic.groups);
            let g = groups.entry(group.to_owned()).or_default().clone();
            {
                let mut g = lock(&g);
                g.members.push(member);
                g.generation += 1;
            }
            g
        };
        // Members of other groups may now be waiting on a log this group holds back; nothing to
        // wake. Members of this group must re-balance: they see the new generation on next poll.
        topic.data.notify_waiters();
        Ok(Box::new(MemoryConsumer {
            topic,
            group: group_state,
            member,
            generation: 0,
            positions: BTreeMap::new(),
            cursor: 0,
        }))
    }

    async fn end_offsets(&self, topic: &str) -> Result<BTreeMap<u32, u64>, BusError> {
        // Trimming moves a log's base, never its end: the end offset counts every record ever
        // appended (from the topic's start offset), held or not.
        let topic = self.topic(topic)?;
        Ok((0u32..).zip(&topic.partitions).map(|(p, log)| (p, lock(log).next_offset())).collect())
    }
}

/// A member of a consumer group on the embedded bus. Dropping it leaves the group.
pub struct MemoryConsumer {
    topic: Arc<Topic>,
    group: Arc<Mutex<Group>>,
    member: u64,
    /// The group generation `positions` was computed for.
    generation: u64,
    /// Assigned partitions and the next offset to read from each.
    positions: BTreeMap<u32, u64>,
    /// Round-robin start, so one busy partition does not starve the others.
    cursor: usize,
}

impl MemoryConsumer {
    /// Picks up a new share of partitions when the group changed.
    fn rebalance(&mut self) {
        let g = lock(&self.group);
        if g.generation == self.generation {
            return;
        }
        let mut members = g.members.clone();
        members.sort_unstable();
        let rank = members.iter().position(|m| *m == self.member).unwrap_or(0);
        let n = self.topic.partitions.len() as u32;
        let mine: Vec<u32> =
            (0..n).filter(|p| (*p as usize) % members.len().max(1) == rank).collect();
        let mut positions = BTreeMap::new();
        for p in mine {
            let base = lock(&self.topic.partitions[p as usize]).base;
            // Keep our own position on a partition we already had; otherwise start where the group
            // committed (never before what the log still holds).
            let start = self
                .positions
                .get(&p)
                .copied()
                .unwrap_or_else(|| g.committed.get(&p).copied().unwrap_or(0))
                .max(base);
            positions.insert(p, start);
        }
        self.positions = positions;
        self.generation = g.generation;
    }

    fn take_available(&mut self, max: usize) -> Vec<Record> {
        let mut out = Vec::new();
        let parts: Vec<u32> = self.positions.keys().copied().collect();
        if parts.is_empty() {
            return out;
        }
        for i in 0..parts.len() {
            if out.len() >= max {
                break;
            }
            let p = parts[(self.cursor + i) % parts.len()];
            let log = lock(&self.topic.partitions[p as usize]);
            let pos = self.positions.get(&p).copied().unwrap_or(0).max(log.base);
            // A position past the end (only a seek could set one, and it refuses) takes nothing.
            let skip = usize::try_from(pos - log.base).unwrap_or(usize::MAX).min(log.records.len());
            let take = (max - out.len()).min(log.records.len() - skip);
            out.extend(log.records.range(skip..skip + take).cloned());
            self.positions.insert(p, pos + take as u64);
        }
        self.cursor = self.cursor.wrapping_add(1);
        out
    }
}

#[async_trait::async_trait]
impl Consumer for MemoryConsumer {
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>, BusError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let topic = self.topic.clone();
        loop {
            let data = topic.data.notified();
            tokio::pin!(data);
            data.as_mut().enable();
            self.rebalance();
            let records = self.take_available(max.max(1));
            if !records.is_empty() {
                return Ok(records);
            }
            if tokio::time::timeout_at(deadline, data).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn commit(&mut self, next_offsets: &BTreeMap<u32, u64>) -> Result<(), BusError> {
        let n = self.topic.partitions.len() as u32;
        if let Some(p) = next_offsets.keys().find(|p| **p >= n) {
            return Err(BusError::NotAssigned { topic: self.topic.name.clone(), partition: *p });
        }
        lock(&self.group).committed.extend(next_offsets.iter().map(|(p, o)| (*p, *o)));
        // Records every group has passed can go; wake producers waiting for room.
        let groups: Vec<Arc<Mutex<Group>>> = lock(&self.topic.groups).values().cloned().collect();
        let mut freed = false;
        for p in next_offsets.keys() {
            let low = groups
                .iter()
                .map(|g| lock(g).committed.get(p).copied().unwrap_or(0))
                .min()
                .unwrap_or(0);
            freed |= lock(&self.topic.partitions[*p as usize]).trim_to(low);
        }
        if freed {
            self.topic.space.notify_waiters();
        }
        Ok(())
    }

    async fn seek(&mut self, partition: u32, offset: u64) -> Result<(), BusError> {
        self.rebalance();
        match self.positions.get_mut(&partition) {
            Some(pos) => {
                let end = lock(&self.topic.partitions[partition as usize]).next_offset();
                if offset > end {
                    // This process's log never held that offset: the store's offsets were
                    // advanced by another process with a bus of its own.
                    return Err(BusError::Backend {
                        operation: "seek",
                        transient: false,
                        source: format!(
                            "offset {offset} is past the end ({end}) of partition {partition} of \
                             {:?} in this process's embedded bus; another process has been \
                             writing to the same store",
                            self.topic.name
                        )
                        .into(),
                    });
                }
                *pos = offset;
                Ok(())
            }
            None => Err(BusError::NotAssigned { topic: self.topic.name.clone(), partition }),
        }
    }

    fn assignment(&self) -> Vec<u32> {
        self.positions.keys().copied().collect()
    }
}

impl Drop for MemoryConsumer {
    fn drop(&mut self) {
        let mut g = lock(&self.group);
        g.members.retain(|m| *m != self.member);
        g.generation += 1;
        drop(g);
        self.topic.data.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// Offsets that another process advanced (two processes sharing one store's offsets) point
    /// past what this process's log ever held: the seek is refused with a reason, and a position
    /// past the end never panics a poll.
    #[tokio::test]
    async fn a_position_past_the_end_of_the_log_is_an_error_not_a_panic() {
        let bus = MemoryBus::new(16);
        bus.create_topic_at("t", 1, &BTreeMap::from([(0, 1536)])).unwrap();
        bus.publish_batch("t", vec![(Bytes::new(), Bytes::from_static(b"a"))]).await.unwrap();
        let mut consumer = bus.subscribe("t", "g").await.unwrap();
        let err = consumer.seek(0, 4608).await.unwrap_err();
        let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(text.contains("4608") && text.contains("1537"), "{text}");
        assert!(text.contains("another process"), "{text}");
        // The position stays valid: the record is delivered.
        let got = consumer.poll(10, Duration::from_millis(50)).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].offset, 1536);
    }
}
