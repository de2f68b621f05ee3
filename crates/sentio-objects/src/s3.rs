//! The S3 backend: [`s3`] opens one bucket of any S3-compatible server (AWS, MinIO, s3s) with
//! `object_store`'s `aws` client, and creates the bucket when it is missing ([`create_bucket`]).
//!
//! `object_store` has no CreateBucket, so the bucket check signs its own `HEAD` and `PUT` of the
//! bucket with `object_store`'s SigV4 signer ([`AwsAuthorizer`]), using the credential the store
//! itself resolved, and sends them with `object_store`'s HTTP client (reqwest) built from the same
//! [`ClientOptions`] as the store's. HEAD first, so that a deployment whose key may not create
//! buckets still starts when the bucket exists.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use object_store::ClientOptions;
use object_store::ObjectStore;
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsAuthorizer, AwsCredential};
use object_store::client::{HttpClient, HttpConnector, HttpRequestBody, ReqwestConnector};
use sentio_config::S3Config;

use crate::ObjectsError;

/// The region whose CreateBucket takes no `LocationConstraint` (AWS rejects one naming it).
const DEFAULT_REGION: &str = "us-east-1";

/// Opens the bucket `config.bucket` as an object store, creating the bucket when it is missing.
///
/// Fails when the endpoint does not answer, when the credentials are refused (a wrong secret
/// fails here, not at the first write) or when the bucket can be neither found nor created.
pub async fn s3(config: &S3Config) -> Result<Arc<dyn ObjectStore>, ObjectsError> {
    let (store, bucket) = connect(config).await?;
    bucket.ensure().await?;
    Ok(Arc::new(store))
}

/// What [`create_bucket`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketCreated {
    /// The bucket did not exist and now does.
    Created,
    /// The server answered 409: the bucket exists already (`BucketAlreadyOwnedByYou`, or
    /// `BucketAlreadyExists` on servers such as s3s that do not tell owners apart).
    AlreadyExisted,
}

/// Creates the bucket `config.bucket` (a signed `PUT`) without looking first; a bucket that exists
/// already is success. [`s3`] calls this when a `HEAD` of the bucket answers 404.
pub async fn create_bucket(config: &S3Config) -> Result<BucketCreated, ObjectsError> {
    let (_, bucket) = connect(config).await?;
    bucket.create().await
}

/// Builds the store (no I/O yet), resolves its credential and a client for bucket requests.
async fn connect(config: &S3Config) -> Result<(AmazonS3, Bucket<'_>), ObjectsError> {
    let target = Target::new(config);
    let options = ClientOptions::new().with_allow_http(config.allow_http);
    let open_error = |source| ObjectsError::S3Open {
        endpoint: target.endpoint.clone(),
        bucket: config.bucket.clone(),
        source,
    };

    let mut builder = AmazonS3Builder::new()
        .with_region(&config.region)
        .with_bucket_name(&config.bucket)
        .with_client_options(options.clone());
    // Both empty: object_store falls back to the environment's instance or task credentials.
    if !config.access_key_id.is_empty() {
        builder = builder.with_access_key_id(&config.access_key_id);
    }
    if !config.secret_access_key.is_empty() {
        builder = builder.with_secret_access_key(config.secret_access_key.expose());
    }
    builder = if config.path_style {
        let builder = builder.with_virtual_hosted_style_request(false);
        if config.endpoint.is_empty() { builder } else { builder.with_endpoint(&config.endpoint) }
    } else {
        // With virtual-hosted style, object_store takes the endpoint as the bucket's own.
        builder.with_virtual_hosted_style_request(true).with_endpoint(&target.bucket_url)
    };
    let store = builder.build().map_err(open_error)?;
    let client = ReqwestConnector::default().connect(&options).map_err(open_error)?;
    let credential = store.credentials().get_credential().await.map_err(|source| {
        ObjectsError::S3Credentials {
            endpoint: target.endpoint.clone(),
            bucket: config.bucket.clone(),
            source,
        }
    })?;
    Ok((store, Bucket { client, credential, config, target }))
}

/// Where the bucket lives: the endpoint as the user knows it (for messages) and the bucket's URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    endpoint: String,
    bucket_url: String,
}

impl Target {
    /// The bucket URL object_store uses: `endpoint/bucket` in path style, `bucket.host` otherwise;
    /// an empty endpoint means AWS in `config.region`.
    fn new(config: &S3Config) -> Self {
        let endpoint = if config.endpoint.is_empty() {
            format!("https://s3.{}.amazonaws.com", config.region)
        } else {
            config.endpoint.trim_end_matches('/').to_owned()
        };
        let bucket = &config.bucket;
        let bucket_url = if config.path_style {
            format!("{endpoint}/{bucket}")
        } else {
            match endpoint.split_once("://") {
                Some((scheme, host)) => format!("{scheme}://{bucket}.{host}"),
                None => format!("{bucket}.{endpoint}"),
            }
        };
        Self { endpoint, bucket_url }
    }
}

