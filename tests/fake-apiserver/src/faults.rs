//! Scripted faults: matched against each request before it is served.

use std::time::Duration;

use crate::router::RequestInfo;
use crate::status::{ApiError, reason_for};

/// Which requests a fault applies to; unset fields match anything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matcher {
    /// HTTP method (GET, POST, ...).
    pub method: Option<String>,
    /// RBAC verb (get, list, watch, create, update, patch, delete, deletecollection).
    pub verb: Option<String>,
    /// Resource plural.
    pub resource: Option<String>,
    /// Subresource ("" matches only requests without one).
    pub subresource: Option<String>,
    /// Namespace.
    pub namespace: Option<String>,
    /// Object name.
    pub name: Option<String>,
}

impl Matcher {
    /// Matches every request.
    pub fn any() -> Self {
        Self::default()
    }

    /// Matches requests on a resource (plural).
    pub fn resource(resource: &str) -> Self {
        Self {
            resource: Some(resource.to_string()),
            ..Self::default()
        }
    }

    /// Also requires this verb.
    pub fn verb(mut self, verb: &str) -> Self {
        self.verb = Some(verb.to_string());
        self
    }

    /// Also requires this HTTP method.
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Also requires this subresource.
    pub fn subresource(mut self, subresource: &str) -> Self {
        self.subresource = Some(subresource.to_string());
        self
    }

    /// Also requires this object name.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// Also requires this namespace.
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_string());
        self
    }

    /// Whether a request matches.
    pub fn matches(&self, method: &str, info: &RequestInfo) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        eq(&self.method, method)
            && eq(&self.verb, &info.verb)
            && eq(&self.resource, &info.resource)
            && eq(&self.subresource, &info.subresource)
            && eq(&self.namespace, &info.namespace)
            && eq(&self.name, &info.name)
    }
}

/// What a matched fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// Answer with this error `Status` instead of serving.
    Status(ApiError),
    /// Wait this long, then serve normally.
    Delay(Duration),
    /// For a watch: answer 200 with a single `ERROR` event (410 Expired) and end, as the
    /// real server does for a too old resourceVersion.
    WatchGone,
    /// End every open watch stream, then serve this request normally.
    CloseWatches,
    /// Forget history (like [`crate::FakeApiServer::compact`]), then serve normally.
    Compact,
}

/// A scripted fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Requests it applies to.
    pub matcher: Matcher,
    /// What it does.
    pub action: FaultAction,
    /// How many matching requests it applies to.
    pub times: usize,
}

impl Fault {
    /// Answers matching requests with an error `Status` of `code` (reason from the code).
    pub fn status(matcher: Matcher, code: u16) -> Self {
        Self {
            matcher,
            action: FaultAction::Status(ApiError::new(
                code,
                reason_for(code),
                format!("injected fault: {code} {}", reason_for(code)),
            )),
            times: 1,
        }
    }

    /// Answers with a fully specified error.
    pub fn error(matcher: Matcher, error: ApiError) -> Self {
        Self {
            matcher,
            action: FaultAction::Status(error),
            times: 1,
        }
    }

    /// Delays matching requests.
    pub fn delay(matcher: Matcher, delay: Duration) -> Self {
        Self {
            matcher,
            action: FaultAction::Delay(delay),
            times: 1,
        }
    }

    /// The next matching watch gets an `ERROR` 410 event.
    pub fn watch_gone(matcher: Matcher) -> Self {
        Self {
            matcher: matcher.verb("watch"),
            action: FaultAction::WatchGone,
            times: 1,
        }
    }

    /// Any other action.
    pub fn new(matcher: Matcher, action: FaultAction) -> Self {
        Self {
            matcher,
            action,
            times: 1,
        }
    }

    /// Applies to `n` matching requests instead of one.
    pub fn times(mut self, n: usize) -> Self {
        self.times = n;
        self
    }
}

/// An armed fault with its remaining count.
#[derive(Debug, Clone)]
pub struct FaultEntry {
    /// The fault.
    pub fault: Fault,
    /// Matching requests left.
    pub remaining: usize,
}

/// Takes the first armed fault matching a request (decrementing its count).
pub fn take(faults: &mut Vec<FaultEntry>, method: &str, info: &RequestInfo) -> Option<FaultAction> {
    let pos = faults
        .iter()
        .position(|f| f.remaining > 0 && f.fault.matcher.matches(method, info))?;
    let entry = &mut faults[pos];
    entry.remaining -= 1;
    let action = entry.fault.action.clone();
    if entry.remaining == 0 {
        faults.remove(pos);
    }
    Some(action)
}
