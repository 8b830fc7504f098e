//! `RecentLog`: an append-only log that keeps only its newest entries but counts every one — the
//! local stack's outbox and send ledger, bounded under sustained load.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

pub struct RecentLog<T> {
    inner: Mutex<Kept<T>>,
    /// The most entries kept (the newest); 0: every one.
    keep: usize,
}

struct Kept<T> {
    entries: VecDeque<T>,
    /// Every entry recorded, including those no longer kept.
    recorded: usize,
}

impl<T: Clone> Default for RecentLog<T> {
    fn default() -> Self {
        Self::keeping(0)
    }
}

impl<T: Clone> RecentLog<T> {
    /// Keeps the newest `keep` entries (0: all of them).
    pub fn keeping(keep: usize) -> Self {
        Self { inner: Mutex::new(Kept { entries: VecDeque::new(), recorded: 0 }), keep }
    }

    fn lock(&self) -> MutexGuard<'_, Kept<T>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `entry`, forgetting the oldest beyond the bound.
    pub fn push(&self, entry: T) {
        let mut kept = self.lock();
        kept.recorded += 1;
        kept.entries.push_back(entry);
        if self.keep > 0 && kept.entries.len() > self.keep {
            kept.entries.pop_front();
        }
    }

    /// The entries kept that `wanted` accepts, oldest first.
    pub fn kept(&self, wanted: impl Fn(&T) -> bool) -> Vec<T> {
        self.lock().entries.iter().filter(|e| wanted(e)).cloned().collect()
    }

    /// How many entries were recorded, kept or not.
    pub fn recorded(&self) -> usize {
        self.lock().recorded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_and_counts_all() {
        let log = RecentLog::keeping(2);
        for n in 0..5 {
            log.push(n);
        }
        assert_eq!(log.recorded(), 5, "every entry counted");
        assert_eq!(log.kept(|_| true), [3, 4], "the newest two kept");
        assert_eq!(log.kept(|n| n % 2 == 0), [4]);
        let all = RecentLog::default();
        for n in 0..5 {
            all.push(n);
        }
        assert_eq!(all.kept(|_| true), [0, 1, 2, 3, 4]);
    }
}
