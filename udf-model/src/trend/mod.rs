//! The trend model's inputs: what the ETL supplies for a reading at its scoring step (the reading's
//! carried vitals and the patient's rolling features, [`TrendColumn`]), what the forest derives from
//! them ([`DerivedInput`]), and the per-patient pass that computes them as the ETL SQL does
//! ([`PatientTrend`]), for training and `vitalflow evaluate`; a test holds the two to each other.

mod columns;
mod history;

pub use columns::{DerivedInput, TrendColumn, TrendInput, consciousness_code, default_inputs, ward_vitals};
pub use history::{CARRIED, Measurement, PatientTrend, TrendRow, TrendSettings, TrendStep};
