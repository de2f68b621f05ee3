//! Throughput of the PostgreSQL store's write paths next to a raw binary COPY of the same rows.
//! Ad hoc: it prints numbers and asserts none.
//!
//! ```text
//! cargo run --release -p sentio-store --example postgres_throughput -- [HOST [PORT [USER]]]
//! ```
//!
//! It creates a scratch database per run (`sentio_throughput_<pid>_<n>`) and drops it at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::pin::pin;
use std::time::Instant;

use sentio_config::{Config, PostgresConfig, SslMode};
use sentio_core::{DeviceId, Reading, SensorKind};
use sentio_store::postgres::PostgresStore;
use sentio_store::{IngestBatch, RangeQuery, ReadingStore, SourceOffset};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::{Client, NoTls};

const N: usize = 1_000_000;
const CHUNK: usize = 5_000;
const T0: i64 = 1_700_000_000_000_000_000;

fn readings(devices: &[DeviceId]) -> Vec<Reading> {
    (0..N as u64)
        .map(|i| {
            Reading::pump(
                devices[i as usize % devices.len()].clone(),
                SensorKind::ALL[(i % 4) as usize],
                T0 + i as i64 * 250_000_000,
                20.0 + (i % 100) as f64 * 0.125,
                i,
            )
        })
        .collect()
}

async fn admin(config: &PostgresConfig, dbname: &str) -> Client {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&config.host).port(config.port).user(&config.user).dbname(dbname);
    let (client, connection) = pg.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// Raw binary COPY straight into the table, one COPY (one transaction) per chunk.
async fn raw_copy(client: &Client, rows: &[Reading], chunk: usize) {
    for part in rows.chunks(chunk) {
        let sink = client.copy_in(sentio_store::postgres::COPY_READINGS).await.unwrap();
        let mut writer = pin!(BinaryCopyInWriter::new(sink, &sentio_store::postgres::COPY_TYPES));
        for r in part {
            let seq = r.seq as i64;
            let injected: Option<&str> = None;
            let ts_source = r.ts_source.written();
            writer
                .as_mut()
                .write(&[
                    &r.device.as_str(),
                    &r.sensor.as_str(),
                    &r.ts_ns,
                    &r.value,
                    &seq,
                    &injected,
                    &r.unit.as_str(),
                    &ts_source,
                ])
                .await
                .unwrap();
        }
        writer.finish().await.unwrap();
    }
}

fn rate(secs: f64) -> String {
    format!("{secs:6.2} s  {:>9.0} rows/s", N as f64 / secs)
}

async fn run(config: &PostgresConfig, with_ts_index: bool, rows: &[Reading]) {
    let label = if with_ts_index { "+ index on ts_ns" } else { "schema as is    " };
    let store = PostgresStore::connect(config).await.unwrap();
    store.migrate().await.unwrap();
    let db = admin(config, &config.dbname).await;
    if with_ts_index {
        // What a second index would cost (the schema does without it).
        db.batch_execute("CREATE INDEX sensor_readings_ts ON sensor_readings (ts_ns)")
            .await
            .unwrap();
    }
    let reset = "TRUNCATE sensor_readings, consumer_offsets, channels; CHECKPOINT";

    let started = Instant::now();
    for part in rows.chunks(CHUNK) {
        store.insert_readings(part).await.unwrap();
    }
    println!(
        "{label}  insert_readings, 1M in 5k batches  {}",
        rate(started.elapsed().as_secs_f64())
    );

    let started = Instant::now();
    let stats = store.stats().await.unwrap();
    println!(
        "{label}  stats() on 1M rows                 {:6.1} ms (latest_ts_ns {:?})",
        started.elapsed().as_secs_f64() * 1e3,
        stats.latest_ts_ns
    );
    let query = RangeQuery {
        devices: vec![rows[7].device.clone()],
        sensors: Vec::new(),
        from_ns: T0,
        to_ns: T0 + 3_600 * 1_000_000_000,
    };
    let started = Instant::now();
    let got = store.query_range(&query).await.unwrap();
    println!(
        "{label}  query_range, one device, one hour  {:6.1} ms ({} rows)",
        started.elapsed().as_secs_f64() * 1e3,
        got.len()
    );

    let all = RangeQuery { devices: Vec::new(), ..query };
    let started = Instant::now();
    let got = store.query_range(&all).await.unwrap();
    println!(
        "{label}  query_range, all devices, one hour {:6.1} ms ({} rows)",
        started.elapsed().as_secs_f64() * 1e3,
        got.len()
    );

    db.batch_execute(reset).await.unwrap();
    let started = Instant::now();
    raw_copy(&db, rows, CHUNK).await;
    println!(
        "{label}  raw COPY, 1M in 5k chunks         {}",
        rate(started.elapsed().as_secs_f64())
    );

    db.batch_execute(reset).await.unwrap();
    let started = Instant::now();
    raw_copy(&db, rows, rows.len()).await;
    println!(
        "{label}  raw COPY, 1M in one COPY          {}",
        rate(started.elapsed().as_secs_f64())
    );

    db.batch_execute(reset).await.unwrap();
    let mut times = Vec::new();
    for (round, part) in rows.chunks(CHUNK).take(40).enumerate() {
        let start = (round * CHUNK) as u64;
        let batch = IngestBatch {
            group: "bench".to_owned(),
            topic: "sensor-data".to_owned(),
            readings: part
                .iter()
                .enumerate()
                .map(|(i, r)| (SourceOffset { partition: 0, offset: start + i as u64 }, r.clone()))
                .collect(),
            dead_letters: Vec::new(),
            next_offsets: BTreeMap::from([(0, start + part.len() as u64)]),
        };
        let started = Instant::now();
        let out = store.write_batch(&batch).await.unwrap();
        times.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!(out.readings_inserted, CHUNK as u64);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{label}  write_batch(5000) x40: min {:.2} ms, median {:.2} ms, max {:.2} ms",
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut config = Config::defaults().unwrap().store.postgres;
    config.host = args.first().cloned().unwrap_or_else(|| "127.0.0.1".to_owned());
    config.port = args.get(1).map_or(5432, |p| p.parse().unwrap());
    config.user = args.get(2).cloned().unwrap_or_else(|| "postgres".to_owned());
    config.sslmode = SslMode::Disable;
    let devices: Vec<DeviceId> =
        (0..50).map(|i| DeviceId::new(&format!("pump-{i:02}")).unwrap()).collect();
    let rows = readings(&devices);
    let admin_db = admin(&config, "postgres").await;
    for (n, with_ts_index) in [false, true, false, true].into_iter().enumerate() {
        config.dbname = format!("sentio_throughput_{}_{n}", std::process::id());
        run(&config, with_ts_index, &rows).await;
        admin_db
            .batch_execute(&format!("DROP DATABASE \"{}\" WITH (FORCE)", config.dbname))
            .await
            .unwrap();
    }
}
