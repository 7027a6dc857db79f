//! A Parquet table over directories or files of the lake, with a fixed schema.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};

use crate::error::{Error, Result};

/// A Parquet table over directories or files, with a fixed schema (an empty directory is an empty table).
pub fn parquet_table(urls: &[String], schema: SchemaRef) -> Result<ListingTable> {
    let urls = urls
        .iter()
        .map(|u| ListingTableUrl::parse(u).map_err(|source| Error::Query { step: format!("table URL {u}"), source }))
        .collect::<Result<Vec<_>>>()?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls).with_listing_options(options).with_schema(schema);
    ListingTable::try_new(config).map_err(|source| Error::Query { step: "creating a parquet table".into(), source })
}
