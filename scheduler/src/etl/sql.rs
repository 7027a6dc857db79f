//! The ETL SQL: the shipped `vitals_clean.sql` beside this file, or an operator's own file
//! (`etl.sql_file`), with its `${setting}`s filled in from the configuration and the scoring model.

use vitalflow_udf_model::RiskForest;
use vitalflow_udf_model::schema::MODEL_FEATURES;

use crate::config::{EtlConfig, ScoreReadings};
use crate::error::{Error, Result};

/// The ETL SQL shipped with vitalflow.
pub const DEFAULT_SQL: &str = include_str!("vitals_clean.sql");

/// Where the SQL says whether only validated readings are scored (`etl.score`): `TRUE` or `FALSE`.
const SCORE_SETTING: &str = "${score_only_validated}";

/// The ETL SQL to run: the configured file, or the shipped default, with its `${setting}`s filled in;
/// `${trend_arguments}` are the columns `scoring` (the model the ETL scores with) names as its
/// arguments, in order (the six vitals when there is no model).
pub fn load(config: &EtlConfig, scoring: Option<&RiskForest>) -> Result<String> {
    let template = if config.sql_file.is_empty() {
        DEFAULT_SQL.to_string()
    } else {
        std::fs::read_to_string(&config.sql_file)
            .map_err(|e| Error::Config(format!("etl.sql_file {:?}: {e}", config.sql_file)))?
    };
    let only_validated = config.score == ScoreReadings::Validated;
    if only_validated && !template.contains(SCORE_SETTING) {
        return Err(Error::Config(format!(
            "etl.score is \"validated\" but etl.sql_file {:?} has no {SCORE_SETTING}: it would score every reading",
            config.sql_file
        )));
    }
    Ok(template
        .replace(SCORE_SETTING, if only_validated { "TRUE" } else { "FALSE" })
        .replace("${carry_forward_seconds}", &config.carry_forward_seconds.to_string())
        .replace("${window_readings}", &config.window_readings.max(1).to_string())
        .replace("${window_preceding}", &(config.window_readings.saturating_sub(1)).to_string())
        .replace("${trend_arguments}", &trend_arguments(scoring)))
}

/// The scoring model's argument columns, comma-separated.
fn trend_arguments(scoring: Option<&RiskForest>) -> String {
    match scoring {
        Some(forest) => forest.arguments().iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>().join(", "),
        None => MODEL_FEATURES.iter().map(|v| v.column()).collect::<Vec<_>>().join(", "),
    }
}
