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
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::event::{Event, Kind};

mod exits;
mod fnv;
mod glob;
mod kernel;
mod rules;

pub use exits::{ExitDecision, ExitTracker, TrackerCounts};
pub use fnv::{Fnv, FnvBuild};
pub use glob::Glob;
pub use kernel::{comm_key, is_kernel_comm_rule, kernel_comm_filter, kernel_comm_rules};
pub use rules::parse_kind;
use rules::{compile, Compiled};

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
    /// The argv of the event being checked, joined by spaces (reused: no allocation per event).
    joined: String,
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
            joined: String::new(),
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

    fn first_match(&mut self, ev: &Event) -> Option<usize> {
        let args = match ev.process.as_ref().and_then(|p| p.argv.as_ref()) {
            Some(a) if self.any_argv => Some(&a.args),
            _ => None,
        };
        if let Some(args) = args {
            self.joined.clear();
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    self.joined.push(' ');
                }
                self.joined.push_str(a);
            }
        }
        let argv = args.map(|_| self.joined.as_str());
        self.rules.iter().position(|r| r.matches(ev, argv))
    }

    /// Decides on one event and updates the exit tracker.
    pub fn check(&mut self, ev: &Event) -> Verdict {
        if !self.enabled {
            return Verdict::Keep;
        }
        match ev.kind() {
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
