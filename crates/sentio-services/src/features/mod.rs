//! From stored readings to the model's input: frames, gaps, scaling, windows and splits.
//!
//! Training (`train`) and detection read readings the same way, so that a window means the same
//! thing to both:
//!
//! Every step works on any number of channels: a frame has one column per channel of the model's
//! profile ([`Columns`]), and the model card records them.
//!
//! 1. [`align`]: per device, readings land in fixed slots of `cadence` (slot `k` covers
//!    `[k·cadence, (k+1)·cadence)` since the epoch, the latest reading of a sensor in a slot wins).
//!    A sensor missing from a slot repeats its last observed value for at most `fill_limit` slots
//!    (the cell is marked *filled*); past that the cell is a *hole*. A reading that arrives after
//!    its slot was built (late) is not used to rebuild it: batch training sees every reading in
//!    order, the live detector closes a slot once its allowed lateness has passed.
//! 2. [`Scaler`]: per-sensor mean and standard deviation, fitted on observed (not filled), normal
//!    (no ground-truth label) values of the training split only.
//! 3. [`window`]: windows of `window` frames every `stride` frames; a window with a hole, or with
//!    more than `max_filled_fraction` of its cells filled, is dropped; a window holding a labelled
//!    frame (the simulator's ground truth) never trains, validates or calibrates.
//! 4. [`post`]: where the model card says so, chosen columns enter the model detrended (minus a
//!    trailing mean, causal), and the scores are smoothed by a trailing mean, the same in training,
//!    replay and the live detector.
//! 5. [`Split`]: time-ordered: the oldest part of the range trains, then validation, then
//!    calibration; a window that straddles a boundary is dropped, so no frame serves two splits.

pub mod align;
pub mod post;
pub mod scaler;
pub mod window;

pub use align::{AlignSettings, Columns, Filler, Series, SeriesBuilder, align};
pub use post::PostProcess;
pub use scaler::Scaler;
pub use window::{Split, SplitPoints, WindowRef, WindowSettings, cut_windows};
