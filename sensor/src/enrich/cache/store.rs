//! Slot storage for the process cache: a slab of entries with intrusive LRU links (u32
//! indexes), a live list in recency order, an exit-pending list in deadline order, and per-pid
//! chains (newest first). It knows keys, recency and expiry; not /proc, strings or containers.
use std::collections::HashMap;

use super::{CachedProcess, UNKNOWN_START};
pub(super) use crate::hashing::IdBuild;

pub(super) const NIL: u32 = u32::MAX;

struct Slot {
    proc_: Option<CachedProcess>,
    /// Links in the live (LRU) or exit-pending list; `next` links the free list.
    prev: u32,
    next: u32,
    /// Next entry with the same pid (newest first).
    pid_next: u32,
    /// CLOCK_MONOTONIC ns after which an exited entry goes; 0 = live.
    exit_deadline: u64,
    /// Marked exited without an exit event (sweep or pid reuse).
    lost: bool,
}

#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    len: usize,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        len: 0,
    };

    fn push_back(&mut self, slots: &mut [Slot], i: u32) {
        slots[i as usize].prev = self.tail;
        slots[i as usize].next = NIL;
        if self.tail == NIL {
            self.head = i;
        } else {
            slots[self.tail as usize].next = i;
        }
        self.tail = i;
        self.len += 1;
    }

    fn unlink(&mut self, slots: &mut [Slot], i: u32) {
        let (prev, next) = (slots[i as usize].prev, slots[i as usize].next);
        if prev == NIL {
            self.head = next;
        } else {
            slots[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            slots[next as usize].prev = prev;
        }
        self.len -= 1;
    }
}

/// The bounded slab. Indexes handed out stay valid until the entry is removed.
pub(super) struct Store {
    max_entries: usize,
    grace_ns: u64,
    slots: Vec<Slot>,
    free: u32,
    by_pid: HashMap<u32, u32, IdBuild>,
    live: List,
    exiting: List,
    /// Entries dropped because the store was full.
    pub evictions: u64,
    /// Entries removed without an exit event (see [`Store::mark_exit`]).
    pub swept_lost: u64,
}

impl Store {
    pub fn new(max_entries: usize, grace_ns: u64) -> Self {
        Self {
            max_entries: max_entries.clamp(1, (NIL - 1) as usize),
            grace_ns,
            slots: Vec::new(),
            free: NIL,
            by_pid: HashMap::default(),
            live: List::EMPTY,
            exiting: List::EMPTY,
            evictions: 0,
            swept_lost: 0,
        }
    }

    /// Live and exit-pending entries.
    pub fn len(&self) -> usize {
        self.live.len + self.exiting.len
    }

    pub fn exit_pending(&self) -> usize {
        self.exiting.len
    }

    /// Slots allocated (used and free); valid indexes are below this.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The entry at `i`, if the slot is in use.
    pub fn get(&self, i: u32) -> Option<&CachedProcess> {
        self.slots.get(i as usize).and_then(|s| s.proc_.as_ref())
    }

    pub fn entry(&self, i: u32) -> &CachedProcess {
        self.slots[i as usize]
            .proc_
            .as_ref()
            .expect("linked slot holds a process")
    }

    pub fn entry_mut(&mut self, i: u32) -> &mut CachedProcess {
        self.slots[i as usize]
            .proc_
            .as_mut()
            .expect("linked slot holds a process")
    }

