//! The request log: one entry per request, with kubectl/RBAC style attributes.

use serde_json::Value;

/// One request the server answered (or started answering, for watches).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// URL path.
    pub path: String,
    /// Raw query string ("" when none).
    pub query: String,
    /// RBAC verb: get, list, watch, create, update, patch, delete, deletecollection (or the
    /// lowercase HTTP method for non-resource URLs).
    pub verb: String,
    /// Whether the path names a resource (false for /version, /api, /apis, ...).
    pub is_resource_request: bool,
    /// API group ("" for core).
    pub api_group: String,
    /// API version.
    pub api_version: String,
    /// Resource plural ("" for non-resource requests).
    pub resource: String,
    /// Subresource ("" when none).
    pub subresource: String,
    /// Namespace ("" when none).
    pub namespace: String,
    /// Object name ("" for collections).
    pub name: String,
    /// Content-Type header of the request.
    pub content_type: String,
    /// Accept header of the request.
    pub accept: String,
    /// User-Agent header of the request.
    pub user_agent: String,
    /// Request body parsed as JSON or YAML (None when empty or unparsable).
    pub body: Option<Value>,
    /// Raw request body as text.
    pub raw_body: String,
    /// HTTP status of the response.
    pub status: u16,
}

impl RecordedRequest {
    /// A query parameter's value, if present.
    pub fn query_param(&self, key: &str) -> Option<String> {
        crate::router::query_pairs(&self.query)
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// `(verb, apiGroup, resource[/subresource], namespace)` as an RBAC rule needs it.
    pub fn rbac(&self) -> (String, String, String, String) {
        let resource = if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        };
        (
            self.verb.clone(),
            self.api_group.clone(),
            resource,
            self.namespace.clone(),
        )
    }
}
