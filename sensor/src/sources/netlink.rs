//! A bound AF_NETLINK socket (thin, kernel-facing): the one piece of socket plumbing the audit,
//! proc-connector and conntrack sources share. Message formats live with each source.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

pub struct NetlinkSocket {
    fd: OwnedFd,
    buf: Vec<u8>,
}

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
        })
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
        // SAFETY: sockaddr_nl for the kernel (pid 0).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
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

    /// One datagram; `Ok(None)` on timeout. Other errors (ENOBUFS: the kernel dropped
    /// messages for this socket) are returned for the caller to count.
    pub fn recv(&mut self) -> std::io::Result<Option<&[u8]>> {
        self.recv_checked(false)
    }

    /// Like [`Self::recv`], but only datagrams the kernel sent (source port id 0); one from
    /// another socket (a process with CAP_NET_ADMIN can send to ours) is skipped.
    pub fn recv_from_kernel(&mut self) -> std::io::Result<Option<&[u8]>> {
        self.recv_checked(true)
    }

    fn recv_checked(&mut self, kernel_only: bool) -> std::io::Result<Option<&[u8]>> {
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
            if kernel_only && from.nl_pid != 0 {
                continue;
            }
            return Ok(Some(&self.buf[..n as usize]));
        }
    }

    /// Waits for one datagram (up to the receive timeout), then takes the datagrams already
    /// queued behind it, up to the batch's slots, in the same `recvmmsg(MSG_WAITFORONE)` call.
    /// Returns how many arrived (0 on timeout); [`RecvBatch::get`] reads them.
    pub fn recv_batch(&self, batch: &mut RecvBatch) -> std::io::Result<usize> {
        let slots = batch.sizes.len();
        let len = batch.len;
        let base = batch.buf.as_mut_ptr();
        let mut iov: Vec<libc::iovec> = (0..slots)
            .map(|i| libc::iovec {
                // SAFETY: slot i lies inside buf (slots * len bytes).
                iov_base: unsafe { base.add(i * len) }.cast(),
                iov_len: len,
            })
            .collect();
        // SAFETY: mmsghdr is plain old data; zeroed is a valid empty header.
        let mut msgs: Vec<libc::mmsghdr> =
            (0..slots).map(|_| unsafe { std::mem::zeroed() }).collect();
        for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
        }
        loop {
            // SAFETY: msgs and their iovecs point into live buffers of the stated sizes.
            let n = unsafe {
                libc::recvmmsg(
                    self.fd.as_raw_fd(),
                    msgs.as_mut_ptr(),
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
            for (size, m) in batch.sizes.iter_mut().zip(&msgs).take(n) {
                *size = (m.msg_len as usize).min(len);
            }
            batch.received = n;
            return Ok(n);
        }
    }
}

/// Receive slots for [`NetlinkSocket::recv_batch`]: up to `slots` datagrams of up to `len`
/// bytes each. The buffer is zero-allocated, so untouched slot pages cost no memory.
pub struct RecvBatch {
    buf: Vec<u8>,
    len: usize,
    sizes: Vec<usize>,
    received: usize,
}

impl RecvBatch {
    pub fn new(slots: usize, len: usize) -> Self {
        let slots = slots.max(1);
        Self {
            buf: vec![0u8; slots * len],
            len,
            sizes: vec![0; slots],
            received: 0,
        }
    }

    /// Datagram `i` of the last batch.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        if i >= self.received {
            return None;
        }
        Some(&self.buf[i * self.len..i * self.len + self.sizes[i]])
    }

    /// Whether the last batch filled every slot (more may be queued).
    pub fn full(&self) -> bool {
        self.received == self.sizes.len()
    }
}
