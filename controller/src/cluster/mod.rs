//! The Kubernetes side of Fulcrum: turning Kubernetes objects into the engine's cluster
//! view ([`convert`]), from a `kubectl get -o yaml` snapshot today and from API watches in
//! the operator.

pub mod convert;
