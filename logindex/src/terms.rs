//! How log text becomes searchable terms.
//!
//! A log line is split on whitespace and on the punctuation that separates
//! values (`"`, `,`, `;`, `=`, brackets, …) into *words*, each kept whole and
//! lowercased: `OOMKilled`, `req-8c1f`, `10.0.0.12`, `/v1/orders/{id}`. A
//! word made of several parts joined by `-`, `.`, `/`, `:` or `_` is also
//! indexed by each part, at the same position, so `8c1f`, `orders` and
//! `10` find it too. A search term is one word, matched whole; a phrase is
//! consecutive words.

/// A term and the word position it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub position: usize,
    pub text: String,
    pub from: usize,
    pub to: usize,
}

/// Longest word indexed; a longer run (a base64 blob) is cut.
pub const MAX_WORD_BYTES: usize = 128;

/// Indexed (once per word) beside a word that was cut, so a substring
/// search knows which lines the cut words may hide a match in. No query
/// word can produce it: it starts with a control character.
pub const CUT_WORD_MARKER: &str = "\u{1}cut";

const fn separates_words(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\''
                | '`'
                | ','
                | ';'
                | '='
                | '('
                | ')'
                | '['
                | ']'
                | '{'
                | '}'
                | '<'
                | '>'
                | '|'
                | '!'
                | '?'
                | '*'
                | '&'
                | '^'
                | '~'
                | '\\'
                | '$'
                | '#'
                | '@'
                | '%'
                | '+'
        )
}

const fn joins_parts(c: char) -> bool {
    matches!(c, '-' | '.' | '/' | ':' | '_')
}

/// The words of `text` (as written), with their byte offsets.
pub fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut rest = text.char_indices().peekable();
    std::iter::from_fn(move || {
        // Skip separators, then take the word up to the next one.
        while let Some(&(_, c)) = rest.peek() {
            if !separates_words(c) {
                break;
            }
            rest.next();
        }
        let (start, _) = *rest.peek()?;
        let mut end = text.len();
        while let Some(&(i, c)) = rest.peek() {
            if separates_words(c) {
                end = i;
                break;
            }
            rest.next();
        }
        Some((start, &text[start..end]))
    })
    .filter_map(|(start, w)| {
        // Sentence punctuation around a word is not part of it.
        let trimmed = w.trim_matches(joins_parts);
        let lead = w.len() - w.trim_start_matches(joins_parts).len();
        (!trimmed.is_empty()).then_some((start + lead, trimmed))
    })
}

fn truncated(w: &str) -> &str {
    if w.len() <= MAX_WORD_BYTES {
        return w;
    }
    let mut end = MAX_WORD_BYTES;
    while !w.is_char_boundary(end) {
        end -= 1;
    }
    &w[..end]
}

/// A term of a line: its lowercased text is `buf[start..end]` of the buffer
/// [`term_spans`] filled, `from..to` its place in the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermSpan {
    pub position: usize,
    pub start: usize,
    pub end: usize,
    pub from: usize,
    pub to: usize,
}

fn push_lower(buf: &mut String, text: &str) -> (usize, usize) {
    let start = buf.len();
    if text.is_ascii() {
        buf.push_str(text);
        buf[start..].make_ascii_lowercase();
    } else {
        buf.push_str(&text.to_lowercase());
    }
    (start, buf.len())
}

/// What an ASCII byte is to [`words`]: [`separates_words`] and
/// [`joins_parts`], looked up in a table built from them (the tokenizer was
/// a tenth of indexing's CPU when it decoded and classified each char).
const SEPARATES: u8 = 1;
const JOINS: u8 = 2;
const ASCII_CLASS: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut c = 0;
    while c < 128 {
        let ch = c as u8 as char;
        t[c] = if separates_words(ch) {
            SEPARATES
        } else if joins_parts(ch) {
            JOINS
        } else {
            0
        };
        c += 1;
    }
    t
};

/// Every term of `text`, in order, into `out`, their text into `buf` (both
/// reused between lines, so indexing a line allocates nothing).
pub fn term_spans(text: &str, out: &mut Vec<TermSpan>, buf: &mut String) {
    out.clear();
    buf.clear();
    if text.is_ascii() {
        ascii_term_spans(text, out, buf);
    } else {
        any_term_spans(text, out, buf);
    }
}

/// [`term_spans`] of ASCII text, byte by byte: the same terms as
/// [`any_term_spans`] (a test compares them on random text).
fn ascii_term_spans(text: &str, out: &mut Vec<TermSpan>, buf: &mut String) {
    let b = text.as_bytes();
    let class = |i: usize| ASCII_CLASS[usize::from(b[i] & 0x7f)];
    let mut i = 0;
    let mut position = 0;
    while i < b.len() {
        while i < b.len() && class(i) == SEPARATES {
            i += 1;
        }
        let mut start = i;
        let mut joined = false;
        while i < b.len() && class(i) != SEPARATES {
            joined |= class(i) == JOINS;
            i += 1;
        }
        // Sentence punctuation around a word is not part of it.
        let mut end = i;
        while start < end && class(start) == JOINS {
            start += 1;
        }
        while end > start && class(end - 1) == JOINS {
            end -= 1;
        }
        if start == end {
            continue;
        }
        let cut = end - start > MAX_WORD_BYTES;
        let to = if cut { start + MAX_WORD_BYTES } else { end };
        // ASCII: every byte is a char boundary, and lowercasing keeps
        // offsets, so each part's term is a slice of the whole's.
        let whole = &text[start..to];
        let ws = buf.len();
        buf.push_str(whole);
        buf[ws..].make_ascii_lowercase();
        out.push(TermSpan {
            position,
            start: ws,
            end: buf.len(),
            from: start,
            to,
        });
        if cut {
            let ms = buf.len();
            buf.push_str(CUT_WORD_MARKER);
            out.push(TermSpan {
                position,
                start: ms,
                end: buf.len(),
                from: start,
                to,
            });
        }
        if joined {
            let mut at = start;
            for (k, &byte) in whole.as_bytes().iter().enumerate() {
                let split_here = ASCII_CLASS[usize::from(byte & 0x7f)] == JOINS;
                let part_end = start + k;
                if split_here {
                    if part_end > at {
                        out.push(TermSpan {
                            position,
                            start: ws + (at - start),
                            end: ws + (part_end - start),
                            from: at,
                            to: part_end,
                        });
                    }
                    at = part_end + 1;
                }
            }
            // A whole with a joiner only past the cut has no parts.
            if at > start && to > at {
                out.push(TermSpan {
                    position,
                    start: ws + (at - start),
                    end: ws + (to - start),
                    from: at,
                    to,
                });
            }
        }
        position += 1;
    }
}

