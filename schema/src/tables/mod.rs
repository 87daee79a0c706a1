//! The four tables of namespace `platform`, each declared once.
//!
//! Field ids are part of the contract: Iceberg resolves columns by id, so an id
//! once shipped is never reused or renumbered. Ids follow the order Iceberg
//! assigns them when it creates a table (top-level columns 1..N in order, then
//! nested fields such as map keys and values), so a table created fresh and a
//! table evolved from an older release agree. A new column goes at the end
//! with the next id, and is optional, so older tables evolve instead of
//! breaking.

mod alert_history;
mod event_logs;
mod platform_events;
mod pod_logs;

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::Schema as ArrowSchema;
use iceberg::spec::{
    MapType, NestedField, NullOrder, PrimitiveType, Schema, SortDirection, SortField, SortOrder,
    Transform, Type, UnboundPartitionSpec,
};
use iceberg::{NamespaceIdent, TableCreation, TableIdent};

pub use alert_history::{ALERT_HISTORY, ALERT_STATES};
pub use event_logs::{CALLER_TYPES, EVENT_LOGS};
pub use platform_events::{EVENT_TYPES, PLATFORM_EVENTS};
pub use pod_logs::{POD_LOGS, STREAMS, line_id as pod_log_line_id};

/// The Iceberg namespace all sluice tables live in.
pub const NAMESPACE: &str = "platform";

/// Column value types used by sluice tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Boolean,
    Int,
    Long,
    Double,
    /// Microsecond timestamp with time zone (stored as UTC).
    TimestampTz,
    /// `map<string, string>`; the two ids are the key and value field ids.
    StringMap {
        key_id: i32,
        value_id: i32,
    },
}

/// One column of a table contract.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub id: i32,
    pub name: &'static str,
    pub ty: ColumnType,
    pub required: bool,
    pub doc: &'static str,
}

impl Column {
    const fn new(
        id: i32,
        name: &'static str,
        ty: ColumnType,
        required: bool,
        doc: &'static str,
    ) -> Self {
        Self {
            id,
            name,
            ty,
            required,
            doc,
        }
    }
    pub const fn required(id: i32, name: &'static str, ty: ColumnType, doc: &'static str) -> Self {
        Self::new(id, name, ty, true, doc)
    }
    pub const fn optional(id: i32, name: &'static str, ty: ColumnType, doc: &'static str) -> Self {
        Self::new(id, name, ty, false, doc)
    }

    fn iceberg_type(&self) -> Type {
        match self.ty {
            ColumnType::String => Type::Primitive(PrimitiveType::String),
            ColumnType::Boolean => Type::Primitive(PrimitiveType::Boolean),
            ColumnType::Int => Type::Primitive(PrimitiveType::Int),
            ColumnType::Long => Type::Primitive(PrimitiveType::Long),
            ColumnType::Double => Type::Primitive(PrimitiveType::Double),
            ColumnType::TimestampTz => Type::Primitive(PrimitiveType::Timestamptz),
            ColumnType::StringMap { key_id, value_id } => Type::Map(MapType::new(
                NestedField::map_key_element(key_id, Type::Primitive(PrimitiveType::String)).into(),
                NestedField::map_value_element(
                    value_id,
                    Type::Primitive(PrimitiveType::String),
                    false,
                )
                .into(),
            )),
        }
    }

    fn iceberg_field(&self) -> NestedField {
        let field = if self.required {
            NestedField::required(self.id, self.name, self.iceberg_type())
        } else {
            NestedField::optional(self.id, self.name, self.iceberg_type())
        };
        field.with_doc(self.doc)
    }
}

/// A table's whole contract: columns, partitioning and sort order.
#[derive(Debug)]
pub struct TableContract {
    pub name: &'static str,
    pub doc: &'static str,
    pub columns: &'static [Column],
    /// The timestamp column partitioned by `day(...)`.
    pub day_partition_column: &'static str,
    /// Columns the rows of one data file are sorted by, ascending, nulls first.
    pub sort_columns: &'static [&'static str],
    /// The column that identifies a row across replays (dedup key).
    pub id_column: &'static str,
}

/// All tables, in creation order.
pub const ALL_TABLES: [&TableContract; 4] =
    [&EVENT_LOGS, &POD_LOGS, &PLATFORM_EVENTS, &ALERT_HISTORY];

/// Errors turning a contract into Iceberg objects; these mean the contract
/// itself is wrong, which tests catch.
pub type Result<T> = std::result::Result<T, iceberg::Error>;

