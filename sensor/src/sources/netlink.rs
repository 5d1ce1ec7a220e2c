//! A bound AF_NETLINK socket (thin, kernel-facing): the one piece of socket plumbing the audit,
//! proc-connector and conntrack sources share. Message formats live with each source.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

pub struct NetlinkSocket {
    fd: OwnedFd,
    buf: Vec<u8>,
    /// Where [`Self::recv`] and [`Self::recv_batch`] count the datagrams they skip as forged
    /// (see [`Self::count_forged_in`]).
    forged: &'static AtomicU64,
}

/// Forgeries skipped on a socket whose owner named no counter.
static FORGED_UNATTRIBUTED: AtomicU64 = AtomicU64::new(0);

impl NetlinkSocket {
    /// `socket(AF_NETLINK, sock_type | SOCK_CLOEXEC, protocol)` bound to the legacy multicast
    /// `groups` bitmask (0 for none); datagrams up to `buf_len` bytes are received whole.
    pub fn open(
        sock_type: i32,
        protocol: i32,
        groups: u32,
        buf_len: usize,
    ) -> std::io::Result<Self> {
        // SAFETY: plain socket(2); the fd is owned right below.
        let raw =
            unsafe { libc::socket(libc::AF_NETLINK, sock_type | libc::SOCK_CLOEXEC, protocol) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh, valid fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain old data.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        sa.nl_groups = groups;
        // SAFETY: valid address of the right size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            fd,
            buf: vec![0u8; buf_len],
            forged: &FORGED_UNATTRIBUTED,
        })
    }

    /// Counts the datagrams both receive paths skip as forged in `counter` (the owner's
    /// health counter: `conntrack_netlink_forged`, `audit_netlink_forged`).
    pub fn count_forged_in(&mut self, counter: &'static AtomicU64) {
        self.forged = counter;
    }

    /// Asks for a receive buffer of `bytes` (SO_RCVBUFFORCE when privileged, else SO_RCVBUF).
    pub fn set_rcvbuf(&self, bytes: u32) {
        let v = bytes.min(i32::MAX as u32) as i32;
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: valid int option.
            let rc = unsafe {
                libc::setsockopt(
                    self.fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&v as *const i32).cast(),
                    4,
                )
            };
            if rc == 0 {
                return;
            }
        }
    }

    /// Joins multicast `group` (NETLINK_ADD_MEMBERSHIP) on a socket already bound; the kernel
    /// checks the group's permission (CAP_AUDIT_READ for the audit log) here as at bind.
    pub fn add_membership(&self, group: u32) -> std::io::Result<()> {
        // SAFETY: valid u32 option.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_NETLINK,
                libc::NETLINK_ADD_MEMBERSHIP,
                (&group as *const u32).cast(),
                4,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receive timeout (SO_RCVTIMEO): `recv` returns `Ok(None)` after it.
    pub fn set_timeout(&self, timeout: Duration) -> std::io::Result<()> {
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as _,
            tv_usec: timeout.subsec_micros() as _,
        };
        // SAFETY: valid timeval option.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends one datagram to the kernel (port id 0).
    pub fn send(&self, datagram: &[u8]) -> std::io::Result<()> {
        self.send_to_port(0, datagram)
    }

    /// Sends one datagram to the socket with port id `port` (0: the kernel).
    fn send_to_port(&self, port: u32, datagram: &[u8]) -> std::io::Result<()> {
        // SAFETY: sockaddr_nl is plain old data.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        sa.nl_pid = port;
        // SAFETY: valid buffer and address.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                datagram.as_ptr().cast(),
                datagram.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// One datagram the kernel sent; `Ok(None)` on timeout. Other errors (ENOBUFS: the kernel
    /// dropped messages for this socket) are returned for the caller to count. Every user of
    /// this socket reads kernel messages (audit records, proc-connector notices, conntrack
    /// events), so a datagram from another socket (source port id not 0: a process with
    /// CAP_NET_ADMIN can send to ours) is a forgery and is skipped, here (counted in the
    /// counter [`Self::count_forged_in`] named), here and in [`Self::recv_batch`].
    pub fn recv(&mut self) -> std::io::Result<Option<&[u8]>> {
        loop {
            // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value.
            let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
            let mut from_len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            // SAFETY: buf is valid for writes of its length; `from` and `from_len` are valid
            // out-pointers and `from_len` holds the size of `from`.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                    (&mut from as *mut libc::sockaddr_nl).cast(),
                    &mut from_len,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => return Ok(None),
                    Some(libc::EINTR) => continue,
                    _ => return Err(e),
                }
            }
            if from.nl_pid != 0 {
                self.forged.fetch_add(1, Relaxed);
                continue;
            }
            return Ok(Some(&self.buf[..n as usize]));
        }
    }

    /// Waits for one datagram (up to the receive timeout), then takes the datagrams already
    /// queued behind it, up to the batch's slots, in the same `recvmmsg(MSG_WAITFORONE)` call.
    /// Returns how many arrived (0 on timeout); [`RecvBatch::get`] reads them and gives
    /// `None` for one another socket sent (skipped and counted as in [`Self::recv`]).
    pub fn recv_batch(&self, batch: &mut RecvBatch) -> std::io::Result<usize> {
        let slots = batch.sizes.len();
        let len = batch.len;
        batch.aim();
        loop {
            // SAFETY: msgs and their iovecs point into live buffers of the stated sizes.
            let n = unsafe {
                libc::recvmmsg(
                    self.fd.as_raw_fd(),
                    batch.hdrs.as_mut_ptr(),
                    slots as u32,
                    // The flags argument is c_int in glibc and c_uint in musl.
                    libc::MSG_WAITFORONE as _,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => return Ok(0),
                    Some(libc::EINTR) => continue,
                    _ => return Err(e),
                }
            }
            let n = n as usize;
            let RecvBatch {
                sizes, hdrs, from, ..
            } = batch;
            for ((size, m), f) in sizes.iter_mut().zip(hdrs.iter()).zip(from.iter()).take(n) {
                *size = if f.nl_pid == 0 {
                    (m.msg_len as usize).min(len)
                } else {
                    self.forged.fetch_add(1, Relaxed);
                    FOREIGN
                };
            }
            batch.received = n;
            return Ok(n);
        }
    }
}

