#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The S3 backend against a real S3 server that checks SigV4 signatures (s3s-fs, from
//! `scripts/services.sh up`): the object storage contract in a bucket `sentio_objects::s3` creates,
//! refused credentials, and a raw archive pickle written and fetched through S3 then read by
//! pandas.
//!
//! A missing server fails naming `scripts/services.sh`; a missing Python names
//! `scripts/python-env.sh`. Neither skips.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, PutPayload};
use sentio_config::{S3Config, Secret};
use sentio_core::{AnomalyKind, DeviceId, Reading, SensorKind};
use sentio_objects::contract::check_objects;
use sentio_objects::{Archiver, BucketCreated, ObjectsError, RawBatch, parse_raw_key};

/// A bucket name no earlier run used (S3 names: lowercase letters, digits and '-').
fn fresh_bucket() -> String {
    format!("sentio-it-{}", sentio_it::unique("s3").replace('_', "-"))
}

/// Opens the store, failing loudly (naming the script) when the server is not there.
async fn open(config: &S3Config) -> Arc<dyn ObjectStore> {
    match sentio_objects::s3(config).await {
        Ok(store) => store,
        Err(e) => panic!(
            "{}\nIs the S3 test server running? Start it with `scripts/services.sh up`.",
            sentio_it::error_chain(&e)
        ),
    }
}

/// Whether `bucket` exists, asked through the S3 API with the right credentials: listing a
/// missing bucket fails with NoSuchBucket (which object_store reports as a generic error).
async fn bucket_exists(config: &S3Config, bucket: &str) -> bool {
    let store = AmazonS3Builder::new()
        .with_endpoint(&config.endpoint)
        .with_region(&config.region)
        .with_bucket_name(bucket)
        .with_access_key_id(&config.access_key_id)
        .with_secret_access_key(config.secret_access_key.expose())
        .with_allow_http(true)
        .build()
        .unwrap();
    match store.list(None).try_collect::<Vec<_>>().await {
        Ok(_) => true,
        Err(e) if e.to_string().contains("NoSuchBucket") => false,
        Err(e) => panic!("listing bucket {bucket}: {e}"),
    }
}

#[tokio::test]
async fn s3_passes_the_contract_in_a_bucket_it_creates() {
    let bucket = fresh_bucket();
    let config = sentio_it::s3(&bucket);
    assert!(!bucket_exists(&config, &bucket).await, "bucket {bucket} exists before the test");

    let store = open(&config).await;
    assert!(bucket_exists(&config, &bucket).await, "s3() did not create bucket {bucket}");
    assert_eq!(
        sentio_objects::create_bucket(&config).await.unwrap(),
        BucketCreated::AlreadyExisted
    );
    check_objects(Arc::clone(&store), &format!("contract/{}", sentio_it::unique("run"))).await;

    // Opening the bucket again, now that it exists, succeeds and sees the same objects.
    let key = ObjectPath::from(format!("again/{}", sentio_it::unique("k")));
    store.put(&key, PutPayload::from_static(b"kept")).await.unwrap();
    let again = open(&config).await;
    let got = again.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.as_ref(), b"kept");
    again.delete(&key).await.unwrap();
}

#[tokio::test]
async fn creating_an_existing_bucket_again_succeeds() {
    let config = sentio_it::s3(&fresh_bucket());
    let created = sentio_objects::create_bucket(&config).await.unwrap();
    assert_eq!(created, BucketCreated::Created);
    assert!(bucket_exists(&config, &config.bucket).await);
    // The server answers 409 now (s3s-fs: BucketAlreadyExists), which is success.
    let again = sentio_objects::create_bucket(&config).await.unwrap();
    assert_eq!(again, BucketCreated::AlreadyExisted);
    // And s3() opens it without creating it.
    let store = open(&config).await;
    let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
    assert!(listed.is_empty(), "a new bucket holds {listed:?}");
}

#[tokio::test]
async fn a_wrong_secret_key_is_refused_with_a_clear_error() {
    let good = sentio_it::s3(&fresh_bucket());
    let wrong_secret = "not-the-sentio-test-secret";
    let mut bad = good.clone();
    bad.secret_access_key = Secret::new(wrong_secret);

    // Neither creating a missing bucket nor opening an existing one passes with a bad signature.
    for exists in [false, true] {
        if exists {
            open(&good).await;
        }
        let err = sentio_objects::s3(&bad).await.err().unwrap_or_else(|| {
            panic!("s3() accepted a wrong secret key (bucket exists: {exists})")
        });
        assert!(matches!(err, ObjectsError::S3Status { status: 403, .. }), "{err:?}");
        assert!(!err.is_transient());
        let text = sentio_it::error_chain(&err);
        for part in [good.bucket.as_str(), good.endpoint.as_str(), "HTTP 403", "secret_access_key"]
        {
            assert!(text.contains(part), "{part:?} missing from {text:?}");
        }
        assert!(!format!("{text} {err:?}").contains(wrong_secret), "the secret leaked: {text}");
    }
    assert!(bucket_exists(&good, &good.bucket).await);

    // A wrong access key id is refused the same way.
    let mut unknown_key = good.clone();
    unknown_key.access_key_id = "nobody".to_owned();
    let err = sentio_objects::s3(&unknown_key).await.err().unwrap();
    assert!(matches!(err, ObjectsError::S3Status { status: 401 | 403, .. }), "{err:?}");

    // Object requests are checked too, not only the bucket requests s3() signs itself.
    let forged = AmazonS3Builder::new()
        .with_endpoint(&bad.endpoint)
        .with_region(&bad.region)
        .with_bucket_name(&bad.bucket)
        .with_access_key_id(&bad.access_key_id)
        .with_secret_access_key(bad.secret_access_key.expose())
        .with_allow_http(true)
        .build()
        .unwrap();
    let key = ObjectPath::from("forged/object.bin");
    let err = forged.put(&key, PutPayload::from_static(b"forged")).await.err().unwrap();
    assert!(
        matches!(err, object_store::Error::Unauthenticated { .. })
            || matches!(err, object_store::Error::PermissionDenied { .. })
            || err.to_string().contains("403"),
        "{err:?}"
    );
    let store = open(&good).await;
    assert!(matches!(store.head(&key).await, Err(object_store::Error::NotFound { .. })));
}

