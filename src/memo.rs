//! Answers remembered until the database changes, on a SQLite file.
//!
//! SQLite tells each connection, through `PRAGMA data_version`, whether any
//! other connection has committed since it last asked: a write through the
//! pool, another instance, the CLI or an operator's `sqlite3` all count. Each
//! worker's read connection (`db::Readers`) asks before every answer it
//! takes from here, and an answer is kept with the version it was read at: a
//! remembered answer is exactly what a read would return now, not one commit
//! older. Versions are per connection, so each thread keeps its own answers.
//!
//! What an answer holds that time alone changes (a key whose revocation is
//! scheduled) is for the caller to re-judge on every use.

use std::cell::RefCell;
use std::collections::HashMap;

use thread_local::ThreadLocal;

/// Answers a thread keeps at most; past that it forgets them all and starts over.
pub const CAPACITY: usize = 10_000;

#[derive(Debug)]
pub struct Memo<V: Send> {
    threads: ThreadLocal<RefCell<HashMap<String, (i64, V)>>>,
}

impl<V: Send> Default for Memo<V> {
    fn default() -> Self {
        Self {
            threads: ThreadLocal::new(),
        }
    }
}

impl<V: Send + Clone> Memo<V> {
    /// This thread's answer for `key`, if it was read at `version`.
    pub fn get(&self, key: &str, version: i64) -> Option<V> {
        let entries = self.threads.get()?.borrow();
        match entries.get(key) {
            Some((read_at, value)) if *read_at == version => Some(value.clone()),
            _ => None,
        }
    }

    /// Keeps `value`, read at `version`, for this thread.
    pub fn put(&self, key: String, version: i64, value: V) {
        let mut entries = self.threads.get_or(Default::default).borrow_mut();
        if entries.len() >= CAPACITY && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, (version, value));
    }

    /// How many answers this thread keeps.
    pub fn len(&self) -> usize {
        self.threads
            .get()
            .map_or(0, |entries| entries.borrow().len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_kept_for_its_version_only() {
        let memo = Memo::default();
        memo.put("a".into(), 7, vec![1]);
        assert_eq!(memo.get("a", 7), Some(vec![1]));
        assert_eq!(memo.get("a", 8), None);
        assert_eq!(memo.get("b", 7), None);
        memo.put("a".into(), 8, vec![2]);
        assert_eq!(memo.get("a", 7), None);
        assert_eq!(memo.get("a", 8), Some(vec![2]));
    }

    #[test]
    fn a_thread_keeps_at_most_capacity_answers() {
        let memo = Memo::default();
        for n in 0..CAPACITY * 3 + 5 {
            memo.put(n.to_string(), 1, n);
            assert!(memo.len() <= CAPACITY);
        }
        assert_eq!(
            memo.get(&(CAPACITY * 3 + 4).to_string(), 1),
            Some(CAPACITY * 3 + 4)
        );
        // Each thread has answers of its own.
        std::thread::scope(|s| {
            s.spawn(|| assert!(memo.is_empty()));
        });
    }
}
