//! The fast path for decoding a raw event: JSON bytes straight into a
//! [`RawEvent`], borrowing strings from the input instead of building a
//! `serde_json::Value` tree and copying out of it.
//!
//! It only ever answers for records that are valid; anything it does not
//! like (a wrong type, a missing field, a bad value) makes it step aside, and
//! the field-by-field validator in [`crate::raw`] reports every problem.
//! A valid record decodes to the same [`RawEvent`] either way (checked by a
//! differential test below), so the fast path changes speed, never results.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::Deserialize as _;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::raw::{MAX_ATTRIBUTES, RawEvent};
use crate::time::{epoch_millis_micros, parse_rfc3339_micros};
use crate::validation::ValidationErrors;
use crate::validation::{MAX_NAME_BYTES, MAX_TEXT_BYTES};

/// A string borrowed from the input when it holds no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A contract timestamp: RFC 3339 text or integer epoch milliseconds.
enum Timestamp<'a> {
    Text(Str<'a>),
    Millis(i64),
}

impl<'de> de::Deserialize<'de> for Timestamp<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Timestamp<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a timestamp")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Timestamp::Text(Str(Cow::Borrowed(s))))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Timestamp::Text(Str(Cow::Owned(s.to_owned()))))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                Ok(Timestamp::Millis(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                i64::try_from(n)
                    .map(Timestamp::Millis)
                    .map_err(|_| E::custom("out of range"))
            }
        }
        d.deserialize_any(V)
    }
}

impl Timestamp<'_> {
    fn micros(&self) -> Option<i64> {
        match self {
            Timestamp::Text(s) => parse_rfc3339_micros(&s.0).ok(),
            Timestamp::Millis(ms) => epoch_millis_micros(*ms).ok(),
        }
    }
}

#[derive(Default)]
struct Wire<'a> {
    event_id: Option<Str<'a>>,
    occurred_at: Option<Timestamp<'a>>,
    service: Option<Str<'a>>,
    action: Option<Str<'a>>,
    success: Option<bool>,
    user_id: Option<Str<'a>>,
    method: Option<Str<'a>>,
    path: Option<Str<'a>>,
    status_code: Option<i64>,
    latency_ms: Option<f64>,
    client_ip: Option<Str<'a>>,
    user_agent: Option<Str<'a>>,
    service_account: Option<bool>,
    request_id: Option<Str<'a>>,
    trace_id: Option<Str<'a>>,
    bytes_in: Option<i64>,
    bytes_out: Option<i64>,
    attributes: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
}

/// An attribute's value as the table keeps it: strings as they are (borrowed
/// when unescaped), anything else as its compact JSON text, `None` for null.
struct Attribute<'a>(Option<Cow<'a, str>>);

