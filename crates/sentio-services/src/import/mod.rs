//! `sentio import`: history from CSV files published as readings, through the same ETL as any
//! other (decoding, the profile's unit check, dead letters, the store). `docs/import.md` is the
//! user's page.
//!
//! - [`csv`]: the file formats (SKAB's `;`-separated one, generic `,`-separated ones), header
//!   and cell rules, timestamps.
//! - [`names`]: column headers to channel names, file names to device ids.
//! - [`sheet`]: one file read leniently: what cannot be read is reported per row and left out.
//! - [`plan`]: one device's files to readings: profile and units, timestamp order, duplicates,
//!   `seq`, the label column as ground truth.
//! - [`deliver`]: the readings onto the bus, the wait until the ETL has stored them, the dead
//!   letters among them, and the check for data already stored.
//! - [`error`]: what stops an import before anything is published.

pub mod csv;
pub mod deliver;
pub mod error;
pub mod names;
pub mod plan;
pub mod sheet;

pub use deliver::{
    DeliverError, DeliverSettings, Overlap, Progress, Published, Wait, dead_letters_of, deliver,
    overlaps,
};
pub use error::ImportError;
pub use plan::{DevicePlan, PlannedChannel, resolve_profile};
pub use sheet::{Issue, IssueKind, ReadOptions, Sheet, read_sheet};
