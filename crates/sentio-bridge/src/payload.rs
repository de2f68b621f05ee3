//! From one MQTT message (its topic's device and channel, its payload) to readings, or the
//! reason it carries none.

use sentio_config::{PayloadFormat, TopicMatch};
use sentio_core::message::{DecodeLimits, decode_reading};
use std::sync::Arc;

use sentio_core::{Channel, DeviceId, Profiles, Reading, TsSource, Unit};
use serde_json::{Map, Value};

/// Why a message carries no reading: a stable code and the reason, for the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub code: &'static str,
    pub reason: String,
}

fn reject(code: &'static str, reason: impl Into<String>) -> Rejected {
    Rejected { code, reason: reason.into() }
}

/// What the payloads of one subscription are decoded with.
#[derive(Debug, Clone)]
pub struct Decoder {
    pub format: PayloadFormat,
    /// The unit of values that carry none; when empty, the one the device's profile declares
    /// for the channel (none if no profile declares it).
    pub unit: Unit,
    pub limits: DecodeLimits,
    pub profiles: Arc<Profiles>,
}

/// The readings of one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub readings: Vec<Reading>,
    /// Whether the message had no timestamp, so its readings carry the arrival time (and are
    /// marked [`TsSource::Arrival`], which travels with them to the store).
    pub arrival_time: bool,
}

impl Decoder {
    /// Decodes `payload`, received at `now_ns` on a topic that named `names`. Readings stamped
    /// with `now_ns` because the payload had no timestamp are marked [`TsSource::Arrival`]; a
    /// reading message keeps the mark it carries.
    pub fn decode(
        &self,
        names: TopicMatch<'_>,
        payload: &[u8],
        now_ns: i64,
    ) -> Result<Decoded, Rejected> {
        let mut decoded = self.decode_unmarked(names, payload, now_ns)?;
        if decoded.arrival_time {
            for r in &mut decoded.readings {
                r.ts_source = TsSource::Arrival;
            }
        }
        Ok(decoded)
    }

