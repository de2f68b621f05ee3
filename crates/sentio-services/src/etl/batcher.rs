//! Turning bus records into store batches: decode each record, route it to the readings or the
//! dead letters, and keep the offset to resume from per partition. Pure: no I/O, no clock of its own.

use sentio_bus::Record;
use sentio_core::message::decode_truncated;
use sentio_core::{DecodeError, DecodeLimits, Profiles, decode_reading};
use sentio_store::{DeadLetter, IngestBatch, SourceOffset};
use tokio::time::{Duration, Instant};

/// Accumulates one batch at a time.
pub struct Batcher {
    group: String,
    topic: String,
    limits: DecodeLimits,
    /// A reading whose unit contradicts its device's profile is a dead letter.
    profiles: Profiles,
    /// Readings kept that no profile models, in all.
    unmodelled: u64,
    linger: Duration,
    batch: IngestBatch,
    /// When the oldest record of the open batch arrived.
    opened_at: Option<Instant>,
}

impl Batcher {
    pub fn new(group: &str, topic: &str, limits: DecodeLimits, linger: Duration) -> Self {
        Self {
            group: group.to_owned(),
            topic: topic.to_owned(),
            limits,
            profiles: Profiles::builtin(),
            unmodelled: 0,
            linger,
            batch: Self::empty(group, topic),
            opened_at: None,
        }
    }

    /// Checks units against `profiles` instead of the built-in pump for every device.
    pub fn with_profiles(mut self, profiles: Profiles) -> Self {
        self.profiles = profiles;
        self
    }

    fn empty(group: &str, topic: &str) -> IngestBatch {
        IngestBatch { group: group.to_owned(), topic: topic.to_owned(), ..IngestBatch::default() }
    }

    /// Decodes `record` into the open batch. `now_ns` is the wall clock (for the future-timestamp
    /// bound), `now` the monotonic clock (for the linger deadline). Returns false, and keeps
    /// nothing, for a record this batch already covers (a redelivery after a seek or rebalance):
    /// across batches the store skips such records, within a batch this does.
    pub fn push(&mut self, record: &Record, now_ns: i64, now: Instant) -> bool {
        if self.batch.next_offsets.get(&record.partition).is_some_and(|next| record.offset < *next)
        {
            return false;
        }
        self.opened_at.get_or_insert(now);
        let source = SourceOffset { partition: record.partition, offset: record.offset };
        let decoded = decode_reading(&record.payload, &self.limits, now_ns).and_then(|reading| {
            let modelled = self.profiles.check(&reading).map_err(DecodeError::from)?;
            self.unmodelled += u64::from(!modelled);
            Ok(reading)
        });
        match decoded {
            Ok(reading) => self.batch.readings.push((source, reading)),
            Err(e) => {
                let payload = kept_payload(&record.payload, self.limits.max_bytes);
                let mut reason = e.to_string();
                if let DecodeError::Oversize { .. } = e {
                    reason.push_str(&format!(
                        "; the dead letter keeps its first {} bytes",
                        payload.len()
                    ));
                }
                self.batch.dead_letters.push(DeadLetter {
                    source,
                    code: e.code().to_owned(),
                    reason,
                    key: record.key.to_vec(),
                    payload: payload.to_vec(),
                });
            }
        }
        self.batch.next_offsets.insert(record.partition, record.offset + 1);
        true
    }

    /// Readings kept so far whose channel their device's profile does not declare (or whose
    /// device no profile claims): stored, not modelled.
    pub fn unmodelled(&self) -> u64 {
        self.unmodelled
    }

