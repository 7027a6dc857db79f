//! The one place logging is set up; libraries only emit.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Installs the subscriber: `RUST_LOG` if set, else info for vitalflow and warnings for dependencies.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("warn,vitalflow=info,vitalflow_ingest=info,vitalflow_scheduler=info,vitalflow_executor=info")
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
