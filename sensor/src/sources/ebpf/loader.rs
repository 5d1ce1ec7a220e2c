//! An `EbpfLoader` made without parsing the kernel's BTF.
//!
//! aya 0.14's `EbpfLoader::new()` reads and parses `/sys/kernel/btf/vmlinux` at once (about
//! 15 MB of transient heap), and `.btf(None)` only drops the result. The sensor needs no BTF
//! in aya (no CO-RE relocations; offsets come from `crate::btf`), and that parse is its peak
//! of resident memory (see `docs/ARCHITECTURE.md#kernel-user-contract`). So the loader is
//! made on a short-lived thread that has its own mount namespace, in which an empty file
//! (`/dev/null`) is bound over `/sys/kernel/btf/vmlinux`: aya's read yields nothing and it
//! keeps no BTF. Nothing outside that thread sees the mount, and it goes when the thread
//! ends. Should any step fail, the loader is made the ordinary way.
use std::ffi::CStr;

use aya::EbpfLoader;

const VMLINUX_BTF: &CStr = c"/sys/kernel/btf/vmlinux";

/// A loader that did not parse the kernel's BTF, when the namespace trick works.
pub fn without_kernel_btf() -> EbpfLoader<'static> {
    let made = std::thread::Builder::new()
        .name("ebpf-loader".into())
        .spawn(|| hide_vmlinux_btf().then(EbpfLoader::new))
        .ok()
        .and_then(|h| h.join().ok())
        .flatten();
    made.unwrap_or_else(|| {
        tracing::debug!("could not hide the kernel BTF from aya; it parses it once");
        EbpfLoader::new()
    })
}

/// In the calling thread only: a private mount namespace with `/dev/null` over the BTF file.
fn hide_vmlinux_btf() -> bool {
    // SAFETY: unshare and mount take flags and NUL-terminated strings; they change only this
    // thread's view (CLONE_FS makes the namespace per thread).
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS | libc::CLONE_FS) != 0 {
            return false;
        }
        // No propagation back to the host's namespace.
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return false;
        }
        libc::mount(
            c"/dev/null".as_ptr(),
            VMLINUX_BTF.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        ) == 0
    }
}
