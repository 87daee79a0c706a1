//! Tables created by an older sluice evolve to the current contract on start
//! (new optional columns are added and old rows read them as NULL); a column
//! whose type changed is refused with a clear error instead of being written
//! wrongly.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
use iceberg::{Catalog, NamespaceIdent, TableCreation};
use sluice_schema::tables::{NAMESPACE, PLATFORM_EVENTS};
use sluice_warehouse::catalog::{self, CatalogConfig, CatalogError, WarehouseConfig};

async fn embedded(dir: &std::path::Path) -> Arc<dyn Catalog> {
    catalog::open(&CatalogConfig::default(), &WarehouseConfig::default(), dir)
        .await
        .unwrap()
}

async fn create_old_table(c: &dyn Catalog, schema: Schema) {
    let ns = NamespaceIdent::new(NAMESPACE.to_string());
    c.create_namespace(&ns, HashMap::new()).await.unwrap();
    let creation = TableCreation::builder()
        .name(PLATFORM_EVENTS.name.to_string())
        .schema(schema)
        .build();
    c.create_table(&ns, creation).await.unwrap();
}

/// The contract's schema without its last `drop` columns: what an older
/// release would have created.
fn older_schema(drop: usize) -> Schema {
    let current = PLATFORM_EVENTS.iceberg_schema().unwrap();
    let fields = current.as_struct().fields();
    Schema::builder()
        .with_fields(fields[..fields.len() - drop].iter().cloned())
        .build()
        .unwrap()
}

#[tokio::test]
async fn missing_optional_columns_are_added() {
    let dir = tempfile::tempdir().unwrap();
    let c = embedded(dir.path()).await;
    create_old_table(c.as_ref(), older_schema(2)).await;
    let before = c.load_table(&PLATFORM_EVENTS.ident()).await.unwrap();
    assert!(
        before
            .metadata()
            .current_schema()
            .field_by_name("exit_code")
            .is_none()
    );

    catalog::ensure_tables(c.as_ref()).await.unwrap();
    let after = c.load_table(&PLATFORM_EVENTS.ident()).await.unwrap();
    let schema = after.metadata().current_schema();
    for name in ["actor", "exit_code"] {
        let f = schema
            .field_by_name(name)
            .unwrap_or_else(|| panic!("{name} not added"));
        assert!(!f.required);
        assert_eq!(
            f.id,
            PLATFORM_EVENTS.column(name).unwrap().id,
            "{name} got the contract's id"
        );
    }
    // Running again is a no-op.
    catalog::ensure_tables(c.as_ref()).await.unwrap();
    let again = c.load_table(&PLATFORM_EVENTS.ident()).await.unwrap();
    assert_eq!(
        again.metadata().current_schema_id(),
        after.metadata().current_schema_id()
    );
}

#[tokio::test]
async fn a_changed_column_type_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = embedded(dir.path()).await;
    let mut fields: Vec<_> = older_schema(0).as_struct().fields().to_vec();
    let i = fields
        .iter()
        .position(|f| f.name == "restart_count")
        .unwrap();
    fields[i] = Arc::new(NestedField::optional(
        fields[i].id,
        "restart_count",
        Type::Primitive(PrimitiveType::String),
    ));
    create_old_table(
        c.as_ref(),
        Schema::builder().with_fields(fields).build().unwrap(),
    )
    .await;

    let err = catalog::ensure_tables(c.as_ref()).await.unwrap_err();
    assert!(matches!(err, CatalogError::Incompatible { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("restart_count") && text.contains("string") && text.contains("int"),
        "{text}"
    );
}
