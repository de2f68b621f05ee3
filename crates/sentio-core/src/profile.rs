//! Asset profiles: a kind of machine, its channels, and which devices are one.

use std::fmt;

use crate::{Channel, DeviceId, Reading, SensorKind, Unit};

/// The built-in profile: the seed's four-signal pump.
pub const PUMP: &str = "pump";

/// The most channels one profile models (a frame marks its filled cells in a 64-bit mask).
pub const MAX_CHANNELS: usize = 64;

/// One channel a profile declares.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelSpec {
    pub name: Channel,
    pub unit: Unit,
    /// The range a healthy machine stays in, where known (for plots and suggestions).
    pub range: Option<(f64, f64)>,
    /// How much the channel's reconstruction error counts in the anomaly score (1 by default; 0:
    /// the model still reads the channel, but it raises no alarm of its own).
    pub score_weight: f64,
}

/// A channel's score weight when its profile names none.
pub const DEFAULT_SCORE_WEIGHT: f64 = 1.0;

/// A kind of machine: its channels in model order, and the device ids that are one.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub channels: Vec<ChannelSpec>,
    /// Device id patterns: `*` matches any run of characters, `?` any one.
    pub devices: Vec<String>,
}

/// Why a set of profiles is not usable. Each names the profile and what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProfileError {
    #[error(
        "profile name {name:?} is not valid: use 1 to 64 of lower-case letters a-z, digits, '_', \
         '.' and '-'"
    )]
    BadName { name: String },
    #[error("profile {profile} declares no channels; give it at least one")]
    NoChannels { profile: String },
    #[error(
        "profile {profile} declares {count} channels; a profile models at most {MAX_CHANNELS}: \
         split the machine into two profiles, or leave channels undeclared (stored, not modelled)"
    )]
    TooManyChannels { profile: String, count: usize },
    #[error("profile {profile} declares channel {channel} twice")]
    DuplicateChannel { profile: String, channel: Channel },
    #[error(
        "profile {profile}: device pattern {pattern:?} is not valid: use device-id characters \
         (letters, digits, '-', '_', '.') with `*` and `?` wildcards"
    )]
    BadPattern { profile: String, pattern: String },
    #[error(
        "device pattern {pattern:?} is in both profile {first} and profile {second}; a device \
         must map to one profile"
    )]
    SharedPattern { pattern: String, first: String, second: String },
    #[error(
        "profile {profile}: the range of channel {channel} is {lo} .. {hi}; expected two finite \
         numbers, the low one first"
    )]
    BadRange { profile: String, channel: Channel, lo: f64, hi: f64 },
}

impl Profile {
    /// The seed's pump: temperature, vibration, pressure and humidity, with the mission's ranges.
    pub fn pump(devices: Vec<String>) -> Self {
        Self {
            name: PUMP.to_owned(),
            channels: SensorKind::ALL
                .into_iter()
                .map(|kind| {
                    let range = kind.typical_range();
                    ChannelSpec {
                        name: kind.into(),
                        unit: kind.into(),
                        range: Some((*range.start(), *range.end())),
                        score_weight: DEFAULT_SCORE_WEIGHT,
                    }
                })
                .collect(),
            devices,
        }
    }

    /// The position of `channel` in this profile's order, if it declares it.
    pub fn position(&self, channel: &Channel) -> Option<usize> {
        self.channels.iter().position(|c| &c.name == channel)
    }

    pub fn channel_names(&self) -> Vec<Channel> {
        self.channels.iter().map(|c| c.name.clone()).collect()
    }

    /// How specifically this profile claims `device`: the most literal characters of a pattern
    /// that matches, or `None`.
    fn claim(&self, device: &str) -> Option<usize> {
        self.devices
            .iter()
            .filter(|p| glob(p.as_bytes(), device.as_bytes()))
            .map(|p| p.bytes().filter(|b| !matches!(b, b'*' | b'?')).count())
            .max()
    }
}

/// The profiles in effect: which profile each device is, and what it declares.
#[derive(Debug, Clone, PartialEq)]
pub struct Profiles {
    list: Vec<Profile>,
}

/// A reading that contradicts its device's profile.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "unit {found:?} does not match channel {channel} of profile {profile}, which reports in \
     \"{expected}\""
)]
pub struct UnitMismatch {
    pub profile: String,
    pub channel: Channel,
    pub found: String,
    pub expected: Unit,
}