impl<'de> de::Deserialize<'de> for Attribute<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        fn text<'a>(v: Value) -> Attribute<'a> {
            Attribute(Some(Cow::Owned(v.to_string())))
        }
        impl<'de> Visitor<'de> for V {
            type Value = Attribute<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Attribute(Some(Cow::Borrowed(s))))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Attribute(Some(Cow::Owned(s.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Attribute(Some(Cow::Owned(s))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Attribute(None))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
                Ok(text(Value::Bool(b)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                Ok(text(Value::from(n)))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                Ok(text(Value::from(n)))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
                Ok(text(Value::from(n)))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                let v = Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(text(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let v = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(text(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> de::Deserialize<'de> for Wire<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Wire<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an event object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Wire<'de>, A::Error> {
                let mut w = Wire::default();
                // A later duplicate key replaces an earlier one, as in a
                // `serde_json::Map`, so both paths agree on such input.
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    match key.0.as_ref() {
                        "event_id" => w.event_id = map.next_value()?,
                        "occurred_at" => w.occurred_at = map.next_value()?,
                        "service" => w.service = map.next_value()?,
                        "action" => w.action = map.next_value()?,
                        "success" => w.success = map.next_value()?,
                        "user_id" => w.user_id = map.next_value()?,
                        "method" => w.method = map.next_value()?,
                        "path" => w.path = map.next_value()?,
                        "status_code" => w.status_code = map.next_value()?,
                        "latency_ms" => w.latency_ms = map.next_value()?,
                        "client_ip" => w.client_ip = map.next_value()?,
                        "user_agent" => w.user_agent = map.next_value()?,
                        "service_account" => w.service_account = map.next_value()?,
                        "request_id" => w.request_id = map.next_value()?,
                        "trace_id" => w.trace_id = map.next_value()?,
                        "bytes_in" => w.bytes_in = map.next_value()?,
                        "bytes_out" => w.bytes_out = map.next_value()?,
                        _ => match map.next_value::<Attribute<'de>>()? {
                            Attribute(None) => {
                                w.attributes.remove(&key.0);
                            }
                            Attribute(Some(v)) => {
                                w.attributes.insert(key.0, v);
                            }
                        },
                    }
                }
                Ok(w)
            }
        }
        d.deserialize_map(V)
    }
}

/// A valid raw event whose strings borrow from the input where it holds no
/// escapes: what the writer appends to Arrow columns without an owned copy.
#[derive(Debug, Clone, PartialEq)]
pub struct EventView<'a> {
    pub event_id: Cow<'a, str>,
    /// Epoch microseconds, UTC.
    pub occurred_at: i64,
    pub service: Cow<'a, str>,
    pub action: Cow<'a, str>,
    pub success: bool,
    pub user_id: Option<Cow<'a, str>>,
    pub method: Option<Cow<'a, str>>,
    pub path: Option<Cow<'a, str>>,
    pub status_code: Option<i32>,
    pub latency_ms: Option<f64>,
    /// Canonical text form of `client_addr`.
    pub client_ip: Option<Cow<'a, str>>,
    pub client_addr: Option<IpAddr>,
    pub user_agent: Option<Cow<'a, str>>,
    pub service_account: Option<bool>,
    pub request_id: Option<Cow<'a, str>>,
    pub trace_id: Option<Cow<'a, str>>,
    pub bytes_in: Option<i64>,
    pub bytes_out: Option<i64>,
    pub attributes: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
}

impl EventView<'_> {
    pub fn into_owned(self) -> RawEvent {
        let own = |s: Option<Cow<'_, str>>| s.map(Cow::into_owned);
        RawEvent {
            event_id: self.event_id.into_owned(),
            occurred_at: self.occurred_at,
            service: self.service.into_owned(),
            action: self.action.into_owned(),
            success: self.success,
            user_id: own(self.user_id),
            method: own(self.method),
            path: own(self.path),
            status_code: self.status_code,
            latency_ms: self.latency_ms,
            client_ip: own(self.client_ip),
            user_agent: own(self.user_agent),
            service_account: self.service_account,
            request_id: own(self.request_id),
            trace_id: own(self.trace_id),
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            attributes: self
                .attributes
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }
}

impl RawEvent {
    /// The event as a view borrowing from it.
    pub fn view(&self) -> EventView<'_> {
        fn b(s: &Option<String>) -> Option<Cow<'_, str>> {
            s.as_deref().map(Cow::Borrowed)
        }
        EventView {
            event_id: Cow::Borrowed(&self.event_id),
            occurred_at: self.occurred_at,
            service: Cow::Borrowed(&self.service),
            action: Cow::Borrowed(&self.action),
            success: self.success,
            user_id: b(&self.user_id),
            method: b(&self.method),
            path: b(&self.path),
            status_code: self.status_code,
            latency_ms: self.latency_ms,
            client_ip: b(&self.client_ip),
            client_addr: self.client_ip.as_deref().and_then(|ip| ip.parse().ok()),
            user_agent: b(&self.user_agent),
            service_account: self.service_account,
            request_id: b(&self.request_id),
            trace_id: b(&self.trace_id),
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            attributes: self
                .attributes
                .iter()
                .map(|(k, v)| (Cow::Borrowed(k.as_str()), Cow::Borrowed(v.as_str())))
                .collect(),
        }
    }
}

impl RawEvent {
    /// Parses one NDJSON line / one Kafka message payload. Valid records take
    /// the borrowing fast path; the rest get the full problem report. (Here,
    /// not in `raw`, so that the contract does not import its fast path.)
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, ValidationErrors> {
        match decode_event(bytes) {
            Some(event) => Ok(event),
            None => Self::validate_json_bytes(bytes),
        }
    }
}

/// Decodes a valid raw event, or `None` for anything the validator must see.
pub fn decode_event(bytes: &[u8]) -> Option<RawEvent> {
    decode_event_view(bytes).map(EventView::into_owned)
}

/// [`decode_event`] without copying the strings out of `bytes`.
pub fn decode_event_view(bytes: &[u8]) -> Option<EventView<'_>> {
    let w = match flat::scan(bytes) {
        Some(w) => w,
        None => {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let w: Wire<'_> = de::Deserialize::deserialize(&mut de).ok()?;
            de.end().ok()?;
            w
        }
    };
    build(w).ok()
}

