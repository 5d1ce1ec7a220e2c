//! Path decisions, made as early as possible (a fanotify filesystem mark sees the whole disk).
//!
//! Patterns are absolute paths matched component-wise as prefixes: `/etc` matches `/etc` and
//! `/etc/passwd` but not `/etcetera`. A component may hold `*` (any run of bytes) and `?` (one
//! byte); neither crosses `/`, and as in a shell neither matches a leading `.` (so
//! `/home/*/.ssh` does not walk into `/home/.cache`). `/` matches everything.
//!
//! Precedence: `ignore` (the sensor's own files) beats `exclude`, which beats `watch`.

/// What to do with an event on a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Report,
    /// Not under any watched tree.
    Outside,
    /// Under a watched tree and an exclude.
    Excluded,
    /// One of the sensor's own paths.
    Ignored,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Comp {
    Lit(Vec<u8>),
    Glob(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Pattern {
    /// The whole pattern when it has no glob: `/etc` (empty for `/`).
    literal: Option<Vec<u8>>,
    comps: Vec<Comp>,
}

impl Pattern {
    fn new(text: &[u8]) -> Pattern {
        let comps: Vec<Comp> = components(text)
            .map(|c| {
                if c.iter().any(|&b| b == b'*' || b == b'?') {
                    Comp::Glob(c.to_vec())
                } else {
                    Comp::Lit(c.to_vec())
                }
            })
            .collect();
        let literal = comps.iter().all(|c| matches!(c, Comp::Lit(_))).then(|| {
            let mut s = Vec::new();
            for c in &comps {
                if let Comp::Lit(l) = c {
                    s.push(b'/');
                    s.extend_from_slice(l);
                }
            }
            s
        });
        Pattern { literal, comps }
    }

    /// Is `path` equal to or below this pattern?
    fn covers(&self, path: &[u8]) -> bool {
        if let Some(lit) = &self.literal {
            return path.starts_with(lit)
                && (path.len() == lit.len() || path[lit.len()] == b'/' || lit.is_empty());
        }
        let mut it = components(path);
        for c in &self.comps {
            let Some(pc) = it.next() else { return false };
            let ok = match c {
                Comp::Lit(l) => l == pc,
                Comp::Glob(g) => glob_match(g, pc),
            };
            if !ok {
                return false;
            }
        }
        true
    }

    /// Is `dir` a strict ancestor of something this pattern could cover?
    fn below(&self, dir: &[u8]) -> bool {
        let mut pat = self.comps.iter();
        for dc in components(dir) {
            let ok = match pat.next() {
                None => return false,
                Some(Comp::Lit(l)) => l == dc,
                Some(Comp::Glob(g)) => glob_match(g, dc),
            };
            if !ok {
                return false;
            }
        }
        pat.next().is_some()
    }
}

/// Non-empty components of an absolute path, `.` skipped.
fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

/// Shell-style match of one component: `*` any run, `?` one byte, neither matching a leading
/// `.` unless the pattern starts with one.
pub fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    if name.first() == Some(&b'.') && pattern.first() != Some(&b'.') {
        return false;
    }
    // Iterative matcher with single-star backtracking: linear in practice, no recursion.
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&b| b == b'*')
}

/// The include / exclude / ignore decision for a path.
#[derive(Debug, Clone)]
pub struct PathFilter {
    watch: Vec<Pattern>,
    exclude: Vec<Pattern>,
    ignore: Vec<Pattern>,
}

impl PathFilter {
    pub fn new<W, E, I>(watch: &[W], exclude: &[E], ignore: &[I]) -> PathFilter
    where
        W: AsRef<[u8]>,
        E: AsRef<[u8]>,
        I: AsRef<[u8]>,
    {
        PathFilter {
            watch: watch.iter().map(|p| Pattern::new(p.as_ref())).collect(),
            exclude: exclude.iter().map(|p| Pattern::new(p.as_ref())).collect(),
            ignore: ignore.iter().map(|p| Pattern::new(p.as_ref())).collect(),
        }
    }

    pub fn decide(&self, path: &[u8]) -> Decision {
        if self.ignore.iter().any(|p| p.covers(path)) {
            Decision::Ignored
        } else if self.exclude.iter().any(|p| p.covers(path)) {
            Decision::Excluded
        } else if self.watch.iter().any(|p| p.covers(path)) {
            Decision::Report
        } else {
            Decision::Outside
        }
    }

    /// A rename is reported when either side would be: a file moved out of `/etc` matters as
    /// much as one moved in.
    pub fn decide_rename(&self, old: &[u8], new: &[u8]) -> Decision {
        let d = self.decide(old);
        if d == Decision::Report {
            return d;
        }
        match self.decide(new) {
            Decision::Report => Decision::Report,
            _ => d,
        }
    }

    pub fn wants(&self, path: &[u8]) -> bool {
        self.decide(path) == Decision::Report
    }