/// Receive slots for [`NetlinkSocket::recv_batch`]: up to `slots` datagrams of up to `len`
/// bytes each. The buffer is zero-allocated, so untouched slot pages cost no memory. The
/// `recvmmsg` headers, iovecs and source addresses are allocated once here, not per call (the
/// audit reader calls it about once per exec: docs/ARCHITECTURE.md, Audit netlink).
pub struct RecvBatch {
    buf: Vec<u8>,
    len: usize,
    sizes: Vec<usize>,
    hdrs: Vec<libc::mmsghdr>,
    iov: Vec<libc::iovec>,
    from: Vec<libc::sockaddr_nl>,
    received: usize,
}

/// The size recorded for a slot whose datagram another socket sent.
const FOREIGN: usize = usize::MAX;

impl RecvBatch {
    pub fn new(slots: usize, len: usize) -> Self {
        let slots = slots.max(1);
        Self {
            buf: vec![0u8; slots * len],
            len,
            sizes: vec![0; slots],
            // SAFETY: mmsghdr, iovec and sockaddr_nl are plain old data; zeroed is valid.
            hdrs: (0..slots).map(|_| unsafe { std::mem::zeroed() }).collect(),
            iov: (0..slots).map(|_| unsafe { std::mem::zeroed() }).collect(),
            from: (0..slots).map(|_| unsafe { std::mem::zeroed() }).collect(),
            received: 0,
        }
    }

    /// Points every header at its slot, iovec and address again and resets what the kernel
    /// wrote into them on the last call (lengths, flags): no allocation.
    fn aim(&mut self) {
        let len = self.len;
        let base = self.buf.as_mut_ptr();
        for (i, ((m, v), f)) in self
            .hdrs
            .iter_mut()
            .zip(self.iov.iter_mut())
            .zip(self.from.iter_mut())
            .enumerate()
        {
            *v = libc::iovec {
                // SAFETY: slot i lies inside buf (slots * len bytes).
                iov_base: unsafe { base.add(i * len) }.cast(),
                iov_len: len,
            };
            // SAFETY: plain old data; all-zero is a valid value.
            *f = unsafe { std::mem::zeroed() };
            // SAFETY: as above; the pointers are set right below.
            *m = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_name = (f as *mut libc::sockaddr_nl).cast();
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        }
    }

