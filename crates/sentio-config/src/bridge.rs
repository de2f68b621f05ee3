//! `[bridge.mqtt]`: what `sentio bridge mqtt` subscribes to and how a message becomes readings;
//! `[bridge.http]`: the HTTP ingest endpoint of `sentio bridge http` and `sentio demo`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ConfigError, Secret, invalid, invalid_entry};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// How often a `sentio bridge` publishes its status report on `topics.status`.
    #[serde(with = "humantime_serde")]
    pub report_every: Duration,
    pub mqtt: MqttBridgeConfig,
    pub http: HttpBridgeConfig,
}

impl BridgeConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.report_every < Duration::from_secs(1)
            || self.report_every > Duration::from_secs(3600)
        {
            return Err(invalid(
                "bridge.report_every",
                format!("\"{}\"", humantime::format_duration(self.report_every)),
                "a duration from \"1s\" to \"1h\", such as \"5s\"",
            ));
        }
        self.mqtt.validate()?;
        self.http.validate()
    }
}

/// `POST /api/v1/readings` (docs/api.md): where `sentio bridge http` listens, its token, and
/// how much one request and one second may carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpBridgeConfig {
    /// Address and port of `sentio bridge http` (`sentio demo` serves the endpoint on the
    /// dashboard's port instead).
    pub bind: String,
    /// The bearer token every request must send. Required: `sentio bridge http` does not start
    /// without one (`sentio demo` makes one when it is empty).
    pub token: Secret,
    pub token_file: PathBuf,
    /// Larger request bodies are refused with 413, while they are read.
    pub max_request_bytes: usize,
    /// Larger lines (or array items) are refused, each with its line number.
    pub max_line_bytes: usize,
    /// Readings per second over all clients; beyond it requests get 429 and a Retry-After.
    pub max_readings_per_second: u32,
    /// Requests handled at once; more wait their turn (this bounds the memory bodies take).
    pub max_concurrent_requests: u16,
}

impl HttpBridgeConfig {
    pub fn socket_addr(&self) -> Result<std::net::SocketAddr, ConfigError> {
        self.bind.parse().map_err(|_| {
            invalid(
                "bridge.http.bind",
                format!("{:?}", self.bind),
                "an IP address and port such as 127.0.0.1:8081 (0.0.0.0:8081 listens on every \
                 interface)",
            )
        })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.socket_addr()?;
        if self.token.expose().trim().is_empty() {
            if !self.token_file.as_os_str().is_empty() {
                return Err(invalid(
                    "bridge.http.token_file",
                    format!("{:?}", self.token_file.display().to_string()),
                    "a file holding the token (this one is empty)",
                ));
            }
            if !self.token.expose().is_empty() {
                return Err(invalid("bridge.http.token", "(blank: only spaces)", "a token"));
            }
        }
        if !(1024..=1 << 30).contains(&self.max_request_bytes) {
            return Err(invalid(
                "bridge.http.max_request_bytes",
                self.max_request_bytes,
                "a number of bytes from 1024 to 1073741824",
            ));
        }
        if !(64..=16 << 20).contains(&self.max_line_bytes) {
            return Err(invalid(
                "bridge.http.max_line_bytes",
                self.max_line_bytes,
                "a number of bytes from 64 to 16777216",
            ));
        }
        if self.max_readings_per_second == 0 {
            return Err(invalid(
                "bridge.http.max_readings_per_second",
                0,
                "a number from 1 to 4294967295",
            ));
        }
        if self.max_concurrent_requests == 0 {
            return Err(invalid(
                "bridge.http.max_concurrent_requests",
                0,
                "a number from 1 to 65535",
            ));
        }
        Ok(())
    }
}

/// The MQTT protocol version the bridge (and `simulate --mqtt`) speaks: `"3.1.1"` or `"5"`.
///
/// Deserialized by hand so that `5` written as a number (in TOML, or an environment variable,
/// which figment reads as a number) means `"5"`, and so that any other value is refused naming
/// the accepted ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MqttVersion {
    #[default]
    V311,
    V5,
}

impl MqttVersion {
    /// The values `bridge.mqtt.version` accepts, for errors.
    pub const ACCEPTED: &'static str = "\"3.1.1\" or \"5\"";

    /// The name it has in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            MqttVersion::V311 => "3.1.1",
            MqttVersion::V5 => "5",
        }
    }

    fn parse(text: &str) -> Option<MqttVersion> {
        match text.trim() {
            "3.1.1" => Some(MqttVersion::V311),
            "5" | "5.0" => Some(MqttVersion::V5),
            _ => None,
        }
    }
}

