//! Readings sent again: what the store does with them, and the warning that says so.
//!
//! The store keeps every **message** once: exactly-once comes from the consumer offsets written in
//! the same transaction as the rows, so a message the bus delivers twice (after a crash or a
//! rebalance) is stored once. A reading published again as a new message (the same file ingested
//! twice, a producer replaying its history, an MQTT redelivery) is stored once when it is an exact
//! copy of a stored one (device, channel, timestamp and value: the store's write checks), and
//! again when its value differs. The ETL notices such repeats and warns, with the count, so they never go by
//! silently: a reading repeats when its timestamp and its `seq` are both no newer than the newest
//! reading already seen (stored or in this run) of its device and sensor. Readings of one
//! device and sensor arrive in order (they share a partition), so a live stream never repeats;
//! a device that restarts its `seq` at 0 sends newer timestamps, and does not either.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sentio_core::{Channel, DeviceId, Reading};

/// How often the warning may repeat while repeats keep coming.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The newest (timestamp, seq) of one device and channel, once seen.
type Newest = Option<(i64, u64)>;

/// The newest (timestamp, seq) per device and channel, and the repeats seen.
#[derive(Debug, Default)]
pub struct Repeats {
    /// Per device (by `index`), per channel (a few per device: a linear search).
    newest: Vec<Vec<(Channel, Newest)>>,
    index: HashMap<DeviceId, usize>,
    /// The device looked up last: a device's readings come in runs (its sensors at one tick, on
    /// one partition), so most lookups skip the hash.
    last: Option<(DeviceId, usize)>,
    total: u64,
    unwarned: u64,
    warned_at: Option<Instant>,
}

impl Repeats {
    /// Starts from what the store already holds (its newest reading per device and sensor).
    pub fn new(stored: &[Reading]) -> Self {
        let mut r = Self::default();
        for reading in stored {
            let i = r.slot(&reading.device);
            *r.channel(i, &reading.sensor) = Some((reading.ts_ns, reading.seq));
        }
        r
    }

    /// Counts the repeats among `readings` (in arrival order) and remembers the newest; returns
    /// this call's count.
    pub fn observe<'a>(&mut self, readings: impl IntoIterator<Item = &'a Reading>) -> u64 {
        let mut n = 0;
        for r in readings {
            let i = self.slot(&r.device);
            let slot = self.channel(i, &r.sensor);
            match slot {
                Some((ts, seq)) if r.ts_ns <= *ts && r.seq <= *seq => n += 1,
                Some(newest) if r.ts_ns < newest.0 => {}
                _ => *slot = Some((r.ts_ns, r.seq)),
            }
        }
        self.total += n;
        self.unwarned += n;
        if self.unwarned > 0 && self.warned_at.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            tracing::warn!(
                readings = self.unwarned,
                total = self.total,
                "readings repeat the timestamp and seq of readings already stored for their device \
                 and sensor (the same data sent again, e.g. a file ingested twice); exact copies \
                 are stored once, readings with another value again"
            );
            self.unwarned = 0;
            self.warned_at = Some(Instant::now());
        }
        n
    }

    /// The index of `device`'s entry, made on first sight.
    fn slot(&mut self, device: &DeviceId) -> usize {
        if let Some((last, i)) = &self.last
            && last == device
        {
            return *i;
        }
        let i = match self.index.get(device) {
            Some(&i) => i,
            None => {
                self.newest.push(Vec::new());
                self.index.insert(device.clone(), self.newest.len() - 1);
                self.newest.len() - 1
            }
        };
        self.last = Some((device.clone(), i));
        i
    }

    /// Device `i`'s newest (timestamp, seq) of `channel`, made on first sight.
    fn channel(&mut self, i: usize, channel: &Channel) -> &mut Newest {
        let channels = &mut self.newest[i];
        let at = match channels.iter().position(|(c, _)| c == channel) {
            Some(at) => at,
            None => {
                channels.push((channel.clone(), None));
                channels.len() - 1
            }
        };
        &mut channels[at].1
    }

    /// Repeats seen in all.
    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sentio_core::SensorKind;

    use super::*;

    fn reading(device: &str, sensor: SensorKind, ts_ns: i64, seq: u64) -> Reading {
        Reading::pump(DeviceId::new(device).unwrap(), sensor, ts_ns, 1.0, seq)
    }

    #[test]
    fn the_same_readings_again_are_counted_a_live_stream_and_a_restarted_seq_are_not() {
        let t = SensorKind::Temperature;
        let stored = [reading("a", t, 100, 10)];
        let mut r = Repeats::new(&stored);
        // Newer readings, another sensor, another device: none repeats.
        let live = [
            reading("a", t, 101, 11),
            reading("a", t, 102, 12),
            reading("a", SensorKind::Pressure, 50, 0),
            reading("b", t, 1, 0),
        ];
        assert_eq!(r.observe(&live), 0);
        // The same file again: every reading repeats.
        let again = [reading("a", t, 100, 10), reading("a", t, 101, 11), reading("a", t, 102, 12)];
        assert_eq!(r.observe(&again), 3);
        // A device restarted: seq from 0, but newer timestamps.
        assert_eq!(r.observe(&[reading("a", t, 200, 0), reading("a", t, 201, 1)]), 0);
        assert_eq!(r.total(), 3);
    }
}
