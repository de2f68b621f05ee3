//! Connection settings of the real servers for the integration tests in `tests/`.
//!
//! `scripts/services.sh up` starts the servers and writes `~/.cache/sentio/services.env`;
//! `scripts/test.sh` exports it. A test whose server is not configured fails and names the script:
//! it never skips.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sentio_config::{Config, KafkaConfig, PostgresConfig, S3Config, Secret};

/// Reads a setting written by `scripts/services.sh up`, from the environment or the env file.
pub fn setting(name: &str) -> String {
    if let Ok(value) = std::env::var(name) {
        return value;
    }
    let file = PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
        .join(".cache/sentio/services.env");
    let from_file = std::fs::read_to_string(&file).ok().and_then(|text| {
        text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix('=').map(str::to_owned))
    });
    match from_file {
        Some(value) => value,
        None => {
            // A missing server is a loud failure, never a skip.
            let message =
                format!("{name} is not set: start the test servers with `scripts/services.sh up`");
            std::panic::panic_any(message)
        }
    }
}

/// The Python of the tests' venv (pandas, jsonschema, confluent-kafka): `SENTIO_PYTHON`, else
/// `~/.cache/sentio/venv/bin/python`. Missing, it fails naming the script that creates it.
pub fn python() -> PathBuf {
    let candidate = match std::env::var_os("SENTIO_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/sentio/venv/bin/python"),
    };
    if !candidate.exists() {
        let message = format!(
            "no Python with pandas at {}: run scripts/python-env.sh (or set SENTIO_PYTHON)",
            candidate.display()
        );
        std::panic::panic_any(message);
    }
    candidate
}

/// The repository's root (for scripts/ and docs/).
pub fn repo_root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A name unique to this test process and call: for databases, topics, buckets prefixes, groups.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{prefix}_{}_{}_{}", std::process::id(), nanos, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The defaults with every port pointed at the test servers (database `dbname`).
pub fn config(dbname: &str) -> Config {
    let mut config = default_config();
    config.bus.kafka = kafka();
    config.store.postgres = postgres(dbname);
    config.objects.s3 = s3("sentio-it");
    config
}

pub fn kafka() -> KafkaConfig {
    let mut k = default_config().bus.kafka;
    k.brokers = setting("SENTIO_TEST_KAFKA_BROKERS");
    k
}

pub fn postgres(dbname: &str) -> PostgresConfig {
    let mut p = default_config().store.postgres;
    p.host = setting("SENTIO_TEST_PG_HOST");
    p.port = setting("SENTIO_TEST_PG_PORT").parse().unwrap_or(5432);
    p.user = setting("SENTIO_TEST_PG_USER");
    p.dbname = dbname.to_owned();
    p.sslmode = sentio_config::SslMode::Disable;
    p
}

pub fn s3(bucket: &str) -> S3Config {
    let mut s = default_config().objects.s3;
    s.endpoint = setting("SENTIO_TEST_S3_ENDPOINT");
    s.region = setting("SENTIO_TEST_S3_REGION");
    s.access_key_id = setting("SENTIO_TEST_S3_ACCESS_KEY");
    s.secret_access_key = Secret::new(setting("SENTIO_TEST_S3_SECRET_KEY"));
    s.bucket = bucket.to_owned();
    s
}

fn default_config() -> Config {
    Config::defaults().unwrap_or_else(|e| std::panic::panic_any(e.to_string()))
}

/// Environment variables that point the `sentio` binary at the test servers, on topics, a database
/// and a bucket prefix of its own (`name`), so concurrent tests never meet.
pub fn stack_env(name: &str) -> Vec<(String, String)> {
    let name = name.replace('_', "-").to_lowercase();
    let vars = [
        ("BUS__KIND", "kafka".to_owned()),
        ("BUS__KAFKA__BROKERS", setting("SENTIO_TEST_KAFKA_BROKERS")),
        ("BUS__KAFKA__PARTITIONS", "4".to_owned()),
        ("TOPICS__READINGS", format!("{name}.sensor-data")),
        ("TOPICS__DEAD_LETTERS", format!("{name}.sensor-data.dlq")),
        ("TOPICS__ALERTS", format!("{name}.anomaly-alerts")),
        ("TOPICS__STATUS", format!("{name}.sentio-status")),
        ("INGEST__GROUP", format!("{name}.ingest")),
        ("DETECT__GROUP", format!("{name}.detect")),
        ("STORE__KIND", "postgres".to_owned()),
        ("STORE__POSTGRES__HOST", setting("SENTIO_TEST_PG_HOST")),
        ("STORE__POSTGRES__PORT", setting("SENTIO_TEST_PG_PORT")),
        ("STORE__POSTGRES__USER", setting("SENTIO_TEST_PG_USER")),
        ("STORE__POSTGRES__DBNAME", name.replace(['-', '.'], "_")),
        ("STORE__POSTGRES__SSLMODE", "disable".to_owned()),
        ("OBJECTS__KIND", "s3".to_owned()),
        ("OBJECTS__S3__ENDPOINT", setting("SENTIO_TEST_S3_ENDPOINT")),
        ("OBJECTS__S3__REGION", setting("SENTIO_TEST_S3_REGION")),
        ("OBJECTS__S3__ACCESS_KEY_ID", setting("SENTIO_TEST_S3_ACCESS_KEY")),
        ("OBJECTS__S3__SECRET_ACCESS_KEY", setting("SENTIO_TEST_S3_SECRET_KEY")),
        ("OBJECTS__S3__BUCKET", name.replace(['_', '.'], "-").chars().take(63).collect()),
    ];
    vars.into_iter().map(|(k, v)| (format!("SENTIO__{k}"), v)).collect()
}

/// `{:#}`-style: the error and each of its causes, for failure messages and assertions.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}
