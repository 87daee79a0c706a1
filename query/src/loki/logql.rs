//! The LogQL subset sluice answers, parsed into a small syntax tree.
//!
//! ```text
//! {namespace="shop", pod=~"api-.*"} |= "OOMKilled" != "probe" |~ "req-[0-9a-f]+"
//! sum by (level) (count_over_time({namespace="shop"} |= "error" [1m]))
//! rate({pod="api-0"}[5m]) * 60
//! vector(1) + vector(1)
//! ```
//!
//! Anything outside it (parsers such as `| json`, `unwrap`, other range or
//! vector functions, `offset`, binary operations between two queries) is
//! refused with an error that names the part, the way Loki reports a parse
//! error, rather than being answered wrongly.

use std::fmt;

/// Labels a stream has in sluice: the container instance's identity (the
/// exact-match fields of the log index).
pub const STREAM_LABELS: [&str; 7] = crate::logsearch::query_lang::EXACT_FIELDS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    NotRe,
}

/// `label op "value"` in a stream selector.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub label: String,
    pub op: MatchOp,
    pub value: String,
    /// Anchored (Loki's regexes match the whole value).
    pub regex: Option<regex::Regex>,
}

impl Matcher {
    /// Whether a label value (empty when the label is absent) matches.
    pub fn matches(&self, value: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Eq, _) => value == self.value,
            (MatchOp::Ne, _) => value != self.value,
            (MatchOp::Re, Some(r)) => r.is_match(value),
            (MatchOp::NotRe, Some(r)) => !r.is_match(value),
            (_, None) => false,
        }
    }

    /// Whether a stream without this label (empty value) would match.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.label == other.label && self.op == other.op && self.value == other.value
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    Contains,
    NotContains,
    Regex,
    NotRegex,
}

/// `|= "text"`, `!= "text"`, `|~ "re"`, `!~ "re"` after a selector.
#[derive(Debug, Clone)]
pub struct LineFilter {
    pub op: FilterOp,
    pub value: String,
    /// Unanchored, as Loki's line filter regexes are.
    pub regex: Option<regex::Regex>,
}

impl LineFilter {
    pub fn keeps(&self, line: &str) -> bool {
        match (self.op, &self.regex) {
            (FilterOp::Contains, _) => line.contains(self.value.as_str()),
            (FilterOp::NotContains, _) => !line.contains(self.value.as_str()),
            (FilterOp::Regex, Some(r)) => r.is_match(line),
            (FilterOp::NotRegex, Some(r)) => !r.is_match(line),
            (_, None) => false,
        }
    }
}

impl PartialEq for LineFilter {
    fn eq(&self, other: &Self) -> bool {
        self.op == other.op && self.value == other.value
    }
}

