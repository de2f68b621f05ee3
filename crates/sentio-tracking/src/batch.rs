//! MLflow's `runs/log-batch` limits, and splitting what one call logs into requests within them.

use crate::Metric;

/// At most this many metrics in one `log-batch` request.
pub const MAX_METRICS: usize = 1000;
/// At most this many params in one request.
pub const MAX_PARAMS: usize = 100;
/// At most this many tags in one request.
pub const MAX_TAGS: usize = 100;
/// MLflow refuses request bodies over 1 MB; stay well below, leaving room for JSON overhead.
pub const MAX_BYTES: usize = 900 * 1000;

/// The JSON overhead of one entry beyond its strings (`{"key":"","value":…,"timestamp":…}`).
const ENTRY_OVERHEAD: usize = 96;

/// Splits `items` into consecutive chunks of at most `max_count` items and, by estimate, at most
/// `max_bytes` bytes of JSON each. An item larger than `max_bytes` alone gets a chunk of its own
/// (the server then refuses it with a clear message).
pub fn chunks<T>(
    items: &[T],
    max_count: usize,
    max_bytes: usize,
    size: impl Fn(&T) -> usize,
) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let item_bytes = size(item) + ENTRY_OVERHEAD;
        let count = i - start;
        if count > 0 && (count >= max_count || bytes + item_bytes > max_bytes) {
            out.push(&items[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += item_bytes;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

/// `chunks` for key/value pairs (params, tags) with MLflow's limit `max_count`.
pub fn pair_chunks(pairs: &[(String, String)], max_count: usize) -> Vec<&[(String, String)]> {
    chunks(pairs, max_count, MAX_BYTES, |(k, v)| k.len() + v.len())
}

/// `chunks` for metrics.
pub fn metric_chunks(metrics: &[Metric]) -> Vec<&[Metric]> {
    chunks(metrics, MAX_METRICS, MAX_BYTES, |m| m.key.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_by_count_keeping_order() {
        let metrics: Vec<Metric> = (0..2345).map(|i| Metric::new("loss", 0.5, i, i)).collect();
        let parts = metric_chunks(&metrics);
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [1000, 1000, 345]);
        let rejoined: Vec<Metric> = parts.concat();
        assert_eq!(rejoined, metrics);
        assert!(metric_chunks(&[]).is_empty());
    }

    #[test]
    fn splits_by_size() {
        let big = "x".repeat(6000);
        let params: Vec<(String, String)> =
            (0..250).map(|i| (format!("p{i}"), big.clone())).collect();
        let parts = pair_chunks(&params, MAX_PARAMS);
        assert!(parts.len() >= 3);
        for part in &parts {
            assert!(part.len() <= MAX_PARAMS);
            let bytes: usize = part.iter().map(|(k, v)| k.len() + v.len() + ENTRY_OVERHEAD).sum();
            assert!(bytes <= MAX_BYTES, "{bytes}");
        }
        assert_eq!(parts.concat(), params);
    }

    #[test]
    fn an_oversized_item_goes_alone() {
        let items = ["a".repeat(10), "b".repeat(2_000_000), "c".repeat(10)];
        let parts = chunks(&items, 100, MAX_BYTES, String::len);
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [1, 1, 1]);
    }
}
