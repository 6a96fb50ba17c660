//! Shared strings and values of the cluster view. Replicas of a workload repeat their
//! namespace, node name, owner, workload, label map and tolerations: the [`ClusterIndex`]
//! keeps one copy of each and the pods point at it ([`IStr`], `Arc`).
//!
//! A copy no pod uses any more is freed by a sweep that runs once at least 1,024 pods were
//! removed or replaced since the last one and they number at least an eighth of the copies:
//! the sweeps cost O(1) per removal, and a pod leaves at most a few copies behind until
//! the next sweep.
//!
//! [`ClusterIndex`]: crate::ClusterIndex

use std::borrow::Borrow;
use std::collections::HashSet;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::cluster::{LabelMap, Toleration};

/// An immutable string that clones by reference (16 bytes): the cluster index shares one
/// copy among the pods that repeat it. Compares, hashes and prints as the `str` it holds.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IStr(Arc<str>);

impl IStr {
    /// The string.
    #[inline]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when both point at the same copy.
    pub fn ptr_eq(&self, other: &IStr) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Deref for IStr {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for IStr {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for IStr {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl fmt::Debug for IStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&str> for IStr {
    fn from(s: &str) -> Self {
        Self(s.into())
    }
}

impl From<String> for IStr {
    fn from(s: String) -> Self {
        Self(s.into())
    }
}

impl From<&String> for IStr {
    fn from(s: &String) -> Self {
        Self(s.as_str().into())
    }
}

impl From<IStr> for String {
    fn from(s: IStr) -> Self {
        s.0.to_string()
    }
}

impl PartialEq<str> for IStr {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for IStr {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for IStr {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<IStr> for str {
    fn eq(&self, other: &IStr) -> bool {
        self == &*other.0
    }
}

impl PartialEq<IStr> for &str {
    fn eq(&self, other: &IStr) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<IStr> for String {
    fn eq(&self, other: &IStr) -> bool {
        **self == *other.0
    }
}

type FastSet<T> = HashSet<T, foldhash::fast::RandomState>;

/// The shared copies of the cluster index.
#[derive(Clone, Debug, Default)]
pub(crate) struct Interner {
    strings: FastSet<IStr>,
    labels: FastSet<Arc<LabelMap>>,
    tolerations: FastSet<Arc<[Toleration]>>,
    /// Pods removed or replaced since the last sweep.
    released: usize,
}

impl Interner {
    /// The shared copy of `s`.
    pub(crate) fn str(&mut self, s: &IStr) -> IStr {
        if let Some(shared) = self.strings.get(s.as_str()) {
            return shared.clone();
        }
        self.strings.insert(s.clone());
        s.clone()
    }

    /// The shared copy of a label map.
    pub(crate) fn labels(&mut self, labels: &Arc<LabelMap>) -> Arc<LabelMap> {
        if let Some(shared) = self.labels.get(&**labels) {
            return shared.clone();
        }
        self.labels.insert(labels.clone());
        labels.clone()
    }

    /// The shared copy of a list of tolerations.
    pub(crate) fn tolerations(&mut self, tolerations: &Arc<[Toleration]>) -> Arc<[Toleration]> {
        if let Some(shared) = self.tolerations.get(&**tolerations) {
            return shared.clone();
        }
        self.tolerations.insert(tolerations.clone());
        tolerations.clone()
    }

    /// Counts a pod that no longer holds its copies; sweeps when enough were released.
    pub(crate) fn release(&mut self) {
        self.released += 1;
        if self.released >= 1024 && self.released * 8 >= self.len() {
            self.sweep();
        }
    }

    /// Frees the copies only the interner holds.
    pub(crate) fn sweep(&mut self) {
        self.strings.retain(|s| Arc::strong_count(&s.0) > 1);
        self.labels.retain(|m| Arc::strong_count(m) > 1);
        self.tolerations.retain(|t| Arc::strong_count(t) > 1);
        self.released = 0;
    }

    /// Number of shared copies.
    pub(crate) fn len(&self) -> usize {
        self.strings.len() + self.labels.len() + self.tolerations.len()
    }
}
