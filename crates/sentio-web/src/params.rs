//! Query parameters. Each endpoint names the parameters it takes; anything else, or a value of
//! the wrong form, is answered with a 400 whose message names the parameter and the expected form.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sentio_core::time::NANOS_PER_SEC;
use sentio_core::{Channel, DeviceId, Severity};

/// An API error: a status and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::NOT_FOUND, message: message.into() }
    }

    /// A backend failed. The message names what was being read; the cause goes to the log only
    /// (it may hold addresses or names a reader should not see).
    pub fn backend(what: &str, error: &(dyn std::error::Error + 'static)) -> ApiError {
        tracing::warn!(error = %ErrorChain(error), "reading {what} for the dashboard failed");
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!("reading {what} failed; the server log says why"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

/// An error and its sources, on one line.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// The raw parameters of one request, checked against the names an endpoint accepts.
pub struct Params {
    values: BTreeMap<String, String>,
}

impl Params {
    /// Refuses a parameter not in `accepted` (a typo would otherwise be silently ignored).
    pub fn new(values: BTreeMap<String, String>, accepted: &[&str]) -> Result<Params, ApiError> {
        if let Some(unknown) = values.keys().find(|k| !accepted.contains(&k.as_str())) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {unknown:?}; this endpoint takes {}",
                if accepted.is_empty() { "none".to_owned() } else { accepted.join(", ") }
            )));
        }
        Ok(Params { values })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// An instant: RFC 3339 (`2026-11-24T10:00:00Z`), a date, or milliseconds since the epoch.
    pub fn instant(&self, name: &str) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.get(name) else { return Ok(None) };
        // Milliseconds as the API writes them (`1764000000000.0` too), or a date and time.
        let parsed = match (v.parse::<i64>(), v.parse::<f64>()) {
            (Ok(ms), _) => ms.checked_mul(1_000_000),
            (_, Ok(ms)) if ms.is_finite() && ms.abs() < 9.2e12 => Some((ms * 1e6).round() as i64),
            (_, Ok(_)) => None,
            _ => match sentio_core::time::parse_instant_checked(v) {
                Err(e @ sentio_core::time::ParseTimeError::OutOfRange) => {
                    return Err(ApiError::bad_request(format!("{name}={v:?} is {e}")));
                }
                parsed => parsed.ok(),
            },
        };
        parsed.map(Some).ok_or_else(|| {
            ApiError::bad_request(format!(
                "{name}={v:?} is not a time; use RFC 3339 (2026-11-24T10:00:00Z), a date \
                 (2026-11-24) or milliseconds since the epoch"
            ))
        })
    }

    /// A duration such as `15m`, `1h`, `2d`.
    pub fn duration(&self, name: &str) -> Result<Option<Duration>, ApiError> {
        let Some(v) = self.get(name) else { return Ok(None) };
        parse_duration(v).map(Some).ok_or_else(|| {
            ApiError::bad_request(format!(
                "{name}={v:?} is not a duration; use a number and a unit: 90s, 15m, 6h, 2d"
            ))
        })
    }

    pub fn device(&self, name: &str) -> Result<Option<DeviceId>, ApiError> {
        let Some(v) = self.get(name) else { return Ok(None) };
        device_id(v).map(Some)
    }

    pub fn sensor(&self, name: &str) -> Result<Option<Channel>, ApiError> {
        let Some(v) = self.get(name) else { return Ok(None) };
        Channel::new(v).map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "{name}={v:?} is not a channel name; use 1 to 64 of a-z, 0-9, '_', '.' and '-', \
                 such as temperature or vibration_x"
            ))
        })
    }

    pub fn severity(&self, name: &str) -> Result<Option<Severity>, ApiError> {
        let Some(v) = self.get(name) else { return Ok(None) };
        Severity::parse(v).map(Some).ok_or_else(|| {
            ApiError::bad_request(format!(
                "{name}={v:?} is not a severity; use warning or critical"
            ))
        })
    }

    /// One of `choices`.
    pub fn choice(
        &self,
        name: &str,
        choices: &[&'static str],
    ) -> Result<Option<&'static str>, ApiError> {
        let Some(v) = self.get(name) else { return Ok(None) };
        choices.iter().find(|c| **c == v).copied().map(Some).ok_or_else(|| {
            ApiError::bad_request(format!(
                "{name}={v:?} is not valid; use {}",
                choices.join(" or ")
            ))
        })
    }

    /// A whole number from `min` to `max`.
    pub fn count(&self, name: &str, min: usize, max: usize) -> Result<Option<usize>, ApiError> {
        let Some(v) = self.get(name) else { return Ok(None) };
        match v.parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::bad_request(format!(
                "{name}={v:?} is not valid; use a whole number from {min} to {max}"
            ))),
        }
    }
}

/// A device id from a path or a parameter.
pub fn device_id(v: &str) -> Result<DeviceId, ApiError> {
    DeviceId::new(v).map_err(|e| ApiError::bad_request(format!("{v:?} is not a device id: {e}")))
}