#[test]
#[should_panic(expected = "scripts/services.sh")]
fn a_missing_server_fails_naming_the_script() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut config = sentio_it::s3("sentio-it");
    config.endpoint = format!("http://127.0.0.1:{port}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(open(&config));
}

/// Two devices in one 10-minute slice: every sensor, injected kinds and None, extreme values and
/// nanosecond timestamps.
fn readings() -> Vec<Reading> {
    let values = [21.375, -273.15, 0.1 + 0.2, -0.0, 1.0e300, 5e-324, -1e-9, std::f64::consts::PI];
    let base = 1_795_522_560_123_456_789_i64; // 2026-11-24T12:16:00.123456789Z
    let mut out = Vec::new();
    for (d, device) in ["pump-07", "fan.2"].into_iter().enumerate() {
        let device = DeviceId::new(device).unwrap();
        for step in 0..9i64 {
            for (s, sensor) in SensorKind::ALL.into_iter().enumerate() {
                let n = d * 36 + step as usize * 4 + s;
                out.push(Reading {
                    device: device.clone(),
                    sensor: sensor.into(),
                    unit: sensor.into(),
                    ts_ns: base + step * 1_000_000_007 + n as i64 * 13,
                    value: values[n % values.len()] * if n.is_multiple_of(3) { 1.0 } else { -0.5 },
                    seq: step as u64 + if d == 1 { (1 << 53) + 1 } else { 0 },
                    injected: (n % 3 == 1)
                        .then(|| AnomalyKind::ALL.into_iter().find(|k| k.sensor() == Some(sensor)))
                        .flatten(),
                    ts_source: sentio_core::TsSource::Event,
                });
            }
        }
    }
    out
}

/// Every column of `batch`, as the JSON the check compares the pickle with.
fn expected_json(batch: &RawBatch) -> serde_json::Value {
    serde_json::to_value(batch).unwrap()
}

#[tokio::test]
async fn pandas_reads_a_pickle_archived_to_s3() {
    let python = sentio_it::python();
    let config = sentio_it::s3("sentio-it");
    let prefix = ObjectPath::from(format!("pandas/{}", sentio_it::unique("run")));

    // Written by the Archiver through one store...
    let writer: Arc<dyn ObjectStore> =
        Arc::new(PrefixStore::new(open(&config).await, prefix.clone()));
    let pushed = readings();
    let mut archiver = Archiver::new(writer, Duration::from_secs(600));
    for r in &pushed {
        archiver.push(r);
    }
    let report = archiver.flush_all().await.unwrap();
    assert_eq!((report.objects, report.readings), (2, pushed.len()));

    // ...fetched back through another.
    let reader = open(&config).await;
    let keys: Vec<ObjectPath> =
        reader.list(Some(&prefix)).map_ok(|m| m.location).try_collect().await.unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let dir = tempfile::tempdir().unwrap();
    for key in &keys {
        let relative: ObjectPath = key.prefix_match(&prefix).unwrap().collect();
        let parsed = parse_raw_key(&relative).unwrap_or_else(|e| panic!("{key}: {e}"));
        let bytes = reader.get(key).await.unwrap().bytes().await.unwrap();

        // The Archiver writes a device's readings in the order they were pushed.
        let expected: RawBatch = pushed.iter().filter(|r| r.device == parsed.device).collect();
        assert_eq!(bytes.as_ref(), expected.to_pickle().unwrap().as_slice(), "{key}");

        let pickle = dir.path().join(format!("{}.pickle", parsed.device.as_str()));
        let json = dir.path().join(format!("{}.json", parsed.device.as_str()));
        std::fs::write(&pickle, &bytes).unwrap();
        std::fs::write(&json, serde_json::to_vec_pretty(&expected_json(&expected)).unwrap())
            .unwrap();
        let out = Command::new(&python)
            .arg(sentio_it::repo_root().join("scripts/check_pickle.py"))
            .arg(&pickle)
            .arg(&json)
            .output()
            .expect("cannot run the Python interpreter");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "check_pickle.py failed on {key} ({}):\n{stdout}\n{stderr}",
            out.status
        );
        assert!(stdout.contains(&format!("ok: {} rows", expected.len())), "{stdout}");
    }

    for key in &keys {
        reader.delete(key).await.unwrap();
    }
}
