//! `sentio demo`: every role of this issue in one process, on the embedded backends.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use sentio_config::Config;
use sentio_core::time::{NANOS_PER_SEC, format_rfc3339, now_ns};
use sentio_services::etl::EtlStats;
use sentio_services::shutdown::Shutdown;
use sentio_services::simulator::{Output, SimStats, Simulator};
use sentio_store::ReadingStore;
use tokio_util::sync::CancellationToken;

use super::time_arg::parse_duration;
use crate::wiring;

/// Backfills simulated history (with a progress bar), then streams live readings through the
/// embedded bus into SQLite and the raw .pickle archive, with a live summary line. Ctrl-C drains
/// the bus, writes the last batch and archive slices, and exits within a few seconds.
#[derive(clap::Args)]
pub struct Args {
    /// History to simulate before going live (overrides demo.backfill), e.g. 2h; 0s skips it.
    #[arg(long, value_parser = parse_duration)]
    backfill: Option<Duration>,
    /// Stop after this much real time instead of waiting for Ctrl-C, e.g. 30s.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
}

pub async fn run(mut config: Config, args: Args) -> anyhow::Result<()> {
    config.demo.backfill = args.backfill.unwrap_or(config.demo.backfill);
    config.validate()?;

    let store = wiring::open_store(&config).await?;
    let bus = wiring::open_bus(&config, Some(store.as_ref())).await?;
    let before = store.stats().await?;
    let archiver = wiring::archiver(&config).await?;
    let output = Output::Bus { bus: bus.clone(), topic: config.topics.readings.clone() };
    let mut simulator = Simulator::new(&config.simulator, output, archiver)?;
    let sim_stats = simulator.stats();

    let shutdown = Shutdown::new();
    shutdown.cancel_on_signals();
    let stop = shutdown.token();
    if let Some(limit) = args.duration {
        let stop = stop.clone();
        shutdown.spawn("timer", async move {
            tokio::select! {
                _ = tokio::time::sleep(limit) => stop.cancel(),
                _ = stop.cancelled() => {}
            }
            Ok(())
        });
    }

    // The ETL stops only after the simulator has, so it can drain what the simulator published.
    let etl_stop = CancellationToken::new();
    let etl = wiring::etl(&config, &bus, &store);
    let etl_stats = etl.stats();
    let etl_task = shutdown.spawn("ingest", etl.run(etl_stop.clone()));

    say!(
        "sentio demo: {} devices, store {}, archive {}",
        config.simulator.devices,
        config.store.sqlite.path.display(),
        if config.archive.enabled {
            config.objects.local.root.display().to_string()
        } else {
            "off".into()
        }
    );
    let now = simulator.align(now_ns());
    let from = resume_point(store.as_ref(), now, &config).await?;
    let total = simulator.ticks_between(from, now);
    let next = if total > 0 {
        say!("backfilling {} to {}", format_rfc3339(from), format_rfc3339(now));
        let bar = ProgressBar::new(total).with_style(
            ProgressStyle::with_template("{bar:40.cyan/blue} {percent:>3}%  {msg}  eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let started = Instant::now();
        let next = simulator
            .backfill(from, now, &stop, |done| {
                bar.set_position(done);
                bar.set_message(summary(&sim_stats, &etl_stats, started.elapsed()));
            })
            .await?;
        bar.finish_and_clear();
        say!("backfill done: {}", summary(&sim_stats, &etl_stats, started.elapsed()));
        next
    } else {
        now
    };

    let live = ProgressBar::new_spinner();
    live.enable_steady_tick(Duration::from_millis(250));
    let ticker = {
        let (live, sim_stats, etl_stats, stop) =
            (live.clone(), sim_stats.clone(), etl_stats.clone(), stop.clone());
        tokio::spawn(async move { live_summary(live, sim_stats, etl_stats, stop).await })
    };
    if !stop.is_cancelled() {
        if live.is_hidden() {
            say!("live: streaming in real time; Ctrl-C stops");
        } else {
            live.println("live: streaming in real time; Ctrl-C stops");
        }
        simulator.real_time(next, &stop).await?;
    }
    let _ = ticker.await;
    live.finish_and_clear();

    // Drain: the simulator has stopped; write its last archive slices, then let the ETL store what
    // the bus still holds.
    let drain_started = Instant::now();
    simulator.finish().await?;
    etl_stop.cancel();
    etl_task.await.context("the ingest task panicked")??;
    shutdown.wait(Duration::from_secs(2)).await;

    let after = store.stats().await?;
    say!(
        "stopped after a {:.1}s drain: {}",
        drain_started.elapsed().as_secs_f64(),
        final_line(&sim_stats, &etl_stats)
    );
    // What this run added: every message it consumed became exactly one row or dead letter.
    let rows = after.readings - before.readings;
    let letters = after.dead_letters - before.dead_letters;
    let offsets = after.committed_offsets_total - before.committed_offsets_total;
    let consistent = rows + letters == offsets;
    say!(
        "store: +{rows} rows + {letters} dead letters {} +{offsets} committed offsets{}; it holds {} rows",
        if consistent { "=" } else { "!=" },
        if consistent { " (consistent)" } else { "" },
        after.readings,
    );
    if !consistent {
        bail!("the store's rows and offsets disagree; please report this with the store file");
    }
    Ok(())
}

/// Where the backfill starts: `demo.backfill` before now, or just after the newest stored reading
/// when an earlier run already covered part of that range.
async fn resume_point(store: &dyn ReadingStore, now: i64, config: &Config) -> anyhow::Result<i64> {
    let wanted = now - i64::try_from(config.demo.backfill.as_nanos()).unwrap_or(i64::MAX / 2);
    let latest = store.stats().await?.latest_ts_ns;
    Ok(match latest {
        Some(latest) if latest >= wanted => {
            let cadence =
                i64::try_from(config.simulator.cadence.as_nanos()).unwrap_or(NANOS_PER_SEC);
            say!("resuming after the newest stored reading ({})", format_rfc3339(latest));
            (latest + cadence).min(now)
        }
        _ => wanted,
    })
}

async fn live_summary(
    bar: ProgressBar,
    sim: Arc<SimStats>,
    etl: Arc<EtlStats>,
    stop: CancellationToken,
) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let mut last = (Instant::now(), etl.rows_stored.load(Ordering::Relaxed));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let rows = etl.rows_stored.load(Ordering::Relaxed);
        let rate = (rows - last.1) as f64 / last.0.elapsed().as_secs_f64().max(1e-3);
        last = (Instant::now(), rows);
        bar.set_message(format!(
            "{rate:>6.0} readings/s | {rows} rows stored | {} pickles | {} dead letters | {} injected | sim time {}",
            sim.pickles_written.load(Ordering::Relaxed),
            etl.dead_letters.load(Ordering::Relaxed),
            sim.injected.load(Ordering::Relaxed),
            format_rfc3339(sim.sim_time_ns.load(Ordering::Relaxed)),
        ));
    }
}

fn summary(sim: &SimStats, etl: &EtlStats, elapsed: Duration) -> String {
    let published = sim.published.load(Ordering::Relaxed);
    format!(
        "{published} readings ({:.0}/s), {} rows stored, {} pickles",
        published as f64 / elapsed.as_secs_f64().max(1e-3),
        etl.rows_stored.load(Ordering::Relaxed),
        sim.pickles_written.load(Ordering::Relaxed),
    )
}

fn final_line(sim: &SimStats, etl: &EtlStats) -> String {
    let s = etl.snapshot();
    format!(
        "{} readings published, {} rows stored, {} pickles written, {} dead letters",
        sim.published.load(Ordering::Relaxed),
        s.rows_stored,
        sim.pickles_written.load(Ordering::Relaxed),
        s.dead_letters
    )
}
