//! One struct per section of `default.toml`; the field comments there are the user documentation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use sentio_core::profile::{DEFAULT_SCORE_WEIGHT, PUMP};
use sentio_core::{Channel, ChannelSpec, Profile, ProfileError, Profiles, Unit};
use serde::{Deserialize, Serialize};

use crate::{ConfigError, Secret, invalid, invalid_entry, toml_key};

/// Which message bus carries the topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    Memory,
    Kafka,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    pub kind: BusKind,
    pub memory: MemoryBusConfig,
    pub kafka: KafkaConfig,
}

/// How the Kafka client reaches the brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    /// librdkafka's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub brokers: String,
    pub client_id: String,
    pub partitions: u32,
    pub replication: u32,
    pub security_protocol: SecurityProtocol,
    pub sasl_mechanism: String,
    pub sasl_username: String,
    pub sasl_password: Secret,
    pub sasl_password_file: PathBuf,
    pub ssl_ca_location: PathBuf,
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub max_poll_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    #[serde(with = "humantime_serde")]
    pub delivery_timeout: Duration,
}

impl KafkaConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let brokers_ok = !self.brokers.trim().is_empty()
            && self.brokers.split(',').all(|b| {
                b.trim()
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
            });
        if !brokers_ok {
            return Err(invalid(
                "bus.kafka.brokers",
                format!("{:?}", self.brokers),
                "comma-separated host:port pairs such as \"kafka-1:9092,kafka-2:9092\"",
            ));
        }
        if !(1..=10_000).contains(&self.partitions) {
            return Err(invalid(
                "bus.kafka.partitions",
                self.partitions,
                "an integer from 1 to 10000",
            ));
        }
        if !(1..=16).contains(&self.replication) {
            return Err(invalid(
                "bus.kafka.replication",
                self.replication,
                "an integer from 1 to 16",
            ));
        }
        if self.security_protocol.uses_sasl() {
            if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&self.sasl_mechanism.as_str())
            {
                return Err(invalid(
                    "bus.kafka.sasl_mechanism",
                    format!("{:?}", self.sasl_mechanism),
                    "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                ));
            }
            if self.sasl_username.is_empty() {
                return Err(invalid(
                    "bus.kafka.sasl_username",
                    "\"\"",
                    "a user name, since bus.kafka.security_protocol uses SASL",
                ));
            }
        }
        check_duration(
            "bus.kafka.session_timeout",
            self.session_timeout,
            Duration::from_secs(1),
            Duration::from_secs(300),
        )?;
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.session_timeout {
            return Err(invalid(
                "bus.kafka.heartbeat_interval",
                format!("\"{}\"", humantime::format_duration(self.heartbeat_interval)),
                "a duration above 0 and below bus.kafka.session_timeout",
            ));
        }
        if self.max_poll_interval < self.session_timeout
            || self.max_poll_interval > Duration::from_secs(86_400)
        {
            return Err(invalid(
                "bus.kafka.max_poll_interval",
                format!("\"{}\"", humantime::format_duration(self.max_poll_interval)),
                "a duration from bus.kafka.session_timeout up to 1d",
            ));
        }
        check_duration("bus.kafka.linger", self.linger, Duration::ZERO, Duration::from_secs(5))?;
        check_duration(
            "bus.kafka.delivery_timeout",
            self.delivery_timeout,
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryBusConfig {
    pub partitions: u32,
    pub capacity: usize,
}

impl BusConfig {
    /// Partitions of the topics Sentio creates on the configured bus.
    pub fn partitions(&self) -> u32 {
        match self.kind {
            BusKind::Memory => self.memory.partitions,
            BusKind::Kafka => self.kafka.partitions,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.kind == BusKind::Kafka {
            self.kafka.validate()?;
        }
        let m = &self.memory;
        if !(1..=1024).contains(&m.partitions) {
            return Err(invalid(
                "bus.memory.partitions",
                m.partitions,
                "an integer from 1 to 1024",
            ));
        }
        if !(16..=10_000_000).contains(&m.capacity) {
            return Err(invalid(
                "bus.memory.capacity",
                m.capacity,
                "an integer from 16 to 10000000",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    pub readings: String,
    pub dead_letters: String,
    pub alerts: String,
    /// Bridge status reports (`sentio bridge`, for the pipeline page).
    pub status: String,
}

impl TopicsConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check_topic("topics.readings", &self.readings)?;
        check_topic("topics.dead_letters", &self.dead_letters)?;
        check_topic("topics.alerts", &self.alerts)?;
        if self.readings == self.dead_letters {
            return Err(invalid(
                "topics.dead_letters",
                format!("{:?}", self.dead_letters),
                "a topic name different from topics.readings",
            ));
        }
        if self.alerts == self.readings || self.alerts == self.dead_letters {
            return Err(invalid(
                "topics.alerts",
                format!("{:?}", self.alerts),
                "a topic name different from topics.readings and topics.dead_letters",
            ));
        }
        check_topic("topics.status", &self.status)?;
        if [&self.readings, &self.dead_letters, &self.alerts].contains(&&self.status) {
            return Err(invalid(
                "topics.status",
                format!("{:?}", self.status),
                "a topic name different from topics.readings, topics.dead_letters and \
                 topics.alerts",
            ));
        }
        Ok(())
    }
}

/// Kafka's rule for topic names, so a name valid here is valid on every bus.
fn check_topic(key: &'static str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(key, format!("{name:?}"), "1 to 249 ASCII letters, digits, '.', '_' or '-'"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub kind: StoreKind,
    pub sqlite: SqliteConfig,
    pub postgres: PostgresConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SslMode {
    /// Plain TCP (or a Unix socket). The only mode this build supports.
    Disable,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: Secret,
    pub password_file: PathBuf,
    pub sslmode: SslMode,
    pub pool_size: usize,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
}

impl PostgresConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.host.is_empty() {
            return Err(invalid(
                "store.postgres.host",
                "\"\"",
                "a host name, an IP address or a socket directory",
            ));
        }
        if self.port == 0 {
            return Err(invalid("store.postgres.port", 0, "a TCP port from 1 to 65535"));
        }
        let name_ok = |n: &str| !n.is_empty() && n.len() <= 63;
        if !name_ok(&self.dbname) {
            return Err(invalid(
                "store.postgres.dbname",
                format!("{:?}", self.dbname),
                "1 to 63 characters",
            ));
        }
        if !name_ok(&self.user) {
            return Err(invalid(
                "store.postgres.user",
                format!("{:?}", self.user),
                "1 to 63 characters",
            ));
        }
        if !(1..=256).contains(&self.pool_size) {
            return Err(invalid(
                "store.postgres.pool_size",
                self.pool_size,
                "an integer from 1 to 256",
            ));
        }
        check_duration(
            "store.postgres.connect_timeout",
            self.connect_timeout,
            Duration::from_millis(100),
            Duration::from_secs(300),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteConfig {
    pub path: PathBuf,
}

impl StoreConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.kind == StoreKind::Postgres {
            self.postgres.validate()?;
        }
        if self.sqlite.path.as_os_str().is_empty() {
            return Err(invalid("store.sqlite.path", "\"\"", "a file path such as data/sentio.db"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectsKind {
    Local,
    S3,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectsConfig {
    pub kind: ObjectsKind,
    pub local: LocalObjectsConfig,
    pub s3: S3Config,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub secret_access_key_file: PathBuf,
    pub path_style: bool,
    pub allow_http: bool,
}

impl S3Config {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(self.endpoint.is_empty()
            || self.endpoint.starts_with("http://")
            || self.endpoint.starts_with("https://"))
        {
            return Err(invalid(
                "objects.s3.endpoint",
                format!("{:?}", self.endpoint),
                "an http:// or https:// URL such as http://127.0.0.1:9000, or empty for AWS",
            ));
        }
        if self.endpoint.starts_with("http://") && !self.allow_http {
            return Err(invalid(
                "objects.s3.endpoint",
                format!("{:?}", self.endpoint),
                "an https:// URL, or objects.s3.allow_http = true",
            ));
        }
        if self.region.is_empty() {
            return Err(invalid("objects.s3.region", "\"\"", "a region such as us-east-1"));
        }
        let bucket_ok = (3..=63).contains(&self.bucket.len())
            && self
                .bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
            && self.bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && self.bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !bucket_ok {
            return Err(invalid(
                "objects.s3.bucket",
                format!("{:?}", self.bucket),
                "3 to 63 lowercase letters, digits, '-' or '.', starting and ending with a letter or digit",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalObjectsConfig {
    pub root: PathBuf,
}

impl ObjectsConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.kind == ObjectsKind::S3 {
            self.s3.validate()?;
        }
        if self.local.root.as_os_str().is_empty() {
            return Err(invalid(
                "objects.local.root",
                "\"\"",
                "a directory path such as data/objects",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub slice: Duration,
}

impl ArchiveConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check_duration(
            "archive.slice",
            self.slice,
            Duration::from_secs(1),
            Duration::from_secs(86_400),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorConfig {
    pub devices: u32,
    pub device_prefix: String,
    #[serde(with = "humantime_serde")]
    pub cadence: Duration,
    pub seed: u64,
    pub speedup: f64,
    pub anomalies: AnomalyConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyConfig {
    pub rate_per_hour: f64,
    #[serde(with = "humantime_serde")]
    pub min_duration: Duration,
    #[serde(with = "humantime_serde")]
    pub max_duration: Duration,
    /// The pump's kinds, for devices of the built-in pump profile.
    pub mix: AnomalyMix,
    /// The generic kinds, for devices of every other profile (on any of their channels).
    pub generic_mix: GenericMix,
}

/// Relative weights of the anomaly kinds, named as in `sentio_core::AnomalyKind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyMix {
    pub temperature_spike: f64,
    pub temperature_drop: f64,
    pub vibration_spike: f64,
    pub vibration_noise: f64,
    pub pressure_drop: f64,
    pub pressure_flat: f64,
    pub humidity_high: f64,
    pub humidity_low: f64,
}

impl AnomalyMix {
    /// The weights with their key names, in `sentio_core::AnomalyKind::ALL` order.
    pub fn weights(&self) -> [(&'static str, f64); 8] {
        [
            ("temperature_spike", self.temperature_spike),
            ("temperature_drop", self.temperature_drop),
            ("vibration_spike", self.vibration_spike),
            ("vibration_noise", self.vibration_noise),
            ("pressure_drop", self.pressure_drop),
            ("pressure_flat", self.pressure_flat),
            ("humidity_high", self.humidity_high),
            ("humidity_low", self.humidity_low),
        ]
    }
}

/// Relative weights of the generic anomaly kinds (`sentio_core::AnomalyKind::GENERIC`), which the
/// simulator injects on any channel of a device whose profile is not the pump.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericMix {
    pub spike: f64,
    pub drop: f64,
    pub flat: f64,
    pub noise: f64,
    pub level_shift: f64,
}

impl GenericMix {
    /// The weights with their key names, in `sentio_core::AnomalyKind::GENERIC` order.
    pub fn weights(&self) -> [(&'static str, f64); 5] {
        [
            ("spike", self.spike),
            ("drop", self.drop),
            ("flat", self.flat),
            ("noise", self.noise),
            ("level_shift", self.level_shift),
        ]
    }
}

impl SimulatorConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=100_000).contains(&self.devices) {
            return Err(invalid("simulator.devices", self.devices, "an integer from 1 to 100000"));
        }
        let prefix_ok = !self.device_prefix.is_empty()
            && self.device_prefix.len() <= 48
            && self
                .device_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !prefix_ok {
            return Err(invalid(
                "simulator.device_prefix",
                format!("{:?}", self.device_prefix),
                "1 to 48 ASCII letters, digits, '-', '_' or '.'",
            ));
        }
        check_duration(
            "simulator.cadence",
            self.cadence,
            Duration::from_millis(10),
            Duration::from_secs(3600),
        )?;
        if !(self.speedup.is_finite() && self.speedup > 0.0 && self.speedup <= 100_000.0) {
            return Err(invalid(
                "simulator.speedup",
                self.speedup,
                "a number above 0 and at most 100000",
            ));
        }
        let a = &self.anomalies;
        if !(a.rate_per_hour.is_finite() && (0.0..=3600.0).contains(&a.rate_per_hour)) {
            return Err(invalid(
                "simulator.anomalies.rate_per_hour",
                a.rate_per_hour,
                "a number from 0 to 3600",
            ));
        }
        check_duration(
            "simulator.anomalies.min_duration",
            a.min_duration,
            self.cadence,
            Duration::from_secs(86_400),
        )?;
        if a.max_duration < a.min_duration || a.max_duration > Duration::from_secs(86_400) {
            return Err(invalid(
                "simulator.anomalies.max_duration",
                humantime::format_duration(a.max_duration),
                "a duration from simulator.anomalies.min_duration up to 1d",
            ));
        }
        let mut total = 0.0;
        for (name, weight) in a.mix.weights() {
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(ConfigError::Invalid {
                    key: "simulator.anomalies.mix",
                    value: format!("{name} = {weight}"),
                    expected: "a finite weight of 0 or more for every kind".into(),
                });
            }
            total += weight;
        }
        if a.rate_per_hour > 0.0 && total <= 0.0 {
            return Err(invalid(
                "simulator.anomalies.mix",
                "all weights 0",
                "at least one positive weight while rate_per_hour is above 0",
            ));
        }
        // All 0 is allowed here: the other profiles' devices then run healthy.
        for (name, weight) in a.generic_mix.weights() {
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(ConfigError::Invalid {
                    key: "simulator.anomalies.generic_mix",
                    value: format!("{name} = {weight}"),
                    expected: "a finite weight of 0 or more for every kind (spike, drop, flat, \
                               noise, level_shift)"
                        .into(),
                });
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    pub group: String,
    pub batch_size: usize,
    #[serde(with = "humantime_serde")]
    pub batch_linger: Duration,
    pub max_message_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub max_future: Duration,
    /// How long a group member may hold no partitions before it leaves and joins again (doubling
    /// on each retry, up to 10 minutes); zero (the default) turns that off.
    #[serde(with = "humantime_serde")]
    pub rejoin_after: Duration,
}

impl IngestConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check_topic("ingest.group", &self.group)?;
        if !(1..=1_000_000).contains(&self.batch_size) {
            return Err(invalid(
                "ingest.batch_size",
                self.batch_size,
                "an integer from 1 to 1000000",
            ));
        }
        check_duration(
            "ingest.batch_linger",
            self.batch_linger,
            Duration::from_millis(1),
            Duration::from_secs(60),
        )?;
        if !(64..=1_048_576).contains(&self.max_message_bytes) {
            return Err(invalid(
                "ingest.max_message_bytes",
                self.max_message_bytes,
                "an integer from 64 to 1048576",
            ));
        }
        check_duration(
            "ingest.max_future",
            self.max_future,
            Duration::ZERO,
            Duration::from_secs(365 * 86_400),
        )?;
        // Zero turns the watchdog off. Below a second a member would leave before a healthy group
        // could assign it anything; 10 minutes is where the doubling stops.
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(600));
        let r = self.rejoin_after;
        if !r.is_zero() && (r < min || r > max) {
            return Err(invalid(
                "ingest.rejoin_after",
                format!("\"{}\"", humantime::format_duration(r)),
                "\"0s\" (never) or a duration from \"1s\" to \"10m\"",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    #[serde(with = "humantime_serde")]
    pub backfill: Duration,
    /// The simulated fleet, by profile: how many devices of each (`{ pump = 6, compressor = 2 }`).
    /// Empty: `simulator.devices` pumps named after `simulator.device_prefix`. See
    /// [`crate::fleet`].
    pub profiles: BTreeMap<String, u32>,
}

impl DemoConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check_duration(
            "demo.backfill",
            self.backfill,
            Duration::ZERO,
            Duration::from_secs(366 * 86_400),
        )?;
        // Whether each name is a declared profile, and how its devices are named, is
        // `Config::fleet`'s to check: it needs the profiles.
        let mut total = 0u64;
        for (name, count) in &self.profiles {
            if *count > crate::fleet::MAX_DEVICES {
                return Err(invalid_entry(
                    format!("demo.profiles.{}", toml_key(name)),
                    count,
                    "a device count from 0 to 100000",
                ));
            }
            total += u64::from(*count);
        }
        if total > u64::from(crate::fleet::MAX_DEVICES) {
            return Err(invalid(
                "demo.profiles",
                format!("{total} devices in all"),
                "at most 100000 devices in all",
            ));
        }
        if !self.profiles.is_empty() && total == 0 {
            return Err(invalid(
                "demo.profiles",
                "0 devices in all",
                "at least one device, such as { pump = 6, compressor = 2 }, or {} for \
                 simulator.devices pumps",
            ));
        }
        Ok(())
    }
}

/// `sentio serve` (and the dashboard `sentio demo` starts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Address and port to listen on.
    pub bind: String,
    /// When set, every request needs `Authorization: Bearer <token>` (or the cookie the login
    /// link sets).
    pub token: Secret,
    pub token_file: PathBuf,
    /// How much history a page shows when it opens.
    #[serde(with = "humantime_serde")]
    pub history: Duration,
    /// The longest time range one request may ask for.
    #[serde(with = "humantime_serde")]
    pub max_range: Duration,
}

impl WebConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.socket_addr()?;
        // A blank token would silently turn authentication off.
        if self.token.expose().trim().is_empty() {
            if !self.token_file.as_os_str().is_empty() {
                return Err(invalid(
                    "web.token_file",
                    format!("{:?}", self.token_file.display().to_string()),
                    "a file holding the token (this one is empty); leave web.token_file empty \
                     for no token",
                ));
            }
            if !self.token.expose().is_empty() {
                return Err(invalid(
                    "web.token",
                    "(blank: only spaces)",
                    "a token, or empty for none",
                ));
            }
        }
        // The bound first: a bad max_range is reported as itself, not as the history it bounds.
        check_duration(
            "web.max_range",
            self.max_range,
            Duration::from_secs(60),
            Duration::from_secs(366 * 86_400),
        )?;
        check_duration("web.history", self.history, Duration::from_secs(60), self.max_range)
    }

    /// `bind` as a socket address.
    pub fn socket_addr(&self) -> Result<std::net::SocketAddr, ConfigError> {
        self.bind.parse().map_err(|_| {
            invalid(
                "web.bind",
                format!("{:?}", self.bind),
                "an IP address and port such as 127.0.0.1:8080 (0.0.0.0:8080 listens on every interface)",
            )
        })
    }
}

fn check_duration(
    key: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(invalid(
            key,
            format!("\"{}\"", humantime::format_duration(value)),
            &format!(
                "a duration from \"{}\" to \"{}\"",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
        ));
    }
    Ok(())
}

fn check_range<T: PartialOrd + std::fmt::Display>(
    key: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ConfigError> {
    if !(value >= min && value <= max) {
        return Err(invalid(key, &value, &format!("a number from {min} to {max}")));
    }
    Ok(())
}

/// How the anomaly threshold is calibrated on held-out normal windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThresholdMethod {
    /// A high percentile of the calibration scores.
    Percentile,
    /// Peaks over threshold: a generalized Pareto tail fitted above a high quantile.
    Pot,
}

/// How `sentio train` divides the windows of its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainSplit {
    /// In time: the oldest part trains, then validation (early stopping, promotion), then
    /// calibration (the threshold), by `validation_fraction` and `calibration_fraction`.
    Time,
    /// None: every window trains and calibrates the threshold, every epoch runs and the last one
    /// is kept. For a short normal stretch (SKAB's protocol: each run's first 400 rows), where
    /// held-out parts would leave too little to learn from; the threshold then comes from
    /// training windows, which the model fits better than new ones (see `threshold_factor`).
    None,
}

/// Which channels the model sees detrended (each value minus the mean of the frames before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetrendChannels {
    /// None: the values as measured.
    None,
    /// The slow channels only: those that wander on the training part (a temperature warming
    /// up), by `detrend_slowness`. A level shift in the other channels lasts.
    Slow,
    /// Every channel.
    All,
}

/// When `sentio train` moves the `champion` alias to the version it registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Promote {
    /// Only when it beats the current champion on the same validation data (or there is none).
    IfBetter,
    Always,
    Never,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    #[serde(with = "humantime_serde")]
    pub lookback: Duration,
    pub devices: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub cadence: Duration,
    pub fill_limit: u32,
    pub max_filled_fraction: f64,
    pub window: usize,
    pub stride: usize,
    pub validation_fraction: f64,
    pub calibration_fraction: f64,
    pub max_train_windows: usize,
    pub hidden: usize,
    pub bottleneck: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub patience: usize,
    pub seed: u64,
    pub threads: usize,
    pub threshold: ThresholdMethod,
    pub percentile: f64,
    pub pot_quantile: f64,
    pub pot_risk: f64,
    /// The threshold is this factor times the calibrated level.
    pub threshold_factor: f64,
    pub split: TrainSplit,
    pub detrend: DetrendChannels,
    /// Frames of the trailing mean a detrended channel subtracts.
    pub detrend_window: usize,
    /// A channel is slow when its variance on the training part is above this many times half
    /// the variance of its frame-to-frame differences (noise around a level scores about 1).
    pub detrend_slowness: f64,
    /// A detrended channel's error counts this much in the window score (the others 1): what a
    /// slow channel still carries after detrending is mostly its drift from run to run.
    pub detrend_weight: f64,
    /// The score is the mean of this many consecutive windows' errors (1: each window's own).
    pub smooth: usize,
    pub model_name: String,
    pub promote: Promote,
}

impl TrainConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check_duration(
            "train.lookback",
            self.lookback,
            Duration::from_secs(60),
            Duration::from_secs(3660 * 86_400),
        )?;
        for d in &self.devices {
            if sentio_core::DeviceId::new(d).is_err() {
                return Err(invalid(
                    "train.devices",
                    format!("{d:?}"),
                    "device ids such as \"pump-01\" (letters, digits, '-', '_', '.')",
                ));
            }
        }
        check_duration(
            "train.cadence",
            self.cadence,
            Duration::from_millis(1),
            Duration::from_secs(86_400),
        )?;
        check_range("train.fill_limit", self.fill_limit, 0, 1_000)?;
        check_range("train.max_filled_fraction", self.max_filled_fraction, 0.0, 1.0)?;
        check_range("train.window", self.window, 2, 4_096)?;
        check_range("train.stride", self.stride, 1, self.window)?;
        check_range("train.validation_fraction", self.validation_fraction, 0.01, 0.5)?;
        check_range("train.calibration_fraction", self.calibration_fraction, 0.01, 0.5)?;
        if self.validation_fraction + self.calibration_fraction > 0.8 {
            return Err(invalid(
                "train.calibration_fraction",
                self.calibration_fraction,
                "validation_fraction + calibration_fraction at most 0.8 (training needs the rest)",
            ));
        }
        check_range("train.hidden", self.hidden, 1, 4_096)?;
        check_range("train.bottleneck", self.bottleneck, 0, 4_096)?;
        check_range("train.epochs", self.epochs, 1, 100_000)?;
        check_range("train.batch_size", self.batch_size, 1, 65_536)?;
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return Err(invalid("train.learning_rate", self.learning_rate, "a number in (0, 1]"));
        }
        check_range("train.patience", self.patience, 1, 100_000)?;
        check_range("train.threads", self.threads, 0, 1_024)?;
        if !(self.percentile > 50.0 && self.percentile < 100.0) {
            return Err(invalid("train.percentile", self.percentile, "a percentile in (50, 100)"));
        }
        if !(self.pot_quantile > 0.5 && self.pot_quantile < 1.0) {
            return Err(invalid("train.pot_quantile", self.pot_quantile, "a quantile in (0.5, 1)"));
        }
        if !(self.pot_risk > 0.0 && self.pot_risk < 1.0 - self.pot_quantile) {
            return Err(invalid(
                "train.pot_risk",
                self.pot_risk,
                "a probability in (0, 1 - pot_quantile), such as 0.0001",
            ));
        }
        if !(self.threshold_factor >= 0.1 && self.threshold_factor <= 100.0) {
            return Err(invalid(
                "train.threshold_factor",
                self.threshold_factor,
                "a number from 0.1 to 100 (1 keeps the calibrated level)",
            ));
        }
        check_range("train.detrend_window", self.detrend_window, 1, 100_000)?;
        if !(self.detrend_slowness > 0.0 && self.detrend_slowness.is_finite()) {
            return Err(invalid(
                "train.detrend_slowness",
                self.detrend_slowness,
                "a positive number such as 3",
            ));
        }
        if !(self.detrend_weight > 0.0 && self.detrend_weight <= 1.0) {
            return Err(invalid(
                "train.detrend_weight",
                self.detrend_weight,
                "a number in (0, 1], such as 0.5 (1: a detrended channel counts as the others)",
            ));
        }
        check_range("train.smooth", self.smooth, 1, 10_000)?;
        let name_ok = !self.model_name.is_empty()
            && self.model_name.len() <= 256
            && self.model_name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !name_ok {
            return Err(invalid(
                "train.model_name",
                format!("{:?}", self.model_name),
                "1 to 256 letters, digits, '-', '_' or '.'",
            ));
        }
        Ok(())
    }
}

/// Which experiment tracker and model registry `train` and `detect` use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackingKind {
    Local,
    Mlflow,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingConfig {
    pub kind: TrackingKind,
    pub experiment: String,
    pub local: LocalTrackingConfig,
    pub mlflow: MlflowConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalTrackingConfig {
    pub root: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlflowConfig {
    pub uri: String,
    pub username: String,
    pub password: Secret,
    pub password_file: PathBuf,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl TrackingConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.experiment.is_empty() {
            return Err(invalid(
                "tracking.experiment",
                "\"\"",
                "an experiment name such as sentio",
            ));
        }
        if self.local.root.as_os_str().is_empty() {
            return Err(invalid(
                "tracking.local.root",
                "\"\"",
                "a directory path such as data/tracking",
            ));
        }
        if self.kind == TrackingKind::Mlflow
            && !(self.mlflow.uri.starts_with("http://") || self.mlflow.uri.starts_with("https://"))
        {
            return Err(invalid(
                "tracking.mlflow.uri",
                format!("{:?}", self.mlflow.uri),
                "an http:// or https:// URL such as http://127.0.0.1:5000",
            ));
        }
        check_duration(
            "tracking.mlflow.timeout",
            self.mlflow.timeout,
            Duration::from_secs(1),
            Duration::from_secs(3_600),
        )
    }
}

/// How `sentio detect` scores windows and raises alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectConfig {
    /// Registered model name; empty means train.model_name.
    pub model_name: String,
    /// The alias (or version number) of the model to load.
    pub alias: String,
    /// Frames between the starts of consecutive scored windows.
    pub stride: usize,
    #[serde(with = "humantime_serde")]
    pub open_after: Duration,
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    pub critical_factor: f64,
    /// Scoring threads; 0 uses every core.
    pub threads: usize,
    /// Consumer group of the streaming detector on topics.readings.
    pub group: String,
    /// How long a device's frame waits for a missing reading before it is completed without it.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// How often the streaming detector checks whether the alias moved to another version.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Most windows scored in one batch.
    pub batch_windows: usize,
    /// Per-sensor weight of its error in the score (1 as calibrated; 0 ignores the sensor).
    pub sensor_weights: SensorWeights,
    /// Per-device factor on the threshold (above 1: fewer alerts for that device).
    pub device_threshold_factor: std::collections::BTreeMap<String, f64>,
    /// Save every scored window's score in the store's `anomaly_scores` (the dashboard's chart).
    pub save_scores: bool,
}

/// Weights of each sensor's reconstruction error in the detection score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorWeights {
    pub temperature: f64,
    pub vibration: f64,
    pub pressure: f64,
    pub humidity: f64,
}

impl SensorWeights {
    /// In the order of the model's features (temperature, vibration, pressure, humidity).
    pub fn as_array(&self) -> [f64; 4] {
        [self.temperature, self.vibration, self.pressure, self.humidity]
    }
}

impl Default for SensorWeights {
    fn default() -> Self {
        SensorWeights { temperature: 1.0, vibration: 1.0, pressure: 1.0, humidity: 1.0 }
    }
}

impl DetectConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.alias.is_empty() {
            return Err(invalid(
                "detect.alias",
                "\"\"",
                "an alias such as champion, or a version number",
            ));
        }
        check_range("detect.stride", self.stride, 1, 3_600)?;
        check_duration(
            "detect.open_after",
            self.open_after,
            Duration::ZERO,
            Duration::from_secs(3_600),
        )?;
        check_duration(
            "detect.cooldown",
            self.cooldown,
            Duration::ZERO,
            Duration::from_secs(86_400),
        )?;
        check_range("detect.critical_factor", self.critical_factor, 1.0, 1_000.0)?;
        check_range("detect.threads", self.threads, 0, 1_024)?;
        if self.group.trim().is_empty() {
            return Err(invalid("detect.group", "\"\"", "a consumer group name"));
        }
        check_duration("detect.grace", self.grace, Duration::ZERO, Duration::from_secs(3_600))?;
        check_duration(
            "detect.poll_interval",
            self.poll_interval,
            Duration::from_millis(100),
            Duration::from_secs(86_400),
        )?;
        check_range("detect.batch_windows", self.batch_windows, 1, 1_000_000)?;
        let w = &self.sensor_weights;
        check_range("detect.sensor_weights.temperature", w.temperature, 0.0, 100.0)?;
        check_range("detect.sensor_weights.vibration", w.vibration, 0.0, 100.0)?;
        check_range("detect.sensor_weights.pressure", w.pressure, 0.0, 100.0)?;
        check_range("detect.sensor_weights.humidity", w.humidity, 0.0, 100.0)?;
        if w.as_array().iter().all(|&x| x == 0.0) {
            return Err(invalid(
                "detect.sensor_weights",
                "all 0",
                "at least one sensor with a weight above 0",
            ));
        }
        for (device, factor) in &self.device_threshold_factor {
            if sentio_core::DeviceId::new(device).is_err() || !(*factor > 0.0 && *factor <= 1_000.0)
            {
                return Err(invalid(
                    "detect.device_threshold_factor",
                    format!("{device:?} = {factor}"),
                    "a device id mapped to a number above 0 and at most 1000",
                ));
            }
        }
        Ok(())
    }
}

/// `[profiles.NAME]`: the asset profiles, by name. The built-in `pump` is always there (the
/// defaults declare it, and layering can only add keys), but only its `devices` may be set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProfilesConfig(pub BTreeMap<String, ProfileConfig>);

/// One `[profiles.NAME]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// Device id patterns (`*`, `?` wildcards). Required, even when empty, so that a profile
    /// never claims devices by accident.
    pub devices: Vec<String>,
    /// The channels in model order. `None` (no `channels` key) is how the pump's entry looks;
    /// kept apart from `Some([])` so that `channels = []` on the pump is refused as well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<ChannelConfig>>,
}

/// One element of `channels`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Kept as written until validation, so an error can name this very key and value.
    pub name: String,
    /// Required, though `""` (dimensionless) is allowed: a unit left out by accident would make
    /// every reading of the channel contradict its profile.
    pub unit: String,
    /// `[low, high]`, the range a healthy machine stays in.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "range_pair")]
    pub range: Option<[f64; 2]>,
    /// How much the channel's reconstruction error counts in the anomaly score (default 1; 0:
    /// modelled, never alarmed on). Read at training: the model card keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_weight: Option<f64>,
}

const NAME_FORM: &str = "1 to 64 of lower-case letters a-z, digits, '_', '.' and '-'";
const PATTERN_FORM: &str = "a device id pattern: letters, digits, '-', '_' and '.', with `*` for \
                            any run of characters and `?` for any one, such as \"comp-*\"";

/// `profiles.NAME`, quoted where the name is not a bare TOML key (`profiles."line.2"`).
fn profile_key(name: &str) -> String {
    format!("profiles.{}", toml_key(name))
}

impl ProfilesConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.build().map(drop)
    }

    /// The checked [`Profiles`]: the pump first, then the others in name order. The rules are
    /// `Profiles::new`'s; this adds the pump's, and turns each error into the key to change.
    pub fn build(&self) -> Result<Profiles, ConfigError> {
        let Some(pump) = self.0.get(PUMP) else {
            return Err(invalid_entry(
                profile_key(PUMP),
                "(missing)",
                "the built-in pump's entry, such as [profiles.pump] devices = [\"*\"]",
            ));
        };
        if let Some(channels) = &pump.channels {
            return Err(invalid_entry(
                format!("{}.channels", profile_key(PUMP)),
                channel_list(channels),
                "no channels key: the built-in pump's channels are fixed (temperature, \
                 vibration, pressure, humidity); for a machine with other channels, declare a \
                 profile of its own, such as [profiles.my-pump], with its devices and channels",
            ));
        }
        let mut list = vec![Profile::pump(pump.devices.clone())];
        for (name, profile) in self.0.iter().filter(|(name, _)| name.as_str() != PUMP) {
            list.push(profile.to_profile(name)?);
        }
        Profiles::new(list).map_err(|e| self.locate(e))
    }

    /// The key, value and expected form behind a `Profiles::new` error.
    fn locate(&self, error: ProfileError) -> ConfigError {
        let channels = |profile: &str| {
            self.0.get(profile).and_then(|p| p.channels.as_deref()).unwrap_or_default()
        };
        let devices =
            |profile: &str| self.0.get(profile).map(|p| p.devices.as_slice()).unwrap_or_default();
        // `profiles.NAME.LIST[i]`, or `profiles.NAME.LIST` when the element is not found.
        let at = |profile: &str, list: &str, index: Option<usize>| match index {
            Some(i) => format!("{}.{list}[{i}]", profile_key(profile)),
            None => format!("{}.{list}", profile_key(profile)),
        };
        // The `nth` channel (or pattern) of a profile equal to the one an error names.
        let channel_at = |profile: &str, channel: &Channel, nth: usize| {
            channels(profile)
                .iter()
                .enumerate()
                .filter(|(_, c)| c.name == channel.as_str())
                .nth(nth)
        };
        let device_at = |profile: &str, pattern: &str, nth: usize| {
            devices(profile).iter().enumerate().filter(|(_, d)| *d == pattern).nth(nth)
        };
        match error {
            ProfileError::BadName { name } => invalid_entry(
                profile_key(&name),
                format!("{name:?}"),
                &format!("a profile name of {NAME_FORM}, such as compressor"),
            ),
            ProfileError::NoChannels { profile } => invalid_entry(
                at(&profile, "channels", None),
                self.0
                    .get(&profile)
                    .and_then(|p| p.channels.as_deref())
                    .map_or_else(|| "(no channels key)".to_owned(), channel_list),
                "at least one channel, such as channels = [{ name = \"current\", unit = \"A\" }]",
            ),
            ProfileError::TooManyChannels { profile, count } => invalid_entry(
                at(&profile, "channels", None),
                format!("{count} channels"),
                &format!(
                    "at most {} channels (split the machine into two profiles, or leave some \
                     undeclared: they are stored, not modelled)",
                    sentio_core::profile::MAX_CHANNELS
                ),
            ),
            ProfileError::DuplicateChannel { profile, channel } => {
                let first = channel_at(&profile, &channel, 0).map(|(i, _)| i);
                let second = channel_at(&profile, &channel, 1).map(|(i, _)| i);
                invalid_entry(
                    format!("{}.name", at(&profile, "channels", second)),
                    format!("{:?}", channel.as_str()),
                    &format!(
                        "a channel name not declared before in this profile (it is {})",
                        at(&profile, "channels", first)
                    ),
                )
            }
            ProfileError::BadPattern { profile, pattern } => invalid_entry(
                at(&profile, "devices", device_at(&profile, &pattern, 0).map(|(i, _)| i)),
                format!("{pattern:?}"),
                PATTERN_FORM,
            ),
            ProfileError::SharedPattern { pattern, first, second } => {
                let (nth, expected) = if first == second {
                    (1, "a pattern listed once in this profile".to_owned())
                } else {
                    (
                        0,
                        format!(
                            "a pattern that {} does not list already: a device maps to one \
                             profile (where different patterns match, the one with more literal \
                             characters wins, so \"comp-*\" in one profile and \"*\" in another \
                             is fine)",
                            at(&first, "devices", None)
                        ),
                    )
                };
                invalid_entry(
                    at(&second, "devices", device_at(&second, &pattern, nth).map(|(i, _)| i)),
                    format!("{pattern:?}"),
                    &expected,
                )
            }
            ProfileError::BadRange { profile, channel, lo, hi } => invalid_entry(
                format!(
                    "{}.range",
                    at(&profile, "channels", channel_at(&profile, &channel, 0).map(|(i, _)| i))
                ),
                format!("[{lo}, {hi}]"),
                "[low, high]: two finite numbers, the low one first, such as [0.0, 60.0]",
            ),
        }
    }
}

