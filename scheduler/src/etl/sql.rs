//! The ETL SQL: the shipped `vitals_clean.sql` beside this file, or an operator's own file
//! (`etl.sql_file`), with its `${setting}`s filled in from the configuration.

use crate::config::EtlConfig;
use crate::error::{Error, Result};

/// The ETL SQL shipped with vitalflow.
pub const DEFAULT_SQL: &str = include_str!("vitals_clean.sql");

/// The ETL SQL to run: the configured file, or the shipped default, with its `${setting}`s filled in.
pub fn load(config: &EtlConfig) -> Result<String> {
    let template = if config.sql_file.is_empty() {
        DEFAULT_SQL.to_string()
    } else {
        std::fs::read_to_string(&config.sql_file)
            .map_err(|e| Error::Config(format!("etl.sql_file {:?}: {e}", config.sql_file)))?
    };
    Ok(template
        .replace("${carry_forward_seconds}", &config.carry_forward_seconds.to_string())
        .replace("${window_preceding}", &(config.window_readings.saturating_sub(1)).to_string()))
}
