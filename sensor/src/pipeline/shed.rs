//! Load shedding at the entry of the pipeline (before enrichment, the costly stage): the
//! decision for one event at one level, and the counters of what was shed.
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

use crate::event::{Event, Kind};

/// Repeats within this window are coalesced.
const REPEAT_WINDOW_NS: u64 = 1_000_000_000;
/// The repeat table is pruned when it grows past this many keys.
const MAX_KEYS: usize = 65_536;

/// Why an event was shed; each is a separate counter per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Level 1: the same event again within a second.
    Repeat,
    /// Level 2: a flow or a read-only file event.
    LowValue,
    /// Level 3: every file and connect event.
    Kind,
    /// Level 4: an exec of the same program by the same parent within a second.
    ExecBurst,
}

pub const REASONS: [Reason; 4] = [
    Reason::Repeat,
    Reason::LowValue,
    Reason::Kind,
    Reason::ExecBurst,
];

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Repeat => "repeat",
            Reason::LowValue => "low_value",
            Reason::Kind => "kind",
            Reason::ExecBurst => "exec_burst",
        }
    }

    fn index(self) -> usize {
        REASONS.iter().position(|&r| r == self).unwrap_or(0)
    }
}

/// Kinds that are never shed.
pub fn never_shed(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::ProcessExit
            | Kind::Login
            | Kind::Logout
            | Kind::LoginFailed
            | Kind::PrivilegeChange
            | Kind::SensorHealth
    )
}

/// The shedding level in force and what was shed, shared by the governor, the pipeline and
/// health/status.
/// Called with the new level whenever it changes (the eBPF capture publishes it to the kernel
/// programs, which then drop connects at source).
pub type LevelHook = Box<dyn Fn(u8) + Send + Sync>;

#[derive(Default)]
pub struct ShedStats {
    level: AtomicU8,
    raises: AtomicU64,
    counts: [[AtomicU64; Kind::ALL.len()]; REASONS.len()],
    hook: std::sync::Mutex<Option<LevelHook>>,
}

impl std::fmt::Debug for ShedStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShedStats")
            .field("level", &self.level())
            .finish_non_exhaustive()
    }
}

impl ShedStats {
    pub fn level(&self) -> u8 {
        self.level.load(Relaxed)
    }

    pub fn set_level(&self, level: u8) {
        let old = self.level.swap(level, Relaxed);
        if level > old {
            self.raises.fetch_add(1, Relaxed);
        }
        if level != old {
            tracing::warn!(from = old, to = level, "load shedding level changed");
            if let Some(hook) = self.hook.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                hook(level);
            }
        }
    }

    /// Registers the function told about level changes (called at once with the current one).
    pub fn set_hook(&self, hook: LevelHook) {
        hook(self.level());
        *self.hook.lock().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    pub fn count(&self, reason: Reason, kind: Kind) {
        let k = kind.index();
        self.counts[reason.index()][k].fetch_add(1, Relaxed);
    }

    /// How often the level was raised.
    pub fn raises(&self) -> u64 {
        self.raises.load(Relaxed)
    }

    pub fn shed_of(&self, reason: Reason, kind: Kind) -> u64 {
        let k = kind.index();
        self.counts[reason.index()][k].load(Relaxed)
    }
}

/// Remembers recent events to recognise repeats.
#[derive(Debug, Default)]
pub struct Shedder {
    recent: HashMap<u64, u64>,
}

impl Shedder {
    /// `None`: keep the event. `Some(reason)`: shed it (the caller counts it).
    pub fn decide(&mut self, ev: &Event, level: u8, now_ns: u64) -> Option<Reason> {
        if level == 0 || never_shed(ev.kind()) {
            return None;
        }
        if level >= 2 && is_low_value(ev) {
            return Some(Reason::LowValue);
        }
        if level >= 3 && matches!(ev.kind(), Kind::File | Kind::NetConnect) {
            return Some(Reason::Kind);
        }
        if level >= 4 && ev.kind() == Kind::ProcessExec && self.seen(burst_key(ev), now_ns) {
            return Some(Reason::ExecBurst);
        }
        if self.seen(repeat_key(ev), now_ns) {
            return Some(Reason::Repeat);
        }
        None
    }

    /// Whether `key` was kept within the window; records it as kept when not.
    fn seen(&mut self, key: u64, now_ns: u64) -> bool {
        if let Some(&t) = self.recent.get(&key) {
            if now_ns.saturating_sub(t) < REPEAT_WINDOW_NS {
                return true;
            }
        }
        if self.recent.len() >= MAX_KEYS {
            self.recent
                .retain(|_, t| now_ns.saturating_sub(*t) < REPEAT_WINDOW_NS);
            if self.recent.len() >= MAX_KEYS {
                self.recent.clear();
            }
        }
        self.recent.insert(key, now_ns);
        false
    }
}

/// The pipeline's entry check: counts every event by source and kind, then sheds at the
/// level in force (counted by reason and kind).
pub struct Admission {
    pub counters: std::sync::Arc<crate::telemetry::counters::Counters>,
    pub stats: std::sync::Arc<ShedStats>,
    pub shedder: Shedder,
}

