//! The resource types the fake serves: one static table used by discovery, routing and storage.

/// A resource type (an API group/version's collection) the fake server stores and serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group ("" for the core group).
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// Kind of the objects.
    pub kind: &'static str,
    /// Plural resource name as used in URLs.
    pub plural: &'static str,
    /// Singular name.
    pub singular: &'static str,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Verbs allowed on the main resource.
    pub verbs: &'static [&'static str],
    /// Short names for kubectl.
    pub short_names: &'static [&'static str],
    /// Whether the `status` subresource exists (status writes do not bump generation and main
    /// resource writes keep the stored status).
    pub has_status: bool,
    /// Whether strategic merge patch is supported (built-in types only).
    pub strategic: bool,
    /// Categories (for `kubectl get all` style lookups).
    pub categories: &'static [&'static str],
}

impl ResourceInfo {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The URL prefix of the group version (`/api/v1` or `/apis/{group}/{version}`).
    pub fn prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Every resource the fake serves.
pub static RESOURCES: &[ResourceInfo] = &[
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        namespaced: true,
        verbs: ALL_VERBS,
        short_names: &["po"],
        has_status: true,
        strategic: true,
        categories: &["all"],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        singular: "node",
        namespaced: false,
        verbs: ALL_VERBS,
        short_names: &["no"],
        has_status: true,
        strategic: true,
        categories: &[],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        namespaced: false,
        verbs: &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ],
        short_names: &["ns"],
        has_status: true,
        strategic: true,
        categories: &[],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        namespaced: true,
        verbs: ALL_VERBS,
        short_names: &["ev"],
        has_status: false,
        strategic: true,
        categories: &[],
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        singular: "replicaset",
        namespaced: true,
        verbs: ALL_VERBS,
        short_names: &["rs"],
        has_status: true,
        strategic: true,
        categories: &["all"],
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        namespaced: true,
        verbs: ALL_VERBS,
        short_names: &["deploy"],
        has_status: true,
        strategic: true,
        categories: &["all"],
    },
    ResourceInfo {
        group: "policy",
        version: "v1",
        kind: "PodDisruptionBudget",
        plural: "poddisruptionbudgets",
        singular: "poddisruptionbudget",
        namespaced: true,
        verbs: ALL_VERBS,
        short_names: &["pdb"],
        has_status: true,
        strategic: true,
        categories: &[],
    },
    ResourceInfo {
        group: "events.k8s.io",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        namespaced: true,
        verbs: ALL_VERBS,
        short_names: &["ev"],
        has_status: false,
        strategic: true,
        categories: &[],
    },
    ResourceInfo {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        singular: "lease",
        namespaced: true,
        verbs: ALL_VERBS,
        short_names: &[],
        has_status: false,
        strategic: true,
        categories: &[],
    },
    ResourceInfo {
        group: "fulcrum.dev",
        version: "v1alpha1",
        kind: "InterferencePolicy",
        plural: "interferencepolicies",
        singular: "interferencepolicy",
        namespaced: false,
        verbs: ALL_VERBS,
        short_names: &["ifp"],
        has_status: true,
        strategic: false,
        categories: &["fulcrum"],
    },
    ResourceInfo {
        group: "apiextensions.k8s.io",
        version: "v1",
        kind: "CustomResourceDefinition",
        plural: "customresourcedefinitions",
        singular: "customresourcedefinition",
        namespaced: false,
        verbs: ALL_VERBS,
        short_names: &["crd", "crds"],
        has_status: true,
        strategic: false,
        categories: &["api-extensions"],
    },
];

/// Index of a resource in [`RESOURCES`].
pub type ResourceId = usize;

/// Looks a resource up by group, version and plural.
pub fn by_plural(group: &str, version: &str, plural: &str) -> Option<ResourceId> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Looks a resource up by an `apiVersion` string and a kind.
pub fn by_kind(api_version: &str, kind: &str) -> Option<ResourceId> {
    let (group, version) = split_api_version(api_version);
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.kind == kind)
}

/// Looks a resource up by a loose name: a plural, a kind, a short name or `plural.group`
/// (the first match wins; core resources come first).
pub fn by_name(name: &str) -> Option<ResourceId> {
    let (base, group) = match name.split_once('.') {
        Some((b, g)) => (b, Some(g)),
        None => (name, None),
    };
    RESOURCES.iter().position(|r| {
        group.is_none_or(|g| g == r.group)
            && (r.plural == base
                || r.singular == base
                || r.kind.eq_ignore_ascii_case(base)
                || r.short_names.contains(&base))
    })
}

/// Splits `group/version` (or a bare core `version`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// Core pods.
pub fn pods() -> ResourceId {
    0
}
/// Core nodes.
pub fn nodes() -> ResourceId {
    1
}
/// Core namespaces.
pub fn namespaces() -> ResourceId {
    2
}
/// apiextensions.k8s.io/v1 CustomResourceDefinitions.
pub fn crds() -> ResourceId {
    10
}
/// policy/v1 PodDisruptionBudgets.
pub fn pdbs() -> ResourceId {
    6
}

/// Subresources served, per resource plural: (resource group, plural, subresource, kind, verbs).
pub static SUBRESOURCES: &[(&str, &str, &str, &str, &[&str])] = &[
    ("", "pods", "status", "Pod", &["get", "patch", "update"]),
    ("", "pods", "eviction", "Eviction", &["create"]),
    ("", "nodes", "status", "Node", &["get", "patch", "update"]),
    (
        "",
        "namespaces",
        "status",
        "Namespace",
        &["get", "patch", "update"],
    ),
    (
        "apps",
        "replicasets",
        "status",
        "ReplicaSet",
        &["get", "patch", "update"],
    ),
    (
        "apps",
        "deployments",
        "status",
        "Deployment",
        &["get", "patch", "update"],
    ),
    (
        "policy",
        "poddisruptionbudgets",
        "status",
        "PodDisruptionBudget",
        &["get", "patch", "update"],
    ),
    (
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "status",
        "CustomResourceDefinition",
        &["get", "patch", "update"],
    ),
    (
        "fulcrum.dev",
        "interferencepolicies",
        "status",
        "InterferencePolicy",
        &["get", "patch", "update"],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_indices_match_the_table() {
        assert_eq!(RESOURCES[pods()].plural, "pods");
        assert_eq!(RESOURCES[nodes()].plural, "nodes");
        assert_eq!(RESOURCES[pdbs()].plural, "poddisruptionbudgets");
        assert_eq!(RESOURCES[namespaces()].plural, "namespaces");
        assert_eq!(RESOURCES[crds()].plural, "customresourcedefinitions");
        assert_eq!(
            by_name("ifp").map(|i| RESOURCES[i].kind),
            Some("InterferencePolicy")
        );
        assert_eq!(by_kind("policy/v1", "PodDisruptionBudget"), Some(pdbs()));
    }
}
