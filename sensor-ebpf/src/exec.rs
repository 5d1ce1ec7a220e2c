//! `sched/sched_process_exec`: the new program image, its argv, cwd and credentials.
use core::ffi::c_void;

use aya_ebpf::{
    helpers::{
        bpf_probe_read_kernel_str_bytes,
        generated::{bpf_probe_read_kernel_str, bpf_probe_read_user},
    },
    macros::tracepoint,
    programs::TracePointContext,
    EbpfContext,
};
use sensor_common::{
    exec_sections, offsets::OFFSETS_MAGIC, ExecEvent, WalkHead, ARGV_BUF, ARGV_LEN, ARGV_MIN_BOUND,
    ARGV_TAIL, CWD_PARTS, CWD_PART_LEN, DROP_SLOT_EXEC, EXEC_FIXED_LEN, FILENAME_LEN,
    FLAG_ARGV_ERROR, FLAG_ARGV_TRUNCATED, FLAG_CWD_ERROR, FLAG_CWD_TRUNCATED, FLAG_EXE_DELETED,
    FLAG_EXE_DETACHED, FLAG_EXE_ERROR, FLAG_EXE_TRUNCATED, FLAG_FILENAME_TRUNCATED, KIND_EXEC,
};

use crate::{
    maps::{count_drop, off, EVENTS, EXEC_SCRATCH},
    task::{current_task, fill_process, header, read_ptr, read_ptr_pair, Ptr},
};

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    match try_exec(&ctx) {
        Ok(v) | Err(v) => v,
    }
}

fn try_exec(ctx: &TracePointContext) -> Result<u32, u32> {
    if off!(magic) != OFFSETS_MAGIC {
        return Ok(0);
    }
    // SAFETY: a BPF helper without arguments or preconditions.
    let cpu = unsafe { aya_ebpf::helpers::bpf_get_smp_processor_id() };
    let ev = match EXEC_SCRATCH.get_ptr_mut(cpu) {
        // SAFETY: `p` is the non-null pointer the map lookup returned to this CPU's slot of
        // EXEC_SCRATCH, aligned and sized for an ExecEvent; only this program on this CPU uses the
        // slot (indexed by the CPU id), the kernel does not nest it on one CPU, and userspace never
        // writes it after load, so the &mut is unique while it lives.
        Some(p) => unsafe { &mut *p },
        None => return Err(0),
    };
    let task = current_task();
    ev.header = header(KIND_EXEC, 0);
    // The committed credentials, read once for the record and the credential check.
    let creds = crate::privilege::cred_snapshot(task).ok();
    fill_process(&mut ev.process, task, creds.as_ref());
    crate::privilege::check_exec_creds(task, ev.header.tgid, creds);
    if noise_filtered(ev) {
        return Ok(0);
    }

    // `data`: the filename, the cwd walk's used slots, the exe walk's, argv, each section where
    // the previous one ends (`exec_sections`, which the decoder uses too), so the record
    // carries only what is used. Each input is bounded by a comparison the verifier sees, and
    // the walks write slot i at a constant offset from their section's start, as a fixed
    // layout would.
    read_filename(ctx, ev);
    let name_len = clamp(ev.filename_len, FILENAME_LEN as u32);
    let (cwd_at, _, _) = exec_sections(name_len, 0, 0);
    read_cwd(task, ev, cwd_at);
    let cwd_depth = clamp(ev.cwd.depth, CWD_PARTS as u32);
    let (_, exe_at, _) = exec_sections(name_len, cwd_depth, 0);
    let mm = read_ptr(task, off!(task_mm));
    read_exe(mm, ev, exe_at);
    let exe_depth = clamp(ev.exe.depth, CWD_PARTS as u32);
    let (_, _, argv_at) = exec_sections(name_len, cwd_depth, exe_depth);
    read_argv(mm, ev, argv_at);

    let argv_len = (ev.argv_len as usize).min(ARGV_BUF);
    let size = EXEC_FIXED_LEN + argv_at as usize + ((argv_len + 7) & !7);
    if size > core::mem::size_of::<ExecEvent>() {
        return Err(0);
    }
    ev.header.size = size as u32;
    // SAFETY: `ev` is a valid ExecEvent in map memory, which the kernel zero-fills at creation
    // (padding included), so all of its bytes are initialised; `size` was checked above to be at
    // most size_of::<ExecEvent>(), and the slice is dropped before `ev` is written again.
    let bytes = unsafe { core::slice::from_raw_parts(ev as *const ExecEvent as *const u8, size) };
    if EVENTS
        .output::<[u8]>(bytes, crate::maps::wakeup_flags())
        .is_err()
    {
        count_drop(DROP_SLOT_EXEC);
    }
    Ok(0)
}

