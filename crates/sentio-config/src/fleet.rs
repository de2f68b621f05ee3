//! The simulated fleet: which devices `sentio simulate` and `sentio demo` simulate, each with its
//! profile and its number within the profile.
//!
//! `demo.profiles` gives a device count per profile (`{ pump = 6, compressor = 2 }`). Each
//! profile's devices are named after its first device pattern that can name them all, and each
//! name must be one the profile claims (no other profile's pattern wins it):
//!
//! - a pattern of only `*`: `<simulator.device_prefix>-01`, ... for the pump (today's names),
//!   `<profile>-01`, ... for any other;
//! - a pattern with wildcards: the first wildcard becomes the device's number (a `*` the number
//!   zero-padded to two digits or more, a run of `?` the number padded to its length, when it
//!   fits), any other `*` nothing and any other `?` a `0`: `compressor-*` gives `compressor-01`,
//!   `comp-???` `comp-001`;
//! - literal patterns (`press-01`), when no pattern has wildcards: one device each, in order.
//!
//! With `demo.profiles` empty the fleet is today's: `simulator.devices` pumps named
//! `<simulator.device_prefix>-01`, ..., whatever the profiles say.

use sentio_core::profile::PUMP;
use sentio_core::{DeviceId, Profile, Profiles};

use crate::{Config, ConfigError, invalid_entry, toml_key};

/// The most devices one fleet simulates (as `simulator.devices`).
pub const MAX_DEVICES: u32 = 100_000;

/// One simulated device.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetDevice {
    pub device: DeviceId,
    /// The profile the device is (and that claims its name).
    pub profile: Profile,
    /// The device's position among its profile's devices, from 0: with the seed, it keys the
    /// device's random streams, so a device's signals do not depend on the other profiles'
    /// counts.
    pub index: u32,
}

impl Config {
    /// The devices to simulate, the pump's first, then each other profile's by profile name (see
    /// the [module docs](self)).
    pub fn fleet(&self) -> Result<Vec<FleetDevice>, ConfigError> {
        let profiles = self.profiles()?;
        if self.demo.profiles.is_empty() {
            let pump = profiles.get(PUMP).cloned().unwrap_or_else(|| Profile::pump(Vec::new()));
            let sim = &self.simulator;
            return numbered(&sim.device_prefix, sim.devices)
                .zip(0u32..)
                .map(|(name, index)| {
                    let device = DeviceId::new(&name).map_err(|_| {
                        invalid_entry(
                            "simulator.device_prefix".into(),
                            format!("{:?}", sim.device_prefix),
                            "a prefix that makes valid device ids",
                        )
                    })?;
                    Ok(FleetDevice { device, profile: pump.clone(), index })
                })
                .collect();
        }
        let mut fleet = Vec::new();
        let pump_first = self.demo.profiles.get_key_value(PUMP).into_iter();
        let others = self.demo.profiles.iter().filter(|(name, _)| name.as_str() != PUMP);
        for (name, &count) in pump_first.chain(others) {
            let key = format!("demo.profiles.{}", toml_key(name));
            let Some(profile) = profiles.get(name) else {
                let declared: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
                return Err(invalid_entry(
                    key,
                    format!("{name:?}"),
                    &format!(
                        "the name of a profile this configuration declares ({}); declare \
                         another as [profiles.NAME] with its devices and channels",
                        declared.join(", ")
                    ),
                ));
            };
            let names = device_names(profile, count, &self.simulator.device_prefix, &profiles)
                .map_err(|why| invalid_entry(key, count, &why))?;
            fleet.extend(names.into_iter().zip(0u32..).map(|(device, index)| FleetDevice {
                device,
                profile: profile.clone(),
                index,
            }));
        }
        Ok(fleet)
    }
}

/// `prefix-01`, `prefix-02`, ... up to `count`, zero-padded to at least two digits.
fn numbered(prefix: &str, count: u32) -> impl Iterator<Item = String> + '_ {
    let width = count.to_string().len().max(2);
    (1..=count).map(move |i| format!("{prefix}-{i:0width$}"))
}

