//! What SQL sees: the DataFusion sessions (in process and on the Ballista cluster) with vitalflow's
//! functions, and the tables registered in them from the lake.

pub mod parquet_table;
pub mod session;
pub mod versioned_table;
