//! Names from a file: a column header becomes a channel name, a file stem part of a device id.

use std::path::Path;

use sentio_core::channel::MAX_CHANNEL_LEN;
use sentio_core::device::MAX_DEVICE_ID_LEN;
use sentio_core::{Channel, DeviceId, InvalidDeviceId};

/// The channel a column header names: lower-cased, each run of characters other than `a-z`,
/// `0-9`, `_`, `.` and `-` replaced by one `_`, leading and trailing `_` removed, cut to 64 bytes.
/// `Accelerometer1RMS` is `accelerometer1rms`, `Volume Flow RateRMS` is `volume_flow_raterms`,
/// `Temp (°C)` is `temp_c`. `None` when nothing is left (a header of only symbols).
pub fn channel_name(column: &str) -> Option<Channel> {
    let mut name = String::with_capacity(column.len());
    for c in column.trim().chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-') {
            name.push(c);
        } else if !name.ends_with('_') {
            name.push('_');
        }
    }
    let mut name = name.trim_matches('_');
    if name.len() > MAX_CHANNEL_LEN {
        // All ASCII by now, so any byte is a character boundary.
        name = name[..MAX_CHANNEL_LEN].trim_end_matches('_');
    }
    Channel::new(name).ok()
}

/// The device a file is imported as with `--device-prefix`: `prefix` followed by the file's stem,
/// each run of characters a device id cannot hold (anything but ASCII letters, digits, `-`, `_`
/// and `.`) replaced by one `_` and leading and trailing `_` removed, cut to 64 bytes in all. `skab-valve1-` and `valve1/0.csv` give
/// `skab-valve1-0`.
pub fn device_from_file(prefix: &str, path: &Path) -> Result<DeviceId, InvalidDeviceId> {
    let stem = path.file_stem().map(|s| s.to_string_lossy()).unwrap_or_default();
    let mut part = String::with_capacity(stem.len());
    for c in stem.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
            part.push(c);
        } else if !part.ends_with('_') {
            part.push('_');
        }
    }
    let mut id = format!("{prefix}{}", part.trim_matches('_'));
    if id.len() > MAX_DEVICE_ID_LEN && id.is_ascii() {
        id.truncate(MAX_DEVICE_ID_LEN);
    }
    DeviceId::new(&id)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::PathBuf;

    use super::*;

    fn name(column: &str) -> Option<String> {
        channel_name(column).map(|c| c.as_str().to_owned())
    }

    #[test]
    fn headers_become_channel_names() {
        for (column, want) in [
            ("Accelerometer1RMS", "accelerometer1rms"),
            ("Volume Flow RateRMS", "volume_flow_raterms"),
            ("  Temp (°C) ", "temp_c"),
            ("flow.rate-2", "flow.rate-2"),
            ("a  //  b", "a_b"),
            ("__x__", "x"),
            ("Débit", "d_bit"),
        ] {
            assert_eq!(name(column).as_deref(), Some(want), "{column:?}");
        }
        // The pump's names are the pump's channels.
        assert_eq!(
            channel_name("Temperature").unwrap().kind(),
            Some(sentio_core::SensorKind::Temperature)
        );
        let long = format!("{} tail", "x".repeat(63));
        assert_eq!(name(&long).unwrap(), "x".repeat(63), "cut to 64, then the `_` trimmed");
        assert_eq!(name(&"y".repeat(80)).unwrap().len(), 64);
        for nothing in ["", "  ", "°", "(%)"] {
            assert_eq!(name(nothing), None, "{nothing:?}");
        }
    }

    #[test]
    fn file_stems_become_device_ids() {
        let id = |prefix: &str, path: &str| {
            device_from_file(prefix, &PathBuf::from(path)).map(|d| d.as_str().to_owned())
        };
        assert_eq!(id("skab-valve1-", "/data/valve1/0.csv").unwrap(), "skab-valve1-0");
        assert_eq!(id("", "Pump 7 (old).csv").unwrap(), "Pump_7_old");
        assert_eq!(id("p-", &format!("{}.csv", "z".repeat(100))).unwrap().len(), 64);
        assert!(id("bad prefix ", "0.csv").is_err());
        assert!(id("", "").is_err());
    }
}
