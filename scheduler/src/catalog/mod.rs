//! What SQL sees: the DataFusion sessions (in process and on the Ballista cluster) with vitalflow's
//! functions, and the lake's tables registered in them as Delta snapshots.

pub mod cluster_plan;
pub mod codec;
pub mod lake_table;
pub mod parquet_table;
pub mod session;
pub mod time_travel;