impl ProfileConfig {
    /// The profile named `name`, its channel names and units checked; the rest is left to
    /// `Profiles::new`.
    fn to_profile(&self, name: &str) -> Result<Profile, ConfigError> {
        let channels = self.channels.as_deref().unwrap_or_default();
        let mut specs = Vec::with_capacity(channels.len());
        for (i, c) in channels.iter().enumerate() {
            let key = format!("{}.channels[{i}]", profile_key(name));
            let channel = Channel::new(&c.name).map_err(|_| {
                invalid_entry(
                    format!("{key}.name"),
                    format!("{:?}", c.name),
                    &format!("a channel name of {NAME_FORM}, such as flow_rate"),
                )
            })?;
            let unit = Unit::new(&c.unit).map_err(|_| {
                invalid_entry(
                    format!("{key}.unit"),
                    format!("{:?}", c.unit),
                    "a unit of at most 32 bytes without control characters, such as \"A\" or \
                     \"m³/h\" (\"\" for a dimensionless value)",
                )
            })?;
            let score_weight = c.score_weight.unwrap_or(DEFAULT_SCORE_WEIGHT);
            if !(0.0..=100.0).contains(&score_weight) {
                return Err(invalid_entry(
                    format!("{key}.score_weight"),
                    score_weight.to_string(),
                    "a number from 0 to 100 (1, the default: the channel counts as the others; \
                     0: the model reads it but it raises no alarm)",
                ));
            }
            specs.push(ChannelSpec {
                name: channel,
                unit,
                range: c.range.map(|[lo, hi]| (lo, hi)),
                score_weight,
            });
        }
        if !specs.is_empty() && specs.iter().all(|c| c.score_weight == 0.0) {
            return Err(invalid_entry(
                format!("{}.channels", profile_key(name)),
                "every score_weight 0".to_owned(),
                "at least one channel with a score_weight above 0: the anomaly score is the \
                 weighted mean of the channels' errors",
            ));
        }
        Ok(Profile { name: name.to_owned(), channels: specs, devices: self.devices.clone() })
    }
}

/// A `range` of exactly two numbers. Figment hands `[f64; 2]` the first two elements of a longer
/// list without a word, so `[0, 10, 20]` would load as `[0, 10]`; read a list and count it.
fn range_pair<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<[f64; 2]>, D::Error> {
    let values = Vec::<f64>::deserialize(d)?;
    match values[..] {
        [lo, hi] => Ok(Some([lo, hi])),
        _ => Err(serde::de::Error::invalid_length(values.len(), &"two numbers, [low, high]")),
    }
}

/// The channel names of a `channels` value, for an error message: `[current, flow]`.
fn channel_list(channels: &[ChannelConfig]) -> String {
    let names: Vec<&str> = channels.iter().map(|c| c.name.as_str()).collect();
    format!("[{}]", names.join(", "))
}
