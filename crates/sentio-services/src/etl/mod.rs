//! The ETL: consumes `sensor-data` in a consumer group, decodes, batches by size and time, and writes
//! each batch's rows, dead letters and offsets to the store in one transaction.
//!
//! Order of a flush, and why it is exactly once:
//! 1. dead letters go to the dead-letter topic (a crash after this re-publishes them: consumers of
//!    the DLQ deduplicate by source partition and offset, which every dead letter carries);
//! 2. the store commits rows, dead letters and the offsets after them in one transaction, skipping
//!    anything at offsets it already holds, so a redelivered record is never stored twice;
//! 3. only then is the offset committed on the bus, which is an optimisation for resuming: the
//!    store's offsets are the truth, and on assignment the consumer seeks to them.
//!
//! One batch's write is in flight while the next batch is polled and decoded, in the same task
//! (`PIPELINE_STEP` records at a time, yielding between steps): the database works on batch n
//! while this task decodes batch n+1. The write is settled (stored, then committed on the bus)
//! before the next one starts, before the stored offsets are read for a new assignment, and before
//! a rejoin or exit, so each batch still goes through the three steps above in order, and at most
//! one batch is ever written and not yet settled. On 2 cores this took the PostgreSQL path from a
//! median 0.805 to 0.875 of a raw `COPY` (docs/benchmarks.md); the write runs in this task rather
//! than a task of its own, which measured no better.
//!
//! A member left without partitions for `ingest.rejoin_after` flushes its open batch (the same
//! flush, so still exactly once), leaves the group and joins again ([`crate::rejoin`]); the new
//! member seeks to the store's offsets on its first assignment like any other.

pub mod batcher;
pub mod dead_letter;
pub mod keeper;
pub mod repeats;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use sentio_bus::{Bus, BusError, Consumer, Record};
use sentio_config::IngestConfig;
use sentio_core::time::now_ns;
use sentio_core::{DecodeLimits, Profiles};
use sentio_store::{BatchOutcome, IngestBatch, ReadingStore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::batcher::Batcher;
use self::dead_letter::DeadLetterV1;
use self::repeats::Repeats;
use crate::rejoin::{self, RejoinWatch};

/// How long a drain may keep reading after the stop signal.
const DRAIN_LIMIT: Duration = Duration::from_secs(3);
/// A drain ends at the first poll that waits this long for nothing.
const DRAIN_IDLE: Duration = Duration::from_millis(100);
/// The longest a poll waits for records.
const POLL_WAIT: Duration = Duration::from_millis(500);
/// Retries of a transient store error before the ETL gives up.
const STORE_RETRIES: u32 = 8;
/// While a write is in flight, records are polled and decoded this many at a time, so that the
/// write, driven by this task, sends its next statement without waiting long: with 512 the
/// database sat idle about 1 ms per statement (0.16 ms of decoding per 512 records, plus polling).
const PIPELINE_STEP: usize = 128;

/// A batch's write to the store (dead letters published, rows and offsets committed).
type Write<'a> = Pin<Box<dyn Future<Output = anyhow::Result<Written>> + Send + 'a>>;

/// The outcome of the write in flight; never ready when there is none.
async fn finished(write: &mut Option<Write<'_>>) -> anyhow::Result<Written> {
    match write {
        Some(write) => write.await,
        None => std::future::pending().await,
    }
}

/// A batch the store has committed, whose offsets the bus has yet to be told.
struct Written {
    next_offsets: BTreeMap<u32, u64>,
    outcome: BatchOutcome,
}

/// The ETL's writes under way.
#[derive(Default)]
struct InFlight<'a> {
    /// The batch being written.
    write: Option<Write<'a>>,
    /// The batch written before it, stored but not yet committed on the bus: that waits until
    /// the next write has started, keeping the bus's round trip off the database's path.
    written: Option<Written>,
}

/// Running totals, shared with whoever displays them.
#[derive(Debug, Default)]
pub struct EtlStats {
    pub consumed: AtomicU64,
    pub rows_stored: AtomicU64,
    pub dead_letters: AtomicU64,
    pub replayed_skipped: AtomicU64,
    /// Readings not stored because a stored one (or an earlier one of the batch) has the same
    /// device, channel, timestamp and value: the same message sent twice.
    pub copies_skipped: AtomicU64,
    /// Readings that repeat what was already stored for their device and sensor (see
    /// [`repeats`]); exact copies are stored once, the others again.
    pub repeated: AtomicU64,
    /// Readings kept whose channel the device's profile does not declare (or whose device no
    /// profile claims): stored, not modelled.
    pub unmodelled: AtomicU64,
    pub batches: AtomicU64,
}

