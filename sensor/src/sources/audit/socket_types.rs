//! Socket types learned from audited socket(2) calls, so a later connect(2) on that fd can be
//! reported as TCP or UDP (audit's SOCKADDR record carries only the address). Falls back to
//! /proc when the socket was created before the sensor started or inherited.
use std::collections::HashMap;

/// (pid -> fd -> SOCK_* type), bounded.
#[derive(Debug, Default)]
pub struct SocketTypes {
    by_pid: HashMap<u32, HashMap<i32, u16>>,
    entries: usize,
    cap: usize,
}

impl SocketTypes {
    pub fn new(cap: usize) -> Self {
        Self {
            by_pid: HashMap::new(),
            entries: 0,
            cap,
        }
    }

    pub fn insert(&mut self, pid: u32, fd: i32, sock_type: u16) {
        if self.entries >= self.cap {
            // Bounded: forget everything rather than grow; lookups fall back to /proc.
            self.by_pid.clear();
            self.entries = 0;
        }
        if self
            .by_pid
            .entry(pid)
            .or_default()
            .insert(fd, sock_type)
            .is_none()
        {
            self.entries += 1;
        }
    }

    pub fn get(&self, pid: u32, fd: i32) -> Option<u16> {
        self.by_pid.get(&pid)?.get(&fd).copied()
    }

    pub fn forget_pid(&mut self, pid: u32) {
        if let Some(m) = self.by_pid.remove(&pid) {
            self.entries -= m.len();
        }
    }

    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

/// The socket type of `pid`'s `fd` from /proc: the fd's socket inode looked up in the
/// process's /proc/<pid>/net/{tcp,tcp6,udp,udp6} tables. `None` when gone or not found.
pub fn from_proc(pid: u32, fd: i32) -> Option<u16> {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let inode = parse_socket_link(link.to_str()?)?;
    for (table, ty) in [("tcp", 1u16), ("tcp6", 1), ("udp", 2), ("udp6", 2)] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok()?;
        if table_has_inode(&text, inode) {
            return Some(ty);
        }
    }
    None
}

/// `socket:[12345]` -> 12345.
pub fn parse_socket_link(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Whether a /proc/net/{tcp,udp}[6] table lists `inode` (10th column).
pub fn table_has_inode(table: &str, inode: u64) -> bool {
    table.lines().skip(1).any(|l| {
        l.split_whitespace()
            .nth(9)
            .and_then(|v| v.parse::<u64>().ok())
            == Some(inode)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_and_forgets() {
        let mut s = SocketTypes::new(3);
        s.insert(1, 3, 1);
        s.insert(1, 4, 2);
        s.insert(1, 4, 2);
        assert_eq!(
            (s.get(1, 3), s.get(1, 4), s.get(2, 3)),
            (Some(1), Some(2), None)
        );
        assert_eq!(s.len(), 2);
        s.forget_pid(1);
        assert!(s.is_empty());
        for fd in 0..10 {
            s.insert(9, fd, 1);
        }
        assert!(s.len() <= 3);
    }

    #[test]
    fn proc_parsers() {
        assert_eq!(parse_socket_link("socket:[4242]"), Some(4242));
        assert_eq!(parse_socket_link("pipe:[1]"), None);
        assert_eq!(parse_socket_link("socket:[x]"), None);
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n";
        assert!(table_has_inode(t, 4242));
        assert!(!table_has_inode(t, 1));
        assert!(!table_has_inode("garbage", 1));
    }
}
