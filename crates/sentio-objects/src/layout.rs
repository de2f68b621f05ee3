//! The raw archive key layout:
//!
//! ```text
//! raw/date=2026-11-24/device=pump-07/20261124T101000.000Z_20261124T101459.950Z.pickle
//! ```
//!
//! `date` is the UTC date of the first reading; the file name holds the timestamps of the first and
//! last readings in the object (not the slice bounds), truncated to the millisecond, in a form that
//! sorts lexically in time order. Naming objects after what they hold means a producer that restarts
//! mid-slice writes a second object beside the first instead of overwriting it. The `key=value`
//! folders are Hive-style partitions that pandas, pyarrow and query engines understand.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use object_store::path::Path;
use sentio_core::DeviceId;

use crate::ObjectsError;

/// The top folder of the raw archive.
pub const RAW_ROOT: &str = "raw";
/// The file extension of raw archive objects.
pub const RAW_EXTENSION: &str = "pickle";

/// `strftime` form of a timestamp in a key: `20261124T101000.000Z`.
const KEY_TS_FORMAT: &str = "%Y%m%dT%H%M%S%.3fZ";
const DATE_FORMAT: &str = "%Y-%m-%d";
const NANOS_PER_MILLI: i64 = 1_000_000;

/// A raw archive key, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawKey {
    /// The UTC date partition (the date of the first reading).
    pub date: NaiveDate,
    pub device: DeviceId,
    /// The first reading's timestamp, truncated (floored) to the millisecond, in nanoseconds.
    pub first_ns: i64,
    /// The last reading's timestamp, truncated (floored) to the millisecond, in nanoseconds.
    pub last_ns: i64,
}

/// The key of the raw archive object holding `device`'s readings from `first_ns` to `last_ns`.
pub fn raw_key(device: &DeviceId, first_ns: i64, last_ns: i64) -> Path {
    let first = DateTime::<Utc>::from_timestamp_nanos(first_ns);
    let last = DateTime::<Utc>::from_timestamp_nanos(last_ns);
    let name =
        format!("{}_{}.{RAW_EXTENSION}", first.format(KEY_TS_FORMAT), last.format(KEY_TS_FORMAT));
    Path::from_iter([
        RAW_ROOT.to_owned(),
        format!("date={}", first.format(DATE_FORMAT)),
        format!("device={device}"),
        name,
    ])
}

/// The folder of one day of the raw archive, all devices: `raw/date=2026-11-24`.
pub fn raw_prefix_for_date(date: NaiveDate) -> Path {
    Path::from_iter([RAW_ROOT.to_owned(), format!("date={}", date.format(DATE_FORMAT))])
}

/// The folder of one device's day of the raw archive: `raw/date=2026-11-24/device=pump-07`.
pub fn raw_prefix_for_device(date: NaiveDate, device: &DeviceId) -> Path {
    raw_prefix_for_date(date).child(format!("device={device}"))
}

/// Parses a key written by [`raw_key`] back into its parts, checking that the date partition is
/// the date of the first timestamp and that the first timestamp is not after the last.
pub fn parse_raw_key(key: &Path) -> Result<RawKey, ObjectsError> {
    let bad = |reason| ObjectsError::BadKey { key: key.to_string(), reason };
    let parts: Vec<_> = key.parts().collect();
    let [root, date, device, name] = parts.as_slice() else {
        return Err(bad("expected 4 segments raw/date=…/device=…/<first>_<last>.pickle"));
    };
    if root.as_ref() != RAW_ROOT {
        return Err(bad("does not start with raw/"));
    }
    let date = date.as_ref().strip_prefix("date=").ok_or_else(|| bad("no date= partition"))?;
    let date = NaiveDate::parse_from_str(date, DATE_FORMAT).map_err(|_| bad("bad date"))?;
    let device =
        device.as_ref().strip_prefix("device=").ok_or_else(|| bad("no device= partition"))?;
    let device = DeviceId::new(device).map_err(|_| bad("bad device id"))?;
    let stem = name
        .as_ref()
        .strip_suffix(".pickle")
        .ok_or_else(|| bad("file name does not end in .pickle"))?;
    let (first, last) =
        stem.split_once('_').ok_or_else(|| bad("file name is not <first>_<last>"))?;
    let first_ns = parse_key_ts(first).ok_or_else(|| bad("bad first timestamp"))?;
    let last_ns = parse_key_ts(last).ok_or_else(|| bad("bad last timestamp"))?;
    if first_ns > last_ns {
        return Err(bad("first timestamp is after the last"));
    }
    if DateTime::<Utc>::from_timestamp_nanos(first_ns).date_naive() != date {
        return Err(bad("date partition is not the date of the first timestamp"));
    }
    Ok(RawKey { date, device, first_ns, last_ns })
}