    /// Should a recursive walk enter `dir`: it is inside a watched tree (or on the way to one)
    /// and not excluded or ignored.
    pub fn descend(&self, dir: &[u8]) -> bool {
        if self.ignore.iter().any(|p| p.covers(dir)) || self.exclude.iter().any(|p| p.covers(dir)) {
            return false;
        }
        self.watch.iter().any(|p| p.covers(dir) || p.below(dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(watch: &[&str], exclude: &[&str], ignore: &[&str]) -> PathFilter {
        PathFilter::new(watch, exclude, ignore)
    }

    #[test]
    fn prefix_is_component_wise() {
        let pf = f(&["/etc", "/usr/local/bin/"], &[], &[]);
        assert_eq!(pf.decide(b"/etc"), Decision::Report);
        assert_eq!(pf.decide(b"/etc/shadow"), Decision::Report);
        assert_eq!(pf.decide(b"/etc/ssh/sshd_config"), Decision::Report);
        assert_eq!(pf.decide(b"/etcetera/x"), Decision::Outside);
        assert_eq!(pf.decide(b"/et"), Decision::Outside);
        assert_eq!(pf.decide(b"/usr/local/bin/evil"), Decision::Report);
        assert_eq!(pf.decide(b"/usr/local/binx"), Decision::Outside);
        assert_eq!(pf.decide(b"/usr/local"), Decision::Outside);
        assert_eq!(pf.decide(b""), Decision::Outside);
    }

    #[test]
    fn root_watches_everything() {
        let pf = f(&["/"], &["/proc"], &[]);
        assert_eq!(pf.decide(b"/anything/at/all"), Decision::Report);
        assert_eq!(pf.decide(b"/"), Decision::Report);
        assert_eq!(pf.decide(b"/proc/1/stat"), Decision::Excluded);
    }

    #[test]
    fn precedence_ignore_exclude_watch() {
        let pf = f(
            &["/var"],
            &["/var/cache"],
            &["/var/cache/sensor", "/var/log/sensor.log"],
        );
        assert_eq!(pf.decide(b"/var/lib/x"), Decision::Report);
        assert_eq!(pf.decide(b"/var/cache/apt/x"), Decision::Excluded);
        assert_eq!(pf.decide(b"/var/cache/sensor/spool/1"), Decision::Ignored);
        assert_eq!(pf.decide(b"/var/log/sensor.log"), Decision::Ignored);
        assert_eq!(pf.decide(b"/var/log/sensor.log.1"), Decision::Report);
    }

    #[test]
    fn globs_in_components() {
        let pf = f(&["/home/*/.ssh", "/root/.ssh"], &[], &[]);
        assert!(pf.wants(b"/home/alice/.ssh/authorized_keys"));
        assert!(pf.wants(b"/home/bob/.ssh"));
        assert!(!pf.wants(b"/home/alice/.sshx/y"));
        assert!(!pf.wants(b"/home/alice/notes"));
        assert!(!pf.wants(b"/home/.hidden/.ssh/k"), "* skips dot names");
        assert!(!pf.wants(b"/home/alice/sub/.ssh/k"), "* does not cross /");
        assert!(pf.wants(b"/root/.ssh/authorized_keys"));
    }

    #[test]
    fn glob_matcher() {
        assert!(glob_match(b"*", b"abc"));
        assert!(glob_match(b"a*c", b"abbbc"));
        assert!(glob_match(b"a*c", b"ac"));
        assert!(!glob_match(b"a*c", b"acb"));
        assert!(glob_match(b"?b?", b"abc"));
        assert!(!glob_match(b"?", b""));
        assert!(glob_match(b"*.conf", b"x.conf"));
        assert!(!glob_match(b"*.conf", b".conf"));
        assert!(glob_match(b".*", b".bashrc"));
        assert!(glob_match(b"**a*", b"bba"));
        assert!(glob_match(b"", b""));
        assert!(!glob_match(b"", b"x"));
    }

    #[test]
    fn renames_report_either_side() {
        let pf = f(&["/etc"], &[], &["/var/spool/sensor"]);
        assert_eq!(pf.decide_rename(b"/tmp/x", b"/etc/x"), Decision::Report);
        assert_eq!(pf.decide_rename(b"/etc/x", b"/tmp/x"), Decision::Report);
        assert_eq!(
            pf.decide_rename(b"/etc/shadow", b"/var/spool/sensor/x"),
            Decision::Report
        );
        assert_eq!(pf.decide_rename(b"/tmp/a", b"/tmp/b"), Decision::Outside);
    }

    #[test]
    fn descend_for_walks() {
        let pf = f(&["/home/*/.ssh", "/etc"], &["/etc/ssl"], &[]);
        assert!(pf.descend(b"/"));
        assert!(pf.descend(b"/home"));
        assert!(pf.descend(b"/home/alice"));
        assert!(pf.descend(b"/home/alice/.ssh"));
        assert!(pf.descend(b"/home/alice/.ssh/sub"));
        assert!(!pf.descend(b"/home/alice/docs"));
        assert!(pf.descend(b"/etc/ssh"));
        assert!(!pf.descend(b"/etc/ssl/certs"));
        assert!(!pf.descend(b"/usr"));
    }

    #[test]
    fn non_utf8_paths() {
        let pf = f(&["/etc"], &[], &[]);
        assert!(pf.wants(b"/etc/bad\xff\xfe"));
        let pf = PathFilter::new(&[b"/srv/\xffdir".to_vec()], &[] as &[&str], &[] as &[&str]);
        assert!(pf.wants(b"/srv/\xffdir/x"));
        assert!(!pf.wants(b"/srv/dir/x"));
    }
}