impl TableContract {
    pub fn column(&self, name: &str) -> Option<&'static Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn ident(&self) -> TableIdent {
        TableIdent::new(NamespaceIdent::new(NAMESPACE.to_string()), self.name.into())
    }

    /// The Iceberg schema (schema id 0), field ids as declared.
    pub fn iceberg_schema(&self) -> Result<Schema> {
        Schema::builder()
            .with_schema_id(0)
            .with_fields(self.columns.iter().map(|c| Arc::new(c.iceberg_field())))
            .build()
    }

    /// The Arrow schema derived from the Iceberg schema; every field carries
    /// its Iceberg field id in the Parquet field-id metadata.
    pub fn arrow_schema(&self) -> Result<ArrowSchema> {
        iceberg::arrow::schema_to_arrow_schema(&self.iceberg_schema()?)
    }

    fn column_id(&self, name: &str) -> Result<i32> {
        self.column(name).map(|c| c.id).ok_or_else(|| {
            iceberg::Error::new(
                iceberg::ErrorKind::DataInvalid,
                format!("table {} has no column {name}", self.name),
            )
        })
    }

    /// `day(<timestamp column>)`.
    pub fn partition_spec(&self) -> Result<UnboundPartitionSpec> {
        Ok(UnboundPartitionSpec::builder()
            .add_partition_field(
                self.column_id(self.day_partition_column)?,
                format!("{}_day", self.day_partition_column),
                Transform::Day,
            )?
            .build())
    }

    pub fn sort_order(&self) -> Result<SortOrder> {
        let mut builder = SortOrder::builder();
        builder.with_order_id(1);
        for name in self.sort_columns {
            builder.with_sort_field(
                SortField::builder()
                    .source_id(self.column_id(name)?)
                    .transform(Transform::Identity)
                    .direction(SortDirection::Ascending)
                    .null_order(NullOrder::First)
                    .build(),
            );
        }
        builder.build_unbound()
    }

    /// What a catalog needs to create this table.
    pub fn table_creation(&self, properties: HashMap<String, String>) -> Result<TableCreation> {
        Ok(TableCreation::builder()
            .name(self.name.to_string())
            .schema(self.iceberg_schema()?)
            .partition_spec(self.partition_spec()?)
            .sort_order(self.sort_order()?)
            .properties(properties)
            .build())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_contract_builds_and_ids_are_unique() {
        for table in ALL_TABLES {
            let schema = table.iceberg_schema().unwrap();
            let arrow = table.arrow_schema().unwrap();
            assert_eq!(arrow.fields().len(), table.columns.len(), "{}", table.name);
            table.partition_spec().unwrap();
            table.sort_order().unwrap();
            let mut ids = HashSet::new();
            for c in table.columns {
                assert!(ids.insert(c.id), "{}: duplicate id {}", table.name, c.id);
                if let ColumnType::StringMap { key_id, value_id } = c.ty {
                    assert!(ids.insert(key_id) && ids.insert(value_id));
                }
                assert!(!c.doc.is_empty(), "{}.{} has no doc", table.name, c.name);
                assert_eq!(schema.field_by_name(c.name).unwrap().id, c.id);
            }
            assert!(table.column(table.id_column).unwrap().required);
        }
    }

    #[test]
    fn arrow_fields_carry_iceberg_ids() {
        let arrow = EVENT_LOGS.arrow_schema().unwrap();
        let f = arrow.field_with_name("occurred_at").unwrap();
        assert_eq!(
            f.metadata().get("PARQUET:field_id").map(String::as_str),
            Some("2")
        );
    }

    /// A catalog creating the table assigns exactly the declared ids.
    #[test]
    fn declared_ids_survive_table_creation() {
        for table in ALL_TABLES {
            let mut creation = table.table_creation(HashMap::new()).unwrap();
            creation.location = Some(format!("file:///tmp/{}", table.name));
            let built = iceberg::spec::TableMetadataBuilder::from_table_creation(creation)
                .unwrap()
                .build()
                .unwrap();
            let schema = built.metadata.current_schema();
            assert_eq!(
                schema.as_struct(),
                table.iceberg_schema().unwrap().as_struct(),
                "{}: the catalog would renumber the declared ids",
                table.name
            );
        }
    }

    /// Field ids are forever: this pins them. Changing an id here means every
    /// existing table in the field reads the wrong column.
    #[test]
    fn field_ids_are_pinned() {
        let ids = |t: &TableContract| {
            t.columns
                .iter()
                .map(|c| format!("{}={}", c.name, c.id))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(
            ids(&EVENT_LOGS),
            "event_id=1,occurred_at=2,service=3,action=4,success=5,user_id=6,method=7,path=8,\
             status_code=9,latency_ms=10,client_ip=11,user_agent=12,service_account=13,\
             request_id=14,trace_id=15,bytes_in=16,bytes_out=17,attributes=18,endpoint=19,\
             caller_type=20,team=21,domain=22,ingested_at=23"
        );
        assert_eq!(
            ids(&POD_LOGS),
            "ts=1,cluster=2,namespace=3,pod=4,pod_uid=5,container=6,restart=7,stream=8,level=9,\
             message=10,node=11,line_id=12,byte_offset=13,file_fingerprint=14"
        );
        assert_eq!(
            ids(&PLATFORM_EVENTS),
            "event_id=1,occurred_at=2,cluster=3,namespace=4,kind=5,name=6,container=7,reason=8,\
             type=9,message=10,restart_count=11,actor=12,exit_code=13"
        );
    }
}
