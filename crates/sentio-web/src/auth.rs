//! The optional bearer token: when `web.token` is set, every request (pages, API, live feed)
//! needs it, as `Authorization: Bearer <token>` or as the `sentio_token` cookie. Opening any page
//! with `?token=<token>` once sets that cookie (HttpOnly, SameSite=Strict) and redirects to the
//! same page without the token in its address.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::Web;
use crate::params::ApiError;

const COOKIE: &str = "sentio_token";

pub async fn require_token(State(web): State<Web>, request: Request, next: Next) -> Response {
    let Some(expected) = web.settings.token.as_deref() else {
        return next.run(request).await;
    };
    if let Some(given) = bearer(request.headers()).or_else(|| cookie(request.headers()))
        && same(given, expected)
    {
        return next.run(request).await;
    }
    // The login link: `?token=` on a page sets the cookie.
    if let Some((given, rest)) = token_in_query(request.uri().query())
        && same(&given, expected)
        && !request.uri().path().starts_with("/api/")
    {
        // One leading slash: `//evil.com/` would be a protocol-relative address of another host.
        let path = format!("/{}", request.uri().path().trim_start_matches(['/', '\\']));
        let location = if rest.is_empty() { path } else { format!("{path}?{rest}") };
        let cookie = format!("{COOKIE}={given}; Path=/; HttpOnly; SameSite=Strict");
        let mut response = StatusCode::SEE_OTHER.into_response();
        let headers = response.headers_mut();
        if let (Ok(l), Ok(c)) = (HeaderValue::from_str(&location), HeaderValue::from_str(&cookie)) {
            headers.insert(header::LOCATION, l);
            headers.insert(header::SET_COOKIE, c);
            return response;
        }
    }
    let mut response = ApiError {
        status: StatusCode::UNAUTHORIZED,
        message: "this dashboard needs a token: send `Authorization: Bearer <token>`, or open \
                  any page once with ?token=<token> (the token is web.token / SENTIO__WEB__TOKEN \
                  on the server)"
            .into(),
    }
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"sentio\""));
    response
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// The `token` parameter, percent-decoded, and the rest of the query string.
fn token_in_query(query: Option<&str>) -> Option<(String, String)> {
    let query = query?;
    let mut token = None;
    let mut rest = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("token", v)) => token = Some(percent_decode(v)?),
            _ => rest.push(pair),
        }
    }
    Some((token?, rest.join("&")))
}

fn percent_decode(v: &str) -> Option<String> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Compares digests, so the time taken does not depend on where the strings differ.
fn same(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_parameter_is_decoded_and_removed_from_the_query() {
        assert_eq!(
            token_in_query(Some("a=1&token=s%20e+c&b=2")),
            Some(("s e c".to_owned(), "a=1&b=2".to_owned()))
        );
        assert_eq!(token_in_query(Some("a=1")), None);
        assert_eq!(token_in_query(Some("token=%zz")), None);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("ab", "abc"));
    }
}
