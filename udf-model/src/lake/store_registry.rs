//! The object stores DataFusion reads the lake's files through, on the scheduler and on every
//! executor: the local file system as always, and an `s3://bucket` store: the one of the data location
//! this process opened (with its `[storage.options]`), else one made on first use from the standard AWS
//! environment, so that plans naming S3 files run on executors too.

use std::sync::Arc;

use datafusion::common::DataFusionError;
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use object_store::ObjectStore;
use url::Url;

use crate::lake::location::DataLocation;

/// DataFusion's registry, which also opens S3 buckets it has not seen yet.
#[derive(Debug, Default)]
pub struct LakeObjectStores {
    known: DefaultObjectStoreRegistry,
}

impl ObjectStoreRegistry for LakeObjectStores {
    fn register_store(&self, url: &Url, store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        self.known.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        self.known.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        match self.known.get_store(url) {
            Ok(store) => Ok(store),
            Err(_) if matches!(url.scheme(), "s3" | "s3a") => {
                let bucket = format!("{}://{}/", url.scheme(), url.host_str().unwrap_or_default());
                let store = match DataLocation::opened_store(&bucket) {
                    Some(store) => store,
                    None => {
                        DataLocation::open(&bucket).map_err(|e| DataFusionError::External(Box::new(e)))?.store().clone()
                    }
                };
                self.known.register_store(url, store.clone());
                Ok(store)
            }
            Err(e) => Err(e),
        }
    }
}
