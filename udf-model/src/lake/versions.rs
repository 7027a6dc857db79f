//! Tables kept as a series of complete versions, one file per ETL micro-batch: `patient_latest` and
//! the ETL's own state. A version is written whole under a new name (`<dir>/v-<batch id>.parquet`)
//! before its batch is committed, and never rewritten once committed, so a running query never sees a
//! half-written or changed file. Readers take the newest version whose batch is committed (the ETL
//! checkpoint says which); superseded versions are deleted after a grace period, longer than queries
//! take, so a query that resolved an older version can still finish reading it.

use std::time::Duration;

use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use serde::Deserialize;

use crate::lake::error::Result;
use crate::lake::location::DataLocation;
use crate::lake::names::parse_version;
use crate::lake::objects::delete;

/// The committed batch id in a checkpoint's JSON (0 when absent).
pub fn committed_batch(bytes: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    struct Committed {
        last_batch_id: i64,
    }
    serde_json::from_slice::<Committed>(bytes).ok().map(|c| c.last_batch_id)
}

/// A version present in a table's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The micro-batch that wrote it.
    pub id: i64,
    /// Object path.
    pub path: Path,
    /// When it was written.
    pub written: chrono::DateTime<chrono::Utc>,
}

/// Every version in `dir`, oldest first.
pub async fn list_versions(store: &dyn ObjectStore, dir: &Path) -> object_store::Result<Vec<Version>> {
    let mut versions: Vec<Version> = store
        .list(Some(dir))
        .try_filter_map(|meta| async move {
            Ok(meta.location.filename().and_then(parse_version).map(|id| Version {
                id,
                path: meta.location.clone(),
                written: meta.last_modified,
            }))
        })
        .try_collect()
        .await?;
    versions.sort_by_key(|v| v.id);
    Ok(versions)
}

/// The newest version of `versions` written by a batch at or before `committed`.
pub fn current(versions: &[Version], committed: i64) -> Option<&Version> {
    versions.iter().rev().find(|v| v.id <= committed)
}

/// Deletes versions superseded by a committed one more than `grace` ago, and versions of batches
/// beyond `committed` that a crash left behind are kept (the re-run overwrites them).
pub async fn retire_versions(location: &DataLocation, dir: &str, committed: i64, grace: Duration) -> Result<usize> {
    let prefix = location.path(dir);
    let store = location.store();
    let versions = list_versions(store.as_ref(), &prefix)
        .await
        .map_err(|source| crate::lake::LakeError::store("list", &prefix, source))?;
    let now = chrono::Utc::now();
    let mut deleted = 0;
    // A version may go once the version after it has been current for longer than `grace`.
    for pair in versions.windows(2) {
        let (old, newer) = (&pair[0], &pair[1]);
        let superseded_for = now.signed_duration_since(newer.written).to_std().unwrap_or_default();
        if newer.id <= committed && superseded_for > grace {
            delete(location, &old.path).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::names::version_file;

    #[test]
    fn the_committed_batch_is_read_from_the_checkpoint() {
        assert_eq!(committed_batch(br#"{"last_batch_id":7,"processed_offsets":{}}"#), Some(7));
    }

    #[test]
    fn the_current_version_is_the_newest_committed() {
        let v = |id| Version { id, path: Path::from(version_file(id)), written: chrono::Utc::now() };
        let versions = vec![v(1), v(3), v(5)];
        assert_eq!(current(&versions, 4).map(|v| v.id), Some(3));
        assert_eq!(current(&versions, 5).map(|v| v.id), Some(5));
        assert_eq!(current(&versions, 0), None);
    }
}
