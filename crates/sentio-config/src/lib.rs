//! Sentio's configuration: one typed tree, with every key and its default in `default.toml`.
//!
//! Layers, lowest first: the embedded `default.toml`, an optional user file (`--config FILE`), then
//! `SENTIO__SECTION__KEY` environment variables. Only this crate reads the environment. After
//! layering, [`Config::validate`] checks the values that types alone cannot (ranges, names), and
//! every error names the key, the bad value and the expected form.
//!
//! - [`sections`]: the typed sections, one per role or port, and the asset profiles.
//! - [`fleet`]: the simulated devices, by profile (`demo.profiles`), and their names.
//! - [`secret`]: [`Secret`], a string that never prints.

pub mod bridge;
pub mod fleet;
pub mod secret;
pub mod sections;

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

pub use bridge::{
    BridgeConfig, HttpBridgeConfig, MqttBridgeConfig, MqttVersion, PayloadFormat, Subscription,
    TopicMatch, TopicTemplate,
};
pub use fleet::FleetDevice;
pub use secret::Secret;
pub use sections::*;

/// The defaults, with a comment for every key.
pub const DEFAULT_TOML: &str = include_str!("../default.toml");

/// The prefix of environment overrides; `__` separates sections and keys.
pub const ENV_PREFIX: &str = "SENTIO__";

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub bus: BusConfig,
    pub topics: TopicsConfig,
    pub store: StoreConfig,
    pub objects: ObjectsConfig,
    pub archive: ArchiveConfig,
    pub simulator: SimulatorConfig,
    pub ingest: IngestConfig,
    pub demo: DemoConfig,
    pub train: TrainConfig,
    pub tracking: TrackingConfig,
    pub detect: DetectConfig,
    pub web: WebConfig,
    pub bridge: BridgeConfig,
    pub profiles: ProfilesConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path} does not exist")]
    MissingFile { path: String },
    #[error("{0}")]
    Parse(String),
    #[error("invalid value {value} for `{key}`: expected {expected}")]
    Invalid { key: &'static str, value: String, expected: String },
    /// As `Invalid`, for a key whose path holds names or positions from the file, such as
    /// `profiles.compressor.channels[1].name`.
    #[error("invalid value {value} for `{key}`: expected {expected}")]
    InvalidEntry { key: String, value: String, expected: String },
    #[error("cannot print the configuration")]
    Print(#[source] toml::ser::Error),
    #[error("cannot read `{key}` from {path}")]
    SecretFile {
        key: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Config {
    /// Defaults, then `file` when given, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::from_figment(Self::figment(file)?)
    }

    /// The defaults alone, ignoring the environment (tests and tools).
    pub fn defaults() -> Result<Config, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(DEFAULT_TOML)))
    }

    /// The layered sources, before extraction (tests use it with `figment::Jail`).
    pub fn figment(file: Option<&Path>) -> Result<Figment, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::MissingFile { path: path.display().to_string() });
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        blank_secret_variables()?;
        Ok(figment.merge(Env::prefixed(ENV_PREFIX).split("__")))
    }

    pub fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let mut config: Config = figment.extract().map_err(|e| ConfigError::Parse(describe(e)))?;
        config.read_secret_files()?;
        config.validate()?;
        Ok(config)
    }

    /// A secret whose `*_file` key names a file takes its value from that file (trailing newline
    /// removed), as Docker and Kubernetes secrets are mounted.
    fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        let k = &mut self.bus.kafka;
        read_secret("bus.kafka.sasl_password_file", &k.sasl_password_file, &mut k.sasl_password)?;
        let p = &mut self.store.postgres;
        read_secret("store.postgres.password_file", &p.password_file, &mut p.password)?;
        let s = &mut self.objects.s3;
        read_secret(
            "objects.s3.secret_access_key_file",
            &s.secret_access_key_file,
            &mut s.secret_access_key,
        )?;
        let m = &mut self.tracking.mlflow;
        read_secret("tracking.mlflow.password_file", &m.password_file, &mut m.password)?;
        let b = &mut self.bridge.mqtt;
        read_secret("bridge.mqtt.password_file", &b.password_file, &mut b.password)?;
        let h = &mut self.bridge.http;
        read_secret("bridge.http.token_file", &h.token_file, &mut h.token)?;
        let w = &mut self.web;
        read_secret("web.token_file", &w.token_file, &mut w.token)
    }

    /// Checks what the types cannot: ranges, names, consistency between keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.bus.validate()?;
        self.topics.validate()?;
        self.store.validate()?;
        self.objects.validate()?;
        self.archive.validate()?;
        self.simulator.validate()?;
        self.ingest.validate()?;
        self.demo.validate()?;
        self.train.validate()?;
        self.tracking.validate()?;
        self.detect.validate()?;
        self.web.validate()?;
        self.bridge.validate()?;
        self.profiles.validate()?;
        self.fleet().map(drop)
    }

    /// The asset profiles in effect: the pump first, then the others in name order. Built anew on
    /// each call (a few small allocations); it fails only if `profiles` was changed after
    /// [`Config::validate`] into something invalid.
    pub fn profiles(&self) -> Result<sentio_core::Profiles, ConfigError> {
        self.profiles.build()
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(ConfigError::Print)
    }
}