/// A plain copy of [`EtlStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EtlSnapshot {
    pub consumed: u64,
    pub rows_stored: u64,
    pub dead_letters: u64,
    pub replayed_skipped: u64,
    pub copies_skipped: u64,
    pub repeated: u64,
    pub unmodelled: u64,
    pub batches: u64,
}

impl EtlStats {
    pub fn snapshot(&self) -> EtlSnapshot {
        EtlSnapshot {
            consumed: self.consumed.load(Ordering::Relaxed),
            rows_stored: self.rows_stored.load(Ordering::Relaxed),
            dead_letters: self.dead_letters.load(Ordering::Relaxed),
            replayed_skipped: self.replayed_skipped.load(Ordering::Relaxed),
            copies_skipped: self.copies_skipped.load(Ordering::Relaxed),
            repeated: self.repeated.load(Ordering::Relaxed),
            unmodelled: self.unmodelled.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
        }
    }
}

/// The ETL role.
pub struct Etl {
    bus: Arc<dyn Bus>,
    store: Arc<dyn ReadingStore>,
    topic: String,
    dead_letter_topic: String,
    config: IngestConfig,
    profiles: Profiles,
    stats: Arc<EtlStats>,
    /// Set up when the run starts, from the store's newest readings.
    repeats: std::sync::Mutex<Repeats>,
}

impl Etl {
    pub fn new(
        bus: Arc<dyn Bus>,
        store: Arc<dyn ReadingStore>,
        topic: &str,
        dead_letter_topic: &str,
        config: &IngestConfig,
    ) -> Self {
        Self {
            bus,
            store,
            topic: topic.to_owned(),
            dead_letter_topic: dead_letter_topic.to_owned(),
            config: config.clone(),
            profiles: Profiles::builtin(),
            stats: Arc::default(),
            repeats: std::sync::Mutex::default(),
        }
    }

    /// The configured profiles: a reading in a unit other than the one its device's profile
    /// declares for the channel is a dead letter (`unit_mismatch`). By default the built-in pump
    /// profile claims every device.
    pub fn with_profiles(mut self, profiles: Profiles) -> Self {
        self.profiles = profiles;
        self
    }

    pub fn stats(&self) -> Arc<EtlStats> {
        self.stats.clone()
    }

    /// Consumes until `stop` fires, then drains what the bus still holds (briefly), writes the last
    /// batch and returns.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let group = self.config.group.clone();
        let mut consumer = self
            .bus
            .subscribe(&self.topic, &group)
            .await
            .with_context(|| format!("joining group {group:?} on topic {:?}", self.topic))?;
        let limits = DecodeLimits {
            max_bytes: self.config.max_message_bytes,
            max_future_ns: i64::try_from(self.config.max_future.as_nanos()).unwrap_or(i64::MAX),
            ..DecodeLimits::default()
        };
        match self.store.latest_readings(i64::MIN).await {
            Ok(newest) => *self.lock_repeats() = Repeats::new(&newest),
            // Only the repeat warning depends on it.
            Err(e) => tracing::warn!(error = %e, "cannot read the newest stored readings"),
        }
        let mut batcher = Batcher::new(&group, &self.topic, limits, self.config.batch_linger)
            .with_profiles(self.profiles.clone());
        let mut assigned = BTreeSet::new();
        let mut watch = RejoinWatch::new(self.config.rejoin_after, Instant::now());
        let mut drain_until: Option<Instant> = None;
        let mut in_flight = InFlight::default();
        tracing::info!(topic = %self.topic, group = %group, "ingest started");