/// The common shape, read without serde: one flat object whose strings have
/// no escapes and whose values are strings, numbers, booleans or null. The
/// input is checked as UTF-8 once, strings are found by scanning for their
/// closing quote, and each field is assigned as `Wire`'s serde
/// implementation would assign it. Anything else (an escape, a nested value,
/// a type the field does not take, a number out of range) answers `None` and
/// serde decides; a differential test holds the two to the same result.
mod flat {
    use std::borrow::Cow;

    use super::{Str, Timestamp, Wire};

    #[derive(Clone, Copy)]
    enum Val<'a> {
        Str(&'a str),
        Int(&'a str),
        Float(&'a str),
        Bool(bool),
        Null,
    }

    struct Cursor<'a> {
        text: &'a str,
        at: usize,
    }

    impl<'a> Cursor<'a> {
        fn peek(&self) -> Option<u8> {
            self.text.as_bytes().get(self.at).copied()
        }

        fn skip_ws(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.at += 1;
            }
        }

        fn eat(&mut self, c: u8) -> Option<()> {
            self.skip_ws();
            (self.peek()? == c).then(|| self.at += 1)
        }

        /// A string without escapes or control characters.
        fn string(&mut self) -> Option<&'a str> {
            let rest = &self.text.as_bytes()[self.at + 1..];
            let len = rest
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
            if rest[len] != b'"' {
                return None;
            }
            let start = self.at + 1;
            self.at = start + len + 1;
            self.text.get(start..start + len)
        }

