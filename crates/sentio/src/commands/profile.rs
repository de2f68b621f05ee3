//! `sentio profile`: the asset profiles in effect, the stored devices each one claims, and a
//! profile to paste for machines whose channels no profile declares yet.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sentio_config::Config;
use sentio_core::time::format_rfc3339;
use sentio_core::{Channel, DeviceId, Profiles, Unit};
use sentio_store::{ChannelInfo, ChannelStats};

use super::time_arg::parse_instant;
use crate::wiring;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: ProfileCommand,
}

#[derive(clap::Subcommand)]
enum ProfileCommand {
    /// List the profiles in effect (built-in pump and the configured ones), the stored devices
    /// each one claims, and the channels stored but not modelled (no profile declares them).
    List,
    /// Print a profile as TOML to paste into the --config file, from the channels, units and
    /// value ranges found in stored history. Devices are grouped by the channels they send; a
    /// group whose channels its profile already declares is only reported.
    Suggest {
        /// Start of the stored history to look at (default: all of it).
        #[arg(long, value_parser = parse_instant)]
        from: Option<i64>,
        /// End (exclusive).
        #[arg(long, value_parser = parse_instant)]
        to: Option<i64>,
        /// Only these devices (repeat the flag; default: every stored device).
        #[arg(long = "device")]
        devices: Vec<DeviceId>,
    },
}

pub async fn run(config: Config, args: Args) -> anyhow::Result<()> {
    let profiles = config.profiles()?;
    let store = wiring::open_store(&config).await?;
    match args.command {
        ProfileCommand::List => {
            let catalog = store.channels().await?;
            print!("{}", list(&profiles, &catalog));
        }
        ProfileCommand::Suggest { from, to, devices } => {
            let (from, to) = (from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX));
            anyhow::ensure!(
                from < to,
                "--from {} is not before --to {}",
                format_rfc3339(from),
                format_rfc3339(to)
            );
            let mut stats = store.channel_stats(from, to).await?;
            if !devices.is_empty() {
                stats.retain(|s| devices.contains(&s.device));
            }
            anyhow::ensure!(
                !stats.is_empty(),
                "no stored readings in that range{}; ingest some first (`sentio ingest`), or widen \
                 --from/--to",
                if devices.is_empty() { "" } else { " for those devices" }
            );
            print!("{}", suggest(&profiles, &stats));
        }
    }
    Ok(())
}

/// The profiles, their stored devices, and the channels no profile models.
fn list(profiles: &Profiles, catalog: &[ChannelInfo]) -> String {
    let mut devices: BTreeMap<&DeviceId, Vec<&ChannelInfo>> = BTreeMap::new();
    for c in catalog {
        devices.entry(&c.device).or_default().push(c);
    }
    let mut out = String::new();
    for p in profiles.iter() {
        let _ = writeln!(out, "profile {p}");
        let _ = writeln!(out, "  devices matching {}", p.devices.join(", "));
        let claimed: Vec<&str> = devices
            .keys()
            .filter(|d| profiles.for_device(d.as_str()).is_some_and(|q| q.name == p.name))
            .map(|d| d.as_str())
            .collect();
        let _ = writeln!(out, "  stored: {}", names_or_none(&claimed));
    }
    let unclaimed: Vec<&str> = devices
        .keys()
        .filter(|d| profiles.for_device(d.as_str()).is_none())
        .map(|d| d.as_str())
        .collect();
    if !unclaimed.is_empty() {
        let _ = writeln!(
            out,
            "no profile claims {}: stored, not modelled (`sentio profile suggest` drafts one)",
            unclaimed.join(", ")
        );
    }
    for (device, channels) in &devices {
        let Some(p) = profiles.for_device(device.as_str()) else { continue };
        let extra: Vec<String> = channels
            .iter()
            .filter(|c| p.position(&c.sensor).is_none())
            .map(|c| {
                if c.unit.as_str().is_empty() {
                    c.sensor.to_string()
                } else {
                    format!("{} ({})", c.sensor, c.unit)
                }
            })
            .collect();
        if !extra.is_empty() {
            let _ = writeln!(
                out,
                "{device} ({}) also sends {}: stored, not modelled",
                p.name,
                extra.join(", ")
            );
        }
    }
    out
}

fn names_or_none(names: &[&str]) -> String {
    if names.is_empty() { "none yet".to_owned() } else { names.join(", ") }
}

