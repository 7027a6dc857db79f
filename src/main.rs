//! The `vitalflow` binary: parse, set up logging, hand off to the library.

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = vitalflow::cli::Cli::parse();
    vitalflow::logging::init(cli.global.log_format);
    vitalflow::process::block_on("vitalflow", vitalflow::run(cli))
}