/// The in-kernel noise rules: an exec whose comm is listed is dropped here (counted per
/// rule) and never crosses the ring buffer; the process is remembered so its exit is dropped
/// too, unless an earlier exec of the same process was shipped.
#[inline(always)]
fn noise_filtered(ev: &ExecEvent) -> bool {
    if !crate::maps::noise_enabled() {
        return false;
    }
    let tgid = ev.header.tgid;
    let start = ev.process.start_boottime_ns;
    // SAFETY: the rule index (a u32) is copied out at once; the element memory of this preallocated
    // hash map stays valid while the program runs, so userspace replacing or deleting the entry can
    // at worst give a stale copy.
    let Some(rule) = (unsafe { crate::maps::NOISE_COMMS.get(ev.process.comm) }).copied() else {
        let _ = crate::maps::EXEC_STATE.insert(
            tgid,
            sensor_common::ExecState {
                start_boottime_ns: start,
                dropped: 0,
                rule: 0,
            },
            0,
        );
        return false;
    };
    // SAFETY: the entry (plain integers) is read once, in place, to compute a bool; the element
    // memory of this LRU map (always preallocated) stays valid while the program runs, so a
    // concurrent update can only make the answer stale.
    let shipped_before = unsafe { crate::maps::EXEC_STATE.get(tgid) }
        .is_some_and(|s| s.dropped == 0 && s.start_boottime_ns == start);
    if !shipped_before {
        let _ = crate::maps::EXEC_STATE.insert(
            tgid,
            sensor_common::ExecState {
                start_boottime_ns: start,
                dropped: 1,
                rule,
            },
            0,
        );
    }
    crate::maps::count_noise(rule.min(sensor_common::NOISE_RULES_MAX - 1));
    true
}

/// `v`, at most `max` (a bound the verifier learns from the comparison).
#[inline(always)]
fn clamp(v: u32, max: u32) -> u32 {
    if v > max {
        max
    } else {
        v
    }
}

fn read_filename(ctx: &TracePointContext, ev: &mut ExecEvent) {
    ev.filename_len = 0;
    // SAFETY: read_at copies the __data_loc word of the filename field (its offset comes from the
    // sched_process_exec format file) out of the tracepoint record with a bounds-checked probe read
    // (a bad offset is an Err, never a fault); an integer has no invalid values.
    let loc: u32 = match unsafe { ctx.read_at(off!(tp_exec_filename) as usize) } {
        Ok(v) => v,
        Err(_) => return,
    };
    let data_off = (loc & 0xffff) as usize;
    let data_len = (loc >> 16) as usize; // includes the NUL
    let src = (ctx.as_ptr() as *const u8).wrapping_add(data_off);
    // SAFETY: the helper reads a NUL-terminated string from kernel memory (here the tracepoint
    // record) into the first FILENAME_LEN bytes of `ev.data`, writing at most that; a bad
    // address gives an error, not a fault.
    if let Ok(s) = unsafe { bpf_probe_read_kernel_str_bytes(src, &mut ev.data[..FILENAME_LEN]) } {
        // Its NUL included.
        ev.filename_len = s.len() as u32 + 1;
    }
    if data_len > FILENAME_LEN {
        ev.process.flags |= FLAG_FILENAME_TRUNCATED;
    }
}

/// The argv bound (`sensor.argv_max_bytes`), set by userspace; clamped to
/// [`ARGV_MIN_BOUND`, `ARGV_LEN`].
#[unsafe(no_mangle)]
pub static ARGV_BOUND: u32 = ARGV_LEN as u32;

#[inline(always)]
fn argv_bound() -> u64 {
    // SAFETY: ARGV_BOUND is a valid, aligned static; the volatile read keeps the compiler from
    // folding its initialiser (userspace rewrites the value in the object before load, nothing
    // writes it after).
    let b = unsafe { core::ptr::read_volatile(&raw const ARGV_BOUND) } as u64;
    b.clamp(ARGV_MIN_BOUND as u64, ARGV_LEN as u64)
}

