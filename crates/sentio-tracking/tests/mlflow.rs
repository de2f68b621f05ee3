#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The MLflow backend against a real MLflow 3 server (`scripts/services.sh up` starts one and
//! writes `SENTIO_TEST_MLFLOW_URI` to `~/.cache/sentio/services.env`): the tracking contract,
//! and a clear error when no server answers. A missing server fails naming the script; it never
//! skips.

use std::sync::Arc;
use std::time::Duration;

use sentio_tracking::contract::check_tracking;
use sentio_tracking::{MlflowSettings, Tracking, TrackingError};

fn settings() -> MlflowSettings {
    MlflowSettings::new(sentio_it::setting("SENTIO_TEST_MLFLOW_URI"))
}

/// The client, after checking that the server answers (failing loudly, naming the script).
async fn connect() -> Arc<dyn Tracking> {
    let settings = settings();
    let tracking = settings.connect().unwrap();
    if let Err(e) = tracking.list_registered_models().await {
        panic!(
            "{}\nIs the MLflow test server running? Start it with `scripts/services.sh up`.",
            sentio_it::error_chain(&e)
        );
    }
    tracking
}

#[tokio::test]
async fn mlflow_passes_the_contract() {
    let tracking = connect().await;
    check_tracking(tracking.as_ref()).await;
}

#[tokio::test]
async fn an_unreachable_server_names_the_script_and_the_setting() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut settings = MlflowSettings::new(format!("http://127.0.0.1:{port}"));
    settings.max_retries = 2;
    settings.retry_backoff = Duration::from_millis(10);
    let tracking = settings.connect().unwrap();
    let err = tracking.experiment("unreachable").await.unwrap_err();
    assert!(matches!(err, TrackingError::Unreachable { op: "experiment", .. }), "{err:?}");
    assert!(err.is_transient());
    let text = sentio_it::error_chain(&err);
    for part in ["scripts/services.sh up", "tracking.mlflow.uri", &port.to_string()] {
        assert!(text.contains(part), "{part:?} missing from {text:?}");
    }
}

#[tokio::test]
async fn http_errors_carry_mlflows_error_code() {
    let tracking = connect().await;
    let err = tracking.get_model_version("sentio-no-such-model", 1).await.unwrap_err();
    match &err {
        TrackingError::Http { op, status, code, message } => {
            assert_eq!(*op, "get_model_version");
            assert_eq!(*status, 404);
            assert_eq!(code.as_deref(), Some("RESOURCE_DOES_NOT_EXIST"));
            assert!(!message.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert!(err.is_not_found() && !err.is_transient());
}
