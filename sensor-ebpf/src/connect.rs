//! connect(2) on AF_INET/AF_INET6 sockets, from the syscall enter/exit tracepoints, so TCP and
//! UDP (and non-blocking connects) are all seen with the call's result. These are the fallback
//! for kernels where `connect_fexit` cannot attach: they do not see ia32 (`int 0x80`) or
//! io_uring connects.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use sensor_common::{
    offsets::OFFSETS_MAGIC, ConnectEvent, ConnectStash, ProcessInfo, DROP_SLOT_CONNECT,
    DROP_SLOT_CONNECT_STASH, DROP_SLOT_SHED_CONNECT, KIND_CONNECT, SHED_LEVEL_KERNEL_CONNECT,
};

use crate::{
    maps::{count_drop, off, shed_level, CONNECT_STASH, EVENTS},
    task::{current_task, fill_process, header, read, read_ptr, Ptr},
};

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
/// Syscall tracepoint arguments are `unsigned long`s after the 8-byte common header and the
/// syscall number: this layout is the tracepoint ABI and the same on every kernel.
const SYSCALL_ARG0: usize = 16;
const SYSCALL_RET: usize = 16;

#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    match try_enter(&ctx) {
        Ok(v) | Err(v) => v,
    }
}

#[tracepoint]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    match try_exit(&ctx) {
        Ok(v) | Err(v) => v,
    }
}

fn try_enter(ctx: &TracePointContext) -> Result<u32, u32> {
    if off!(magic) != OFFSETS_MAGIC {
        return Ok(0);
    }
    // SAFETY: read_at copies the first syscall argument (fd) at its offset in the
    // syscalls:sys_enter_connect format out of the tracepoint record with a bounds-checked probe
    // read (a bad offset is an Err, never a fault); an integer has no invalid values.
    let fd: u64 = unsafe { ctx.read_at(SYSCALL_ARG0) }.map_err(|_| 0u32)?;
    // SAFETY: as above (the second argument: the user-space sockaddr pointer, as an integer).
    let addr: u64 = unsafe { ctx.read_at(SYSCALL_ARG0 + 8) }.map_err(|_| 0u32)?;
    // SAFETY: as above (the third argument: addrlen).
    let addrlen: u64 = unsafe { ctx.read_at(SYSCALL_ARG0 + 16) }.map_err(|_| 0u32)?;
    let uaddr = addr as *const u8;
    // SAFETY: bpf_probe_read_user copies from a user-space address the caller chose; the helper
    // checks the address and returns an error on a fault, and a u16 has no invalid values.
    let family: u16 = unsafe { bpf_probe_read_user(uaddr as *const u16) }.map_err(|_| 0u32)?;
    let port_be: u16 =
        // SAFETY: as above (the port, 2 bytes in).
        unsafe { bpf_probe_read_user(uaddr.wrapping_add(2) as *const u16) }.map_err(|_| 0u32)?;
    let mut stash = ConnectStash {
        family,
        dst_port: u16::from_be(port_be),
        fd: fd as i32,
        dst_addr: [0; 16],
    };
    match family {
        AF_INET if addrlen >= 8 => {
            let a: [u8; 4] =
                // SAFETY: as above (the IPv4 address, 4 bytes at offset 4, inside the 8 bytes
                // addrlen allows).
                unsafe { bpf_probe_read_user(uaddr.wrapping_add(4) as *const [u8; 4]) }
                    .map_err(|_| 0u32)?;
            stash.dst_addr[..4].copy_from_slice(&a);
        }
        AF_INET6 if addrlen >= 24 => {
            stash.dst_addr =
                // SAFETY: as above (the IPv6 address, 16 bytes at offset 8, inside the 24 bytes
                // addrlen allows).
                unsafe { bpf_probe_read_user(uaddr.wrapping_add(8) as *const [u8; 16]) }
                    .map_err(|_| 0u32)?;
        }
        _ => return Ok(0),
    }
    // Over its CPU budget, userspace sheds connects: count them here instead of recording.
    if shed_level() >= SHED_LEVEL_KERNEL_CONNECT {
        count_drop(DROP_SLOT_SHED_CONNECT);
        return Ok(0);
    }
    let key = bpf_get_current_pid_tgid();
    if CONNECT_STASH.insert(key, stash, 0).is_err() {
        count_drop(DROP_SLOT_CONNECT_STASH);
    }
    Ok(0)
}

fn try_exit(ctx: &TracePointContext) -> Result<u32, u32> {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the stash (plain integers) is copied out (`*s`) at once; the element memory of this
    // preallocated map stays valid while the program runs, so a concurrent change can at worst give
    // a stale copy.
    let stash = match unsafe { CONNECT_STASH.get(key) } {
        Some(s) => *s,
        None => return Ok(0),
    };
    let _ = CONNECT_STASH.remove(key);
    // SAFETY: read_at copies the return value at its offset in the syscalls:sys_exit_connect format
    // out of the tracepoint record with a bounds-checked probe read (a bad offset is an Err, never
    // a fault); an integer has no invalid values.
    let ret: i64 = unsafe { ctx.read_at(SYSCALL_RET) }.map_err(|_| 0u32)?;
    let task = current_task();
    let sock_type = socket_type(task, stash.fd).unwrap_or(0);
    emit(task, &stash, sock_type, ret as i32);
    Ok(0)
}

/// Writes one connect record for the current task.
#[inline(always)]
pub fn emit(task: Ptr, stash: &ConnectStash, sock_type: u16, ret: i32) {
    let Some(mut entry) = EVENTS.reserve::<ConnectEvent>(0) else {
        count_drop(DROP_SLOT_CONNECT);
        return;
    };
    let ev = entry.write(record(stash, sock_type, ret));
    fill_process(&mut ev.process, task, None);
    entry.submit(crate::maps::wakeup_flags());
}

/// A connect record for the current thread, its process part still to be filled.
#[inline(always)]
pub fn record(stash: &ConnectStash, sock_type: u16, ret: i32) -> ConnectEvent {
    ConnectEvent {
        header: header(KIND_CONNECT, core::mem::size_of::<ConnectEvent>() as u32),
        process: ProcessInfo::zeroed(),
        family: stash.family,
        sock_type,
        dst_port: stash.dst_port,
        _pad0: 0,
        ret,
        fd: stash.fd,
        dst_addr: stash.dst_addr,
    }
}

/// `current->files->fdt->fd[fd]->private_data` is the `struct socket`; its `type` says
/// stream or datagram.
fn socket_type(task: Ptr, fd: i32) -> Result<u16, i32> {
    if fd < 0 {
        return Err(0);
    }
    let files = read_ptr(task, off!(task_files))?;
    let fdt = read_ptr(files, off!(files_fdt))?;
    let max_fds = read::<u32>(fdt, off!(fdtable_max_fds))?;
    if fd as u32 >= max_fds {
        return Err(0);
    }
    let fd_array = read_ptr(fdt, off!(fdtable_fd))?;
    let file = read_ptr(fd_array, (fd as u32) * 8)?;
    if file.is_null() {
        return Err(0);
    }
    let sock = read_ptr(file, off!(file_private_data))?;
    if sock.is_null() {
        return Err(0);
    }
    read::<u16>(sock, off!(socket_type))
}
