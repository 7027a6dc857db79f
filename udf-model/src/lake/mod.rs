//! The lake: the one door to where vitalflow's tables live. The data location (a directory or an
//! object-store URL), the tables' object names, Parquet and JSON object access, checkpoints, and the
//! listing rules readers rely on (covered spans, versioned files). Ingest, the ETL, maintenance,
//! alert delivery and `vitalflow status` all go through it; nothing else names an object path.

pub mod checkpoint;
pub mod coverage;
pub mod error;
pub mod landed;
pub mod location;
pub mod names;
pub mod objects;
pub mod parquet_file;
pub mod versions;

pub use error::{LakeError, Result};
pub use location::DataLocation;
pub use names::LandedRange;
pub use parquet_file::{LandedFile, write_parquet};
