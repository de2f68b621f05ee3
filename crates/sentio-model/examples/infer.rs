//! Inference throughput of the detector's model shape, for profiling:
//! `cargo run --release -p sentio-model --example infer -- [threads] [batch] [calls]`.

use std::time::Instant;

use sentio_model::{Autoencoder, ModelError, ModelSpec};

fn main() -> Result<(), ModelError> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let threads = args.first().copied().unwrap_or(1);
    let batch = args.get(1).copied().unwrap_or(1024);
    let calls = args.get(2).copied().unwrap_or(20);
    let spec = ModelSpec { features: 4, hidden: 64, bottleneck: 16, window: 64 };
    let model = Autoencoder::new(spec, 7)?.with_threads(threads);
    let windows: Vec<f32> =
        (0..batch * spec.window_len()).map(|i| ((i as f32) * 0.37).sin()).collect();
    let mut checksum = 0.0f64;
    for _ in 0..2 {
        checksum += f64::from(model.window_errors(&windows)?.per_window[0]);
    }
    let start = Instant::now();
    for _ in 0..calls {
        checksum += f64::from(model.window_errors(&windows)?.per_window[0]);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "threads {threads} batch {batch}: {:.0} windows/s (checksum {checksum:.6})",
        (calls * batch) as f64 / secs
    );
    Ok(())
}
