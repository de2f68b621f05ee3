//! The model's shape.

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// The autoencoder's sizes: saved next to its weights, and enough to rebuild it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Sensor channels per time step (`F`).
    pub features: usize,
    /// LSTM hidden width (`H`).
    pub hidden: usize,
    /// Width of the linear bottleneck between encoder and decoder (`Z`); 0 for none.
    pub bottleneck: usize,
    /// Time steps per window (`T`).
    pub window: usize,
}

impl ModelSpec {
    /// Checks that every size the model needs is positive.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.features == 0 || self.hidden == 0 || self.window == 0 {
            return Err(ModelError::Spec { spec: *self });
        }
        Ok(())
    }

    /// The width the decoder reads: `Z`, or `H` without a bottleneck.
    pub fn code_width(&self) -> usize {
        if self.bottleneck > 0 { self.bottleneck } else { self.hidden }
    }

    /// Floats in one window, `T · F`.
    pub fn window_len(&self) -> usize {
        self.window * self.features
    }
}
