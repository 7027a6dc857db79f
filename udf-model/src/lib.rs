#![doc = include_str!("../README.md")]

pub mod bounded;
pub mod calibration;
pub mod error;
pub mod evaluate;
pub mod forest;
pub mod lake;
pub mod model_file;
pub mod rubric;
pub mod schema;
pub mod simulate;
pub mod train;
pub mod trend;
pub mod udf;
pub mod ward_score;

#[cfg(test)]
mod tests;

pub use error::{Error, Result};
pub use forest::{ModelFile, Prediction, RiskForest};
pub use rubric::RiskLevel;
