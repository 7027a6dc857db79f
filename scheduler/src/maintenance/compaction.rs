//! Background compaction: consecutive small files of a table are merged into one file whose name states
//! the span it covers (see [`vitalflow_udf_model::lake::coverage`]), so that ingest's one-file-per-flush and the ETL's
//! one-file-per-micro-batch do not leave thousands of files for every query to open.
//!
//! Safety, without locks or a manifest:
//! - Only settled files are merged: `vitals_raw` ranges the ETL checkpoint has processed, `vitals_clean`
//!   batches it has committed. Ingest and the ETL never write those names again.
//! - The merged file is one atomic put. From then on readers (through [`vitalflow_udf_model::lake::coverage::ResolvingStore`])
//!   see it instead of its inputs; before, the inputs. Never both, never neither.
//! - A merged `vitals_raw` file is named like a landed range (`<topic>-p<partition>-<first>-<last>`), so
//!   ingest still resumes after it and the ETL still counts it as processed.
//! - Inputs are deleted by a later pass, once their covering file is older than the grace period; the
//!   covering file is found again from the names, so a kill -9 at any point leaves nothing to repair.
//!   (A pass killed half-way through a merge leaves at most a staging file the store never lists.)

use std::collections::BTreeMap;

use arrow::record_batch::{RecordBatch, RecordBatchReader};
use chrono::Utc;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use vitalflow_udf_model::lake::DataLocation;
use vitalflow_udf_model::lake::checkpoint::load_etl_checkpoint;
use vitalflow_udf_model::lake::objects::{delete, list_parquet, read};
use vitalflow_udf_model::schema::table;

use crate::config::CompactionConfig;
use crate::error::{Error, Result};
use crate::maintenance::settled::Settled;
use vitalflow_udf_model::lake::LakeError;
use vitalflow_udf_model::lake::coverage::{Span, covered_by, span_of};

/// Tables compacted, with how a file is known to be settled. (risk_alerts, written per micro-batch
/// like vitals_clean, joins with [`Settled::CommittedBatch`].)
const COMPACTED: [(&str, Settled); 2] =
    [(table::VITALS_RAW, Settled::ProcessedRange), (table::VITALS_CLEAN, Settled::CommittedBatch)];

/// What one compaction pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Files written, each replacing several.
    pub merged_files: usize,
    /// Input files those replaced (hidden now, deleted after the grace period).
    pub replaced_files: usize,
    /// Covered files deleted after their grace period.
    pub deleted_files: usize,
}

/// One pass over every compacted table: deletes inputs whose grace period is over, then merges runs
/// of small settled files.
pub async fn compact_once(location: &DataLocation, config: &CompactionConfig) -> Result<CompactionReport> {
    let checkpoint = load_etl_checkpoint(location).await?;
    let mut report = CompactionReport::default();
    for (name, settled) in COMPACTED {
        let files = list_parquet(location, name).await?;
        let covered = covered_by(&files);
        let grace = chrono::Duration::seconds(i64::try_from(config.grace_seconds).unwrap_or(i64::MAX));
        for (path, coverer) in &covered {
            if Utc::now() - coverer.last_modified > grace {
                delete(location, path).await?;
                report.deleted_files += 1;
            }
        }
        let candidates: Vec<ObjectMeta> = files
            .into_iter()
            .filter(|m| !covered.contains_key(&m.location) && settled.holds(&m.location, &checkpoint))
            .collect();
        for run in runs(candidates, config) {
            merge(location, &run).await?;
            report.merged_files += 1;
            report.replaced_files += run.len();
        }
    }
    Ok(report)
}

/// Groups settled, visible files into runs worth merging: consecutive in their group's span order
/// (a run never skips a file, or its merged span would hide that file), in one folder, each smaller
/// than the target, together at most about the target; a run is kept when it has `min_files` files,
/// or at least two that reach the target.
fn runs(files: Vec<ObjectMeta>, config: &CompactionConfig) -> Vec<Vec<ObjectMeta>> {
    let target = config.target_bytes();
    let mut groups: BTreeMap<String, Vec<(Span, ObjectMeta)>> = BTreeMap::new();
    for meta in files {
        if let Some(span) = span_of(&meta.location) {
            groups.entry(span.group.clone()).or_default().push((span, meta));
        }
    }
    let mut out = Vec::new();
    for mut group in groups.into_values() {
        group.sort_by_key(|(s, _)| (s.first, s.last));
        let mut run: Vec<ObjectMeta> = Vec::new();
        let mut size = 0u64;
        let mut close = |run: &mut Vec<ObjectMeta>, size: &mut u64| {
            if run.len() >= config.min_files || (run.len() >= 2 && *size >= target) {
                out.push(std::mem::take(run));
            }
            run.clear();
            *size = 0;
        };
        for (_, meta) in group {
            let same_folder =
                run.last().is_none_or(|prev: &ObjectMeta| folder(&prev.location) == folder(&meta.location));
            if meta.size >= target || !same_folder || size + meta.size > target {
                close(&mut run, &mut size);
            }
            if meta.size < target {
                size += meta.size;
                run.push(meta);
            }
        }
        close(&mut run, &mut size);
    }
    out
}

