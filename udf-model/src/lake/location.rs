//! Where tables live: a directory or a URL (`file://`, or any object_store URL) opened as an object store.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use url::Url;

use crate::lake::error::{LakeError, Result};

/// Locations opened by this process, by the text they were opened with and by their URL.
fn opened() -> std::sync::MutexGuard<'static, std::collections::HashMap<String, DataLocation>> {
    static OPENED: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, DataLocation>>> =
        std::sync::LazyLock::new(Default::default);
    OPENED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An opened data location: the store, the root path inside it, and the URL DataFusion lists tables under.
#[derive(Debug, Clone)]
pub struct DataLocation {
    url: Url,
    store: Arc<dyn ObjectStore>,
    root: Path,
}

impl DataLocation {
    /// Opens `location`: a URL, or a local directory (created if missing, made absolute).
    pub fn open(location: &str) -> Result<DataLocation> {
        if let Some(opened) = opened().get(location) {
            return Ok(opened.clone());
        }
        Self::open_with_options(location, &std::collections::BTreeMap::new())
    }

    /// The store of an already opened location on the store `store_url` (`s3://bucket/`), if any: the
    /// executors' S3 reads go through the store the process configured, options included.
    pub fn opened_store(store_url: &str) -> Option<Arc<dyn ObjectStore>> {
        opened().values().find(|l| l.store_url() == store_url).map(|l| l.store.clone())
    }

    /// Opens `location` with object-store `options` (delta-rs's and object_store's key names, e.g.
    /// `aws_endpoint`, `aws_region`). For `s3://` the standard AWS environment variables
    /// (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ALLOW_HTTP`) apply first; `options` override them.
    pub fn open_with_options(
        location: &str,
        options: &std::collections::BTreeMap<String, String>,
    ) -> Result<DataLocation> {
        let fail = |reason: String| LakeError::Location { url: location.to_string(), reason };
        let url = match Url::parse(location) {
            Ok(url) if url.scheme().len() > 1 => url,
            // Not a URL (or a Windows drive letter): a directory.
            _ => {
                std::fs::create_dir_all(location).map_err(|e| fail(format!("creating directory: {e}")))?;
                let abs = std::fs::canonicalize(location).map_err(|e| fail(format!("resolving directory: {e}")))?;
                Url::from_directory_path(&abs).map_err(|()| fail("not an absolute directory".into()))?
            }
        };
        let (store, root): (Arc<dyn ObjectStore>, Path) = if url.scheme() == "file" {
            let dir = url.to_file_path().map_err(|()| fail("file URL has no local path".into()))?;
            std::fs::create_dir_all(&dir).map_err(|e| fail(format!("creating directory: {e}")))?;
            let root = Path::from_filesystem_path(&dir).map_err(|e| fail(e.to_string()))?;
            (Arc::new(LocalFileSystem::new()), root)
        } else if matches!(url.scheme(), "s3" | "s3a") {
            let mut builder = AmazonS3Builder::from_env().with_url(url.as_str());
            for (key, value) in options {
                let key: AmazonS3ConfigKey =
                    key.to_ascii_lowercase().parse().map_err(|e| fail(format!("storage option {key:?}: {e}")))?;
                builder = builder.with_config(key, value);
            }
            let store = builder.build().map_err(|e| fail(e.to_string()))?;
            (Arc::new(store), Path::from(url.path()))
        } else {
            let lowered = options.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone()));
            let (store, root) = object_store::parse_url_opts(&url, lowered).map_err(|e| fail(e.to_string()))?;
            (Arc::from(store), root)
        };
        // A trailing slash makes DataFusion treat table URLs as directories.
        let mut url = url;
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        let opened_location = DataLocation { url, store, root };
        // Later opens of the same location (its tables' URLs resolved at planning) reuse this store.
        let mut cache = opened();
        cache.insert(location.to_string(), opened_location.clone());
        cache.insert(opened_location.url.to_string(), opened_location.clone());
        Ok(opened_location)
    }

    /// The object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The URL of the location, ending in `/`.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Path of `relative` (slash-separated) inside the location.
    pub fn path(&self, relative: &str) -> Path {
        relative.split('/').filter(|p| !p.is_empty()).fold(self.root.clone(), |p, part| p.clone().join(part))
    }

    /// URL of a table's directory, ending in `/`, as DataFusion's `ListingTableUrl` wants it.
    pub fn table_url(&self, table: &str) -> String {
        format!("{}{table}/", self.url)
    }

    /// URL of the store itself (`file:///`, `s3://bucket/`), as DataFusion registers object stores.
    pub fn store_url(&self) -> String {
        if self.url.scheme() == "file" {
            "file:///".to_string()
        } else {
            format!("{}://{}/", self.url.scheme(), self.url.host_str().unwrap_or_default())
        }
    }

    /// URL of one object of the store, for DataFusion.
    pub fn object_url(&self, path: &Path) -> String {
        format!("{}{path}", self.store_url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_becomes_a_file_url() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("data");
        let loc = DataLocation::open(sub.to_str().unwrap()).unwrap();
        assert!(sub.is_dir());
        assert_eq!(loc.url().scheme(), "file");
        assert!(loc.table_url("vitals_raw").ends_with("/data/vitals_raw/"));
        let p = loc.path("vitals_raw/x.parquet");
        assert_eq!(
            loc.object_url(&p),
            format!("file://{}/vitals_raw/x.parquet", std::fs::canonicalize(&sub).unwrap().display())
        );
    }
}