    fn decode_unmarked(
        &self,
        names: TopicMatch<'_>,
        payload: &[u8],
        now_ns: i64,
    ) -> Result<Decoded, Rejected> {
        if payload.len() > self.limits.max_bytes {
            return Err(reject(
                "oversize",
                format!(
                    "payload is {} bytes; the limit is {}",
                    payload.len(),
                    self.limits.max_bytes
                ),
            ));
        }
        let topic_device = names.device.map(device).transpose()?;
        if self.format == PayloadFormat::Reading {
            let reading = decode_reading(payload, &self.limits, now_ns)
                .map_err(|e| reject(e.code(), e.to_string()))?;
            if let Some(d) = topic_device
                && d != reading.device
            {
                return Err(reject(
                    "device_mismatch",
                    format!("the topic names device {d} but the reading is of {}", reading.device),
                ));
            }
            return Ok(Decoded { readings: vec![reading], arrival_time: false });
        }
        let device =
            topic_device.ok_or_else(|| reject("unknown_topic", "the topic names no device"))?;
        let text = std::str::from_utf8(payload).map_err(|e| {
            reject(
                "not_utf8",
                format!("payload is not UTF-8 (invalid byte at offset {})", e.valid_up_to()),
            )
        })?;
        let reading = |sensor: Channel, unit: Unit, value: f64, ts_ns: i64| Reading {
            unit: if unit.as_str().is_empty() {
                self.profiles.unit_of(device.as_str(), &sensor).cloned().unwrap_or(unit)
            } else {
                unit
            },
            device: device.clone(),
            sensor,
            ts_ns,
            value,
            // A reading's seq is its timestamp: increasing per channel, and the same when the
            // broker delivers a message twice.
            seq: u64::try_from(ts_ns).unwrap_or(0),
            injected: None,
            // Marked by `decode` where the time is the arrival's.
            ts_source: TsSource::Event,
        };
        match self.format {
            PayloadFormat::Number => {
                let sensor = topic_sensor(names)?;
                let value = number(text.trim(), "payload")?;
                let ts = self.check_time(now_ns, now_ns)?;
                Ok(Decoded {
                    readings: vec![reading(sensor, self.unit.clone(), value, ts)],
                    arrival_time: true,
                })
            }
            PayloadFormat::Value => {
                let sensor = topic_sensor(names)?;
                // The common well-formed case without building a JSON tree; anything it does not
                // take (a float or string `ts` with escapes, duplicate keys, any error) goes the
                // general way below, which accepts the same payloads and words the errors.
                if let Some(fast) = fast_value(text) {
                    let unit = match fast.unit {
                        None => self.unit.clone(),
                        Some(u) => Unit::new(u)
                            .map_err(|e| reject("bad_unit", format!("field `unit`: {e}")))?,
                    };
                    let (ts, arrival_time) = match fast.ts {
                        None => (self.check_time(now_ns, now_ns)?, true),
                        Some(ts) => (self.check_time(ts, now_ns)?, false),
                    };
                    return Ok(Decoded {
                        readings: vec![reading(sensor, unit, fast.value, ts)],
                        arrival_time,
                    });
                }
                let object = object(text)?;
                let value = match object.get("value") {
                    Some(v) => json_number(v, "value")?,
                    None => return Err(reject("missing_field", "missing field `value`")),
                };
                let unit = match object.get("unit") {
                    None | Some(Value::Null) => self.unit.clone(),
                    Some(Value::String(u)) => Unit::new(u)
                        .map_err(|e| reject("bad_unit", format!("field `unit`: {e}")))?,
                    Some(other) => {
                        return Err(wrong_type("unit", "a string", other));
                    }
                };
                for key in object.keys() {
                    if !matches!(key.as_str(), "value" | "ts" | "unit") {
                        return Err(reject(
                            "unknown_field",
                            format!("unknown field `{key}`; expected `value`, `ts` and `unit`"),
                        ));
                    }
                }
                let (ts, arrival_time) = self.timestamp(&object, now_ns)?;
                Ok(Decoded { readings: vec![reading(sensor, unit, value, ts)], arrival_time })
            }
            PayloadFormat::Object => {
                let object = object(text)?;
                let (ts, arrival_time) = self.timestamp(&object, now_ns)?;
                let mut readings = Vec::with_capacity(object.len());
                for (key, v) in &object {
                    if key == "ts" {
                        continue;
                    }
                    let sensor = Channel::new(key).map_err(|e| {
                        reject("bad_sensor", format!("member `{key}` is no channel name: {e}"))
                    })?;
                    let value = match v {
                        Value::Number(_) => json_number(v, "a channel")
                            .map_err(|r| reject(r.code, format!("member `{key}` is not finite")))?,
                        other => {
                            return Err(reject(
                                "wrong_type",
                                format!("member `{key}` is {}, expected a number", kind(other)),
                            ));
                        }
                    };
                    readings.push(reading(sensor, self.unit.clone(), value, ts));
                }
                if readings.is_empty() {
                    return Err(reject("missing_field", "no channel member besides `ts`"));
                }
                Ok(Decoded { readings, arrival_time })
            }
            PayloadFormat::Reading => unreachable_reading(),
        }
    }

    /// The event time of `object`'s `ts`, or the arrival time (and `true`) without one.
    fn timestamp(&self, object: &Map<String, Value>, now_ns: i64) -> Result<(i64, bool), Rejected> {
        let ts = match object.get("ts") {
            None | Some(Value::Null) => return Ok((self.check_time(now_ns, now_ns)?, true)),
            Some(Value::String(s)) => sentio_core::time::parse_timestamp(s),
            Some(Value::Number(n)) => sentio_core::time::parse_timestamp(&n.to_string()),
            Some(other) => return Err(wrong_type("ts", "an RFC 3339 string or a number", other)),
        };
        let ts = ts.ok_or_else(|| {
            reject(
                "bad_timestamp",
                format!(
                    "field `ts` is {}, expected RFC 3339 (\"2026-11-24T10:00:00Z\") or a number \
                     since the epoch in s, ms, µs or ns",
                    object.get("ts").map(Value::to_string).unwrap_or_default()
                ),
            )
        })?;
        Ok((self.check_time(ts, now_ns)?, false))
    }

    fn check_time(&self, ts_ns: i64, now_ns: i64) -> Result<i64, Rejected> {
        if ts_ns < self.limits.min_ts_ns {
            return Err(reject(
                "timestamp_out_of_range",
                format!(
                    "timestamp {} is before {}",
                    sentio_core::time::format_rfc3339(ts_ns),
                    sentio_core::time::format_rfc3339(self.limits.min_ts_ns)
                ),
            ));
        }
        if ts_ns > now_ns.saturating_add(self.limits.max_future_ns) {
            return Err(reject(
                "timestamp_out_of_range",
                format!(
                    "timestamp {} is more than {} s ahead of this bridge's clock",
                    sentio_core::time::format_rfc3339(ts_ns),
                    self.limits.max_future_ns / sentio_core::time::NANOS_PER_SEC
                ),
            ));
        }
        Ok(ts_ns)
    }
}

