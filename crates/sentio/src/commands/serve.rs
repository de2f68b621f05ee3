//! `sentio serve`: the dashboard and its JSON API, on its own.

use sentio_config::{BusKind, Config};
use sentio_services::shutdown::Shutdown;

use crate::wiring;

/// Serves the dashboard: an overview of every device (normal or alerting, with its latest
/// readings), a page per device (the four sensors, the anomaly score against the threshold, alert
/// spans marked), alerts (filter by device, sensor, severity), the model (versions, champion, loss
/// curves, threshold, training data) and the pipeline (readings/s, consumer lag, dead letters,
/// detection latency), all updating live. The JSON API behind them is in docs/api.md.
///
/// It only reads: the store (store.kind), the registry (tracking.kind) and, with bus.kind =
/// "kafka", the bus's end offsets for consumer lag. It listens on web.bind (127.0.0.1:8080:
/// this machine only); set web.token (SENTIO__WEB__TOKEN) to require a bearer token, then open
/// the dashboard once as http://HOST:PORT/?token=TOKEN. `sentio demo` starts the same dashboard.
#[derive(clap::Args)]
pub struct Args {
    /// Address and port to listen on (overrides web.bind), e.g. 0.0.0.0:8080.
    #[arg(long, value_name = "ADDR:PORT")]
    bind: Option<String>,
}

pub async fn run(mut config: Config, args: Args) -> anyhow::Result<()> {
    if let Some(bind) = args.bind {
        config.web.bind = bind;
    }
    config.validate()?;
    let addr = config.web.socket_addr()?;
    let store = wiring::open_store(&config).await?;
    let tracking = wiring::open_tracking(&config)?;
    let bus = match config.bus.kind {
        BusKind::Kafka => Some(wiring::open_bus(&config, Some(store.as_ref())).await?),
        // An in-memory bus lives in the process that runs it (`sentio demo`); there is none here.
        BusKind::Memory => None,
    };
    let web = wiring::web(&config, store, tracking, bus);
    let listener = sentio_web::bind(addr).await?;
    let shutdown = Shutdown::new();
    shutdown.cancel_on_signals();
    say!("sentio serve: dashboard at {}", url(&config, listener.local_addr()?));
    web.serve(listener, shutdown.token()).await
}

/// The address to open, with the login parameter when a token is set.
pub fn url(config: &Config, addr: std::net::SocketAddr) -> String {
    let host =
        if addr.ip().is_unspecified() { "127.0.0.1".to_owned() } else { addr.ip().to_string() };
    let login = if config.web.token.is_empty() { "" } else { "/?token=<web.token>" };
    format!("http://{host}:{}{login}", addr.port())
}
