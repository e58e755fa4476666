//! One interner for the tree's names that get inode numbers of their own
//! (tag directories and links, settings, view directories and nodes,
//! flyte2 files): an index is handed out the first time a name is seen,
//! and both directions are O(1).
//!
//! An index lives while the kernel holds its inode: each entry counts the
//! lookups the kernel was given (a LOOKUP, a READDIRPLUS entry, a create).
//! Entries the kernel does not hold (forgotten by FORGET, or never looked
//! up: shown by a plain READDIR, resolved for a request) are kept until
//! more than [`Interner::trim`]'s bound of them gather, then dropped
//! together, so a table is bounded by what the kernel holds plus that
//! bound, however the names churn. A freed index is reused: the kernel has
//! forgotten the inode number by then.
//!
//! Nothing is dropped the moment its count reaches zero, and a trim drops
//! only entries unheld since before the trim before it: a request interns
//! a name and counts the lookup it answers a moment later, under a second
//! take of the lock, and a FORGET of the inode's previous life (the kernel
//! dropping its name, say after a change made every name stale) can land
//! in between. Dropped there, the lookup counted nothing and the kernel
//! held an inode number the daemon had freed: the next request on it found
//! no directory (ENOTDIR), or another name's (seen with rsync into
//! `tags/` while the kernel's names were being made stale).

use std::collections::HashMap;
use std::hash::Hash;

#[derive(Debug)]
struct Slot<K, V> {
    key: K,
    value: V,
    /// Lookups the kernel holds.
    lookups: u64,
    /// When the kernel was last given it (the interner's own clock).
    given_at: u64,
    /// The kernel was asked to forget it ([`Interner::oldest_held`]).
    asked: bool,
}

/// Interned `K`s, each with the value `V` it stands for.
#[derive(Debug)]
pub struct Interner<K, V> {
    slots: Vec<Option<Slot<K, V>>>,
    index: HashMap<K, usize>,
    free: Vec<usize>,
    /// Slots with a lookup count above zero.
    held: usize,
    /// Counts the names interned and lookups given, for `given_at`.
    clock: u64,
    /// The clock at the last call of [`Interner::trim`].
    trim_mark: u64,
}

impl<K, V> Default for Interner<K, V> {
    fn default() -> Self {
        Interner { slots: Vec::new(), index: HashMap::new(), free: Vec::new(), held: 0, clock: 0, trim_mark: 0 }
    }
}

impl<K: Hash + Eq + Clone, V> Interner<K, V> {
    /// The index of `key`, made (with `value()`) the first time.
    pub fn intern(&mut self, key: K, value: impl FnOnce() -> V) -> usize {
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        self.clock += 1;
        let slot = Some(Slot { key: key.clone(), value: value(), lookups: 0, given_at: self.clock, asked: false });
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        };
        self.index.insert(key, i);
        i
    }

    pub fn find(&self, key: &K) -> Option<usize> {
        self.index.get(key).copied()
    }

    pub fn get(&self, index: usize) -> Option<&V> {
        Some(&self.slots.get(index)?.as_ref()?.value)
    }

    /// Entries now.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The indexes in use.
    pub fn indexes(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| s.as_ref().map(|_| i))
    }

    /// The kernel was given `index`'s inode once more.
    pub fn looked_up(&mut self, index: usize) {
        if let Some(Some(slot)) = self.slots.get_mut(index) {
            if slot.lookups == 0 {
                self.held += 1;
            }
            slot.lookups += 1;
            self.clock += 1;
            slot.given_at = self.clock;
            slot.asked = false;
        }
    }

    /// Entries the kernel holds.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Up to `n` of the entries the kernel holds that it was given
    /// longest ago, for asking it to forget them (each is named once until
    /// it is given again); the ones already asked for count against `n`.
    pub fn oldest_held(&mut self, n: usize) -> Vec<&V> {
        let asked = self.slots.iter().flatten().filter(|s| s.lookups > 0 && s.asked).count();
        let n = n.saturating_sub(asked);
        if n == 0 {
            return Vec::new();
        }
        let mut held: Vec<(u64, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().filter(|s| s.lookups > 0 && !s.asked).map(|s| (s.given_at, i)))
            .collect();
        held.sort_unstable();
        held.truncate(n);
        for &(_, i) in &held {
            if let Some(slot) = self.slots[i].as_mut() {
                slot.asked = true;
            }
        }
        held.into_iter().filter_map(|(_, i)| self.slots[i].as_ref().map(|s| &s.value)).collect()
    }

    /// The kernel forgot `n` lookups of `index`'s inode; with none left the
    /// entry is unheld, for a later trim to drop.
    pub fn forget(&mut self, index: usize, n: u64) {
        let Some(Some(slot)) = self.slots.get_mut(index) else { return };
        if slot.lookups == 0 {
            return;
        }
        slot.lookups = slot.lookups.saturating_sub(n);
        if slot.lookups == 0 {
            // Left for a trim (see the module doc).
            self.held -= 1;
        }
    }

    fn remove(&mut self, index: usize) {
        if let Some(slot) = self.slots[index].take() {
            self.index.remove(&slot.key);
            self.free.push(index);
        }
    }

    /// Drops every entry the kernel does not hold once more than `unheld`
    /// of them gathered. Returns whether it dropped any (indexes may have
    /// been reused since for other names).
    pub fn trim(&mut self, unheld: usize) -> bool {
        // Only entries unheld since before the last call go (module doc).
        let mark = std::mem::replace(&mut self.trim_mark, self.clock);
        if self.index.len() - self.held <= unheld {
            return false;
        }
        for i in 0..self.slots.len() {
            if self.slots[i].as_ref().is_some_and(|s| s.lookups == 0 && s.given_at <= mark) {
                self.remove(i);
            }
        }
        true
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

    #[test]
    fn an_entry_lives_while_the_kernel_holds_it() {
        let mut names: Interner<String, String> = Interner::default();
        let a = names.intern("a".into(), || "A".into());
        names.looked_up(a);
        names.looked_up(a);
        names.forget(a, 1);
        assert_eq!(names.get(a).map(String::as_str), Some("A"));
        names.forget(a, 1);
        assert_eq!(names.held(), 0);
        // A lookup answered after the FORGET was read still counts: the
        // entry waits for a trim, not gone at zero.
        names.looked_up(a);
        assert_eq!(names.held(), 1);
        names.forget(a, 1);
        // Two trims past the bound drop it (the first only marks).
        names.trim(0);
        assert_eq!(names.get(a).map(String::as_str), Some("A"), "unheld only since the last trim: kept");
        names.trim(0);
        assert_eq!(names.get(a), None);
        assert_eq!(names.find(&"a".to_string()), None);
        // The index is reused for the next name.
        assert_eq!(names.intern("b".into(), || "B".into()), a);
    }

    #[test]
    fn churning_names_stay_bounded() {
        let mut names: Interner<u64, u64> = Interner::default();
        let held = names.intern(u64::MAX, || 0);
        names.looked_up(held);
        for n in 0..100_000u64 {
            names.intern(n, || n);
            names.trim(64);
            assert!(names.len() <= 66, "{} entries after {n}", names.len());
        }
        assert_eq!(names.get(held), Some(&0), "a held entry is never trimmed");
    }
}
