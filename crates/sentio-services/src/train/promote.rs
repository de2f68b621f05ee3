//! Whether a newly registered version becomes the champion.
//!
//! `train.promote = "if-better"` compares the new model with the current champion on the *same*
//! validation frames: each model cuts its own windows (its window length) from the validation
//! split of this training run, standardizes them with its own scaler, and reconstructs them. The
//! errors are then expressed in the new model's standardized units (`(x - x̂)·std_own/std_new`),
//! so a champion with a different scaler is measured on the same scale. The new version is
//! promoted when its mean squared error is lower, when there is no champion, or when the champion
//! cannot be scored on these frames (a different sensor set).
//!
//! Only a training that ran to its end (all of `train.epochs`, or early stopping) can be
//! promoted: a cancelled one (Ctrl-C, SIGTERM, `--duration` running out) is registered but never
//! becomes the champion, whatever `train.promote` says, `"always"` (`--promote`) included.

use anyhow::Context;
use sentio_config::{Promote, TrainConfig};
use sentio_model::{Autoencoder, ModelSpec};
use sentio_tracking::Tracking;
use serde::{Deserialize, Serialize};

use super::artifact::{ModelCard, WEIGHTS_FILE};
use super::data::Prepared;
use super::fit::{Fitted, Stopped};
use super::{CHAMPION, forced};
use crate::features::window::gather;
use crate::features::{Split, WindowSettings, cut_windows};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub promote: bool,
    pub reason: String,
    pub champion_version: Option<u64>,
    /// The champion's validation error in the new model's units, when it was scored.
    pub champion_loss: Option<f64>,
    pub new_loss: f64,
}

pub async fn decide(
    tracking: &dyn Tracking,
    config: &TrainConfig,
    prepared: &Prepared,
    fitted: &Fitted,
    new_version: u64,
) -> anyhow::Result<Decision> {
    let new_loss = fitted.best_validation_loss;
    let decision = |promote: bool, reason: String, champion_version, champion_loss| Decision {
        promote,
        reason,
        champion_version,
        champion_loss,
        new_loss,
    };
    let champion = tracking.get_alias(&config.model_name, CHAMPION).await?;
    if fitted.stopped == Stopped::Cancelled {
        let reason = cancelled(config.promote, fitted.history.len());
        return Ok(decision(false, reason, champion.map(|c| c.version), None));
    }
    if let Some(force) = forced(config.promote) {
        let reason = if force { "promotion forced" } else { "promotion turned off" };
        return Ok(decision(force, reason.into(), champion.map(|c| c.version), None));
    }
    let Some(champion) = champion.filter(|c| c.version != new_version) else {
        return Ok(decision(true, "there was no champion".into(), None, None));
    };
    let dir = tempfile::tempdir()?;
    tracking
        .download_model_version(&config.model_name, champion.version, dir.path())
        .await
        .with_context(|| format!("downloading champion version {}", champion.version))?;
    let card = ModelCard::read(dir.path())?;
    let Some(champion_loss) = score_champion(dir.path(), &card, prepared)? else {
        return Ok(decision(
            true,
            "the champion reads other inputs (sensors, detrending) or has no usable windows \
             here"
                .into(),
            Some(champion.version),
            None,
        ));
    };
    // The two errors come from different reductions (the new one through the engine's f32 loss,
    // the champion's summed in f64 here), so an identical model can differ in the seventh digit
    // either way: a tie within that is not an improvement.
    let better = new_loss < champion_loss * (1.0 - TIE);
    let reason = format!(
        "validation error {new_loss:.5} {} champion v{}'s {champion_loss:.5}",
        if better { "beats" } else { "does not beat" },
        champion.version
    );
    Ok(decision(better, reason, Some(champion.version), Some(champion_loss)))
}

/// Why a cancelled training after `epochs` epochs is not promoted.
fn cancelled(promote: Promote, epochs: usize) -> String {
    let s = if epochs == 1 { "" } else { "s" };
    let rule = match promote {
        Promote::Always => {
            "a cancelled training is never promoted, not even with train.promote = \"always\" \
             (--promote)"
        }
        Promote::IfBetter | Promote::Never => {
            "only a training that ran to its end or to early stopping can be promoted"
        }
    };
    format!("the training was cancelled after {epochs} epoch{s}: {rule}")
}

/// Relative difference under which two validation errors count as equal (f32 rounding is 6e-8).
const TIE: f64 = 1e-6;

/// The champion's mean squared error on this run's validation frames, in the new scaler's units.
fn score_champion(
    dir: &std::path::Path,
    card: &ModelCard,
    prepared: &Prepared,
) -> anyhow::Result<Option<f64>> {
    let ours = prepared.columns.channels();
    if card.features != ours.len()
        || card.sensors.iter().map(String::as_str).ne(ours.iter().map(|c| c.as_str()))
        || !card.post.same_inputs(&prepared.post)
    {
        return Ok(None);
    }
    let width = ours.len();
    let spec = ModelSpec {
        features: card.features,
        hidden: card.hidden,
        bottleneck: card.bottleneck,
        window: card.window,
    };
    let model = Autoencoder::load_safetensors(&dir.join(WEIGHTS_FILE), spec)
        .context("loading the champion's weights")?;
    let settings = WindowSettings {
        window: card.window,
        stride: card.stride.max(1),
        max_filled_fraction: card.max_filled_fraction,
    };
    let windows: Vec<_> = cut_windows(prepared.inputs(), settings)
        .into_iter()
        .filter(|w| !w.labelled)
        .filter(|w| {
            let s = &prepared.series[w.series];
            prepared.points.of(s.ts_ns(w.start), s.ts_ns(w.start + card.window))
                == Some(Split::Validation)
        })
        .collect();
    if windows.is_empty() {
        return Ok(None);
    }
    let data = gather(prepared.inputs(), &windows, card.window, &card.scaler);
    let mut reconstruction = vec![0.0f32; data.len()];
    model.reconstruct(&data, &mut reconstruction)?;
    let ratio: Vec<f64> =
        card.scaler.std.iter().zip(&prepared.scaler.std).map(|(c, p)| c / p).collect();
    let mut sum = 0.0f64;
    for (i, (x, y)) in data.iter().zip(&reconstruction).enumerate() {
        let e = f64::from(x - y) * ratio[i % width];
        sum += e * e;
    }
    Ok(Some(sum / data.len() as f64))
}
