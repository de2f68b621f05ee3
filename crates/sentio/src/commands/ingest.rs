//! `sentio ingest`: the ETL role.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use sentio_bus::Bus;
use sentio_config::{BusKind, Config};
use sentio_core::message::encode_truncated;
use sentio_services::shutdown::Shutdown;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

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
    wiring::own_embedded_store(&config)?;
    let store = wiring::open_store(&config).await?;
    let bus = wiring::open_bus(&config, Some(store.as_ref())).await?;

    let etl = wiring::etl(&config, &bus, &store)?;
    let stats = etl.stats();
    let etl_stop = tokio_util::sync::CancellationToken::new();
    let etl_task = shutdown.spawn("ingest", etl.run(etl_stop.clone()));
    // The bridges' status reports and dead letters (not from stdin: no bridge runs there).
    let keepers = (!args.stdin).then(|| {
        let keepers = wiring::run_keepers(&config, &bus, &store, etl_stop.clone());
        shutdown.spawn("bridge status and dead letters", keepers)
    });

    let stop = shutdown.token();
    if args.stdin {
        // End of input ends the run: stop the ETL, which drains what the bus still holds.
        tokio::select! {
            fed = feed_stdin(bus, &config.topics.readings, config.ingest.max_message_bytes) => {
                fed?;
            }
            _ = stop.cancelled() => {}
        }
    } else {
        stop.cancelled().await;
    }
    etl_stop.cancel();
    etl_task.await.context("the ingest task panicked")??;
    if let Some(keepers) = keepers {
        keepers.await.context("the bridge status task panicked")??;
    }
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
    if s.copies_skipped > 0 {
        say!(
            "{} readings were exact copies (device, channel, timestamp and value) of stored ones, \
             the same message sent twice: stored once (docs/messages.md)",
            s.copies_skipped
        );
    }
    if s.repeated > 0 {
        say!(
            "{} readings repeat the timestamp and seq of readings already stored for their device \
             and sensor (the same data sent again?): exact copies are stored once, readings with \
             another value too (docs/messages.md)",
            s.repeated
        );
    }
    if s.unmodelled > 0 {
        say!(
            "{} readings are of channels no profile declares for their device: stored, not \
             modelled (`sentio profile list` shows them, `sentio profile suggest` drafts a profile)",
            s.unmodelled
        );
    }
    shutdown.cancel();
    shutdown.wait(Duration::from_secs(5)).await;
    Ok(())
}

/// The read buffer on stdin: with the one line kept (at most `ingest.max_message_bytes`), all the
/// feeder holds of its input.
const READ_BUFFER: usize = 64 << 10;
/// Lines are published in chunks of at most this many...
const CHUNK_LINES: usize = 1024;
/// ...and about this many bytes.
const CHUNK_BYTES: usize = 4 << 20;

/// Publishes stdin's lines to the bus, keyed by nothing (one partition keeps their order).
async fn feed_stdin(bus: Arc<dyn Bus>, topic: &str, max_bytes: usize) -> anyhow::Result<()> {
    let input = tokio::io::BufReader::with_capacity(READ_BUFFER, tokio::io::stdin());
    feed_lines(input, bus.as_ref(), topic, max_bytes).await
}

/// Publishes each line of `input` as one message. A line over `max_bytes`, which the ETL would
/// refuse, is never held whole: its first `max_bytes` and its length go out as one
/// [`encode_truncated`] message, which the ETL makes the dead letter the whole line would have
/// been (`oversize`, naming the line's size and the limit).
async fn feed_lines<R: AsyncBufRead + Unpin>(
    input: R,
    bus: &dyn Bus,
    topic: &str,
    max_bytes: usize,
) -> anyhow::Result<()> {
    let mut lines = Lines::new(input, max_bytes);
    let mut chunk = Vec::with_capacity(CHUNK_LINES);
    let mut chunk_bytes = 0;
    loop {
        let line = lines.next().await.context("reading stdin")?;
        let end = line.is_none();
        if let Some(line) = line {
            let payload = match line {
                Line::Whole(bytes) => bytes.to_vec(),
                Line::Cut { prefix, len } => encode_truncated(prefix, len),
            };
            chunk_bytes += payload.len();
            chunk.push((Bytes::new(), Bytes::from(payload)));
        }
        if chunk.len() >= CHUNK_LINES || chunk_bytes >= CHUNK_BYTES || (end && !chunk.is_empty()) {
            bus.publish_batch(topic, std::mem::take(&mut chunk)).await?;
            chunk_bytes = 0;
        }
        if end {
            return Ok(());
        }
    }
}

