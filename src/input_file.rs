//! Files a user hands to `vitalflow predict` and `vitalflow evaluate`: CSV with a header, or Parquet
//! (by the `.parquet` extension), registered as a DataFusion table.

use std::path::Path;

use anyhow::Context;
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionContext};
use vitalflow_udf_model::schema::Vital;

/// Whether `path` is read as Parquet (else CSV).
pub fn is_parquet(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// Registers the file at `path` as table `name`. A CSV's vitals are read as Float64: inference from the
/// first rows may type one Int64 that has decimals further down.
pub async fn register_file(ctx: &SessionContext, name: &str, path: &Path) -> anyhow::Result<()> {
    let shown = path.display().to_string();
    if is_parquet(path) {
        return ctx
            .register_parquet(name, &shown, ParquetReadOptions::default())
            .await
            .with_context(|| format!("reading {shown}"));
    }
    let csv = CsvReadOptions::new().file_extension("");
    let inferred = ctx.read_csv(&shown, csv.clone()).await.with_context(|| format!("reading {shown}"))?;
    let vitals: Vec<&str> = Vital::ALL.iter().map(|v| v.column()).collect();
    let fields: Vec<Field> = inferred
        .schema()
        .fields()
        .iter()
        .map(|f| {
            if vitals.contains(&f.name().as_str()) {
                f.as_ref().clone().with_data_type(DataType::Float64)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    let schema = Schema::new(fields);
    ctx.register_csv(name, &shown, csv.schema(&schema)).await.with_context(|| format!("reading {shown}"))
}
