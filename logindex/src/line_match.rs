//! The `q` of a search evaluated on one line, without an index: how the
//! live tail filters lines that are not indexed yet. It answers as the
//! index does: the same terms (whole words and their parts, lowercased) at
//! the same positions, phrases as consecutive positions, fields exact.

use crate::query_lang::Expr;
use crate::terms::{TermSpan, term_spans};

/// The fields of a line a `q` can name.
#[derive(Debug, Clone, Copy)]
pub struct LineFields<'a> {
    pub namespace: &'a str,
    pub pod: &'a str,
    pub pod_uid: &'a str,
    pub container: &'a str,
    pub restart: i64,
    pub stream: &'a str,
    pub level: Option<&'a str>,
    pub node: Option<&'a str>,
    pub message: &'a str,
}

/// An expression and the buffers its evaluation reuses from line to line.
pub struct LineMatcher {
    expr: Expr,
    /// Whether any part of the expression reads the message's terms.
    reads_terms: bool,
    spans: Vec<TermSpan>,
    buf: String,
}

fn reads_terms(e: &Expr) -> bool {
    match e {
        Expr::Word(_) | Expr::Phrase(_) => true,
        Expr::All | Expr::Field(..) => false,
        Expr::And(parts) | Expr::Or(parts) => parts.iter().any(reads_terms),
        Expr::Not(inner) => reads_terms(inner),
    }
}

impl LineMatcher {
    pub fn new(expr: Expr) -> Self {
        Self {
            reads_terms: reads_terms(&expr),
            expr,
            spans: Vec::new(),
            buf: String::new(),
        }
    }

    pub fn matches(&mut self, line: &LineFields<'_>) -> bool {
        if self.reads_terms {
            term_spans(line.message, &mut self.spans, &mut self.buf);
        }
        eval(&self.expr, line, &self.spans, &self.buf)
    }
}

fn has_term(spans: &[TermSpan], buf: &str, position: Option<usize>, word: &str) -> bool {
    spans
        .iter()
        .any(|s| position.is_none_or(|p| s.position == p) && &buf[s.start..s.end] == word)
}

fn eval(e: &Expr, line: &LineFields<'_>, spans: &[TermSpan], buf: &str) -> bool {
    match e {
        Expr::All => true,
        Expr::Word(w) => has_term(spans, buf, None, w),
        Expr::Phrase(words) => {
            let Some(first) = words.first() else {
                return true;
            };
            spans.iter().any(|s| {
                &buf[s.start..s.end] == first.as_str()
                    && words
                        .iter()
                        .enumerate()
                        .skip(1)
                        .all(|(i, w)| has_term(spans, buf, Some(s.position + i), w))
            })
        }
        Expr::Field(name, value) => match name.as_str() {
            "restart" => value.parse::<i64>() == Ok(line.restart),
            "namespace" => line.namespace == value,
            "pod" => line.pod == value,
            "pod_uid" => line.pod_uid == value,
            "container" => line.container == value,
            "stream" => line.stream == value,
            "level" => line.level == Some(value.as_str()),
            "node" => line.node == Some(value.as_str()),
            _ => false,
        },
        Expr::And(parts) => parts.iter().all(|p| eval(p, line, spans, buf)),
        Expr::Or(parts) => parts.iter().any(|p| eval(p, line, spans, buf)),
        Expr::Not(inner) => !eval(inner, line, spans, buf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query_lang::parse;

    fn line(message: &str) -> LineFields<'_> {
        LineFields {
            namespace: "shop",
            pod: "api-0",
            pod_uid: "u1",
            container: "app",
            restart: 2,
            stream: "stderr",
            level: Some("error"),
            node: None,
            message,
        }
    }

    fn hit(q: &str, message: &str) -> bool {
        LineMatcher::new(parse(q).unwrap()).matches(&line(message))
    }

    #[test]
    fn words_parts_phrases_and_fields_match_as_the_index_does() {
        let m = "Container app OOMKilled (req-8c1f) from 10.0.0.12: out of memory";
        assert!(hit("oomkilled", m));
        assert!(hit("OOMKilled", m));
        assert!(hit("8c1f", m) && hit("req-8c1f", m) && hit("12", m));
        assert!(!hit("oom", m), "a word is matched whole");
        assert!(hit("\"out of memory\"", m));
        assert!(!hit("\"memory of\"", m));
        assert!(hit("\"from 10\"", m), "a part at the next position");
        assert!(hit("level:error restart:2 pod:api-0", m));
        assert!(!hit("level:info", m));
        assert!(!hit("node:n1", m));
        assert!(hit("(panic OR oomkilled) -debug", m));
        assert!(!hit("oomkilled AND NOT memory", m));
        assert!(hit("*", m) && hit("", ""));
    }
}
