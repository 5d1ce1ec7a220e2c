//! Noise rules: drop routine events by kind, comm / exe (glob), argv (regex or glob), parent
//! exe, user and path prefix. A rule drops an event when *every* condition it has matches
//! (conditions with a list match when *any* entry matches). Rules are tried in order; the
//! first match names the counter (`filtered_<rule>`).
//!
//! Exit consistency ("exit events of processes whose exec was shipped are never dropped"):
//! - a rule never drops a `process_exit` (nor `sensor_health`): rules cannot name those kinds;
//! - the filter remembers, per live pid, whether its exec(s) were shipped or dropped
//!   ([`ExitTracker`], bounded, keyed by pid and checked against `start_boottime_ns`). An exit
//!   is dropped only if every exec seen for that process was dropped ("sticky shipped": a
//!   process whose earlier exec was shipped and which then exec's `date` in place keeps its
//!   exit). Such exits are counted as `filter_exits_dropped`;
//! - audit mode can deliver a process's exit *before* its exec (proc connector vs audit
//!   records). An exit with no tracked exec whose comm is dropped by a comm-only exec rule (the
//!   same rules the kernel filter may apply) is dropped and remembered, and the exec that
//!   follows is expected to be dropped too; if it is shipped instead, that is counted as
//!   `filter_exit_inconsistencies`;
//! - when the tracker is full, the oldest entry is evicted (`filter_exit_tracking_evictions`);
//!   an evicted process's exit is shipped (an orphan exit is harmless, a lost one is not).
//!
//! Caveat of comm-based rules: comm is chosen by whoever runs the binary (copy a tool to
//! `./date` and its execs are dropped). The default list is therefore short, and omits the
//! usual first commands of an intruder (`id`, `whoami`, `uname`, `w`). Add `exe` to a rule to
//! pin the binary (such a rule is evaluated in userspace only).
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use regex::RegexSet;
use serde::{Deserialize, Serialize};

use crate::event::{Event, Kind};

/// `TASK_COMM_LEN - 1`: the kernel keeps at most 15 bytes of a command name.
pub const COMM_MAX: usize = 15;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("noise rule #{index}: {msg}")]
    Rule { index: usize, msg: String },
    #[error("noise rule {name:?}: {msg}")]
    Named { name: String, msg: String },
    #[error("redaction: {0}")]
    Redaction(String),
}

/// `[filter.noise]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NoiseConfig {
    /// Apply the rules at all.
    pub enabled: bool,
    /// Live processes whose exec decision is remembered for exit consistency.
    pub exit_tracking_capacity: usize,
    /// The rule list; defaults to [`default_rules`]. Setting it replaces the defaults.
    pub rules: Vec<NoiseRule>,
    /// Rules appended after `rules` (to add to the defaults without repeating them).
    pub extra_rules: Vec<NoiseRule>,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            exit_tracking_capacity: 65_536,
            rules: default_rules(),
            extra_rules: Vec::new(),
        }
    }
}

impl NoiseConfig {
    /// `rules` then `extra_rules`, in evaluation order (the order of rule indexes).
    pub fn all_rules(&self) -> impl Iterator<Item = &NoiseRule> {
        self.rules.iter().chain(self.extra_rules.iter())
    }
}

/// One rule. Globs: `*` (any run, `/` included), `?`, `[abc]`, `[a-z]`, `[!x]`, `\` escapes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NoiseRule {
    /// `[a-z0-9_]+`, unique; the health counter is `filtered_<name>`.
    pub name: String,
    /// Event kinds the rule applies to (`process_exec`, `net_connect`, `file`, `login`, ...).
    /// Empty: every kind except `process_exit` and `sensor_health`, which no rule can drop.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// Command name (at most 15 bytes, as the kernel keeps it), globs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub comm: Vec<String>,
    /// Executable path, globs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exe: Vec<String>,
    /// Regexes searched in the arguments joined by single spaces (argv[0] included).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    /// Globs matched against the whole joined argument string.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub argv_glob: Vec<String>,
    /// The parent's executable (first ancestor), globs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parent_exe: Vec<String>,
    /// Users: a number is a uid, anything else a name (resolved to a uid at start; login
    /// events match the name).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Absolute path prefixes, by whole components, matched against `file.path` /
    /// `file.new_path` (so only `file` events can match).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub path_prefix: Vec<String>,
}

