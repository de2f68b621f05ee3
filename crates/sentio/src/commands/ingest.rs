//! `sentio ingest`: the ETL role.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use sentio_bus::Bus;
use sentio_config::{BusKind, Config};
use sentio_services::shutdown::Shutdown;
use tokio::io::AsyncBufReadExt;

use crate::wiring;

/// Consumes the readings topic in the consumer group `ingest.group` and stores every valid reading
/// exactly once; undecodable messages go to the dead-letter topic with the reason.
#[derive(clap::Args)]
pub struct Args {
    /// Read messages from stdin, one per line, instead of from a bus (e.g. from
    /// `sentio simulate --stdout`). Exits at end of input, once everything is stored.
    #[arg(long)]
    stdin: bool,
}

pub async fn run(config: Config, args: Args) -> anyhow::Result<()> {
    if config.bus.kind == BusKind::Memory && !args.stdin {
        bail!(
            "bus.kind = \"memory\" lives inside one process, so `sentio ingest` alone would never \
             receive a reading. Run `sentio demo`, or pipe: `sentio simulate --stdout | sentio ingest --stdin`"
        );
    }
    // Signals first: a Ctrl-C while connecting still means a clean stop, not a kill.
    let shutdown = Shutdown::new();
    shutdown.cancel_on_signals();
    let store = wiring::open_store(&config).await?;
    let bus = wiring::open_bus(&config, Some(store.as_ref())).await?;

    let etl = wiring::etl(&config, &bus, &store);
    let stats = etl.stats();
    let etl_stop = tokio_util::sync::CancellationToken::new();
    let etl_task = shutdown.spawn("ingest", etl.run(etl_stop.clone()));

    let stop = shutdown.token();
    if args.stdin {
        // End of input ends the run: stop the ETL, which drains what the bus still holds.
        tokio::select! {
            fed = feed_stdin(bus, &config.topics.readings) => { fed?; }
            _ = stop.cancelled() => {}
        }
    } else {
        stop.cancelled().await;
    }
    etl_stop.cancel();
    etl_task.await.context("the ingest task panicked")??;
    let s = stats.snapshot();
    let totals = store.stats().await?;
    say!(
        "ingested {} messages: {} rows stored, {} dead letters, {} replays skipped; store holds {} rows",
        s.consumed,
        s.rows_stored,
        s.dead_letters,
        s.replayed_skipped,
        totals.readings
    );
    shutdown.cancel();
    shutdown.wait(Duration::from_secs(5)).await;
    Ok(())
}

/// Publishes stdin's lines to the embedded bus, keyed by nothing (one partition keeps their order).
async fn feed_stdin(bus: Arc<dyn Bus>, topic: &str) -> anyhow::Result<()> {
    let mut input = tokio::io::BufReader::with_capacity(1 << 16, tokio::io::stdin());
    let mut chunk = Vec::with_capacity(1024);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = input.read_until(b'\n', &mut line).await.context("reading stdin")?;
        if n > 0 {
            let payload = line.strip_suffix(b"\n").unwrap_or(&line);
            let payload = payload.strip_suffix(b"\r").unwrap_or(payload);
            chunk.push((Bytes::new(), Bytes::copy_from_slice(payload)));
        }
        if chunk.len() >= 1024 || (n == 0 && !chunk.is_empty()) {
            bus.publish_batch(topic, std::mem::take(&mut chunk)).await?;
        }
        if n == 0 {
            return Ok(());
        }
    }
}
