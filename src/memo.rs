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
//!
//! An answer can carry its [`Rendered`] forms (the bytes a dialect made of it),
//! so that while it stays current it is shown without being written again.

use std::any::Any;
use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use foldhash::HashMap;

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

/// A value and the renderings made of it, each made once by whoever shows the
/// value (a dialect's JSON, or anything else it prepares from the value) and
/// shared for as long as the value is.
#[derive(Debug)]
pub struct Rendered<T> {
    value: T,
    renderings: Mutex<Vec<(&'static str, Arc<dyn Any + Send + Sync>)>>,
}

impl<T> Rendered<T> {
    pub fn new(value: T) -> Self {
        Self {
            value,
            renderings: Mutex::default(),
        }
    }

    pub fn value(&self) -> &T {
        &self.value
    }

    /// The rendering named `name`, made by `render` the first time it is asked for.
    pub fn rendering<E>(
        &self,
        name: &'static str,
        render: impl FnOnce(&T) -> Result<Bytes, E>,
    ) -> Result<Bytes, E> {
        self.prepared(name, render)
            .map(|bytes| Bytes::clone(&bytes))
    }

    /// What is prepared under `name` (of any type), made by `prepare` the
    /// first time it is asked for.
    pub fn prepared<R: Any + Send + Sync, E>(
        &self,
        name: &'static str,
        prepare: impl FnOnce(&T) -> Result<R, E>,
    ) -> Result<Arc<R>, E> {
        let mut renderings = self.renderings.lock().unwrap_or_else(|e| e.into_inner());
        let at = renderings.iter().position(|(made, _)| *made == name);
        if let Some(made) = at.and_then(|i| Arc::clone(&renderings[i].1).downcast::<R>().ok()) {
            return Ok(made);
        }
        let made = Arc::new(prepare(&self.value)?);
        // One per name: a name asked for as another type replaces it.
        match at {
            Some(i) => renderings[i].1 = made.clone(),
            None => renderings.push((name, made.clone())),
        }
        Ok(made)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preparation_is_made_once_per_name() {
        let rendered = Rendered::new(2);
        let made = |n: i32| rendered.prepared("x", |v| Ok::<_, ()>(v * n)).unwrap();
        assert_eq!(*made(3), 6);
        assert_eq!(*made(5), 6, "kept, not made again");
        let text = rendered
            .prepared("x", |v| Ok::<_, ()>(v.to_string()))
            .unwrap();
        assert_eq!(*text, "2");
        assert_eq!(rendered.renderings.lock().unwrap().len(), 1);
    }

    #[test]
    fn each_rendering_is_made_once_and_a_failed_one_is_not_kept() {
        let rendered = Rendered::new(vec![1, 2]);
        let made = std::cell::Cell::new(0);
        let render = |tag: &str, v: &Vec<i32>| -> Result<Bytes, ()> {
            made.set(made.get() + 1);
            Ok(Bytes::from(format!("{tag}{v:?}")))
        };
        for _ in 0..3 {
            assert_eq!(
                rendered.rendering("a", |v| render("a", v)).unwrap(),
                "a[1, 2]"
            );
            assert_eq!(
                rendered.rendering("b", |v| render("b", v)).unwrap(),
                "b[1, 2]"
            );
        }
        assert_eq!(made.get(), 2);
        assert!(rendered.rendering("c", |_| Err::<Bytes, _>(())).is_err());
        assert_eq!(
            rendered.rendering("c", |v| render("c", v)).unwrap(),
            "c[1, 2]"
        );
        assert_eq!(rendered.value(), &vec![1, 2]);
    }

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