impl Profiles {
    /// Checks names, channels, ranges and patterns. A device pattern may appear in one profile
    /// only; between different patterns that both match, the one with more literal characters
    /// wins (`pump-0*` over `pump-*` over `*`).
    pub fn new(list: Vec<Profile>) -> Result<Self, ProfileError> {
        let mut patterns: Vec<(&str, &str)> = Vec::new();
        for p in &list {
            if Channel::new(&p.name).is_err() {
                return Err(ProfileError::BadName { name: p.name.clone() });
            }
            if p.channels.is_empty() {
                return Err(ProfileError::NoChannels { profile: p.name.clone() });
            }
            if p.channels.len() > MAX_CHANNELS {
                return Err(ProfileError::TooManyChannels {
                    profile: p.name.clone(),
                    count: p.channels.len(),
                });
            }
            for (i, c) in p.channels.iter().enumerate() {
                if p.channels[..i].iter().any(|d| d.name == c.name) {
                    return Err(ProfileError::DuplicateChannel {
                        profile: p.name.clone(),
                        channel: c.name.clone(),
                    });
                }
                if let Some((lo, hi)) = c.range
                    && !(lo.is_finite() && hi.is_finite() && lo < hi)
                {
                    return Err(ProfileError::BadRange {
                        profile: p.name.clone(),
                        channel: c.name.clone(),
                        lo,
                        hi,
                    });
                }
            }
            for pattern in &p.devices {
                let literal = pattern.replace(['*', '?'], "x");
                if pattern.is_empty() || DeviceId::new(&literal).is_err() {
                    return Err(ProfileError::BadPattern {
                        profile: p.name.clone(),
                        pattern: pattern.clone(),
                    });
                }
                if let Some((_, first)) = patterns.iter().find(|(q, _)| q == pattern) {
                    return Err(ProfileError::SharedPattern {
                        pattern: pattern.clone(),
                        first: (*first).to_owned(),
                        second: p.name.clone(),
                    });
                }
                patterns.push((pattern, &p.name));
            }
        }
        Ok(Self { list })
    }

    /// Only the pump, for every device: the behaviour before profiles existed.
    pub fn builtin() -> Self {
        Self { list: vec![Profile::pump(vec!["*".to_owned()])] }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Profile> {
        self.list.iter()
    }

    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.list.iter().find(|p| p.name == name)
    }

    /// The profile `device` is, if any claims it.
    pub fn for_device(&self, device: &str) -> Option<&Profile> {
        let mut best: Option<(usize, &Profile)> = None;
        for p in &self.list {
            if let Some(score) = p.claim(device)
                && best.is_none_or(|(b, _)| score > b)
            {
                best = Some((score, p));
            }
        }
        best.map(|(_, p)| p)
    }

    /// The unit `device`'s profile declares for `channel`, if a profile claims the device and
    /// declares the channel.
    pub fn unit_of(&self, device: &str, channel: &Channel) -> Option<&Unit> {
        let profile = self.for_device(device)?;
        profile.channels.iter().find(|c| c.name == *channel).map(|c| &c.unit)
    }

