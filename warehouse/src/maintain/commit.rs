//! Committing snapshots iceberg-rust cannot make.
//!
//! iceberg-rust builds a catalog commit only from its own transaction
//! actions (`TableCommit`'s constructor is private), and none of them
//! removes files. For the SQL catalogs (SQLite, Postgres) this does what
//! their `update_table` does — apply the updates to the current metadata,
//! write the next `metadata.json`, and swap the catalog's pointer only if it
//! still points at the metadata the updates were built on — so a commit
//! made by anyone in between (a writer's append) makes this one fail with
//! [`CommitError::Conflict`], and the caller rebuilds on the new state.

use std::str::FromStr;
use std::sync::Arc;

use iceberg::table::Table;
use iceberg::{MetadataLocation, TableUpdate};
use sqlx::any::{AnyPoolOptions, install_default_drivers};

use crate::catalog::{CatalogConfig, sqlite_path};

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("table {table}: another commit landed first")]
    Conflict { table: String },
    #[error("table {table}: {context}: {source}")]
    Iceberg {
        table: String,
        context: &'static str,
        #[source]
        source: iceberg::Error,
    },
    #[error("table {table}: swapping the catalog's metadata pointer: {source}")]
    Sql {
        table: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "the {kind} catalog: table maintenance commits its snapshots through the SQL catalogs (SQLite, Postgres) only, for now; run Spark's rewrite_data_files/expire_snapshots against a REST catalog"
    )]
    Unsupported { kind: &'static str },
}

/// Swaps a table's metadata pointer in the catalog.
#[derive(Clone)]
pub enum MetadataCommitter {
    Sql {
        pool: sqlx::AnyPool,
        /// The catalog name sluice's SQL catalog uses (`sluice`).
        catalog: String,
    },
    Unsupported {
        kind: &'static str,
    },
}

impl std::fmt::Debug for MetadataCommitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sql { catalog, .. } => write!(f, "MetadataCommitter::Sql({catalog})"),
            Self::Unsupported { kind } => write!(f, "MetadataCommitter::Unsupported({kind})"),
        }
    }
}

impl MetadataCommitter {
    /// A committer for the catalog `cfg` describes.
    pub async fn open(
        cfg: &CatalogConfig,
        data_dir: &std::path::Path,
    ) -> Result<Arc<Self>, sqlx::Error> {
        let uri = match cfg {
            CatalogConfig::Sqlite { path } => {
                let path = sqlite_path(path.as_deref(), data_dir).map_err(sqlx::Error::Io)?;
                format!("sqlite://{}?mode=rwc", path.display())
            }
            CatalogConfig::Postgres { uri } => uri.clone(),
            CatalogConfig::Rest { .. } => {
                return Ok(Arc::new(Self::Unsupported { kind: "rest" }));
            }
        };
        install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&uri)
            .await?;
        Ok(Arc::new(Self::Sql {
            pool,
            catalog: "sluice".into(),
        }))
    }

    /// Commits `updates` on top of `table` (as loaded): the new metadata
    /// file is written, then the pointer swapped if nobody moved it.
    /// Returns the new metadata location.
    pub async fn commit(
        &self,
        table: &Table,
        updates: Vec<TableUpdate>,
    ) -> Result<String, CommitError> {
        let name = table.identifier().name().to_string();
        let (pool, catalog) = match self {
            Self::Sql { pool, catalog } => (pool, catalog),
            Self::Unsupported { kind } => return Err(CommitError::Unsupported { kind }),
        };
        let err = |context| {
            let name = name.clone();
            move |source| CommitError::Iceberg {
                table: name,
                context,
                source,
            }
        };
        let current = table
            .metadata_location_result()
            .map_err(err("the table's metadata location"))?
            .to_string();
        let mut builder = table.metadata().clone().into_builder(Some(current.clone()));
        for update in updates {
            builder = update.apply(builder).map_err(err("applying the update"))?;
        }
        let metadata = builder
            .build()
            .map_err(err("building the new metadata"))?
            .metadata;
        let location = MetadataLocation::from_str(&current)
            .map_err(err("the table's metadata location"))?
            .with_next_version()
            .with_new_metadata(&metadata);
        metadata
            .write_to(table.file_io(), &location)
            .await
            .map_err(err("writing the new metadata file"))?;
        let location = location.to_string();
        let swapped = sqlx::query(
            "UPDATE iceberg_tables
                SET metadata_location = $1, previous_metadata_location = $2
              WHERE catalog_name = $3 AND table_namespace = $4 AND table_name = $5
                AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL)
                AND metadata_location = $2",
        )
        .bind(&location)
        .bind(&current)
        .bind(catalog)
        .bind(table.identifier().namespace().join("."))
        .bind(table.identifier().name())
        .execute(pool)
        .await
        .map_err(|source| CommitError::Sql {
            table: name.clone(),
            source,
        })?;
        if swapped.rows_affected() == 0 {
            // Never referenced: remove it now rather than leave it to the
            // orphan sweep.
            let _ = table.file_io().delete(&location).await;
            return Err(CommitError::Conflict { table: name });
        }
        Ok(location)
    }
}
