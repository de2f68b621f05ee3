//! Device identifiers.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The longest device id accepted, in bytes.
pub const MAX_DEVICE_ID_LEN: usize = 64;

/// A device name such as `pump-07`: 1 to 64 ASCII letters, digits, `-`, `_` or `.`.
///
/// It is used as the bus key, in object keys (`device=pump-07`) and in SQL, so the alphabet is
/// kept to characters that need no escaping anywhere. Cloning is cheap (shared string).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(Arc<str>);

/// Why a string is not a valid [`DeviceId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDeviceId {
    #[error("device id is empty")]
    Empty,
    #[error("device id is {len} bytes long; the limit is {MAX_DEVICE_ID_LEN}")]
    TooLong { len: usize },
    #[error("device id {id:?} contains {bad:?}; use only ASCII letters, digits, '-', '_' and '.'")]
    BadChar { id: String, bad: char },
}

impl DeviceId {
    pub fn new(id: &str) -> Result<Self, InvalidDeviceId> {
        if id.is_empty() {
            return Err(InvalidDeviceId::Empty);
        }
        if id.len() > MAX_DEVICE_ID_LEN {
            return Err(InvalidDeviceId::TooLong { len: id.len() });
        }
        if let Some(bad) =
            id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(InvalidDeviceId::BadChar { id: id.to_owned(), bad });
        }
        Ok(Self(Arc::from(id)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DeviceId {
    type Error = InvalidDeviceId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<DeviceId> for String {
    fn from(value: DeviceId) -> Self {
        value.0.to_string()
    }
}

impl std::str::FromStr for DeviceId {
    type Err = InvalidDeviceId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", &self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names_and_rejects_the_rest() {
        assert_eq!(DeviceId::new("pump-07").map(|d| d.to_string()), Ok("pump-07".into()));
        assert_eq!(DeviceId::new(""), Err(InvalidDeviceId::Empty));
        assert!(matches!(
            DeviceId::new(&"x".repeat(65)),
            Err(InvalidDeviceId::TooLong { len: 65 })
        ));
        assert!(matches!(DeviceId::new("a/b"), Err(InvalidDeviceId::BadChar { bad: '/', .. })));
        assert!(matches!(DeviceId::new("pompe-é"), Err(InvalidDeviceId::BadChar { bad: 'é', .. })));
    }
}
