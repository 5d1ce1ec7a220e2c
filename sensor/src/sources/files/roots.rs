//! From configured trees to what each capture rung needs: canonical directories to walk
//! (inotify), an existing "anchor" per tree whose filesystem or mount is marked (fanotify),
//! and the filter patterns (configured text plus canonical forms, since the kernel reports
//! canonical paths: on merged-/usr systems `/bin` is `/usr/bin`).
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::filter::glob_match;

/// One configured tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// As configured.
    pub pattern: String,
    /// Existing matches, canonical (several for a glob, none when missing).
    pub paths: Vec<PathBuf>,
    /// The nearest existing ancestor of the tree (of its literal prefix for a glob),
    /// canonical: its filesystem / mount is what fanotify marks.
    pub anchor: PathBuf,
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub trees: Vec<Tree>,
    pub watch_patterns: Vec<Vec<u8>>,
    pub exclude_patterns: Vec<Vec<u8>>,
    pub ignore_patterns: Vec<Vec<u8>>,
}

impl Plan {
    pub fn new(watch: &[String], exclude: &[String], ignore: &[String]) -> Plan {
        let trees: Vec<Tree> = watch.iter().map(|w| tree(w)).collect();
        let mut watch_patterns = Vec::new();
        for t in &trees {
            push_unique(&mut watch_patterns, t.pattern.as_bytes().to_vec());
            for p in &t.paths {
                push_unique(&mut watch_patterns, p.as_os_str().as_bytes().to_vec());
            }
            // A glob's canonical matches are listed above; a literal tree that does not exist
            // yet is matched by its canonicalized-ancestor form too.
            if t.paths.is_empty() && !has_glob(&t.pattern) {
                push_unique(&mut watch_patterns, canonical_lenient(&t.pattern));
            }
        }
        Plan {
            trees,
            watch_patterns,
            exclude_patterns: with_canonical(exclude),
            ignore_patterns: with_canonical(ignore),
        }
    }

    /// Existing directories and files to walk, deduplicated, none below another.
    pub fn walk_roots(&self) -> Vec<PathBuf> {
        let mut all: Vec<PathBuf> = self
            .trees
            .iter()
            .flat_map(|t| t.paths.iter().cloned())
            .collect();
        all.sort();
        all.dedup();
        let mut out: Vec<PathBuf> = Vec::new();
        for p in all {
            if !out.iter().any(|o| p.starts_with(o)) {
                out.push(p);
            }
        }
        out
    }

    /// Patterns that matched nothing at start.
    pub fn missing(&self) -> Vec<&str> {
        self.trees
            .iter()
            .filter(|t| t.paths.is_empty())
            .map(|t| t.pattern.as_str())
            .collect()
    }
}

fn push_unique(v: &mut Vec<Vec<u8>>, p: Vec<u8>) {
    if !v.contains(&p) {
        v.push(p);
    }
}

fn with_canonical(list: &[String]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for p in list {
        push_unique(&mut out, p.as_bytes().to_vec());
        if !has_glob(p) {
            push_unique(&mut out, canonical_lenient(p));
        }
    }
    out
}

fn has_glob(p: &str) -> bool {
    p.contains(['*', '?'])
}

fn tree(pattern: &str) -> Tree {
    let paths = expand(pattern)
        .into_iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect::<Vec<_>>();
    let literal: PathBuf = Path::new(pattern)
        .components()
        .take_while(|c| !has_glob(&c.as_os_str().to_string_lossy()))
        .collect();
    Tree {
        pattern: pattern.to_string(),
        paths,
        anchor: nearest_existing(&literal),
    }
}

