//! Printing data for people (aligned, colored tables on a terminal) and for
//! scripts (`--format csv|json`).

use std::io::{self, IsTerminal, Write};

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Attribute, Cell, CellAlignment, ContentArrangement};
use serde_json::{Map, Value};

/// How a command prints its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people (colored on a terminal).
    #[default]
    Table,
    /// RFC 4180 CSV with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
}

/// A value in a result table.
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    Text(String),
    Int(i64),
    Float(f64),
    Null,
}

impl Datum {
    fn to_text(&self) -> String {
        match self {
            Datum::Text(s) => s.clone(),
            Datum::Int(n) => n.to_string(),
            Datum::Float(f) => format!("{f:.3}"),
            Datum::Null => String::new(),
        }
    }
    fn to_json(&self) -> Value {
        match self {
            Datum::Text(s) => Value::String(s.clone()),
            Datum::Int(n) => Value::from(*n),
            Datum::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Datum::Null => Value::Null,
        }
    }
}

impl From<&str> for Datum {
    fn from(s: &str) -> Self {
        Datum::Text(s.to_string())
    }
}
impl From<String> for Datum {
    fn from(s: String) -> Self {
        Datum::Text(s)
    }
}
impl From<u64> for Datum {
    fn from(n: u64) -> Self {
        i64::try_from(n).map_or(Datum::Float(n as f64), Datum::Int)
    }
}
impl From<i64> for Datum {
    fn from(n: i64) -> Self {
        Datum::Int(n)
    }
}
impl From<f64> for Datum {
    fn from(f: f64) -> Self {
        Datum::Float(f)
    }
}

/// Rows under named columns.
#[derive(Debug, Clone, Default)]
pub struct DataTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Datum>>,
}

impl DataTable {
    pub fn new(columns: &[&str]) -> Self {
        Self {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<Datum>) {
        self.rows.push(row);
    }

    /// Writes the table in `format`; `color` styles the table form.
    pub fn write(&self, out: &mut dyn Write, format: OutputFormat, color: bool) -> io::Result<()> {
        match format {
            OutputFormat::Table => {
                let mut t = comfy_table::Table::new();
                t.load_preset(UTF8_FULL_CONDENSED)
                    .set_content_arrangement(ContentArrangement::Disabled);
                if !color {
                    t.force_no_tty();
                } else {
                    t.enforce_styling();
                }
                t.set_header(self.columns.iter().map(|c| {
                    let cell = Cell::new(c);
                    if color {
                        cell.add_attribute(Attribute::Bold)
                    } else {
                        cell
                    }
                }));
                for row in &self.rows {
                    t.add_row(row.iter().map(|d| {
                        let cell = Cell::new(d.to_text());
                        match d {
                            Datum::Int(_) | Datum::Float(_) => {
                                cell.set_alignment(CellAlignment::Right)
                            }
                            _ => cell,
                        }
                    }));
                }
                writeln!(out, "{t}")
            }
            OutputFormat::Csv => {
                let mut w = csv::Writer::from_writer(out);
                w.write_record(&self.columns).map_err(io::Error::other)?;
                for row in &self.rows {
                    w.write_record(row.iter().map(Datum::to_text))
                        .map_err(io::Error::other)?;
                }
                w.flush()
            }
            OutputFormat::Json => {
                let rows: Vec<Value> = self
                    .rows
                    .iter()
                    .map(|row| {
                        let m: Map<String, Value> = self
                            .columns
                            .iter()
                            .cloned()
                            .zip(row.iter().map(Datum::to_json))
                            .collect();
                        Value::Object(m)
                    })
                    .collect();
                serde_json::to_writer_pretty(&mut *out, &rows)?;
                writeln!(out)
            }
        }
    }

    /// Prints to stdout, colored when stdout is a terminal.
    pub fn print(&self, format: OutputFormat) -> io::Result<()> {
        let stdout = io::stdout();
        let color = stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none();
        self.write(&mut stdout.lock(), format, color)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DataTable {
        let mut t = DataTable::new(&["principal", "requests"]);
        t.push(vec!["alice, \"a\"".into(), Datum::Int(12)]);
        t.push(vec!["bob".into(), Datum::Null]);
        t
    }

    fn render(f: OutputFormat) -> String {
        let mut v = Vec::new();
        sample().write(&mut v, f, false).unwrap();
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn formats() {
        assert_eq!(
            render(OutputFormat::Csv),
            "principal,requests\n\"alice, \"\"a\"\"\",12\nbob,\n"
        );
        let json: Value = serde_json::from_str(&render(OutputFormat::Json)).unwrap();
        assert_eq!(json[0]["requests"], 12);
        assert_eq!(json[1]["requests"], Value::Null);
        let table = render(OutputFormat::Table);
        assert!(table.contains("principal"));
        assert!(!table.contains('\u{1b}'), "no escape codes without color");
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines
                .iter()
                .all(|l| l.chars().count() == lines[0].chars().count()),
            "aligned:\n{table}"
        );
    }
}
