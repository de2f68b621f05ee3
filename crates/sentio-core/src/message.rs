//! The reading message, version 1: one JSON object per message on `sensor-data`, keyed by device.
//!
//! ```json
//! {"v":1,"device":"pump-07","sensor":"temperature","ts":"2026-11-24T10:00:00Z",
//!  "value":23.41,"unit":"°C","seq":17,"injected":null}
//! ```
//!
//! A reading a bridge stamped with its arrival time (the device sent no timestamp) also carries
//! `"ts_source":"arrival"`; without the field (every older message) `ts` is the event time.
//!
//! `docs/messages.md` and `docs/schema/reading.v1.json` describe it for other producers. Decoding
//! is strict and every rejection says exactly what is wrong, because the reason travels to the
//! dead-letter topic where a person reads it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::time::{self, MAX_RFC3339, MIN_RFC3339, NANOS_PER_SEC, ParseTimeError};
use crate::{
    AnomalyKind, Channel, DeviceId, InvalidChannel, InvalidUnit, Reading, TsSource, Unit,
    UnitMismatch,
};

/// The only schema version this build reads and writes.
pub const SCHEMA_VERSION: u64 = 1;

/// The largest accepted `seq`: the store keeps it in a signed 64-bit integer, and
/// `docs/schema/reading.v1.json` says as much. A larger one would pass decoding only to make the
/// store refuse its whole batch.
pub const MAX_SEQ: u64 = i64::MAX as u64;

/// Bounds a decoded message must respect.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeLimits {
    /// Largest accepted payload in bytes.
    pub max_bytes: usize,
    /// Earliest accepted event time, nanoseconds since the epoch.
    pub min_ts_ns: i64,
    /// How far past the receiver's clock an event time may be, in nanoseconds.
    pub max_future_ns: i64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_bytes: 4096,
            // 2000-01-01T00:00:00Z: no plant data predates it, and a zero or a seconds-for-nanos
            // mix-up lands before it.
            min_ts_ns: 946_684_800 * NANOS_PER_SEC,
            max_future_ns: 86_400 * NANOS_PER_SEC,
        }
    }
}

/// Why a payload is not a valid reading message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is {len} bytes; the limit is {max}")]
    Oversize { len: usize, max: usize },
    #[error("payload is not UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("malformed JSON at line {line} column {column}: {detail}")]
    MalformedJson { line: usize, column: usize, detail: String },
    #[error("non-finite number `{token}` at line {line} column {column}; values must be finite")]
    NonFiniteToken { token: String, line: usize, column: usize },
    #[error("payload is JSON {found}, expected an object")]
    NotAnObject { found: &'static str },
    #[error("missing field `{field}`")]
    MissingField { field: &'static str },
    #[error("field `{field}` is {found}, expected {expected}")]
    WrongType { field: &'static str, expected: &'static str, found: &'static str },
    #[error(
        "field `{field}` is {found}, an integer too large; expected an integer from 0 to {max}"
    )]
    IntegerTooLarge { field: &'static str, found: String, max: u64 },
    #[error("field `{field}` is not finite")]
    NonFinite { field: &'static str },
    #[error("unknown schema version {found}; this build reads version {SCHEMA_VERSION}")]
    UnknownVersion { found: String },
    #[error("field `sensor`: {0}")]
    BadSensor(InvalidChannel),
    #[error("field `unit`: {0}")]
    BadUnit(InvalidUnit),
    /// Decoded, but the device's profile declares the channel in another unit (checked by the
    /// ETL against the configured profiles, not by [`decode_reading`]).
    #[error(transparent)]
    UnitMismatch(#[from] UnitMismatch),
    #[error("unknown anomaly kind {found:?} in `injected`")]
    UnknownAnomaly { found: String },
    #[error(
        "field `ts_source` is {found:?}, expected \"event\" or \"arrival\" (or no field: event)"
    )]
    BadTsSource { found: String },
    #[error("invalid device id: {0}")]
    BadDevice(#[from] crate::InvalidDeviceId),
    #[error("field `ts` is {found:?}, expected an RFC 3339 timestamp such as 2026-11-24T10:00:00Z")]
    BadTimestamp { found: String },
    #[error("timestamp {ts} is outside the accepted range {min} .. {max}")]
    TimestampOutOfRange { ts: String, min: String, max: String },
    /// Well-formed RFC 3339, but no `i64` count of nanoseconds holds it.
    #[error(
        "field `ts` is {found}, outside the supported range {MIN_RFC3339} .. {MAX_RFC3339} \
         (nanoseconds since 1970 in a signed 64-bit integer)"
    )]
    TimestampUnrepresentable { found: String },
}