/// Figment's errors, one per line, each naming the key as written in the file (see [`toml_path`]),
/// the source (file or environment variable) and what was expected.
fn describe(errors: figment::Error) -> String {
    let lines: Vec<String> = errors
        .into_iter()
        .map(|e| {
            let path: Vec<String> = e.path.iter().map(|k| k.to_lowercase()).collect();
            let key = toml_path(&path);
            let source = match &e.metadata {
                Some(m) if m.name.contains("environment") => {
                    // The variable names the keys down to the list; a position inside its value
                    // is part of the value, not of the name.
                    let names: Vec<String> = path
                        .iter()
                        .enumerate()
                        .take_while(|(i, _)| !is_position(&path, *i))
                        .map(|(_, k)| k.to_uppercase())
                        .collect();
                    format!(" (from environment variable {ENV_PREFIX}{})", names.join("__"))
                }
                Some(m) => m.source.as_ref().map(|s| format!(" (from {s})")).unwrap_or_default(),
                None => String::new(),
            };
            if key.is_empty() {
                format!("{}{source}", e.kind)
            } else {
                format!("invalid value for `{key}`{source}: {}", e.kind)
            }
        })
        .collect();
    lines.join("\n")
}

/// The keys whose values are lists: figment names a list element by its position, as a key.
const LIST_KEYS: [&str; 2] = ["channels", "devices"];

/// Whether `path[i]` is a position in a list rather than a key (an all-digit map key, such as a
/// device id `01`, stays a key because it does not follow a list key).
fn is_position(path: &[String], i: usize) -> bool {
    i > 0
        && LIST_KEYS.contains(&path[i - 1].as_str())
        && !path[i].is_empty()
        && path[i].bytes().all(|b| b.is_ascii_digit())
}

/// A key path as the user writes it in TOML: `profiles.compressor.channels[1].unit`, with a name
/// that is not a bare key quoted (`profiles."line.2"`), so the path points at one place.
pub(crate) fn toml_path(path: &[String]) -> String {
    let mut out = String::new();
    for (i, key) in path.iter().enumerate() {
        if is_position(path, i) {
            out.push_str(&format!("[{key}]"));
        } else {
            if i > 0 {
                out.push('.');
            }
            out.push_str(&toml_key(key));
        }
    }
    out
}

/// One key as TOML writes it: bare when it may be, quoted otherwise.
pub(crate) fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if bare { key.to_owned() } else { format!("{key:?}") }
}

fn read_secret(key: &'static str, path: &Path, secret: &mut Secret) -> Result<(), ConfigError> {
    if path.as_os_str().is_empty() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
        key,
        path: path.display().to_string(),
        source,
    })?;
    *secret = Secret::new(text.trim_end_matches(['\n', '\r']));
    Ok(())
}

/// A secret set in the environment to only spaces is a mistake, not "none": the environment
/// provider trims values, so `SENTIO__WEB__TOKEN=" "` would arrive empty and turn authentication
/// off without a word. Such a variable is refused, naming it. (Empty means none, as in the file.)
fn blank_secret_variables() -> Result<(), ConfigError> {
    const SECRETS: [(&str, &str); 7] = [
        ("BRIDGE__MQTT__PASSWORD", "bridge.mqtt.password"),
        ("BRIDGE__HTTP__TOKEN", "bridge.http.token"),
        ("WEB__TOKEN", "web.token"),
        ("STORE__POSTGRES__PASSWORD", "store.postgres.password"),
        ("OBJECTS__S3__SECRET_ACCESS_KEY", "objects.s3.secret_access_key"),
        ("TRACKING__MLFLOW__PASSWORD", "tracking.mlflow.password"),
        ("BUS__KAFKA__SASL_PASSWORD", "bus.kafka.sasl_password"),
    ];
    for (name, value) in std::env::vars_os() {
        let name = name.to_string_lossy().to_ascii_uppercase();
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
        let Some((_, key)) = SECRETS.iter().find(|(var, _)| *var == rest) else { continue };
        let value = value.to_string_lossy();
        if !value.is_empty() && value.trim().is_empty() {
            return Err(invalid(
                key,
                format!("(blank: only spaces, from {name})"),
                "a secret, or the variable unset (or empty) for none",
            ));
        }
    }
    Ok(())
}

/// Shorthand for a validation failure.
pub(crate) fn invalid(
    key: &'static str,
    value: impl std::fmt::Display,
    expected: &str,
) -> ConfigError {
    ConfigError::Invalid { key, value: value.to_string(), expected: expected.to_owned() }
}

/// Shorthand for a validation failure at a key built from names or positions in the file.
pub(crate) fn invalid_entry(
    key: String,
    value: impl std::fmt::Display,
    expected: &str,
) -> ConfigError {
    ConfigError::InvalidEntry { key, value: value.to_string(), expected: expected.to_owned() }
}

// figment::Jail's closures return figment's own (large) error type.
#[cfg(test)]
#[allow(clippy::result_large_err)]
mod tests;
