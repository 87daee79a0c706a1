//! The Iceberg catalog and warehouse sluice writes to and reads from.
//!
//! Embedded default: a SQLite catalog file and a local-filesystem warehouse,
//! both under the data directory. Scaled out: a Postgres SQL catalog or a
//! REST catalog, over a local or S3 warehouse.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The catalog handle every role holds (re-exported so roles need not
/// depend on iceberg to name it).
pub use iceberg::Catalog;
use iceberg::io::{LocalFsStorageFactory, StorageFactory};
use iceberg::spec::{Schema, Type};
use iceberg::table::Table;
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use iceberg::{CatalogBuilder, ErrorKind, NamespaceIdent};
use iceberg_catalog_rest::RestCatalogBuilder;
use iceberg_catalog_sql::{SqlBindStyle, SqlCatalogBuilder};
use iceberg_storage_opendal::OpenDalResolvingStorageFactory;
use serde::{Deserialize, Serialize};
use sluice_schema::tables::{ALL_TABLES, NAMESPACE, TableContract};

/// `[catalog]`: which Iceberg catalog holds the tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum CatalogConfig {
    /// A SQLite file (default `<data_dir>/catalog.db`): the embedded default.
    Sqlite { path: Option<PathBuf> },
    /// A Postgres database, e.g. `postgres://user:pass@host:5432/iceberg`.
    Postgres { uri: String },
    /// An Iceberg REST catalog.
    Rest {
        uri: String,
        warehouse: Option<String>,
        /// Bearer token.
        token: Option<String>,
        /// OAuth2 client credentials, `client_id:secret`.
        credential: Option<String>,
    },
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig::Sqlite { path: None }
    }
}

/// S3 access for an `s3://` warehouse. Unset keys fall back to the standard
/// AWS environment and profile chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Endpoint of an S3-compatible store, e.g. `http://127.0.0.1:8333`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most
    /// self-hosted stores.
    pub path_style: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// `[warehouse]`: where data and metadata files go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarehouseConfig {
    /// `file:///path` or `s3://bucket/prefix`; default `<data_dir>/warehouse`.
    pub location: Option<String>,
    pub s3: S3Config,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("creating {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("opening the {kind} catalog: {source}")]
    Open {
        kind: &'static str,
        source: Box<iceberg::Error>,
    },
    #[error("preparing table {table}: {source}")]
    Table {
        table: String,
        source: Box<iceberg::Error>,
    },
    #[error(
        "table {table} has column {column} as {found}, the contract says {expected}; \
         the table was created by something else or an incompatible sluice"
    )]
    Incompatible {
        table: String,
        column: String,
        found: String,
        expected: String,
    },
}

fn absolute(path: &Path) -> Result<PathBuf, CatalogError> {
    std::path::absolute(path).map_err(|source| CatalogError::Dir {
        path: path.to_path_buf(),
        source,
    })
}

fn create_dir(path: &Path) -> Result<(), CatalogError> {
    std::fs::create_dir_all(path).map_err(|source| CatalogError::Dir {
        path: path.to_path_buf(),
        source,
    })
}

/// Where the warehouse is, and how to reach it.
struct Warehouse {
    location: String,
    factory: Arc<dyn StorageFactory>,
    /// FileIO properties (`s3.*`).
    props: HashMap<String, String>,
}

fn warehouse(cfg: &WarehouseConfig, data_dir: &Path) -> Result<Warehouse, CatalogError> {
    let location = match &cfg.location {
        Some(l) => l.trim_end_matches('/').to_string(),
        None => {
            let dir = absolute(&data_dir.join("warehouse"))?;
            create_dir(&dir)?;
            format!("file://{}", dir.display())
        }
    };
    let mut props = HashMap::new();
    let s3 = &cfg.s3;
    let pairs = [
        ("s3.endpoint", s3.endpoint.clone()),
        ("s3.region", s3.region.clone()),
        ("s3.access-key-id", s3.access_key_id.clone()),
        ("s3.secret-access-key", s3.secret_access_key.clone()),
        (
            "s3.path-style-access",
            s3.path_style.then(|| "true".to_string()),
        ),
    ];
    for (k, v) in pairs {
        if let Some(v) = v {
            props.insert(k.to_string(), v);
        }
    }
    let factory: Arc<dyn StorageFactory> = if location.starts_with("file:") {
        Arc::new(LocalFsStorageFactory)
    } else {
        // Resolves s3://, file:// and others by scheme.
        Arc::new(OpenDalResolvingStorageFactory::new())
    };
    Ok(Warehouse {
        location,
        factory,
        props,
    })
}