/// The CreateBucket body: none in us-east-1, a `LocationConstraint` elsewhere (AWS requires it).
fn create_bucket_body(config: &S3Config) -> Bytes {
    if config.region == DEFAULT_REGION {
        return Bytes::new();
    }
    Bytes::from(format!(
        "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
         <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
        config.region
    ))
}

/// Signed requests on the bucket itself (not on a key), which object_store does not offer.
struct Bucket<'a> {
    client: HttpClient,
    credential: Arc<AwsCredential>,
    config: &'a S3Config,
    target: Target,
}

impl Bucket<'_> {
    /// HEAD the bucket; on 404 create it.
    async fn ensure(&self) -> Result<(), ObjectsError> {
        let (status, _) = self.send("check", Method::HEAD, Bytes::new()).await?;
        match status {
            StatusCode::OK => {
                tracing::debug!(endpoint = %self.target.endpoint, bucket = %self.config.bucket, "S3 bucket exists");
                Ok(())
            }
            StatusCode::NOT_FOUND => self.create().await.map(drop),
            status => Err(self.status_error("check", status, None)),
        }
    }

    /// PUT the bucket. A 409 means it exists: created by a concurrent start, say. (Someone else's
    /// bucket answers 403 to the HEAD of [`Bucket::ensure`] before it gets here.)
    async fn create(&self) -> Result<BucketCreated, ObjectsError> {
        let body = create_bucket_body(self.config);
        let (status, code) = self.send("create", Method::PUT, body).await?;
        let (endpoint, bucket) = (&self.target.endpoint, &self.config.bucket);
        if status.is_success() {
            tracing::info!(%endpoint, %bucket, "S3 bucket created");
            Ok(BucketCreated::Created)
        } else if status == StatusCode::CONFLICT {
            let code = code.as_deref().unwrap_or("");
            tracing::debug!(%endpoint, %bucket, code, "S3 bucket exists already");
            Ok(BucketCreated::AlreadyExisted)
        } else {
            Err(self.status_error("create", status, code))
        }
    }

    /// Signs and sends `method` on the bucket URL; returns the status and the S3 error code
    /// (`<Code>` of an XML error body) when there is one.
    async fn send(
        &self,
        op: &'static str,
        method: Method,
        body: Bytes,
    ) -> Result<(StatusCode, Option<String>), ObjectsError> {
        let url = &self.target.bucket_url;
        let mut request = http::Request::builder()
            .method(method)
            .uri(url.as_str())
            .body(HttpRequestBody::from(body))
            .map_err(|source| ObjectsError::S3Url { url: url.clone(), source })?;
        AwsAuthorizer::new(&self.credential, "s3", &self.config.region)
            .authorize(&mut request, None);
        let response =
            self.client.execute(request).await.map_err(|source| ObjectsError::S3Unreachable {
                op,
                endpoint: self.target.endpoint.clone(),
                bucket: self.config.bucket.clone(),
                source,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok((status, None));
        }
        // The error body only adds detail to a failure already known: a body that cannot be read
        // leaves the code out rather than hiding the status.
        let body = response.into_body().bytes().await.unwrap_or_default();
        Ok((status, s3_error_code(&body)))
    }

    fn status_error(
        &self,
        op: &'static str,
        status: StatusCode,
        code: Option<String>,
    ) -> ObjectsError {
        ObjectsError::S3Status {
            op,
            endpoint: self.target.endpoint.clone(),
            bucket: self.config.bucket.clone(),
            status: status.as_u16(),
            code,
            hint: hint(status),
        }
    }
}

/// The `<Code>` of an S3 XML error body, such as `SignatureDoesNotMatch`.
fn s3_error_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let (_, rest) = text.split_once("<Code>")?;
    let (code, _) = rest.split_once("</Code>")?;
    let code = code.trim();
    (!code.is_empty() && code.len() <= 100).then(|| code.to_owned())
}