fn comm_rule(name: &str, comms: &[&str]) -> NoiseRule {
    NoiseRule {
        name: name.into(),
        kinds: vec!["process_exec".into()],
        comm: comms.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// The default list: execs of commands that shells, prompts and monitoring run all the time
/// and that say nothing about intent. Both rules are comm-only exec rules, so the kernel
/// filter can drop them before they cross the ring buffer (see [`kernel_comm_filter`]).
/// Deliberately absent: `id`, `whoami`, `uname`, `w`, `hostnamectl` (reconnaissance).
pub fn default_rules() -> Vec<NoiseRule> {
    vec![
        comm_rule("routine_info", &["date", "who", "uptime", "hostname"]),
        comm_rule(
            "shell_prompt",
            &["tput", "dircolors", "lesspipe", "basename", "dirname"],
        ),
    ]
}

/// FNV-1a: a fast hasher for the small keys of the filter's maps (pids, comms, tool names);
/// the keys come from the kernel, not from a network peer.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        self.0 = h;
    }
}

pub type FnvBuild = BuildHasherDefault<Fnv>;

// ---------------------------------------------------------------------------------------
// Globs
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    Any,
    Star,
    Class {
        neg: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A compiled glob. Patterns without metacharacters compare as plain strings.
#[derive(Debug, Clone)]
pub struct Glob {
    literal: Option<String>,
    toks: Vec<Tok>,
}

impl Glob {
    pub fn new(pat: &str) -> Result<Self, String> {
        let mut toks = Vec::new();
        let mut it = pat.chars().peekable();
        while let Some(c) = it.next() {
            match c {
                '*' => {
                    if toks.last() != Some(&Tok::Star) {
                        toks.push(Tok::Star)
                    }
                }
                '?' => toks.push(Tok::Any),
                '\\' => match it.next() {
                    Some(e) => toks.push(Tok::Lit(e)),
                    None => return Err(format!("glob {pat:?} ends with a backslash")),
                },
                '[' => {
                    let neg = matches!(it.peek(), Some('!') | Some('^'));
                    if neg {
                        it.next();
                    }
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let Some(c) = it.next() else {
                            return Err(format!("glob {pat:?}: unterminated ["));
                        };
                        if c == ']' && !first {
                            break;
                        }
                        first = false;
                        let lo = if c == '\\' {
                            it.next()
                                .ok_or_else(|| format!("glob {pat:?}: unterminated ["))?
                        } else {
                            c
                        };
                        if it.peek() == Some(&'-') {
                            it.next();
                            match it.peek() {
                                Some(']') | None => {
                                    ranges.push((lo, lo));
                                    ranges.push(('-', '-'));
                                }
                                Some(_) => {
                                    let hi = it.next().unwrap_or(lo);
                                    if hi < lo {
                                        return Err(format!(
                                            "glob {pat:?}: range {lo}-{hi} is reversed"
                                        ));
                                    }
                                    ranges.push((lo, hi));
                                }
                            }
                        } else {
                            ranges.push((lo, lo));
                        }
                    }
                    toks.push(Tok::Class { neg, ranges });
                }
                c => toks.push(Tok::Lit(c)),
            }
        }
        let literal = toks.iter().all(|t| matches!(t, Tok::Lit(_))).then(|| {
            toks.iter()
                .map(|t| match t {
                    Tok::Lit(c) => *c,
                    _ => unreachable!(),
                })
                .collect()
        });
        Ok(Self { literal, toks })
    }

    /// The exact string this glob matches, when it has no metacharacters.
    pub fn literal(&self) -> Option<&str> {
        self.literal.as_deref()
    }

    fn tok_matches(t: &Tok, c: char) -> bool {
        match t {
            Tok::Lit(l) => *l == c,
            Tok::Any => true,
            Tok::Class { neg, ranges } => ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *neg,
            Tok::Star => true,
        }
    }

    pub fn is_match(&self, s: &str) -> bool {
        if let Some(l) = &self.literal {
            return l == s;
        }
        // Iterative matching with backtracking to the last star: O(len(s) * len(pattern)).
        let chars: Vec<char> = s.chars().collect();
        let (mut p, mut i) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while i < chars.len() {
            match self.toks.get(p) {
                Some(Tok::Star) => {
                    star = Some((p, i));
                    p += 1;
                }
                Some(t) if Self::tok_matches(t, chars[i]) => {
                    p += 1;
                    i += 1;
                }
                _ => match star {
                    Some((sp, si)) => {
                        p = sp + 1;
                        i = si + 1;
                        star = Some((sp, si + 1));
                    }
                    None => return false,
                },
            }
        }
        self.toks[p..].iter().all(|t| *t == Tok::Star)
    }
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

// ---------------------------------------------------------------------------------------
// Compiled rules
// ---------------------------------------------------------------------------------------

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
struct Compiled {
    name: String,
    kinds: u32,
    comm: Vec<Glob>,
    exe: Vec<Glob>,
    argv: Option<RegexSet>,
    argv_glob: Vec<Glob>,
    parent_exe: Vec<Glob>,
    uids: Vec<u32>,
    user_names: Vec<String>,
    path_prefix: Vec<String>,
    needs_argv: bool,
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
    fn matches(&self, ev: &Event, joined_argv: Option<&str>) -> bool {
        if self.kinds & kind_bit(ev.kind) == 0 {
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
                .extra
                .login
                .as_ref()
                .is_some_and(|l| self.user_names.contains(&l.user));
            if !(by_uid || by_name) {
                return false;
            }
        }
        if !self.path_prefix.is_empty() {
            let Some(f) = ev.extra.file.as_ref() else {
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

fn compile(index: usize, r: &NoiseRule) -> Result<Compiled, FilterError> {
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

/// Whether the rule's decision on a `process_exec` depends only on exact comm names, so the
/// kernel can take it: it applies to execs (its `kinds` are empty or include
/// `process_exec`), it has `comm` entries that are all literal (no glob metacharacters, at
/// most 15 bytes), and no other condition.
pub fn is_kernel_comm_rule(r: &NoiseRule) -> bool {
    let execs = r.kinds.is_empty() || r.kinds.iter().any(|k| k == "process_exec");
    let only_comm = r.exe.is_empty()
        && r.argv.is_empty()
        && r.argv_glob.is_empty()
        && r.parent_exe.is_empty()
        && r.users.is_empty()
        && r.path_prefix.is_empty();
    execs
        && only_comm
        && !r.comm.is_empty()
        && r.comm.iter().all(|c| {
            !c.is_empty()
                && c.len() <= COMM_MAX
                && Glob::new(c).ok().and_then(|g| g.literal().map(|l| l == c)) == Some(true)
        })
}

/// The comm key the kernel compares: the name, NUL-padded to `TASK_COMM_LEN` (16).
pub fn comm_key(comm: &str) -> [u8; 16] {
    let mut k = [0u8; 16];
    let b = comm.as_bytes();
    let n = b.len().min(COMM_MAX);
    k[..n].copy_from_slice(&b[..n]);
    k
}

/// Comms whose execs the kernel may drop, each with the index of the rule (in
/// [`NoiseConfig::all_rules`] order) that owns it; first rule wins for a comm listed twice.
/// Empty when the filter is disabled.
pub fn kernel_comm_rules(cfg: &NoiseConfig) -> Vec<([u8; 16], u32)> {
    let mut out: Vec<([u8; 16], u32)> = Vec::new();
    if !cfg.enabled {
        return out;
    }
    // A comm-only rule that comes after a rule which could *keep*... rules only drop, so the
    // first dropping rule decides; an earlier non-kernel rule matching the same exec only
    // changes which counter is bumped.
    for (i, r) in cfg.all_rules().enumerate() {
        if !is_kernel_comm_rule(r) {
            continue;
        }
        for c in &r.comm {
            let k = comm_key(c);
            if !out.iter().any(|(x, _)| *x == k) {
                out.push((k, i as u32));
            }
        }
    }
    out
}

/// The comms whose execs can be dropped in the kernel (pure "drop exec by exact comm" rules).
pub fn kernel_comm_filter(cfg: &NoiseConfig) -> Vec<[u8; 16]> {
    kernel_comm_rules(cfg).into_iter().map(|(k, _)| k).collect()
}

// ---------------------------------------------------------------------------------------
// Exit consistency
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExecState {
    /// At least one exec of this process was shipped: its exit always passes.
    Shipped,
    /// Every exec seen was dropped (by this rule index): drop its exit.
    Dropped(u32),
    /// Its exit came first (audit ordering) and was dropped by a comm rule.
    ExitDropped(u32),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    start: u64,
    state: ExecState,
    gen: u64,
}

fn same_process(a: u64, b: u64) -> bool {
    a == b || a == 0 || b == 0
}

/// Counters of the tracker (totals since start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackerCounts {
    pub exits_dropped: u64,
    pub evictions: u64,
    pub inconsistencies: u64,
    pub tracked: u64,
}

/// Remembers, per live pid, whether its exec was shipped or dropped. Bounded: the oldest
/// entry is evicted first.
#[derive(Debug)]
pub struct ExitTracker {
    map: HashMap<u32, Entry, FnvBuild>,
    order: VecDeque<(u32, u64)>,
    cap: usize,
    gen: u64,
    counts: TrackerCounts,
}

/// What the tracker says about an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitDecision {
    Keep,
    /// Drop: its exec was dropped by this rule.
    Drop(u32),
}

impl ExitTracker {
    pub fn new(cap: usize) -> Self {
        Self {
            map: HashMap::default(),
            order: VecDeque::new(),
            cap: cap.max(1),
            gen: 0,
            counts: TrackerCounts::default(),
        }
    }

    pub fn counts(&self) -> TrackerCounts {
        TrackerCounts {
            tracked: self.map.len() as u64,
            ..self.counts
        }
    }

    fn put(&mut self, pid: u32, start: u64, state: ExecState) {
        self.gen += 1;
        let gen = self.gen;
        if self.map.insert(pid, Entry { start, state, gen }).is_none() {
            while self.map.len() > self.cap {
                let Some((old, g)) = self.order.pop_front() else {
                    break;
                };
                if self.map.get(&old).is_some_and(|e| e.gen == g) {
                    self.map.remove(&old);
                    self.counts.evictions += 1;
                }
            }
        }
        self.order.push_back((pid, gen));
        // Drop stale order records (replaced or removed entries) now and then.
        if self.order.len() > self.cap.saturating_mul(2).max(64) {
            let map = &self.map;
            self.order
                .retain(|(p, g)| map.get(p).is_some_and(|e| e.gen == *g));
        }
    }

    /// An exec of (pid, start) was shipped (`dropped_by == None`) or dropped by a rule.
    pub fn on_exec(&mut self, pid: u32, start: u64, dropped_by: Option<u32>) {
        let prev = self
            .map
            .get(&pid)
            .filter(|e| same_process(e.start, start))
            .map(|e| e.state);
        let start = if start == 0 {
            self.map.get(&pid).map_or(0, |e| e.start)
        } else {
            start
        };
        match (prev, dropped_by) {
            (Some(ExecState::ExitDropped(_)), d) => {
                // The process is already gone; its exit was dropped.
                if d.is_none() {
                    self.counts.inconsistencies += 1;
                }
                self.map.remove(&pid);
            }
            (Some(ExecState::Shipped), _) => {}
            (_, None) => self.put(pid, start, ExecState::Shipped),
            (_, Some(r)) => self.put(pid, start, ExecState::Dropped(r)),
        }
    }

    /// An exit of (pid, start). `comm_rule`: the comm-only exec rule matching the exit's comm,
    /// used when no exec of the process was seen.
    pub fn on_exit(&mut self, pid: u32, start: u64, comm_rule: Option<u32>) -> ExitDecision {
        match self.map.get(&pid).copied() {
            Some(e) if same_process(e.start, start) => match e.state {
                ExecState::Shipped => {
                    self.map.remove(&pid);
                    ExitDecision::Keep
                }
                ExecState::Dropped(r) => {
                    self.map.remove(&pid);
                    self.counts.exits_dropped += 1;
                    ExitDecision::Drop(r)
                }
                ExecState::ExitDropped(r) => {
                    // A duplicate exit: same decision.
                    self.counts.exits_dropped += 1;
                    ExitDecision::Drop(r)
                }
            },
            // An older process's late exit: the entry belongs to a younger one.
            Some(_) => ExitDecision::Keep,
            None => match comm_rule {
                Some(r) => {
                    self.put(pid, start, ExecState::ExitDropped(r));
                    self.counts.exits_dropped += 1;
                    ExitDecision::Drop(r)
                }
                None => ExitDecision::Keep,
            },
        }
    }
}

// ---------------------------------------------------------------------------------------
// The filter
// ---------------------------------------------------------------------------------------

/// The decision on one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Dropped by the rule with this index.
    Drop(usize),
    /// An exit dropped because its exec was dropped (by this rule).
    DropExit(usize),
}

/// The compiled rule engine. Single-owner (the filter stage); not `Sync` state.
#[derive(Debug)]
pub struct NoiseFilter {
    enabled: bool,
    rules: Vec<Compiled>,
    /// Exact comm -> rule index, for comm-only exec rules (exit ordering in audit mode).
    comm_rules: HashMap<String, u32, FnvBuild>,
    any_argv: bool,
    tracker: ExitTracker,
}

impl NoiseFilter {
    pub fn new(cfg: &NoiseConfig) -> Result<Self, FilterError> {
        let mut rules = Vec::new();
        for (i, r) in cfg.all_rules().enumerate() {
            let c = compile(i, r)?;
            if rules.iter().any(|x: &Compiled| x.name == c.name) {
                return Err(FilterError::Named {
                    name: c.name,
                    msg: "duplicate rule name".into(),
                });
            }
            rules.push(c);
        }
        let mut comm_rules = HashMap::default();
        for (i, r) in cfg.all_rules().enumerate() {
            if is_kernel_comm_rule(r) {
                for c in &r.comm {
                    comm_rules.entry(c.clone()).or_insert(i as u32);
                }
            }
        }
        Ok(Self {
            enabled: cfg.enabled,
            any_argv: rules.iter().any(|r| r.needs_argv),
            rules,
            comm_rules,
            tracker: ExitTracker::new(cfg.exit_tracking_capacity),
        })
    }

    /// Rule names in index order.
    pub fn rule_names(&self) -> Vec<String> {
        self.rules.iter().map(|r| r.name.clone()).collect()
    }

    pub fn tracker_counts(&self) -> TrackerCounts {
        self.tracker.counts()
    }

    fn first_match(&self, ev: &Event) -> Option<usize> {
        let joined;
        let argv = if self.any_argv {
            joined = ev
                .process
                .as_ref()
                .and_then(|p| p.argv.as_ref())
                .map(|a| a.join(" "));
            joined.as_deref()
        } else {
            None
        };
        self.rules.iter().position(|r| r.matches(ev, argv))
    }

    /// Decides on one event and updates the exit tracker.
    pub fn check(&mut self, ev: &Event) -> Verdict {
        if !self.enabled {
            return Verdict::Keep;
        }
        match ev.kind {
            Kind::SensorHealth => Verdict::Keep,
            Kind::ProcessExit => {
                let Some(p) = ev.process.as_ref() else {
                    return Verdict::Keep;
                };
                let comm_rule = self.comm_rules.get(&p.comm).copied();
                match self.tracker.on_exit(p.pid, p.start_boottime_ns, comm_rule) {
                    ExitDecision::Keep => Verdict::Keep,
                    ExitDecision::Drop(r) => Verdict::DropExit(r as usize),
                }
            }
            Kind::ProcessExec => {
                let hit = self.first_match(ev);
                if let Some(p) = ev.process.as_ref() {
                    self.tracker
                        .on_exec(p.pid, p.start_boottime_ns, hit.map(|r| r as u32));
                }
                hit.map_or(Verdict::Keep, Verdict::Drop)
            }
            _ => self.first_match(ev).map_or(Verdict::Keep, Verdict::Drop),
        }
    }
}

#[cfg(test)]
mod tests;