impl DecodeError {
    /// A short stable name for metrics and the dead-letter table.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Oversize { .. } => "oversize",
            DecodeError::NotUtf8 { .. } => "not_utf8",
            DecodeError::MalformedJson { .. } => "malformed_json",
            DecodeError::NonFiniteToken { .. } | DecodeError::NonFinite { .. } => "non_finite",
            DecodeError::NotAnObject { .. } => "not_an_object",
            DecodeError::MissingField { .. } => "missing_field",
            // The schema's type for `seq` is an integer up to MAX_SEQ; the dead-letter schema's
            // list of codes stays as it is.
            DecodeError::WrongType { .. } | DecodeError::IntegerTooLarge { .. } => "wrong_type",
            DecodeError::UnknownVersion { .. } => "unknown_version",
            DecodeError::BadSensor(_) => "bad_sensor",
            DecodeError::BadUnit(_) => "bad_unit",
            DecodeError::UnitMismatch(_) => "unit_mismatch",
            DecodeError::UnknownAnomaly { .. } => "unknown_anomaly",
            DecodeError::BadTsSource { .. } => "bad_ts_source",
            DecodeError::BadDevice(_) => "bad_device",
            DecodeError::BadTimestamp { .. } => "bad_timestamp",
            DecodeError::TimestampOutOfRange { .. }
            | DecodeError::TimestampUnrepresentable { .. } => "timestamp_out_of_range",
        }
    }
}

/// How a payload that its producer cut short begins (see [`encode_truncated`]). The 0xFF is never
/// valid UTF-8, so such a payload is never a reading, nor taken for one by another reader.
const TRUNCATED_TAG: &[u8] = b"\xffsentio-truncated ";

/// What a producer publishes in place of a message over the limit that it would not hold whole
/// (`sentio ingest --stdin` reading a huge line): `prefix`, the message's first bytes, and `len`,
/// its full length, as `0xFF "sentio-truncated " len "\n" prefix`. [`decode_reading`] rejects it
/// as [`DecodeError::Oversize`] of `len` bytes, so it becomes the dead letter the whole message
/// would have become, and the ETL keeps `prefix` as that dead letter's payload.
pub fn encode_truncated(prefix: &[u8], len: u64) -> Vec<u8> {
    let len = len.to_string();
    let mut out = Vec::with_capacity(TRUNCATED_TAG.len() + len.len() + 1 + prefix.len());
    out.extend_from_slice(TRUNCATED_TAG);
    out.extend_from_slice(len.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(prefix);
    out
}

/// The prefix and full length of a payload [`encode_truncated`] wrote; `None` for any other.
pub fn decode_truncated(payload: &[u8]) -> Option<(&[u8], u64)> {
    let rest = payload.strip_prefix(TRUNCATED_TAG)?;
    let newline = rest.iter().take(21).position(|&b| b == b'\n')?;
    let len = std::str::from_utf8(&rest[..newline]).ok()?.parse().ok()?;
    Some((&rest[newline + 1..], len))
}

#[derive(Serialize)]
struct WireV1<'a> {
    v: u64,
    device: &'a str,
    sensor: &'a str,
    ts: String,
    /// Left out for event time: the bytes of an event-time reading are what they always were.
    #[serde(skip_serializing_if = "Option::is_none")]
    ts_source: Option<&'static str>,
    value: f64,
    unit: &'a str,
    seq: u64,
    injected: Option<&'a str>,
}

