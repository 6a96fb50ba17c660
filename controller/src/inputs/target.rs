//! Checks shared by the OTLP and Prometheus inputs: Kubernetes names and timestamps, with
//! errors naming the field as the native decoder's do.

use fulcrum_engine::sample::{DecodeError, DecodeOptions, MAX_FUTURE_MS, MIN_TS_MS, Problem};
use fulcrum_policies::selector::{is_dns_label, is_dns_subdomain};

use super::assemble::TargetRef;

/// The names of a series' node, pod and container, and where each was read from.
pub struct Names<'a> {
    /// Field path of the node name, e.g. `resourceMetrics[0].resource.attributes.k8s.node.name`.
    pub node: (String, Option<&'a str>),
    /// Namespace.
    pub namespace: (String, Option<&'a str>),
    /// Pod name.
    pub pod: (String, Option<&'a str>),
    /// Pod UID.
    pub uid: Option<&'a str>,
    /// Container.
    pub container: (String, Option<&'a str>),
}

fn field(path: String, problem: Problem) -> DecodeError {
    DecodeError::Field {
        field: path,
        problem,
    }
}

fn checked(
    (path, value): (String, Option<&str>),
    valid: fn(&str) -> bool,
) -> Result<Option<&str>, DecodeError> {
    match value {
        None | Some("") => Ok(None),
        Some(v) if valid(v) => Ok(Some(v)),
        Some(v) => Err(field(path, Problem::BadName(v.to_owned()))),
    }
}

impl<'a> Names<'a> {
    /// The target: the node is required; a pod needs its namespace; a container needs its
    /// pod (a container without a pod is attributed to the node).
    pub fn target(self) -> Result<TargetRef<'a>, DecodeError> {
        let node_path = self.node.0.clone();
        let node = checked(self.node, is_dns_subdomain)?
            .ok_or_else(|| field(node_path, Problem::Missing))?;
        let namespace_path = self.namespace.0.clone();
        let namespace = checked(self.namespace, is_dns_label)?;
        let pod = checked(self.pod, is_dns_subdomain)?;
        let container = checked(self.container, is_dns_label)?;
        let pod = match (pod, namespace) {
            (Some(name), Some(ns)) => Some((ns, name, self.uid.filter(|u| !u.is_empty()))),
            (Some(_), None) => return Err(field(namespace_path, Problem::Missing)),
            (None, _) => None,
        };
        Ok(TargetRef {
            node,
            pod,
            container: container.filter(|_| pod.is_some()),
        })
    }
}

/// Checks an event time (ms) against the limits of the native schema.
pub fn check_ts(
    ts_ms: i64,
    options: &DecodeOptions,
    path: impl FnOnce() -> String,
) -> Result<i64, DecodeError> {
    if ts_ms < MIN_TS_MS {
        return Err(field(path(), Problem::TooOld(ts_ms)));
    }
    if ts_ms > options.now_ms.saturating_add(MAX_FUTURE_MS) {
        return Err(field(
            path(),
            Problem::InFuture {
                ts_ms,
                now_ms: options.now_ms,
            },
        ));
    }
    Ok(ts_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names<'a>(
        node: Option<&'a str>,
        ns: Option<&'a str>,
        pod: Option<&'a str>,
        c: Option<&'a str>,
    ) -> Names<'a> {
        Names {
            node: ("n".into(), node),
            namespace: ("ns".into(), ns),
            pod: ("p".into(), pod),
            uid: None,
            container: ("c".into(), c),
        }
    }

    #[test]
    fn targets_are_checked_and_named_by_field() {
        let t = names(Some("node-1"), Some("shop"), Some("cart-0"), Some("app"))
            .target()
            .unwrap();
        assert_eq!(t.pod, Some(("shop", "cart-0", None)));
        assert_eq!(t.container, Some("app"));
        // A container without a pod is attributed to the node.
        let t = names(Some("node-1"), None, None, Some("app"))
            .target()
            .unwrap();
        assert_eq!((t.pod, t.container), (None, None));
        let err = |n: Names<'_>| n.target().unwrap_err().to_string();
        assert_eq!(
            err(names(None, None, None, None)),
            "n: is required but missing"
        );
        assert_eq!(
            err(names(Some(""), None, None, None)),
            "n: is required but missing"
        );
        assert!(
            err(names(Some("Node_1"), None, None, None))
                .starts_with("n: \"Node_1\" is not a valid")
        );
        assert_eq!(
            err(names(Some("node-1"), None, Some("cart-0"), None)),
            "ns: is required but missing"
        );
        assert!(
            err(names(
                Some("node-1"),
                Some("shop"),
                Some("cart-0"),
                Some("App")
            ))
            .starts_with("c: ")
        );
    }

    #[test]
    fn timestamps_outside_the_native_limits_are_refused() {
        let options = DecodeOptions {
            now_ms: 1_764_151_200_000,
        };
        assert!(check_ts(1_764_151_200_000, &options, || "ts".into()).is_ok());
        let old = check_ts(1_764_151_200, &options, || "ts".into()).unwrap_err();
        assert_eq!(old.reason(), "ts_too_old");
        let future = check_ts(1_764_151_200_000 + MAX_FUTURE_MS + 1, &options, || {
            "ts".into()
        })
        .unwrap_err();
        assert_eq!(future.reason(), "ts_in_future");
    }
}