/// A stream selector with its line filters.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSelector {
    pub matchers: Vec<Matcher>,
    pub filters: Vec<LineFilter>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeFn {
    CountOverTime,
    Rate,
    BytesOverTime,
    BytesRate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grouping {
    /// `sum by (a, b)`: keep these labels.
    By(Vec<String>),
    /// `sum without (a)`: drop these labels.
    Without(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum MetricExpr {
    /// `count_over_time({…} |= "x" [1m])`; the range in microseconds.
    Range {
        func: RangeFn,
        selector: LogSelector,
        range_us: i64,
    },
    /// `sum`, optionally `by`/`without` labels.
    Sum {
        grouping: Option<Grouping>,
        inner: Box<MetricExpr>,
    },
    /// A number (a scalar).
    Literal(f64),
    /// `vector(n)`: one series without labels, `n` at every step.
    Vector(f64),
    Binary {
        op: BinOp,
        lhs: Box<MetricExpr>,
        rhs: Box<MetricExpr>,
    },
}

impl MetricExpr {
    /// The selectors inside, to narrow (a tenant's namespaces).
    pub fn selectors_mut(&mut self) -> Vec<&mut LogSelector> {
        match self {
            MetricExpr::Range { selector, .. } => vec![selector],
            MetricExpr::Sum { inner, .. } => inner.selectors_mut(),
            MetricExpr::Literal(_) | MetricExpr::Vector(_) => vec![],
            MetricExpr::Binary { lhs, rhs, .. } => {
                let mut v = lhs.selectors_mut();
                v.extend(rhs.selectors_mut());
                v
            }
        }
    }

    /// The range queries inside (the parts that read logs).
    pub fn ranges(&self) -> Vec<&MetricExpr> {
        match self {
            MetricExpr::Range { .. } => vec![self],
            MetricExpr::Sum { inner, .. } => inner.ranges(),
            MetricExpr::Literal(_) | MetricExpr::Vector(_) => vec![],
            MetricExpr::Binary { lhs, rhs, .. } => {
                let mut v = lhs.ranges();
                v.extend(rhs.ranges());
                v
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    Logs(LogSelector),
    Metric(MetricExpr),
}

impl Query {
    /// Every stream selector of the query.
    pub fn selectors_mut(&mut self) -> Vec<&mut LogSelector> {
        match self {
            Query::Logs(sel) => vec![sel],
            Query::Metric(m) => m.selectors_mut(),
        }
    }
}

impl Matcher {
    /// `label=~"pattern"`, anchored as Loki anchors it.
    pub fn regex(label: &str, pattern: &str) -> Result<Self, regex::Error> {
        Ok(Self {
            label: label.to_string(),
            op: MatchOp::Re,
            value: pattern.to_string(),
            regex: Some(regex::Regex::new(&format!("^(?:{pattern})$"))?),
        })
    }
}

/// A query sluice cannot answer, worded the way Loki words a parse error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Character offset (0-based) in the query.
    pub at: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "parse error at line 1, col {}: {}",
            self.at + 1,
            self.message
        )
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LBrace,
    RBrace,
    LParen,
    RParen,
    /// The text between `[` and `]`.
    Range(String),
    Comma,
    Eq,
    Ne,
    Re,
    NotRe,
    PipeEq,
    PipeRe,
    Pipe,
    Op(BinOp),
    Ident(String),
    Str(String),
    Num(f64),
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::LBrace => "{".into(),
        Tok::RBrace => "}".into(),
        Tok::LParen => "(".into(),
        Tok::RParen => ")".into(),
        Tok::Range(r) => format!("[{r}]"),
        Tok::Comma => ",".into(),
        Tok::Eq => "=".into(),
        Tok::Ne => "!=".into(),
        Tok::Re => "=~".into(),
        Tok::NotRe => "!~".into(),
        Tok::PipeEq => "|=".into(),
        Tok::PipeRe => "|~".into(),
        Tok::Pipe => "|".into(),
        Tok::Op(BinOp::Add) => "+".into(),
        Tok::Op(BinOp::Sub) => "-".into(),
        Tok::Op(BinOp::Mul) => "*".into(),
        Tok::Op(BinOp::Div) => "/".into(),
        Tok::Ident(s) => s.clone(),
        Tok::Str(s) => format!("{s:?}"),
        Tok::Num(n) => n.to_string(),
    }
}

fn err(at: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        at,
        message: message.into(),
    }
}

/// A Go-style double-quoted string (the quote already consumed).
fn quoted(
    chars: &mut std::iter::Peekable<std::str::CharIndices>,
    start: usize,
) -> Result<String, ParseError> {
    let mut s = String::new();
    loop {
        let Some((_, c)) = chars.next() else {
            return Err(err(start, "syntax error: unterminated string"));
        };
        match c {
            '"' => return Ok(s),
            '\\' => {
                let Some((i, e)) = chars.next() else {
                    return Err(err(start, "syntax error: unterminated string"));
                };
                match e {
                    'n' => s.push('\n'),
                    't' => s.push('\t'),
                    'r' => s.push('\r'),
                    '\\' => s.push('\\'),
                    '"' => s.push('"'),
                    '\'' => s.push('\''),
                    'a' => s.push('\u{7}'),
                    'b' => s.push('\u{8}'),
                    'f' => s.push('\u{c}'),
                    'v' => s.push('\u{b}'),
                    'x' | 'u' | 'U' => {
                        let digits = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let mut code = 0u32;
                        for _ in 0..digits {
                            let d = chars
                                .next()
                                .and_then(|(_, d)| d.to_digit(16))
                                .ok_or_else(|| err(i, "syntax error: bad escape in string"))?;
                            code = code * 16 + d;
                        }
                        s.push(
                            char::from_u32(code)
                                .ok_or_else(|| err(i, "syntax error: bad escape in string"))?,
                        );
                    }
                    other => {
                        return Err(err(
                            i,
                            format!("syntax error: unknown escape sequence \\{other}"),
                        ));
                    }
                }
            }
            c => s.push(c),
        }
    }
}

fn lex(q: &str) -> Result<Vec<(usize, Tok)>, ParseError> {
    let mut out = Vec::new();
    let mut chars = q.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|&(_, c)| c);
        let tok = match c {
            c if c.is_whitespace() => continue,
            '{' => Tok::LBrace,
            '}' => Tok::RBrace,
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            ',' => Tok::Comma,
            '+' => Tok::Op(BinOp::Add),
            '-' => Tok::Op(BinOp::Sub),
            '*' => Tok::Op(BinOp::Mul),
            '/' => Tok::Op(BinOp::Div),
            '[' => {
                let mut r = String::new();
                loop {
                    match chars.next() {
                        Some((_, ']')) => break,
                        Some((_, c)) => r.push(c),
                        None => return Err(err(i, "syntax error: unclosed [")),
                    }
                }
                Tok::Range(r.trim().to_string())
            }
            '=' if next == Some('~') => {
                chars.next();
                Tok::Re
            }
            '=' if next == Some('=') => {
                return Err(err(i, "unsupported: comparison operator =="));
            }
            '=' => Tok::Eq,
            '!' if next == Some('=') => {
                chars.next();
                Tok::Ne
            }
            '!' if next == Some('~') => {
                chars.next();
                Tok::NotRe
            }
            '|' if next == Some('=') => {
                chars.next();
                Tok::PipeEq
            }
            '|' if next == Some('~') => {
                chars.next();
                Tok::PipeRe
            }
            '|' => Tok::Pipe,
            '"' => Tok::Str(quoted(&mut chars, i)?),
            '`' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some((_, '`')) => break,
                        Some((_, c)) => s.push(c),
                        None => return Err(err(i, "syntax error: unterminated raw string")),
                    }
                }
                Tok::Str(s)
            }
            c if c.is_ascii_digit() || c == '.' => {
                let mut s = String::from(c);
                while let Some(&(_, d)) = chars.peek() {
                    if d.is_ascii_alphanumeric() || d == '.' {
                        s.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                match s.parse() {
                    Ok(n) => Tok::Num(n),
                    // A duration outside brackets (`offset 5m`): left for
                    // the parser to name.
                    Err(_) if parse_duration_us(&s).is_some() => Tok::Ident(s),
                    Err(_) => return Err(err(i, format!("syntax error: bad number {s:?}"))),
                }
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut s = String::from(c);
                while let Some(&(_, d)) = chars.peek() {
                    if d.is_alphanumeric() || d == '_' {
                        s.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                Tok::Ident(s)
            }
            '<' | '>' => return Err(err(i, format!("unsupported: comparison operator {c}"))),
            '%' | '^' => return Err(err(i, format!("unsupported: binary operator {c}"))),
            other => return Err(err(i, format!("syntax error: unexpected {other:?}"))),
        };
        out.push((i, tok));
    }
    Ok(out)
}

/// A Prometheus-style duration (`30s`, `1m`, `1m30s`, `500ms`, `1h`, `1d`,
/// `1w`, `1y`) in microseconds.
pub fn parse_duration_us(text: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let per: i64 = match &rest[..unit_len] {
            "ms" => 1_000,
            "s" => 1_000_000,
            "m" => 60_000_000,
            "h" => 3_600_000_000,
            "d" => 86_400_000_000,
            "w" => 604_800_000_000,
            "y" => 31_536_000_000_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(per)?)?;
        rest = &rest[unit_len..];
    }
    (total > 0).then_some(total)
}

