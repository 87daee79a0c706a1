//! A rule's comparison: `value > threshold`, from the rule's `threshold` and
//! `comparison` fields or from the end of its LogQL (`… > 10`), as
//! Prometheus writes it. LogQL's own parser has no comparisons, so the
//! ruler splits the last one off at the top level of the expression.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Op {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            "<=" => Op::Le,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    pub op: Op,
    pub threshold: f64,
}

impl Comparison {
    pub fn new(op: &str, threshold: f64) -> Result<Self, String> {
        let op = Op::parse(op.trim())
            .ok_or_else(|| format!("comparison {op:?} is not one of > >= < <= == !="))?;
        if !threshold.is_finite() {
            return Err(format!("threshold {threshold} is not a finite number"));
        }
        Ok(Self { op, threshold })
    }

    /// Whether `value` passes (NaN never does).
    pub fn holds(&self, value: f64) -> bool {
        let t = self.threshold;
        match self.op {
            Op::Gt => value > t,
            Op::Ge => value >= t,
            Op::Lt => value < t,
            Op::Le => value <= t,
            Op::Eq => value == t,
            Op::Ne => !value.is_nan() && value != t,
        }
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op.as_str(), self.threshold)
    }
}

/// Splits `expr OP number` at its last top-level comparison (outside
/// parentheses, braces, brackets and strings) when a number follows it;
/// otherwise the whole text and `None`. `!=` followed by a string is a line
/// filter, not a comparison, and is left alone.
pub fn split_comparison(text: &str) -> (&str, Option<Comparison>) {
    let bytes = text.as_bytes();
    let mut depth = 0i32;
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    let mut last = None;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == b'\\' && q != b'`' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        match c {
            b'"' | b'`' => quote = Some(c),
            b'(' | b'{' | b'[' => depth += 1,
            b')' | b'}' | b']' => depth -= 1,
            b'>' | b'<' | b'=' | b'!' if depth == 0 => {
                let two = bytes.get(i + 1) == Some(&b'=');
                let len = if two { 2 } else { 1 };
                // `|=` and `=~`/`!~` are filters and matchers, not comparisons.
                let prev_pipe = i > 0 && bytes[i - 1] == b'|';
                if !prev_pipe && Op::parse(&text[i..i + len]).is_some() {
                    last = Some((i, len));
                }
                i += len;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    if let Some((at, len)) = last {
        let rhs = text[at + len..].trim();
        if let Ok(threshold) = rhs.parse::<f64>()
            && let Ok(c) = Comparison::new(&text[at..at + len], threshold)
        {
            return (text[..at].trim_end(), Some(c));
        }
    }
    (text.trim(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_top_level_comparison_is_split_off() {
        let (e, c) =
            split_comparison(r#"sum by (pod) (count_over_time({app="x"} |= "a>b" [5m])) > 3"#);
        assert_eq!(
            e,
            r#"sum by (pod) (count_over_time({app="x"} |= "a>b" [5m]))"#
        );
        assert_eq!(c, Some(Comparison::new(">", 3.0).unwrap()));
        let (e, c) = split_comparison(r#"rate({a="b"}[1m]) <= 0.5"#);
        assert_eq!(e, r#"rate({a="b"}[1m])"#);
        assert_eq!(c.unwrap().op, Op::Le);
        // No number after it: not a comparison.
        let (e, c) = split_comparison(r#"count_over_time({a!="b"}[1m])"#);
        assert_eq!(e, r#"count_over_time({a!="b"}[1m])"#);
        assert!(c.is_none());
    }

    #[test]
    fn comparisons_hold_as_written() {
        let gt = Comparison::new(">", 3.0).unwrap();
        assert!(gt.holds(3.5) && !gt.holds(3.0) && !gt.holds(f64::NAN));
        assert!(Comparison::new("!=", 0.0).unwrap().holds(1.0));
        assert!(!Comparison::new("!=", 0.0).unwrap().holds(f64::NAN));
        assert!(Comparison::new("=>", 1.0).is_err());
        assert!(Comparison::new(">", f64::INFINITY).is_err());
    }
}
