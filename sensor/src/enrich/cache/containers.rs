//! Container lookup for the process cache: cgroup id -> container id, learned from
//! `/proc/<pid>/cgroup` while a process lives, else by finding the cgroup directory with that
//! inode number (see [`crate::enrich::container`] for the path rules).
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::intern::Interner;
use super::store::IdBuild;
use super::{add_marker, take_marker, ProcessCache, UNKNOWN_START};
use crate::enrich::cgroup_reads::{CgroupRead, CgroupReads};
use crate::enrich::container::{self, Cgroup2Root};
use crate::enrich::procfs;
use crate::event::{Kind, Process};

/// Most cgroup ids remembered (cleared when full; cgroup ids are never reused).
const CGROUP_MAP_MAX: usize = 8192;

/// What is known per cgroup id.
pub(super) struct Cgroups {
    pub root: Option<Cgroup2Root>,
    /// cgroup id -> container id ("" = host).
    ids: HashMap<u64, Arc<str>, IdBuild>,
    /// cgroup ids a directory walk could not decide (not walked again).
    walked: HashSet<u64, IdBuild>,
    /// Reads the sources made when they captured an exec (audit), taken by that exec.
    early: Option<Arc<CgroupReads>>,
}

impl Cgroups {
    pub fn new(root: Option<Cgroup2Root>) -> Self {
        Self {
            root,
            ids: HashMap::default(),
            walked: HashSet::default(),
            early: None,
        }
    }

    /// cgroup ids with a known container id.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn get(&self, cgroup_id: u64) -> Option<&Arc<str>> {
        self.ids.get(&cgroup_id)
    }

    fn remember(&mut self, cgroup_id: u64, container: Arc<str>) {
        if self.ids.len() >= CGROUP_MAP_MAX {
            self.ids.clear();
        }
        self.walked.remove(&cgroup_id);
        self.ids.insert(cgroup_id, container);
    }

    /// Container id from `/proc/<pid>/cgroup` text, and the v2 cgroup id when the mount is
    /// known. With `event_cgroup`, an answer for another cgroup (the process moved since the
    /// event) is not an answer for the event.
    pub fn resolve_text(
        &mut self,
        strings: &mut Interner,
        text: &str,
        event_cgroup: Option<u64>,
    ) -> (Option<Arc<str>>, Option<u64>) {
        let c = container::container_from_cgroup_file(text);
        let id = strings.get(&c.id);
        let Some(root) = &self.root else {
            return (Some(id), None);
        };
        let pure = root.pure;
        // The line of the tracked hierarchy, and whether it alone gives this answer (then every
        // process in that cgroup has it).
        let (path, decided) = match &root.v1 {
            None => (c.v2_path.clone(), c.decided_by_v2),
            Some(v1) => {
                let p = container::controller_path(text, &v1.name);
                let alone = p.map(|p| container::container_id_from_path(p).unwrap_or(""));
                (p.map(str::to_string), alone == Some(c.id.as_str()))
            }
        };
        let Some(cg) = path
            .as_deref()
            .and_then(|p| container::cgroup_id_of(&root.path, p))
        else {
            return (Some(id), None);
        };
        if decided && (pure || !c.id.is_empty()) {
            self.remember(cg, id.clone());
        }
        match event_cgroup {
            Some(want) if want != cg => (None, None),
            _ => (Some(id), Some(cg)),
        }
    }

    /// Finds the cgroup directory with inode `cgroup_id` under the mount (once per id).
    fn via_walk(&mut self, strings: &mut Interner, cgroup_id: u64) -> Option<Arc<str>> {
        let root = self.root.as_ref()?;
        if self.walked.contains(&cgroup_id) {
            return None;
        }
        let pure = root.pure;
        let found = container::find_cgroup_path(&root.path, cgroup_id);
        let answer = match found.as_deref().map(container::container_id_from_path) {
            Some(Some(id)) => Some(id.to_string()),
            Some(None) if pure => Some(String::new()),
            _ => None,
        };
        match answer {
            Some(id) => {
                let id = strings.get(&id);
                self.remember(cgroup_id, id.clone());
                Some(id)
            }
            None => {
                if self.walked.len() >= CGROUP_MAP_MAX {
                    self.walked.clear();
                }
                self.walked.insert(cgroup_id);
                None
            }
        }
    }
}

impl ProcessCache {
    /// Execs without a cgroup id take the `/proc/<pid>/cgroup` read their source made when it
    /// captured them from `reads`, instead of reading /proc later (see
    /// [`crate::enrich::cgroup_reads`]).
    pub fn use_cgroup_reads(&mut self, reads: Arc<CgroupReads>) {
        self.cgroups.early = Some(reads);
    }

