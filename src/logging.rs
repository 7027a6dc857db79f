//! The one place logging is set up; libraries only emit.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Installs the subscriber: `RUST_LOG` if set, else info for vitalflow and warnings for dependencies.
/// Ballista 55 logs "Fail to combine stage metrics" as an ERROR for every stage of a plan with window
/// functions (its metrics display, not the job, which succeeds), and Delta's kernel logs an ERROR each time
/// a table that does not exist yet is opened (which vitalflow answers as "no table", and whose real
/// failures it reports itself): those targets are off by default.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(
            "warn,vitalflow=info,vitalflow_ingest=info,vitalflow_scheduler=info,vitalflow_executor=info,ballista_scheduler::display=off,buoyant_kernel::snapshot::builder=off",
        )
    });
    // Colour codes only for a terminal: a log file or pipe gets plain text.
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
