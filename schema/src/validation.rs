//! Field-by-field validation of JSON input that reports every problem of a
//! record at once, each with the field's path and a reason.

use std::fmt;

use serde_json::{Map, Value};

/// One thing wrong with one field of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// Path of the field within the record (`occurred_at`, `attributes.region`).
    pub path: String,
    /// What is wrong with it, for a person to read.
    pub reason: String,
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Every problem found in a record. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldProblem>);

impl ValidationErrors {
    pub fn single(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self(vec![FieldProblem {
            path: path.into(),
            reason: reason.into(),
        }])
    }

    pub fn problems(&self) -> &[FieldProblem] {
        &self.0
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Upper bound for free-text fields: a record is a log line or an API event,
/// not a document, and one giant field must not blow up a batch.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Upper bound for identifiers and names.
pub const MAX_NAME_BYTES: usize = 1024;

/// Reads typed fields out of a JSON object, collecting problems instead of
/// stopping at the first one.
pub struct FieldReader<'a> {
    object: &'a Map<String, Value>,
    problems: Vec<FieldProblem>,
}

pub use crate::show::show;

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> FieldReader<'a> {
    /// Starts reading `value`, which must be a JSON object.
    pub fn new(value: &'a Value) -> Result<Self, ValidationErrors> {
        match value {
            Value::Object(object) => Ok(Self {
                object,
                problems: Vec::new(),
            }),
            other => Err(ValidationErrors::single(
                "$",
                format!("expected a JSON object, got {}", type_name(other)),
            )),
        }
    }

    pub fn object(&self) -> &'a Map<String, Value> {
        self.object
    }

    pub fn problem(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(FieldProblem {
            path: path.into(),
            reason: reason.into(),
        });
    }

    /// A present, non-null value, or `None` (recording a problem when `required`).
    fn value(&mut self, name: &str, required: bool) -> Option<&'a Value> {
        match self.object.get(name) {
            None if required => {
                self.problem(name, "required field is missing");
                None
            }
            Some(Value::Null) if required => {
                self.problem(name, "required field is null");
                None
            }
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    fn string_value(&mut self, name: &str, required: bool, max: usize) -> Option<String> {
        let value = self.value(name, required)?;
        match value {
            Value::String(s) if s.is_empty() && required => {
                self.problem(name, "must not be empty");
                None
            }
            Value::String(s) if s.len() > max => {
                self.problem(name, format!("longer than {max} bytes ({} bytes)", s.len()));
                None
            }
            Value::String(s) => Some(s.clone()),
            other => {
                self.problem(
                    name,
                    format!(
                        "expected a string, got {}: {}",
                        type_name(other),
                        show(other)
                    ),
                );
                None
            }
        }
    }

    /// A required, non-empty name or identifier.
    pub fn required_name(&mut self, name: &str) -> Option<String> {
        self.string_value(name, true, MAX_NAME_BYTES)
    }

    /// A required string of free text (may be empty).
    pub fn required_text(&mut self, name: &str) -> Option<String> {
        let value = self.value(name, true)?;
        if value.as_str().is_some() {
            self.string_value(name, false, MAX_TEXT_BYTES)
        } else {
            self.problem(
                name,
                format!(
                    "expected a string, got {}: {}",
                    type_name(value),
                    show(value)
                ),
            );
            None
        }
    }

    pub fn optional_name(&mut self, name: &str) -> Option<String> {
        self.string_value(name, false, MAX_NAME_BYTES)
    }

    pub fn optional_text(&mut self, name: &str) -> Option<String> {
        self.string_value(name, false, MAX_TEXT_BYTES)
    }

    fn bool_value(&mut self, name: &str, required: bool) -> Option<bool> {
        match self.value(name, required)? {
            Value::Bool(b) => Some(*b),
            other => {
                self.problem(
                    name,
                    format!(
                        "expected a boolean, got {}: {}",
                        type_name(other),
                        show(other)
                    ),
                );
                None
            }
        }
    }

    pub fn required_bool(&mut self, name: &str) -> Option<bool> {
        self.bool_value(name, true)
    }

    pub fn optional_bool(&mut self, name: &str) -> Option<bool> {
        self.bool_value(name, false)
    }

    fn integer_value(&mut self, name: &str, required: bool, min: i64, max: i64) -> Option<i64> {
        let value = self.value(name, required)?;
        match value.as_i64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                self.problem(name, format!("{n} is out of range {min}..={max}"));
                None
            }
            None => {
                let reason = if value.is_number() {
                    format!("expected an integer, got {}", show(value))
                } else {
                    format!(
                        "expected an integer, got {}: {}",
                        type_name(value),
                        show(value)
                    )
                };
                self.problem(name, reason);
                None
            }
        }
    }

    pub fn required_integer(&mut self, name: &str, min: i64, max: i64) -> Option<i64> {
        self.integer_value(name, true, min, max)
    }

    pub fn optional_integer(&mut self, name: &str, min: i64, max: i64) -> Option<i64> {
        self.integer_value(name, false, min, max)
    }

    pub fn optional_number(&mut self, name: &str, min: f64, max: f64) -> Option<f64> {
        let value = self.value(name, false)?;
        match value.as_f64() {
            Some(n) if n.is_finite() && n >= min && n <= max => Some(n),
            Some(n) => {
                self.problem(name, format!("{n} is out of range {min}..={max}"));
                None
            }
            None => {
                self.problem(
                    name,
                    format!(
                        "expected a number, got {}: {}",
                        type_name(value),
                        show(value)
                    ),
                );
                None
            }
        }
    }

    /// A required timestamp: RFC 3339 with an offset, or epoch milliseconds.
    /// Returns microseconds since the Unix epoch (Iceberg's timestamptz unit).
    pub fn required_timestamp(&mut self, name: &str) -> Option<i64> {
        let value = self.value(name, true)?;
        match crate::time::parse_json_timestamp(value) {
            Ok(micros) => Some(micros),
            Err(reason) => {
                self.problem(name, reason);
                None
            }
        }
    }

    /// A value that must be one of `allowed`.
    pub fn required_choice(&mut self, name: &str, allowed: &[&str]) -> Option<String> {
        let s = self.required_name(name)?;
        if allowed.contains(&s.as_str()) {
            Some(s)
        } else {
            self.problem(
                name,
                format!("must be one of {}, got {:?}", allowed.join("|"), s),
            );
            None
        }
    }

    /// Ends reading: the problems found, if any.
    pub fn finish(self) -> Result<(), ValidationErrors> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(self.problems))
        }
    }
}
