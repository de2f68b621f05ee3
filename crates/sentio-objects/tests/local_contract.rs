//! The object storage contract on the embedded backend (a local directory).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sentio_objects::contract::check_objects;

#[tokio::test]
async fn local_directory_passes_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    // `local` creates missing directories.
    let store = sentio_objects::local(&dir.path().join("objects/root")).unwrap();
    check_objects(store, "contract/run-1").await;
}

#[test]
fn local_reports_a_root_it_cannot_create() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let err = sentio_objects::local(&file.join("sub")).err().unwrap();
    assert!(matches!(err, sentio_objects::ObjectsError::CreateDir { .. }), "{err:?}");
}
