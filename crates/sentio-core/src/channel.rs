//! Channel names and units: what a reading measures, on any machine.

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use crate::SensorKind;

/// The longest channel name accepted, in bytes.
pub const MAX_CHANNEL_LEN: usize = 64;

/// The longest unit accepted, in bytes.
pub const MAX_UNIT_LEN: usize = 32;

/// What one reading measures, such as `temperature`, `current` or `vibration_x`: 1 to 64 of
/// `a-z`, `0-9`, `_`, `.` and `-`. The pump profile's four channels are the names of
/// [`SensorKind`]; any other machine brings its own.
///
/// Like [`crate::DeviceId`], it goes into SQL, object keys and file columns unescaped. Cloning is
/// cheap (a shared string), and the pump's four channels are shared by every reading of them.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Channel(Arc<str>);

/// Why a string is not a valid [`Channel`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidChannel {
    #[error("channel name is empty")]
    Empty,
    #[error("channel name is {len} bytes long; the limit is {MAX_CHANNEL_LEN}")]
    TooLong { len: usize },
    #[error(
        "channel name {name:?} contains {bad:?}; use only lower-case letters a-z, digits, '_', '.' \
         and '-'"
    )]
    BadChar { name: String, bad: char },
}

/// The pump's four channels, shared so that decoding and simulating them allocates nothing.
fn pump_channels() -> &'static [Channel; 4] {
    static PUMP: OnceLock<[Channel; 4]> = OnceLock::new();
    PUMP.get_or_init(|| SensorKind::ALL.map(|kind| Channel(Arc::from(kind.as_str()))))
}

impl Channel {
    pub fn new(name: &str) -> Result<Self, InvalidChannel> {
        if let Some(kind) = SensorKind::parse(name) {
            return Ok(Self::from(kind));
        }
        if name.is_empty() {
            return Err(InvalidChannel::Empty);
        }
        if name.len() > MAX_CHANNEL_LEN {
            return Err(InvalidChannel::TooLong { len: name.len() });
        }
        if let Some(bad) = name.chars().find(|c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'))
        }) {
            return Err(InvalidChannel::BadChar { name: name.to_owned(), bad });
        }
        Ok(Self(Arc::from(name)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The pump channel this is, if it is one of the four.
    pub fn kind(&self) -> Option<SensorKind> {
        let pump = pump_channels();
        if let Some(i) = pump.iter().position(|c| Arc::ptr_eq(&c.0, &self.0)) {
            return Some(SensorKind::ALL[i]);
        }
        SensorKind::parse(&self.0)
    }
}

impl From<SensorKind> for Channel {
    fn from(kind: SensorKind) -> Self {
        pump_channels()[kind.index()].clone()
    }
}

impl PartialEq<SensorKind> for Channel {
    fn eq(&self, other: &SensorKind) -> bool {
        self.as_str() == other.as_str()
    }
}

impl TryFrom<String> for Channel {
    type Error = InvalidChannel;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<Channel> for String {
    fn from(value: Channel) -> Self {
        value.0.to_string()
    }
}

impl std::str::FromStr for Channel {
    type Err = InvalidChannel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Channel({})", &self.0)
    }
}

/// The unit a reading's value is in, as its producer wrote it (`°C`, `bar`, `m³/h`); empty for a
/// dimensionless value. At most 32 bytes, no control characters. A profile that declares the
/// channel fixes its unit; otherwise any unit is kept as it came.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Unit(Arc<str>);

/// Why a string is not a valid [`Unit`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUnit {
    #[error("unit is {len} bytes long; the limit is {MAX_UNIT_LEN}")]
    TooLong { len: usize },
    #[error("unit {unit:?} contains the control character {bad:?}")]
    Control { unit: String, bad: char },
}

fn pump_units() -> &'static [Unit; 4] {
    static PUMP: OnceLock<[Unit; 4]> = OnceLock::new();
    PUMP.get_or_init(|| SensorKind::ALL.map(|kind| Unit(Arc::from(kind.unit()))))
}

impl Unit {
    pub fn new(unit: &str) -> Result<Self, InvalidUnit> {
        if let Some(shared) = pump_units().iter().find(|u| &*u.0 == unit) {
            return Ok(shared.clone());
        }
        if unit.len() > MAX_UNIT_LEN {
            return Err(InvalidUnit::TooLong { len: unit.len() });
        }
        if let Some(bad) = unit.chars().find(|c| c.is_control()) {
            return Err(InvalidUnit::Control { unit: unit.to_owned(), bad });
        }
        Ok(Self(Arc::from(unit)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<SensorKind> for Unit {
    /// The unit the pump profile gives this channel.
    fn from(kind: SensorKind) -> Self {
        pump_units()[kind.index()].clone()
    }
}

impl TryFrom<String> for Unit {
    type Error = InvalidUnit;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<Unit> for String {
    fn from(value: Unit) -> Self {
        value.0.to_string()
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Unit({:?})", &self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_are_checked_and_the_pump_ones_are_shared() {
        for kind in SensorKind::ALL {
            let c = Channel::new(kind.as_str()).unwrap();
            assert_eq!(c.kind(), Some(kind));
            assert!(Arc::ptr_eq(&c.0, &Channel::from(kind).0));
            assert_eq!(c, kind);
            assert_eq!(Unit::from(kind).as_str(), kind.unit());
        }
        for good in ["current", "vibration_x", "flow.rate", "t-2", &"a".repeat(64)] {
            let c = Channel::new(good).unwrap();
            assert_eq!((c.as_str(), c.kind()), (good, None));
        }
        assert_eq!(Channel::new(""), Err(InvalidChannel::Empty));
        assert_eq!(Channel::new(&"a".repeat(65)), Err(InvalidChannel::TooLong { len: 65 }));
        for (bad, ch) in [("Temperature", 'T'), ("flow rate", ' '), ("a/b", '/'), ("débit", 'é')]
        {
            assert_eq!(
                Channel::new(bad),
                Err(InvalidChannel::BadChar { name: bad.into(), bad: ch }),
                "{bad}"
            );
        }
    }

    #[test]
    fn units_are_free_text_within_bounds() {
        for good in ["", "A", "m³/h", "°C", "kg/s"] {
            assert_eq!(Unit::new(good).unwrap().as_str(), good);
        }
        assert_eq!(Unit::new(&"x".repeat(33)), Err(InvalidUnit::TooLong { len: 33 }));
        assert!(matches!(Unit::new("a\nb"), Err(InvalidUnit::Control { bad: '\n', .. })));
    }

    #[test]
    fn serde_checks_names() {
        let c: Channel = serde_json::from_str("\"current\"").unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"current\"");
        assert!(serde_json::from_str::<Channel>("\"Current\"").is_err());
    }
}
