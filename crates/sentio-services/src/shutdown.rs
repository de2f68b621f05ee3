//! Graceful shutdown shared by every role of a process.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A cancellation token (the "stop" signal every service loop selects on) and the tracker of the
/// tasks that must finish before the process exits. A task that fails cancels the others.
#[derive(Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Starts the drain.
    pub fn cancel(&self) {
        self.token.cancel();
    }

    /// Runs `task` under the tracker; if it fails, logs the error and cancels everything else.
    pub fn spawn<F>(
        &self,
        name: &'static str,
        task: F,
    ) -> tokio::task::JoinHandle<anyhow::Result<()>>
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let token = self.token.clone();
        self.tracker.spawn(async move {
            let result = task.await;
            if let Err(e) = &result {
                tracing::error!(
                    task = name,
                    error = format!("{e:#}"),
                    "task failed; shutting down"
                );
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
