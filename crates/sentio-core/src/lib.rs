//! Sentio's domain model, shared by every role. Pure data and pure functions: no I/O, no tokio.
//!
//! - [`device`]: [`DeviceId`], a validated device name.
//! - [`sensor`]: [`SensorKind`], the pump profile's four signals with their units and typical ranges.
//! - [`channel`]: [`Channel`] and [`Unit`], what a reading measures on any machine.
//! - [`profile`]: [`Profile`] and [`Profiles`], kinds of machine and which devices are one.
//! - [`anomaly`]: [`AnomalyKind`], one per kind of fault the simulator injects.
//! - [`reading`]: [`Reading`], one value of one sensor of one device at one instant.
//! - [`alert`]: [`Alert`], what the detector reports.
//! - [`message`]: the reading message v1 on `sensor-data`: encoding and strict decoding.
//! - [`bridge_report`]: [`BridgeReport`], the status a bridge publishes on `sentio-status`.
//! - [`time`]: nanosecond timestamps and their text form.

pub mod alert;
pub mod anomaly;
pub mod bridge_report;
pub mod channel;
pub mod device;
pub mod message;
pub mod profile;
pub mod reading;
pub mod sensor;
pub mod time;

pub use alert::{Alert, AlertState, Severity};
pub use anomaly::AnomalyKind;
pub use bridge_report::BridgeReport;
pub use channel::{Channel, InvalidChannel, InvalidUnit, Unit};
pub use device::{DeviceId, InvalidDeviceId};
pub use message::{DecodeError, DecodeLimits, decode_reading, encode_reading};
pub use profile::{ChannelSpec, Profile, ProfileError, Profiles, UnitMismatch};
pub use reading::{Reading, TsSource};
pub use sensor::SensorKind;