/// The names of `count` devices of `profile`, or what to change (the expected form of the
/// count's key).
fn device_names(
    profile: &Profile,
    count: u32,
    prefix: &str,
    profiles: &Profiles,
) -> Result<Vec<DeviceId>, String> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let mut refused = Vec::new();
    let wildcard = |p: &String| p.contains(['*', '?']);
    for pattern in profile.devices.iter().filter(|p| wildcard(p)) {
        let names: Vec<String> = if pattern.bytes().all(|b| b == b'*') {
            let base = if profile.name == PUMP { prefix } else { profile.name.as_str() };
            numbered(base, count).collect()
        } else {
            match (1..=count).map(|i| fill(pattern, i, count)).collect::<Option<Vec<_>>>() {
                Some(names) => names,
                None => {
                    refused.push(format!("{pattern:?} has too few `?` for {count} devices"));
                    continue;
                }
            }
        };
        match claimed(&names, profile, profiles) {
            Ok(ids) => return Ok(ids),
            Err(why) => refused.push(format!("{pattern:?} would name {why}")),
        }
    }
    let literals: Vec<String> = profile.devices.iter().filter(|p| !wildcard(p)).cloned().collect();
    if !literals.is_empty() && literals.len() >= count as usize {
        let names = &literals[..count as usize];
        match claimed(names, profile, profiles) {
            Ok(ids) => return Ok(ids),
            Err(why) => refused.push(format!("its literal ids would name {why}")),
        }
    }
    let patterns = format!("profiles.{}.devices", toml_key(&profile.name));
    let lists = if profile.devices.is_empty() {
        format!("{patterns} is empty")
    } else {
        format!("{patterns} is {:?}", profile.devices)
    };
    let why = if refused.is_empty() {
        format!("no pattern of it names {count} devices")
    } else {
        refused.join("; ")
    };
    Err(format!(
        "a count of devices that profile {}'s patterns can name, each one it claims ({lists}: \
         {why}); give it a pattern with `*`, such as \"{}-*\"",
        profile.name, profile.name
    ))
}

/// `pattern` with its first wildcard replaced by device number `i` of `count` (see the module
/// docs); `None` when the number does not fit a run of `?`.
fn fill(pattern: &str, i: u32, count: u32) -> Option<String> {
    let width = count.to_string().len();
    let mut out = String::with_capacity(pattern.len() + width);
    let mut numbered = false;
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if !numbered => {
                out.push_str(&format!("{i:0w$}", w = width.max(2)));
                numbered = true;
            }
            '?' if !numbered => {
                let mut run = 1;
                while chars.peek() == Some(&'?') {
                    chars.next();
                    run += 1;
                }
                if width > run {
                    return None;
                }
                out.push_str(&format!("{i:0run$}"));
                numbered = true;
            }
            '*' => {}
            '?' => out.push('0'),
            c => out.push(c),
        }
    }
    Some(out)
}

