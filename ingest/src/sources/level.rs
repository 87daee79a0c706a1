//! The log level of a line, when the application wrote one: a JSON field
//! (`level`, `severity`, `lvl`), a logfmt `level=`, a klog prefix (`E1121 …`),
//! or a leading level word (`WARN …`, `2026-11-21 14:32:08.123  INFO …`).

/// Canonical lower-case level names.
pub const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "fatal"];

fn canonical(word: &str) -> Option<&'static str> {
    let w = word.trim_matches(|c: char| !c.is_ascii_alphabetic());
    Some(match w.to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" | "dbg" => "debug",
        "info" | "information" | "notice" => "info",
        "warn" | "warning" => "warn",
        "error" | "err" => "error",
        "fatal" | "critical" | "crit" | "panic" | "emerg" | "alert" => "fatal",
        _ => return None,
    })
}

const JSON_KEYS: [&str; 4] = ["level", "severity", "lvl", "log.level"];

/// The JSON level keys' values (the last of each, as a parsed object would
/// hold), with every other value skipped unparsed: the collector reads one
/// per line, and building a whole `Value` per line was its largest cost.
struct LevelFields([Option<serde_json::Value>; 4]);

impl<'de> serde::Deserialize<'de> for LevelFields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = LevelFields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<LevelFields, A::Error> {
                let mut found: [Option<serde_json::Value>; 4] = Default::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match JSON_KEYS.iter().position(|k| *k == key) {
                        Some(i) => found[i] = Some(map.next_value()?),
                        None => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(LevelFields(found))
            }
        }
        d.deserialize_map(Visit)
    }
}

fn from_json(line: &str) -> Option<&'static str> {
    let LevelFields(found) = serde_json::from_str(line).ok()?;
    found
        .iter()
        .find_map(|v| v.as_ref()?.as_str().and_then(canonical))
}

fn from_logfmt(line: &str) -> Option<&'static str> {
    line.split_ascii_whitespace().find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        matches!(k, "level" | "lvl" | "severity").then(|| canonical(v.trim_matches('"')))?
    })
}

fn from_klog(line: &str) -> Option<&'static str> {
    // I1121 14:32:08.123456 ...: letter, four digits, space.
    let b = line.as_bytes();
    if b.len() > 6 && b[1..5].iter().all(u8::is_ascii_digit) && b[5] == b' ' {
        return match b[0] {
            b'I' => Some("info"),
            b'W' => Some("warn"),
            b'E' => Some("error"),
            b'F' => Some("fatal"),
            _ => None,
        };
    }
    None
}

fn from_prefix(line: &str) -> Option<&'static str> {
    // A level word among the first few tokens (after a timestamp, a bracket…).
    line.split_ascii_whitespace()
        .take(4)
        .find(|t| {
            t.trim_matches(|c: char| !c.is_ascii_alphabetic()).len() >= 3
                && t.chars().any(|c| c.is_ascii_uppercase())
        })
        .and_then(canonical)
}

/// The level of `line`, if it states one.
pub fn parse(line: &str) -> Option<&'static str> {
    let trimmed = line.trim_start();
    if trimmed.starts_with('{')
        && let Some(l) = from_json(trimmed)
    {
        return Some(l);
    }
    from_logfmt(trimmed)
        .or_else(|| from_klog(trimmed))
        .or_else(|| from_prefix(trimmed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `from_json` was: the whole line parsed into a `Value`.
    fn from_json_value(line: &str) -> Option<&'static str> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let o = v.as_object()?;
        JSON_KEYS
            .iter()
            .find_map(|k| o.get(*k)?.as_str().and_then(canonical))
    }

    #[test]
    fn json_levels_read_as_a_parsed_object_gives_them() {
        for line in [
            r#"{"level":"info","msg":"x"}"#,
            r#"{"msg":{"level":"error"},"severity":"WARNING"}"#,
            r#"{"level":30,"lvl":"debug"}"#,
            r#"{"level":"info","level":"error"}"#,
            r#"{"log.level":"crit","a":[1,{"b":null}]}"#,
            r#"{"lev\u0065l":"warn"}"#,
            r#"{"level":"info"} trailing"#,
            r#"{"level":"info""#,
            r#"["level","info"]"#,
            r#"{"level":null,"severity":"notice"}"#,
            r#"{}"#,
        ] {
            assert_eq!(from_json(line), from_json_value(line), "{line}");
        }
    }

    #[test]
    fn levels_in_every_style() {
        assert_eq!(
            parse(r#"{"ts":"x","level":"warn","msg":"m"}"#),
            Some("warn")
        );
        assert_eq!(
            parse(r#"{"severity":"ERROR","message":"m"}"#),
            Some("error")
        );
        assert_eq!(
            parse("time=2026-11-21T14:32:08Z level=info msg=\"x\""),
            Some("info")
        );
        assert_eq!(
            parse("E1121 14:32:08.123456       1 controller.go:118] boom"),
            Some("error")
        );
        assert_eq!(
            parse("2026-11-21 14:32:08.123  WARN 1 --- [main] c.x : slow"),
            Some("warn")
        );
        assert_eq!(parse("ERROR 2026/11/21 14:32:08 failed"), Some("error"));
        assert_eq!(parse("panic: runtime error: nil"), None);
        assert_eq!(
            parse("\tat java.base/java.util.Arrays.copyOf(Arrays.java:3537)"),
            None
        );
        assert_eq!(
            parse("the error was ignored"),
            None,
            "lower-case prose is not a level"
        );
        assert_eq!(parse(""), None);
    }
}
