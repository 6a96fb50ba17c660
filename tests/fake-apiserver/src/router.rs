//! Turns a method, path and query into request attributes, as the real server's
//! RequestInfoFactory does (verbs, group, resource, subresource, namespace, name).

use crate::resources::{ResourceId, by_plural};

/// Attributes of a request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestInfo {
    /// Whether it addresses a resource.
    pub is_resource_request: bool,
    /// kubectl/RBAC verb.
    pub verb: String,
    /// API group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Resource plural as written in the path.
    pub resource: String,
    /// Index of the resource in the table, when served.
    pub resource_id: Option<ResourceId>,
    /// Subresource.
    pub subresource: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Path segments after the prefix for non-resource requests (e.g. ["apis", "apps"]).
    pub parts: Vec<String>,
}

/// Namespace subresources (paths `namespaces/{name}/{sub}`).
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// Parses `key=value&...` with percent decoding.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(kv), String::new()),
        })
        .collect()
}

/// Percent-decodes (and maps '+' to space, as form encoding does).
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a request.
pub fn parse(method: &str, path: &str, watch_param: bool) -> RequestInfo {
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect();
    let mut info = RequestInfo {
        verb: method.to_ascii_lowercase(),
        parts: segments.clone(),
        ..Default::default()
    };
    let rest: &[String] = match segments.first().map(String::as_str) {
        Some("api") if segments.len() >= 3 => {
            info.version = segments[1].clone();
            &segments[2..]
        }
        Some("apis") if segments.len() >= 4 => {
            info.group = segments[1].clone();
            info.version = segments[2].clone();
            &segments[3..]
        }
        _ => return info,
    };
    info.is_resource_request = true;
    let mut parts: Vec<String> = rest.to_vec();
    let mut legacy_watch = false;
    if parts.first().map(String::as_str) == Some("watch") {
        legacy_watch = true;
        parts.remove(0);
    }
    if parts.first().map(String::as_str) == Some("namespaces") && parts.len() > 1 {
        info.namespace = parts[1].clone();
        if parts.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&parts[2].as_str()) {
            parts.drain(0..2);
        }
    }
    if let Some(r) = parts.first() {
        info.resource = r.clone();
    }
    if let Some(n) = parts.get(1) {
        info.name = n.clone();
    }
    if let Some(s) = parts.get(2) {
        info.subresource = s.clone();
    }
    if info.resource == "namespaces" && parts.len() >= 2 {
        // `namespaces/{name}` is the namespace object itself.
        info.namespace = info.name.clone();
    }
    info.resource_id = by_plural(&info.group, &info.version, &info.resource);
    info.verb = match method {
        "GET" | "HEAD" if legacy_watch || watch_param => "watch".into(),
        "GET" | "HEAD" if info.name.is_empty() => "list".into(),
        "GET" | "HEAD" => "get".into(),
        "POST" => "create".into(),
        "PUT" => "update".into(),
        "PATCH" => "patch".into(),
        "DELETE" if info.name.is_empty() => "deletecollection".into(),
        "DELETE" => "delete".into(),
        other => other.to_ascii_lowercase(),
    };
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_and_attributes() {
        let i = parse("GET", "/api/v1/pods", false);
        assert_eq!((i.verb.as_str(), i.resource.as_str()), ("list", "pods"));
        let i = parse("GET", "/api/v1/namespaces/ns/pods", true);
        assert_eq!((i.verb.as_str(), i.namespace.as_str()), ("watch", "ns"));
        let i = parse("GET", "/api/v1/watch/namespaces/ns/pods", false);
        assert_eq!(i.verb, "watch");
        let i = parse("POST", "/api/v1/namespaces/ns/pods/p/eviction", false);
        assert_eq!(
            (i.verb.as_str(), i.name.as_str(), i.subresource.as_str()),
            ("create", "p", "eviction")
        );
        let i = parse("GET", "/api/v1/namespaces/kube-system", false);
        assert_eq!(
            (i.resource.as_str(), i.name.as_str(), i.namespace.as_str()),
            ("namespaces", "kube-system", "kube-system")
        );
        let i = parse("PUT", "/api/v1/namespaces/x/status", false);
        assert_eq!(
            (i.resource.as_str(), i.subresource.as_str()),
            ("namespaces", "status")
        );
        let i = parse(
            "PATCH",
            "/apis/fulcrum.dev/v1alpha1/interferencepolicies/a/status",
            false,
        );
        assert_eq!(
            (i.group.as_str(), i.verb.as_str(), i.subresource.as_str()),
            ("fulcrum.dev", "patch", "status")
        );
        assert!(i.resource_id.is_some());
        let i = parse("DELETE", "/apis/apps/v1/namespaces/ns/replicasets", false);
        assert_eq!(i.verb, "deletecollection");
        let i = parse("GET", "/apis", false);
        assert!(!i.is_resource_request);
        assert_eq!(i.verb, "get");
    }

    #[test]
    fn query_decoding() {
        let q = query_pairs("labelSelector=app%3Dweb%2Ctier+in+%28a%29&watch=true&x");
        assert_eq!(q[0].1, "app=web,tier in (a)");
        assert_eq!(q[2], ("x".to_string(), String::new()));
        assert_eq!(decode("%zz%"), "%zz%");
    }
}