/// Copies argv from the new image's memory: whole when it fits the bound, else the head
/// (`bound - ARGV_TAIL` bytes) and the last `ARGV_TAIL` bytes, with the count left out.
fn read_argv(mm: Result<Ptr, i32>, ev: &mut ExecEvent, argv_at: u32) {
    ev.argv_len = 0;
    ev.argv_omitted = 0;
    ev.argv_head_len = 0;
    let Ok(mm) = mm else {
        ev.process.flags |= FLAG_ARGV_ERROR;
        return;
    };
    let Ok((start, end)) =
        read_ptr_pair(mm, off!(mm_arg_start), off!(mm_arg_end)).map(|(s, e)| (s as u64, e as u64))
    else {
        ev.process.flags |= FLAG_ARGV_ERROR;
        return;
    };
    if end <= start {
        return;
    }
    let total = end - start;
    let bound = argv_bound();
    let base = ev.data.as_mut_ptr().wrapping_add(argv_at as usize);
    if total <= bound {
        // 1..=ARGV_LEN, in a form the verifier can bound.
        let len = (((total - 1) as u32) & (ARGV_LEN as u32 - 1)) + 1;
        // SAFETY: the destination is `argv_at` (at most EXEC_STRINGS_MAX) bytes into `ev.data`,
        // which leaves ARGV_BUF bytes after it, and `len` is masked into 1..=ARGV_LEN <=
        // ARGV_BUF; the source is a user address the helper checks, returning an error on a
        // fault.
        let ret = unsafe { bpf_probe_read_user(base as *mut c_void, len, start as *const c_void) };
        if ret < 0 {
            ev.process.flags |= FLAG_ARGV_ERROR;
            return;
        }
        ev.argv_len = len;
        return;
    }
    ev.process.flags |= FLAG_ARGV_TRUNCATED;
    let head = ((bound as u32) - ARGV_TAIL as u32) & (ARGV_LEN as u32 - 1);
    // SAFETY: as above; `head` is masked below ARGV_LEN, inside the ARGV_BUF destination.
    let ret = unsafe { bpf_probe_read_user(base as *mut c_void, head, start as *const c_void) };
    if ret < 0 {
        ev.process.flags |= FLAG_ARGV_ERROR;
        return;
    }
    let tail_dst = base.wrapping_add(head as usize);
    let tail_src = end - ARGV_TAIL as u64;
    // SAFETY: the destination is argv's start + head, with head < ARGV_LEN, and ARGV_TAIL bytes
    // are written: head + ARGV_TAIL < ARGV_LEN + ARGV_TAIL = ARGV_BUF, the room after argv's
    // start in `ev.data`; the user source is checked by the helper.
    let ret = unsafe {
        bpf_probe_read_user(
            tail_dst as *mut c_void,
            ARGV_TAIL as u32,
            tail_src as *const c_void,
        )
    };
    if ret < 0 {
        // Keep the head alone, cut as before.
        ev.argv_len = head;
        return;
    }
    ev.argv_head_len = head;
    ev.argv_len = head + ARGV_TAIL as u32;
    ev.argv_omitted = (total - (head as u64 + ARGV_TAIL as u64)) as u32;
}

/// Walks `current->fs->pwd` into `ev.cwd` and the slots at `at` in `ev.data`.
fn read_cwd(task: Ptr, ev: &mut ExecEvent, at: u32) {
    ev.cwd.depth = 0;
    ev.cwd.mounts = 0;
    let Ok(fs) = read_ptr(task, off!(task_fs)) else {
        ev.process.flags |= FLAG_CWD_ERROR;
        return;
    };
    let slots = ev.data.as_mut_ptr().wrapping_add(at as usize);
    match walk(fs.wrapping_add(off!(fs_pwd) as usize), &mut ev.cwd, slots) {
        Walk::Done | Walk::Detached => {}
        Walk::Truncated => ev.process.flags |= FLAG_CWD_TRUNCATED,
        Walk::Error => ev.process.flags |= FLAG_CWD_ERROR,
    }
}

/// Walks `current->mm->exe_file->f_path` into `ev.exe` and the slots at `at` in `ev.data`.
fn read_exe(mm: Result<Ptr, i32>, ev: &mut ExecEvent, at: u32) {
    ev.exe.depth = 0;
    ev.exe.mounts = 0;
    let Ok(file) = mm.and_then(|mm| read_ptr(mm, off!(mm_exe_file))) else {
        ev.process.flags |= FLAG_EXE_ERROR;
        return;
    };
    if file.is_null() {
        ev.process.flags |= FLAG_EXE_ERROR;
        return;
    }
    let path = file.wrapping_add(off!(file_f_path) as usize);
    if exe_unlinked(path) {
        ev.process.flags |= FLAG_EXE_DELETED;
    }
    let slots = ev.data.as_mut_ptr().wrapping_add(at as usize);
    match walk(path, &mut ev.exe, slots) {
        Walk::Done => {}
        Walk::Detached => ev.process.flags |= FLAG_EXE_DELETED | FLAG_EXE_DETACHED,
        Walk::Truncated => ev.process.flags |= FLAG_EXE_TRUNCATED,
        Walk::Error => ev.process.flags |= FLAG_EXE_ERROR,
    }
}