impl std::fmt::Display for MqttVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for MqttVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MqttVersion {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = MqttVersion;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "the MQTT version, {}", MqttVersion::ACCEPTED)
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MqttVersion, E> {
                MqttVersion::parse(v)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<MqttVersion, E> {
                match v {
                    5 => Ok(MqttVersion::V5),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Unsigned(v), &self)),
                }
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<MqttVersion, E> {
                match v {
                    5 => Ok(MqttVersion::V5),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Signed(v), &self)),
                }
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<MqttVersion, E> {
                if v == 5.0 {
                    Ok(MqttVersion::V5)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttBridgeConfig {
    pub host: String,
    pub port: u16,
    /// The MQTT version spoken to the broker: "3.1.1" or "5".
    pub version: MqttVersion,
    /// The broker keeps this client's session (subscriptions, unacknowledged QoS 1 messages)
    /// while the bridge is away: one id per bridge process.
    pub client_id: String,
    pub username: String,
    pub password: Secret,
    pub password_file: PathBuf,
    /// TLS to the broker (port 8883, usually).
    pub tls: bool,
    /// With `tls`: the CA certificates (PEM) the broker's certificate must chain to; empty: the
    /// system's roots.
    pub ca_file: PathBuf,
    /// With `tls`, for brokers that ask clients for a certificate: this client's certificate
    /// chain and private key (PEM), both or neither.
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// MQTT messages taken in before their readings are acknowledged by the bus.
    pub max_inflight: u16,
    /// Larger payloads go to the dead-letter topic.
    pub max_payload_bytes: usize,
    pub subscriptions: Vec<Subscription>,
}

/// How a subscription's payloads carry readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// A plain number (`21.3`); the topic names device and channel; arrival time.
    Number,
    /// `{"value": 21.3, "ts": ..., "unit": "°C"}`: one channel, named by the topic.
    Value,
    /// `{"ts": ..., "temperature": 21.3, "vibration": 4.1}`: every other member is a channel.
    Object,
    /// Sentio's reading message v1, as on the `sensor-data` topic.
    Reading,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// A topic template: MQTT levels, where `{device}` and `{sensor}` are whole levels naming
    /// the device and the channel, `+` any one level and a final `#` any rest.
    pub topic: String,
    pub format: PayloadFormat,
    /// The unit of values that do not carry one ("" : the profile's, or none).
    #[serde(default)]
    pub unit: String,
}

impl MqttBridgeConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.host.is_empty() {
            return Err(invalid("bridge.mqtt.host", "\"\"", "a host name or an IP address"));
        }
        if self.port == 0 {
            return Err(invalid("bridge.mqtt.port", 0, "a TCP port from 1 to 65535"));
        }
        let id_ok = !self.client_id.is_empty()
            && self.client_id.len() <= 64
            && self.client_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !id_ok {
            return Err(invalid(
                "bridge.mqtt.client_id",
                format!("{:?}", self.client_id),
                "1 to 64 letters, digits, '-', '_' or '.' (one id per bridge process)",
            ));
        }
        let set = |p: &PathBuf| !p.as_os_str().is_empty();
        for (key, path) in [
            ("bridge.mqtt.ca_file", &self.ca_file),
            ("bridge.mqtt.client_cert_file", &self.client_cert_file),
            ("bridge.mqtt.client_key_file", &self.client_key_file),
        ] {
            if set(path) && !self.tls {
                return Err(invalid(
                    key,
                    format!("{:?}", path.display().to_string()),
                    "empty while bridge.mqtt.tls is false (set tls = true to use it)",
                ));
            }
        }
        if set(&self.client_cert_file) != set(&self.client_key_file) {
            let (key, path) = if set(&self.client_cert_file) {
                ("bridge.mqtt.client_key_file", &self.client_key_file)
            } else {
                ("bridge.mqtt.client_cert_file", &self.client_cert_file)
            };
            return Err(invalid(
                key,
                format!("{:?}", path.display().to_string()),
                "a PEM file: a client certificate needs its key and a key its certificate",
            ));
        }
        if self.keep_alive < Duration::from_secs(5) || self.keep_alive > Duration::from_secs(3600) {
            return Err(invalid(
                "bridge.mqtt.keep_alive",
                format!("\"{}\"", humantime::format_duration(self.keep_alive)),
                "a duration from \"5s\" to \"1h\"",
            ));
        }
        if self.max_inflight == 0 {
            return Err(invalid("bridge.mqtt.max_inflight", 0, "a number from 1 to 65535"));
        }
        if !(64..=16 << 20).contains(&self.max_payload_bytes) {
            return Err(invalid(
                "bridge.mqtt.max_payload_bytes",
                self.max_payload_bytes,
                "a number from 64 to 16777216",
            ));
        }
        for (i, s) in self.subscriptions.iter().enumerate() {
            let template = TopicTemplate::parse(&s.topic).map_err(|why| {
                invalid_entry(
                    format!("bridge.mqtt.subscriptions[{i}].topic"),
                    format!("{:?}", s.topic),
                    &why,
                )
            })?;
            let needs_sensor = matches!(s.format, PayloadFormat::Number | PayloadFormat::Value);
            let expected = match s.format {
                PayloadFormat::Reading => None,
                _ if !template.has_device() => {
                    Some("a template with a {device} level (e.g. \"plant/{device}/{sensor}\")")
                }
                _ if needs_sensor && !template.has_sensor() => Some(
                    "a template with a {sensor} level for format \"number\" or \"value\" \
                     (e.g. \"plant/{device}/{sensor}\"), or format \"object\"",
                ),
                _ => None,
            };
            if let Some(expected) = expected {
                return Err(invalid_entry(
                    format!("bridge.mqtt.subscriptions[{i}].topic"),
                    format!("{:?}", s.topic),
                    expected,
                ));
            }
            if let Err(why) = sentio_core::Unit::new(&s.unit) {
                return Err(invalid_entry(
                    format!("bridge.mqtt.subscriptions[{i}].unit"),
                    format!("{:?}", s.unit),
                    &format!("a unit such as \"°C\" ({why})"),
                ));
            }
        }
        Ok(())
    }
}

