//! Ancestry in the process cache: fork records (a child runs its parent's image until it
//! execs), inheritance on a miss, and the ancestor chain events carry.
use super::{add_marker, ForkOutcome, ProcessCache, UNKNOWN_START, UNSETTLED};
use crate::event::{Ancestor, Process};

impl ProcessCache {
    /// True when a live entry for `pid` came from an exec or /proc rather than a fork. An
    /// audit-mode fork notice reaches the stage through another socket than the exec records,
    /// so it can arrive after the child's exec: it is then older news and must not replace the
    /// exec'd image (it would be dropped again as "exec'd unseen" and the image lost).
    pub fn has_exec_image(&self, pid: u32) -> bool {
        self.store
            .chain(pid)
            .any(|i| self.store.is_live(i) && !self.store.entry(i).forked)
    }

    /// Learns of a new process (a fork record): the child runs its parent's image (exe, argv,
    /// cwd, container, ancestry) until it execs. A child with a `comm` carries the kernel's
    /// credentials for it; a pid-only child (the proc connector) takes comm and credentials
    /// from the parent too. The parent is looked up in the cache, else read from /proc once.
    pub fn fork(&mut self, child: &Process, now_mono_ns: u64) -> ForkOutcome {
        let ticks = self.start_ticks(child.start_boottime_ns);
        if ticks != UNKNOWN_START && self.store.find(child.pid, ticks).is_some() {
            return ForkOutcome::Known;
        }
        if child.ppid == 0 || child.ppid == child.pid {
            return ForkOutcome::NoParent;
        }
        let parent = match self.store.find_parent(child.ppid, ticks) {
            Some(i) => i,
            None => match self.load_parent(child.ppid, ticks, now_mono_ns) {
                Some(i) => i,
                None => return ForkOutcome::NoParent,
            },
        };
        let mut e = self.store.entry(parent).clone();
        e.forked = true;
        e.pid = child.pid;
        e.ppid = child.ppid;
        e.start_ticks = ticks;
        // Settled by the child's first event (a fork record is not one).
        e.start_sub_ns = UNSETTLED;
        if !child.comm.is_empty() {
            let from_event = self.entry_from_event(child, ticks);
            (e.uid, e.euid, e.gid, e.egid) = (
                from_event.uid,
                from_event.euid,
                from_event.gid,
                from_event.egid,
            );
            (e.auid, e.session) = (from_event.auid, from_event.session);
            (e.comm, e.tty) = (from_event.comm, from_event.tty);
        }
        if child.cgroup_id != 0 && child.cgroup_id != e.cgroup_id {
            // Forked into another cgroup (clone3 CLONE_INTO_CGROUP): resolve it afresh.
            e.cgroup_id = child.cgroup_id;
            e.container_id = self.cgroups.get(child.cgroup_id).cloned();
        }
        self.store.insert(e, now_mono_ns);
        self.stats.forks += 1;
        ForkOutcome::Added
    }

    /// An entry for a process /proc no longer has, from its cached parent: a child forked
    /// without exec runs its parent's image.
    pub(super) fn inherit(&mut self, p: &Process, ticks: u64, now: u64) -> Option<u32> {
        if p.ppid == 0 || p.comm.is_empty() {
            return None;
        }
        let parent = self.store.find_parent(p.ppid, ticks)?;
        let mut e = self.entry_from_event(p, ticks);
        let par = self.store.entry(parent);
        e.exe = par.exe.clone();
        e.cwd = par.cwd.clone();
        e.argv = par.argv.clone();
        e.argv_truncated = par.argv_truncated;
        e.container_id = par.container_id.clone();
        e.cgroup_id = par.cgroup_id;
        Some(self.store.insert(e, now))
    }

    /// Up to `depth` ancestors, from the cache, else read from /proc (and cached).
    pub(super) fn fill_ancestors(
        &mut self,
        p: &mut Process,
        idx: Option<u32>,
        ticks: u64,
        now: u64,
    ) {
        if self.depth == 0 {
            return;
        }
        let (mut ppid, mut child_ticks) = match idx {
            Some(i) => {
                let e = self.store.entry(i);
                (if p.ppid != 0 { p.ppid } else { e.ppid }, e.start_ticks)
            }
            None => (p.ppid, ticks),
        };
        let mut out = Vec::with_capacity(self.depth.min(8));
        let mut complete = true;
        let mut prev_pid = p.pid;
        while out.len() < self.depth && ppid != 0 && ppid != prev_pid {
            let parent = match self.store.find_parent(ppid, child_ticks) {
                Some(i) => Some(i),
                None => self.load_parent(ppid, child_ticks, now),
            };
            let Some(i) = parent else {
                complete = false;
                break;
            };
            self.store.touch(i);
            let e = self.store.entry(i);
            out.push(Ancestor {
                pid: e.pid,
                comm: e.comm.to_string(),
                exe: e.exe.as_deref().unwrap_or("").to_string(),
            });
            prev_pid = e.pid;
            ppid = e.ppid;
            child_ticks = e.start_ticks;
        }
        p.ancestors = out;
        if !complete {
            add_marker(p, "ancestors");
        }
    }
}
