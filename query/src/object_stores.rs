//! Where DataFusion reads a table's data files from: the local filesystem,
//! or S3 buckets reached with the warehouse's S3 settings. A bucket's store
//! is made the first time a query reads from it and kept for later queries.

use std::sync::Arc;

use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use object_store::aws::AmazonS3Builder;
use sluice_ingest::catalog::S3Config;

/// Resolves data file locations to an object store DataFusion can read.
#[derive(Debug, Default)]
pub struct ObjectStores {
    s3: S3Config,
}

/// A data file as DataFusion addresses it.
#[derive(Debug, PartialEq, Eq)]
pub struct FileAddress {
    pub store: ObjectStoreUrl,
    /// The path inside the store (no leading `/`).
    pub path: String,
}

impl ObjectStores {
    pub fn new(s3: S3Config) -> Self {
        Self { s3 }
    }

    /// `None`: a scheme without a store here; the caller reads the file
    /// another way.
    pub fn resolve(&self, runtime: &RuntimeEnv, location: &str) -> Option<FileAddress> {
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

    /// A store and the path inside it for a location the index writes to
    /// (`file://…`, a plain path, or `s3://bucket/…`).
    pub fn store_for(
        &self,
        location: &str,
    ) -> Result<(Arc<dyn object_store::ObjectStore>, object_store::path::Path), String> {
        if let Some(path) = location
            .strip_prefix("file://")
            .or_else(|| location.starts_with('/').then_some(location))
        {
            std::fs::create_dir_all(path).map_err(|e| format!("creating {path}: {e}"))?;
            let store = object_store::local::LocalFileSystem::new();
            let root =
                object_store::path::Path::from_filesystem_path(path).map_err(|e| e.to_string())?;
            return Ok((Arc::new(store), root));
        }
        let rest = location
            .strip_prefix("s3://")
            .or_else(|| location.strip_prefix("s3a://"))
            .ok_or_else(|| format!("no object store for {location:?} (file:// or s3://)"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let store = self.bucket(bucket).map_err(|e| e.to_string())?;
        Ok((Arc::new(store), object_store::path::Path::from(key)))
    }

    fn bucket(&self, bucket: &str) -> object_store::Result<object_store::aws::AmazonS3> {
        // The standard AWS environment first; the warehouse's settings win.
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let s3 = &self.s3;
        if let Some(endpoint) = &s3.endpoint {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(region) = &s3.region {
            b = b.with_region(region);
        }
        if let Some(key) = &s3.access_key_id {
            b = b.with_access_key_id(key);
        }
        if let Some(secret) = &s3.secret_access_key {
            b = b.with_secret_access_key(secret);
        }
        b.with_virtual_hosted_style_request(!s3.path_style).build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;

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