        loop {
            let mut room = self.config.batch_size.saturating_sub(batcher.len()).max(1);
            if in_flight.write.is_some() {
                room = room.min(PIPELINE_STEP);
            }
            // At most POLL_WAIT, so that the assignment is looked at (by the rejoin watch) as often.
            let wait = match (drain_until, batcher.deadline()) {
                (Some(_), _) => DRAIN_IDLE,
                (None, Some(deadline)) => deadline.saturating_duration_since(Instant::now()),
                (None, None) => POLL_WAIT,
            }
            .min(POLL_WAIT);
            let records = tokio::select! {
                biased;
                _ = stop.cancelled(), if drain_until.is_none() => {
                    drain_until = Some(Instant::now() + DRAIN_LIMIT);
                    continue;
                }
                written = finished(&mut in_flight.write), if in_flight.write.is_some() => {
                    in_flight.write = None;
                    self.confirm(consumer.as_mut(), &mut in_flight).await;
                    self.committed(consumer.as_mut(), written?).await;
                    continue;
                }
                polled = consumer.poll(room, wait) => polled.context("polling the bus")?,
            };
            // The write in flight has started (polled above): the one before it goes to the bus.
            self.confirm(consumer.as_mut(), &mut in_flight).await;
            let records = self
                .follow_assignment(consumer.as_mut(), &mut assigned, records, &mut in_flight)
                .await?;
            let now = Instant::now();
            let wall = now_ns();
            self.stats.consumed.fetch_add(records.len() as u64, Ordering::Relaxed);
            let idle = records.is_empty();
            for record in &records {
                batcher.push(record, wall, now);
            }
            self.stats.unmodelled.store(batcher.unmodelled(), Ordering::Relaxed);
            if in_flight.write.is_some() && !idle {
                // Lets the tasks the write woke run: the database connection's task, woken to
                // send the batch, waits in this worker's queue (where no other worker takes it
                // from) until this task yields, and a poll of a full bus never does.
                tokio::task::yield_now().await;
            }
            let due = batcher.deadline().is_some_and(|d| d <= now);
            if batcher.len() >= self.config.batch_size || due {
                self.next_write(consumer.as_mut(), &mut in_flight, batcher.take()).await?;
            }
            if drain_until.is_some_and(|until| idle || now >= until) {
                break;
            }
            if drain_until.is_some() {
                continue;
            }
            if let Some(overdue) = watch.observe(!assigned.is_empty(), Instant::now()) {
                // What the open batch holds is written, offsets and all, before the consumer goes.
                self.next_write(consumer.as_mut(), &mut in_flight, batcher.take()).await?;
                self.settle(consumer.as_mut(), &mut in_flight).await?;
                overdue.warn(&group);
                let fresh = rejoin::subscribe_again(
                    self.bus.as_ref(),
                    consumer,
                    &self.topic,
                    &group,
                    &stop,
                )
                .await
                .with_context(|| {
                    format!("joining group {group:?} on topic {:?} again", self.topic)
                })?;
                let Some(fresh) = fresh else {
                    // Stopped while joining: nothing is assigned, so nothing is left to drain.
                    tracing::info!(stats = ?self.stats.snapshot(), "ingest stopped");
                    return Ok(());
                };
                consumer = fresh;
                assigned.clear();
                watch.rejoined(Instant::now());
            }
        }
        self.next_write(consumer.as_mut(), &mut in_flight, batcher.take()).await?;
        self.settle(consumer.as_mut(), &mut in_flight).await?;
        tracing::info!(stats = ?self.stats.snapshot(), "ingest stopped");
        Ok(())
    }

    /// On a new assignment, moves each new partition to the offset the store holds: records of
    /// this poll below it are dropped, and a partition this poll returned nothing at or past it
    /// for is sought there (the bus's own committed offset can only be behind the store's). The
    /// write in flight is settled first, so that the offsets read include it.
    async fn follow_assignment(
        &self,
        consumer: &mut dyn Consumer,
        assigned: &mut BTreeSet<u32>,
        mut records: Vec<Record>,
        in_flight: &mut InFlight<'_>,
    ) -> anyhow::Result<Vec<Record>> {
        let mut now: BTreeSet<u32> = consumer.assignment().into_iter().collect();
        if now == *assigned {
            return Ok(records);
        }
        self.settle(consumer, in_flight).await?;
        let stored = self
            .store
            .committed_offsets(&self.config.group, &self.topic)
            .await
            .context("reading the stored consumer offsets")?;
        let added: Vec<u32> = now.difference(assigned).copied().collect();
        for p in added {
            let Some(offset) = stored.get(&p).copied() else { continue };
            records.retain(|r| r.partition != p || r.offset >= offset);
            if records.iter().any(|r| r.partition == p) {
                continue;
            }
            match consumer.seek(p, offset).await {
                Ok(()) => {}
                // Revoked again since the assignment was read (a rebalance in between): not ours
                // now; if it comes back, the next poll sees it as new and seeks then.
                Err(BusError::NotAssigned { .. }) => {
                    now.remove(&p);
                }
                Err(e) => return Err(e).context("seeking to the stored offset"),
            }
        }
        tracing::info!(partitions = ?now, "assignment changed");
        *assigned = now;
        Ok(records)
    }

    /// Starts writing `batch`: its dead letters to the dead-letter topic, then its rows, dead
    /// letters and offsets to the store. `None` for a batch that covers no record.
    fn lock_repeats(&self) -> std::sync::MutexGuard<'_, Repeats> {
        self.repeats.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self, batch: IngestBatch) -> Option<Write<'_>> {
        if batch.next_offsets.is_empty() {
            return None;
        }
        let repeated = self.lock_repeats().observe(batch.readings.iter().map(|(_, r)| r));
        self.stats.repeated.fetch_add(repeated, Ordering::Relaxed);
        Some(Box::pin(async move {
            if !batch.dead_letters.is_empty() {
                let records = batch
                    .dead_letters
                    .iter()
                    .map(|d| DeadLetterV1::new(&self.topic, &batch.group, d).to_record())
                    .collect();
                self.bus.publish_batch(&self.dead_letter_topic, records).await.with_context(
                    || format!("publishing dead letters to {:?}", self.dead_letter_topic),
                )?;
                for d in &batch.dead_letters {
                    tracing::warn!(
                        partition = d.source.partition,
                        offset = d.source.offset,
                        code = %d.code,
                        reason = %d.reason,
                        "dead letter"
                    );
                }
            }
            let outcome = self.write_with_retry(&batch).await?;
            Ok(Written { next_offsets: batch.next_offsets, outcome })
        }))
    }

    /// Starts writing `batch` once the write in flight, if any, is stored; the bus is told of
    /// that one after the new write has started (see [`InFlight::written`]).
    async fn next_write<'a>(
        &'a self,
        consumer: &mut dyn Consumer,
        in_flight: &mut InFlight<'a>,
        batch: IngestBatch,
    ) -> anyhow::Result<()> {
        self.confirm(consumer, in_flight).await;
        if let Some(write) = in_flight.write.take() {
            in_flight.written = Some(write.await?);
        }
        in_flight.write = self.write(batch);
        Ok(())
    }

    /// Waits for the writes under way, and tells the bus their offsets.
    async fn settle(
        &self,
        consumer: &mut dyn Consumer,
        in_flight: &mut InFlight<'_>,
    ) -> anyhow::Result<()> {
        self.confirm(consumer, in_flight).await;
        if let Some(write) = in_flight.write.take() {
            let written = write.await?;
            self.committed(consumer, written).await;
        }
        Ok(())
    }

    /// Tells the bus the offsets of the batch stored before the write in flight, if any.
    async fn confirm(&self, consumer: &mut dyn Consumer, in_flight: &mut InFlight<'_>) {
        if let Some(written) = in_flight.written.take() {
            self.committed(consumer, written).await;
        }
    }

    /// After the store has committed a batch: commits its offsets on the bus and counts it.
    async fn committed(&self, consumer: &mut dyn Consumer, written: Written) {
        if let Err(e) = consumer.commit(&written.next_offsets).await {
            // The store holds the offsets; the bus's copy only speeds up the next start.
            tracing::warn!(error = %e, "committing offsets on the bus failed; the store has them");
        }
        let outcome = written.outcome;
        self.stats.rows_stored.fetch_add(outcome.readings_inserted, Ordering::Relaxed);
        self.stats.dead_letters.fetch_add(outcome.dead_letters_inserted, Ordering::Relaxed);
        self.stats.replayed_skipped.fetch_add(outcome.replayed_skipped, Ordering::Relaxed);
        self.stats.copies_skipped.fetch_add(outcome.copies_skipped, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
    }

    async fn write_with_retry(&self, batch: &IngestBatch) -> anyhow::Result<BatchOutcome> {
        let mut delay = Duration::from_millis(50);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.store.write_batch(batch).await {
                Ok(outcome) => return Ok(outcome),
                Err(e) if e.is_transient() && attempt < STORE_RETRIES => {
                    tracing::warn!(error = %e, attempt, "store write failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)).with_context(|| {
                        format!("writing a batch of {} readings to the store", batch.readings.len())
                    });
                }
            }
        }
    }
}