/// [`term_spans`] of any text, char by char.
fn any_term_spans(text: &str, out: &mut Vec<TermSpan>, buf: &mut String) {
    for (position, (start, word)) in words(text).enumerate() {
        let whole = truncated(word);
        let (ws, we) = push_lower(buf, whole);
        out.push(TermSpan {
            position,
            start: ws,
            end: we,
            from: start,
            to: start + whole.len(),
        });
        if whole.len() < word.len() {
            let (ms, me) = {
                let s = buf.len();
                buf.push_str(CUT_WORD_MARKER);
                (s, buf.len())
            };
            out.push(TermSpan {
                position,
                start: ms,
                end: me,
                from: start,
                to: start + whole.len(),
            });
        }
        if whole.contains(joins_parts) {
            let ascii = whole.is_ascii();
            let mut at = start;
            for part in whole.split(joins_parts) {
                if !part.is_empty() {
                    let (ps, pe) = if ascii {
                        // The part's lowercase is a slice of the whole's.
                        let off = ws + (at - start);
                        (off, off + part.len())
                    } else {
                        push_lower(buf, part)
                    };
                    out.push(TermSpan {
                        position,
                        start: ps,
                        end: pe,
                        from: at,
                        to: at + part.len(),
                    });
                }
                at += part.len() + 1;
            }
        }
    }
}

/// Every term of `text`, in order, appended to `out` (reused between lines).
pub fn terms_into(text: &str, out: &mut Vec<Term>) {
    let mut spans = Vec::new();
    let mut buf = String::new();
    term_spans(text, &mut spans, &mut buf);
    out.clear();
    out.extend(spans.into_iter().map(|s| Term {
        position: s.position,
        text: buf[s.start..s.end].to_string(),
        from: s.from,
        to: s.to,
    }));
}

/// The whole words of a query text, lowercased (what a search matches).
pub fn query_words(text: &str) -> Vec<String> {
    words(text)
        .map(|(_, w)| truncated(w).to_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        terms_into(s, &mut out);
        out.into_iter().map(|t| (t.position, t.text)).collect()
    }

    #[test]
    fn identifiers_are_whole_and_by_part() {
        let t = texts("Container app OOMKilled (req-8c1f) from 10.0.0.12 on /v1/orders.");
        let has = |p: usize, w: &str| t.contains(&(p, w.to_string()));
        assert!(has(2, "oomkilled"));
        assert!(has(3, "req-8c1f") && has(3, "req") && has(3, "8c1f"));
        assert!(has(5, "10.0.0.12") && has(5, "12"));
        assert!(has(7, "v1/orders"), "{t:?}");
        assert!(has(7, "orders"));
        assert_eq!(
            query_words("OOMKilled req-8c1f"),
            vec!["oomkilled", "req-8c1f"]
        );
    }

    #[test]
    fn json_and_logfmt_values_are_words() {
        let t = texts(r#"{"level":"error","msg":"out of memory"} user=alice.chen"#);
        let words: Vec<&str> = t.iter().map(|(_, w)| w.as_str()).collect();
        for w in [
            "level",
            "error",
            "out",
            "of",
            "memory",
            "alice.chen",
            "alice",
            "chen",
        ] {
            assert!(words.contains(&w), "{w} in {words:?}");
        }
    }

    proptest::proptest! {
        /// The byte-wise path gives exactly the char-wise path's terms, on
        /// text made mostly of separators, joiners, cases and long words.
        #[test]
        fn ascii_terms_equal_the_general_path(
            text in "([ \t\x0b\x0c\r\n\"',;=(){}<>|*\\-./:_]|[a-zA-Z0-9]{1,6}|[a-z.-]{120,140}){0,40}"
        ) {
            let (mut fast, mut fast_buf) = (Vec::new(), String::new());
            let (mut slow, mut slow_buf) = (Vec::new(), String::new());
            ascii_term_spans(&text, &mut fast, &mut fast_buf);
            any_term_spans(&text, &mut slow, &mut slow_buf);
            let terms = |spans: &[TermSpan], buf: &str| -> Vec<(usize, String, usize, usize)> {
                spans
                    .iter()
                    .map(|s| (s.position, buf[s.start..s.end].to_string(), s.from, s.to))
                    .collect()
            };
            proptest::prop_assert_eq!(terms(&fast, &fast_buf), terms(&slow, &slow_buf));
        }
    }

    #[test]
    fn long_words_are_cut_on_a_char_boundary() {
        let long = "é".repeat(200);
        let t = texts(&long);
        assert_eq!(t.len(), 2);
        assert!(t[0].1.len() <= MAX_WORD_BYTES);
        assert_eq!(t[1].1, CUT_WORD_MARKER, "a cut word is marked");
        assert_eq!(texts("short").len(), 1);
    }
}
