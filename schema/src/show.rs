//! Input values quoted in error messages, shortened so that a huge bad
//! value does not make a huge error. Its own module because both the
//! validator and the timestamp parser quote values.

use serde_json::Value;

/// Renders a JSON value for an error message, shortened so a huge bad value
/// does not produce a huge error.
pub fn show(value: &Value) -> String {
    let text = value.to_string();
    if text.len() <= 80 {
        return text;
    }
    let mut cut = 77;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &text[..cut])
}
