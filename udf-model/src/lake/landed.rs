//! Landed files are the record of ingest's progress. Each flush of a Kafka partition lands its offset
//! range `[first, last]` as one `vitals_raw` file named after that range (written last, even when empty,
//! so its presence means "this range is complete") and, when the range held bad records, one
//! `dead_letters` file of the same range (written first). On assignment a partition resumes after
//! the last complete range; a dead-letters file beyond it is the remains of a flush that crashed
//! half-way and is deleted, because the replay lands that range again. File names: [`crate::lake::names`].

use std::collections::{BTreeMap, BTreeSet};

use crate::lake::error::Result;
use crate::lake::location::DataLocation;
use crate::lake::names::{INGEST_STAGE, LandedRange};
use crate::lake::objects::{delete, list};
use crate::schema::table;

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
    let prefix = format!("{INGEST_STAGE}-{topic}");
    let dead_letters = location.path(table::DEAD_LETTERS);
    let listed: Vec<_> = list(location, &dead_letters).await?;
    for meta in listed {
        let Some(range) = meta.location.filename().and_then(LandedRange::parse) else { continue };
        let orphan = range.topic == prefix
            && partitions.contains(&range.partition)
            && landed.get(&range.partition).is_none_or(|next| range.first >= *next);
        if orphan {
            tracing::info!(file = %meta.location, "Deleting the dead letters of a flush that did not complete; the range lands again.");
            delete(location, &meta.location).await?;
        }
    }
    Ok(landed)
}

/// Every landed range of `table`, in any sub-folder.
pub async fn list_ranges(location: &DataLocation, table: &str) -> Result<Vec<LandedRange>> {
    let listed = list(location, &location.path(table)).await?;
    Ok(listed.iter().filter_map(|m| m.location.filename().and_then(LandedRange::parse)).collect())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use object_store::ObjectStoreExt;

    use super::*;
    use crate::lake::names::{dead_letter_file, vitals_raw_file};

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