/// Whether the dentry of `path` is unhashed but still has a parent: its file was deleted
/// (what `d_unlinked` tests, and why `d_path` appends " (deleted)").
#[inline(always)]
fn exe_unlinked(path: Ptr) -> bool {
    let Ok(dentry) = read_ptr(path, off!(path_dentry)) else {
        return false;
    };
    let Ok((pprev, parent)) = read_ptr_pair(dentry, off!(dentry_hash_pprev), off!(dentry_parent))
    else {
        return false;
    };
    pprev.is_null() && parent != dentry
}

enum Walk {
    Done,
    /// Ended at a dentry that is its own parent but no mount's root: a pseudo file (memfd)
    /// whose one component is its name.
    Detached,
    Truncated,
    Error,
}

/// Walks the `struct path` at `path` up to the root, crossing mounts, innermost step first.
///
/// Each loop step writes its own slot (a component at `slots` + i * CWD_PART_LEN, or a
/// mount-crossing bit), so the only scalar the verifier must track precisely is the loop
/// counter and branch states merge.
/// Helper calls are the cost here (docs/ARCHITECTURE.md, "Kernel-side cost"): the mount's
/// root is read once per mount, and adjacent pointers (`path`'s two, a mount's parent and
/// mountpoint, a dentry's parent and name) with one read where the layout allows.
#[inline(always)]
fn walk(path: Ptr, out: &mut WalkHead, slots: *mut u8) -> Walk {
    let Ok((mut vfsmnt, mut dentry)) = read_ptr_pair(path, off!(path_mnt), off!(path_dentry))
    else {
        return Walk::Error;
    };
    let mount_mnt = off!(mount_mnt) as usize;
    let mut mount = vfsmnt.wrapping_sub(mount_mnt);
    // The root of the mount the walk is in, read when first needed after each crossing.
    let mut mnt_root: Option<Ptr> = None;
    for i in 0..CWD_PARTS {
        out.depth = i as u32;
        let root = match mnt_root {
            Some(r) => r,
            None => {
                let Ok(r) = read_ptr(vfsmnt, off!(vfsmount_root)) else {
                    return Walk::Error;
                };
                mnt_root = Some(r);
                r
            }
        };
        if dentry == root {
            let Ok((parent_mount, mountpoint)) =
                read_ptr_pair(mount, off!(mount_parent), off!(mount_mountpoint))
            else {
                return Walk::Error;
            };
            if parent_mount == mount {
                return Walk::Done;
            }
            out.mounts |= 1 << i;
            dentry = mountpoint;
            mount = parent_mount;
            vfsmnt = mount.wrapping_add(mount_mnt);
            mnt_root = None;
            continue;
        }
        let Ok((parent, name)) = read_ptr_pair(
            dentry,
            off!(dentry_parent),
            off!(dentry_name) + off!(qstr_name),
        ) else {
            return Walk::Error;
        };
        // A pseudo dentry (memfd, anonymous file) is its own parent: its name is kept too, as
        // d_path would.
        let slot = slots.wrapping_add(i * CWD_PART_LEN);
        // SAFETY: `slot` is slot i (< CWD_PARTS) of the walk's slots, which the caller placed
        // inside `ev.data` with room for all CWD_PARTS of them; the helper copies a
        // NUL-terminated kernel string (the dentry name), at most CWD_PART_LEN bytes with its
        // NUL, and returns an error, not a fault, for a bad address.
        let n = unsafe {
            bpf_probe_read_kernel_str(
                slot as *mut c_void,
                CWD_PART_LEN as u32,
                name as *const c_void,
            )
        };
        if n <= 0 {
            // SAFETY: as above, `slot` is inside `ev.data`.
            unsafe { *slot = 0 };
        }
        if parent == dentry {
            out.depth = i as u32 + 1;
            return Walk::Detached;
        }
        dentry = parent;
    }
    out.depth = CWD_PARTS as u32;
    Walk::Truncated
}