/// What to check for an unexpected status of a bucket request.
fn hint(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 | 403 => {
            "check objects.s3.access_key_id and objects.s3.secret_access_key (or \
             secret_access_key_file), that this key may use the bucket, and the clock of this machine"
        }
        301 | 307 | 400 => "check objects.s3.region and objects.s3.path_style for this endpoint",
        404 | 405 | 501 => "check objects.s3.endpoint: it does not look like an S3 server",
        429 | 500..=599 => "the S3 server is failing or overloaded; retry later",
        _ => "check objects.s3.endpoint, objects.s3.region and the credentials",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use sentio_config::Secret;

    use super::*;

    fn config(endpoint: &str, path_style: bool) -> S3Config {
        S3Config {
            endpoint: endpoint.to_owned(),
            region: "eu-west-3".to_owned(),
            bucket: "sentio-raw".to_owned(),
            access_key_id: "AKIDEXAMPLE".to_owned(),
            secret_access_key: Secret::new("do-not-print-me"),
            secret_access_key_file: Default::default(),
            path_style,
            allow_http: true,
        }
    }

    #[test]
    fn bucket_urls_follow_the_addressing_style() {
        let t = Target::new(&config("http://127.0.0.1:9000/", true));
        assert_eq!(t.endpoint, "http://127.0.0.1:9000");
        assert_eq!(t.bucket_url, "http://127.0.0.1:9000/sentio-raw");
        let t = Target::new(&config("https://objects.example.com", false));
        assert_eq!(t.bucket_url, "https://sentio-raw.objects.example.com");
        // An empty endpoint is AWS in the configured region, as object_store has it.
        let t = Target::new(&config("", false));
        assert_eq!(t.endpoint, "https://s3.eu-west-3.amazonaws.com");
        assert_eq!(t.bucket_url, "https://sentio-raw.s3.eu-west-3.amazonaws.com");
        let t = Target::new(&config("", true));
        assert_eq!(t.bucket_url, "https://s3.eu-west-3.amazonaws.com/sentio-raw");
    }

    #[test]
    fn create_bucket_names_the_region_outside_us_east_1() {
        let mut c = config("", true);
        let body = String::from_utf8(create_bucket_body(&c).to_vec()).unwrap();
        assert!(body.contains("<LocationConstraint>eu-west-3</LocationConstraint>"), "{body}");
        c.region = DEFAULT_REGION.to_owned();
        assert!(create_bucket_body(&c).is_empty());
    }

    #[test]
    fn error_codes_are_read_from_s3_error_bodies() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message></Error>"#;
        assert_eq!(s3_error_code(body).as_deref(), Some("SignatureDoesNotMatch"));
        assert_eq!(s3_error_code(b""), None);
        assert_eq!(s3_error_code(b"<html>bad gateway</html>"), None);
        assert_eq!(s3_error_code(&[0xff, 0xfe]), None);
    }

    #[test]
    fn a_refused_status_names_endpoint_bucket_status_and_what_to_check() {
        let err = ObjectsError::S3Status {
            op: "create",
            endpoint: "http://127.0.0.1:9000".to_owned(),
            bucket: "sentio-raw".to_owned(),
            status: 403,
            code: Some("SignatureDoesNotMatch".to_owned()),
            hint: hint(StatusCode::FORBIDDEN),
        };
        let text = err.to_string();
        for part in [
            "create",
            "\"sentio-raw\"",
            "http://127.0.0.1:9000",
            "HTTP 403",
            "SignatureDoesNotMatch",
            "secret_access_key",
        ] {
            assert!(text.contains(part), "{part:?} missing from {text:?}");
        }
        assert!(!err.is_transient());
        let err = ObjectsError::S3Status {
            op: "check",
            endpoint: "https://s3.eu-west-3.amazonaws.com".to_owned(),
            bucket: "sentio-raw".to_owned(),
            status: 503,
            code: None,
            hint: hint(StatusCode::SERVICE_UNAVAILABLE),
        };
        assert!(err.is_transient());
        assert!(err.to_string().contains("HTTP 503: "), "{err}");
    }

    #[tokio::test]
    async fn an_endpoint_that_does_not_answer_is_named() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let err = s3(&config(&endpoint, true)).await.err().unwrap();
        assert!(matches!(err, ObjectsError::S3Unreachable { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&endpoint) && text.contains("sentio-raw"), "{text}");
        assert!(err.is_transient());
        assert!(!format!("{err:?}").contains("do-not-print-me"), "{err:?}");
    }

    #[tokio::test]
    async fn a_secret_without_a_key_id_is_a_configuration_error() {
        let mut c = config("http://127.0.0.1:9", true);
        c.access_key_id.clear();
        let err = s3(&c).await.err().unwrap();
        assert!(matches!(err, ObjectsError::S3Open { .. }), "{err:?}");
        assert!(!format!("{err:?} {err}").contains("do-not-print-me"));
    }
}
