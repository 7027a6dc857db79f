//! When a file of the lake is settled: never written again under its name, so maintenance may merge or
//! delete it. Decided from the ETL checkpoint, the truth of what has been processed.

use object_store::path::Path;
use vitalflow_udf_model::lake::LandedRange;
use vitalflow_udf_model::lake::checkpoint::EtlCheckpoint;
use vitalflow_udf_model::lake::coverage::span_of;

/// When a file will never be written again under its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// A landed `vitals_raw` range the ETL has processed.
    ProcessedRange,
    /// An output file of micro-batches up to the last committed one.
    CommittedBatch,
}

impl Settled {
    /// Whether the file at `path` is settled by `checkpoint`.
    pub fn holds(self, path: &Path, checkpoint: &EtlCheckpoint) -> bool {
        match self {
            Settled::ProcessedRange => path.filename().and_then(LandedRange::parse).is_some_and(|r| {
                checkpoint
                    .processed_offsets
                    .get(&format!("{}/{}", r.topic, r.partition))
                    .is_some_and(|done| r.last <= *done)
            }),
            Settled::CommittedBatch => span_of(path).is_some_and(|s| s.last <= checkpoint.last_batch_id),
        }
    }
}
