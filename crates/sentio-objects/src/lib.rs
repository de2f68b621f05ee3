//! Object storage for Sentio: the port is `Arc<dyn ObjectStore>` (crate `object_store`), backed by a
//! local directory or an S3 bucket, plus the raw archive written into it.
//!
//! - [`layout`]: where raw archive objects live (`raw/date=…/device=…/<first>_<last>.pickle`) and
//!   how to parse such a key back.
//! - [`pickle`]: [`RawBatch`], the columns of one archive object, and its pickle encoding that
//!   `pandas.DataFrame(pickle.load(f))` reads directly.
//! - [`archive`]: [`Archiver`], which buffers readings per device and time slice and writes one
//!   object per (device, slice) once a watermark has passed the slice.
//! - [`s3`](mod@s3): [`s3()`], the S3 backend (AWS, MinIO, any S3 server), which creates its
//!   bucket when missing.
//! - `contract` (feature `testkit`): `check_objects`, the contract suite every backend must pass.
//!
//! [`local`] opens the embedded backend, [`s3()`] the real one; [`ObjectsError`] is the error of
//! everything here.

pub mod archive;
#[cfg(feature = "testkit")]
pub mod contract;
pub mod layout;
pub mod pickle;
pub mod s3;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;

pub use archive::{ArchiveReport, Archiver};
pub use layout::{RawKey, parse_raw_key, raw_key, raw_prefix_for_date, raw_prefix_for_device};
pub use pickle::RawBatch;
pub use s3::{BucketCreated, create_bucket, s3};

/// Everything that can go wrong in this crate. Causes stay in `#[source]`, so `{:#}` prints each
/// once.
#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    #[error("cannot create the object store directory {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the local object store at {}", path.display())]
    OpenLocal {
        path: PathBuf,
        #[source]
        source: object_store::Error,
    },
    #[error("object store {op} of {key:?} failed")]
    Store {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot encode a raw batch of {rows} rows as pickle")]
    PickleEncode {
        rows: usize,
        #[source]
        source: serde_pickle::Error,
    },
    #[error("cannot decode a raw batch from {bytes} bytes of pickle")]
    PickleDecode {
        bytes: usize,
        #[source]
        source: serde_pickle::Error,
    },
    #[error("raw batch column {column:?} has {len} values, expected {expected} (column device)")]
    ColumnLength { column: &'static str, len: usize, expected: usize },
    #[error("raw batch row {row}: invalid device id")]
    InvalidDevice {
        row: usize,
        #[source]
        source: sentio_core::InvalidDeviceId,
    },
    #[error("raw batch row {row}: unknown {column} {value:?}")]
    UnknownName { row: usize, column: &'static str, value: String },
    #[error("raw batch row {row}: value {value} is not finite")]
    NonFinite { row: usize, value: f64 },
    #[error("{key:?} is not a raw archive key: {reason}")]
    BadKey { key: String, reason: &'static str },
    #[error(
        "cannot set up S3 bucket {bucket:?} at {endpoint}: check objects.s3 (endpoint, region, \
         access_key_id and secret_access_key)"
    )]
    S3Open {
        endpoint: String,
        bucket: String,
        #[source]
        source: object_store::Error,
    },
    #[error(
        "no S3 credentials for bucket {bucket:?} at {endpoint}: set objects.s3.access_key_id and \
         objects.s3.secret_access_key, or run where AWS instance credentials are available"
    )]
    S3Credentials {
        endpoint: String,
        bucket: String,
        #[source]
        source: object_store::Error,
    },
    #[error(
        "{url:?} is not a usable S3 bucket URL: check objects.s3.endpoint and objects.s3.bucket"
    )]
    S3Url {
        url: String,
        #[source]
        source: http::Error,
    },
    #[error(
        "cannot {op} S3 bucket {bucket:?}: no answer from {endpoint}; check objects.s3.endpoint \
         and that the server is running"
    )]
    S3Unreachable {
        op: &'static str,
        endpoint: String,
        bucket: String,
        #[source]
        source: object_store::client::HttpError,
    },
    #[error(
        "cannot {op} S3 bucket {bucket:?} at {endpoint}: HTTP {status}{}: {hint}",
        code.as_ref().map(|c| format!(" {c}")).unwrap_or_default()
    )]
    S3Status {
        op: &'static str,
        endpoint: String,
        bucket: String,
        status: u16,
        /// The S3 error code of the answer (`SignatureDoesNotMatch`, `AccessDenied`, ...).
        code: Option<String>,
        /// What to check.
        hint: &'static str,
    },
}

impl ObjectsError {
    /// Whether retrying the same operation later may succeed (a store I/O failure), as opposed to
    /// bad data or a bad key, which fail the same way every time.
    pub fn is_transient(&self) -> bool {
        match self {
            ObjectsError::Store { source, .. } => !matches!(
                source,
                object_store::Error::NotFound { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::NotSupported { .. }
                    | object_store::Error::NotImplemented
                    | object_store::Error::AlreadyExists { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
                    | object_store::Error::UnknownConfigurationKey { .. }
            ),
            ObjectsError::S3Unreachable { .. } => true,
            ObjectsError::S3Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// Whether this is a store operation on a key that does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ObjectsError::Store { source: object_store::Error::NotFound { .. }, .. })
    }
}

/// Opens (creating it when missing) a directory as an object store: the embedded backend.
pub fn local(root: &Path) -> Result<Arc<dyn ObjectStore>, ObjectsError> {
    std::fs::create_dir_all(root)
        .map_err(|source| ObjectsError::CreateDir { path: root.to_owned(), source })?;
    let store = LocalFileSystem::new_with_prefix(root)
        .map_err(|source| ObjectsError::OpenLocal { path: root.to_owned(), source })?
        // Deleting the last object of a partition removes its empty directories, so a listing
        // with delimiter shows the same partitions as S3 would.
        .with_automatic_cleanup(true);
    Ok(Arc::new(store))
}
