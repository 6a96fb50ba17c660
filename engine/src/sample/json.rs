//! Scalars of the decoder: any JSON value reduced to what the schema needs, object keys,
//! and the field readers (strings, timestamps, set-once) with their problem paths.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{DecodeOptions, MAX_FUTURE_MS, MIN_TS_MS, Problem};

/// A problem with a path relative to the value being visited ("" = the value itself).
pub(super) type Fail = (String, Problem);

pub(super) fn fail<T>(path: &str, problem: Problem) -> Result<T, Fail> {
    Err((path.to_owned(), problem))
}

pub(super) fn wrong(expected: &'static str, got: &'static str) -> Problem {
    Problem::WrongType { expected, got }
}

/// Joins a parent path and a relative path.
pub(super) fn under(parent: &str, relative: &str) -> String {
    match relative {
        "" => parent.to_owned(),
        r if r.starts_with('[') => format!("{parent}{r}"),
        r => format!("{parent}.{r}"),
    }
}

/// Any JSON value, keeping scalars and only the kind of containers.
pub(super) enum Json<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    UInt(u64),
    Float(f64),
    Other(&'static str),
}

impl Json<'_> {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Json::Str(_) => "a string",
            Json::Int(_) | Json::UInt(_) | Json::Float(_) => "a number",
            Json::Other(kind) => kind,
        }
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Json::UInt(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Json::Float(v))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Json::Other("a boolean"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Json::Other("null"))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Json::Other("null"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Json::Other("a list"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Json::Other("an object"))
    }
}

impl<'de> de::Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

/// An object key, borrowed from the input unless it contains escapes.
pub(super) struct Key<'a>(pub(super) Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_str(JsonVisitor)? {
            Json::Str(s) => Ok(Key(s)),
            _ => Err(de::Error::custom("object key is not a string")),
        }
    }
}

pub(super) fn string<'a>(value: Json<'a>, field: &str) -> Result<Cow<'a, str>, Fail> {
    match value {
        Json::Str(s) => Ok(s),
        other => fail(field, wrong("a string", other.kind())),
    }
}

pub(super) fn timestamp(value: Json<'_>, options: &DecodeOptions) -> Result<i64, Fail> {
    const EXPECTED: &str = "an integer (ms since the Unix epoch) or an RFC 3339 string";
    let ts_ms = match value {
        Json::Int(v) => v,
        Json::UInt(v) => i64::try_from(v).unwrap_or(i64::MAX),
        // `as` saturates, so a huge integer-valued float fails the range checks below.
        Json::Float(v) if v.fract() == 0.0 => v as i64,
        Json::Float(_) => return fail("ts", wrong(EXPECTED, "a fractional number")),
        Json::Str(text) => match text.parse::<jiff::Timestamp>() {
            Ok(t) => t.as_millisecond(),
            Err(_) => return fail("ts", Problem::BadTimestamp(text.into_owned())),
        },
        other => return fail("ts", wrong(EXPECTED, other.kind())),
    };
    if ts_ms < MIN_TS_MS {
        return fail("ts", Problem::TooOld(ts_ms));
    }
    if ts_ms > options.now_ms.saturating_add(MAX_FUTURE_MS) {
        return fail(
            "ts",
            Problem::InFuture {
                ts_ms,
                now_ms: options.now_ms,
            },
        );
    }
    Ok(ts_ms)
}

pub(super) fn set_once<T>(
    slot: &mut Option<T>,
    field: &str,
    value: Result<T, Fail>,
) -> Result<(), Fail> {
    if slot.is_some() {
        return fail(field, Problem::Duplicate);
    }
    *slot = Some(value?);
    Ok(())
}