/// One suggested profile per group of devices sending the same channels in the same units.
fn suggest(profiles: &Profiles, stats: &[ChannelStats]) -> String {
    let mut per_device: BTreeMap<&DeviceId, Vec<&ChannelStats>> = BTreeMap::new();
    for s in stats {
        per_device.entry(&s.device).or_default().push(s);
    }
    // Devices sending the same channels, in the same units, are one kind of machine.
    let mut groups: BTreeMap<Vec<(Channel, Unit)>, Vec<&DeviceId>> = BTreeMap::new();
    for (device, channels) in &per_device {
        let mut key: Vec<(Channel, Unit)> =
            channels.iter().map(|s| (s.sensor.clone(), s.unit.clone())).collect();
        key.sort();
        key.dedup();
        groups.entry(key).or_default().push(device);
    }
    let mut out = String::new();
    let mut taken: Vec<String> = profiles.iter().map(|p| p.name.clone()).collect();
    for (channels, devices) in &groups {
        let names: Vec<&str> = devices.iter().map(|d| d.as_str()).collect();
        let covered = devices.iter().all(|d| {
            profiles.for_device(d.as_str()).is_some_and(|p| {
                channels
                    .iter()
                    .all(|(c, u)| p.channels.iter().any(|s| &s.name == c && &s.unit == u))
            })
        });
        if covered {
            let profile = profiles.for_device(names[0]).map_or("?", |p| p.name.as_str());
            let _ = writeln!(
                out,
                "# {}: every channel is declared by profile {profile} already\n",
                names.join(", ")
            );
            continue;
        }
        let (name, pattern) = name_and_pattern(&names, &taken);
        taken.push(name.clone());
        let _ = writeln!(
            out,
            "# {} device{} ({}), {} channel{}: value ranges as stored; narrow each to the healthy",
            devices.len(),
            if devices.len() == 1 { "" } else { "s" },
            names.join(", "),
            channels.len(),
            if channels.len() == 1 { "" } else { "s" },
        );
        let _ = writeln!(out, "# range if the history holds faults, and reorder channels at will.");
        let _ = writeln!(out, "[profiles.{name}]");
        let _ = writeln!(out, "devices = [{pattern:?}]");
        let _ = writeln!(out, "channels = [");
        for (channel, unit) in channels {
            let (lo, hi) = devices
                .iter()
                .flat_map(|d| per_device[d].iter())
                .filter(|s| &s.sensor == channel && &s.unit == unit)
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), s| {
                    (lo.min(s.min), hi.max(s.max))
                });
            let range = if lo < hi {
                format!(", range = [{}, {}]", round_out(lo, false), round_out(hi, true))
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  {{ name = {:?}, unit = {:?}{range} }},",
                channel.as_str(),
                unit.as_str()
            );
        }
        let _ = writeln!(out, "]\n");
    }
    out
}

/// A profile name and device pattern for `devices`: their common prefix without its trailing
/// separators and digits (`comp-01`, `comp-02` → `comp`, `comp-*`), or the device itself when
/// there is one; a name not in `taken`.
fn name_and_pattern(devices: &[&str], taken: &[String]) -> (String, String) {
    let (pattern, stem) = if let [one] = devices {
        ((*one).to_owned(), *one)
    } else {
        let first = devices[0];
        let common = devices.iter().fold(first.len(), |n, d| {
            first.bytes().zip(d.bytes()).take(n).take_while(|(a, b)| a == b).count()
        });
        (format!("{}*", &first[..common]), &first[..common])
    };
    let mut base: String = stem
        .trim_end_matches(|c: char| c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .collect();
    if base.is_empty() {
        base = "machine".to_owned();
    }
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    (name, pattern)
}

/// `x` rounded away from the data to 3 significant digits, so that the range holds it.
fn round_out(x: f64, up: bool) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(2 - x.abs().log10().floor() as i32);
    let y = x * scale;
    (if up { y.ceil() } else { y.floor() }) / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(device: &str, channel: &str, unit: &str, min: f64, max: f64) -> ChannelStats {
        ChannelStats {
            device: DeviceId::new(device).unwrap(),
            sensor: Channel::new(channel).unwrap(),
            unit: Unit::new(unit).unwrap(),
            count: 10,
            min,
            max,
            mean: (min + max) / 2.0,
        }
    }

    #[test]
    fn names_patterns_and_ranges() {
        assert_eq!(
            name_and_pattern(&["comp-01", "comp-02"], &[]),
            ("comp".to_owned(), "comp-0*".to_owned())
        );
        assert_eq!(name_and_pattern(&["Lathe-7"], &[]), ("lathe".to_owned(), "Lathe-7".to_owned()));
        assert_eq!(
            name_and_pattern(&["pump-9"], &["pump".to_owned()]),
            ("pump-2".to_owned(), "pump-9".to_owned())
        );
        assert_eq!(name_and_pattern(&["a1", "b2"], &[]), ("machine".to_owned(), "*".to_owned()));
        assert_eq!(round_out(47.234, true), 47.3);
        assert_eq!(round_out(47.234, false), 47.2);
        assert_eq!(round_out(-0.01234, false), -0.0124);
        assert_eq!(round_out(1234.5, true), 1240.0);
    }

    #[test]
    fn suggests_a_profile_for_undeclared_machines_only() {
        let profiles = Profiles::builtin();
        let mut stats = Vec::new();
        for d in ["comp-01", "comp-02"] {
            stats.push(stat(d, "current", "A", 3.04, 47.21));
            stats.push(stat(d, "flow", "m³/h", 10.0, 12.5));
        }
        for kind in sentio_core::SensorKind::ALL {
            stats.push(stat("pump-1", kind.as_str(), kind.unit(), 1.0, 2.0));
        }
        let text = suggest(&profiles, &stats);
        assert!(
            text.contains(
                "[profiles.comp]\ndevices = [\"comp-0*\"]\nchannels = [\n  { name = \"current\", \
                 unit = \"A\", range = [3.04, 47.3] },\n  { name = \"flow\", unit = \"m³/h\", \
                 range = [10, 12.5] },\n]"
            ),
            "{text}"
        );
        assert!(
            text.contains("# pump-1: every channel is declared by profile pump already"),
            "{text}"
        );
        // The suggestion loads as a configuration.
        let toml_text: String =
            text.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n");
        let parsed: toml::Value = toml::from_str(&toml_text).unwrap();
        assert_eq!(parsed["profiles"]["comp"]["channels"].as_array().unwrap().len(), 2);
    }
}
