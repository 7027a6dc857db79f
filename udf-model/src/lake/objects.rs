//! Listing, reading and deleting the lake's objects, with errors that name the object.

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};

use crate::lake::error::{LakeError, Result};
use crate::lake::location::DataLocation;

/// Every object under `prefix`, in any sub-folder.
pub async fn list(location: &DataLocation, prefix: &Path) -> Result<Vec<ObjectMeta>> {
    location.store().list(Some(prefix)).try_collect().await.map_err(|source| LakeError::store("list", prefix, source))
}

/// The whole content of an object.
pub async fn read(location: &DataLocation, path: &Path) -> Result<Bytes> {
    let found = location.store().get(path).await.map_err(|source| LakeError::store("get", path, source))?;
    found.bytes().await.map_err(|source| LakeError::store("get", path, source))
}

/// The whole content of an object, or `None` when there is none.
pub async fn read_if_exists(location: &DataLocation, path: &Path) -> Result<Option<Bytes>> {
    match location.store().get(path).await {
        Ok(found) => found.bytes().await.map(Some).map_err(|source| LakeError::store("get", path, source)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(source) => Err(LakeError::store("get", path, source)),
    }
}

/// Deletes an object; one already gone is fine (a pass killed half-way runs again).
pub async fn delete(location: &DataLocation, path: &Path) -> Result<()> {
    match location.store().delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(source) => Err(LakeError::store("delete", path, source)),
    }
}
