//! The `vitalflow` binary: parse, set up logging, hand off to the library.

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = vitalflow::cli::Cli::parse();
    vitalflow::logging::init(cli.log_format);
    // DataFusion's planner and plan (de)serialization recurse per node and expression; the ETL's
    // plan needs more than tokio's 2 MiB worker stacks (debug builds overflow them).
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(16 * 1024 * 1024).build() {
            Ok(rt) => rt,
            Err(error) => {
                eprintln!("vitalflow: cannot start the async runtime: {error}");
                return std::process::ExitCode::FAILURE;
            }
        };
    let result = runtime.block_on(vitalflow::run(cli));
    // A blocking call still inside a client library (a Kafka poll) must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vitalflow: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