/// `names` as device ids, when each is valid and `profile` claims it.
fn claimed(
    names: &[String],
    profile: &Profile,
    profiles: &Profiles,
) -> Result<Vec<DeviceId>, String> {
    names
        .iter()
        .map(|name| {
            let id = DeviceId::new(name).map_err(|e| format!("{name:?}, not a device id: {e}"))?;
            match profiles.for_device(name) {
                Some(p) if p.name == profile.name => Ok(id),
                Some(p) => Err(format!("{name}, which profile {} claims", p.name)),
                None => Err(format!("{name}, which no profile claims")),
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::result_large_err)]
mod tests {
    use figment::Jail;

    use super::*;

    const COMPRESSOR: &str = r#"
[profiles.compressor]
devices = ["compressor-*"]
channels = [
  { name = "current", unit = "A", range = [0.0, 60.0] },
  { name = "flow", unit = "m³/h" },
]
"#;

    fn load(jail: &Jail, file: &str) -> Result<Config, ConfigError> {
        jail.create_file("site.toml", file).unwrap();
        Config::load(Some(&jail.directory().join("site.toml")))
    }

    fn names(fleet: &[FleetDevice]) -> Vec<(String, String, u32)> {
        fleet
            .iter()
            .map(|d| (d.device.as_str().to_owned(), d.profile.name.clone(), d.index))
            .collect()
    }

    #[test]
    fn without_demo_profiles_the_fleet_is_todays_pumps() {
        let c = Config::defaults().unwrap();
        let fleet = c.fleet().unwrap();
        assert_eq!(fleet.len(), 8);
        for (i, d) in fleet.iter().enumerate() {
            assert_eq!(d.device.as_str(), format!("pump-{:02}", i + 1));
            assert_eq!(d.profile.name, PUMP);
            assert_eq!(d.index, i as u32);
        }
        let mut c = c;
        c.simulator.devices = 120;
        c.simulator.device_prefix = "p".into();
        let fleet = c.fleet().unwrap();
        assert_eq!(fleet[0].device.as_str(), "p-001");
        assert_eq!(fleet[119].device.as_str(), "p-120");
    }

    #[test]
    fn a_mixed_fleet_names_each_profiles_devices_after_its_pattern() {
        Jail::expect_with(|jail| {
            let boiler = "[profiles.boiler]\ndevices = [\"boil-???\"]\nchannels = [{ name = \
                          \"t\", unit = \"°C\" }]\n";
            let demo = "[demo]\nprofiles = { pump = 3, compressor = 2, boiler = 1 }\n";
            let c = load(jail, &format!("{COMPRESSOR}{boiler}{demo}")).unwrap();
            let expected = [
                ("pump-01", "pump", 0),
                ("pump-02", "pump", 1),
                ("pump-03", "pump", 2),
                ("boil-001", "boiler", 0),
                ("compressor-01", "compressor", 0),
                ("compressor-02", "compressor", 1),
            ];
            let expected: Vec<(String, String, u32)> =
                expected.iter().map(|(d, p, i)| (d.to_string(), p.to_string(), *i)).collect();
            assert_eq!(names(&c.fleet().unwrap()), expected);
            for d in c.fleet().unwrap() {
                assert_eq!(c.profiles().unwrap().for_device(d.device.as_str()), Some(&d.profile));
            }
            Ok(())
        });
    }

    #[test]
    fn demo_profiles_of_only_pumps_is_the_same_fleet_as_simulator_devices() {
        let mut c = Config::defaults().unwrap();
        let today = c.fleet().unwrap();
        c.demo.profiles.insert(PUMP.into(), 8);
        assert_eq!(c.fleet().unwrap(), today);
    }

    #[test]
    fn fills_the_first_wildcard_with_the_number() {
        assert_eq!(fill("comp-*", 7, 12).as_deref(), Some("comp-07"));
        assert_eq!(fill("comp-*", 7, 120).as_deref(), Some("comp-007"));
        assert_eq!(fill("c??-x*", 3, 9).as_deref(), Some("c03-x"));
        assert_eq!(fill("c?-*-?", 3, 9).as_deref(), Some("c3--0"));
        assert_eq!(fill("c?", 10, 10), None);
        assert_eq!(fill("*-line2-*", 1, 2).as_deref(), Some("01-line2-"));
    }

    /// Each way `demo.profiles` can be wrong names the key and says what to write instead.
    #[test]
    fn fleet_errors_name_the_key_and_the_expected_form() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "[demo]\nprofiles = { pump = 2, turbine = 1 }\n",
                "demo.profiles.turbine",
                &["\"turbine\"", "declares (pump, compressor)", "[profiles.NAME]"],
            ),
            (
                "[demo]\nprofiles = { pump = 200000 }\n",
                "demo.profiles.pump",
                &["200000", "from 0 to 100000"],
            ),
            (
                "[profiles.pump]\ndevices = []\n[demo]\nprofiles = { pump = 2 }\n",
                "demo.profiles.pump",
                &["profiles.pump.devices is empty", "pattern with `*`"],
            ),
            (
                "[profiles.pump]\ndevices = [\"pump-?\"]\n[demo]\nprofiles = { pump = 12 }\n",
                "demo.profiles.pump",
                &["\"pump-?\" has too few `?` for 12 devices"],
            ),
            (
                "[profiles.boiler]\ndevices = [\"pump-*\"]\nchannels = [{ name = \"t\", unit = \
                 \"\" }]\n[demo]\nprofiles = { pump = 2 }\n",
                "demo.profiles.pump",
                &["pump-01, which profile boiler claims"],
            ),
            (
                "[profiles.boiler]\ndevices = [\"b-1\", \"b-2\"]\nchannels = [{ name = \"t\", \
                 unit = \"\" }]\n[demo]\nprofiles = { boiler = 3 }\n",
                "demo.profiles.boiler",
                &["[\"b-1\", \"b-2\"]", "no pattern of it names 3 devices"],
            ),
        ];
        for (file, key, needles) in cases {
            Jail::expect_with(|jail| {
                let err = load(jail, &format!("{COMPRESSOR}{file}")).expect_err(file);
                let message = err.to_string();
                match &err {
                    ConfigError::InvalidEntry { key: named, .. } => {
                        assert_eq!(named, key, "{file}: {message}")
                    }
                    other => panic!("{file}: expected InvalidEntry, got {other:?}"),
                }
                for needle in *needles {
                    assert!(message.contains(needle), "{file}: {message:?} lacks {needle:?}");
                }
                Ok(())
            });
        }
        // Literal ids name as many devices as they are.
        Jail::expect_with(|jail| {
            let file = "[profiles.boiler]\ndevices = [\"b-1\", \"b-2\"]\nchannels = [{ name = \
                        \"t\", unit = \"\" }]\n[demo]\nprofiles = { boiler = 2 }\n";
            let fleet = load(jail, file).unwrap().fleet().unwrap();
            let ids: Vec<&str> = fleet.iter().map(|d| d.device.as_str()).collect();
            assert_eq!(ids, ["b-1", "b-2"]);
            Ok(())
        });
        Jail::expect_with(|jail| {
            let err = load(jail, "[demo]\nprofiles = { pump = 0 }\n").unwrap_err();
            let message = err.to_string();
            assert!(
                message.contains("`demo.profiles`") && message.contains("at least one"),
                "{message}"
            );
            Ok(())
        });
    }

    #[test]
    fn generic_mix_errors_name_the_key_and_the_kind() {
        Jail::expect_with(|jail| {
            jail.set_env("SENTIO__SIMULATOR__ANOMALIES__GENERIC_MIX__LEVEL_SHIFT", "-1");
            let message = Config::load(None).unwrap_err().to_string();
            for needle in ["simulator.anomalies.generic_mix", "level_shift = -1", "0 or more"] {
                assert!(message.contains(needle), "{message:?} lacks {needle:?}");
            }
            jail.set_env("SENTIO__SIMULATOR__ANOMALIES__GENERIC_MIX__LEVEL_SHIFT", "0");
            let c = Config::load(None).unwrap();
            assert_eq!(c.simulator.anomalies.generic_mix.weights()[4], ("level_shift", 0.0));
            jail.set_env("SENTIO__SIMULATOR__ANOMALIES__GENERIC_MIX__SPIKY", "1");
            let message = Config::load(None).unwrap_err().to_string();
            assert!(message.contains("generic_mix.spiky"), "{message}");
            Ok(())
        });
    }

    #[test]
    fn the_fleet_comes_from_a_file_or_the_environment_and_prints_back() {
        Jail::expect_with(|jail| {
            jail.set_env("SENTIO__DEMO__PROFILES__COMPRESSOR", "3");
            let c =
                load(jail, &format!("{COMPRESSOR}[demo]\nprofiles = {{ pump = 2 }}\n")).unwrap();
            assert_eq!(c.fleet().unwrap().len(), 5);
            jail.create_file("printed.toml", &c.to_toml().unwrap())?;
            let again = Config::load(Some(&jail.directory().join("printed.toml"))).unwrap();
            assert_eq!(again.fleet().unwrap(), c.fleet().unwrap());
            Ok(())
        });
    }
}
