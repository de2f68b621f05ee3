//! Sentio's domain model, shared by every role. Pure data and pure functions: no I/O, no tokio.
//!
//! - [`device`]: [`DeviceId`], a validated device name.
//! - [`sensor`]: [`SensorKind`], the four signals with their units and typical ranges.
//! - [`anomaly`]: [`AnomalyKind`], one per kind of fault the simulator injects.
//! - [`reading`]: [`Reading`], one value of one sensor of one device at one instant.
//! - [`frame`]: [`Frame`], the four sensors of a device aligned on one timestamp.
//! - [`alert`]: [`Alert`], what the detector reports.
//! - [`message`]: the reading message v1 on `sensor-data`: encoding and strict decoding.
//! - [`time`]: nanosecond timestamps and their text form.

pub mod alert;
pub mod anomaly;
pub mod device;
pub mod frame;
pub mod message;
pub mod reading;
pub mod sensor;
pub mod time;

pub use alert::{Alert, AlertState, Severity};
pub use anomaly::AnomalyKind;
pub use device::{DeviceId, InvalidDeviceId};
pub use frame::Frame;
pub use message::{DecodeError, DecodeLimits, decode_reading, encode_reading};
pub use reading::Reading;
pub use sensor::SensorKind;