/// The SQLite catalog file: `path`, or `<data_dir>/catalog.db`, absolute,
/// its directory created.
pub fn sqlite_path(path: Option<&Path>, data_dir: &Path) -> std::io::Result<PathBuf> {
    let path = std::path::absolute(path.unwrap_or(&data_dir.join("catalog.db")))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    Ok(path)
}

/// Opens the configured catalog.
pub async fn open(
    cfg: &CatalogConfig,
    wh: &WarehouseConfig,
    data_dir: &Path,
) -> Result<Arc<dyn Catalog>, CatalogError> {
    let Warehouse {
        location,
        factory,
        mut props,
    } = warehouse(wh, data_dir)?;
    match cfg {
        CatalogConfig::Sqlite { path } => {
            let path =
                sqlite_path(path.as_deref(), data_dir).map_err(|source| CatalogError::Dir {
                    path: data_dir.join("catalog.db"),
                    source,
                })?;
            // One connection: SQLite serialises writers anyway, and a single
            // connection avoids "database is locked" between our own commits.
            props.insert("pool.max-connections".into(), "1".into());
            sql_catalog(
                "sqlite",
                format!("sqlite://{}?mode=rwc", path.display()),
                location,
                props,
                factory,
            )
            .await
        }
        CatalogConfig::Postgres { uri } => {
            sql_catalog("postgres", uri.clone(), location, props, factory).await
        }
        CatalogConfig::Rest {
            uri,
            warehouse,
            token,
            credential,
        } => {
            props.insert("uri".into(), uri.clone());
            props.insert(
                "warehouse".into(),
                warehouse.clone().unwrap_or_else(|| location.clone()),
            );
            if let Some(t) = token {
                props.insert("token".into(), t.clone());
            }
            if let Some(c) = credential {
                props.insert("credential".into(), c.clone());
            }
            // The catalog decides where its tables live (often not under
            // the configured warehouse): resolve every location by scheme,
            // never as a local path.
            let _ = factory;
            let catalog = RestCatalogBuilder::default()
                .with_storage_factory(Arc::new(OpenDalResolvingStorageFactory::new()))
                .load("sluice", props)
                .await
                .map_err(|source| CatalogError::Open {
                    kind: "rest",
                    source: Box::new(source),
                })?;
            Ok(Arc::new(catalog))
        }
    }
}

async fn sql_catalog(
    kind: &'static str,
    uri: String,
    location: String,
    props: HashMap<String, String>,
    factory: Arc<dyn StorageFactory>,
) -> Result<Arc<dyn Catalog>, CatalogError> {
    let catalog = SqlCatalogBuilder::default()
        .uri(uri)
        .warehouse_location(location)
        .sql_bind_style(SqlBindStyle::DollarNumeric)
        .props(props)
        .with_storage_factory(factory)
        .load("sluice", HashMap::new())
        .await
        .map_err(|source| CatalogError::Open {
            kind,
            source: Box::new(source),
        })?;
    Ok(Arc::new(catalog))
}

fn table_err(table: &TableContract) -> impl Fn(iceberg::Error) -> CatalogError + '_ {
    move |source| CatalogError::Table {
        table: table.name.to_string(),
        source: Box::new(source),
    }
}

/// Readiness: whether a catalog call (`probe`) answers within 2 s — one
/// bound and one wording for every role's `/readyz`.
pub async fn answers<T>(
    probe: impl std::future::Future<Output = iceberg::Result<T>>,
) -> Result<(), String> {
    match tokio::time::timeout(std::time::Duration::from_secs(2), probe).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("catalog: {e}")),
        Err(_) => Err("catalog did not answer within 2 s".into()),
    }
}

/// Creates the namespace and tables that are missing and evolves existing
/// tables to the current contract (new optional columns are added; a column
/// of another type is an error). Safe to run from several processes at once.
pub async fn ensure_tables(catalog: &dyn Catalog) -> Result<Vec<Table>, CatalogError> {
    ensure_namespace(catalog).await?;
    let mut tables = Vec::new();
    for contract in ALL_TABLES {
        tables.push(ensure_table(catalog, contract).await?);
    }
    Ok(tables)
}

/// One table (and the namespace), for a role that writes only that one
/// (the alert evaluator and `alert_history`).
pub async fn ensure_one_table(
    catalog: &dyn Catalog,
    contract: &TableContract,
) -> Result<Table, CatalogError> {
    ensure_namespace(catalog).await?;
    ensure_table(catalog, contract).await
}

