//! `sentio bench http`: the HTTP ingest endpoint's readings/s at 1,000 readings per request, into
//! the configured bus, against the bus taking the same readings directly in batches of the same
//! size (its own limit for that batch size).
//!
//! Each round, for each side in turn: [`CLIENTS`] clients send the readings, each a request of
//! 1,000 `{"value": .., "ts": ..}` lines at a time (`?format=value`, one device per request) over
//! a kept-alive HTTP/1.1 connection, to `POST /api/v1/readings` served on loopback; each request
//! is answered once the bus has acknowledged its readings. The peer: as many tasks publishing
//! the same readings, already encoded, with `publish_batch`, 1,000 at a time. The clock runs
//! from the first request to the last answer; the median of the rounds is reported.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use sentio_bridge::{HttpIngest, Topics};
use sentio_config::Config;
use sentio_core::DecodeLimits;

use sentio_app::wiring;

pub struct Options {
    pub readings: u64,
    pub rounds: usize,
}

/// Readings per request (and per batch of the peer).
pub const PER_REQUEST: usize = 1000;
/// Clients (and publishing tasks) at once.
pub const CLIENTS: usize = 4;
/// Devices the readings are spread over (one per request).
const DEVICES: usize = 8;
const TOKEN: &str = "bench-http-token";

pub async fn run(config: Config, options: Options) -> anyhow::Result<()> {
    let run_id = format!("{}-{}", std::process::id(), sentio_core::time::now_ns() % 1_000_000);
    let topics = Topics {
        readings: format!("{}.bench-http-{run_id}", config.topics.readings),
        dead_letters: format!("{}.bench-http-{run_id}", config.topics.dead_letters),
    };
    let mut bus_config = config.clone();
    bus_config.topics.readings = topics.readings.clone();
    bus_config.topics.dead_letters = topics.dead_letters.clone();
    let bus = wiring::open_bus(&bus_config, None).await?;

    let mut http = config.bridge.http.clone();
    http.token = sentio_config::Secret::new(TOKEN);
    http.max_readings_per_second = u32::MAX;
    http.max_concurrent_requests = CLIENTS as u16;
    let ingest = HttpIngest::new(http, bus.clone(), topics.clone(), DecodeLimits::default())?
        .with_profiles(config.profiles()?);
    let stats = ingest.stats();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}{}", listener.local_addr()?, sentio_bridge::http::PATH);
    let server = tokio::spawn({
        let router = Arc::new(ingest).router();
        async move { axum::serve(listener, router).await }
    });

    let requests = options.readings.div_ceil(PER_REQUEST as u64) as usize;
    let readings = (requests * PER_REQUEST) as u64;
    let (bodies, batches) = workload(requests)?;
    say!(
        "sentio bench http: {readings} readings in requests of {PER_REQUEST} (JSON lines, \
         format=value) from {CLIENTS} clients to POST {url}, against the {:?} bus taking the same \
         readings in batches of {PER_REQUEST} from {CLIENTS} tasks, {} rounds, {} cores",
        config.bus.kind,
        options.rounds,
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    let client = reqwest::Client::builder().pool_max_idle_per_host(CLIENTS).build()?;
    let (mut http_rates, mut bus_rates, mut p50s, mut p99s) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..options.rounds {
        let before = stats.readings.load(std::sync::atomic::Ordering::Relaxed);
        let (took, mut latencies) = send(&client, &url, &bodies).await?;
        let published = stats.readings.load(std::sync::atomic::Ordering::Relaxed) - before;
        if published != readings {
            bail!("the endpoint published {published} readings of {readings}");
        }
        let bus_took = direct(&bus, &topics.readings, &batches).await?;
        latencies.sort_by(f64::total_cmp);
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        http_rates.push(readings as f64 / took.as_secs_f64());
        bus_rates.push(readings as f64 / bus_took.as_secs_f64());
        p50s.push(at(0.5));
        p99s.push(at(0.99));
        say!(
            "  round {}: HTTP {:>9.0} readings/s ({:.0} requests/s, p50 {:.1} ms, p99 {:.1} ms), \
             the bus directly {:>9.0} readings/s: {:.2}x",
            round + 1,
            http_rates[round],
            http_rates[round] / PER_REQUEST as f64,
            p50s[round],
            p99s[round],
            bus_rates[round],
            http_rates[round] / bus_rates[round]
        );
    }
    server.abort();
    let (h, b) = (median(&mut http_rates), median(&mut bus_rates));
    say!(
        "median: HTTP ingest {h:.0} readings/s (p50 {:.1} ms, p99 {:.1} ms per request of \
         {PER_REQUEST}), the {:?} bus directly {b:.0}: HTTP / bus {:.2}",
        median(&mut p50s),
        median(&mut p99s),
        config.bus.kind,
        h / b
    );
    Ok(())
}