/// `100ms`, `90s`, `15m`, `6h`, `2d`, `1w` (one number, one unit).
pub fn parse_duration(v: &str) -> Option<Duration> {
    let split = v.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = v.split_at(split);
    let n: u64 = n.parse().ok()?;
    let unit_ns: u64 = match unit {
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        "w" => 7 * 86_400_000_000_000,
        _ => return None,
    };
    n.checked_mul(unit_ns).map(Duration::from_nanos)
}

/// A time range `[from, to)` in nanoseconds, from `from`/`to`/`last`, bounded by `max`.
///
/// `to` defaults to `default_to` (the newest data, so a sped-up simulation still shows its
/// latest hour); `from` to `to - last`, `last` to `history`.
pub fn range(
    p: &Params,
    default_to: i64,
    history: Duration,
    max: Duration,
) -> Result<(i64, i64), ApiError> {
    let to = p.instant("to")?.unwrap_or(default_to);
    let last = p.duration("last")?;
    let from = match (p.instant("from")?, last) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("give either from or last, not both"));
        }
        (Some(from), None) => from,
        (None, last) => to.saturating_sub(nanos(last.unwrap_or(history))),
    };
    if from >= to {
        return Err(ApiError::bad_request("from must be before to"));
    }
    if to.saturating_sub(from) > nanos(max) {
        return Err(ApiError::bad_request(format!(
            "the range is longer than the most one request may ask for ({}s); ask for less or \
             raise web.max_range",
            max.as_secs()
        )));
    }
    Ok((from, to))
}

pub fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Nanoseconds to milliseconds, as charts and `Date` take them.
pub fn ms(ts_ns: i64) -> f64 {
    ts_ns as f64 / 1e6
}

pub const NANOS_PER_MS: i64 = NANOS_PER_SEC / 1_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)], accepted: &[&str]) -> Result<Params, ApiError> {
        Params::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), accepted)
    }

    #[test]
    fn unknown_parameters_are_named() {
        let err = params(&[("devcie", "pump-01")], &["device", "limit"]).err().unwrap();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.message.contains("\"devcie\"") && err.message.contains("device, limit"));
    }

    #[test]
    fn instants_take_rfc3339_dates_and_milliseconds() {
        let p = params(
            &[("a", "1764000000000"), ("b", "2025-11-24T16:00:00Z"), ("c", "2025-11-24")],
            &["a", "b", "c"],
        )
        .unwrap();
        assert_eq!(p.instant("a").unwrap(), Some(1_764_000_000_000_000_000));
        assert_eq!(p.instant("b").unwrap(), Some(1_764_000_000_000_000_000));
        assert_eq!(p.instant("c").unwrap(), Some(1_763_942_400_000_000_000));
        let bad = params(&[("from", "yesterday")], &["from"]).unwrap().instant("from").unwrap_err();
        assert!(bad.message.contains("from=\"yesterday\""), "{bad}");
        // A time, just not one that nanoseconds since 1970 hold: said so, not "not a time".
        let far = params(&[("to", "2999-01-01")], &["to"]).unwrap().instant("to").unwrap_err();
        assert!(far.message.contains("outside the supported range"), "{far}");
    }

    #[test]
    fn durations_need_one_number_and_a_unit() {
        let p = params(
            &[("a", "15m"), ("b", "2d"), ("c", "15"), ("d", "1h30m")],
            &["a", "b", "c", "d"],
        )
        .unwrap();
        assert_eq!(p.duration("a").unwrap(), Some(Duration::from_secs(900)));
        assert_eq!(p.duration("b").unwrap(), Some(Duration::from_secs(172_800)));
        assert!(p.duration("c").is_err());
        assert!(p.duration("d").is_err());
    }

    #[test]
    fn ranges_default_to_the_history_before_the_newest_data_and_are_bounded() {
        let h = Duration::from_secs(3_600);
        let max = Duration::from_secs(86_400);
        let s = NANOS_PER_SEC;
        let p = params(&[], &["from", "to", "last"]).unwrap();
        assert_eq!(range(&p, 10_000 * s, h, max).unwrap(), (6_400 * s, 10_000 * s));
        let p = params(&[("last", "10m")], &["from", "to", "last"]).unwrap();
        assert_eq!(range(&p, 10_000 * s, h, max).unwrap(), (9_400 * s, 10_000 * s));
        let p = params(&[("last", "2d")], &["from", "to", "last"]).unwrap();
        assert!(range(&p, 10_000 * s, h, max).unwrap_err().message.contains("web.max_range"));
        let p = params(&[("from", "5000000"), ("to", "4000000")], &["from", "to", "last"]).unwrap();
        assert!(range(&p, 0, h, max).is_err());
        let p = params(&[("from", "1"), ("last", "1h")], &["from", "to", "last"]).unwrap();
        assert!(range(&p, 0, h, max).is_err());
    }

    #[test]
    fn counts_are_bounded() {
        let p = params(&[("limit", "0"), ("n", "50"), ("x", "-3")], &["limit", "n", "x"]).unwrap();
        assert!(p.count("limit", 1, 1000).is_err());
        assert_eq!(p.count("n", 1, 1000).unwrap(), Some(50));
        assert!(p.count("x", 1, 1000).is_err());
    }
}
