//! The lake: the one door to where vitalflow's tables live. The data location (a directory or an
//! object-store URL), every table as a Delta Lake table ([`table`]), the data files they are made of,
//! ingest's positions in them, and the checkpoints. Ingest, the ETL, maintenance, alert delivery and
//! `vitalflow status` all go through it; nothing else names an object path.

pub mod checkpoint;
pub mod error;
pub mod format;
pub mod handoff;
pub mod landed;
pub mod lease;
pub mod location;
pub mod migrate;
pub mod names;
pub mod objects;
pub mod operations;
pub mod parquet_file;
pub mod store_registry;
pub mod table;

pub use error::{LakeError, Result};
pub use location::DataLocation;
pub use parquet_file::{DataFile, write_data_file};
pub use table::{LakeTable, TableFile};
