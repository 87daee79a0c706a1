//! The `q` of a log search: terms, "phrases", `AND` / `OR` / `NOT` (also
//! `-term`), parentheses and `field:value`; juxtaposition means AND. An
//! empty `q` or `*` matches every line.
//!
//! ```text
//! OOMKilled                      a word of the message
//! "out of memory"                consecutive words
//! level:error AND NOT timeout    a field, a negation
//! (panic OR fatal) pod:api-0
//! ```

use crate::terms::query_words;

/// Fields a `field:value` may name (exact match), besides `message`.
pub const EXACT_FIELDS: [&str; 7] = [
    "namespace",
    "pod",
    "container",
    "restart",
    "stream",
    "level",
    "node",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Every line.
    All,
    /// A message word (lowercased).
    Word(String),
    /// Consecutive message words (lowercased).
    Phrase(Vec<String>),
    /// An exact field value.
    Field(String, String),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad query at character {at}: {reason}")]
pub struct QueryError {
    pub at: usize,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String, usize),
    Quoted(String, usize),
    Open(usize),
    Close(usize),
    Minus(usize),
}

fn lex(q: &str) -> Result<Vec<Tok>, QueryError> {
    let mut out = Vec::new();
    let mut chars = q.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => out.push(Tok::Open(i)),
            ')' => out.push(Tok::Close(i)),
            // Only at the start of a term (inside one, `-` is part of it).
            '-' if chars.peek().is_some_and(|(_, n)| !n.is_whitespace()) => out.push(Tok::Minus(i)),
            '"' => {
                let mut text = String::new();
                let mut closed = false;
                for (_, c) in chars.by_ref() {
                    if c == '"' {
                        closed = true;
                        break;
                    }
                    text.push(c);
                }
                if !closed {
                    return Err(QueryError {
                        at: i,
                        reason: "unclosed quote".into(),
                    });
                }
                out.push(Tok::Quoted(text, i));
            }
            _ => {
                let mut text = String::from(c);
                while let Some(&(_, n)) = chars.peek() {
                    if n.is_whitespace() || n == '(' || n == ')' {
                        break;
                    }
                    // field:"quoted value"
                    if n == '"' && text.ends_with(':') {
                        chars.next();
                        for (_, c) in chars.by_ref() {
                            if c == '"' {
                                break;
                            }
                            text.push(c);
                        }
                        break;
                    }
                    text.push(n);
                    chars.next();
                }
                out.push(Tok::Word(text, i));
            }
        }
    }
    Ok(out)
}

/// How deep `NOT`, `-` and parentheses may nest: the parser and the
/// search it builds recurse once per level, and a request thread's stack is
/// finite (60 000 `-` once aborted the process).
pub const MAX_DEPTH: usize = 64;

struct Parser {
    toks: Vec<Tok>,
    at: usize,
    len: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w, _)) if w == k)
    }

    fn pos(&self) -> usize {
        match self.peek() {
            Some(
                Tok::Word(_, i) | Tok::Quoted(_, i) | Tok::Open(i) | Tok::Close(i) | Tok::Minus(i),
            ) => *i,
            None => self.len,
        }
    }

    fn or(&mut self) -> Result<Expr, QueryError> {
        let mut parts = vec![self.and()?];
        while self.keyword("OR") {
            self.at += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut parts = vec![self.unary()?];
        loop {
            if self.keyword("AND") {
                self.at += 1;
                parts.push(self.unary()?);
                continue;
            }
            match self.peek() {
                None | Some(Tok::Close(_)) => break,
                Some(Tok::Word(w, _)) if w == "OR" => break,
                _ => parts.push(self.unary()?),
            }
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::And(parts)
        })
    }

    /// Enters one level of nesting, or refuses past [`MAX_DEPTH`].
    fn deeper(&mut self) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(QueryError {
                at: self.pos(),
                reason: format!("NOT, - and parentheses nest more than {MAX_DEPTH} deep"),
            });
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        if self.keyword("NOT") || matches!(self.peek(), Some(Tok::Minus(_))) {
            self.at += 1;
            self.deeper()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, QueryError> {
        let at = self.pos();
        let err = |reason: &str| QueryError {
            at,
            reason: reason.into(),
        };
        match self.toks.get(self.at).cloned() {
            None => Err(err("expected a term")),
            Some(Tok::Open(_)) => {
                self.at += 1;
                self.deeper()?;
                let inner = self.or()?;
                self.depth -= 1;
                if !matches!(self.peek(), Some(Tok::Close(_))) {
                    return Err(QueryError {
                        at: self.pos(),
                        reason: "expected )".into(),
                    });
                }
                self.at += 1;
                Ok(inner)
            }
            Some(Tok::Close(_)) => Err(err("unexpected )")),
            Some(Tok::Minus(_)) => Err(err("unexpected -")),
            Some(Tok::Quoted(text, _)) => {
                self.at += 1;
                let words = query_words(&text);
                Ok(match words.len() {
                    0 => Expr::All,
                    1 => Expr::Word(words.into_iter().next().unwrap_or_default()),
                    _ => Expr::Phrase(words),
                })
            }
            Some(Tok::Word(text, _)) => {
                self.at += 1;
                if text == "*" {
                    return Ok(Expr::All);
                }
                if matches!(text.as_str(), "AND" | "OR" | "NOT") {
                    return Err(err(&format!("{text} needs a term on each side")));
                }
                if let Some((field, value)) = text.split_once(':')
                    && (EXACT_FIELDS.contains(&field) || field == "message")
                {
                    if value.is_empty() {
                        return Err(err(&format!("{field}: needs a value")));
                    }
                    if field == "message" {
                        return Ok(word_or_phrase(value));
                    }
                    return Ok(Expr::Field(field.to_string(), value.to_string()));
                }
                Ok(word_or_phrase(&text))
            }
        }
    }
}

