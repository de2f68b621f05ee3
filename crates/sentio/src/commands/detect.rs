//! `sentio detect --from --to`: score a stored time range with the promoted model and list the
//! alerts it raises (a replay; the streaming detector on the bus is issue #5's next step).

use std::sync::Arc;

use anyhow::Context;
use sentio_config::Config;
use sentio_core::time::format_rfc3339;
use sentio_core::{Alert, AlertState, DeviceId, SensorKind};
use sentio_services::detect::{AlertSettings, AlertV1, Scorer, replay, top_sensor};

use super::time_arg::parse_instant;
use crate::wiring;

/// Scores the stored readings of a time range with a registered model (detect.alias of
/// detect.model_name, default: the champion of train.model_name), windows aligned exactly as in
/// training, and lists the alerts: when each opened and ended, its peak score against the
/// model's threshold, its severity, and which sensors deviated (share of the error, relative to
/// each sensor's normal level), the top one first.
#[derive(clap::Args)]
pub struct Args {
    /// Start of the range: RFC 3339, a date, or `now`.
    #[arg(long, value_parser = parse_instant)]
    from: i64,
    /// End (exclusive) of the range.
    #[arg(long, value_parser = parse_instant)]
    to: i64,
    /// Only these devices (repeat the flag; default: every device in the range).
    #[arg(long = "device", value_name = "DEVICE")]
    devices: Vec<String>,
    /// The model version or alias to use (overrides detect.alias).
    #[arg(long, value_name = "VERSION|ALIAS")]
    model: Option<String>,
    /// Print every alert message (opened, updated, resolved) as a JSON line instead of a table:
    /// the alert message v1 of docs/messages.md.
    #[arg(long)]
    json: bool,
}

pub async fn run(mut config: Config, args: Args) -> anyhow::Result<()> {
    if let Some(model) = args.model {
        config.detect.alias = model;
    }
    config.validate()?;
    anyhow::ensure!(args.from < args.to, "--from must be before --to");
    let devices: Vec<DeviceId> = args
        .devices
        .iter()
        .map(|d| DeviceId::new(d).with_context(|| format!("--device {d:?}")))
        .collect::<anyhow::Result<_>>()?;
    let d = &config.detect;
    let name = if d.model_name.is_empty() { &config.train.model_name } else { &d.model_name };
    let store = wiring::open_store(&config).await?;
    let tracking = wiring::open_tracking(&config)?;
    let cache = tempfile::tempdir().context("creating a temporary directory for the model")?;
    let threads = sentio_services::train::fit::threads_or_all(d.threads);
    let scorer =
        Arc::new(Scorer::resolve(tracking.as_ref(), name, &d.alias, cache.path(), threads).await?);
    let settings = AlertSettings {
        open_after: d.open_after,
        cooldown: d.cooldown,
        critical_factor: d.critical_factor,
    };
    let found =
        replay(store.as_ref(), scorer.clone(), &devices, args.from, args.to, d.stride, settings)
            .await?;

    if args.json {
        for alert in &found.alerts {
            say!("{}", serde_json::to_string(&AlertV1::from(alert))?);
        }
        return Ok(());
    }
    let windows: usize = found.scores.values().map(Vec::len).sum();
    say!(
        "{} version {}: {} readings, {} devices, {} windows scored, threshold {:.5}",
        scorer.model().name,
        scorer.model().version,
        found.readings,
        found.scores.len(),
        windows,
        scorer.threshold()
    );
    let resolved: Vec<&Alert> =
        found.alerts.iter().filter(|a| a.state == AlertState::Resolved).collect();
    if resolved.is_empty() {
        say!("no alerts");
        return Ok(());
    }
    say!("{} alerts:", resolved.len());
    for a in resolved {
        say!(
            "  {}  {} .. {}  peak {:.4} ({:.1}x)  {:?}  {}",
            a.device,
            format_rfc3339(a.window_start_ns),
            format_rfc3339(a.window_end_ns),
            a.score,
            a.score / a.threshold,
            a.severity,
            sensors(&a.sensor_share)
        );
    }
    Ok(())
}

/// "vibration 91%, pressure 5%, ...", the top sensor first, shares under 1 % left out.
fn sensors(share: &[f64; 4]) -> String {
    let mut order: Vec<usize> = (0..4).collect();
    order.sort_by(|a, b| share[*b].total_cmp(&share[*a]));
    debug_assert_eq!(order[0], top_sensor(share));
    order
        .iter()
        .filter(|&&s| share[s] >= 0.01)
        .map(|&s| format!("{} {:.0}%", SensorKind::ALL[s].as_str(), share[s] * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}
