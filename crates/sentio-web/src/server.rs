//! Serving the router over HTTP/1.1, with the limit `axum::serve` lacks: a client gets
//! [`HEADER_TIMEOUT`] to send each request's header, so one that connects and says nothing,
//! trickles a header, or keeps an idle connection open, is disconnected instead of held for ever.
//! `axum::serve` sets no timer on hyper, which leaves hyper's own header timeout off; this is the
//! same loop (hyper's HTTP/1 connection per accepted socket, graceful shutdown on `stop`) with
//! the timer set.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a client has to send a request's whole header, counted from when the server starts
/// waiting for it: on a new connection, and on a kept-alive one after each response (hyper
/// restarts the timer then), so this is the keep-alive idle timeout too. A response being sent
/// (a long event stream) is not waiting for a request and is never cut. 30 s, hyper's own
/// default: far above a real client's header time, and browsers reconnect quietly when an idle
/// connection they kept is closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// After an accept error that is not one connection's own (out of file descriptors), how long to
/// wait before accepting again, rather than spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `stop` fires; then stops accepting, lets each connection
/// finish the response it is sending (idle ones close at once) and returns when all are closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    stop: CancellationToken,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                tracing::error!(error = %e, "accepting a dashboard connection failed");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let conn = http.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(app.clone()));
        let stop = stop.clone();
        connections.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let served = tokio::select! {
                served = conn.as_mut() => served,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = served {
                // A timed-out header, a client gone mid-response: that client's business.
                tracing::debug!(%peer, error = %e, "dashboard connection ended");
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// An accept error that concerns only the connection being accepted (as `axum::serve` tells).
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

/// What to warn of when the dashboard listens on `addr`: with no token, anyone who can reach an
/// address other than loopback reads everything it shows. `None` when there is nothing to say.
pub fn exposure_warning(addr: SocketAddr, token: Option<&str>) -> Option<String> {
    if token.is_some() || addr.ip().to_canonical().is_loopback() {
        return None;
    }
    Some(format!(
        "the dashboard listens on {addr}, which other machines can reach, and no token is set: \
         anyone on the network can read every reading, alert and model without logging in. Set \
         web.token (SENTIO__WEB__TOKEN) or web.token_file (a file holding the token) to require \
         one, or listen on 127.0.0.1 only"
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;
    use std::time::Instant;

    use sentio_store::ReadingStore;
    use sentio_store::sqlite::SqliteStore;
    use sentio_tracking::LocalTracking;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio_util::sync::CancellationToken;

    use crate::{Web, WebSettings};

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(1);
    /// Far longer than TIMEOUT: a connection still open then is held.
    const DEADLINE: Duration = Duration::from_secs(6);

    struct Served {
        _dir: tempfile::TempDir,
        addr: std::net::SocketAddr,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<anyhow::Result<()>>,
    }

    async fn served() -> Served {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_in_memory().unwrap();
        store.migrate().await.unwrap();
        let tracking = LocalTracking::open(dir.path()).unwrap();
        let settings = WebSettings {
            model_name: "m".into(),
            profile_models: Default::default(),
            alias: "champion".into(),
            readings_topic: "sensor-data".into(),
            dead_letter_topic: "sensor-data.dlq".into(),
            ingest_group: "sentio-ingest".into(),
            history: Duration::from_secs(3_600),
            max_range: Duration::from_secs(86_400),
            token: None,
            poll: Duration::from_millis(50),
        };
        let web =
            Web::new(Arc::new(store), Arc::new(tracking), settings).with_header_timeout(TIMEOUT);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(web.serve(listener, stop.clone()));
        Served { _dir: dir, addr, stop, task }
    }

    /// Reads until the server closes the connection; what it sent, and how long that took.
    async fn read_to_close(stream: &mut TcpStream) -> (String, Duration) {
        let started = Instant::now();
        let mut seen = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let read = tokio::time::timeout(DEADLINE, stream.read(&mut buf)).await;
            match read.expect("the server still holds the connection") {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        (String::from_utf8_lossy(&seen).into_owned(), started.elapsed())
    }

    async fn stopped(s: Served) {
        s.stop.cancel();
        tokio::time::timeout(DEADLINE, s.task).await.unwrap().unwrap().unwrap();
    }

    #[test]
    fn listening_beyond_loopback_without_a_token_is_warned_of() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        for open in ["0.0.0.0:8080", "[::]:8080", "192.168.1.20:80", "[::ffff:10.0.0.1]:80"] {
            let warning = exposure_warning(addr(open), None).expect(open);
            assert!(warning.contains(&addr(open).to_string()), "{warning}");
            assert!(warning.contains("web.token (SENTIO__WEB__TOKEN)"), "{warning}");
            assert!(warning.contains("web.token_file"), "{warning}");
            assert_eq!(exposure_warning(addr(open), Some("t")), None, "a token is set");
        }
        for local in ["127.0.0.1:8080", "127.3.4.5:1", "[::1]:8080", "[::ffff:127.0.0.1]:80"] {
            assert_eq!(exposure_warning(addr(local), None), None, "{local}");
        }
    }

    /// A client that connects and sends nothing, or only part of a header, is disconnected once
    /// the header timeout has passed, not held for ever.
    #[tokio::test]
    async fn silent_and_slow_clients_are_disconnected_after_the_header_timeout() {
        let s = served().await;
        let mut silent = TcpStream::connect(s.addr).await.unwrap();
        let mut slow = TcpStream::connect(s.addr).await.unwrap();
        slow.write_all(b"GET /api/overview HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        for stream in [&mut silent, &mut slow] {
            let (_, waited) = read_to_close(stream).await;
            assert!(waited < TIMEOUT * 3, "{waited:?}");
        }
        stopped(s).await;
    }

    /// A kept-alive connection is answered, then closed once idle for the timeout.
    #[tokio::test]
    async fn an_idle_kept_alive_connection_is_closed_after_the_timeout() {
        let s = served().await;
        let mut stream = TcpStream::connect(s.addr).await.unwrap();
        let started = Instant::now();
        stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let (seen, _) = read_to_close(&mut stream).await;
        assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
        assert!(started.elapsed() >= TIMEOUT, "closed while the response was fresh");
        stopped(s).await;
    }

    /// The timeout is on waiting for a request, not on a long response: an event stream that
    /// outlives it stays open.
    #[tokio::test]
    async fn an_event_stream_outlives_the_header_timeout() {
        let s = served().await;
        let mut stream = TcpStream::connect(s.addr).await.unwrap();
        stream.write_all(b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut seen = Vec::new();
        let until = tokio::time::Instant::now() + TIMEOUT * 3;
        let mut buf = [0u8; 8192];
        while let Ok(read) = tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            let n = read.unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        assert!(String::from_utf8_lossy(&seen).contains("text/event-stream"));
        stopped(s).await;
    }
}
