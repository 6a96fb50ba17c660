//! [`Slim`]: a vector that owns exactly its elements, for per-pod state that rarely grows.

use std::ops::{Deref, DerefMut};

/// A boxed slice that can grow and shrink like a `Vec`: 16 bytes inline, no spare capacity
/// and no inline storage (a `SmallVec` reserves its inline capacity in every pod's state,
/// used or not). Growing reallocates, so it suits lists that change when a pod's roles
/// change or a metric is first seen, not per sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Slim<T>(Box<[T]>);

impl<T> Default for Slim<T> {
    fn default() -> Self {
        Self(Box::default())
    }
}

impl<T> Slim<T> {
    /// An empty list (no allocation).
    pub fn new() -> Self {
        Self::default()
    }

    fn edit(&mut self, f: impl FnOnce(&mut Vec<T>)) {
        let mut v = std::mem::take(&mut self.0).into_vec();
        f(&mut v);
        self.0 = v.into_boxed_slice();
    }

    /// Appends `item`.
    pub fn push(&mut self, item: T) {
        self.edit(|v| {
            v.reserve_exact(1);
            v.push(item);
        });
    }

    /// Removes every element.
    pub fn clear(&mut self) {
        self.0 = Box::default();
    }

    /// Keeps the elements for which `keep` is true.
    pub fn retain(&mut self, keep: impl FnMut(&T) -> bool) {
        if !self.0.is_empty() {
            self.edit(|v| v.retain(keep));
        }
    }

    /// Removes and returns element `i`, replacing it with the last one.
    pub fn swap_remove(&mut self, i: usize) -> T {
        let mut out = None;
        self.edit(|v| out = Some(v.swap_remove(i)));
        out.unwrap_or_else(|| unreachable!("swap_remove returns or panics"))
    }
}

impl<T> Deref for Slim<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T> DerefMut for Slim<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

impl<T> FromIterator<T> for Slim<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl<'a, T> IntoIterator for &'a Slim<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<'a, T> IntoIterator for &'a mut Slim<T> {
    type Item = &'a mut T;
    type IntoIter = std::slice::IterMut<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slim_list_grows_and_shrinks_without_spare_capacity() {
        let mut s: Slim<u32> = Slim::new();
        assert_eq!(std::mem::size_of_val(&s), 16);
        for i in 0..5 {
            s.push(i);
        }
        assert_eq!(&s[..], &[0, 1, 2, 3, 4]);
        s.retain(|x| x % 2 == 0);
        assert_eq!(&s[..], &[0, 2, 4]);
        assert_eq!(s.swap_remove(0), 0);
        assert_eq!(&s[..], &[4, 2]);
        s.clear();
        assert!(s.is_empty());
        let collected: Slim<u32> = (1..=3).collect();
        assert_eq!(collected.iter().sum::<u32>(), 6);
    }
}