    /// Records in the open batch.
    pub fn len(&self) -> usize {
        self.batch.readings.len() + self.batch.dead_letters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// When the open batch must be written even if not full; `None` while it is empty.
    pub fn deadline(&self) -> Option<Instant> {
        self.opened_at.map(|t| t + self.linger)
    }

    /// Closes the open batch and starts a new one.
    pub fn take(&mut self) -> IngestBatch {
        self.opened_at = None;
        std::mem::replace(&mut self.batch, Self::empty(&self.group, &self.topic))
    }
}

/// What a dead letter keeps of a payload: all of one within the limit; of a larger one, or of one
/// its producer cut short ([`sentio_core::message::encode_truncated`]), the first `max_bytes`, so
/// that no dead letter, on the dead-letter topic or in the store, is larger than the largest
/// message accepted, whatever a producer sends.
fn kept_payload(payload: &[u8], max_bytes: usize) -> &[u8] {
    let original = decode_truncated(payload).map_or(payload, |(prefix, _)| prefix);
    &original[..original.len().min(max_bytes)]
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use bytes::Bytes;
    use proptest::prelude::*;
    use sentio_core::{
        Channel, ChannelSpec, DeviceId, Profile, Reading, SensorKind, Unit, encode_reading,
    };

    use super::*;

    const NOW_NS: i64 = 1_764_000_000_000_000_000;

    fn record(partition: u32, offset: u64, valid: bool) -> Record {
        let payload = if valid {
            encode_reading(&Reading::pump(
                DeviceId::new(&format!("d-{partition}")).unwrap(),
                SensorKind::Pressure,
                NOW_NS - 1_000,
                offset as f64,
                offset,
            ))
        } else {
            format!("{{\"v\":1,\"broken\":{offset}").into_bytes()
        };
        Record {
            partition,
            offset,
            key: Bytes::new(),
            payload: Bytes::from(payload),
            timestamp_ms: 0,
        }
    }

    #[test]
    fn routes_and_tracks_offsets() {
        let mut b = Batcher::new("g", "t", DecodeLimits::default(), Duration::from_millis(100));
        assert_eq!(b.deadline(), None);
        let now = Instant::now();
        b.push(&record(0, 5, true), NOW_NS, now);
        b.push(&record(0, 6, false), NOW_NS, now);
        b.push(&record(2, 9, true), NOW_NS, now);
        assert_eq!(b.deadline(), Some(now + Duration::from_millis(100)));
        let batch = b.take();
        assert_eq!((batch.readings.len(), batch.dead_letters.len()), (2, 1));
        assert_eq!(batch.dead_letters[0].code, "malformed_json");
        assert!(batch.dead_letters[0].reason.contains("line 1"));
        assert_eq!(batch.next_offsets, BTreeMap::from([(0, 7), (2, 10)]));
        assert!(b.is_empty() && b.deadline().is_none());
        assert_eq!(b.take().group, "g");
    }

    #[test]
    fn a_redelivered_record_is_kept_once_per_batch() {
        let mut b = Batcher::new("g", "t", DecodeLimits::default(), Duration::from_millis(100));
        let now = Instant::now();
        assert!(b.push(&record(1, 3, true), NOW_NS, now));
        assert!(b.push(&record(1, 4, false), NOW_NS, now));
        assert!(!b.push(&record(1, 3, true), NOW_NS, now), "rewound to 3");
        assert!(!b.push(&record(1, 4, false), NOW_NS, now));
        assert!(b.push(&record(1, 5, true), NOW_NS, now));
        let batch = b.take();
        assert_eq!((batch.readings.len(), batch.dead_letters.len()), (2, 1));
        assert_eq!(batch.next_offsets, BTreeMap::from([(1, 6)]));
    }

    fn raw(offset: u64, payload: Vec<u8>) -> Record {
        Record {
            partition: 0,
            offset,
            key: Bytes::new(),
            payload: Bytes::from(payload),
            timestamp_ms: 0,
        }
    }

    /// A message over the limit, from any bus, becomes a dead letter that keeps only its first
    /// `max_bytes` and names its full size; so does one its producer cut short
    /// ([`sentio_core::message::encode_truncated`], as `sentio ingest --stdin` does).
    #[test]
    fn an_oversized_message_is_a_dead_letter_of_bounded_size() {
        let limits = DecodeLimits::default();
        let mut b = Batcher::new("g", "t", limits, Duration::from_millis(100));
        let now = Instant::now();
        let big: Vec<u8> = (0..5_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        b.push(&raw(0, big.clone()), NOW_NS, now);
        let cut = sentio_core::message::encode_truncated(&big[..4096], 209_715_200);
        b.push(&raw(1, cut), NOW_NS, now);
        let batch = b.take();
        assert_eq!(batch.dead_letters.len(), 2);
        for (d, len) in batch.dead_letters.iter().zip([5_000_000, 209_715_200]) {
            assert_eq!(d.code, "oversize");
            assert_eq!(d.payload.len(), 4096, "{}", d.reason);
            assert!(d.payload == big[..4096], "the first max_bytes are kept");
            assert_eq!(
                d.reason,
                format!(
                    "payload is {len} bytes; the limit is 4096; the dead letter keeps its first \
                     4096 bytes"
                )
            );
        }
    }

    proptest! {
        /// However records interleave across partitions and wherever batches are cut, every record
        /// lands in exactly one batch, as a reading or a dead letter, and the offsets to resume
        /// from are one past the last record of each partition.
        #[test]
        fn batching_never_drops_or_duplicates(
            plan in proptest::collection::vec((0u32..5, any::<bool>(), any::<bool>(), 0u64..4), 0..300)
        ) {
            let mut b = Batcher::new("g", "t", DecodeLimits::default(), Duration::from_millis(1));
            let mut next: BTreeMap<u32, u64> = BTreeMap::new();
            let mut sent = BTreeSet::new();
            let mut dup_across_batches = BTreeSet::new();
            let mut batches = Vec::new();
            let now = Instant::now();
            let mut valid_at = BTreeMap::new();
            for (partition, valid, cut, rewind) in plan {
                let offset = *next.entry(partition).and_modify(|o| *o += 1).or_insert(0);
                b.push(&record(partition, offset, valid), NOW_NS, now);
                valid_at.insert((partition, offset), valid);
                sent.insert((partition, offset, valid));
                // A redelivery of an earlier record of this partition (as after a seek) changes
                // nothing within the open batch.
                if let Some(again) = offset.checked_sub(rewind) {
                    let before = b.len();
                    let kept = b.push(&record(partition, again, valid_at[&(partition, again)]), NOW_NS, now);
                    prop_assert_eq!(kept, b.len() > before);
                    if kept {
                        // Only a record from before this batch can be kept again; the store then
                        // skips it by offset. Model that by remembering the duplicate separately.
                        dup_across_batches.insert((partition, again));
                    }
                }
                if cut {
                    batches.push(b.take());
                }
            }
            batches.push(b.take());
            let mut got = BTreeSet::new();
            let mut resume: BTreeMap<u32, u64> = BTreeMap::new();
            for batch in &batches {
                let mut in_batch = BTreeSet::new();
                for (s, r) in &batch.readings {
                    prop_assert_eq!(r.seq, s.offset);
                    prop_assert!(in_batch.insert((s.partition, s.offset)), "duplicate within a batch");
                    prop_assert!(got.insert((s.partition, s.offset, true)) || dup_across_batches.contains(&(s.partition, s.offset)), "duplicate");
                }
                for d in &batch.dead_letters {
                    let key = (d.source.partition, d.source.offset);
                    prop_assert!(in_batch.insert(key), "duplicate within a batch");
                    prop_assert!(got.insert((key.0, key.1, false)) || dup_across_batches.contains(&key), "duplicate");
                }
                for (p, o) in &batch.next_offsets {
                    let max_in_batch = batch.readings.iter().map(|(s, _)| s).chain(batch.dead_letters.iter().map(|d| &d.source))
                        .filter(|s| s.partition == *p).map(|s| s.offset).max();
                    prop_assert_eq!(Some(*o), max_in_batch.map(|m| m + 1));
                    let r = resume.entry(*p).or_insert(0);
                    *r = (*r).max(*o);
                }
            }
            prop_assert_eq!(got, sent);
            prop_assert_eq!(resume, next.iter().map(|(p, o)| (*p, o + 1)).collect::<BTreeMap<_, _>>());
        }
    }

    /// Units are checked against the device's profile; a channel or a device that no profile
    /// declares is kept as it came (stored, not modelled), never dead-lettered.
    #[test]
    fn units_follow_the_profile_and_unknown_channels_are_kept() {
        let compressor = Profile {
            name: "compressor".into(),
            channels: vec![ChannelSpec {
                name: Channel::new("current").unwrap(),
                unit: Unit::new("A").unwrap(),
                range: None,
                score_weight: sentio_core::profile::DEFAULT_SCORE_WEIGHT,
            }],
            devices: vec!["comp-*".into()],
        };
        let profiles =
            Profiles::new(vec![Profile::pump(vec!["pump-*".into()]), compressor]).unwrap();
        let mut b = Batcher::new("g", "t", DecodeLimits::default(), Duration::from_secs(1))
            .with_profiles(profiles);
        let send = |b: &mut Batcher, offset: u64, device: &str, channel: &str, unit: &str| {
            let reading = Reading {
                sensor: Channel::new(channel).unwrap(),
                unit: Unit::new(unit).unwrap(),
                ..Reading::pump(
                    DeviceId::new(device).unwrap(),
                    SensorKind::Temperature,
                    NOW_NS - 1_000,
                    1.5,
                    offset,
                )
            };
            let payload = Bytes::from(encode_reading(&reading));
            let record = Record { payload, ..record(0, offset, true) };
            assert!(b.push(&record, NOW_NS, Instant::now()));
        };
        send(&mut b, 0, "comp-1", "current", "A");
        send(&mut b, 1, "comp-1", "current", "mA");
        send(&mut b, 2, "comp-1", "oil_level", "%");
        send(&mut b, 3, "pump-1", "temperature", "K");
        send(&mut b, 4, "pump-1", "voltage", "V");
        send(&mut b, 5, "lathe-9", "spindle_speed", "rpm");
        assert_eq!(b.unmodelled(), 3, "oil_level, voltage and spindle_speed");
        let batch = b.take();
        let kept: Vec<(u64, &str)> =
            batch.readings.iter().map(|(s, r)| (s.offset, r.sensor.as_str())).collect();
        assert_eq!(kept, [(0, "current"), (2, "oil_level"), (4, "voltage"), (5, "spindle_speed")]);
        let dead: Vec<(u64, &str, &str)> = batch
            .dead_letters
            .iter()
            .map(|d| (d.source.offset, d.code.as_str(), d.reason.as_str()))
            .collect();
        assert_eq!(
            dead,
            [
                (
                    1,
                    "unit_mismatch",
                    "unit \"mA\" does not match channel current of profile compressor, which \
                     reports in \"A\""
                ),
                (
                    3,
                    "unit_mismatch",
                    "unit \"K\" does not match channel temperature of profile pump, which reports \
                     in \"°C\""
                ),
            ]
        );
    }
}