/// The existing paths a pattern names (globs expanded one component at a time).
pub fn expand(pattern: &str) -> Vec<PathBuf> {
    let mut current = vec![PathBuf::from("/")];
    for comp in Path::new(pattern).components() {
        let name = match comp {
            Component::RootDir | Component::CurDir => continue,
            Component::ParentDir => {
                current.iter_mut().for_each(|p| {
                    p.pop();
                });
                continue;
            }
            Component::Normal(n) => n,
            Component::Prefix(_) => continue,
        };
        let bytes = name.as_bytes();
        let mut next = Vec::new();
        if bytes.iter().any(|&b| b == b'*' || b == b'?') {
            for dir in &current {
                let Ok(rd) = std::fs::read_dir(dir) else {
                    continue;
                };
                let mut names: Vec<_> = rd
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name())
                    .filter(|n| glob_match(bytes, n.as_bytes()))
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| dir.join(n)));
            }
        } else {
            next.extend(current.iter().map(|d| d.join(name)));
        }
        current = next;
        if current.is_empty() {
            break;
        }
    }
    current
        .into_iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .collect()
}

/// Canonical form of the nearest existing ancestor (or the path itself).
pub fn nearest_existing(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    loop {
        if let Ok(c) = std::fs::canonicalize(&p) {
            return c;
        }
        if !p.pop() {
            return PathBuf::from("/");
        }
    }
}

/// The canonical form of a path that may not exist: its nearest existing ancestor
/// canonicalized, with the remaining components appended.
pub fn canonical_lenient(path: &str) -> Vec<u8> {
    let p = Path::new(path);
    let mut base = p.to_path_buf();
    let mut rest: Vec<&OsStr> = Vec::new();
    let mut comps: Vec<&OsStr> = p.iter().collect();
    loop {
        if let Ok(c) = std::fs::canonicalize(&base) {
            let mut out = c;
            for r in rest.iter().rev() {
                out.push(r);
            }
            return out.as_os_str().as_bytes().to_vec();
        }
        match comps.pop() {
            Some(last) if base.pop() => rest.push(last),
            _ => return path.as_bytes().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("files-roots-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::canonicalize(d).unwrap()
    }

    #[test]
    fn globs_expand_and_missing_trees_have_anchors() {
        let d = tmp("glob");
        for u in ["alice", "bob", ".hidden"] {
            std::fs::create_dir_all(d.join("home").join(u).join(".ssh")).unwrap();
        }
        std::fs::create_dir_all(d.join("home/carol")).unwrap();
        let pat = format!("{}/home/*/.ssh", d.display());
        let got = expand(&pat);
        assert_eq!(
            got,
            vec![d.join("home/alice/.ssh"), d.join("home/bob/.ssh")],
            "dot names skipped, carol has no .ssh"
        );
        let missing = format!("{}/not/there", d.display());
        let plan = Plan::new(&[pat.clone(), missing.clone()], &[], &[]);
        assert_eq!(plan.trees[0].anchor, d.join("home"));
        assert_eq!(plan.trees[1].anchor, d);
        assert!(plan.trees[1].paths.is_empty());
        assert_eq!(plan.missing(), vec![missing.as_str()]);
        assert!(plan.watch_patterns.contains(&pat.as_bytes().to_vec()));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn symlinked_trees_are_canonicalized_and_nested_roots_collapse() {
        let d = tmp("link");
        std::fs::create_dir_all(d.join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", d.join("bin")).unwrap();
        let bin = format!("{}/bin", d.display());
        let usr = format!("{}/usr", d.display());
        let plan = Plan::new(&[bin.clone(), usr.clone()], std::slice::from_ref(&bin), &[]);
        assert_eq!(plan.trees[0].paths, vec![d.join("usr/bin")]);
        assert_eq!(plan.walk_roots(), vec![d.join("usr")]);
        let canon = d.join("usr/bin").as_os_str().as_bytes().to_vec();
        assert!(plan.watch_patterns.contains(&canon));
        assert!(plan.exclude_patterns.contains(&canon));
        assert_eq!(
            canonical_lenient(&format!("{bin}/new/file")),
            d.join("usr/bin/new/file").as_os_str().as_bytes()
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
