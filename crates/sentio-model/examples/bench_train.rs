//! Prints `bench_train`'s result as JSON:
//! `cargo run --release -p sentio-model --example bench_train -- [THREADS] [STEPS]`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let threads = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1);
    let steps = args.next().map(|a| a.parse()).transpose()?.unwrap_or(20);
    let result = sentio_model::bench_train(threads, steps)?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
