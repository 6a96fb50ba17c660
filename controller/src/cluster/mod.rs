//! The Kubernetes side of Fulcrum: Kubernetes objects into the engine's cluster view
//! ([`convert`], from a snapshot or from [`reflect`]ors), policies from the cluster with
//! their status ([`policies`], [`status`]), the Eviction-API actuator ([`evict`]), the
//! steering taint ([`steer`]), Events ([`events`]) and where replacements land
//! ([`replacement`]).

pub mod convert;
pub mod events;
pub mod evict;
pub mod policies;
pub mod reflect;
pub mod replacement;
pub mod status;
pub mod steer;