impl Admission {
    pub fn new(
        counters: std::sync::Arc<crate::telemetry::counters::Counters>,
        stats: std::sync::Arc<ShedStats>,
    ) -> Self {
        Self {
            counters,
            stats,
            shedder: Shedder::default(),
        }
    }

    /// Whether the event goes on. A health event passing here gets the shedding counters as
    /// of this point of the stream, so it accounts for every event queued before it: they are
    /// written here only, not where the health event is built.
    pub fn admit(&mut self, ev: &mut Event, now_ns: u64) -> bool {
        if let Some(h) = ev.health.as_mut() {
            let f = crate::telemetry::fields::fields_of(&*self.stats);
            h.drops.extend(f.drops);
            h.events.extend(f.events);
        }
        self.counters.count_source(ev.source(), ev.kind());
        match self.shedder.decide(ev, self.stats.level(), now_ns) {
            None => true,
            Some(reason) => {
                self.stats.count(reason, ev.kind());
                false
            }
        }
    }
}

fn is_low_value(ev: &Event) -> bool {
    match ev.kind() {
        Kind::Flow => true,
        Kind::File => ev.file.as_ref().is_some_and(|f| {
            !f.ops.is_empty() && f.ops.iter().all(|op| op == "open" || op == "close")
        }),
        _ => false,
    }
}

fn hasher(ev: &Event) -> DefaultHasher {
    let mut h = DefaultHasher::new();
    ev.kind().as_str().hash(&mut h);
    h
}

/// What makes two events "the same" for level 1.
fn repeat_key(ev: &Event) -> u64 {
    let mut h = hasher(ev);
    if let Some(p) = &ev.process {
        match ev.kind() {
            Kind::ProcessExec => {
                (p.ppid, p.uid, &p.exe, &p.filename, &p.argv).hash(&mut h);
            }
            _ => (p.pid, p.start_boottime_ns).hash(&mut h),
        }
    }
    if let Some(c) = &ev.connect {
        (&c.dst_addr, c.dst_port, &c.protocol, &c.result).hash(&mut h);
    }
    if let Some(f) = &ev.file {
        (&f.path, &f.ops, &f.new_path).hash(&mut h);
    }
    if let Some(fl) = &ev.flow {
        (
            &fl.protocol,
            &fl.src_addr,
            fl.src_port,
            &fl.dst_addr,
            fl.dst_port,
        )
            .hash(&mut h);
    }
    h.finish()
}