    /// Datagram `i` of the last batch.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        if i >= self.received || self.sizes[i] == FOREIGN {
            return None;
        }
        Some(&self.buf[i * self.len..i * self.len + self.sizes[i]])
    }

    /// Whether the last batch filled every slot (more may be queued).
    pub fn full(&self) -> bool {
        self.received == self.sizes.len()
    }
}

/// Sends `datagram` to `victim` from a second socket of netlink `protocol`, as a process with
/// CAP_NET_ADMIN could; `false` (the caller's test is skipped) where this is not permitted.
#[cfg(test)]
pub(crate) fn send_forged(victim: &NetlinkSocket, protocol: i32, datagram: &[u8]) -> bool {
    let Ok(forger) = NetlinkSocket::open(libc::SOCK_RAW, protocol, 0, 4096) else {
        eprintln!("skipped: no second netlink socket of protocol {protocol} here");
        return false;
    };
    match forger.send_to_port(victim.port_id(), datagram) {
        Ok(()) => true,
        Err(e) => {
            // Unicast between user sockets needs CAP_NET_ADMIN: nothing to forge with.
            assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
            eprintln!("skipped: sending to another socket is not permitted here");
            false
        }
    }
}

#[cfg(test)]
impl NetlinkSocket {
    /// The port id the kernel gave this bound socket.
    fn port_id(&self) -> u32 {
        // SAFETY: sockaddr_nl is plain old data.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: valid fd and out-pointers of the stated size.
        let rc = unsafe {
            libc::getsockname(
                self.fd.as_raw_fd(),
                (&mut sa as *mut libc::sockaddr_nl).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        sa.nl_pid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A NETLINK_USERSOCK socket counting its forgeries in `forged`, with a 50 ms receive
    /// timeout; `None` (said on stderr) where the kernel has no such sockets.
    fn victim(forged: &'static AtomicU64) -> Option<NetlinkSocket> {
        let Ok(mut victim) = NetlinkSocket::open(libc::SOCK_RAW, libc::NETLINK_USERSOCK, 0, 4096)
        else {
            eprintln!("skipped: no NETLINK_USERSOCK sockets here");
            return None;
        };
        victim.count_forged_in(forged);
        victim.set_timeout(Duration::from_millis(50)).unwrap();
        Some(victim)
    }

    /// A datagram another socket sends to ours (a forged audit record or proc-connector
    /// notice) is never handed out, by either receive path, and is counted.
    #[test]
    fn datagrams_from_other_sockets_are_skipped() {
        static FORGED: AtomicU64 = AtomicU64::new(0);
        let Some(mut victim) = victim(&FORGED) else {
            return;
        };
        if !send_forged(&victim, libc::NETLINK_USERSOCK, b"forged fork notice") {
            return;
        }
        let mut batch = RecvBatch::new(4, 256);
        assert_eq!(victim.recv_batch(&mut batch).unwrap(), 1, "it arrived");
        assert_eq!(batch.get(0), None, "but is not handed out");
        assert_eq!(FORGED.load(Relaxed), 1, "and counted");
        assert!(send_forged(
            &victim,
            libc::NETLINK_USERSOCK,
            b"forged audit record"
        ));
        assert_eq!(victim.recv().unwrap(), None, "skipped, then the timeout");
        assert_eq!(FORGED.load(Relaxed), 2, "and counted by either path");
    }

    /// One `RecvBatch` serves call after call (its headers are set up again each time): a
    /// later batch of a different size is read whole and classified like the first.
    #[test]
    fn a_batch_is_reused_across_calls() {
        static FORGED: AtomicU64 = AtomicU64::new(0);
        let Some(victim) = victim(&FORGED) else {
            return;
        };
        let mut batch = RecvBatch::new(4, 256);
        for (round, n) in [(1, 3usize), (2, 1), (3, 4), (4, 2)] {
            for i in 0..n {
                let msg = format!("round {round} datagram {i}");
                if !send_forged(&victim, libc::NETLINK_USERSOCK, msg.as_bytes()) {
                    return;
                }
            }
            let before = FORGED.load(Relaxed);
            assert_eq!(victim.recv_batch(&mut batch).unwrap(), n, "round {round}");
            assert_eq!(FORGED.load(Relaxed) - before, n as u64, "round {round}");
            assert!((0..n).all(|i| batch.get(i).is_none()), "round {round}");
            assert_eq!(batch.full(), n == 4, "round {round}");
        }
        assert_eq!(
            victim.recv_batch(&mut batch).unwrap(),
            0,
            "then the timeout"
        );
    }
}
