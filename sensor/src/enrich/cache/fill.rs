//! The enrichment rules between an event's process and its cache entry: what an exec stores,
//! how a miss resolves, what the event's credentials refresh, and what the event gets back.
use super::{add_marker, take_marker, CachedProcess, ProcessCache, UNKNOWN_START, UNSETTLED};
use crate::event::{Argv, Kind, Process};

impl ProcessCache {
    /// An entry built from the event's own fields (credentials, comm, tty).
    pub(super) fn entry_from_event(&mut self, p: &Process, ticks: u64) -> CachedProcess {
        CachedProcess {
            pid: p.pid,
            ppid: p.ppid,
            start_ticks: ticks,
            start_sub_ns: UNSETTLED,
            uid: p.uid,
            euid: p.euid,
            gid: p.gid,
            egid: p.egid,
            auid: p.auid,
            session: p.session,
            cgroup_id: 0,
            comm: self.strings.get(&p.comm),
            tty: self.strings.opt(p.tty.as_deref()),
            exe: None,
            cwd: None,
            argv: None,
            container_id: None,
            argv_truncated: false,
            forked: false,
            container_guessed: false,
        }
    }

    pub(super) fn apply_exec(&mut self, p: &mut Process, ticks: u64, now: u64) -> u32 {
        let mut ticks = ticks;
        let existing = if ticks == UNKNOWN_START {
            // exec keeps pid and start time: the pid's newest entry is this process. It may
            // already be exit-pending: audit delivers proc-connector exits ahead of the
            // exec records of the same process. A new entry learns its start tick from the
            // /proc/<pid>/stat read that checks the container read (`fill_container`), so an
            // audit exec reads stat once, not twice (docs/ARCHITECTURE.md#audit-netlink).
            let newest = self.store.find(p.pid, UNKNOWN_START);
            if let Some(i) = newest {
                ticks = self.store.entry(i).start_ticks;
            }
            newest
        } else {
            self.store.find(p.pid, ticks)
        };
        let mut e = self.entry_from_event(p, ticks);
        e.exe = self.strings.opt(p.exe.as_deref());
        e.cwd = self.strings.opt(p.cwd.as_deref());
        if let Some(a) = &p.argv {
            (e.argv, e.argv_truncated) = self.strings.argv(&a.args, a.truncated);
        }
        if e.exe.is_none() || e.cwd.is_none() || e.argv.is_none() {
            // The kernel could not give them: the new image is in /proc while it runs.
            if let Some(s) = self.read_proc(p.pid, ticks) {
                if e.exe.is_none() {
                    e.exe = self.strings.opt(s.exe.as_deref());
                }
                if e.cwd.is_none() {
                    e.cwd = self.strings.opt(s.cwd.as_deref());
                }
                if e.argv.is_none() {
                    if let Some(a) = &s.argv {
                        (e.argv, e.argv_truncated) = self.strings.argv(a, s.argv_truncated);
                    }
                }
            }
        }
        match existing {
            Some(i) => {
                // The cgroup does not change at exec: keep what was resolved for it.
                let old = self.store.entry_mut(i);
                // Nor does the start: the process keeps the one its events already carried.
                e.start_sub_ns = old.start_sub_ns;
                e.cgroup_id = old.cgroup_id;
                e.container_id = old.container_id.take();
                e.container_guessed = old.container_guessed;
                *old = e;
                i
            }
            None => self.store.insert(e, now),
        }
    }

    pub(super) fn resolve(&mut self, p: &Process, ticks: u64, kind: Kind, now: u64) -> Option<u32> {
        if let Some(i) = self.store.find(p.pid, ticks) {
            return Some(i);
        }
        if ticks != UNKNOWN_START {
            // An audit exec whose /proc read came too late has no start. An event with one (a
            // fanotify event's /proc snapshot, taken while the process ran) names that process
            // when it is still the pid's newest live entry: the entry learns the start, and
            // the event gets the exec'd image instead of one inherited from the parent.
            let newest = self.store.chain(p.pid).next();
            if let Some(i) = newest.filter(|&i| {
                self.store.is_live(i) && self.store.entry(i).start_ticks == UNKNOWN_START
            }) {
                self.store.entry_mut(i).start_ticks = ticks;
                return Some(i);
            }
        }
        if kind != Kind::ProcessExit {
            if let Some(snap) = self.read_proc(p.pid, ticks) {
                let e = self.entry_from_snapshot(&snap);
                return Some(self.store.insert(e, now));
            }
        }
        if kind == Kind::ProcessExit && ticks == UNKNOWN_START && !p.comm.is_empty() {
            // Without a start time the exit may have overtaken the exec (audit): do not guess
            // the parent's image; leave a tombstone the late exec fills in.
            let e = self.entry_from_event(p, ticks);
            return Some(self.store.insert(e, now));
        }
        self.inherit(p, ticks, now)
    }

