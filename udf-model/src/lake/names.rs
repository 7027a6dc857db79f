//! The names of the lake's objects. A name states what a file holds (a Kafka offset range, an ETL
//! micro-batch, a version of a table), so that writing it again after a crash replaces it instead of
//! adding a duplicate, and readers can tell from a listing what each file covers.
//!
//! Landed ranges: `vitals_raw/date=YYYY-MM-DD/hour=HH/<topic>-p<partition>-<first>-<last>.parquet`, the hour
//! being that of the Kafka timestamp of the range's first record (stable across replays, so a replay
//! of the same range replaces the same object); `dead_letters/ingest-<topic>-p<partition>-<first>-<last>.parquet`.
//! ETL outputs: `<table>/batch-<id>.parquet`. Versioned tables: `<dir>/v-<id>.parquet`. Checkpoints:
//! `_checkpoints/<owner>.json`.

use chrono::{DateTime, Utc};
use object_store::path::Path;

use crate::schema::table;

/// Object path of the ETL checkpoint, relative to the data location.
pub const ETL_CHECKPOINT: &str = "_checkpoints/etl.json";

/// Object path of an alert sink's checkpoint, relative to the data location.
pub fn alert_sink_checkpoint(sink: &str) -> String {
    format!("_checkpoints/alerts-{sink}.json")
}

/// Object path, relative to the data location, of batch `batch_id`'s file of `table` (`vitals_clean`,
/// `risk_alerts`): re-running the batch writes the same name.
pub fn batch_file(table: &str, batch_id: i64) -> String {
    format!("{table}/batch-{batch_id:012}.parquet")
}

/// File name of version `id` of a versioned table.
pub fn version_file(id: i64) -> String {
    format!("v-{id:012}.parquet")
}

/// The version id a file name holds.
pub(crate) fn parse_version(name: &str) -> Option<i64> {
    name.strip_prefix("v-")?.strip_suffix(".parquet")?.parse().ok()
}

/// The stage name ingest writes into `dead_letters.stage`, and the prefix of its dead-letter files.
pub const INGEST_STAGE: &str = "ingest";

/// Object path (relative to the data location) of a partition's offset range in `table`, flat in the
/// table's folder; see [`vitals_raw_file`] for the partitioned `vitals_raw` layout.
pub fn range_file(table: &str, prefix: &str, topic: &str, partition: i32, first: i64, last: i64) -> String {
    format!("{table}/{prefix}{topic}-p{partition}-{first:020}-{last:020}.parquet")
}

/// Object path of a `vitals_raw` range, under the date and hour of `first_timestamp_ms` (the Kafka
/// timestamp of the range's first record).
pub fn vitals_raw_file(topic: &str, partition: i32, first: i64, last: i64, first_timestamp_ms: i64) -> String {
    let time = DateTime::<Utc>::from_timestamp_millis(first_timestamp_ms).unwrap_or_default();
    let folder = format!("{}/{}", table::VITALS_RAW, time.format("date=%Y-%m-%d/hour=%H"));
    range_file(&folder, "", topic, partition, first, last)
}

/// Object path of the dead letters of a range.
pub fn dead_letter_file(topic: &str, partition: i32, first: i64, last: i64) -> String {
    range_file(table::DEAD_LETTERS, &format!("{INGEST_STAGE}-"), topic, partition, first, last)
}

/// The source range a landed file holds, read back from its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandedRange {
    /// Topic (with any prefix the file name had).
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset in the file.
    pub first: i64,
    /// Last offset in the file.
    pub last: i64,
}

impl LandedRange {
    /// Parses a file name (the last path segment); `None` for files ingest did not write.
    pub fn parse(file_name: &str) -> Option<LandedRange> {
        let stem = file_name.strip_suffix(".parquet")?;
        let mut parts = stem.rsplitn(4, '-');
        let last = parts.next()?.parse().ok()?;
        let first = parts.next()?.parse().ok()?;
        let partition = parts.next()?.strip_prefix('p')?.parse().ok()?;
        let topic = parts.next()?.to_string();
        Some(LandedRange { topic, partition, first, last })
    }
}

/// The source range of a landed object, from its name; `None` for files ingest did not write.
pub fn landed_range(path: &Path) -> Option<LandedRange> {
    path.filename().and_then(LandedRange::parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_round_trip_and_order() {
        assert_eq!(parse_version(&version_file(42)), Some(42));
        assert_eq!(parse_version("v-000000000042.parquet#1"), None);
        assert!(version_file(9) < version_file(10));
    }

    #[test]
    fn landed_file_names_round_trip() {
        let path = range_file("vitals_raw", "", "raw-patient", 2, 100, 199);
        assert_eq!(path, "vitals_raw/raw-patient-p2-00000000000000000100-00000000000000000199.parquet");
        let name = path.rsplit('/').next().unwrap();
        let range = LandedRange::parse(name).unwrap();
        assert_eq!(range, LandedRange { topic: "raw-patient".into(), partition: 2, first: 100, last: 199 });
        assert_eq!(LandedRange::parse("notes.parquet"), None);
        assert_eq!(LandedRange::parse("raw-patient-p2-1-2.csv"), None);
    }

    #[test]
    fn vitals_raw_files_sit_under_the_hour_of_their_first_record() {
        // 2026-11-24T10:15:02.123Z
        let path = vitals_raw_file("ward-3", 0, 5, 9, 1_795_515_302_123);
        assert_eq!(
            path,
            "vitals_raw/date=2026-11-24/hour=10/ward-3-p0-00000000000000000005-00000000000000000009.parquet"
        );
        assert_eq!(
            dead_letter_file("ward-3", 1, 5, 9),
            "dead_letters/ingest-ward-3-p1-00000000000000000005-00000000000000000009.parquet"
        );
    }
}
