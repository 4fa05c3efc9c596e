//! Runs the detection report (see the crate documentation) and writes it.

use std::path::PathBuf;

use clap::Parser;
use edge_sensor_detection::report::{self, Options};

/// Detection under sampling noise: Markdown and SVG into --out.
#[derive(Parser)]
struct Args {
    /// Directory for detection.md and the plots.
    #[arg(long, default_value = "target/detection-report")]
    out: PathBuf,
    /// Hosts of the normal-traffic run.
    #[arg(long, default_value_t = 10_000)]
    hosts: u32,
    /// Simulated hours of the normal-traffic run.
    #[arg(long, default_value_t = 24.0)]
    hours: f64,
    /// Sampling rates (1:N), comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1000u32, 4096, 16384])]
    rates: Vec<u32>,
    /// Seeds of the time-to-detect runs.
    #[arg(long, value_delimiter = ',', default_values_t = [1u64, 2, 3, 4, 5])]
    seeds: Vec<u64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let options = Options {
        hosts: args.hosts,
        hours: args.hours,
        rates: args.rates,
        seeds: args.seeds,
        ..Options::full()
    };
    let results = report::run(&options, |step| eprintln!("detection report: {step}"))?;
    report::write(&results, &args.out)?;
    print!("{}", report::markdown(&results));
    eprintln!("detection report: written to {}", args.out.display());
    Ok(())
}
