//! Sentio's dashboard: `sentio serve` and the dashboard `sentio demo` starts.
//!
//! Read-only. Everything comes from the ports the other roles write to: readings, scores and
//! alerts from the store, models from the registry, lag from the bus, so the dashboard shows the
//! same whether it runs beside the detector (`demo`) or on its own against PostgreSQL, Kafka and
//! MLflow (`serve`).
//!
//! - [`api`]: the JSON API behind the pages (documented in `docs/api.md`).
//! - [`params`]: query parameters, refused with a 400 that says what was expected.
//! - [`auth`]: the optional bearer token.
//! - [`feed`]: live updates as server-sent events, from one poller shared by every client.
//! - [`assets`]: the pages, the script and the chart library, embedded in the binary.
//! - [`server`]: HTTP/1.1 over a TCP listener, with a header timeout; the warning for a dashboard
//!   open to the network without a token.

pub mod api;
pub mod assets;
pub mod auth;
pub mod feed;
pub mod params;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::{HeaderValue, header};
use sentio_bus::Bus;
use sentio_store::ReadingStore;
use sentio_tracking::Tracking;
use tokio_util::sync::CancellationToken;
use tower_http::compression::CompressionLayer;
use tower_http::set_header::SetResponseHeaderLayer;

/// What the detector running in the same process knows and the store does not: how long
/// scoring takes. `sentio demo` provides it; `sentio serve` alone has none.
pub trait LiveProbe: Send + Sync {
    /// Event time of a window's newest reading to its score, in milliseconds: (p50, p99, count).
    fn scoring_latency_ms(&self) -> Option<(f64, f64, u64)>;
    /// Windows scored since the detector started.
    fn windows_scored(&self) -> u64;
    /// The event time the pipeline is at, when it is not the wall clock's: a sped-up demo
    /// replaying its history. The dashboard then measures "recent" and "live" against it, so the
    /// replay shows as live instead of as stale. `None` (the default): the wall clock.
    fn event_clock_ns(&self) -> Option<i64> {
        None
    }
}

/// A bridge running in the same process (`sentio demo`: its HTTP ingest endpoint, and with
/// --mqtt its MQTT bridge), for the pipeline page.
pub trait BridgeProbe: Send + Sync {
    fn status(&self) -> BridgeStatus;
}

/// What a bridge reports: its counters since it started.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeStatus {
    /// "mqtt" or "http".
    pub kind: &'static str,
    /// Where it takes readings from: the broker's address, or the endpoint's path.
    pub endpoint: String,
    /// For MQTT: whether the broker connection is up.
    pub connected: Option<bool>,
    /// MQTT messages taken in, or HTTP requests answered.
    pub messages: u64,
    pub readings: u64,
    /// Readings that carried no timestamp and took their arrival time.
    pub arrival_time: u64,
    pub dead_letters: u64,
    /// For HTTP: requests refused whole (401, 413, 429, ...).
    pub refused: Option<u64>,
}

/// Now, for the dashboard: the probe's event clock when it has one, else the wall clock.
pub(crate) fn clock_ns(probe: Option<&Arc<dyn LiveProbe>>) -> i64 {
    probe.and_then(|p| p.event_clock_ns()).unwrap_or_else(sentio_core::time::now_ns)
}

/// Where the dashboard reads from, and how it behaves.
#[derive(Clone)]
pub struct WebSettings {
    /// Registered model name the detector follows for the pump (and the model page's default).
    pub model_name: String,
    /// Per asset profile, its registered model (the model page's profile choice); may be empty.
    pub profile_models: std::collections::BTreeMap<String, String>,
    /// The alias that marks the model in use (`champion`).
    pub alias: String,
    pub readings_topic: String,
    pub dead_letter_topic: String,
    /// The ETL's consumer group (its offsets in the store measure consumer lag).
    pub ingest_group: String,
    /// History a page loads when it opens.
    pub history: Duration,
    /// The longest range one request may ask for.
    pub max_range: Duration,
    /// Bearer token; `None` when no token is needed.
    pub token: Option<String>,
    /// How often the live feed polls the store.
    pub poll: Duration,
}

