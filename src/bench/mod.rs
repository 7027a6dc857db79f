//! `vitalflow bench ...`: benchmarks that time vitalflow and its reference in the same run and print
//! both figures with their ratio. Benchmarks, not tests: nothing here asserts a speed.

pub mod e2e;
pub mod ingest;
pub mod model;
pub mod queries;

/// Rows per second, for printing.
pub(crate) fn rows_per_sec(rows: u64, seconds: f64) -> f64 {
    if seconds > 0.0 { rows as f64 / seconds } else { f64::INFINITY }
}

/// Pins every thread of this process to `core` with `taskset`, so that a benchmark measures one core;
/// warns and goes on where taskset is missing (the figures are then marked as unpinned by the caller).
pub(crate) fn pin_to_core(core: usize) -> bool {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-c", "-p", &core.to_string(), &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => true,
        _ => {
            eprintln!("warning: could not pin to core {core} with taskset; figures may use several cores");
            false
        }
    }
}