    /// The event's kernel credentials are current: keep the entry up to date for pid-only
    /// events and ancestors.
    ///
    /// A child known from its fork whose comm changed has exec'd without its exec reaching the
    /// cache (the in-kernel noise filter drops some, a ring buffer can overflow): the inherited
    /// image is dropped and read from /proc while the process lives, else marked incomplete.
    pub(super) fn refresh(&mut self, i: u32, p: &Process) {
        if p.comm.is_empty() {
            return;
        }
        if self.store.entry(i).forked && *self.store.entry(i).comm != *p.comm {
            let ticks = self.store.entry(i).start_ticks;
            let snap = self.read_proc(p.pid, ticks);
            let (exe, cwd) = match &snap {
                Some(s) => (
                    self.strings.opt(s.exe.as_deref()),
                    self.strings.opt(s.cwd.as_deref()),
                ),
                None => (None, None),
            };
            let (argv, truncated) = match snap.as_ref().and_then(|s| s.argv.as_ref()) {
                Some(a) if !a.is_empty() => self
                    .strings
                    .argv(a, snap.as_ref().is_some_and(|s| s.argv_truncated)),
                _ => (None, false),
            };
            let e = self.store.entry_mut(i);
            (e.exe, e.cwd, e.argv, e.argv_truncated) = (exe, cwd, argv, truncated);
            e.forked = false;
        }
        let comm_changed = *self.store.entry(i).comm != *p.comm;
        let comm = comm_changed.then(|| self.strings.get(&p.comm));
        let has_uid = !p.is_incomplete("uid");
        let has_session = !p.is_incomplete("session");
        let e = self.store.entry_mut(i);
        if p.ppid != 0 {
            e.ppid = p.ppid;
        }
        if has_uid {
            (e.uid, e.euid, e.gid, e.egid) = (p.uid, p.euid, p.gid, p.egid);
        }
        if has_session {
            (e.auid, e.session) = (p.auid, p.session);
        }
        if let Some(c) = comm {
            e.comm = c;
        }
    }

    /// Gives the event what it lacks from entry `i` (`prefer_cache`: the entry's exe, cwd and
    /// argv replace the event's).
    pub(super) fn fill_process(&mut self, i: u32, p: &mut Process, prefer_cache: bool) {
        let e = self.store.entry(i);
        if p.comm.is_empty() {
            // A pid-only event (the source found no process): the cache names it.
            take_marker(p, "process");
            p.ppid = e.ppid;
            p.comm = e.comm.to_string();
            p.tty = e.tty.as_deref().map(str::to_string);
            (p.uid, p.euid, p.gid, p.egid) = (e.uid, e.euid, e.gid, e.egid);
            // A source that read the audit identity itself (a login record's process, from
            // /proc at the time of the login) is fresher than the cache: the process may
            // have set its loginuid after its exec, as pam_loginuid does.
            if p.auid.is_none() && p.session.is_none() {
                (p.auid, p.session) = (e.auid, e.session);
            }
        } else {
            if p.is_incomplete("uid") {
                (p.uid, p.euid, p.gid, p.egid) = (e.uid, e.euid, e.gid, e.egid);
            }
            if p.is_incomplete("session") {
                (p.auid, p.session) = (e.auid, e.session);
            }
        }
        take_marker(p, "uid");
        take_marker(p, "session");
        let e = self.store.entry(i);
        if prefer_cache {
            if e.exe.is_some() {
                p.exe = None;
            }
            if e.cwd.is_some() {
                p.cwd = None;
            }
            if e.argv.as_ref().is_some_and(|a| !a.is_empty()) {
                p.argv = None;
            }
        }
        if p.exe.is_none() {
            if let Some(x) = e.exe.as_deref() {
                p.exe = Some(x.to_string());
                take_marker(p, "exe");
            }
        }
        if p.cwd.is_none() {
            if let Some(c) = e.cwd.as_deref() {
                p.cwd = Some(c.to_string());
                take_marker(p, "cwd");
            }
        }
        if p.argv.is_none() {
            if let Some(a) = &e.argv {
                p.argv = Some(Argv {
                    args: a.to_vec(),
                    truncated: e.argv_truncated,
                    omitted_bytes: 0,
                });
                take_marker(p, "argv");
            }
        }
        for (missing, name) in [
            (p.exe.is_none(), "exe"),
            (p.cwd.is_none(), "cwd"),
            (p.argv.is_none(), "argv"),
        ] {
            if missing {
                add_marker(p, name);
            }
        }
    }

    /// Gives the event the process's one start (module doc, "One start per process"). The
    /// first event that resolves to the entry with its start known settles it: the event's own
    /// start when it is the kernel's (`exact`, an eBPF record of the entry's tick), else the
    /// entry's tick. Every event of the process then leaves with that start. `event_ticks` is
    /// the tick of the event's own start, as `enrich` computed it.
    pub(super) fn settle_start(
        &mut self,
        p: &mut Process,
        idx: Option<u32>,
        event_ticks: u64,
        exact: bool,
    ) {
        let Some(i) = idx else { return };
        let ns_per_tick = self.ns_per_tick;
        let e = self.store.entry_mut(i);
        if e.start_ticks == UNKNOWN_START || e.start_ticks == 0 {
            return;
        }
        let tick_start = e.start_ticks.saturating_mul(ns_per_tick);
        if e.start_sub_ns == UNSETTLED {
            e.start_sub_ns = if exact && event_ticks == e.start_ticks {
                u32::try_from(p.start_boottime_ns - tick_start).unwrap_or(0)
            } else {
                0
            };
        }
        // Both from here, so every event of the process has the same `start_time` too (each
        // source turns boottime into wall time with its own clock reading).
        p.start_boottime_ns = tick_start + u64::from(e.start_sub_ns);
        p.start_time_unix_ns = Some(self.clocks.boottime_to_unix(p.start_boottime_ns));
        take_marker(p, "start_time");
    }
}
