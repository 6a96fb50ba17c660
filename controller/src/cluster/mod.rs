//! The Kubernetes side of Fulcrum: Kubernetes objects into the engine's cluster view
//! ([`convert`], from a snapshot or from [`reflect`]ors), policies from the cluster with
//! their status ([`policies`], [`status`]), the Eviction-API actuator ([`evict`]), the
//! steering taint ([`steer`]), Events ([`events`]), where replacements land
//! ([`replacement`]), snapshot files read object by object ([`snapshot`]) and pods' workloads from ReplicaSet metadata ([`workloads`]).

pub mod convert;
pub mod events;
pub mod evict;
pub mod policies;
pub mod reflect;
pub mod replacement;
pub mod snapshot;
pub mod status;
pub mod steer;
pub mod workloads;
