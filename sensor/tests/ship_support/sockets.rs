//! Sockets of a process from /proc: its socket inodes (/proc/<pid>/fd) against
//! /proc/<pid>/net/{tcp,tcp6,udp,udp6,unix}.
#![allow(dead_code)]

use std::collections::HashSet;

/// Socket inodes among `pid`'s open file descriptors.
pub fn socket_inodes(pid: u32) -> HashSet<u64> {
    let mut out = HashSet::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if let Ok(t) = std::fs::read_link(e.path()) {
            let t = t.to_string_lossy().into_owned();
            if let Some(n) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                out.insert(n.parse().unwrap());
            }
        }
    }
    out
}

/// A socket from /proc/net/{tcp,tcp6,udp,udp6}: (inode, state, local port, remote port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InetSock {
    pub inode: u64,
    pub state: u8,
    pub local_port: u16,
    pub remote_port: u16,
}

fn port_of(addr: &str) -> u16 {
    u16::from_str_radix(addr.rsplit(':').next().unwrap_or("0"), 16).unwrap_or(0)
}

pub fn parse_inet(text: &str) -> Vec<InetSock> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(InetSock {
                inode: f.get(9)?.parse().ok()?,
                state: u8::from_str_radix(f.get(3)?, 16).ok()?,
                local_port: port_of(f.get(1)?),
                remote_port: port_of(f.get(2)?),
            })
        })
        .collect()
}

/// Inodes of listening unix sockets (flag __SO_ACCEPTCON).
pub fn parse_unix_listening(text: &str) -> HashSet<u64> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
            let inode = f.get(6)?.parse().ok()?;
            (flags & 0x0001_0000 != 0).then_some(inode)
        })
        .collect()
}

pub const TCP_ESTABLISHED: u8 = 0x01;
pub const TCP_LISTEN: u8 = 0x0a;

pub struct SocketReport {
    pub listening: Vec<String>,
    pub tcp: Vec<InetSock>,
}

pub fn report(pid: u32) -> SocketReport {
    let mine = socket_inodes(pid);
    let mut listening = Vec::new();
    let mut tcp = Vec::new();
    for proto in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{proto}")).unwrap_or_default();
        for s in parse_inet(&text)
            .into_iter()
            .filter(|s| mine.contains(&s.inode))
        {
            if s.state == TCP_LISTEN {
                listening.push(format!("{proto} port {} inode {}", s.local_port, s.inode));
            }
            tcp.push(s);
        }
    }
    for proto in ["udp", "udp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{proto}")).unwrap_or_default();
        // Any UDP socket receives datagrams sent to its port: none is allowed.
        for s in parse_inet(&text)
            .into_iter()
            .filter(|s| mine.contains(&s.inode))
        {
            listening.push(format!("{proto} port {} inode {}", s.local_port, s.inode));
        }
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).unwrap_or_default();
    for inode in parse_unix_listening(&text).intersection(&mine) {
        listening.push(format!("unix inode {inode}"));
    }
    SocketReport { listening, tcp }
}
