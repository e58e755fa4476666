//! One interner for the tree's names that get inode numbers of their own
//! (tag directories and links, settings, view directories and nodes):
//! an index is handed out the first time a name is seen and kept for the
//! daemon's life, and both directions are O(1).

use std::collections::HashMap;
use std::hash::Hash;

/// Interned `K`s, each with the value `V` it stands for.
#[derive(Debug)]
pub struct Interner<K, V> {
    values: Vec<V>,
    index: HashMap<K, usize>,
}

impl<K, V> Default for Interner<K, V> {
    fn default() -> Self {
        Interner { values: Vec::new(), index: HashMap::new() }
    }
}

impl<K: Hash + Eq, V> Interner<K, V> {
    /// The index of `key`, made (with `value()`) the first time.
    pub fn intern(&mut self, key: K, value: impl FnOnce() -> V) -> usize {
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        self.values.push(value());
        self.index.insert(key, self.values.len() - 1);
        self.values.len() - 1
    }

    pub fn find(&self, key: &K) -> Option<usize> {
        self.index.get(key).copied()
    }

    pub fn get(&self, index: usize) -> Option<&V> {
        self.values.get(index)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_stable_and_two_way() {
        let mut names: Interner<String, String> = Interner::default();
        let a = names.intern("a".into(), || "A".into());
        let b = names.intern("b".into(), || "B".into());
        assert_eq!(names.intern("a".into(), || unreachable!("made once")), a);
        assert_ne!(a, b);
        assert_eq!(names.get(b).map(String::as_str), Some("B"));
        assert_eq!(names.find(&"b".to_string()), Some(b));
        assert_eq!(names.find(&"c".to_string()), None);
        assert_eq!(names.len(), 2);
    }
}