/// A `value` payload read straight into its fields.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FastValueWire<'a> {
    value: f64,
    #[serde(default, borrow)]
    ts: Option<&'a serde_json::value::RawValue>,
    #[serde(default, borrow)]
    unit: Option<&'a str>,
}

struct FastValue<'a> {
    value: f64,
    ts: Option<i64>,
    unit: Option<&'a str>,
}

/// `{"value": <finite number>, "ts": <integer or plain string>, "unit": <plain string>}`, each
/// but `value` optional or null, or `None` for anything else (left to the general decoder).
fn fast_value(text: &str) -> Option<FastValue<'_>> {
    // Serde would also read a struct from an array of its fields.
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let wire: FastValueWire<'_> = serde_json::from_str(text).ok()?;
    if !wire.value.is_finite() {
        return None;
    }
    let ts = match wire.ts.map(|r| r.get()) {
        None | Some("null") => None,
        Some(raw) if raw.bytes().all(|b| b.is_ascii_digit()) => {
            Some(sentio_core::time::parse_timestamp(raw)?)
        }
        Some(raw) => {
            let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
            if inner.contains(['\\', '"']) {
                return None;
            }
            Some(sentio_core::time::parse_timestamp(inner)?)
        }
    };
    Some(FastValue { value: wire.value, ts, unit: wire.unit })
}

fn unreachable_reading() -> Result<Decoded, Rejected> {
    // Handled before the match: a reading message is decoded whole by `decode_reading`.
    Err(reject("internal", "a reading message reached the per-format decoder"))
}

fn device(name: &str) -> Result<DeviceId, Rejected> {
    DeviceId::new(name)
        .map_err(|e| reject("bad_device", format!("the topic's device {name:?}: {e}")))
}

fn topic_sensor(names: TopicMatch<'_>) -> Result<Channel, Rejected> {
    let name = names.sensor.ok_or_else(|| reject("unknown_topic", "the topic names no channel"))?;
    Channel::new(name)
        .map_err(|e| reject("bad_sensor", format!("the topic's channel {name:?}: {e}")))
}

fn object(text: &str) -> Result<Map<String, Value>, Rejected> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(reject(
            "not_an_object",
            format!("payload is JSON {}, expected an object", kind(&other)),
        )),
        Err(e) => Err(reject(
            "malformed_json",
            format!("malformed JSON at line {} column {}: {e}", e.line(), e.column()),
        )),
    }
}

/// A plain number's text: finite, no JSON around it.
fn number(text: &str, what: &str) -> Result<f64, Rejected> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(reject("non_finite", format!("{what} {text:?} is not finite"))),
        Err(_) => Err(reject(
            "not_a_number",
            format!("{what} is {:?}, expected a plain number such as 21.3", short(text)),
        )),
    }
}

fn json_number(v: &Value, field: &'static str) -> Result<f64, Rejected> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .filter(|x| x.is_finite())
            .ok_or_else(|| reject("non_finite", format!("field `{field}` is not finite"))),
        other => Err(wrong_type(field, "a number", other)),
    }
}