/// How deep a metric expression may nest (parentheses, unary minus,
/// `sum`, and each binary operator of a chain): parsing and evaluation
/// recurse once per level.
pub const MAX_DEPTH: usize = 64;

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(i, _)| *i)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }

    fn unexpected(&self) -> ParseError {
        match self.peek() {
            Some(t) => err(
                self.at(),
                format!("syntax error: unexpected {}", describe(t)),
            ),
            None => err(self.end, "syntax error: unexpected end of query"),
        }
    }

    fn expect(&mut self, want: &Tok) -> Result<(), ParseError> {
        if self.peek() == Some(want) {
            self.pos += 1;
            Ok(())
        } else {
            Err(match self.peek() {
                Some(t) => err(
                    self.at(),
                    format!(
                        "syntax error: unexpected {}, expecting {}",
                        describe(t),
                        describe(want)
                    ),
                ),
                None => err(
                    self.end,
                    format!(
                        "syntax error: unexpected end of query, expecting {}",
                        describe(want)
                    ),
                ),
            })
        }
    }

    fn selector(&mut self) -> Result<LogSelector, ParseError> {
        let open_at = self.at();
        self.expect(&Tok::LBrace)?;
        let mut matchers = Vec::new();
        loop {
            if self.peek() == Some(&Tok::RBrace) {
                self.pos += 1;
                break;
            }
            let label_at = self.at();
            let Some(Tok::Ident(label)) = self.next() else {
                self.pos -= 1;
                return Err(self.unexpected());
            };
            let op = match self.next() {
                Some(Tok::Eq) => MatchOp::Eq,
                Some(Tok::Ne) => MatchOp::Ne,
                Some(Tok::Re) => MatchOp::Re,
                Some(Tok::NotRe) => MatchOp::NotRe,
                _ => {
                    self.pos -= 1;
                    return Err(self.unexpected());
                }
            };
            let Some(Tok::Str(value)) = self.next() else {
                self.pos -= 1;
                return Err(self.unexpected());
            };
            let regex = match op {
                MatchOp::Re | MatchOp::NotRe => Some(
                    regex::Regex::new(&format!("^(?:{value})$"))
                        .map_err(|e| err(label_at, format!("invalid regex {value:?}: {e}")))?,
                ),
                _ => None,
            };
            matchers.push(Matcher {
                label,
                op,
                value,
                regex,
            });
            match self.next() {
                Some(Tok::Comma) => {}
                Some(Tok::RBrace) => break,
                _ => {
                    self.pos -= 1;
                    return Err(self.unexpected());
                }
            }
        }
        if matchers.iter().all(Matcher::matches_empty) {
            return Err(err(
                open_at,
                "queries require at least one regexp or equality matcher that does not have an \
                 empty-compatible value. For instance, app=~\".*\" does not meet this requirement, \
                 but app=~\".+\" will",
            ));
        }
        let mut filters = Vec::new();
        loop {
            let at = self.at();
            let op = match self.peek() {
                Some(Tok::PipeEq) => FilterOp::Contains,
                Some(Tok::Ne) => FilterOp::NotContains,
                Some(Tok::PipeRe) => FilterOp::Regex,
                Some(Tok::NotRe) => FilterOp::NotRegex,
                Some(Tok::Pipe) => {
                    self.pos += 1;
                    self.pipeline_stage(at)?;
                    continue;
                }
                _ => break,
            };
            self.pos += 1;
            let value = match self.next() {
                Some(Tok::Str(v)) => v,
                Some(Tok::Ident(f)) if f == "ip" => {
                    return Err(err(at, "unsupported: the ip() line filter"));
                }
                _ => {
                    self.pos -= 1;
                    return Err(self.unexpected());
                }
            };
            let regex = match op {
                FilterOp::Regex | FilterOp::NotRegex => Some(
                    regex::Regex::new(&value)
                        .map_err(|e| err(at, format!("invalid regex {value:?}: {e}")))?,
                ),
                _ => None,
            };
            if matches!(self.peek(), Some(Tok::Ident(w)) if w == "or") {
                return Err(err(self.at(), "unsupported: `or` inside a line filter"));
            }
            filters.push(LineFilter { op, value, regex });
        }
        Ok(LogSelector { matchers, filters })
    }

    /// `| stage`: only `| drop __error__` (what Grafana appends to volume
    /// queries), which is a no-op here since sluice extracts no labels.
    fn pipeline_stage(&mut self, at: usize) -> Result<(), ParseError> {
        match self.next() {
            Some(Tok::Ident(stage)) if stage == "drop" => {
                let mut labels = Vec::new();
                loop {
                    match self.next() {
                        Some(Tok::Ident(l)) => labels.push(l),
                        _ => {
                            self.pos -= 1;
                            return Err(self.unexpected());
                        }
                    }
                    if self.peek() == Some(&Tok::Comma) {
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                if let Some(l) = labels
                    .iter()
                    .find(|l| !matches!(l.as_str(), "__error__" | "__error_details__"))
                {
                    return Err(err(at, format!("unsupported: `| drop {l}`")));
                }
                Ok(())
            }
            Some(Tok::Ident(stage)) => Err(err(
                at,
                format!(
                    "unsupported: the `| {stage}` stage (sluice supports stream selectors and \
                     the line filters |= != |~ !~)"
                ),
            )),
            _ => {
                self.pos -= 1;
                Err(self.unexpected())
            }
        }
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, ParseError> {
        let kind = match self.peek() {
            Some(Tok::Ident(w)) if w == "by" || w == "without" => w.clone(),
            _ => return Ok(None),
        };
        self.pos += 1;
        self.expect(&Tok::LParen)?;
        let mut labels = Vec::new();
        loop {
            match self.next() {
                Some(Tok::RParen) => break,
                Some(Tok::Ident(l)) => labels.push(l),
                _ => {
                    self.pos -= 1;
                    return Err(self.unexpected());
                }
            }
            match self.next() {
                Some(Tok::Comma) => {}
                Some(Tok::RParen) => break,
                _ => {
                    self.pos -= 1;
                    return Err(self.unexpected());
                }
            }
        }
        Ok(Some(if kind == "by" {
            Grouping::By(labels)
        } else {
            Grouping::Without(labels)
        }))
    }

    fn range_fn(&mut self, func: RangeFn) -> Result<MetricExpr, ParseError> {
        self.expect(&Tok::LParen)?;
        let parenthesised = self.peek() == Some(&Tok::LParen);
        if parenthesised {
            self.pos += 1;
        }
        let selector = self.selector()?;
        if parenthesised {
            self.expect(&Tok::RParen)?;
        }
        let range_at = self.at();
        let range_us = match self.next() {
            Some(Tok::Range(r)) => parse_duration_us(&r)
                .ok_or_else(|| err(range_at, format!("syntax error: bad range [{r}]")))?,
            _ => {
                self.pos -= 1;
                return Err(match self.peek() {
                    Some(Tok::Pipe) | Some(Tok::PipeEq) => self.unexpected(),
                    _ => err(
                        self.at(),
                        "syntax error: a range aggregation needs a range such as [1m]",
                    ),
                });
            }
        };
        if let Some(Tok::Ident(w)) = self.peek()
            && w == "offset"
        {
            return Err(err(self.at(), "unsupported: offset"));
        }
        self.expect(&Tok::RParen)?;
        Ok(MetricExpr::Range {
            func,
            selector,
            range_us,
        })
    }

    /// Enters one level of nesting, or refuses past [`MAX_DEPTH`].
    fn deeper(&mut self, at: usize) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(err(
                at,
                format!("the expression nests more than {MAX_DEPTH} deep"),
            ));
        }
        Ok(())
    }

    fn primary(&mut self) -> Result<MetricExpr, ParseError> {
        let at = self.at();
        self.deeper(at)?;
        let out = self.primary_inner(at);
        self.depth -= 1;
        out
    }

    fn primary_inner(&mut self, at: usize) -> Result<MetricExpr, ParseError> {
        match self.next() {
            Some(Tok::Num(n)) => Ok(MetricExpr::Literal(n)),
            Some(Tok::Op(BinOp::Sub)) => match self.primary()? {
                MetricExpr::Literal(n) => Ok(MetricExpr::Literal(-n)),
                other => Ok(MetricExpr::Binary {
                    op: BinOp::Mul,
                    lhs: Box::new(MetricExpr::Literal(-1.0)),
                    rhs: Box::new(other),
                }),
            },
            Some(Tok::LParen) => {
                let e = self.metric()?;
                self.expect(&Tok::RParen)?;
                Ok(e)
            }
            Some(Tok::Ident(name)) => match name.as_str() {
                "vector" => {
                    self.expect(&Tok::LParen)?;
                    let n = match self.next() {
                        Some(Tok::Num(n)) => n,
                        Some(Tok::Op(BinOp::Sub)) => match self.next() {
                            Some(Tok::Num(n)) => -n,
                            _ => {
                                self.pos -= 1;
                                return Err(self.unexpected());
                            }
                        },
                        _ => {
                            self.pos -= 1;
                            return Err(self.unexpected());
                        }
                    };
                    self.expect(&Tok::RParen)?;
                    Ok(MetricExpr::Vector(n))
                }
                "count_over_time" => self.range_fn(RangeFn::CountOverTime),
                "rate" => self.range_fn(RangeFn::Rate),
                "bytes_over_time" => self.range_fn(RangeFn::BytesOverTime),
                "bytes_rate" => self.range_fn(RangeFn::BytesRate),
                "sum" => {
                    let mut grouping = self.grouping()?;
                    self.expect(&Tok::LParen)?;
                    let inner = self.metric()?;
                    self.expect(&Tok::RParen)?;
                    if grouping.is_none() {
                        grouping = self.grouping()?;
                    }
                    Ok(MetricExpr::Sum {
                        grouping,
                        inner: Box::new(inner),
                    })
                }
                other => Err(err(
                    at,
                    format!("unsupported: the function or aggregation `{other}`"),
                )),
            },
            Some(Tok::LBrace) => Err(err(
                at,
                "syntax error: a log query cannot be used in a metric expression; wrap it in \
                 count_over_time(…[1m]) or rate(…[1m])",
            )),
            _ => {
                self.pos -= 1;
                Err(self.unexpected())
            }
        }
    }

    fn term(&mut self) -> Result<MetricExpr, ParseError> {
        let entered = self.depth;
        let mut lhs = self.primary()?;
        while let Some(Tok::Op(op @ (BinOp::Mul | BinOp::Div))) = self.peek().cloned() {
            // A chain builds a tree one level deeper per operator.
            self.deeper(self.at())?;
            self.pos += 1;
            let rhs = self.primary()?;
            lhs = binary(op, lhs, rhs, self.at())?;
        }
        self.depth = entered;
        Ok(lhs)
    }

    fn metric(&mut self) -> Result<MetricExpr, ParseError> {
        let entered = self.depth;
        let mut lhs = self.term()?;
        while let Some(Tok::Op(op @ (BinOp::Add | BinOp::Sub))) = self.peek().cloned() {
            let at = self.at();
            self.deeper(at)?;
            self.pos += 1;
            let rhs = self.term()?;
            lhs = binary(op, lhs, rhs, at)?;
        }
        self.depth = entered;
        Ok(lhs)
    }
}