/// Encodes a reading as message v1. The output is deterministic: same reading, same bytes.
pub fn encode_reading(reading: &Reading) -> Vec<u8> {
    let wire = WireV1 {
        v: SCHEMA_VERSION,
        device: reading.device.as_str(),
        sensor: reading.sensor.as_str(),
        ts: time::format_rfc3339(reading.ts_ns),
        ts_source: reading.ts_source.written(),
        value: reading.value,
        unit: reading.unit.as_str(),
        seq: reading.seq,
        injected: reading.injected.map(AnomalyKind::as_str),
    };
    // Serializing a struct of strings and numbers into a Vec cannot fail; a non-finite value would
    // come out as `null` and be rejected by every decoder, which is the right outcome.
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// Decodes message v1, checking every field. `now_ns` is the receiver's clock, for the
/// future-timestamp bound.
pub fn decode_reading(
    payload: &[u8],
    limits: &DecodeLimits,
    now_ns: i64,
) -> Result<Reading, DecodeError> {
    if let Some((_, len)) = decode_truncated(payload) {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        return Err(DecodeError::Oversize { len, max: limits.max_bytes });
    }
    if payload.len() > limits.max_bytes {
        return Err(DecodeError::Oversize { len: payload.len(), max: limits.max_bytes });
    }
    let text = std::str::from_utf8(payload)
        .map_err(|e| DecodeError::NotUtf8 { offset: e.valid_up_to() })?;
    if let Some(reading) = decode_typed(text, limits, now_ns) {
        return Ok(reading);
    }
    decode_explained(text, limits, now_ns)
}

/// Message v1 as it is on the wire, borrowing the strings where they have no escapes.
#[derive(Deserialize)]
struct WireIn<'a> {
    v: u64,
    #[serde(borrow)]
    device: Cow<'a, str>,
    #[serde(borrow)]
    sensor: Cow<'a, str>,
    #[serde(borrow)]
    ts: Cow<'a, str>,
    value: f64,
    #[serde(borrow)]
    unit: Cow<'a, str>,
    seq: u64,
    #[serde(borrow)]
    injected: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    ts_source: Option<Cow<'a, str>>,
}

/// The fast path: a typed parse that accepts a message only when every check passes, and gives
/// up (`None`) at the first thing wrong, leaving the reason to [`decode_explained`]. It accepts
/// exactly what that one accepts, with the same result (a property test holds them together);
/// it exists because going through `serde_json::Value` costs about three times as much.
fn decode_typed(text: &str, limits: &DecodeLimits, now_ns: i64) -> Option<Reading> {
    // A struct also deserializes from a JSON array; the message is an object.
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let wire: WireIn = serde_json::from_str(text).ok()?;
    if wire.v != SCHEMA_VERSION || !wire.value.is_finite() || wire.seq > MAX_SEQ {
        return None;
    }
    let device = DeviceId::new(&wire.device).ok()?;
    let sensor = Channel::new(&wire.sensor).ok()?;
    let ts_ns = time::parse_rfc3339(&wire.ts)?;
    if ts_ns < limits.min_ts_ns || ts_ns > now_ns.saturating_add(limits.max_future_ns) {
        return None;
    }
    let unit = Unit::new(&wire.unit).ok()?;
    let injected = match wire.injected {
        None => None,
        Some(name) => Some(AnomalyKind::parse(&name)?),
    };
    let ts_source = match wire.ts_source {
        None => TsSource::Event,
        Some(name) => TsSource::parse(&name)?,
    };
    Some(Reading {
        device,
        sensor,
        unit,
        ts_ns,
        value: wire.value,
        seq: wire.seq,
        injected,
        ts_source,
    })
}

