//! Rules compiled from the configuration, and whether an event matches one.
use regex::RegexSet;

use super::glob::Glob;
use super::{FilterError, NoiseRule, COMM_MAX};
use crate::event::{Event, Kind};

fn kind_bit(k: Kind) -> u32 {
    1 << k.index()
}

pub fn parse_kind(s: &str) -> Option<Kind> {
    Kind::ALL.iter().copied().find(|k| k.as_str() == s)
}

/// Kinds a rule may apply to.
const RULE_KINDS_DEFAULT: u32 = !0;

fn never_droppable(k: Kind) -> bool {
    matches!(k, Kind::ProcessExit | Kind::SensorHealth)
}

#[derive(Debug)]
pub(super) struct Compiled {
    pub(super) name: String,
    kinds: u32,
    comm: Vec<Glob>,
    exe: Vec<Glob>,
    argv: Option<RegexSet>,
    argv_glob: Vec<Glob>,
    parent_exe: Vec<Glob>,
    uids: Vec<u32>,
    user_names: Vec<String>,
    path_prefix: Vec<String>,
    pub(super) needs_argv: bool,
}

fn any_glob(gs: &[Glob], s: Option<&str>) -> bool {
    s.is_some_and(|s| gs.iter().any(|g| g.is_match(s)))
}

fn under(path: &str, prefix: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    if p.is_empty() {
        return path.starts_with('/');
    }
    path.strip_prefix(p)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

impl Compiled {
    pub(super) fn matches(&self, ev: &Event, joined_argv: Option<&str>) -> bool {
        if self.kinds & kind_bit(ev.kind()) == 0 {
            return false;
        }
        let p = ev.process.as_ref();
        if !self.comm.is_empty() && !any_glob(&self.comm, p.map(|p| p.comm.as_str())) {
            return false;
        }
        if !self.exe.is_empty() && !any_glob(&self.exe, p.and_then(|p| p.exe.as_deref())) {
            return false;
        }
        if self.needs_argv {
            let Some(a) = joined_argv else {
                return false;
            };
            let re = self.argv.as_ref().is_none_or(|set| set.is_match(a));
            let gl = self.argv_glob.is_empty() || self.argv_glob.iter().any(|g| g.is_match(a));
            if !(re && gl) {
                return false;
            }
        }
        if !self.parent_exe.is_empty()
            && !any_glob(
                &self.parent_exe,
                p.and_then(|p| p.ancestors.first()).map(|a| a.exe.as_str()),
            )
        {
            return false;
        }
        if !(self.uids.is_empty() && self.user_names.is_empty()) {
            let by_uid = p.is_some_and(|p| self.uids.contains(&p.uid));
            let by_name = ev
                .login
                .as_ref()
                .is_some_and(|l| self.user_names.contains(&l.user));
            if !(by_uid || by_name) {
                return false;
            }
        }
        if !self.path_prefix.is_empty() {
            let Some(f) = ev.file.as_ref() else {
                return false;
            };
            let hit = |path: &str| self.path_prefix.iter().any(|pre| under(path, pre));
            if !(hit(&f.path) || f.new_path.as_deref().is_some_and(hit)) {
                return false;
            }
        }
        true
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn resolve_user(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: passwd is plain old data filled by getpwnam_r.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; buf outlives it.
    let rc = unsafe {
        libc::getpwnam_r(
            c.as_ptr(),
            &mut pw,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut out,
        )
    };
    (rc == 0 && !out.is_null()).then_some(pw.pw_uid)
}

pub(super) fn compile(index: usize, r: &NoiseRule) -> Result<Compiled, FilterError> {
    if !valid_name(&r.name) {
        return Err(FilterError::Rule {
            index,
            msg: format!("name {:?} must be 1-64 of [a-z0-9_]", r.name),
        });
    }
    let err = |msg: String| FilterError::Named {
        name: r.name.clone(),
        msg,
    };
    let mut kinds = 0u32;
    for k in &r.kinds {
        let kind = parse_kind(k).ok_or_else(|| err(format!("unknown kind {k:?}")))?;
        if never_droppable(kind) {
            return Err(err(format!(
                "kind {k:?} cannot be filtered (exits follow their exec; health is never dropped)"
            )));
        }
        kinds |= kind_bit(kind);
    }
    if kinds == 0 {
        kinds = RULE_KINDS_DEFAULT & !kind_bit(Kind::ProcessExit) & !kind_bit(Kind::SensorHealth);
    }
    let has_condition = !(r.comm.is_empty()
        && r.exe.is_empty()
        && r.argv.is_empty()
        && r.argv_glob.is_empty()
        && r.parent_exe.is_empty()
        && r.users.is_empty()
        && r.path_prefix.is_empty());
    if !has_condition && r.kinds.is_empty() {
        return Err(err(
            "has no condition and no kinds: it would drop everything".into(),
        ));
    }
    for c in &r.comm {
        if c.len() > COMM_MAX
            && Glob::new(c)
                .ok()
                .and_then(|g| g.literal().map(str::len))
                .is_some()
        {
            return Err(err(format!(
                "comm {c:?} is longer than {COMM_MAX} bytes, which the kernel never reports (match the exe instead)"
            )));
        }
    }
    let argv = if r.argv.is_empty() {
        None
    } else {
        Some(RegexSet::new(&r.argv).map_err(|e| err(format!("argv: {e}")))?)
    };
    let mut uids = Vec::new();
    let mut user_names = Vec::new();
    for u in &r.users {
        if let Ok(uid) = u.parse::<u32>() {
            uids.push(uid);
        } else {
            user_names.push(u.clone());
            match resolve_user(u) {
                Some(uid) => uids.push(uid),
                None => {
                    tracing::warn!(rule = %r.name, user = %u, "unknown user: matches login events by name only")
                }
            }
        }
    }
    for p in &r.path_prefix {
        if !p.starts_with('/') {
            return Err(err(format!("path_prefix {p:?} must be absolute")));
        }
    }
    Ok(Compiled {
        name: r.name.clone(),
        kinds,
        comm: globs(&r.name, "comm", &r.comm)?,
        exe: globs(&r.name, "exe", &r.exe)?,
        needs_argv: argv.is_some() || !r.argv_glob.is_empty(),
        argv,
        argv_glob: globs(&r.name, "argv_glob", &r.argv_glob)?,
        parent_exe: globs(&r.name, "parent_exe", &r.parent_exe)?,
        uids,
        user_names,
        path_prefix: r.path_prefix.clone(),
    })
}

fn globs(rule: &str, field: &str, pats: &[String]) -> Result<Vec<Glob>, FilterError> {
    pats.iter()
        .map(|p| {
            Glob::new(p).map_err(|msg| FilterError::Named {
                name: rule.to_string(),
                msg: format!("{field}: {msg}"),
            })
        })
        .collect()
}