    /// The slots linked from `start` by `link` (a pid chain, or the live list).
    fn follow(&self, start: u32, link: fn(&Slot) -> u32) -> impl Iterator<Item = u32> + '_ {
        let mut i = start;
        std::iter::from_fn(move || {
            if i == NIL {
                return None;
            }
            let cur = i;
            i = link(&self.slots[cur as usize]);
            Some(cur)
        })
    }

    /// The entries of `pid`, newest first.
    pub fn chain(&self, pid: u32) -> impl Iterator<Item = u32> + '_ {
        self.follow(self.by_pid.get(&pid).copied().unwrap_or(NIL), |s| {
            s.pid_next
        })
    }

    pub fn is_live(&self, i: u32) -> bool {
        self.slots[i as usize].exit_deadline == 0
    }

    /// The live entries, least recently used first.
    pub fn live(&self) -> impl Iterator<Item = u32> + '_ {
        self.follow(self.live.head, |s| s.next)
    }

    /// Exact key, or the newest live (else newest) entry of the pid when the start is unknown.
    pub fn find(&self, pid: u32, ticks: u64) -> Option<u32> {
        if ticks == UNKNOWN_START {
            return self
                .chain(pid)
                .find(|&i| self.is_live(i))
                .or_else(|| self.chain(pid).next());
        }
        self.chain(pid)
            .find(|&i| self.entry(i).start_ticks == ticks)
    }

    /// The parent of a child that started at `child_ticks`: the entry of `ppid` that started
    /// last, but not after the child.
    pub fn find_parent(&self, ppid: u32, child_ticks: u64) -> Option<u32> {
        let mut best: Option<(u64, u32)> = None;
        for i in self.chain(ppid) {
            let st = self.entry(i).start_ticks;
            let rank = if st == UNKNOWN_START {
                0
            } else if child_ticks == UNKNOWN_START || st <= child_ticks {
                st.saturating_add(1)
            } else {
                continue;
            };
            if best.is_none_or(|(r, _)| rank > r) {
                best = Some((rank, i));
            }
        }
        best.map(|(_, i)| i)
    }

    fn alloc(&mut self, p: CachedProcess) -> u32 {
        let slot = Slot {
            proc_: Some(p),
            prev: NIL,
            next: NIL,
            pid_next: NIL,
            exit_deadline: 0,
            lost: false,
        };
        if self.free != NIL {
            let i = self.free;
            self.free = self.slots[i as usize].next;
            self.slots[i as usize] = slot;
            return i;
        }
        if self.slots.len() == self.slots.capacity() {
            // Grow by a quarter (not double): the slab is most of the cache's memory.
            let room = self.max_entries.saturating_sub(self.slots.len()).max(1);
            self.slots
                .reserve_exact((self.slots.len() / 4).clamp(64, room.max(64)).min(room));
        }
        self.slots.push(slot);
        (self.slots.len() - 1) as u32
    }

    /// Adds a live entry (most recently used), evicting at the bound.
    pub fn insert(&mut self, p: CachedProcess, now: u64) -> u32 {
        let (pid, ticks) = (p.pid, p.start_ticks);
        if ticks != UNKNOWN_START {
            // A pid names one live process: older live entries of it missed their exit.
            loop {
                let stale = self.chain(pid).find(|&i| {
                    let st = self.entry(i).start_ticks;
                    self.is_live(i) && st != UNKNOWN_START && st < ticks
                });
                let Some(stale) = stale else { break };
                self.mark_exit(stale, now, true);
            }
        }
        while self.len() >= self.max_entries && self.evict_one() {}
        let i = self.alloc(p);
        self.slots[i as usize].pid_next = self.by_pid.insert(pid, i).unwrap_or(NIL);
        self.live.push_back(&mut self.slots, i);
        i
    }

    /// Evicts the oldest exit-pending entry, else the least recently used live one.
    fn evict_one(&mut self) -> bool {
        let i = if self.exiting.head != NIL {
            self.exiting.head
        } else if self.live.head != NIL {
            self.live.head
        } else {
            return false;
        };
        self.remove(i);
        self.evictions += 1;
        true
    }

    fn remove(&mut self, i: u32) {
        if self.is_live(i) {
            self.live.unlink(&mut self.slots, i);
        } else {
            self.exiting.unlink(&mut self.slots, i);
        }
        let pid = self.entry(i).pid;
        let next = self.slots[i as usize].pid_next;
        match self.by_pid.get(&pid).copied() {
            Some(head) if head == i => {
                if next == NIL {
                    self.by_pid.remove(&pid);
                } else {
                    self.by_pid.insert(pid, next);
                }
            }
            Some(head) => {
                let mut j = head;
                while j != NIL {
                    if self.slots[j as usize].pid_next == i {
                        self.slots[j as usize].pid_next = next;
                        break;
                    }
                    j = self.slots[j as usize].pid_next;
                }
            }
            None => {}
        }
        let slot = &mut self.slots[i as usize];
        slot.proc_ = None;
        slot.pid_next = NIL;
        slot.next = self.free;
        self.free = i;
    }

    /// Exit-pending until `now + grace`; `lost` = without an exit event. An exit event for an
    /// entry the sweep had marked lost clears the mark (the exit was late, not lost).
    pub fn mark_exit(&mut self, i: u32, now: u64, lost: bool) {
        let slot = &mut self.slots[i as usize];
        if slot.exit_deadline != 0 {
            if !lost {
                slot.lost = false;
            }
            return;
        }
        self.live.unlink(&mut self.slots, i);
        let slot = &mut self.slots[i as usize];
        slot.exit_deadline = now.saturating_add(self.grace_ns).max(1);
        slot.lost = lost;
        self.exiting.push_back(&mut self.slots, i);
    }

    /// Marks a live entry most recently used.
    pub fn touch(&mut self, i: u32) {
        if self.is_live(i) && self.live.tail != i {
            self.live.unlink(&mut self.slots, i);
            self.live.push_back(&mut self.slots, i);
        }
    }

    /// Removes up to `max` exit-pending entries whose grace period ended.
    pub fn expire(&mut self, now: u64, max: usize) -> usize {
        let mut n = 0;
        while n < max && self.exiting.head != NIL {
            let i = self.exiting.head;
            if self.slots[i as usize].exit_deadline > now {
                break;
            }
            if self.slots[i as usize].lost {
                self.swept_lost += 1;
            }
            self.remove(i);
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_stays_small() {
        assert!(
            std::mem::size_of::<Slot>() <= 192,
            "{}",
            std::mem::size_of::<Slot>()
        );
    }
}