/// One line of input, without its `\n` (or `\r\n`).
#[derive(Debug, PartialEq, Eq)]
enum Line<'a> {
    /// At most the limit: all of it.
    Whole(&'a [u8]),
    /// Over the limit: its first `limit` bytes, and its length.
    Cut { prefix: &'a [u8], len: u64 },
}

/// Reads lines holding at most `limit` bytes of any one of them: the rest of a longer line is
/// skipped as it is read, and only counted. With the reader's own buffer, that bounds what is
/// held of a line of any size to `limit` plus the buffer's capacity.
struct Lines<R> {
    input: R,
    limit: usize,
    /// What is kept of the current line; its capacity, `limit`, never grows.
    line: Vec<u8>,
}

impl<R: AsyncBufRead + Unpin> Lines<R> {
    fn new(input: R, limit: usize) -> Self {
        Self { input, limit, line: Vec::with_capacity(limit) }
    }

    /// The next line; `None` at the end of input. The last line needs no `\n`.
    async fn next(&mut self) -> std::io::Result<Option<Line<'_>>> {
        self.line.clear();
        let mut len: u64 = 0;
        let mut last = None;
        let mut read_any = false;
        loop {
            let buf = self.input.fill_buf().await?;
            if buf.is_empty() {
                if !read_any {
                    return Ok(None);
                }
                break;
            }
            read_any = true;
            let newline = buf.iter().position(|&b| b == b'\n');
            let part = &buf[..newline.unwrap_or(buf.len())];
            let room = self.limit - self.line.len();
            self.line.extend_from_slice(&part[..part.len().min(room)]);
            len += part.len() as u64;
            if let Some(&b) = part.last() {
                last = Some(b);
            }
            let used = part.len() + usize::from(newline.is_some());
            self.input.consume(used);
            if newline.is_some() {
                break;
            }
        }
        if last == Some(b'\r') {
            len -= 1;
            // Kept only if it fitted, in which case the line is whole.
            self.line.truncate(usize::try_from(len).unwrap_or(usize::MAX));
        }
        Ok(Some(if len > self.limit as u64 {
            Line::Cut { prefix: &self.line, len }
        } else {
            Line::Whole(&self.line)
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use sentio_bus::memory::MemoryBus;
    use sentio_core::time::{NANOS_PER_SEC, now_ns};
    use sentio_core::{DeviceId, Reading, SensorKind, encode_reading};
    use sentio_services::etl::Etl;
    use sentio_store::ReadingStore;
    use sentio_store::sqlite::SqliteStore;
    use tokio::io::AsyncReadExt;
    use tokio_util::sync::CancellationToken;

    use super::*;

    const BIG: u64 = 50 << 20;

    async fn all_lines(input: &[u8], limit: usize) -> Vec<(Vec<u8>, Option<u64>)> {
        let mut lines = Lines::new(tokio::io::BufReader::with_capacity(3, input), limit);
        let mut out = Vec::new();
        while let Some(line) = lines.next().await.unwrap() {
            out.push(match line {
                Line::Whole(b) => (b.to_vec(), None),
                Line::Cut { prefix, len } => (prefix.to_vec(), Some(len)),
            });
        }
        out
    }

    /// A 50 MB line is read without holding it: the reader keeps `limit` bytes of it (its buffer
    /// never grows) next to a 64 KiB read buffer, and counts the rest.
    #[tokio::test]
    async fn a_line_is_never_held_beyond_the_limit() {
        let limit = 4096;
        let input = tokio::io::repeat(b'x').take(BIG).chain(&b"\r\nnext\r\nlast"[..]);
        let input = tokio::io::BufReader::with_capacity(READ_BUFFER, input);
        let mut lines = Lines::new(input, limit);
        let held = lines.line.capacity();
        assert!(held >= limit && held < limit + 64, "{held}");
        match lines.next().await.unwrap().unwrap() {
            Line::Cut { prefix, len } => {
                assert_eq!((prefix.len(), len), (limit, BIG));
                assert!(prefix.iter().all(|&b| b == b'x'));
            }
            whole => panic!("{whole:?}"),
        }
        assert_eq!(lines.line.capacity(), held, "the kept part of a line never grew");
        assert_eq!(lines.next().await.unwrap(), Some(Line::Whole(b"next")));
        assert_eq!(lines.next().await.unwrap(), Some(Line::Whole(b"last")));
        assert_eq!(lines.next().await.unwrap(), None);
        assert_eq!(lines.line.capacity(), held);
    }

    /// Around the limit, `\r\n` and empty lines, with reads that end anywhere in a line.
    #[tokio::test]
    async fn lines_split_and_cut_at_the_limit() {
        let got = all_lines(b"abcd\nabcde\nabcd\r\n\n\r\nab\rc\nabcdef\r\nxy", 4).await;
        let want: Vec<(Vec<u8>, Option<u64>)> = vec![
            (b"abcd".to_vec(), None),
            (b"abcd".to_vec(), Some(5)),
            (b"abcd".to_vec(), None),
            (b"".to_vec(), None),
            (b"".to_vec(), None),
            (b"ab\rc".to_vec(), None),
            (b"abcd".to_vec(), Some(6)),
            (b"xy".to_vec(), None),
        ];
        assert_eq!(got, want);
        assert!(all_lines(b"", 4).await.is_empty());
        assert_eq!(all_lines(b"\n", 4).await, vec![(Vec::new(), None)]);
    }

    /// A 50 MB line on stdin becomes one `oversize` dead letter that keeps the first
    /// `ingest.max_message_bytes` of it and names its size; the line after it is stored.
    #[tokio::test]
    async fn a_huge_stdin_line_is_a_bounded_dead_letter_naming_its_size() {
        let config = Config::defaults().unwrap();
        let (readings, dlq) = (&config.topics.readings, &config.topics.dead_letters);
        let mem = MemoryBus::new(config.bus.memory.capacity);
        mem.create_topic(readings, 1).await.unwrap();
        mem.create_topic(dlq, 1).await.unwrap();
        let bus: Arc<dyn Bus> = Arc::new(mem);
        let sqlite = SqliteStore::open_in_memory().unwrap();
        sqlite.migrate().await.unwrap();
        let store: Arc<dyn ReadingStore> = Arc::new(sqlite);

        let valid = encode_reading(&Reading::pump(
            DeviceId::new("pump-01").unwrap(),
            SensorKind::Pressure,
            now_ns() - NANOS_PER_SEC,
            2.5,
            0,
        ));
        let mut tail = b"\n".to_vec();
        tail.extend_from_slice(&valid);
        tail.push(b'\n');
        let input = tokio::io::repeat(b'x').take(BIG).chain(&tail[..]);
        let input = tokio::io::BufReader::with_capacity(1 << 16, input);
        let max = config.ingest.max_message_bytes;
        feed_lines(input, bus.as_ref(), readings, max).await.unwrap();

        // What went on the bus is bounded already: the line was never held whole.
        let mut look = bus.subscribe(readings, "look").await.unwrap();
        let published = sentio_bus::contract::poll_n(look.as_mut(), 2).await;
        let sizes: Vec<usize> = published.iter().map(|r| r.payload.len()).collect();
        assert!(sizes[0] <= max + 64 && sizes[1] == valid.len(), "{sizes:?}");
        drop(look);

        let etl = Etl::new(bus.clone(), store.clone(), readings, dlq, &config.ingest);
        let stats = etl.stats();
        let stop = CancellationToken::new();
        let task = tokio::spawn(etl.run(stop.clone()));
        tokio::time::timeout(Duration::from_secs(30), async {
            while stats.snapshot().rows_stored + stats.snapshot().dead_letters < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the ETL consumed both lines");
        stop.cancel();
        task.await.unwrap().unwrap();

        let dead = store.dead_letters(readings).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].code, "oversize");
        assert_eq!(dead[0].payload.len(), max, "{}", dead[0].reason);
        assert!(dead[0].payload.iter().all(|&b| b == b'x'));
        assert_eq!(
            dead[0].reason,
            format!(
                "payload is {BIG} bytes; the limit is {max}; the dead letter keeps its first \
                 {max} bytes"
            )
        );
        assert_eq!(store.stats().await.unwrap().readings, 1);
    }
}
