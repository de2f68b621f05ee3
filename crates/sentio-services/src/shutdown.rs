//! Graceful shutdown shared by every role of a process.

use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A cancellation token (the "stop" signal every service loop selects on) and the tracker of the
/// tasks that must finish before the process exits. A task that fails cancels the others.
#[derive(Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    /// Cancelled only when a task fails (not on a signal): work that waits on a failed role, such
    /// as a producer waiting for room on a bus nobody consumes any more, gives up on it.
    failed: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Cancelled once a task has failed or panicked.
    pub fn failed(&self) -> CancellationToken {
        self.failed.clone()
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Starts the drain.
    pub fn cancel(&self) {
        self.token.cancel();
    }

    /// Runs `task` under the tracker; if it fails or panics, logs the error and cancels everything
    /// else. A panic becomes the task's error (naming the task and the panic's message), so the
    /// process drains and exits with it instead of running on without that role.
    pub fn spawn<F>(
        &self,
        name: &'static str,
        task: F,
    ) -> tokio::task::JoinHandle<anyhow::Result<()>>
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let token = self.token.clone();
        let failed = self.failed.clone();
        self.tracker.spawn(async move {
            let result = match std::panic::AssertUnwindSafe(task).catch_unwind().await {
                Ok(result) => result,
                Err(panic) => Err(anyhow::anyhow!(
                    "the {name} task panicked: {}; please report this with the log",
                    panic_message(panic.as_ref())
                )),
            };
            if let Err(e) = &result {
                tracing::error!(
                    task = name,
                    error = format!("{e:#}"),
                    "task failed; shutting down"
                );
                failed.cancel();
                token.cancel();
            }
            result
        })
    }

    /// Cancels when SIGINT (Ctrl-C) or SIGTERM arrives.
    pub fn cancel_on_signals(&self) {
        let token = self.token.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = signal() => {
                    tracing::info!("signal received, draining");
                    token.cancel();
                }
                _ = token.cancelled() => {}
            }
        });
    }

    /// Waits for every tracked task, at most `grace` after cancellation; returns whether all ended.
    pub async fn wait(&self, grace: Duration) -> bool {
        self.tracker.close();
        let done = self.tracker.wait();
        tokio::pin!(done);
        tokio::select! {
            _ = &mut done => return true,
            _ = self.token.cancelled() => {}
        }
        tokio::time::timeout(grace, done).await.is_ok()
    }
}

/// The text a panic was raised with (`panic!("...")` carries a `&str` or a `String`).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// A panicking role must bring the process down with a clear error: before, the panic
    /// vanished into the tracker and the others (a simulator waiting for room on the bus) hung.
    #[tokio::test]
    async fn a_panicking_task_cancels_the_others_and_fails_with_its_message() {
        let shutdown = Shutdown::new();
        let token = shutdown.token();
        let waiting = shutdown.spawn("simulate", async move {
            token.cancelled().await;
            Ok(())
        });
        let panicking = shutdown.spawn("ingest", async {
            let v: Vec<u8> = Vec::new();
            let i = v.len() + 3;
            let _ = &v[..i];
            Ok(())
        });
        let err = panicking.await.unwrap().unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("the ingest task panicked"), "{text}");
        assert!(text.contains("range end index 3 out of range"), "{text}");
        assert!(shutdown.is_cancelled());
        assert!(shutdown.failed().is_cancelled());
        waiting.await.unwrap().unwrap();
        assert!(shutdown.wait(Duration::from_secs(1)).await);
    }
}