        fn number(&mut self) -> Option<Val<'a>> {
            let b = self.text.as_bytes();
            let start = self.at;
            let mut i = start;
            if b.get(i) == Some(&b'-') {
                i += 1;
            }
            let digits = |i: &mut usize| {
                let from = *i;
                while b.get(*i).is_some_and(u8::is_ascii_digit) {
                    *i += 1;
                }
                *i - from
            };
            let first = *b.get(i)?;
            let int_digits = digits(&mut i);
            if int_digits == 0 || (first == b'0' && int_digits > 1) {
                return None;
            }
            let mut float = false;
            if b.get(i) == Some(&b'.') {
                i += 1;
                if digits(&mut i) == 0 {
                    return None;
                }
                float = true;
            }
            if matches!(b.get(i), Some(b'e' | b'E')) {
                i += 1;
                if matches!(b.get(i), Some(b'+' | b'-')) {
                    i += 1;
                }
                if digits(&mut i) == 0 {
                    return None;
                }
                float = true;
            }
            self.at = i;
            let text = self.text.get(start..i)?;
            // serde_json reads `-0` as the float -0.0, keeping its sign.
            Some(if float || text == "-0" {
                Val::Float(text)
            } else {
                Val::Int(text)
            })
        }

        fn literal(&mut self, word: &str, value: Val<'a>) -> Option<Val<'a>> {
            self.text[self.at..].starts_with(word).then(|| {
                self.at += word.len();
                value
            })
        }

        fn value(&mut self) -> Option<Val<'a>> {
            self.skip_ws();
            match self.peek()? {
                b'"' => self.string().map(Val::Str),
                b't' => self.literal("true", Val::Bool(true)),
                b'f' => self.literal("false", Val::Bool(false)),
                b'n' => self.literal("null", Val::Null),
                b'-' | b'0'..=b'9' => self.number(),
                _ => None,
            }
        }
    }

    /// JSON integers as serde_json reads them: u64, or i64 when negative.
    fn integer(text: &str) -> Option<i128> {
        if text.starts_with('-') {
            text.parse::<i64>().ok().map(i128::from)
        } else {
            text.parse::<u64>().ok().map(i128::from)
        }
    }

    fn text(v: Val<'_>) -> Option<Option<Str<'_>>> {
        match v {
            Val::Str(s) => Some(Some(Str(Cow::Borrowed(s)))),
            Val::Null => Some(None),
            _ => None,
        }
    }

    fn long(v: Val<'_>) -> Option<Option<i64>> {
        match v {
            Val::Int(t) => Some(Some(i64::try_from(integer(t)?).ok()?)),
            Val::Null => Some(None),
            _ => None,
        }
    }

    fn double(v: Val<'_>) -> Option<Option<f64>> {
        match v {
            // serde_json reads an integer as one and converts it.
            Val::Int(t) => Some(Some(match integer(t)? {
                n if n < 0 => n as i64 as f64,
                n => n as u64 as f64,
            })),
            Val::Float(t) => {
                let f = t.parse::<f64>().ok()?;
                f.is_finite().then_some(Some(f))
            }
            Val::Null => Some(None),
            _ => None,
        }
    }

    fn boolean(v: Val<'_>) -> Option<Option<bool>> {
        match v {
            Val::Bool(b) => Some(Some(b)),
            Val::Null => Some(None),
            _ => None,
        }
    }

    fn timestamp(v: Val<'_>) -> Option<Option<Timestamp<'_>>> {
        match v {
            Val::Str(s) => Some(Some(Timestamp::Text(Str(Cow::Borrowed(s))))),
            Val::Int(t) => Some(Some(Timestamp::Millis(i64::try_from(integer(t)?).ok()?))),
            Val::Null => Some(None),
            _ => None,
        }
    }

    /// An attribute as `super::Attribute` keeps it.
    fn attribute(v: Val<'_>) -> Option<Option<Cow<'_, str>>> {
        let json = |v: serde_json::Value| Some(Some(Cow::Owned(v.to_string())));
        match v {
            Val::Str(s) => Some(Some(Cow::Borrowed(s))),
            Val::Null => Some(None),
            Val::Bool(b) => json(serde_json::Value::Bool(b)),
            Val::Int(t) => match integer(t)? {
                n if n < 0 => json(serde_json::Value::from(n as i64)),
                n => json(serde_json::Value::from(n as u64)),
            },
            Val::Float(t) => {
                let f = t.parse::<f64>().ok()?;
                if f.is_finite() {
                    json(serde_json::Value::from(f))
                } else {
                    None
                }
            }
        }
    }

    pub(super) fn scan(bytes: &[u8]) -> Option<Wire<'_>> {
        let mut c = Cursor {
            text: std::str::from_utf8(bytes).ok()?,
            at: 0,
        };
        let mut w = Wire::default();
        c.eat(b'{')?;
        c.skip_ws();
        if c.peek()? == b'}' {
            c.at += 1;
        } else {
            loop {
                c.skip_ws();
                if c.peek()? != b'"' {
                    return None;
                }
                let key = c.string()?;
                c.eat(b':')?;
                let v = c.value()?;
                match key {
                    "event_id" => w.event_id = text(v)?,
                    "occurred_at" => w.occurred_at = timestamp(v)?,
                    "service" => w.service = text(v)?,
                    "action" => w.action = text(v)?,
                    "success" => w.success = boolean(v)?,
                    "user_id" => w.user_id = text(v)?,
                    "method" => w.method = text(v)?,
                    "path" => w.path = text(v)?,
                    "status_code" => w.status_code = long(v)?,
                    "latency_ms" => w.latency_ms = double(v)?,
                    "client_ip" => w.client_ip = text(v)?,
                    "user_agent" => w.user_agent = text(v)?,
                    "service_account" => w.service_account = boolean(v)?,
                    "request_id" => w.request_id = text(v)?,
                    "trace_id" => w.trace_id = text(v)?,
                    "bytes_in" => w.bytes_in = long(v)?,
                    "bytes_out" => w.bytes_out = long(v)?,
                    _ => match attribute(v)? {
                        None => {
                            w.attributes.remove(key);
                        }
                        Some(value) => {
                            w.attributes.insert(Cow::Borrowed(key), value);
                        }
                    },
                }
                c.skip_ws();
                match c.peek()? {
                    b',' => c.at += 1,
                    b'}' => {
                        c.at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        c.skip_ws();
        (c.at == bytes.len()).then_some(w)
    }
}

fn name(s: Option<Str<'_>>, required: bool) -> Result<Option<Cow<'_, str>>, ()> {
    text(s, required, MAX_NAME_BYTES)
}

fn text(s: Option<Str<'_>>, required: bool, max: usize) -> Result<Option<Cow<'_, str>>, ()> {
    match s {
        None if required => Err(()),
        None => Ok(None),
        Some(Str(s)) if (required && s.is_empty()) || s.len() > max => Err(()),
        Some(Str(s)) => Ok(Some(s)),
    }
}

fn within(n: Option<i64>, min: i64, max: i64) -> Result<Option<i64>, ()> {
    match n {
        Some(n) if !(min..=max).contains(&n) => Err(()),
        n => Ok(n),
    }
}

/// The address and its canonical text: an IPv4 address that parses is
/// already canonical (std refuses leading zeros), IPv6 text may not be.
fn address(text: Cow<'_, str>) -> Result<(IpAddr, Cow<'_, str>), ()> {
    let ip = text.parse::<IpAddr>().map_err(|_| ())?;
    match ip {
        IpAddr::V4(_) => Ok((ip, text)),
        IpAddr::V6(_) => {
            let canonical = ip.to_string();
            if canonical == text {
                Ok((ip, text))
            } else {
                Ok((ip, Cow::Owned(canonical)))
            }
        }
    }
}

fn build(w: Wire<'_>) -> Result<EventView<'_>, ()> {
    let (client_addr, client_ip) = match name(w.client_ip, false)? {
        Some(text) => {
            let (ip, text) = address(text)?;
            (Some(ip), Some(text))
        }
        None => (None, None),
    };
    let latency_ms = match w.latency_ms {
        Some(n) if !(n.is_finite() && (0.0..=1e9).contains(&n)) => return Err(()),
        n => n,
    };
    if w.attributes.len() > MAX_ATTRIBUTES {
        return Err(());
    }
    Ok(EventView {
        event_id: name(w.event_id, true)?.ok_or(())?,
        occurred_at: w.occurred_at.ok_or(())?.micros().ok_or(())?,
        service: name(w.service, true)?.ok_or(())?,
        action: name(w.action, true)?.ok_or(())?,
        success: w.success.ok_or(())?,
        user_id: name(w.user_id, false)?,
        method: name(w.method, false)?,
        path: text(w.path, false, MAX_TEXT_BYTES)?,
        status_code: within(w.status_code, 100, 599)?.map(|n| n as i32),
        latency_ms,
        client_ip,
        client_addr,
        user_agent: text(w.user_agent, false, MAX_TEXT_BYTES)?,
        service_account: w.service_account,
        request_id: name(w.request_id, false)?,
        trace_id: name(w.trace_id, false)?,
        bytes_in: within(w.bytes_in, 0, i64::MAX)?,
        bytes_out: within(w.bytes_out, 0, i64::MAX)?,
        attributes: w.attributes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::RAW_EVENT_FIELDS;
    use proptest::prelude::*;
    use serde_json::json;

    fn slow(bytes: &[u8]) -> Option<RawEvent> {
        serde_json::from_slice::<Value>(bytes)
            .ok()
            .and_then(|v| RawEvent::from_json(&v).ok())
    }

    fn base() -> Value {
        json!({
            "event_id": "e-1", "occurred_at": "2026-11-21T12:00:00.25+01:00",
            "service": "iom-cluster", "action": "list", "success": true,
            "user_id": "alice", "method": "GET", "path": "/v1/x/12?y=1",
            "status_code": 200, "latency_ms": 12.5, "client_ip": "::ffff:10.0.0.1",
            "user_agent": "curl/8", "service_account": false, "request_id": "r\u{e9}q",
            "trace_id": "t", "bytes_in": 1, "bytes_out": 2,
            "region": "eu", "retries": 3, "tags": ["a"], "nothing": null
        })
    }

    /// Values that exercise every branch: wrong types, bounds, escapes, nulls.
    fn variant() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            Just(json!("")),
            Just(json!("plain")),
            Just(json!("esc\"aped\n")),
            Just(json!("x".repeat(MAX_NAME_BYTES + 1))),
            Just(json!("2026-11-21T12:00:00Z")),
            Just(json!("1999-01-01T00:00:00Z")),
            Just(json!("10.1.2.3")),
            Just(json!("not-an-ip")),
            Just(json!(true)),
            Just(json!(0)),
            Just(json!(-1)),
            Just(json!(99)),
            Just(json!(404)),
            Just(json!(1_795_264_328_500_i64)),
            Just(json!(1_795_264_328_i64)),
            Just(json!(u64::MAX)),
            Just(json!(2.5)),
            Just(json!(200.0)),
            Just(json!(1e10)),
            Just(json!([1, 2])),
            Just(json!({"a": 1})),
        ]
    }

    /// The contract's fields and two attribute keys.
    fn keys() -> Vec<&'static str> {
        RAW_EVENT_FIELDS
            .iter()
            .copied()
            .chain(["region", "extra"])
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Whatever the fast path accepts, the validator accepts identically;
        /// whatever the validator accepts, the fast path accepts too.
        #[test]
        fn fast_path_agrees_with_the_validator(
            edits in proptest::collection::vec((0..keys().len(), variant()), 0..4),
            removals in proptest::collection::vec(0..keys().len(), 0..2),
        ) {
            let mut v = base();
            let Value::Object(m) = &mut v else { unreachable!() };
            let keys = keys();
            for (k, value) in edits {
                m.insert(keys[k].to_string(), value);
            }
            for k in removals {
                m.remove(keys[k]);
            }
            let bytes = serde_json::to_vec(&v).unwrap();
            prop_assert_eq!(decode_event(&bytes), slow(&bytes));
        }
    }

    fn serde_path(bytes: &[u8]) -> Option<EventView<'_>> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let w: Wire<'_> = de::Deserialize::deserialize(&mut de).ok()?;
        de.end().ok()?;
        build(w).ok()
    }

    /// Raw JSON value texts, in forms serde_json and the flat reader must
    /// read alike (or the flat reader must leave to serde).
    fn raw_value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            Just("false".to_string()),
            Just("\"plain\"".to_string()),
            Just("\"\"".to_string()),
            Just("\"esc\\\"aped\"".to_string()),
            Just("\"tab\\tbed\"".to_string()),
            Just("\"caf\u{e9} \u{1F600}\"".to_string()),
            Just("\"2026-11-21T12:00:00Z\"".to_string()),
            Just("\"2026-11-21T12:00:00.123+01:00\"".to_string()),
            Just("\"10.1.2.3\"".to_string()),
            Just("\"::FFFF:10.0.0.1\"".to_string()),
            Just("0".to_string()),
            Just("-0".to_string()),
            Just("00".to_string()),
            Just("200".to_string()),
            Just("-1".to_string()),
            Just("1795264328500".to_string()),
            Just("18446744073709551615".to_string()),
            Just("18446744073709551616".to_string()),
            Just("9223372036854775808".to_string()),
            Just("-9223372036854775809".to_string()),
            Just("12.5".to_string()),
            Just("-0.0".to_string()),
            Just("1e2".to_string()),
            Just("1.5E-3".to_string()),
            Just("1e400".to_string()),
            Just("1.".to_string()),
            Just(".5".to_string()),
            Just("[1, 2]".to_string()),
            Just("{\"a\": 1}".to_string()),
            Just("nul".to_string()),
        ]
    }

    fn raw_key() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(RAW_EVENT_FIELDS.to_vec()).prop_map(|k| format!("\"{k}\"")),
            Just("\"region\"".to_string()),
            Just("\"r\\u0065gion\"".to_string()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// Whenever the flat reader answers, it answers as serde does.
        #[test]
        fn flat_reader_agrees_with_serde(
            fields in proptest::collection::vec((raw_key(), raw_value()), 0..8),
            base_fields in proptest::bool::ANY,
            spacing in proptest::sample::select(vec!["", " ", "\n\t ", "\r\n"]),
            trailing in proptest::sample::select(vec!["", " ", "\n", " x", ","]),
        ) {
            let mut parts: Vec<String> = Vec::new();
            if base_fields {
                parts.push(r#""event_id":"e","occurred_at":"2026-11-21T12:00:00Z","service":"s","action":"a","success":true"#.to_string());
            }
            for (k, v) in &fields {
                parts.push(format!("{k}{spacing}:{spacing}{v}"));
            }
            let text = format!("{spacing}{{{spacing}{}{spacing}}}{trailing}", parts.join(&format!("{spacing},{spacing}")));
            let bytes = text.as_bytes();
            if let Some(w) = flat::scan(bytes) {
                prop_assert_eq!(build(w).ok(), serde_path(bytes), "{}", text);
            }
        }
    }

    #[test]
    fn flat_reader_takes_the_common_shape() {
        let line = br#"{"event_id":"b19787e6","occurred_at":"2026-11-23T00:00:47.111Z","service":"iom-cluster","action":"clusters.status.get","success":true,"user_id":"rosa.kaya","method":"GET","path":"/api/v1/clusters/8aa4/status","status_code":200,"latency_ms":27.252,"client_ip":"10.20.26.141","request_id":"req-db96","bytes_in":168,"bytes_out":311,"org_id":172}"#;
        let w = flat::scan(line).expect("flat");
        assert_eq!(build(w).ok(), serde_path(line));
        assert!(
            flat::scan(br#"{"event_id":"a\"b"}"#).is_none(),
            "escapes go to serde"
        );
        assert!(
            flat::scan(br#"{"tags":[1]}"#).is_none(),
            "nesting goes to serde"
        );
    }

    #[test]
    fn borrowed_and_escaped_strings_decode_alike() {
        let bytes = serde_json::to_vec(&base()).unwrap();
        let fast = decode_event(&bytes).expect("valid");
        assert_eq!(Some(fast.clone()), slow(&bytes));
        assert_eq!(fast.request_id.as_deref(), Some("r\u{e9}q"));
        assert_eq!(fast.client_ip.as_deref(), Some("::ffff:10.0.0.1"));
        assert_eq!(
            fast.attributes.get("tags").map(String::as_str),
            Some("[\"a\"]")
        );
        assert!(!fast.attributes.contains_key("nothing"));
    }

    #[test]
    fn steps_aside_for_what_it_does_not_accept() {
        for bad in [
            &b"[1]"[..],
            b"{\"event_id\": 1}",
            b"{} trailing",
            b"not json",
            b"{\"event_id\":\"a\",\"event_id\":null}",
        ] {
            assert_eq!(decode_event(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
