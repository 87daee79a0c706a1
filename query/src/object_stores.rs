//! Where DataFusion reads a table's data files from: the local filesystem,
//! or S3 buckets reached with the warehouse's S3 settings. A bucket's store
//! is made the first time a query reads from it and kept for later queries.

use std::sync::Arc;

use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
pub use sluice_warehouse::object_stores::ObjectStores;

/// A data file as DataFusion addresses it.
#[derive(Debug, PartialEq, Eq)]
pub struct FileAddress {
    pub store: ObjectStoreUrl,
    /// The path inside the store (no leading `/`).
    pub path: String,
}

/// Registers a location's store with DataFusion's runtime.
pub trait Resolve {
    /// `None`: a scheme without a store here; the caller reads the file
    /// another way.
    fn resolve(&self, runtime: &RuntimeEnv, location: &str) -> Option<FileAddress>;
}

impl Resolve for ObjectStores {
    fn resolve(&self, runtime: &RuntimeEnv, location: &str) -> Option<FileAddress> {
        if let Some(path) = location
            .strip_prefix("file://")
            .or_else(|| location.starts_with('/').then_some(location))
        {
            return Some(FileAddress {
                store: ObjectStoreUrl::local_filesystem(),
                path: path.trim_start_matches('/').to_string(),
            });
        }
        let rest = location
            .strip_prefix("s3://")
            .or_else(|| location.strip_prefix("s3a://"))?;
        let (bucket, key) = rest.split_once('/')?;
        let store = ObjectStoreUrl::parse(format!("s3://{bucket}")).ok()?;
        if runtime.object_store(&store).is_err() {
            let s3 = self.bucket(bucket).map_err(|e| {
                tracing::warn!(bucket, error = %e, "cannot read S3 bucket natively; using Iceberg's reader");
            });
            runtime.register_object_store(store.as_ref(), Arc::new(s3.ok()?));
        }
        Some(FileAddress {
            store,
            path: key.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use sluice_warehouse::catalog::S3Config;

    #[test]
    fn locations() {
        let rt = RuntimeEnvBuilder::new().build().unwrap();
        let stores = ObjectStores::new(S3Config {
            endpoint: Some("http://127.0.0.1:1".into()),
            region: Some("us-east-1".into()),
            path_style: true,
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
        });
        assert_eq!(
            stores
                .resolve(&rt, "file:///data/wh/t/x.parquet")
                .unwrap()
                .path,
            "data/wh/t/x.parquet"
        );
        assert_eq!(
            stores.resolve(&rt, "/data/x.parquet").unwrap().path,
            "data/x.parquet"
        );
        let s3 = stores
            .resolve(&rt, "s3://lake/wh/platform/t/data/d=1/x.parquet")
            .unwrap();
        assert_eq!(s3.store.as_str(), "s3://lake/");
        assert_eq!(s3.path, "wh/platform/t/data/d=1/x.parquet");
        assert!(
            rt.object_store(&s3.store).is_ok(),
            "registered for later queries"
        );
        assert!(stores.resolve(&rt, "gs://b/x.parquet").is_none());
    }
}
