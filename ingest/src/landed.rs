//! Landed files are the record of progress. Each flush of a Kafka partition lands its offset range
//! `[first, last]` as one `vitals_raw` file named after that range (written last, even when empty,
//! so its presence means "this range is complete") and, when the range held bad records, one
//! `dead_letters` file of the same range (written first). On assignment a partition resumes after
//! the last complete range; a dead-letters file beyond it is the remains of a flush that crashed
//! half-way and is deleted, because the replay lands that range again.
//!
//! Layout: `vitals_raw/date=YYYY-MM-DD/hour=HH/<topic>-p<partition>-<first>-<last>.parquet`, the hour
//! being that of the Kafka timestamp of the range's first record (stable across replays, so a replay
//! of the same range replaces the same object); `dead_letters/ingest-<topic>-p<partition>-<first>-<last>.parquet`.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use vitalflow_udf_model::schema::table;

use crate::error::{Error, Result};
use crate::store::DataLocation;

/// The stage name ingest writes into `dead_letters.stage`, and the prefix of its dead-letter files.
pub const STAGE: &str = "ingest";

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
    range_file(table::DEAD_LETTERS, &format!("{STAGE}-"), topic, partition, first, last)
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

/// Where each of `partitions` of `topic` resumes: one past the last offset of its complete landed
/// ranges, or absent when nothing of it has landed. Deletes dead-letter files of ranges that never
/// completed (see the module docs).
pub async fn resume_positions(
    location: &DataLocation,
    topic: &str,
    partitions: &BTreeSet<i32>,
) -> Result<BTreeMap<i32, i64>> {
    let mut landed: BTreeMap<i32, i64> = BTreeMap::new();
    for range in list_ranges(location, table::VITALS_RAW).await? {
        if range.topic == topic && partitions.contains(&range.partition) {
            let next = landed.entry(range.partition).or_insert(0);
            *next = (*next).max(range.last + 1);
        }
    }
    let prefix = format!("{STAGE}-{topic}");
    let dead_letters = location.path(table::DEAD_LETTERS);
    let listed: Vec<_> = list(location, &dead_letters).await?;
    for meta in listed {
        let Some(range) = meta.location.filename().and_then(LandedRange::parse) else { continue };
        let orphan = range.topic == prefix
            && partitions.contains(&range.partition)
            && landed.get(&range.partition).is_none_or(|next| range.first >= *next);
        if orphan {
            tracing::info!(file = %meta.location, "Deleting the dead letters of a flush that did not complete; the range lands again.");
            location.store().delete(&meta.location).await.map_err(|source| Error::Store {
                op: "delete",
                path: meta.location.to_string(),
                source,
            })?;
        }
    }
    Ok(landed)
}

/// Every landed range of `table`, in any sub-folder.
pub async fn list_ranges(location: &DataLocation, table: &str) -> Result<Vec<LandedRange>> {
    let listed = list(location, &location.path(table)).await?;
    Ok(listed.iter().filter_map(|m| m.location.filename().and_then(LandedRange::parse)).collect())
}

async fn list(location: &DataLocation, prefix: &object_store::path::Path) -> Result<Vec<object_store::ObjectMeta>> {
    location.store().list(Some(prefix)).try_collect().await.map_err(|source| Error::Store {
        op: "list",
        path: prefix.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    async fn touch(location: &DataLocation, relative: &str) {
        location.store().put(&location.path(relative), bytes::Bytes::new().into()).await.unwrap();
    }

    #[tokio::test]
    async fn resumes_after_complete_ranges_and_drops_half_landed_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        let location = DataLocation::open(dir.path().to_str().unwrap()).unwrap();
        touch(&location, &vitals_raw_file("t", 0, 0, 99, 0)).await;
        touch(&location, &vitals_raw_file("t", 0, 100, 149, 4_000_000_000)).await;
        touch(&location, &vitals_raw_file("t", 1, 0, 9, 0)).await;
        touch(&location, &vitals_raw_file("other", 2, 0, 500, 0)).await;
        let complete = dead_letter_file("t", 0, 100, 149);
        let orphan = dead_letter_file("t", 0, 150, 170);
        let orphan_fresh = dead_letter_file("t", 2, 0, 3);
        for f in [&complete, &orphan, &orphan_fresh] {
            touch(&location, f).await;
        }
        let positions = resume_positions(&location, "t", &BTreeSet::from([0, 1, 2])).await.unwrap();
        assert_eq!(positions, BTreeMap::from([(0, 150), (1, 10)]));
        let left: BTreeSet<String> = list_ranges(&location, table::DEAD_LETTERS)
            .await
            .unwrap()
            .into_iter()
            .map(|r| dead_letter_file(r.topic.trim_start_matches("ingest-"), r.partition, r.first, r.last))
            .collect();
        assert_eq!(left, BTreeSet::from([complete]));
    }
}