async fn ensure_namespace(catalog: &dyn Catalog) -> Result<(), CatalogError> {
    let ns = NamespaceIdent::new(NAMESPACE.to_string());
    let ns_err = |source| CatalogError::Table {
        table: NAMESPACE.to_string(),
        source: Box::new(source),
    };
    if !catalog.namespace_exists(&ns).await.map_err(ns_err)? {
        match catalog.create_namespace(&ns, HashMap::new()).await {
            Ok(_) => {}
            // Another process won the race.
            Err(_) if catalog.namespace_exists(&ns).await.unwrap_or(false) => {}
            Err(e) => return Err(ns_err(e)),
        }
    }
    Ok(())
}

async fn ensure_table(
    catalog: &dyn Catalog,
    contract: &TableContract,
) -> Result<Table, CatalogError> {
    let ident = contract.ident();
    let err = table_err(contract);
    let table = if catalog.table_exists(&ident).await.map_err(&err)? {
        catalog.load_table(&ident).await.map_err(&err)?
    } else {
        let creation = contract.table_creation(HashMap::new()).map_err(&err)?;
        match catalog.create_table(ident.namespace(), creation).await {
            Ok(t) => {
                tracing::info!(table = contract.name, "created table");
                t
            }
            Err(_) if catalog.table_exists(&ident).await.unwrap_or(false) => {
                catalog.load_table(&ident).await.map_err(&err)?
            }
            Err(e) => return Err(err(e)),
        }
    };
    evolve(catalog, contract, table).await
}

/// Same types, nested names and nullability, whatever the field ids: a
/// catalog may assign nested ids in its own order (SeaweedFS's, built on
/// iceberg-go, numbers a map's key and value right after the map), and the
/// writer stamps the table's ids on every batch it writes.
fn same_shape(a: &Type, b: &Type) -> bool {
    match (a, b) {
        (Type::Primitive(x), Type::Primitive(y)) => x == y,
        (Type::Struct(x), Type::Struct(y)) => {
            x.fields().len() == y.fields().len()
                && x.fields().iter().zip(y.fields()).all(|(f, g)| {
                    f.name == g.name
                        && f.required == g.required
                        && same_shape(&f.field_type, &g.field_type)
                })
        }
        (Type::List(x), Type::List(y)) => {
            x.element_field.required == y.element_field.required
                && same_shape(&x.element_field.field_type, &y.element_field.field_type)
        }
        (Type::Map(x), Type::Map(y)) => {
            x.value_field.required == y.value_field.required
                && same_shape(&x.key_field.field_type, &y.key_field.field_type)
                && same_shape(&x.value_field.field_type, &y.value_field.field_type)
        }
        _ => false,
    }
}

/// `int`, `string`…; nested types in full, since their Display is only `map`.
fn describe(t: &Type) -> String {
    match t {
        Type::Primitive(p) => p.to_string(),
        nested => format!("{nested:?}"),
    }
}

/// Adds the contract's columns the table lacks.
async fn evolve(
    catalog: &dyn Catalog,
    contract: &TableContract,
    table: Table,
) -> Result<Table, CatalogError> {
    let err = table_err(contract);
    let wanted = contract.iceberg_schema().map_err(&err)?;
    let current: &Schema = table.metadata().current_schema();
    let mut missing = Vec::new();
    for field in wanted.as_struct().fields() {
        match current.field_by_name(&field.name) {
            Some(have) if !same_shape(&have.field_type, &field.field_type) => {
                return Err(CatalogError::Incompatible {
                    table: contract.name.into(),
                    column: field.name.clone(),
                    found: describe(&have.field_type),
                    expected: describe(&field.field_type),
                });
            }
            Some(_) => {}
            None => missing.push(field.clone()),
        }
    }
    if missing.is_empty() {
        return Ok(table);
    }
    let names: Vec<String> = missing.iter().map(|f| f.name.clone()).collect();
    let tx = Transaction::new(&table);
    let mut update = tx.update_schema();
    for f in missing {
        let column = match &f.doc {
            Some(doc) => AddColumn::builder()
                .name(f.name.clone())
                .field_type((*f.field_type).clone())
                .doc(doc.clone())
                .build(),
            None => AddColumn::optional(f.name.clone(), (*f.field_type).clone()),
        };
        update = update.add_column(column);
    }
    let tx = update.apply(tx).map_err(&err)?;
    match tx.commit(catalog).await {
        Ok(t) => {
            tracing::info!(table = contract.name, columns = ?names, "evolved table schema");
            Ok(t)
        }
        // Another writer evolved it first.
        Err(e) if e.kind() == ErrorKind::PreconditionFailed => {
            catalog.load_table(&contract.ident()).await.map_err(&err)
        }
        Err(e) => Err(err(e)),
    }
}