    /// Whether `reading` agrees with its device's profile, and then whether a model reads it
    /// (the profile declares its channel). A channel the profile does not declare, or a device no
    /// profile claims, passes unmodelled (`Ok(false)`): such readings are stored, not modelled.
    pub fn check(&self, reading: &Reading) -> Result<bool, UnitMismatch> {
        let Some(profile) = self.for_device(reading.device.as_str()) else {
            return Ok(false);
        };
        match profile.channels.iter().find(|c| c.name == reading.sensor) {
            Some(spec) if spec.unit != reading.unit => Err(UnitMismatch {
                profile: profile.name.clone(),
                channel: reading.sensor.clone(),
                found: reading.unit.as_str().to_owned(),
                expected: spec.unit.clone(),
            }),
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.channels.iter().map(|c| c.name.as_str()).collect();
        write!(f, "{} ({})", self.name, names.join(", "))
    }
}

/// `*` matches any run of bytes, `?` any one byte; everything else itself.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, unit: &str) -> ChannelSpec {
        ChannelSpec {
            name: Channel::new(name).unwrap(),
            unit: Unit::new(unit).unwrap(),
            range: None,
            score_weight: DEFAULT_SCORE_WEIGHT,
        }
    }

    fn compressor(devices: &[&str]) -> Profile {
        Profile {
            name: "compressor".into(),
            channels: vec![spec("current", "A"), spec("flow", "m³/h")],
            devices: devices.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn reading(device: &str, channel: &str, unit: &str) -> Reading {
        Reading {
            device: DeviceId::new(device).unwrap(),
            sensor: Channel::new(channel).unwrap(),
            unit: Unit::new(unit).unwrap(),
            ts_ns: 0,
            value: 1.0,
            seq: 0,
            injected: None,
            ts_source: crate::TsSource::Event,
        }
    }

    #[test]
    fn globs_match_like_a_shell() {
        for (p, t, ok) in [
            ("*", "anything", true),
            ("pump-*", "pump-07", true),
            ("pump-*", "pumpa", false),
            ("comp-??", "comp-01", true),
            ("comp-??", "comp-001", false),
            ("*-line2-*", "press-line2-04", true),
            ("a*b*c", "abxbc", true),
            ("a*b*c", "acb", false),
            ("exact", "exact", true),
        ] {
            assert_eq!(glob(p.as_bytes(), t.as_bytes()), ok, "{p} {t}");
        }
    }

    #[test]
    fn the_most_specific_pattern_wins_and_units_are_checked_for_declared_channels() {
        let profiles = Profiles::new(vec![
            Profile::pump(vec!["*".into()]),
            compressor(&["comp-*", "press-01"]),
        ])
        .unwrap();
        assert_eq!(profiles.for_device("pump-03").unwrap().name, PUMP);
        assert_eq!(profiles.for_device("comp-7").unwrap().name, "compressor");
        assert_eq!(profiles.for_device("press-01").unwrap().name, "compressor");

        assert_eq!(profiles.check(&reading("comp-7", "current", "A")), Ok(true));
        let err = profiles.check(&reading("comp-7", "current", "mA")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unit \"mA\" does not match channel current of profile compressor, which reports in \
             \"A\""
        );
        assert!(profiles.check(&reading("pump-1", "temperature", "K")).is_err());
        // Undeclared channels pass, whatever their unit: stored, not modelled.
        assert_eq!(profiles.check(&reading("comp-7", "oil_level", "%")), Ok(false));
        assert_eq!(profiles.check(&reading("pump-1", "voltage", "V")), Ok(false));
        assert_eq!(profiles.check(&reading("pump-1", "temperature", "°C")), Ok(true));

        let only_compressors = Profiles::new(vec![compressor(&["comp-*"])]).unwrap();
        assert_eq!(only_compressors.for_device("pump-1"), None);
        assert_eq!(only_compressors.check(&reading("pump-1", "temperature", "K")), Ok(false));
    }

    #[test]
    fn bad_profiles_say_what_to_change() {
        let shared = Profiles::new(vec![Profile::pump(vec!["*".into()]), compressor(&["*"])]);
        assert_eq!(
            shared.unwrap_err().to_string(),
            "device pattern \"*\" is in both profile pump and profile compressor; a device must \
             map to one profile"
        );
        let bad = Profiles::new(vec![compressor(&["comp/*"])]).unwrap_err();
        assert!(matches!(bad, ProfileError::BadPattern { .. }), "{bad}");
        let mut twice = compressor(&["c*"]);
        twice.channels.push(spec("current", "A"));
        assert!(matches!(Profiles::new(vec![twice]), Err(ProfileError::DuplicateChannel { .. })));
        let mut empty = compressor(&["c*"]);
        empty.channels.clear();
        assert!(matches!(Profiles::new(vec![empty]), Err(ProfileError::NoChannels { .. })));
        let mut wide = compressor(&["c*"]);
        wide.channels = (0..=MAX_CHANNELS).map(|i| spec(&format!("c{i}"), "")).collect();
        let too_many = Profiles::new(vec![wide]).unwrap_err();
        assert!(matches!(too_many, ProfileError::TooManyChannels { count: 65, .. }), "{too_many}");
        let mut ranged = compressor(&["c*"]);
        ranged.channels[0].range = Some((5.0, 1.0));
        assert!(matches!(Profiles::new(vec![ranged]), Err(ProfileError::BadRange { .. })));
        let mut named = compressor(&["c*"]);
        named.name = "Big Compressor".into();
        assert!(matches!(Profiles::new(vec![named]), Err(ProfileError::BadName { .. })));
    }
}