    /// The container id (and v2 cgroup id) from `/proc/<pid>/cgroup`, and the start tick the
    /// liveness check read. An exec (`early`) takes its source's read when there is one.
    fn container_via_proc(
        &mut self,
        pid: u32,
        ticks: u64,
        event_cgroup: Option<u64>,
        early: bool,
    ) -> (Option<Arc<str>>, Option<u64>, Option<u64>) {
        self.stats.proc_reads += 1;
        // The file must be this process's (not a younger one's with the same pid), read
        // while it was alive.
        let expect = (ticks != UNKNOWN_START).then_some(ticks);
        let kept = match &self.cgroups.early {
            Some(reads) if early => reads.take(pid),
            _ => None,
        };
        let read = match kept {
            Some(CgroupRead::Alive { text, start_ticks }) => expect
                .is_none_or(|t| t == start_ticks)
                .then_some((text, start_ticks)),
            Some(CgroupRead::Gone) => None,
            None => procfs::read_cgroup_alive_since(&self.proc_root, pid, expect),
        };
        let Some((text, start)) = read else {
            self.stats.proc_misses += 1;
            return (None, None, None);
        };
        let (id, cg) = self
            .cgroups
            .resolve_text(&mut self.strings, &text, event_cgroup);
        (id, cg, Some(start))
    }

    /// Sets `container_id` (and `cgroup_id` when unknown) on the event and the entry.
    pub(super) fn fill_container(
        &mut self,
        p: &mut Process,
        idx: Option<u32>,
        ticks: u64,
        kind: Kind,
    ) {
        let cg = p.cgroup_id;
        let (entry_cg, entry_id, entry_guessed) = match idx {
            Some(i) => {
                let e = self.store.entry(i);
                (e.cgroup_id, e.container_id.clone(), e.container_guessed)
            }
            None => (0, None, false),
        };
        let ticks = match idx {
            Some(i) => self.store.entry(i).start_ticks,
            None => ticks,
        };
        let mut learned = None;
        let mut guessed = false;
        let mut found = if cg != 0 {
            if entry_cg == cg && entry_id.is_some() && !entry_guessed {
                entry_id.clone()
            } else if let Some(c) = self.cgroups.get(cg) {
                Some(c.clone())
            } else {
                let (id, _, _) = self.container_via_proc(p.pid, ticks, Some(cg), false);
                id.or_else(|| self.cgroups.via_walk(&mut self.strings, cg))
            }
        } else if kind != Kind::ProcessExec && entry_id.is_some() {
            guessed = entry_guessed;
            entry_id.clone()
        } else {
            // No cgroup id (audit, pid-only sources): ask /proc while the process lives. An
            // entry without a start tick (an audit exec or fork) learns it from the same read.
            let early = kind == Kind::ProcessExec;
            let (id, got, start) = self.container_via_proc(p.pid, ticks, None, early);
            learned = got;
            if let (Some(i), Some(start), UNKNOWN_START) = (idx, start, ticks) {
                self.store.entry_mut(i).start_ticks = start;
            }
            id
        };
        if found.is_none() {
            // Best effort: what this process had before exec, else its parent's. A guess (the
            // process may have moved to another cgroup since): said so in `incomplete`.
            found = entry_id.or_else(|| {
                let parent = self.store.find_parent(p.ppid, ticks)?;
                self.store.entry(parent).container_id.clone()
            });
            guessed = found.is_some();
        }
        match found {
            Some(id) => {
                p.container_id = id.to_string();
                if guessed {
                    add_marker(p, "container_id");
                } else {
                    take_marker(p, "container_id");
                }
                if let Some(i) = idx {
                    let e = self.store.entry_mut(i);
                    e.container_id = Some(id);
                    e.container_guessed = guessed;
                    if !guessed {
                        if cg != 0 {
                            e.cgroup_id = cg;
                        } else if let Some(l) = learned {
                            e.cgroup_id = l;
                        }
                    }
                }
            }
            None => {
                p.container_id.clear();
                add_marker(p, "container_id");
            }
        }
        if p.cgroup_id == 0 {
            if let Some(i) = idx {
                let e = self.store.entry(i);
                p.cgroup_id = e.cgroup_id;
                // An audit event's cgroup id comes from the /proc read above (or an earlier one
                // of this process): known unless that answer was a guess.
                if e.cgroup_id != 0 && !e.container_guessed {
                    take_marker(p, "cgroup_id");
                }
            }
        }
    }
}
