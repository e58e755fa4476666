//! [`Invalidator`]: the one way the tree tells the kernel to drop what it
//! caches. Notifications go to a thread of their own (mount.rs): one sent
//! from inside a request could wait on a lock the kernel holds for that
//! request. Until the mount connects it, nothing is sent.

use std::sync::Mutex;
use std::sync::mpsc::Sender;

use crate::fs::types::Invalidation;

#[derive(Default)]
pub struct Invalidator {
    tx: Mutex<Option<Sender<Invalidation>>>,
}

impl Invalidator {
    /// Where the notifications go from now on.
    pub fn connect(&self, tx: Sender<Invalidation>) {
        *self.tx.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    }

    /// Whether anything is listening (the tree asks the kernel to forget
    /// only then, since it counts what it asked for).
    pub fn is_connected(&self) -> bool {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Sends each of `requests`, in order. The lock is held only to copy
    /// the sender (a leaf lock).
    pub fn send(&self, requests: impl IntoIterator<Item = Invalidation>) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(tx) = tx {
            for request in requests {
                // The receiving thread ends only with the mount.
                let _ = tx.send(request);
            }
        }
    }
}