/// One level of a topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    Device,
    Sensor,
    /// `+`: any one level.
    Any,
    /// `#`: any rest (last).
    Rest,
}

/// A parsed topic template such as `site/+/{device}/{sensor}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    levels: Vec<Level>,
}

/// What a concrete topic's levels named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TopicMatch<'a> {
    pub device: Option<&'a str>,
    pub sensor: Option<&'a str>,
}

impl TopicTemplate {
    /// Parses `template`; the error says what is wrong, in words for the config's `expected`.
    pub fn parse(template: &str) -> Result<TopicTemplate, String> {
        if template.is_empty() || template.len() > 512 {
            return Err("a topic template of 1 to 512 characters".into());
        }
        let parts: Vec<&str> = template.split('/').collect();
        let mut levels = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let level = match *part {
                "{device}" => Level::Device,
                "{sensor}" | "{channel}" => Level::Sensor,
                "+" => Level::Any,
                "#" if i + 1 == parts.len() => Level::Rest,
                "#" => return Err("'#' as the last level only".into()),
                p if p.contains(['+', '#', '{', '}']) => {
                    return Err(format!(
                        "levels that are a name, '+', '#', {{device}} or {{sensor}} whole \
                         (level {} is {p:?})",
                        i + 1
                    ));
                }
                p => Level::Literal(p.to_owned()),
            };
            if matches!(level, Level::Device | Level::Sensor) && levels.contains(&level) {
                return Err(format!(
                    "each of {{device}} and {{sensor}} at most once ({part} twice)"
                ));
            }
            levels.push(level);
        }
        Ok(TopicTemplate { levels })
    }

    pub fn has_device(&self) -> bool {
        self.levels.contains(&Level::Device)
    }

    pub fn has_sensor(&self) -> bool {
        self.levels.contains(&Level::Sensor)
    }

    /// The MQTT topic filter to subscribe to: every placeholder a `+`.
    pub fn filter(&self) -> String {
        fn level(l: &Level) -> &str {
            match l {
                Level::Literal(s) => s.as_str(),
                Level::Device | Level::Sensor | Level::Any => "+",
                Level::Rest => "#",
            }
        }
        self.levels.iter().map(level).collect::<Vec<_>>().join("/")
    }

    /// The device and channel `topic` names, or `None` when it does not have the template's
    /// shape.
    pub fn matches<'a>(&self, topic: &'a str) -> Option<TopicMatch<'a>> {
        let parts: Vec<&str> = topic.split('/').collect();
        let mut found = TopicMatch::default();
        for (i, level) in self.levels.iter().enumerate() {
            if *level == Level::Rest {
                return Some(found);
            }
            let part = *parts.get(i)?;
            match level {
                Level::Literal(s) if s != part => return None,
                Level::Device => found.device = Some(part),
                Level::Sensor => found.sensor = Some(part),
                _ => {}
            }
        }
        (parts.len() == self.levels.len()).then_some(found)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_template_is_a_filter_and_a_matcher() {
        let t = TopicTemplate::parse("site/+/{device}/{sensor}").unwrap();
        assert_eq!(t.filter(), "site/+/+/+");
        let m = t.matches("site/north/pump-01/temperature").unwrap();
        assert_eq!((m.device, m.sensor), (Some("pump-01"), Some("temperature")));
        assert_eq!(t.matches("site/north/pump-01"), None, "too short");
        assert_eq!(t.matches("site/north/pump-01/temperature/x"), None, "too long");
        assert_eq!(t.matches("plant/north/pump-01/temperature"), None, "another literal");

        let rest = TopicTemplate::parse("plant/{device}/telemetry/#").unwrap();
        assert_eq!(rest.filter(), "plant/+/telemetry/#");
        let m = rest.matches("plant/c-2/telemetry/a/b").unwrap();
        assert_eq!((m.device, m.sensor), (Some("c-2"), None));
        // As in MQTT, `#` also matches the parent level.
        assert!(rest.matches("plant/c-2/telemetry").is_some());
        assert!(rest.matches("plant/c-2").is_none());
    }

    #[test]
    fn a_bad_template_says_what_is_wrong() {
        for (template, needle) in [
            ("", "1 to 512"),
            ("a/#/b", "last level only"),
            ("a/dev-{device}", "whole"),
            ("a/x+y", "whole"),
            ("{device}/{device}", "at most once"),
        ] {
            let err = TopicTemplate::parse(template).unwrap_err();
            assert!(err.contains(needle), "{template:?}: {err}");
        }
    }
}