/// A bare term the tokenizer splits (`"a,b"`) is a phrase of its words.
fn word_or_phrase(text: &str) -> Expr {
    let mut words = query_words(text);
    match words.len() {
        0 => Expr::All,
        1 => Expr::Word(words.remove(0)),
        _ => Expr::Phrase(words),
    }
}

/// Parses `q`; empty or `*` is [`Expr::All`].
pub fn parse(q: &str) -> Result<Expr, QueryError> {
    let toks = lex(q)?;
    if toks.is_empty() {
        return Ok(Expr::All);
    }
    let mut p = Parser {
        toks,
        at: 0,
        len: q.len(),
        depth: 0,
    };
    let e = p.or()?;
    if p.at < p.toks.len() {
        return Err(QueryError {
            at: p.pos(),
            reason: "unexpected input".into(),
        });
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Expr {
        Expr::Word(s.into())
    }

    #[test]
    fn grammar() {
        assert_eq!(parse("").unwrap(), Expr::All);
        assert_eq!(parse(" * ").unwrap(), Expr::All);
        assert_eq!(parse("OOMKilled").unwrap(), w("oomkilled"));
        assert_eq!(
            parse("\"Out of memory\"").unwrap(),
            Expr::Phrase(vec!["out".into(), "of".into(), "memory".into()])
        );
        assert_eq!(
            parse("level:error AND NOT timeout").unwrap(),
            Expr::And(vec![
                Expr::Field("level".into(), "error".into()),
                Expr::Not(Box::new(w("timeout")))
            ])
        );
        assert_eq!(
            parse("(panic OR fatal) pod:api-0 -debug").unwrap(),
            Expr::And(vec![
                Expr::Or(vec![w("panic"), w("fatal")]),
                Expr::Field("pod".into(), "api-0".into()),
                Expr::Not(Box::new(w("debug"))),
            ])
        );
        assert_eq!(parse("req-8c1f").unwrap(), w("req-8c1f"));
        assert_eq!(
            parse("pod:\"api 0\"").unwrap(),
            Expr::Field("pod".into(), "api 0".into())
        );
        assert_eq!(parse("message:Killed").unwrap(), w("killed"));
        // An unknown field name is just text.
        assert_eq!(parse("reason:OOMKilled").unwrap(), w("reason:oomkilled"));
    }

    #[test]
    fn deep_nesting_is_refused_not_recursed() {
        for q in [
            "-".repeat(60_000) + "x",
            "NOT ".repeat(10_000) + "x",
            "(".repeat(10_000) + "x" + &")".repeat(10_000),
        ] {
            let e = parse(&q).unwrap_err();
            assert!(e.reason.contains("nest more than 64"), "{e:?}");
        }
        parse(&("(".repeat(60) + "NOT x" + &")".repeat(60))).unwrap();
    }

    #[test]
    fn errors_name_the_place() {
        for (q, at) in [
            ("\"open", 0),
            ("(a OR b", 7),
            ("a OR", 4),
            ("a )", 2),
            ("level:", 0),
        ] {
            let e = parse(q).unwrap_err();
            assert_eq!(e.at, at, "{q}: {e}");
        }
    }
}
