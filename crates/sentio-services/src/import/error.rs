//! What stops an import before anything is published. Each message says what to do.

use std::path::PathBuf;

use sentio_core::{Channel, DeviceId, InvalidDeviceId};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: check the path and that the file is readable")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: no header row; the first non-blank line must name the columns, such as \
         `datetime;temperature;current`"
    )]
    NoHeader { path: PathBuf },
    #[error(
        "{path}: no timestamp column among {columns:?}; call it `datetime`, `timestamp`, `time` or \
         `ts`, or name it with --timestamp-column"
    )]
    NoTimestampColumn { path: PathBuf, columns: Vec<String> },
    #[error("{path}: no column {wanted:?} (--timestamp-column) among {columns:?}")]
    TimestampColumnNotFound { path: PathBuf, wanted: String, columns: Vec<String> },
    #[error(
        "{path}: column {index} of the header has no name; name it, or remove the separator that \
         ends the header"
    )]
    UnnamedColumn { path: PathBuf, index: usize },
    #[error(
        "{path}: no column to import: besides the timestamp, the label and the columns left out \
         there is nothing among {columns:?}"
    )]
    NoChannels { path: PathBuf, columns: Vec<String> },
    #[error(
        "{path}: column {column:?} has no letter or digit to name a channel after (channel names \
         are a-z, 0-9, '_', '.' and '-'); rename it in the header, or leave it out with \
         --skip-column {column:?}"
    )]
    NoChannelName { path: PathBuf, column: String },
    #[error(
        "{path}: columns {first:?} and {second:?} both become channel {channel}; rename one in the \
         header, or leave one out with --skip-column"
    )]
    ChannelClash { path: PathBuf, first: String, second: String, channel: Channel },
    #[error(
        "{path}: {id:?} (--device-prefix and the file name) is not a valid device id; choose \
         another prefix, or give --device once per file"
    )]
    DeviceFromFile {
        path: PathBuf,
        id: String,
        #[source]
        source: InvalidDeviceId,
    },
    #[error(
        "{first} and {second} both become device {device} (--device-prefix and the file name); \
         give --device once per file"
    )]
    SameDevice { first: PathBuf, second: PathBuf, device: DeviceId },
    #[error(
        "no profile {name:?} in the configuration (there are: {known}); declare [profiles.{name}] \
         in your --config file (see `sentio config`), or leave --profile out"
    )]
    UnknownProfile { name: String, known: String },
    #[error(
        "device {device} is {actual} by the configured device patterns, not profile {profile}, so \
         the ETL would check its units against that and no {profile} model would see it: add a \
         pattern that matches it to profiles.{profile}.devices (such as \"{device}\"), or leave \
         --profile out"
    )]
    ProfileMismatch { device: DeviceId, profile: String, actual: String },
}
