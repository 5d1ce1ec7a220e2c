//! connect on AF_INET/AF_INET6 sockets at `__sys_connect_file`, the function every path to a
//! socket's connect goes through: the native and the ia32 syscall, ia32 `socketcall`, and
//! io_uring's `IORING_OP_CONNECT`. An fexit program sees the arguments and the result at once,
//! with no per-call state and no limit on concurrent calls (a kretprobe has one).
use aya_ebpf::{macros::fexit, programs::FExitContext};
use sensor_common::{
    offsets::OFFSETS_MAGIC, ConnectStash, DROP_SLOT_SHED_CONNECT, SHED_LEVEL_KERNEL_CONNECT,
};

use crate::{
    connect::{emit, AF_INET, AF_INET6},
    maps::{count_drop, off, shed_level},
    task::{current_task, read, read_ptr, Ptr},
};

/// `int __sys_connect_file(struct file *file, struct sockaddr_storage *address, int addrlen,
/// int file_flags)`: the address is the kernel's copy.
#[fexit(function = "__sys_connect_file")]
pub fn connect_file_exit(ctx: FExitContext) -> u32 {
    match try_exit(&ctx) {
        Ok(v) | Err(v) => v,
    }
}

fn try_exit(ctx: &FExitContext) -> Result<u32, u32> {
    if off!(magic) != OFFSETS_MAGIC {
        return Ok(0);
    }
    let file: u64 = ctx.arg(0);
    let addr: u64 = ctx.arg(1);
    let addrlen: u64 = ctx.arg(2);
    // An fexit program's context holds the arguments followed by the return value.
    let ret: u64 = ctx.arg(4);
    let addrlen = addrlen as i32;
    let uaddr = addr as Ptr;
    let family: u16 = read(uaddr, 0).map_err(|_| 0u32)?;
    let port_be: u16 = read(uaddr, 2).map_err(|_| 0u32)?;
    let mut stash = ConnectStash {
        family,
        dst_port: u16::from_be(port_be),
        fd: -1,
        dst_addr: [0; 16],
    };
    match family {
        AF_INET if addrlen >= 8 => {
            let a: [u8; 4] = read(uaddr, 4).map_err(|_| 0u32)?;
            stash.dst_addr[..4].copy_from_slice(&a);
        }
        AF_INET6 if addrlen >= 24 => {
            stash.dst_addr = read(uaddr, 8).map_err(|_| 0u32)?;
        }
        _ => return Ok(0),
    }
    if shed_level() >= SHED_LEVEL_KERNEL_CONNECT {
        count_drop(DROP_SLOT_SHED_CONNECT);
        return Ok(0);
    }
    let sock_type = socket_type(file as Ptr).unwrap_or(0);
    emit(current_task(), &stash, sock_type, ret as i32);
    Ok(0)
}

/// `file->private_data` is the `struct socket`; its `type` says stream or datagram.
fn socket_type(file: Ptr) -> Result<u16, i32> {
    if file.is_null() {
        return Err(0);
    }
    let sock = read_ptr(file, off!(file_private_data))?;
    if sock.is_null() {
        return Err(0);
    }
    read::<u16>(sock, off!(socket_type))
}