fn binary(
    op: BinOp,
    lhs: MetricExpr,
    rhs: MetricExpr,
    at: usize,
) -> Result<MetricExpr, ParseError> {
    if !lhs.ranges().is_empty() && !rhs.ranges().is_empty() {
        return Err(err(
            at,
            "unsupported: a binary operation between two log queries (one side must be a number)",
        ));
    }
    Ok(MetricExpr::Binary {
        op,
        lhs: Box::new(lhs),
        rhs: Box::new(rhs),
    })
}

/// Parses a LogQL query of the supported subset.
pub fn parse(q: &str) -> Result<Query, ParseError> {
    let toks = lex(q)?;
    let mut p = Parser {
        toks,
        pos: 0,
        end: q.chars().count(),
        depth: 0,
    };
    if p.peek().is_none() {
        return Err(err(0, "syntax error: unexpected end of query"));
    }
    let query = if p.peek() == Some(&Tok::LBrace) {
        Query::Logs(p.selector()?)
    } else {
        Query::Metric(p.metric()?)
    };
    if p.peek().is_some() {
        if let Some(Tok::Ident(w)) = p.peek()
            && matches!(w.as_str(), "and" | "or" | "unless")
        {
            return Err(err(p.at(), format!("unsupported: the `{w}` set operator")));
        }
        return Err(p.unexpected());
    }
    Ok(query)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logs(q: &str) -> LogSelector {
        match parse(q).unwrap() {
            Query::Logs(s) => s,
            other => panic!("{q}: not a log query: {other:?}"),
        }
    }

    #[test]
    fn selectors_and_line_filters() {
        let s = logs(
            r#"{namespace="shop", pod=~"api-.*", level!="debug"} |= "OOMKilled" != `probe` |~ "req-[0-9]+" !~ "x""#,
        );
        assert_eq!(s.matchers.len(), 3);
        assert_eq!(s.matchers[1].op, MatchOp::Re);
        assert!(s.matchers[1].matches("api-0"));
        assert!(!s.matchers[1].matches("web-api-0"), "regexes are anchored");
        assert_eq!(
            s.filters.iter().map(|f| f.op).collect::<Vec<_>>(),
            vec![
                FilterOp::Contains,
                FilterOp::NotContains,
                FilterOp::Regex,
                FilterOp::NotRegex
            ]
        );
        assert!(
            s.filters[2].keeps("a req-12 b"),
            "line regexes are not anchored"
        );
        assert!(
            !s.filters[0].keeps("oomkilled"),
            "line filters are case-sensitive"
        );
        assert_eq!(logs(r#"{pod="a\"b\n"}"#).matchers[0].value, "a\"b\n");
        // What Grafana appends to volume queries is accepted.
        assert!(logs(r#"{pod="a"} | drop __error__"#).filters.is_empty());
    }

    #[test]
    fn metric_queries() {
        let q = parse(r#"sum by (level) (count_over_time({namespace="shop"} |= "error" [1m]))"#)
            .unwrap();
        let Query::Metric(MetricExpr::Sum { grouping, inner }) = q else {
            panic!("{q:?}")
        };
        assert_eq!(grouping, Some(Grouping::By(vec!["level".into()])));
        let MetricExpr::Range {
            func,
            range_us,
            selector,
        } = *inner
        else {
            panic!()
        };
        assert_eq!(func, RangeFn::CountOverTime);
        assert_eq!(range_us, 60_000_000);
        assert_eq!(selector.filters.len(), 1);
        // `by` after the parentheses, and Grafana's `| drop __error__`.
        assert!(parse(r#"sum(rate({pod="a"} | drop __error__ [30s])) by (pod)"#).is_ok());
        assert_eq!(
            parse("vector(1)+vector(1)").unwrap(),
            Query::Metric(MetricExpr::Binary {
                op: BinOp::Add,
                lhs: Box::new(MetricExpr::Vector(1.0)),
                rhs: Box::new(MetricExpr::Vector(1.0)),
            })
        );
        assert!(parse(r#"rate({pod="a"}[1m30s]) * 60"#).is_ok());
        assert_eq!(parse_duration_us("1m30s"), Some(90_000_000));
        assert_eq!(parse_duration_us("500ms"), Some(500_000));
        assert_eq!(parse_duration_us("1x"), None);
    }

    #[test]
    fn deep_nesting_is_refused_not_recursed() {
        for q in [
            "-".repeat(60_000) + "1",
            "(".repeat(10_000) + "1" + &")".repeat(10_000),
            format!("1{}", "+1".repeat(20_000)),
            format!("1{}", "*2".repeat(20_000)),
            "sum(".repeat(5_000) + "count_over_time({a=\"b\"}[1m])" + &")".repeat(5_000),
        ] {
            let e = parse(&q).unwrap_err().to_string();
            assert!(e.contains("nests more than 64"), "{e}");
        }
        parse(&format!("1{}", "+1".repeat(20))).unwrap();
        parse(&("(".repeat(20) + "-1" + &")".repeat(20))).unwrap();
    }

    #[test]
    fn unsupported_parts_are_named() {
        for (q, part) in [
            (r#"{pod="a"} | json"#, "`| json`"),
            (r#"{pod="a"} | logfmt | level="x""#, "`| logfmt`"),
            (
                r#"avg_over_time({pod="a"} | unwrap x [1m])"#,
                "`avg_over_time`",
            ),
            (r#"topk(3, rate({pod="a"}[1m]))"#, "`topk`"),
            (
                r#"rate({pod="a"}[1m]) / rate({pod="b"}[1m])"#,
                "two log queries",
            ),
            (r#"rate({pod="a"}[1m] offset 5m)"#, "offset"),
            (r#"rate({pod="a"}[1m]) > 2"#, "comparison operator >"),
            (r#"{pod=~".*"}"#, "empty-compatible"),
            (r#"{pod="a""#, "unexpected end"),
            (r#"count_over_time({pod="a"})"#, "needs a range"),
        ] {
            let e = parse(q).expect_err(q);
            assert!(e.to_string().contains(part), "{q}: {e}");
            assert!(
                e.to_string().starts_with("parse error at line 1, col "),
                "{e}"
            );
        }
    }
}