fn folder(path: &Path) -> String {
    path.as_ref().rsplit_once('/').map_or(String::new(), |(dir, _)| dir.to_string())
}

/// The merged file's name: the inputs' group over their whole span, numbers as wide as the inputs'.
fn merged_path(run: &[ObjectMeta]) -> Option<Path> {
    let (first, last) = (run.first()?, run.last()?);
    let (a, b) = (span_of(&first.location)?, span_of(&last.location)?);
    let name = first.location.filename()?;
    let width = name.strip_suffix(".parquet")?.rsplit('-').next()?.len();
    let merged = format!("{}/{}-{:0width$}-{:0width$}.parquet", folder(&first.location), a.group, a.first, b.last);
    Some(Path::from(merged))
}

/// Writes the run's rows, in order, as one file; the inputs stay until a later pass deletes them.
async fn merge(location: &DataLocation, run: &[ObjectMeta]) -> Result<()> {
    let Some(target) = merged_path(run) else { return Ok(()) };
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
    let parquet_err = |path: &Path, e: parquet::errors::ParquetError| Error::Config(format!("compacting {path}: {e}"));
    let mut writer: Option<(arrow::datatypes::SchemaRef, ArrowWriter<Vec<u8>>)> = None;
    let mut rows = 0usize;
    for meta in run {
        let bytes = read(location, &meta.location).await?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| parquet_err(&meta.location, e))?;
        let schema = reader.schema();
        let (first_schema, w) = match &mut writer {
            Some(w) => w,
            None => writer.insert((
                schema.clone(),
                ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props.clone()))
                    .map_err(|e| parquet_err(&target, e))?,
            )),
        };
        if *first_schema != schema {
            // Schema changed between files (an upgrade): merge only like with like; this run waits.
            tracing::warn!(file = %meta.location, "Not compacting across a schema change.");
            return Ok(());
        }
        for batch in reader {
            let batch: RecordBatch = batch.map_err(|e| Error::Config(format!("compacting {}: {e}", meta.location)))?;
            rows += batch.num_rows();
            w.write(&batch).map_err(|e| parquet_err(&target, e))?;
        }
    }
    let Some((_, writer)) = writer else { return Ok(()) };
    let buffer = writer.into_inner().map_err(|e| parquet_err(&target, e))?;
    location
        .store()
        .put(&target, PutPayload::from(buffer))
        .await
        .map_err(|source| LakeError::store("put", &target, source))?;
    tracing::debug!(file = %target, inputs = run.len(), rows, "Compacted.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, size: u64) -> ObjectMeta {
        ObjectMeta { location: Path::from(name), last_modified: Utc::now(), size, e_tag: None, version: None }
    }

    #[test]
    fn runs_are_consecutive_small_files_of_one_folder() {
        let config = CompactionConfig { target_file_mb: 1, min_files: 3, ..CompactionConfig::default() };
        let mb = 1024 * 1024;
        let files = vec![
            meta("r/h=1/t-p0-1-1.parquet", 10),
            meta("r/h=1/t-p0-2-2.parquet", 10),
            meta("r/h=1/t-p0-3-3.parquet", 10),
            meta("r/h=2/t-p0-4-4.parquet", 10),
            meta("r/h=2/t-p0-5-5.parquet", mb),
            meta("r/h=2/t-p0-6-6.parquet", 10),
            meta("r/h=2/t-p1-1-1.parquet", 10),
            meta("r/h=2/t-p1-2-2.parquet", 10),
        ];
        let got: Vec<Vec<String>> =
            runs(files, &config).into_iter().map(|r| r.iter().map(|m| m.location.to_string()).collect()).collect();
        assert_eq!(got, vec![vec!["r/h=1/t-p0-1-1.parquet", "r/h=1/t-p0-2-2.parquet", "r/h=1/t-p0-3-3.parquet"]]);
        let run = [meta("v/batch-000000000003.parquet", 1), meta("v/batch-000000000004-000000000009.parquet", 1)];
        assert_eq!(merged_path(&run), Some(Path::from("v/batch-000000000003-000000000009.parquet")));
    }
}
