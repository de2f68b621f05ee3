//! The names MLflow accepts. The local backend checks them before touching a path (a key becomes
//! a file name there); the MLflow server checks them itself.

use crate::TrackingError;

/// MLflow's limit on param, metric and tag keys.
pub const MAX_KEY_LEN: usize = 250;

/// A param, metric or tag key: letters, digits, `_ - . /` and spaces; not a path that climbs
/// (`..`), not absolute.
pub fn key(op: &'static str, what: &str, key: &str) -> Result<(), TrackingError> {
    let invalid = |reason: &str| TrackingError::Invalid {
        op,
        what: format!("{what} key {key:?}"),
        reason: reason.to_owned(),
    };
    if key.is_empty() {
        return Err(invalid("empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(invalid("longer than 250 characters"));
    }
    if !key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ' ')) {
        return Err(invalid("only letters, digits, '_', '-', '.', '/' and spaces are allowed"));
    }
    if key.starts_with('/')
        || key.split('/').any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(invalid("not a relative path of plain names"));
    }
    Ok(())
}

/// A registered model's name: anything printable but `/` (it is a folder name locally).
pub fn model_name(op: &'static str, name: &str) -> Result<(), TrackingError> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.chars().any(|c| c == '/' || c == '\\' || c.is_control());
    if bad {
        return Err(TrackingError::Invalid {
            op,
            what: format!("model name {name:?}"),
            reason: "must be non-empty, without '/', '\\' or control characters".to_owned(),
        });
    }
    Ok(())
}

/// An alias: letters, digits, `_` and `-`; not `latest` and not `v<number>` (MLflow reserves
/// both).
pub fn alias(op: &'static str, alias: &str) -> Result<(), TrackingError> {
    let lower = alias.to_ascii_lowercase();
    let reserved = lower == "latest"
        || (lower.len() > 1
            && lower.starts_with('v')
            && lower[1..].chars().all(|c| c.is_ascii_digit()));
    let bad = alias.is_empty()
        || alias.len() > 255
        || !alias.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bad || reserved {
        return Err(TrackingError::Invalid {
            op,
            what: format!("alias {alias:?}"),
            reason: "letters, digits, '_' and '-' only, and not 'latest' or 'v<number>'".to_owned(),
        });
    }
    Ok(())
}

/// An id that becomes a folder name: hex digits, optionally after `m-` (logged models) or
/// decimal (experiments).
pub fn id(op: &'static str, what: &str, id: &str) -> Result<(), TrackingError> {
    let body = id.strip_prefix("m-").unwrap_or(id);
    if body.is_empty() || body.len() > 64 || !body.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(TrackingError::Invalid {
            op,
            what: format!("{what} {id:?}"),
            reason: "not an id this backend made".to_owned(),
        });
    }
    Ok(())
}

/// A relative artifact path (`""` for the root): plain names separated by `/`.
pub fn artifact_path(op: &'static str, path: &str) -> Result<(), TrackingError> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(());
    }
    if path.starts_with('/')
        || trimmed.split('/').any(|p| p.is_empty() || p == "." || p == "..")
        || path.contains('\\')
    {
        return Err(TrackingError::Invalid {
            op,
            what: format!("artifact path {path:?}"),
            reason: "must be relative, without '.' or '..' parts".to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for ok in ["loss", "val/loss", "a b.c-d_e", "x/y/z"] {
            assert!(key("t", "metric", ok).is_ok(), "{ok}");
        }
        for bad in ["", "/abs", "../up", "a/../b", "a//b", "a/", "é", "a:b", &"k".repeat(251)] {
            assert!(key("t", "metric", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn aliases() {
        assert!(alias("t", "champion").is_ok());
        assert!(alias("t", "v2-candidate").is_ok());
        for bad in ["", "latest", "v1", "V12", "a b", "a/b"] {
            assert!(alias("t", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_and_paths() {
        assert!(id("t", "run", "0123456789abcdef0123456789abcdef").is_ok());
        assert!(id("t", "model", "m-0123abcd").is_ok());
        assert!(id("t", "experiment", "12").is_ok());
        assert!(id("t", "run", "../x").is_err());
        assert!(artifact_path("t", "").is_ok());
        assert!(artifact_path("t", "model/weights").is_ok());
        assert!(artifact_path("t", "../x").is_err());
        assert!(artifact_path("t", "/x").is_err());
    }
}
