//! Committing snapshots iceberg-rust cannot make.
//!
//! iceberg-rust builds a catalog commit only from its own transaction
//! actions (`TableCommit`'s constructor is private), and none of them
//! removes files. So this does what the catalogs' own `update_table` does:
//!
//! - SQL catalogs (SQLite, Postgres): apply the updates to the current
//!   metadata, write the next `metadata.json`, and swap the catalog's
//!   pointer only if it still points at the metadata the updates were built
//!   on;
//! - REST catalogs: send the updates with the requirements that the `main`
//!   branch is still at the snapshot they were built on (the REST spec's
//!   commit, `POST /v1/{prefix}/namespaces/{ns}/tables/{table}`), with the
//!   configured bearer token or OAuth2 client credentials.
//!
//! Either way a commit made by anyone in between (a writer's append) makes
//! this one fail with [`CommitError::Conflict`], and the caller rebuilds on
//! the new state.

use std::str::FromStr;
use std::sync::Arc;

use iceberg::spec::MAIN_BRANCH;
use iceberg::table::Table;
use iceberg::{MetadataLocation, TableRequirement, TableUpdate};
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
    #[error("table {table}: the REST catalog: {message}")]
    Rest { table: String, message: String },
}

/// Swaps a table's metadata pointer in the catalog.
pub enum MetadataCommitter {
    Sql {
        pool: sqlx::AnyPool,
        /// The catalog name sluice's SQL catalog uses (`sluice`).
        catalog: String,
    },
    Rest(Box<RestCommitter>),
}

/// The REST catalog's commit endpoint, and how to authenticate to it.
pub struct RestCommitter {
    client: reqwest::Client,
    uri: String,
    warehouse: Option<String>,
    token: Option<String>,
    credential: Option<String>,
    /// Fetched once: the config's URL prefix and the OAuth2 token.
    session: tokio::sync::Mutex<Option<(Option<String>, Option<String>)>>,
}

impl std::fmt::Debug for MetadataCommitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sql { catalog, .. } => write!(f, "MetadataCommitter::Sql({catalog})"),
            Self::Rest(r) => write!(f, "MetadataCommitter::Rest({})", r.uri),
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
            CatalogConfig::Rest {
                uri,
                warehouse,
                token,
                credential,
            } => {
                return Ok(Arc::new(Self::Rest(Box::new(RestCommitter {
                    client: reqwest::Client::builder()
                        .timeout(std::time::Duration::from_secs(60))
                        .build()
                        .map_err(|e| sqlx::Error::Configuration(Box::new(e)))?,
                    uri: uri.trim_end_matches('/').to_string(),
                    warehouse: warehouse.clone(),
                    token: token.clone(),
                    credential: credential.clone(),
                    session: tokio::sync::Mutex::new(None),
                }))));
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
            Self::Rest(rest) => return rest.commit(table, updates).await,
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

impl RestCommitter {
    fn err(table: &Table, message: impl std::fmt::Display) -> CommitError {
        CommitError::Rest {
            table: table.identifier().name().to_string(),
            message: message.to_string(),
        }
    }

    /// The URL prefix the catalog's config names, and a bearer token.
    async fn session(
        &self,
        table: &Table,
    ) -> Result<(Option<String>, Option<String>), CommitError> {
        let mut session = self.session.lock().await;
        if let Some(s) = session.as_ref() {
            return Ok(s.clone());
        }
        let mut token = self.token.clone();
        if token.is_none()
            && let Some(credential) = &self.credential
        {
            let (id, secret) = credential
                .split_once(':')
                .unwrap_or(("", credential.as_str()));
            let answer = self
                .client
                .post(format!("{}/v1/oauth/tokens", self.uri))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", id),
                    ("client_secret", secret),
                    ("scope", "catalog"),
                ])
                .send()
                .await
                .map_err(|e| Self::err(table, format!("requesting a token: {e}")))?;
            let status = answer.status();
            let body: serde_json::Value = answer
                .json()
                .await
                .map_err(|e| Self::err(table, format!("reading the token answer: {e}")))?;
            if !status.is_success() {
                return Err(Self::err(table, format!("token request: {status} {body}")));
            }
            token = body["access_token"].as_str().map(str::to_string);
        }
        let mut config = self.client.get(format!("{}/v1/config", self.uri));
        if let Some(w) = &self.warehouse {
            config = config.query(&[("warehouse", w)]);
        }
        if let Some(t) = &token {
            config = config.bearer_auth(t);
        }
        let answer = config
            .send()
            .await
            .map_err(|e| Self::err(table, format!("reading its config: {e}")))?;
        let status = answer.status();
        let body: serde_json::Value = answer
            .json()
            .await
            .map_err(|e| Self::err(table, format!("reading its config: {e}")))?;
        if !status.is_success() {
            return Err(Self::err(table, format!("config: {status} {body}")));
        }
        let prefix = body["overrides"]["prefix"]
            .as_str()
            .or_else(|| body["defaults"]["prefix"].as_str())
            .map(str::to_string);
        *session = Some((prefix.clone(), token.clone()));
        Ok((prefix, token))
    }

    async fn commit(
        &self,
        table: &Table,
        updates: Vec<TableUpdate>,
    ) -> Result<String, CommitError> {
        let (prefix, token) = self.session(table).await?;
        let ident = table.identifier();
        let namespace = ident.namespace().join("\u{1f}");
        let mut url = format!("{}/v1", self.uri);
        if let Some(p) = &prefix {
            url = format!("{url}/{p}");
        }
        url = format!("{url}/namespaces/{namespace}/tables/{}", ident.name());
        let requirements = vec![
            TableRequirement::UuidMatch {
                uuid: table.metadata().uuid(),
            },
            TableRequirement::RefSnapshotIdMatch {
                r#ref: MAIN_BRANCH.to_string(),
                snapshot_id: table.metadata().current_snapshot_id(),
            },
        ];
        let body = serde_json::json!({
            "identifier": { "namespace": ident.namespace().as_ref(), "name": ident.name() },
            "requirements": requirements,
            "updates": updates,
        });
        let mut request = self.client.post(&url).json(&body);
        if let Some(t) = &token {
            request = request.bearer_auth(t);
        }
        let answer = request
            .send()
            .await
            .map_err(|e| Self::err(table, format!("committing: {e}")))?;
        let status = answer.status();
        if status == reqwest::StatusCode::CONFLICT {
            return Err(CommitError::Conflict {
                table: ident.name().to_string(),
            });
        }
        let text = answer.text().await.unwrap_or_default();
        if !status.is_success() {
            if status == reqwest::StatusCode::UNAUTHORIZED {
                // A token that expired: fetch a new one next time.
                *self.session.lock().await = None;
            }
            return Err(Self::err(
                table,
                format!("commit answered {status}: {text}"),
            ));
        }
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        Ok(answer["metadata-location"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }
}
