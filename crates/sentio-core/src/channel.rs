//! Channel names and units: what a reading measures, on any machine.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

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
/// cheap: the pump's four channels are a tag (no reference count, which every reading of them
/// would otherwise bump on a cache line shared by every thread), any other a shared string.
/// Equality, order and hashing are those of the name.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Channel(Name);

/// A name that is one of the pump's (by tag) or any other (shared). [`Channel::new`] and
/// [`Unit::new`] keep a pump name always as its tag, so equal names are equal variants.
#[derive(Clone, PartialEq, Eq)]
enum Name {
    Pump(SensorKind),
    Other(Arc<str>),
}

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
        Ok(Self(Name::Other(Arc::from(name))))
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Name::Pump(kind) => kind.as_str(),
            Name::Other(name) => name,
        }
    }

    /// The pump channel this is, if it is one of the four.
    pub fn kind(&self) -> Option<SensorKind> {
        match self.0 {
            Name::Pump(kind) => Some(kind),
            Name::Other(_) => None,
        }
    }
}

impl From<SensorKind> for Channel {
    fn from(kind: SensorKind) -> Self {
        Self(Name::Pump(kind))
    }
}

impl PartialEq for Channel {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Channel {}

impl Hash for Channel {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for Channel {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Channel {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Channel {
    /// The order channels are shown and reported in: the pump's four in [`SensorKind::ALL`]
    /// order, then every other channel by name.
    pub fn display_cmp(&self, other: &Channel) -> Ordering {
        let rank = |c: &Channel| c.kind().map_or(SensorKind::ALL.len(), SensorKind::index);
        rank(self).cmp(&rank(other)).then_with(|| self.cmp(other))
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
        value.as_str().to_owned()
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
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Channel({})", self.as_str())
    }
}

/// The unit a reading's value is in, as its producer wrote it (`°C`, `bar`, `m³/h`); empty for a
/// dimensionless value. At most 32 bytes, no control characters. A profile that declares the
/// channel fixes its unit; otherwise any unit is kept as it came. Cloning is cheap, as for
/// [`Channel`]: the pump's four units are tags. Equality, order and hashing are the text's.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Unit(Name);

/// Why a string is not a valid [`Unit`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUnit {
    #[error("unit is {len} bytes long; the limit is {MAX_UNIT_LEN}")]
    TooLong { len: usize },
    #[error("unit {unit:?} contains the control character {bad:?}")]
    Control { unit: String, bad: char },
}

impl Unit {
    pub fn new(unit: &str) -> Result<Self, InvalidUnit> {
        if let Some(kind) = SensorKind::ALL.into_iter().find(|k| k.unit() == unit) {
            return Ok(Self::from(kind));
        }
        if unit.len() > MAX_UNIT_LEN {
            return Err(InvalidUnit::TooLong { len: unit.len() });
        }
        if let Some(bad) = unit.chars().find(|c| c.is_control()) {
            return Err(InvalidUnit::Control { unit: unit.to_owned(), bad });
        }
        Ok(Self(Name::Other(Arc::from(unit))))
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Name::Pump(kind) => kind.unit(),
            Name::Other(unit) => unit,
        }
    }
}

impl From<SensorKind> for Unit {
    /// The unit the pump profile gives this channel.
    fn from(kind: SensorKind) -> Self {
        Self(Name::Pump(kind))
    }
}

impl PartialEq for Unit {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Unit {}

impl Hash for Unit {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for Unit {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Unit {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
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
        value.as_str().to_owned()
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Unit({:?})", self.as_str())
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
            assert!(matches!(c.0, Name::Pump(k) if k == kind), "kept as a tag, not a string");
            assert_eq!(c, Channel::from(kind));
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

    /// Order, equality and hashing follow the names, whichever form holds them.
    #[test]
    fn channels_compare_as_their_names() {
        use std::collections::hash_map::DefaultHasher;
        let hash = |c: &Channel| {
            let mut h = DefaultHasher::new();
            c.hash(&mut h);
            h.finish()
        };
        let mut names: Vec<Channel> = ["vibration", "current", "temperature", "humidity", "zeta"]
            .into_iter()
            .map(|n| Channel::new(n).unwrap())
            .collect();
        names.sort();
        let sorted: Vec<&str> = names.iter().map(Channel::as_str).collect();
        assert_eq!(sorted, ["current", "humidity", "temperature", "vibration", "zeta"]);
        let t = Channel::new("temperature").unwrap();
        assert_eq!(hash(&t), hash(&Channel::from(SensorKind::Temperature)));
        assert_eq!(Unit::new("%").unwrap(), Unit::from(SensorKind::Humidity));
        assert!(Unit::new("A").unwrap() < Unit::new("bar").unwrap());
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