/// Everything a handler needs.
#[derive(Clone)]
pub struct Web {
    pub(crate) store: Arc<dyn ReadingStore>,
    pub(crate) tracking: Arc<dyn Tracking>,
    pub(crate) bus: Option<Arc<dyn Bus>>,
    pub(crate) probe: Option<Arc<dyn LiveProbe>>,
    pub(crate) bridges: Vec<Arc<dyn BridgeProbe>>,
    pub(crate) settings: Arc<WebSettings>,
    pub(crate) feed: feed::Feed,
    pub(crate) rates: Arc<api::RateMeter>,
    pub(crate) models: Arc<api::ModelCache>,
    /// See [`server::HEADER_TIMEOUT`].
    pub(crate) header_timeout: Duration,
    /// Routes served beside the dashboard with their own rules (the ingest endpoint, which needs
    /// its own token, whatever the dashboard's).
    pub(crate) extra: Option<Router>,
}

impl Web {
    pub fn new(
        store: Arc<dyn ReadingStore>,
        tracking: Arc<dyn Tracking>,
        settings: WebSettings,
    ) -> Web {
        let settings = Arc::new(settings);
        Web {
            feed: feed::Feed::new(store.clone(), settings.poll),
            store,
            tracking,
            bus: None,
            probe: None,
            bridges: Vec::new(),
            settings,
            rates: Arc::default(),
            models: Arc::default(),
            header_timeout: server::HEADER_TIMEOUT,
            extra: None,
        }
    }

    /// How long a client may take to send a request's header, counted from when the server
    /// starts waiting for it (see [`server::HEADER_TIMEOUT`], the default).
    pub fn with_header_timeout(mut self, timeout: Duration) -> Web {
        self.header_timeout = timeout;
        self
    }

    /// Consumer lag comes from this bus's end offsets.
    pub fn with_bus(mut self, bus: Arc<dyn Bus>) -> Web {
        self.bus = Some(bus);
        self
    }

    /// Scoring latency from a detector in the same process.
    pub fn with_probe(mut self, probe: Arc<dyn LiveProbe>) -> Web {
        self.feed = self.feed.with_probe(probe.clone());
        self.probe = Some(probe);
        self
    }

    /// Reports a bridge of this process on the pipeline page.
    pub fn with_bridge(mut self, bridge: Arc<dyn BridgeProbe>) -> Web {
        self.bridges.push(bridge);
        self
    }

    /// Serves `routes` too, outside the dashboard's token check, headers and compression
    /// (`sentio demo` puts the ingest endpoint, which has a token of its own, on its port).
    pub fn with_routes(mut self, routes: Router) -> Web {
        self.extra = Some(routes);
        self
    }

    /// Every page and API route, behind the token check when a token is set.
    pub fn router(&self) -> Router {
        let routes = Router::new()
            .merge(api::routes())
            .merge(assets::routes())
            .method_not_allowed_fallback(|| async {
                params::ApiError {
                    status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
                    message: "the dashboard is read-only: only GET".into(),
                }
            });
        let routes: Router = routes
            .layer(axum::middleware::from_fn_with_state(self.clone(), auth::require_token))
            .layer(SetResponseHeaderLayer::overriding(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ))
            .layer(SetResponseHeaderLayer::overriding(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ))
            .layer(CompressionLayer::new())
            .with_state(self.clone());
        match &self.extra {
            Some(extra) => routes.merge(extra.clone()),
            None => routes,
        }
    }

    /// Serves on `listener` until `stop` fires; the live feed stops with it. Warns when the
    /// address is reachable from other machines and no token is set; clients get the header
    /// timeout ([`Web::with_header_timeout`]).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let addr = listener.local_addr().context("reading the dashboard's address")?;
        if let Some(warning) = server::exposure_warning(addr, self.settings.token.as_deref()) {
            tracing::warn!(%addr, "{warning}");
        }
        let feed = self.feed.clone();
        let poller = tokio::spawn(feed.run(stop.clone()));
        server::serve(listener, self.router(), self.header_timeout, stop).await;
        poller.abort();
        Ok(())
    }
}

/// Binds `addr`, with an error that says what to do when the port is taken.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            " (something else listens there: stop it or set web.bind / SENTIO__WEB__BIND to another port)"
        } else {
            ""
        };
        anyhow::Error::new(e).context(format!("cannot listen on {addr}{hint}"))
    })
}
