//! The contracts of sluice's tables and of the raw records that feed them.
//!
//! Every table is declared once, in [`tables`], as a list of columns with
//! stable Iceberg field ids. The Iceberg schema, the Arrow schema, the
//! partition spec and the sort order are all derived from that declaration, so
//! they cannot drift apart. [`raw`] holds the input contracts (what producers
//! send) and their validation; [`batch`] turns validated rows into Arrow
//! record batches in the table's exact schema.

pub mod batch;
pub mod directory;
pub mod raw;
pub mod show;
pub mod tables;
pub mod time;
pub mod validation;
pub mod wire;

pub use tables::{NAMESPACE, TableContract};
pub use validation::{FieldProblem, ValidationErrors};