/// Floors nanoseconds to the millisecond, as the key does.
pub fn truncate_to_millis(ts_ns: i64) -> i64 {
    ts_ns.div_euclid(NANOS_PER_MILLI) * NANOS_PER_MILLI
}

fn parse_key_ts(s: &str) -> Option<i64> {
    // The format always has exactly 3 fractional digits; reject other lengths, which chrono's
    // `%.3f` would accept on parsing.
    let (_, frac) = s.strip_suffix('Z')?.split_once('.')?;
    if frac.len() != 3 {
        return None;
    }
    NaiveDateTime::parse_from_str(s, KEY_TS_FORMAT).ok()?.and_utc().timestamp_nanos_opt()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn device(id: &str) -> DeviceId {
        DeviceId::new(id).unwrap()
    }

    fn ns(rfc3339: &str) -> i64 {
        sentio_core::time::parse_rfc3339(rfc3339).unwrap()
    }

    #[test]
    fn key_matches_the_documented_layout() {
        let key = raw_key(
            &device("pump-07"),
            ns("2026-11-24T10:10:00Z"),
            ns("2026-11-24T10:14:59.950123456Z"),
        );
        assert_eq!(
            key.as_ref(),
            "raw/date=2026-11-24/device=pump-07/20261124T101000.000Z_20261124T101459.950Z.pickle"
        );
        assert_eq!(
            raw_prefix_for_device(
                NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
                &device("pump-07")
            )
            .as_ref(),
            "raw/date=2026-11-24/device=pump-07"
        );
        assert!(
            key.prefix_matches(&raw_prefix_for_date(
                NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
            ))
        );
    }

    #[test]
    fn keys_round_trip_to_the_millisecond_across_date_boundaries() {
        let cases = [
            ("2026-11-24T00:00:00Z", "2026-11-24T00:00:00Z", "2026-11-24"),
            ("2026-11-24T23:59:59.999999999Z", "2026-11-25T00:00:00.000000001Z", "2026-11-24"),
            ("2026-11-25T00:00:00Z", "2026-11-25T00:04:59.999Z", "2026-11-25"),
            ("2026-12-31T23:59:59.5Z", "2027-01-01T00:00:00.5Z", "2026-12-31"),
            ("2028-02-29T12:00:00.001Z", "2028-02-29T12:00:00.002Z", "2028-02-29"),
            ("1969-12-31T23:59:59.999999999Z", "1970-01-01T00:00:00Z", "1969-12-31"),
        ];
        for (first, last, date) in cases {
            let (first, last) = (ns(first), ns(last));
            let key = raw_key(&device("dev_1.a"), first, last);
            let parsed = parse_raw_key(&key).unwrap();
            assert_eq!(parsed.date.format("%Y-%m-%d").to_string(), date, "{key}");
            assert_eq!(parsed.device, device("dev_1.a"));
            assert_eq!(parsed.first_ns, truncate_to_millis(first), "{key}");
            assert_eq!(parsed.last_ns, truncate_to_millis(last), "{key}");
        }
    }

    #[test]
    fn keys_sort_in_time_order() {
        let d = device("pump-07");
        let base = ns("2026-11-24T09:59:59.999Z");
        let keys: Vec<String> = [0, 1_000_000, 60_000_000_000, 3_600_000_000_000]
            .map(|o| raw_key(&d, base + o, base + o).to_string())
            .to_vec();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn rejects_keys_that_are_not_raw_archive_keys() {
        for key in [
            "raw/date=2026-11-24/device=pump-07",
            "cooked/date=2026-11-24/device=pump-07/20261124T101000.000Z_20261124T101000.000Z.pickle",
            "raw/day=2026-11-24/device=pump-07/20261124T101000.000Z_20261124T101000.000Z.pickle",
            "raw/date=2026-11-24/dev=pump-07/20261124T101000.000Z_20261124T101000.000Z.pickle",
            "raw/date=2026-11-24/device=pump-07/20261124T101000.000Z_20261124T101000.000Z.csv",
            "raw/date=2026-11-24/device=pump-07/20261124T101000.000Z.pickle",
            "raw/date=2026-11-24/device=pump-07/20261124T101000Z_20261124T101000.000Z.pickle",
            "raw/date=2026-11-24/device=pump-07/20261124T101001.000Z_20261124T101000.000Z.pickle",
            "raw/date=2026-11-25/device=pump-07/20261124T101000.000Z_20261124T101000.000Z.pickle",
            "raw/date=2026-13-01/device=pump-07/20261124T101000.000Z_20261124T101000.000Z.pickle",
        ] {
            assert!(
                matches!(parse_raw_key(&Path::from(key)), Err(ObjectsError::BadKey { .. })),
                "{key}"
            );
        }
    }
}
