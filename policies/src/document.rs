//! Checks a whole policy document (as parsed from YAML or JSON) and explains every problem:
//! `apiVersion`/`kind`, field types, unknown fields (likely typos), and the rules of
//! [`crate::validate`]. Used by `fulcrum check-policy` and by file-based replay.

use serde_json::Value;
use serde_path_to_error::Segment;

use crate::API_VERSION;
use crate::selector::is_dns_subdomain;
use crate::spec::InterferencePolicy;
use crate::validate::{FieldError, FieldErrors, validate};

/// How many type errors are collected before giving up on a badly broken document.
const MAX_TYPE_ERRORS: usize = 32;

/// Decodes and checks one policy document, returning the policy or every problem found.
pub fn check_document(doc: &Value) -> Result<InterferencePolicy, Vec<FieldError>> {
    let mut errors = FieldErrors::default();
    let Some(object) = doc.as_object() else {
        errors.push(
            "(document)",
            format!("must be a mapping, got {}", kind_of(doc)),
        );
        return Err(errors.into_vec());
    };
    match object.get("apiVersion").and_then(Value::as_str) {
        Some(API_VERSION) => {}
        other => errors.push(
            "apiVersion",
            format!("must be {API_VERSION:?}, got {}", shown(other)),
        ),
    }
    match object.get("kind").and_then(Value::as_str) {
        Some("InterferencePolicy") => {}
        other => errors.push(
            "kind",
            format!("must be \"InterferencePolicy\", got {}", shown(other)),
        ),
    }
    match doc.pointer("/metadata/name").and_then(Value::as_str) {
        Some(name) if is_dns_subdomain(name) => {}
        Some(name) => errors.push(
            "metadata.name",
            format!("must be a DNS subdomain (lowercase alphanumerics, '-' and '.'), got {name:?}"),
        ),
        None => errors.push("metadata.name", "is required"),
    }
    if doc.pointer("/metadata/namespace").is_some() {
        errors.push(
            "metadata.namespace",
            "must be absent: InterferencePolicy is cluster-scoped",
        );
    }

    let mut removed = Vec::new();
    let Some(policy) = decode_collecting_type_errors(doc, &mut errors, &mut removed) else {
        return Err(errors.into_vec());
    };

    // A field dropped for a type error is reported once; it is "unknown" to the round trip
    // and rules about it or its parent (such as "exactly one of above or outlier") would
    // only echo that error.
    let related = |path: &str| {
        removed
            .iter()
            .any(|r: &String| is_path_prefix(path, r) || is_path_prefix(r, path))
    };
    let mut unknown = FieldErrors::default();
    if let Ok(canonical) = serde_json::to_value(&policy) {
        unknown_fields(doc, &canonical, &mut String::new(), &mut unknown);
    }
    for e in unknown.into_vec().into_iter().chain(validate(&policy.spec)) {
        if !related(&e.path) {
            errors.push(e.path, e.message);
        }
    }
    if errors.is_empty() {
        Ok(policy)
    } else {
        Err(errors.into_vec())
    }
}

/// Decodes `doc`; on a type error, records it, removes the offending field and tries again,
/// so one run reports every independent type error rather than only the first. Returns the
/// policy decoded without the removed fields (their paths are pushed to `removed`), or
/// `None` when a required field is unusable.
fn decode_collecting_type_errors(
    doc: &Value,
    errors: &mut FieldErrors,
    removed: &mut Vec<String>,
) -> Option<InterferencePolicy> {
    let mut doc = doc.clone();
    for _ in 0..MAX_TYPE_ERRORS {
        match serde_path_to_error::deserialize::<_, InterferencePolicy>(&doc) {
            Ok(policy) => return Some(policy),
            Err(err) => {
                let segments: Vec<Segment> = err.path().iter().cloned().collect();
                let message = err.inner().to_string();
                let (segments, message) = match missing_field(&message) {
                    Some(field) => {
                        let mut at = segments;
                        at.push(Segment::Map {
                            key: field.to_owned(),
                        });
                        (at, "is required".to_owned())
                    }
                    None => (segments, strip_position(&message)),
                };
                // A required field we removed ourselves: already reported; stop here.
                let path = render_path(&segments);
                if removed.contains(&path) {
                    return None;
                }
                errors.push(path.clone(), message);
                if segments.is_empty() || !remove_at(&mut doc, &segments) {
                    return None;
                }
                removed.push(path);
            }
        }
    }
    None
}

/// True when `prefix` is `path` or one of its ancestors (`spec.triggers[1]` is an ancestor
/// of `spec.triggers[1].above` but not of `spec.triggers[10]`).
fn is_path_prefix(prefix: &str, path: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field)
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn render_path(segments: &[Segment]) -> String {
    let mut out = String::new();
    for seg in segments {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    if out.is_empty() {
        "(document)".to_owned()
    } else {
        out
    }
}

fn remove_at(doc: &mut Value, segments: &[Segment]) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut cur = doc;
    for seg in parents {
        cur = match (seg, cur) {
            (Segment::Map { key }, Value::Object(map)) => match map.get_mut(key) {
                Some(v) => v,
                None => return false,
            },
            (Segment::Seq { index }, Value::Array(items)) => match items.get_mut(*index) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, cur) {
        (Segment::Map { key }, Value::Object(map)) => map.remove(key).is_some(),
        (Segment::Seq { index }, Value::Array(items)) if *index < items.len() => {
            items[*index] = Value::Null;
            true
        }
        _ => false,
    }
}

/// Reports keys present in `input` but dropped by a decode/encode round trip: fields the
/// types do not know (the API server would silently prune them).
fn unknown_fields(input: &Value, canonical: &Value, path: &mut String, errors: &mut FieldErrors) {
    match (input, canonical) {
        (Value::Object(given), Value::Object(known)) => {
            for (key, value) in given {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match known.get(key) {
                    Some(k) => unknown_fields(value, k, path, errors),
                    None if value.is_null() => {}
                    None if is_free_form(path) => {}
                    None => errors.push(path.clone(), "unknown field (check its spelling)"),
                }
                path.truncate(len);
            }
        }
        (Value::Array(given), Value::Array(known)) => {
            for (i, (g, k)) in given.iter().zip(known).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                unknown_fields(g, k, path, errors);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Maps whose keys are user data, not field names.
fn is_free_form(path: &str) -> bool {
    path.starts_with("metadata.") || path.starts_with("status.")
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn shown(v: Option<&str>) -> String {
    v.map_or_else(|| "nothing".to_owned(), |s| format!("{s:?}"))
}
