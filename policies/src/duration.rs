//! Kubernetes-style duration strings (`30s`, `5m`, `1h30m`) as written in policies.
//!
//! The accepted grammar is the subset of Go's `time.ParseDuration` that the CRD schema's
//! `pattern` also accepts, so what `validate()` accepts the API server accepts too:
//! one or more `<digits>[.<digits>]<unit>` groups with units `ns`, `us`, `µs`, `ms`, `s`,
//! `m`, `h` (`µs` may also be written with the Greek `μ`, as Go allows), or the bare string
//! `0`. Negative durations and durations over [`MAX_DURATION_MS`] are not allowed; both
//! limits are also in the CRD schema.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The regular expression the CRD schema uses for every duration field.
pub const DURATION_PATTERN: &str = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|μs|ms|s|m|h))+)$";

/// Longest duration a policy may use: 30 days. Longer windows are almost certainly a typo
/// and would make the engine keep unbounded history.
pub const MAX_DURATION_MS: u64 = 30 * 24 * 3_600_000;

/// A duration as written in a policy, kept verbatim so a policy round-trips unchanged.
///
/// Deserialization never fails on a malformed value: the string is parsed by
/// [`Duration::to_millis`] during validation, so a bad duration becomes a field error in
/// the policy's status instead of a decode failure that would hide the whole object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Duration(String);

/// Why a duration string was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string was empty.
    #[error("is empty; write a number and a unit, e.g. 30s, 5m, 1h30m")]
    Empty,
    /// The string does not follow the `<number><unit>` grammar.
    #[error(
        "{0:?} is not a duration; write a number and a unit (ns, us, ms, s, m, h), e.g. 30s, 5m, 1h30m"
    )]
    Syntax(String),
    /// A number was followed by an unknown unit.
    #[error("{input:?} has unknown unit {unit:?}; use one of ns, us, ms, s, m, h")]
    UnknownUnit {
        /// The whole duration string.
        input: String,
        /// The unit that was not recognised.
        unit: String,
    },
    /// The duration is longer than [`MAX_DURATION_MS`].
    #[error("{0:?} is longer than the 720h maximum")]
    TooLong(String),
}

impl Duration {
    /// Wraps a duration string without checking it.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The duration as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the duration into whole milliseconds (sub-millisecond parts are truncated).
    pub fn to_millis(&self) -> Result<u64, DurationError> {
        parse_millis(&self.0)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Duration {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 64,
            "pattern": DURATION_PATTERN,
            "description": "A duration such as 30s, 5m or 1h30m (units: ns, us, ms, s, m, h; at most 720h).",
            "x-kubernetes-validations": [{
                "rule": "duration(self) <= duration('720h')",
                "message": "must be at most 720h"
            }]
        })
    }
}

/// Parses a duration string into whole milliseconds.
pub fn parse_millis(input: &str) -> Result<u64, DurationError> {
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    if input == "0" {
        return Ok(0);
    }
    let syntax = || DurationError::Syntax(input.to_owned());
    let bytes = input.as_bytes();
    let mut pos = 0;
    let mut total_ns: u128 = 0;
    while pos < bytes.len() {
        let int_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos == int_start {
            return Err(syntax());
        }
        let int_part = &input[int_start..pos];
        let mut frac_part = "";
        if pos < bytes.len() && bytes[pos] == b'.' {
            pos += 1;
            let frac_start = pos;
            while pos < bytes.len() && bytes[pos].is_ascii_digit() {
                pos += 1;
            }
            if pos == frac_start {
                return Err(syntax());
            }
            frac_part = &input[frac_start..pos];
        }
        let unit_start = pos;
        while pos < bytes.len() && !bytes[pos].is_ascii_digit() && bytes[pos] != b'.' {
            pos += 1;
        }
        let unit = &input[unit_start..pos];
        if unit.is_empty() {
            return Err(syntax());
        }
        let unit_ns: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            _ => {
                return Err(DurationError::UnknownUnit {
                    input: input.to_owned(),
                    unit: unit.to_owned(),
                });
            }
        };
        let too_long = || DurationError::TooLong(input.to_owned());
        // Digits beyond 30 cannot be a sensible duration and would overflow u128 arithmetic.
        if int_part.len() > 30 {
            return Err(too_long());
        }
        let whole: u128 = int_part.parse().map_err(|_| syntax())?;
        total_ns = total_ns
            .checked_add(whole.checked_mul(unit_ns).ok_or_else(too_long)?)
            .ok_or_else(too_long)?;
        if !frac_part.is_empty() {
            let digits = &frac_part[..frac_part.len().min(18)];
            let frac: u128 = digits.parse().map_err(|_| syntax())?;
            let scale = 10u128.pow(digits.len() as u32);
            total_ns = total_ns.saturating_add(frac * unit_ns / scale);
        }
    }
    let millis = total_ns / 1_000_000;
    if millis > u128::from(MAX_DURATION_MS) {
        return Err(DurationError::TooLong(input.to_owned()));
    }
    Ok(millis as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_millis("0"), Ok(0));
        assert_eq!(parse_millis("0s"), Ok(0));
        assert_eq!(parse_millis("30s"), Ok(30_000));
        assert_eq!(parse_millis("5m"), Ok(300_000));
        assert_eq!(parse_millis("1h30m"), Ok(5_400_000));
        assert_eq!(parse_millis("1.5h"), Ok(5_400_000));
        assert_eq!(parse_millis("250ms"), Ok(250));
        assert_eq!(parse_millis("1500us"), Ok(1));
        assert_eq!(parse_millis("2µs"), Ok(0));
        assert_eq!(parse_millis("2000μs"), Ok(2));
        assert_eq!(parse_millis("720h"), Ok(MAX_DURATION_MS));
    }

    #[test]
    fn rejects_malformed_input_with_reason() {
        assert_eq!(parse_millis(""), Err(DurationError::Empty));
        assert!(matches!(parse_millis("5"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse_millis("-5s"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse_millis(".5s"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse_millis("5.s"), Err(DurationError::Syntax(_))));
        assert!(matches!(
            parse_millis("5 m"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(
            matches!(parse_millis("1d"), Err(DurationError::UnknownUnit { unit, .. }) if unit == "d")
        );
        assert!(matches!(
            parse_millis("721h"),
            Err(DurationError::TooLong(_))
        ));
        assert!(matches!(
            parse_millis("99999999999999999999999999999999h"),
            Err(DurationError::TooLong(_))
        ));
    }

    #[test]
    fn error_messages_name_the_input() {
        let err = parse_millis("1d").unwrap_err().to_string();
        assert!(err.contains("\"1d\"") && err.contains("\"d\""), "{err}");
    }
}
