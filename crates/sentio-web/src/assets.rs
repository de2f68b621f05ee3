//! The pages, embedded in the binary: one HTML shell with hash routes (`#/`, `#/device/<id>`,
//! `#/alerts`, `#/model`, `#/pipeline`), its script and style, and uPlot (MIT, from the npm
//! registry: `scripts/ui-vendor.sh` fetches and checks it). The browser loads nothing from
//! elsewhere; the Content-Security-Policy says so.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::Web;

const INDEX: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const UPLOT_JS: &str = include_str!("../assets/vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../assets/vendor/uPlot.min.css");

const ICON: &str = "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'>\
<rect width='16' height='16' rx='3' fill='#0f1419'/><path d='M1 10h4l2-6 2 9 2-5h4' \
stroke='#58a6ff' stroke-width='1.6' fill='none'/></svg>";

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";

pub fn routes() -> Router<Web> {
    Router::new()
        .route("/", get(|| async { page() }))
        .route("/app.js", get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }))
        .route("/app.css", get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }))
        .route(
            "/vendor/uPlot.iife.min.js",
            get(|| async { asset(UPLOT_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/vendor/uPlot.min.css",
            get(|| async { asset(UPLOT_CSS, "text/css; charset=utf-8") }),
        )
        .route("/favicon.ico", get(|| async { asset(ICON, "image/svg+xml") }))
        .fallback(not_found)
}

fn page() -> Response {
    let mut r = asset(INDEX, "text/html; charset=utf-8");
    r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    r
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    crate::params::ApiError::not_found(format!(
        "nothing at {}; the pages are at / and the API under /api (docs/api.md)",
        uri.path()
    ))
    .into_response()
}