/// The slow path: parses into a `serde_json::Value` so that a rejection can say exactly which
/// field is wrong and how.
fn decode_explained(
    text: &str,
    limits: &DecodeLimits,
    now_ns: i64,
) -> Result<Reading, DecodeError> {
    let value: Value = serde_json::from_str(text).map_err(|e| json_error(text, &e))?;
    let Value::Object(obj) = value else {
        return Err(DecodeError::NotAnObject { found: type_name(&value) });
    };

    match obj.get("v") {
        None => return Err(DecodeError::MissingField { field: "v" }),
        Some(Value::Number(n)) if n.as_u64() == Some(SCHEMA_VERSION) => {}
        Some(Value::Number(n)) => return Err(DecodeError::UnknownVersion { found: n.to_string() }),
        Some(other) => return Err(wrong_type("v", "an integer", other)),
    }
    let device = DeviceId::new(str_field(&obj, "device")?)?;
    let sensor = Channel::new(str_field(&obj, "sensor")?).map_err(DecodeError::BadSensor)?;
    let ts_text = str_field(&obj, "ts")?;
    let ts_ns = time::parse_rfc3339_checked(ts_text).map_err(|e| match e {
        ParseTimeError::Malformed => DecodeError::BadTimestamp { found: ts_text.to_owned() },
        ParseTimeError::OutOfRange => {
            DecodeError::TimestampUnrepresentable { found: ts_text.to_owned() }
        }
    })?;
    let max_ts = now_ns.saturating_add(limits.max_future_ns);
    if ts_ns < limits.min_ts_ns || ts_ns > max_ts {
        return Err(DecodeError::TimestampOutOfRange {
            ts: ts_text.to_owned(),
            min: time::format_rfc3339(limits.min_ts_ns),
            max: time::format_rfc3339(max_ts),
        });
    }
    let value = match obj.get("value") {
        None => return Err(DecodeError::MissingField { field: "value" }),
        Some(Value::Number(n)) => n.as_f64().ok_or(DecodeError::NonFinite { field: "value" })?,
        Some(other) => return Err(wrong_type("value", "a finite number", other)),
    };
    if !value.is_finite() {
        return Err(DecodeError::NonFinite { field: "value" });
    }
    let unit = Unit::new(str_field(&obj, "unit")?).map_err(DecodeError::BadUnit)?;
    let seq = match obj.get("seq") {
        None => return Err(DecodeError::MissingField { field: "seq" }),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(seq) if seq <= MAX_SEQ => seq,
            Some(_) => return Err(seq_too_large(text, n.to_string())),
            // Integers beyond u64 parse as doubles: one with no fraction part is an integer.
            None if n.as_f64().is_some_and(|f| f >= 1.0 && f.fract() == 0.0) => {
                return Err(seq_too_large(text, n.to_string()));
            }
            None => return Err(wrong_type("seq", "a non-negative integer", &obj["seq"])),
        },
        Some(other) => return Err(wrong_type("seq", "a non-negative integer", other)),
    };
    let injected = match obj.get("injected") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            AnomalyKind::parse(s)
                .ok_or_else(|| DecodeError::UnknownAnomaly { found: s.clone() })?,
        ),
        Some(other) => return Err(wrong_type("injected", "a string or null", other)),
    };
    let ts_source = match obj.get("ts_source") {
        None | Some(Value::Null) => TsSource::Event,
        Some(Value::String(s)) => {
            TsSource::parse(s).ok_or_else(|| DecodeError::BadTsSource { found: s.clone() })?
        }
        Some(other) => return Err(wrong_type("ts_source", "a string or null", other)),
    };
    Ok(Reading { device, sensor, unit, ts_ns, value, seq, injected, ts_source })
}

/// `seq` above [`MAX_SEQ`], as written in `text` where it can be found (`shown` otherwise: an
/// integer beyond `u64` comes out of `serde_json::Value` as a double, 2^70 as
/// 1.1805916207174113e21).
fn seq_too_large(text: &str, shown: String) -> DecodeError {
    /// Only the error is wanted: it points just past the number.
    #[derive(Deserialize)]
    struct SeqOnly {
        #[serde(rename = "seq")]
        _seq: u64,
    }
    let found = match serde_json::from_str::<SeqOnly>(text) {
        Err(e) if e.is_data() => token_at(text, e.line(), e.column())
            .filter(|t| t.starts_with(|c: char| c.is_ascii_digit()))
            .unwrap_or(shown),
        _ => shown,
    };
    DecodeError::IntegerTooLarge { field: "seq", found, max: MAX_SEQ }
}

fn str_field<'a>(obj: &'a Map<String, Value>, field: &'static str) -> Result<&'a str, DecodeError> {
    match obj.get(field) {
        None => Err(DecodeError::MissingField { field }),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(wrong_type(field, "a string", other)),
    }
}

