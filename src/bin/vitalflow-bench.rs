//! The `vitalflow-bench` binary (the `bench` feature): parse, set up logging, run the benchmark.

use clap::Parser;

// The allocator `vitalflow` runs with, so that the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = vitalflow::bench::cli::BenchCli::parse();
    vitalflow::logging::init(cli.global.log_format);
    vitalflow::process::block_on("vitalflow-bench", vitalflow::bench::run(cli))
}