fn wrong_type(field: &str, expected: &str, found: &Value) -> Rejected {
    reject("wrong_type", format!("field `{field}` is {}, expected {expected}", kind(found)))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn short(text: &str) -> String {
    let mut s: String = text.chars().take(40).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use sentio_core::time::{NANOS_PER_SEC, parse_rfc3339};

    use super::*;

    const NOW: i64 = 1_796_000_000 * NANOS_PER_SEC;

    fn decoder(format: PayloadFormat) -> Decoder {
        Decoder {
            format,
            unit: Unit::new("°C").unwrap(),
            limits: DecodeLimits::default(),
            profiles: Arc::new(Profiles::builtin()),
        }
    }

    fn names<'a>(device: &'a str, sensor: Option<&'a str>) -> TopicMatch<'a> {
        TopicMatch { device: Some(device), sensor }
    }

    fn decode(
        format: PayloadFormat,
        sensor: Option<&str>,
        payload: &str,
    ) -> Result<Decoded, Rejected> {
        decoder(format).decode(names("pump-01", sensor), payload.as_bytes(), NOW)
    }

    #[test]
    fn the_fast_value_path_decodes_as_the_general_one() {
        let values = ["21.5", "-3", "0", "1e3", "2.5E-2", "123456789012", "-0.0001"];
        let times = [
            None,
            Some("null"),
            Some("1796000000"),
            Some("1796000000123"),
            Some("1796000000123456"),
            Some("1796000000123456789"),
            Some("\"2026-11-30T10:00:00Z\""),
            Some("\"2026-11-30T10:00:00.25+01:00\""),
            Some("\"yesterday\""),
            Some("17960000001234567890123"),
            Some("1796000000.5"),
            Some("true"),
        ];
        let units =
            [None, Some("null"), Some("\"bar\""), Some("\"\""), Some("\"b a r\""), Some("3")];
        let mut fast_taken = 0;
        for v in values {
            for t in times {
                for u in units {
                    let mut members = vec![format!("\"value\": {v}")];
                    members.extend(t.map(|t| format!("\"ts\": {t}")));
                    members.extend(u.map(|u| format!("\"unit\": {u}")));
                    let payload = format!("{{{}}}", members.join(", "));
                    // A duplicate `value` first: the general decoder keeps the last one, the
                    // fast path refuses duplicates, so this is the same payload decoded the
                    // general way.
                    let general = format!("{{\"value\": \"x\", {}}}", members.join(", "));
                    assert!(fast_value(&general).is_none());
                    fast_taken += usize::from(fast_value(&payload).is_some());
                    let (a, b) = (
                        decode(PayloadFormat::Value, Some("pressure"), &payload),
                        decode(PayloadFormat::Value, Some("pressure"), &general),
                    );
                    match (&a, &b) {
                        (Ok(a), Ok(b)) => {
                            assert_eq!(a.arrival_time, b.arrival_time, "{payload}");
                            let (x, y) = (&a.readings[0], &b.readings[0]);
                            let same = x.unit == y.unit && x.value == y.value && x.seq == y.seq;
                            // Without a ts both take the arrival time, which is the same NOW.
                            assert!(same && x.ts_ns == y.ts_ns, "{payload}: {x:?} vs {y:?}");
                        }
                        (Err(a), Err(b)) => assert_eq!(a.code, b.code, "{payload}"),
                        _ => panic!("{payload}: {a:?} vs {b:?}"),
                    }
                }
            }
        }
        assert!(fast_taken > 100, "the fast path took only {fast_taken}");
    }

    #[test]
    fn a_plain_number_is_one_reading_at_its_arrival() {
        let d = decode(PayloadFormat::Number, Some("temperature"), " 21.5\n").unwrap();
        assert!(d.arrival_time);
        let r = &d.readings[0];
        assert_eq!(r.ts_source, TsSource::Arrival, "marked");
        assert_eq!(
            (r.device.as_str(), r.sensor.as_str(), r.unit.as_str()),
            ("pump-01", "temperature", "°C")
        );
        assert_eq!((r.value, r.ts_ns, r.seq), (21.5, NOW, NOW as u64));
    }

    #[test]
    fn a_value_object_carries_its_time_and_unit() {
        let d = decode(
            PayloadFormat::Value,
            Some("pressure"),
            r#"{"value": 2.5, "ts": "2026-11-24T10:00:00Z", "unit": "bar"}"#,
        )
        .unwrap();
        assert!(!d.arrival_time);
        let r = &d.readings[0];
        assert_eq!(r.ts_source, TsSource::Event);
        assert_eq!(r.ts_ns, parse_rfc3339("2026-11-24T10:00:00Z").unwrap());
        assert_eq!((r.value, r.unit.as_str()), (2.5, "bar"));
        // Epoch milliseconds, and no timestamp at all.
        let ms =
            decode(PayloadFormat::Value, Some("pressure"), r#"{"value": 1, "ts": 1796000000000}"#)
                .unwrap();
        assert_eq!(ms.readings[0].ts_ns, NOW);
        let bare = decode(PayloadFormat::Value, Some("pressure"), r#"{"value": 1}"#).unwrap();
        assert!(bare.arrival_time);
        assert_eq!(bare.readings[0].ts_source, TsSource::Arrival);
        assert_eq!(ms.readings[0].ts_source, TsSource::Event);
        // An object without `ts`: every channel of it is marked.
        let object = decode(PayloadFormat::Object, None, r#"{"current": 1.5, "flow": 2}"#).unwrap();
        assert!(object.readings.iter().all(|r| r.ts_source == TsSource::Arrival));
        // A reading message keeps its own mark, either way.
        let msg = r#"{"v":1,"device":"pump-01","sensor":"humidity","ts":"2026-11-24T10:00:00Z","ts_source":"arrival","value":50.0,"unit":"%","seq":7}"#;
        let d = decode(PayloadFormat::Reading, None, msg).unwrap();
        assert_eq!(d.readings[0].ts_source, TsSource::Arrival);
    }

    #[test]
    fn an_object_of_channels_is_a_reading_each_at_one_time() {
        let d = decode(
            PayloadFormat::Object,
            None,
            r#"{"ts": 1796000000, "temperature": 21.3, "vibration": 4.1}"#,
        )
        .unwrap();
        let got: Vec<_> =
            d.readings.iter().map(|r| (r.sensor.as_str(), r.value, r.ts_ns)).collect();
        assert_eq!(got, [("temperature", 21.3, NOW), ("vibration", 4.1, NOW)]);
    }

    #[test]
    fn a_reading_message_is_read_whole_and_must_name_the_topics_device() {
        let msg = r#"{"v":1,"device":"pump-01","sensor":"humidity","ts":"2026-11-24T10:00:00Z","value":50.0,"unit":"%","seq":7}"#;
        let d = decode(PayloadFormat::Reading, None, msg).unwrap();
        assert_eq!((d.readings[0].seq, d.readings[0].value), (7, 50.0));
        let other = decoder(PayloadFormat::Reading)
            .decode(names("pump-02", None), msg.as_bytes(), NOW)
            .unwrap_err();
        assert_eq!(other.code, "device_mismatch");
        // Without a device in the topic, the message's own.
        let any =
            decoder(PayloadFormat::Reading).decode(TopicMatch::default(), msg.as_bytes(), NOW);
        assert!(any.is_ok());
    }

    /// Every malformed class gets its code and a reason that says what is wrong.
    #[test]
    fn malformed_payloads_are_rejected_with_a_reason() {
        use PayloadFormat::*;
        let big = "1".repeat(5000);
        let cases: &[(PayloadFormat, Option<&str>, &str, &str, &str)] = &[
            (Number, Some("temperature"), "warm", "not_a_number", "plain number"),
            (Number, Some("temperature"), "NaN", "non_finite", "not finite"),
            (Number, Some("temperature"), "inf", "non_finite", "not finite"),
            (Number, Some("temperature"), &big, "oversize", "limit is 4096"),
            (Number, Some("Temp!"), "1", "bad_sensor", "Temp!"),
            (Number, None, "1", "unknown_topic", "no channel"),
            (Value, Some("temperature"), "{\"value\": ", "malformed_json", "line 1"),
            (Value, Some("temperature"), "[1, 2]", "not_an_object", "an array"),
            (Value, Some("temperature"), r#"{"value": "21"}"#, "wrong_type", "`value` is a string"),
            (Value, Some("temperature"), r#"{"value": NaN}"#, "malformed_json", "line 1"),
            (Value, Some("temperature"), r#"{"ts": 1796000000}"#, "missing_field", "`value`"),
            (Value, Some("temperature"), r#"{"value": 1, "tz": 3}"#, "unknown_field", "`tz`"),
            (
                Value,
                Some("temperature"),
                r#"{"value": 1, "ts": "soon"}"#,
                "bad_timestamp",
                "RFC 3339",
            ),
            (
                Value,
                Some("temperature"),
                r#"{"value": 1, "ts": 12}"#,
                "timestamp_out_of_range",
                "before",
            ),
            (
                Value,
                Some("temperature"),
                r#"{"value": 1, "ts": true}"#,
                "wrong_type",
                "`ts` is a boolean",
            ),
            (Object, None, r#"{"ts": 1796000000}"#, "missing_field", "no channel"),
            (Object, None, r#"{"temperature": null}"#, "wrong_type", "member `temperature`"),
            (Object, None, r#"{"Bad Name": 1}"#, "bad_sensor", "Bad Name"),
            (Reading, None, r#"{"v":1}"#, "missing_field", "missing field"),
        ];
        for (format, sensor, payload, code, needle) in cases {
            let got = decode(*format, *sensor, payload).unwrap_err();
            assert_eq!(got.code, *code, "{format:?} {payload:?}: {}", got.reason);
            assert!(got.reason.contains(needle), "{format:?} {payload:?}: {}", got.reason);
        }
        let bad_device =
            decoder(Number).decode(names("pump 01", Some("temperature")), b"1", NOW).unwrap_err();
        assert_eq!(bad_device.code, "bad_device");
        let not_utf8 = decoder(Value)
            .decode(names("pump-01", Some("temperature")), &[b'{', 0xff, b'}'], NOW)
            .unwrap_err();
        assert_eq!(not_utf8.code, "not_utf8");
    }
}
