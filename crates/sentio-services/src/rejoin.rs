//! The watchdog for a consumer-group member left without partitions: off by default.
//!
//! Some Kafka-compatible brokers can keep a member in its group, heartbeating happily, with nothing
//! assigned, for good (Tansu 0.6 did when a group's only member died and its replacement joined in
//! the last seconds of the dead member's session). Apache Kafka does not: the crash loop's 20
//! `kill -9`s of the only ingest member, and the failover tests, pass against it with the
//! watchdog off (docs/kafka.md).
//!
//! Where it is on (`ingest.rejoin_after`), a consumer that has had no partitions for `limit` since
//! it subscribed, or since it lost the last of them in a rebalance, is dropped and a fresh one
//! subscribes. The limit doubles on each retry, up to [`MAX_LIMIT`], and starts over once
//! partitions arrive. The cost: in a group with more members than partitions a member may rightly
//! hold nothing for as long as it lives, and each of its rejoins costs the group a rebalance; the
//! doubling bounds that churn to one rejoin per [`MAX_LIMIT`] per idle member.

use std::time::Duration;

use sentio_bus::{Bus, BusError, Consumer};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The longest wait between two rejoins of a member that keeps getting nothing.
pub const MAX_LIMIT: Duration = Duration::from_secs(600);

/// Tracks how long a member has held no partitions and says when to join again.
#[derive(Debug, Clone)]
pub struct RejoinWatch {
    /// The first limit; `None` when the watchdog is off.
    base: Option<Duration>,
    limit: Duration,
    /// Since when the member has held nothing; `None` while it holds partitions.
    empty_since: Option<Instant>,
    /// Whether the member held partitions since it (last) subscribed.
    had_partitions: bool,
}

/// A member that has held nothing for its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overdue {
    /// How long it has held nothing.
    pub waited: Duration,
    /// Whether it had partitions (and lost them all) or never got any since it subscribed.
    pub had_partitions: bool,
    /// The limit after this rejoin.
    pub next_limit: Duration,
}

impl Overdue {
    /// Says, once per rejoin, why the member of `group` leaves.
    pub fn warn(&self, group: &str) {
        tracing::warn!(
            group,
            waited = %humantime::format_duration(self.waited),
            next_limit = %humantime::format_duration(self.next_limit),
            reason = if self.had_partitions {
                "a rebalance took all its partitions"
            } else {
                "none assigned since it joined"
            },
            "no partitions for too long; leaving the group and joining it again"
        );
    }
}

impl RejoinWatch {
    /// A watch for a member that subscribed at `now`; a zero `limit` turns it off.
    pub fn new(limit: Duration, now: Instant) -> Self {
        let base = (!limit.is_zero()).then(|| limit.min(MAX_LIMIT));
        RejoinWatch {
            base,
            limit: base.unwrap_or(MAX_LIMIT),
            empty_since: Some(now),
            had_partitions: false,
        }
    }

    /// Records whether the member holds partitions at `now`; returns what to report when it has
    /// held none for the limit and should join again.
    pub fn observe(&mut self, holds_partitions: bool, now: Instant) -> Option<Overdue> {
        let base = self.base?;
        if holds_partitions {
            self.empty_since = None;
            self.had_partitions = true;
            self.limit = base;
            return None;
        }
        let since = *self.empty_since.get_or_insert(now);
        // Whole milliseconds, for the log.
        let waited = Duration::from_millis(
            u64::try_from(now.saturating_duration_since(since).as_millis()).unwrap_or(u64::MAX),
        );
        (waited >= self.limit).then(|| Overdue {
            waited,
            had_partitions: self.had_partitions,
            next_limit: self.next_limit(),
        })
    }

    /// The member subscribed again at `now`: the clock restarts, with the limit doubled.
    pub fn rejoined(&mut self, now: Instant) {
        self.limit = self.next_limit();
        self.empty_since = Some(now);
        self.had_partitions = false;
    }

    /// The current limit (`None` when off).
    pub fn limit(&self) -> Option<Duration> {
        self.base.map(|_| self.limit)
    }

    fn next_limit(&self) -> Duration {
        self.limit.saturating_mul(2).min(MAX_LIMIT)
    }
}

/// Leaves the group (drops `old`, off the async threads: librdkafka's close blocks while it says
/// goodbye to the coordinator) and subscribes again as a new member. A bus that cannot be reached
/// is retried until `stop` fires, which gives `None`; any other error is returned.
pub async fn subscribe_again(
    bus: &dyn Bus,
    old: Box<dyn Consumer>,
    topic: &str,
    group: &str,
    stop: &CancellationToken,
) -> Result<Option<Box<dyn Consumer>>, BusError> {
    // A panic while closing only costs the goodbye: the broker expires the member by itself.
    let _ = tokio::task::spawn_blocking(move || drop(old)).await;
    let mut delay = Duration::from_millis(500);
    loop {
        let attempt = tokio::select! {
            biased;
            _ = stop.cancelled() => return Ok(None),
            attempt = bus.subscribe(topic, group) => attempt,
        };
        match attempt {
            Ok(consumer) => return Ok(Some(consumer)),
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, group, "joining the group again failed; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_member_never_assigned_is_due_after_the_limit_then_doubles_up_to_the_cap() {
        let t0 = Instant::now();
        let mut w = RejoinWatch::new(30 * S, t0);
        assert_eq!(w.observe(false, t0 + 29 * S), None);
        let due = w.observe(false, t0 + 30 * S).unwrap();
        assert_eq!(due, Overdue { waited: 30 * S, had_partitions: false, next_limit: 60 * S });
        w.rejoined(t0 + 31 * S);
        assert_eq!(w.observe(false, t0 + 90 * S), None, "60 s from the rejoin");
        assert!(w.observe(false, t0 + 91 * S).is_some());
        let mut at = t0 + 91 * S;
        let mut limits = vec![];
        for _ in 0..6 {
            w.rejoined(at);
            limits.push(w.limit().unwrap().as_secs());
            at += w.limit().unwrap();
            assert!(w.observe(false, at).is_some());
        }
        assert_eq!(limits, [120, 240, 480, 600, 600, 600]);
    }

    #[test]
    fn partitions_reset_the_clock_and_the_limit_and_losing_them_starts_it() {
        let t0 = Instant::now();
        let mut w = RejoinWatch::new(10 * S, t0);
        w.rejoined(t0 + 10 * S);
        assert_eq!(w.limit(), Some(20 * S));
        assert_eq!(w.observe(true, t0 + 15 * S), None);
        assert_eq!(w.limit(), Some(10 * S), "an assignment starts the backoff over");
        assert_eq!(w.observe(true, t0 + 500 * S), None, "holding partitions is never due");
        // Lost them all in a rebalance at 600 s.
        assert_eq!(w.observe(false, t0 + 600 * S), None);
        assert_eq!(w.observe(false, t0 + 609 * S), None);
        let due = w.observe(false, t0 + 610 * S).unwrap();
        assert!(due.had_partitions);
        assert_eq!(due.waited, 10 * S);
    }

    #[test]
    fn a_zero_limit_turns_the_watch_off_and_a_huge_one_is_capped() {
        let t0 = Instant::now();
        let mut off = RejoinWatch::new(Duration::ZERO, t0);
        assert_eq!(off.observe(false, t0 + 100_000 * S), None);
        assert_eq!(off.limit(), None);
        let capped = RejoinWatch::new(3_600 * S, t0);
        assert_eq!(capped.limit(), Some(MAX_LIMIT));
    }
}
