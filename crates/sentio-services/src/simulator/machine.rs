//! One simulated device of the fleet, whichever its profile: the pump's own model for the
//! built-in pump, the generic one for any other.

use sentio_config::{FleetDevice, SimulatorConfig};
use sentio_core::profile::PUMP;
use sentio_core::{Channel, DeviceId, Reading, SensorKind};

use super::generic::GenericModel;
use super::model::DeviceModel;

pub enum Machine {
    /// The seed's pump: four signals, the mission's anomaly table, unchanged.
    Pump(DeviceModel),
    /// Any other profile's channels.
    Generic(GenericModel),
}

impl Machine {
    pub fn new(device: &FleetDevice, config: &SimulatorConfig) -> Self {
        if device.profile.name == PUMP {
            Machine::Pump(DeviceModel::new(device.device.clone(), device.index, config))
        } else {
            Machine::Generic(GenericModel::new(
                device.device.clone(),
                &device.profile,
                device.index,
                config,
            ))
        }
    }

    pub fn device(&self) -> &DeviceId {
        match self {
            Machine::Pump(m) => m.device(),
            Machine::Generic(m) => m.device(),
        }
    }

    /// The channels it samples, in the order [`Machine::sample_each`] numbers them.
    pub fn channels(&self) -> Vec<Channel> {
        match self {
            Machine::Pump(_) => SensorKind::ALL.into_iter().map(Channel::from).collect(),
            Machine::Generic(m) => m.channels().cloned().collect(),
        }
    }

    pub fn channel_count(&self) -> usize {
        match self {
            Machine::Pump(_) => SensorKind::ALL.len(),
            Machine::Generic(m) => m.params().len(),
        }
    }

    pub fn seq(&self) -> u64 {
        match self {
            Machine::Pump(m) => m.seq(),
            Machine::Generic(m) => m.seq(),
        }
    }

    pub fn set_seq(&mut self, seq: u64) {
        match self {
            Machine::Pump(m) => m.set_seq(seq),
            Machine::Generic(m) => m.set_seq(seq),
        }
    }

    /// Samples every channel at `ts_ns`, handing each reading to `f` with the channel's position.
    #[inline]
    pub fn sample_each(&mut self, ts_ns: i64, mut f: impl FnMut(usize, Reading)) {
        match self {
            Machine::Pump(m) => {
                for (i, r) in m.sample(ts_ns).into_iter().enumerate() {
                    f(i, r);
                }
            }
            Machine::Generic(m) => {
                for (i, r) in m.sample(ts_ns).into_iter().enumerate() {
                    f(i, r);
                }
            }
        }
    }

    /// Advances past `ts_ns` as sampling it would, the readings dropped.
    pub fn skip(&mut self, ts_ns: i64) {
        match self {
            Machine::Pump(m) => drop(m.sample(ts_ns)),
            Machine::Generic(m) => drop(m.sample(ts_ns)),
        }
    }
}