fn wrong_type(field: &'static str, expected: &'static str, found: &Value) -> DecodeError {
    DecodeError::WrongType { field, expected, found: type_name(found) }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Turns a parse error into a reason, recognising the non-finite literals that Python's `json`
/// module writes (`NaN`, `Infinity`) and numbers too large for a double.
fn json_error(text: &str, err: &serde_json::Error) -> DecodeError {
    let (line, column) = (err.line(), err.column());
    if let Some(token) = token_at(text, line, column) {
        let bare = token.trim_start_matches(['-', '+']);
        let overflow = token.starts_with(|c: char| c == '-' || c.is_ascii_digit())
            && token.contains(['e', 'E']);
        if bare.starts_with("NaN") || bare.starts_with("Infinity") || overflow {
            return DecodeError::NonFiniteToken { token, line, column };
        }
    }
    // serde_json's message ends with its own " at line L column C"; ours says it once.
    let detail = err.to_string();
    let detail = detail.split(" at line ").next().unwrap_or_default().to_owned();
    DecodeError::MalformedJson { line, column, detail }
}

/// The number-like token that ends at or contains (`line`, `column`), both 1-based.
fn token_at(text: &str, line: usize, column: usize) -> Option<String> {
    let row = text.lines().nth(line.checked_sub(1)?)?;
    let chars: Vec<char> = row.chars().collect();
    let is_tok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.');
    let mut at = column.saturating_sub(1).min(chars.len().checked_sub(1)?);
    while at > 0 && !is_tok(chars[at]) {
        at -= 1;
    }
    if !is_tok(chars[at]) {
        return None;
    }
    let mut start = at;
    while start > 0 && is_tok(chars[start - 1]) {
        start -= 1;
    }
    let mut end = at;
    while end + 1 < chars.len() && is_tok(chars[end + 1]) {
        end += 1;
    }
    Some(chars[start..=end].iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SensorKind;

    const NOW: i64 = 1_764_000_000 * NANOS_PER_SEC;

    fn sample() -> Reading {
        Reading {
            device: DeviceId::new("pump-07").unwrap(),
            sensor: SensorKind::Temperature.into(),
            unit: SensorKind::Temperature.into(),
            ts_ns: NOW - 5 * NANOS_PER_SEC,
            value: 23.41,
            seq: 17,
            injected: Some(AnomalyKind::TemperatureSpike),
            ts_source: TsSource::Event,
        }
    }

    fn decode(text: &str) -> Result<Reading, DecodeError> {
        decode_reading(text.as_bytes(), &DecodeLimits::default(), NOW)
    }

    /// The sample's JSON with one field replaced (or removed, with `None`).
    fn with(field: &str, value: Option<&str>) -> String {
        let mut obj: Map<String, Value> =
            serde_json::from_slice(&encode_reading(&sample())).unwrap();
        match value {
            Some(v) => obj.insert(field.into(), serde_json::from_str(v).unwrap()),
            None => obj.remove(field),
        };
        serde_json::to_string(&obj).unwrap()
    }

    #[test]
    fn encode_then_decode_is_identity() {
        let r = sample();
        let bytes = encode_reading(&r);
        assert_eq!(decode_reading(&bytes, &DecodeLimits::default(), NOW), Ok(r.clone()));
        assert_eq!(encode_reading(&r), bytes, "encoding is deterministic");
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with(r#"{"v":1,"device":"pump-07","sensor":"temperature","ts":"2025-11-24T15:59:55Z","value":23.41,"unit":"°C","seq":17,"injected":"temperature_spike"}"#), "{text}");
    }

    /// Any well-formed channel and unit decode: whether they fit the device's profile is the
    /// ETL's check, and a channel no profile declares is stored, not rejected.
    #[test]
    fn any_channel_and_unit_decode() {
        let r = decode(&with("sensor", Some(r#""vibration_x""#))).unwrap();
        assert_eq!((r.sensor.as_str(), r.sensor.kind()), ("vibration_x", None));
        let r = decode(&with("unit", Some(r#""K""#))).unwrap();
        assert_eq!((r.sensor.kind(), r.unit.as_str()), (Some(SensorKind::Temperature), "K"));
        let text = String::from_utf8(encode_reading(&r)).unwrap();
        assert!(text.contains(r#""unit":"K""#), "{text}");
        let err = decode(&with("sensor", Some(r#""Flow Rate""#))).unwrap_err();
        assert_eq!(err.code(), "bad_sensor");
        assert_eq!(
            err.to_string(),
            "field `sensor`: channel name \"Flow Rate\" contains 'F'; use only lower-case letters \
             a-z, digits, '_', '.' and '-'"
        );
    }

    /// An arrival-time reading says so; an event-time one is the bytes it always was, and a
    /// message without the field (every older one) is event time.
    #[test]
    fn arrival_time_is_marked_and_event_time_is_the_default() {
        let arrival = Reading { ts_source: TsSource::Arrival, injected: None, ..sample() };
        let text = String::from_utf8(encode_reading(&arrival)).unwrap();
        assert!(
            text.contains(r#""ts":"2025-11-24T15:59:55Z","ts_source":"arrival","value""#),
            "{text}"
        );
        assert_eq!(decode(&text), Ok(arrival));
        let event = String::from_utf8(encode_reading(&sample())).unwrap();
        assert!(!event.contains("ts_source"), "{event}");
        assert_eq!(decode(&with("ts_source", None)).unwrap().ts_source, TsSource::Event);
        assert_eq!(decode(&with("ts_source", Some("null"))).unwrap().ts_source, TsSource::Event);
        assert_eq!(
            decode(&with("ts_source", Some(r#""event""#))).unwrap().ts_source,
            TsSource::Event
        );
        let err = decode(&with("ts_source", Some(r#""gps""#))).unwrap_err();
        assert_eq!(err.code(), "bad_ts_source");
        assert!(err.to_string().contains("\"arrival\""), "{err}");
        assert_eq!(decode(&with("ts_source", Some("true"))).unwrap_err().code(), "wrong_type");
    }

    #[test]
    fn injected_may_be_absent_or_null() {
        assert_eq!(decode(&with("injected", None)).unwrap().injected, None);
        assert_eq!(decode(&with("injected", Some("null"))).unwrap().injected, None);
    }

    #[test]
    fn every_rejection_names_its_reason() {
        use DecodeError as E;
        type Check = fn(&DecodeError) -> bool;
        let cases: Vec<(String, Check)> = vec![
            (r#"{"v":1,"device":"#.into(), |e| matches!(e, E::MalformedJson { .. })),
            ("[1,2]".into(), |e| matches!(e, E::NotAnObject { found: "an array" })),
            (with("device", None), |e| matches!(e, E::MissingField { field: "device" })),
            (with("value", None), |e| matches!(e, E::MissingField { field: "value" })),
            (with("v", None), |e| matches!(e, E::MissingField { field: "v" })),
            (with("value", Some(r#""23.4""#)), |e| {
                matches!(e, E::WrongType { field: "value", found: "a string", .. })
            }),
            (with("seq", Some("-1")), |e| matches!(e, E::WrongType { field: "seq", .. })),
            (with("seq", Some("1.5")), |e| matches!(e, E::WrongType { field: "seq", .. })),
            (with("device", Some("7")), |e| matches!(e, E::WrongType { field: "device", .. })),
            (with("sensor", Some(r#""Voltage""#)), |e| matches!(e, E::BadSensor(_))),
            (with("sensor", Some(r#""""#)), |e| matches!(e, E::BadSensor(_))),
            (with("v", Some("2")), |e| matches!(e, E::UnknownVersion { found } if found == "2")),
            (with("v", Some(r#""1""#)), |e| matches!(e, E::WrongType { field: "v", .. })),
            (with("unit", Some(&format!("{:?}", "k".repeat(33)))), |e| matches!(e, E::BadUnit(_))),
            (with("unit", Some(r#""\u0007""#)), |e| matches!(e, E::BadUnit(_))),
            (with("injected", Some(r#""gremlins""#)), |e| matches!(e, E::UnknownAnomaly { .. })),
            (with("device", Some(r#""a b""#)), |e| matches!(e, E::BadDevice(_))),
            (with("ts", Some(r#""noon""#)), |e| matches!(e, E::BadTimestamp { .. })),
            (with("ts", Some(r#""1970-01-01T00:00:00Z""#)), |e| {
                matches!(e, E::TimestampOutOfRange { .. })
            }),
            (with("ts", Some(r#""2099-01-01T00:00:00Z""#)), |e| {
                matches!(e, E::TimestampOutOfRange { .. })
            }),
            (with("ts", Some("1764000000")), |e| matches!(e, E::WrongType { field: "ts", .. })),
            (
                r#"{"v":1,"value":NaN}"#.into(),
                |e| matches!(e, E::NonFiniteToken { token, .. } if token == "NaN"),
            ),
            (
                r#"{"v":1,"value":-Infinity}"#.into(),
                |e| matches!(e, E::NonFiniteToken { token, .. } if token == "-Infinity"),
            ),
            (format!(r#"{{"pad":"{}"}}"#, "x".repeat(5000)), |e| {
                matches!(e, E::Oversize { max: 4096, .. })
            }),
        ];
        for (text, ok) in cases {
            let err = decode(&text).expect_err(&text);
            assert!(ok(&err), "{text}\n=> {err:?}");
            assert!(!err.to_string().is_empty());
        }
        let err = decode_reading(&[0x7b, 0xff], &DecodeLimits::default(), NOW).unwrap_err();
        assert_eq!(err, E::NotUtf8 { offset: 1 });
    }

    /// A well-formed RFC 3339 time that `i64` nanoseconds cannot hold is named as such, with the
    /// exact bounds, not called malformed.
    #[test]
    fn timestamp_beyond_nanoseconds_is_named_out_of_range() {
        for ts in ["2999-01-01T00:00:00Z", "1600-01-01T00:00:00Z", "2262-04-11T23:47:16.854775808Z"]
        {
            let err = decode(&with("ts", Some(&format!("{ts:?}")))).unwrap_err();
            assert_eq!(err.code(), "timestamp_out_of_range", "{err}");
            assert_eq!(
                err.to_string(),
                format!(
                    "field `ts` is {ts}, outside the supported range 1677-09-21T00:12:43.145224192Z \
                     .. 2262-04-11T23:47:16.854775807Z (nanoseconds since 1970 in a signed 64-bit \
                     integer)"
                )
            );
        }
    }

    /// `seq` is stored as a signed 64-bit integer: a larger one is named too large, whether JSON
    /// numbers of that size parse as `u64` or only as a double, and the largest one is accepted.
    #[test]
    fn seq_too_large_is_named_as_such() {
        let max = i64::MAX as u64;
        let ok = decode(&with("seq", Some(&max.to_string()))).unwrap();
        assert_eq!(ok.seq, max);
        for big in ["9223372036854775808", "18446744073709551615", "1180591620717411303424"] {
            // Spliced in as text: through a `Value`, 2^70 would come back as 1.1805916207174113e21.
            let text = with("seq", Some("0")).replace(r#""seq":0"#, &format!(r#""seq":{big}"#));
            let err = decode(&text).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "field `seq` is {big}, an integer too large; expected an integer from 0 to \
                     9223372036854775807"
                )
            );
            assert_eq!(err.code(), "wrong_type");
        }
        // Still fractional: a fraction part, not a size, is what is wrong.
        let err = decode(&with("seq", Some("1.5"))).unwrap_err();
        assert!(err.to_string().contains("a fractional number"), "{err}");
    }

    /// What a producer publishes for a message it cut short decodes as that message would have:
    /// oversize, with the full length; nothing else is taken for such a payload.
    #[test]
    fn a_truncated_message_is_oversize_with_its_full_length() {
        let cut = encode_truncated(b"{\"v\":1,\"dev", 209_715_200);
        assert_eq!(decode_truncated(&cut), Some((&b"{\"v\":1,\"dev"[..], 209_715_200)));
        let err = decode_reading(&cut, &DecodeLimits::default(), NOW).unwrap_err();
        assert_eq!(err, DecodeError::Oversize { len: 209_715_200, max: 4096 });
        assert_eq!(err.to_string(), "payload is 209715200 bytes; the limit is 4096");
        for other in [&b""[..], b"\xffsentio-truncated ", b"\xffsentio-truncated x\nab", b"{}"] {
            assert_eq!(decode_truncated(other), None, "{other:?}");
        }
        assert_eq!(decode_truncated(&encode_reading(&sample())), None);
    }

    #[test]
    fn large_exponent_is_reported_as_non_finite() {
        let text = with("value", Some("0")).replace(r#""value":0"#, r#""value":1e999"#);
        let err = decode(&text).unwrap_err();
        assert!(
            matches!(&err, DecodeError::NonFiniteToken { token, .. } if token == "1e999"),
            "{err:?}"
        );
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// No input makes the decoder panic; the rejection always has a reason.
            #[test]
            fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
                let _ = decode_reading(&bytes, &DecodeLimits::default(), NOW);
            }

            /// The typed fast path and the explaining slow path agree on every message built by
            /// replacing or removing fields of a valid one (types, versions, units, duplicates,
            /// escapes, arrays): same reading when both accept, and the fast path never accepts
            /// what the slow one rejects nor gives up on what it accepts.
            #[test]
            fn fast_and_explained_paths_agree(
                edits in proptest::collection::vec((0usize..10, 0usize..23), 0..4),
                shape in 0usize..4,
            ) {
                const FIELDS: [&str; 10] = [
                    "v", "device", "sensor", "ts", "value", "unit", "seq", "injected", "extra",
                    "ts_source",
                ];
                const VALUES: [&str; 22] = [
                    "1", "1.0", "2", "-1", "null", "\"pump-07\"", "\"pump\\u002d07\"",
                    "\"temperature\"", "\"pressure\"", "\"°C\"", "\"bar\"",
                    "\"2025-11-24T15:59:55Z\"", "\"2025-11-24T15:59:55.5+01:00\"", "1e308",
                    "\"temperature_spike\"", "[1]", "\"current\"", "\"Bad Name\"", "\"\"",
                    "\"arrival\"", "\"event\"", "\"Arrival\"",
                ];
                let mut text = String::from_utf8(encode_reading(&sample())).unwrap();
                for (field, value) in edits {
                    let mut obj: Map<String, Value> = serde_json::from_str(&text).unwrap();
                    match VALUES.get(value) {
                        Some(v) => obj.insert(FIELDS[field].into(), serde_json::from_str(v).unwrap()),
                        None => obj.remove(FIELDS[field]),
                    };
                    text = serde_json::to_string(&obj).unwrap();
                }
                let text = match shape {
                    0 => text,
                    1 => format!("  {text}\n"),
                    // A duplicate key: the slow path keeps the last one, the typed one gives up.
                    2 => text.replacen('{', r#"{"seq":3,"#, 1),
                    _ => format!("[{}]", text.trim_start_matches('{').trim_end_matches('}')),
                };
                let limits = DecodeLimits::default();
                let explained = decode_explained(&text, &limits, NOW);
                match decode_typed(&text, &limits, NOW) {
                    Some(fast) => prop_assert_eq!(Ok(fast), explained, "{}", text),
                    None => prop_assert!(explained.is_err() || shape == 2, "{} => {:?}", text, explained),
                }
            }

            #[test]
            fn finite_readings_round_trip(value in -1e12f64..1e12, seq in 0..=MAX_SEQ, dt in 0i64..1_000_000_000_000_000) {
                let r = Reading { value, seq, ts_ns: NOW - dt, ..sample() };
                prop_assert_eq!(decode_reading(&encode_reading(&r), &DecodeLimits::default(), NOW), Ok(r));
            }

            /// Every `seq` the store could not keep is refused, by both paths, naming it exactly.
            #[test]
            fn seq_above_the_store_limit_is_refused(seq in MAX_SEQ + 1..=u64::MAX) {
                let r = Reading { seq, ..sample() };
                let text = String::from_utf8(encode_reading(&r)).unwrap();
                prop_assert_eq!(decode_typed(&text, &DecodeLimits::default(), NOW), None);
                prop_assert_eq!(
                    decode_reading(text.as_bytes(), &DecodeLimits::default(), NOW),
                    Err(DecodeError::IntegerTooLarge { field: "seq", found: seq.to_string(), max: MAX_SEQ })
                );
            }
        }
    }
}