/// What makes two execs "the same program by the same parent" for level 4.
fn burst_key(ev: &Event) -> u64 {
    let mut h = hasher(ev);
    "burst".hash(&mut h);
    if let Some(p) = &ev.process {
        (p.ppid, p.uid, p.exe.as_ref().or(p.filename.as_ref())).hash(&mut h);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Connect, FileActivity, Process, Source};

    fn ev(kind: Kind, pid: u32, argv: &[&str]) -> Event {
        let mut e = Event::new(kind, Source::Ebpf, 0, "h");
        e.process = Some(Process {
            pid,
            ppid: 1,
            exe: Some("/usr/bin/x".into()),
            argv: Some(argv.iter().map(|s| s.to_string()).collect()),
            ..Process::default()
        });
        e
    }

    fn file(pid: u32, path: &str, ops: &[&str]) -> Event {
        let mut e = ev(Kind::File, pid, &[]);
        e.file = Some(FileActivity {
            path: path.into(),
            ops: ops.iter().map(|s| s.to_string()).collect(),
            new_path: None,
        });
        e
    }

    fn connect(pid: u32, port: u16) -> Event {
        let mut e = ev(Kind::NetConnect, pid, &[]);
        e.connect = Some(Connect {
            family: "ipv4".into(),
            protocol: "tcp".into(),
            dst_addr: "10.0.0.1".into(),
            dst_port: u32::from(port),
            result: "success".into(),
            errno: 0,
            ..Connect::default()
        });
        e
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn level_zero_and_protected_kinds_are_never_shed() {
        let mut s = Shedder::default();
        for _ in 0..3 {
            assert_eq!(s.decide(&ev(Kind::ProcessExec, 5, &["a"]), 0, S), None);
        }
        for kind in [
            Kind::ProcessExit,
            Kind::Login,
            Kind::Logout,
            Kind::LoginFailed,
            Kind::PrivilegeChange,
            Kind::SensorHealth,
        ] {
            for _ in 0..3 {
                assert_eq!(s.decide(&ev(kind, 5, &["a"]), 4, S), None, "{kind:?}");
            }
        }
    }

    #[test]
    fn level_one_coalesces_exact_repeats_within_a_second() {
        let mut s = Shedder::default();
        let a = ev(Kind::ProcessExec, 5, &["x", "1"]);
        assert_eq!(s.decide(&a, 1, S), None);
        assert_eq!(
            s.decide(&ev(Kind::ProcessExec, 6, &["x", "1"]), 1, S + 10),
            Some(Reason::Repeat)
        );
        assert_eq!(
            s.decide(&ev(Kind::ProcessExec, 7, &["x", "2"]), 1, S + 20),
            None,
            "argv differs"
        );
        assert_eq!(s.decide(&a, 1, 2 * S + 1), None, "window passed");
        assert_eq!(s.decide(&connect(5, 80), 1, S), None);
        assert_eq!(s.decide(&connect(5, 80), 1, S + 1), Some(Reason::Repeat));
        assert_eq!(s.decide(&connect(5, 443), 1, S + 2), None);
        assert_eq!(s.decide(&connect(6, 80), 1, S + 3), None, "another process");
        assert_eq!(s.decide(&file(5, "/etc/a", &["modify"]), 1, S), None);
        assert_eq!(
            s.decide(&file(5, "/etc/a", &["modify"]), 1, S + 1),
            Some(Reason::Repeat)
        );
        assert_eq!(s.decide(&file(5, "/etc/a", &["delete"]), 1, S + 2), None);
    }

    #[test]
    fn higher_levels_drop_kinds_in_order() {
        let mut s = Shedder::default();
        let read = file(5, "/etc/r", &["open", "close"]);
        let write = file(5, "/etc/w", &["modify"]);
        assert_eq!(s.decide(&read, 1, S), None);
        assert_eq!(s.decide(&read, 2, 3 * S), Some(Reason::LowValue));
        assert_eq!(s.decide(&write, 2, 3 * S), None);
        assert_eq!(
            s.decide(&ev(Kind::Flow, 1, &[]), 2, 3 * S),
            Some(Reason::LowValue)
        );
        assert_eq!(
            s.decide(&file(5, "/etc/z", &["modify"]), 3, 3 * S),
            Some(Reason::Kind)
        );
        assert_eq!(s.decide(&connect(9, 1), 3, 3 * S), Some(Reason::Kind));
        assert_eq!(
            s.decide(&ev(Kind::ProcessExec, 5, &["y", "1"]), 3, 3 * S),
            None
        );
        assert_eq!(
            s.decide(&ev(Kind::ProcessExec, 5, &["y", "2"]), 3, 3 * S),
            None
        );
        assert_eq!(
            s.decide(&ev(Kind::ProcessExec, 5, &["y", "3"]), 4, 3 * S),
            None,
            "first"
        );
        assert_eq!(
            s.decide(&ev(Kind::ProcessExec, 5, &["y", "4"]), 4, 3 * S),
            Some(Reason::ExecBurst),
            "same parent and program, other argv"
        );
        let mut other = ev(Kind::ProcessExec, 5, &["z"]);
        other.process.as_mut().unwrap().exe = Some("/usr/bin/z".into());
        assert_eq!(s.decide(&other, 4, 3 * S), None);
    }

    #[test]
    fn counters_name_reason_and_kind() {
        let st = ShedStats::default();
        st.count(Reason::Repeat, Kind::ProcessExec);
        st.count(Reason::Repeat, Kind::ProcessExec);
        st.count(Reason::Kind, Kind::NetConnect);
        let d = crate::telemetry::fields::fields_of(&st).drops;
        assert_eq!(d["shed_repeat_process_exec"], 2);
        assert_eq!(d["shed_kind_net_connect"], 1);
        assert_eq!(d.len(), 2);
        st.set_level(2);
        st.set_level(1);
        st.set_level(3);
        let n = crate::telemetry::fields::fields_of(&st).events;
        assert_eq!(n["shed_level"], 3);
        assert_eq!(n["shed_level_raises"], 2);
    }

    #[test]
    fn admission_counts_sheds_and_stamps_health() {
        let stats = std::sync::Arc::new(ShedStats::default());
        let counters = std::sync::Arc::new(crate::telemetry::counters::Counters::default());
        let mut a = Admission::new(counters.clone(), stats.clone());
        stats.set_level(3);
        assert!(!a.admit(&mut connect(1, 80), S));
        assert!(a.admit(&mut ev(Kind::ProcessExit, 1, &[]), S));
        let mut h = ev(Kind::SensorHealth, 1, &[]);
        h.health = Some(crate::event::Health {
            mode: "ebpf".into(),
            reason: String::new(),
            uptime_s: 0.0,
            drops: Default::default(),
            events: Default::default(),
            cpu: 0.0,
            rss_bytes: 0,
            lag_ms: 0.0,
        });
        assert!(a.admit(&mut h, S));
        let health = h.msg.health.unwrap();
        assert_eq!(health.drops["shed_kind_net_connect"], 1);
        assert_eq!(health.events["shed_level"], 3);
        assert_eq!(counters.by_source()["ebpf"]["net_connect"], 1);
        assert_eq!(counters.by_source()["ebpf"]["process_exit"], 1);
    }

    #[test]
    fn repeat_table_stays_bounded() {
        let mut s = Shedder::default();
        for i in 0..(MAX_KEYS as u32 + 10) {
            s.decide(&connect(i, 80), 1, S);
        }
        assert!(s.recent.len() <= MAX_KEYS);
    }
}