/// The request bodies, and the same readings encoded for the bus.
type Workload = (Vec<(String, Bytes)>, Vec<Vec<(Bytes, Bytes)>>);

fn workload(requests: usize) -> anyhow::Result<Workload> {
    let t0 = 1_796_256_000_000i64; // 2026-12-03T00:00:00Z, in ms
    let mut bodies = Vec::with_capacity(requests);
    let mut batches = Vec::with_capacity(requests);
    for r in 0..requests {
        let device = format!("bench-{:02}", r % DEVICES);
        let mut body = String::with_capacity(PER_REQUEST * 40);
        let mut batch = Vec::with_capacity(PER_REQUEST);
        for i in 0..PER_REQUEST {
            let ts = t0 + ((r / DEVICES) * PER_REQUEST + i) as i64;
            let value = 1.0 + (i % 400) as f64 / 100.0;
            body.push_str(&format!("{{\"value\": {value}, \"ts\": {ts}}}\n"));
            let reading = sentio_core::Reading {
                device: sentio_core::DeviceId::new(&device)?,
                sensor: sentio_core::Channel::new("pressure")?,
                unit: sentio_core::Unit::new("bar")?,
                ts_ns: ts * 1_000_000,
                value,
                seq: u64::try_from(ts).unwrap_or(0),
                injected: None,
                ts_source: sentio_core::TsSource::Event,
            };
            let key = Bytes::copy_from_slice(device.as_bytes());
            batch.push((key, Bytes::from(sentio_core::encode_reading(&reading))));
        }
        let query = format!("?format=value&device={device}&sensor=pressure");
        bodies.push((query, Bytes::from(body)));
        batches.push(batch);
    }
    Ok((bodies, batches))
}

/// Sends `bodies` from [`CLIENTS`] clients; the time taken and each request's latency in ms.
async fn send(
    client: &reqwest::Client,
    url: &str,
    bodies: &[(String, Bytes)],
) -> anyhow::Result<(Duration, Vec<f64>)> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let bodies = Arc::new(bodies.to_vec());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, url, next, bodies) =
            (client.clone(), url.to_owned(), next.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((query, body)) = bodies.get(i) else { return Ok(latencies) };
                let t = Instant::now();
                let response = client
                    .post(format!("{url}{query}"))
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/x-ndjson")
                    .body(body.clone())
                    .send()
                    .await
                    .context("sending a request")?;
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                if !status.is_success() {
                    bail!("the endpoint answered {status}: {text}");
                }
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let latencies: anyhow::Result<Vec<f64>> = task.await.context("a client task")?;
        all.extend(latencies?);
    }
    Ok((started.elapsed(), all))
}

/// Publishes `batches` from [`CLIENTS`] tasks straight onto the bus; the time taken.
async fn direct(
    bus: &Arc<dyn sentio_bus::Bus>,
    topic: &str,
    batches: &[Vec<(Bytes, Bytes)>],
) -> anyhow::Result<Duration> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let batches = Arc::new(batches.to_vec());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (bus, topic, next, batches) =
            (bus.clone(), topic.to_owned(), next.clone(), batches.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(batch) = batches.get(i) else { return anyhow::Ok(()) };
                bus.publish_batch(&topic, batch.clone()).await?;
            }
        }));
    }
    for task in tasks {
        task.await.context("a publishing task")??;
    }
    Ok(started.elapsed())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
