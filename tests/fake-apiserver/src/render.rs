//! Content negotiation on `Accept`: full objects, `meta.k8s.io/v1` `PartialObjectMetadata`
//! (`as=PartialObjectMetadata` / `as=PartialObjectMetadataList`) or a minimal `Table`
//! (`as=Table`, as kubectl asks for).

use serde_json::{Value, json};

use crate::resources::ResourceInfo;

/// How to render objects for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rendering {
    /// The objects as stored.
    Full,
    /// `PartialObjectMetadata` / `PartialObjectMetadataList`.
    Metadata,
    /// A `Table` of this apiVersion (`meta.k8s.io/v1` or `meta.k8s.io/v1beta1`).
    Table(String),
}

/// Picks the first media range of an `Accept` header the server can produce.
pub fn negotiate(accept: &str) -> Rendering {
    for range in accept.split(',') {
        let mut params = range.split(';').map(str::trim);
        let base = params.next().unwrap_or("");
        if !matches!(base, "application/json" | "*/*" | "application/*" | "") {
            continue;
        }
        let (mut as_, mut g, mut v) = ("", "", "");
        for p in params {
            match p.split_once('=') {
                Some(("as", x)) => as_ = x,
                Some(("g", x)) => g = x,
                Some(("v", x)) => v = x,
                _ => {}
            }
        }
        match (as_, g) {
            ("", _) => return Rendering::Full,
            ("PartialObjectMetadata" | "PartialObjectMetadataList", "meta.k8s.io")
                if v == "v1" || v == "v1beta1" =>
            {
                return Rendering::Metadata;
            }
            ("Table", "meta.k8s.io") if v == "v1" || v == "v1beta1" => {
                return Rendering::Table(format!("meta.k8s.io/{v}"));
            }
            _ => continue,
        }
    }
    Rendering::Full
}

/// The `PartialObjectMetadata` of an object.
pub fn partial(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// Renders one object.
pub fn object(r: &Rendering, info: &ResourceInfo, obj: Value) -> Value {
    match r {
        Rendering::Full => obj,
        Rendering::Metadata => partial(&obj),
        Rendering::Table(v) => table(v, info, std::slice::from_ref(&obj), json!({})),
    }
}

/// Renders a list; `meta` is the list metadata (resourceVersion, continue, ...).
pub fn list(r: &Rendering, info: &ResourceInfo, items: Vec<Value>, meta: Value) -> Value {
    match r {
        Rendering::Full => json!({
            "kind": format!("{}List", info.kind),
            "apiVersion": info.api_version(),
            "metadata": meta,
            "items": items,
        }),
        Rendering::Metadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": meta,
            "items": items.iter().map(partial).collect::<Vec<_>>(),
        }),
        Rendering::Table(v) => table(v, info, &items, meta),
    }
}

fn age(obj: &Value) -> String {
    let Some(ts) = obj
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
    else {
        return "<unknown>".into();
    };
    let secs = jiff::Timestamp::now().duration_since(ts).as_secs().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn number_at(obj: &Value, pointer: &str) -> String {
    obj.pointer(pointer)
        .map(|v| v.to_string())
        .unwrap_or_default()
}

fn condition(obj: &Value, kind: &str) -> String {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
        })
        .and_then(|c| c.get("status").and_then(Value::as_str))
        .unwrap_or("")
        .to_string()
}

/// Computes one table cell from an object.
type Cell = fn(&Value) -> String;

/// A minimal server-side `Table`: Name and Age for every kind, plus Status and Node for pods,
/// Status for nodes and the CRD's printer columns for InterferencePolicies. Each row carries the object as `PartialObjectMetadata`.
fn table(api_version: &str, info: &ResourceInfo, items: &[Value], meta: Value) -> Value {
    let mut columns = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}),
    ];
    let extra: Vec<(&str, Cell)> = match info.kind {
        "Pod" => vec![
            ("Status", |o| {
                if o.pointer("/metadata/deletionTimestamp").is_some() {
                    "Terminating".into()
                } else {
                    str_at(o, "/status/phase").to_string()
                }
            }),
            ("Node", |o| str_at(o, "/spec/nodeName").to_string()),
        ],
        "Node" => vec![("Status", |o| {
            let ready = condition(o, "Ready") == "True";
            let mut s = if ready { "Ready" } else { "NotReady" }.to_string();
            if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
                s.push_str(",SchedulingDisabled");
            }
            s
        })],
        // The CRD's additionalPrinterColumns.
        "InterferencePolicy" => vec![
            ("Mode", |o| str_at(o, "/spec/mode").to_string()),
            ("Ready", |o| condition(o, "Ready")),
            ("Detections", |o| number_at(o, "/status/detections")),
            ("Actions", |o| number_at(o, "/status/actions/total")),
        ],
        _ => vec![],
    };
    for (name, _) in &extra {
        columns.push(json!({"name": name, "type": "string", "format": "", "description": name, "priority": 0}));
    }
    columns.push(
        json!({"name": "Age", "type": "string", "format": "", "description": "Age", "priority": 0}),
    );
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut cells = vec![json!(str_at(o, "/metadata/name"))];
            for (_, f) in &extra {
                cells.push(json!(f(o)));
            }
            cells.push(json!(age(o)));
            json!({"cells": cells, "object": partial(o)})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": api_version,
        "metadata": meta,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate("application/json"), Rendering::Full);
        assert_eq!(negotiate(""), Rendering::Full);
        assert_eq!(
            negotiate("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
            Rendering::Metadata
        );
        assert_eq!(
            negotiate(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
            ),
            Rendering::Table("meta.k8s.io/v1".into())
        );
        assert_eq!(
            negotiate("application/vnd.kubernetes.protobuf, application/json"),
            Rendering::Full
        );
        assert_eq!(
            negotiate(
                "application/json;as=APIGroupDiscoveryList;v=v2;g=apidiscovery.k8s.io,application/json"
            ),
            Rendering::Full
        );
    }
}
