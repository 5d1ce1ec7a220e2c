//! String interning for the process cache: one `Arc<str>` per distinct exe, cwd, comm, tty,
//! container id and argv, shared by every entry that has it; pruned on every sweep. The texts
//! come from users (argv, paths): the set's hasher is keyed per process ([`SeededState`]).
use std::collections::HashSet;
use std::sync::Arc;

use crate::hashing::SeededState;

/// argv as one interned string: the arguments joined by NUL (arguments never contain NUL).
#[derive(Debug, Clone)]
pub struct Argv {
    pub(super) joined: Arc<str>,
    argc: u32,
}

impl Argv {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let n = self.argc as usize;
        self.joined.split('\0').take(n)
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_string).collect()
    }

    pub fn len(&self) -> usize {
        self.argc as usize
    }

    pub fn is_empty(&self) -> bool {
        self.argc == 0
    }
}

#[derive(Default)]
pub(super) struct Interner {
    set: HashSet<Arc<str>, SeededState>,
    /// argv being joined (reused: no allocation per exec for the lookup).
    scratch: String,
}

impl Interner {
    pub fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.set.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.set.insert(a.clone());
        a
    }

    pub fn opt(&mut self, s: Option<&str>) -> Option<Arc<str>> {
        s.map(|s| self.get(s))
    }

    /// argv interned as one string, with its truncation flag passed through.
    pub fn argv(&mut self, args: &[String], truncated: bool) -> (Option<Argv>, bool) {
        let mut joined = std::mem::take(&mut self.scratch);
        joined.clear();
        for (i, a) in args.iter().enumerate() {
            if i > 0 {
                joined.push('\0');
            }
            joined.push_str(a);
        }
        let argv = Argv {
            joined: self.get(&joined),
            argc: args.len() as u32,
        };
        self.scratch = joined;
        (Some(argv), truncated)
    }

    /// Strings held (used or not yet pruned).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Drops strings no entry uses any more.
    pub fn prune(&mut self) {
        self.set.retain(|a| Arc::strong_count(a) > 1);
        if self.set.capacity() > 4 * self.set.len().max(256) {
            self.set.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_round_trips_and_prune_drops_unused() {
        let mut s = Interner::default();
        let args = vec!["ls".to_string(), String::new(), "-l".to_string()];
        let (a, truncated) = s.argv(&args, true);
        let a = a.unwrap();
        assert!(truncated);
        assert_eq!(a.to_vec(), args);
        assert_eq!(a.len(), 3);
        let x = s.get("/usr/bin/ls");
        assert!(Arc::ptr_eq(&x, &s.get("/usr/bin/ls")));
        drop(x);
        s.prune();
        assert_eq!(s.len(), 1, "only the argv still in use stays");
    }
}
