//! The object stores behind warehouse locations: the local filesystem, or
//! S3 buckets reached with the warehouse's S3 settings (the standard AWS
//! environment first; `[warehouse.s3]` wins).

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;

use crate::catalog::S3Config;

/// The warehouse a table lives in: `<warehouse>` of its location
/// `<warehouse>/<namespace>/<table>`, where sluice keeps what lives beside
/// the tables (the log index, the alert state).
pub fn warehouse_of(table_location: &str) -> &str {
    let t = table_location.trim_end_matches('/');
    t.rsplitn(3, '/').nth(2).unwrap_or(t)
}

/// Builds the object store of a warehouse location.
#[derive(Debug, Default)]
pub struct ObjectStores {
    s3: S3Config,
}

impl ObjectStores {
    pub fn new(s3: S3Config) -> Self {
        Self { s3 }
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

    /// The store of one S3 bucket.
    pub fn bucket(&self, bucket: &str) -> object_store::Result<object_store::aws::AmazonS3> {
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
        // Create-only puts (the alert lease) use If-None-Match.
        b.with_virtual_hosted_style_request(!s3.path_style)
            .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
            .build()
    }
}
