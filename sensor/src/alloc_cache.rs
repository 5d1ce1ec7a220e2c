//! The sensor binary's global allocator: the system allocator (glibc) behind a small
//! per-thread cache of freed small blocks (docs/ARCHITECTURE.md#event-model).
//!
//! Why: an exec storm allocates a batch of events (their texts: argv, paths, the ancestors'
//! names) while draining the ring buffer and frees the batch after writing it. glibc's
//! per-thread cache keeps 7 blocks per size, so nearly every one of those frees and the next
//! batch's mallocs go to the shared arena (its lock and bin searches), about a sixth of the
//! sensor's CPU in a profile. Here a thread keeps up to [`MAX_CACHED_BYTES`] of freed blocks
//! of up to [`MAX_SMALL`] bytes, in glibc's own size steps, and hands them out again first.
//!
//! Size classes are glibc's chunk sizes on 64-bit (a chunk of 16k bytes holds 16k - 8): a
//! request is rounded up to 24, 40, 56, ... 264 bytes, which glibc would have given it anyway,
//! so the rounding costs no memory. Bounds and safety: every cached block is a block glibc's
//! `malloc` returned, of its class's full size, so any block may be freed or reallocated by
//! glibc at any time; a thread's cache
//! goes back to glibc when the thread exits. At most [`MAX_CACHED_BYTES`] per thread are
//! held, memory the process had allocated a moment before (glibc keeps freed memory too).
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Largest request served from the cache.
pub const MAX_SMALL: usize = 256;
/// glibc's alignment and chunk step on 64-bit.
const GRANULE: usize = 16;
/// The smallest class: the usable size of glibc's smallest chunk (32 bytes less its 8-byte
/// header).
const SMALLEST: usize = 24;
const CLASSES: usize = MAX_SMALL / GRANULE;
/// Most bytes of free blocks one thread keeps.
pub const MAX_CACHED_BYTES: usize = 256 * 1024;

/// The global allocator (see the module documentation).
pub struct CachingAlloc;

/// A thread's free blocks: one intrusive list per class (the link is stored in the block,
/// protected as glibc protects its own: [`protect`], [`cache_key`]).
struct Bins {
    heads: [*mut u8; CLASSES],
    bytes: usize,
}

impl Bins {
    const fn new() -> Self {
        Self {
            heads: [null_mut(); CLASSES],
            bytes: 0,
        }
    }

    /// A cached block of class `c`, or null.
    ///
    /// # Safety
    /// The lists hold only blocks pushed by [`Bins::push`].
    unsafe fn pop(&mut self, c: usize) -> *mut u8 {
        let head = self.heads[c];
        if !head.is_null() {
            let words = head.cast::<usize>();
            // SAFETY: a cached block starts with the (protected) link to the next one, then
            // the cache's key; both words are in the block (24 bytes at least).
            let next = unsafe {
                words.add(1).write(0);
                reveal(head, words.read())
            };
            if !(next as usize).is_multiple_of(GRANULE) {
                corrupted("a free list link is not 16-aligned");
            }
            self.heads[c] = next;
            self.bytes -= class_size(c);
        }
        head
    }

    /// Whether `p` is on class `c`'s list (the slow half of the double-free check).
    ///
    /// # Safety
    /// The lists hold only blocks pushed by [`Bins::push`].
    unsafe fn holds(&self, c: usize, p: *mut u8) -> bool {
        let mut at = self.heads[c];
        while !at.is_null() {
            if at == p {
                return true;
            }
            // SAFETY: a cached block starts with the protected link to the next one.
            at = unsafe { reveal(at, at.cast::<usize>().read()) };
        }
        false
    }

    /// Keeps `p`, a malloc'd block of class `c`'s size, unless the cache is full.
    ///
    /// # Safety
    /// `p` is such a block and nothing else uses it.
    unsafe fn push(&mut self, c: usize, p: *mut u8) -> bool {
        if self.bytes + class_size(c) > MAX_CACHED_BYTES {
            return false;
        }
        let words = p.cast::<usize>();
        let key = cache_key();
        // SAFETY: the block is at least 24 bytes and 16-aligned, and is ours (or, if the
        // caller freed it twice, on this list already: found below before it is written).
        unsafe {
            if words.add(1).read() == key && self.holds(c, p) {
                corrupted("a block freed twice");
            }
            words.write(protect(p, self.heads[c]));
            words.add(1).write(key);
        }
        self.heads[c] = p;
        self.bytes += class_size(c);
        true
    }
}

impl Drop for Bins {
    fn drop(&mut self) {
        for c in 0..CLASSES {
            loop {
                // SAFETY: the lists hold only blocks `push` kept.
                let p = unsafe { self.pop(c) };
                if p.is_null() {
                    break;
                }
                // SAFETY: a block glibc's malloc returned.
                unsafe { libc::free(p.cast()) };
            }
        }
    }
}

/// glibc's "safe-linking": a free list link is stored XORed with the address it is stored at
/// (shifted by the page bits), so an overwrite of a freed block through a dangling pointer
/// does not give a chosen address to the next allocation: the revealed link fails the
/// alignment check and the process aborts, as glibc's tcache does.
fn protect(at: *mut u8, link: *mut u8) -> usize {
    ((at as usize) >> 12) ^ (link as usize)
}

fn reveal(at: *mut u8, stored: usize) -> *mut u8 {
    (((at as usize) >> 12) ^ stored) as *mut u8
}

/// The word a cached block holds after its link: a per-process random value, as glibc's
/// tcache key, so that freeing a block twice is caught (its list is searched only when the
/// word matches) instead of handing the block out twice.
fn cache_key() -> usize {
    static KEY: AtomicUsize = AtomicUsize::new(0);
    let k = KEY.load(Relaxed);
    if k != 0 {
        return k;
    }
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom(2) writes at most `bytes.len()` bytes into the buffer; it does not
    // allocate. Without an answer the key falls back to an address (never 0).
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    let k = if n == 8 {
        usize::from_ne_bytes(bytes) | 1
    } else {
        (&raw const KEY as usize) | 1
    };
    match KEY.compare_exchange(0, k, Relaxed, Relaxed) {
        Ok(_) => k,
        Err(other) => other,
    }
}

/// A corrupted heap is not recoverable: stop before it is used (what glibc does).
fn corrupted(what: &str) -> ! {
    // No allocation here: the message is written with write(2) and the process aborts.
    let msg = [b"sensor: allocator: ", what.as_bytes(), b"; aborting\n"];
    for part in msg {
        // SAFETY: a valid buffer of that length; stderr may be closed, which is ignored.
        let _ = unsafe { libc::write(2, part.as_ptr().cast(), part.len()) };
    }
    std::process::abort()
}

thread_local! {
    static BINS: UnsafeCell<Bins> = const { UnsafeCell::new(Bins::new()) };
}

fn class_size(c: usize) -> usize {
    SMALLEST + c * GRANULE
}

/// The class of a request, if the cache serves it.
fn class(layout: Layout) -> Option<usize> {
    let size = layout.size();
    (size != 0 && size <= MAX_SMALL && layout.align() <= GRANULE)
        .then(|| size.saturating_sub(SMALLEST).div_ceil(GRANULE))
}

/// Runs `f` on this thread's bins; `None` while the thread's locals are being torn down.
fn with_bins<R>(f: impl FnOnce(&mut Bins) -> R) -> Option<R> {
    // SAFETY: the bins are only ever borrowed here, for the length of `f`, which neither
    // allocates nor re-enters this function.
    BINS.try_with(|b| f(unsafe { &mut *b.get() })).ok()
}

// SAFETY: every block handed out is a live glibc block of at least the layout's size at 16-byte
// alignment (glibc's minimum on 64-bit, checked by `class`), or comes from `System`.
unsafe impl GlobalAlloc for CachingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(c) = class(layout) else {
            // SAFETY: forwarded as is.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: the bins hold only blocks `dealloc` kept.
        let cached = with_bins(|b| unsafe { b.pop(c) }).unwrap_or(null_mut());
        if !cached.is_null() {
            return cached;
        }
        // SAFETY: malloc has no preconditions; its blocks are 16-aligned.
        unsafe { libc::malloc(class_size(c)).cast() }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if class(layout).is_none() {
            // SAFETY: forwarded as is: calloc, which need not touch fresh pages.
            return unsafe { System.alloc_zeroed(layout) };
        }
        // SAFETY: a small block of at least `layout.size()` bytes, or null.
        unsafe {
            let p = self.alloc(layout);
            if !p.is_null() {
                p.write_bytes(0, layout.size());
            }
            p
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(c) = class(layout) else {
            // SAFETY: allocated by `System` with this layout (`alloc` above).
            return unsafe { System.dealloc(ptr, layout) };
        };
        // SAFETY: `ptr` is a block of class `c` from `alloc` (or `realloc`), no longer used.
        if with_bins(|b| unsafe { b.push(c, ptr) }) != Some(true) {
            // SAFETY: a glibc block.
            unsafe { libc::free(ptr.cast()) };
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // The new layout keeps the alignment (GlobalAlloc's contract).
        let new = Layout::from_size_align(new_size, layout.align());
        let new_class = new.ok().and_then(class);
        match (class(layout), new_class) {
            (Some(c), Some(n)) if c == n => ptr,
            // A glibc block either side: glibc resizes it, to the class's full size if the
            // result is small (it may be cached later).
            (Some(_), _) | (None, Some(_)) if layout.align() <= GRANULE => {
                let size = new_class.map_or(new_size, class_size);
                // SAFETY: `ptr` is a glibc block (a small one from `alloc`, or a large one
                // from `System`, which uses malloc for alignments up to 16).
                unsafe { libc::realloc(ptr.cast(), size).cast() }
            }
            // SAFETY: forwarded as is (`System` made the block).
            _ => unsafe { System.realloc(ptr, layout, new_size) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 8).unwrap()
    }

    #[test]
    fn blocks_are_reused_within_a_class_and_keep_their_contents_until_freed() {
        let a = CachingAlloc;
        unsafe {
            let p = a.alloc(layout(41));
            p.write_bytes(0xab, 41);
            a.dealloc(p, layout(41));
            // 41..=56 bytes share the class: the same block comes back.
            let q = a.alloc(layout(56));
            assert_eq!(p, q);
            q.write_bytes(0xcd, 56);
            let r = a.alloc(layout(56));
            assert_ne!(q, r);
            a.dealloc(q, layout(56));
            a.dealloc(r, layout(56));
        }
    }

    #[test]
    fn classes_are_glibc_chunk_sizes_and_cover_every_small_request() {
        assert_eq!(class_size(0), 24);
        assert_eq!(class_size(CLASSES - 1), MAX_SMALL + 8);
        for size in 1..=MAX_SMALL {
            let c = class(layout(size)).unwrap();
            assert!(c < CLASSES && class_size(c) >= size, "{size}");
            // The class is the usable size of the chunk glibc gives `size`: no more memory.
            let chunk = (size + 8).max(32).next_multiple_of(16);
            assert_eq!(class_size(c), chunk - 8, "{size}");
        }
        assert_eq!(class(layout(MAX_SMALL + 1)), None);
    }

    #[test]
    fn realloc_keeps_the_bytes_across_classes_and_sizes() {
        let a = CachingAlloc;
        unsafe {
            let mut p = a.alloc(layout(10));
            for i in 0..10 {
                p.add(i).write(i as u8);
            }
            let mut size = 10;
            for new in [16, 17, 200, 256, 257, 5000, 100, 3] {
                p = a.realloc(p, layout(size), new);
                for i in 0..size.min(new) {
                    assert_eq!(p.add(i).read(), i as u8, "byte {i} after {size} -> {new}");
                }
                for i in size.min(new)..new {
                    p.add(i).write(i as u8);
                }
                size = new;
            }
            a.dealloc(p, layout(size));
        }
    }

    #[test]
    fn the_cache_is_bounded_and_large_or_aligned_blocks_bypass_it() {
        let a = CachingAlloc;
        unsafe {
            let n = MAX_CACHED_BYTES / 64 + 100;
            let blocks: Vec<*mut u8> = (0..n).map(|_| a.alloc(layout(64))).collect();
            for &p in &blocks {
                a.dealloc(p, layout(64));
            }
            assert!(with_bins(|b| b.bytes).unwrap() <= MAX_CACHED_BYTES);
            let big = Layout::from_size_align(4096, 8).unwrap();
            let p = a.alloc(big);
            a.dealloc(p, big);
            let aligned = Layout::from_size_align(64, 64).unwrap();
            let p = a.alloc(aligned);
            assert_eq!(p as usize % 64, 0);
            a.dealloc(p, aligned);
            assert_eq!(class(aligned), None);
            assert_eq!(class(Layout::from_size_align(0, 1).unwrap()), None);
            // A thread's cache is freed when it exits.
            std::thread::spawn(move || {
                let p = CachingAlloc.alloc(layout(24));
                CachingAlloc.dealloc(p, layout(24));
                assert_eq!(with_bins(|b| b.heads[0]), Some(p), "kept in class 1..=24");
            })
            .join()
            .unwrap();
        }
    }

    /// Runs `f` in a forked child; returns its wait status.
    fn in_child(f: impl FnOnce()) -> libc::c_int {
        // SAFETY: the child runs `f` (this allocator and write(2) only) and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: a valid rlimit: the child's deliberate aborts leave no core file.
            unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
            f();
            // SAFETY: leave the child without running the parent's test harness.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        status
    }

    fn aborted(status: libc::c_int) -> bool {
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGABRT
    }

    #[test]
    fn a_block_freed_twice_aborts_instead_of_being_handed_out_twice() {
        let status = in_child(|| unsafe {
            let a = CachingAlloc;
            let p = a.alloc(layout(40));
            a.dealloc(p, layout(40));
            a.dealloc(p, layout(40));
        });
        assert!(aborted(status), "status {status:#x}");
        // Freed once each, two blocks of a class: no abort, both come back.
        let status = in_child(|| unsafe {
            let a = CachingAlloc;
            let (p, q) = (a.alloc(layout(40)), a.alloc(layout(40)));
            a.dealloc(p, layout(40));
            a.dealloc(q, layout(40));
            let (r, t) = (a.alloc(layout(40)), a.alloc(layout(40)));
            assert!((r == q && t == p) || (r == p && t == q));
        });
        assert_eq!(status, 0);
    }

    /// Two cached blocks of a class, the head's link overwritten with `word` (as a write
    /// through a dangling pointer would), then two allocations: exits 1 if the second one is
    /// `target`.
    fn overwrite_link(word: impl FnOnce(*mut u8, *mut u8) -> usize) -> libc::c_int {
        in_child(|| unsafe {
            let a = CachingAlloc;
            let target = a.alloc(layout(100));
            let (p, q) = (a.alloc(layout(40)), a.alloc(layout(40)));
            a.dealloc(p, layout(40));
            a.dealloc(q, layout(40));
            // q is the head; its link leads to p.
            q.cast::<usize>().write(word(q, target));
            assert_eq!(a.alloc(layout(40)), q);
            if a.alloc(layout(40)) == target {
                libc::_exit(1);
            }
        })
    }

    #[test]
    fn a_link_overwritten_with_an_address_does_not_hand_that_address_out() {
        // The plain address, as an attacker would write it: revealed, it is another value,
        // which the alignment check stops (abort), or a wild one whose use faults (SIGSEGV):
        // never the address written.
        let status = overwrite_link(|_, target| target as usize);
        let died = libc::WIFSIGNALED(status)
            && [libc::SIGABRT, libc::SIGSEGV, libc::SIGBUS].contains(&libc::WTERMSIG(status));
        assert!(died || status == 0, "status {status:#x}");
    }

    #[test]
    fn a_link_revealing_an_unaligned_block_aborts() {
        let status = overwrite_link(|q, target| protect(q, target) ^ 8);
        assert!(aborted(status), "status {status:#x}");
    }

    #[test]
    fn links_are_stored_protected_and_reveal_back() {
        let at = 0x7f00_1234_5670usize as *mut u8;
        let link = 0x7f00_1234_9990usize as *mut u8;
        let stored = protect(at, link);
        assert_ne!(stored, link as usize);
        assert_eq!(reveal(at, stored), link);
        assert_eq!(reveal(at, protect(at, null_mut())), null_mut());
        assert_ne!(cache_key(), 0);
        assert_eq!(cache_key(), cache_key());
    }
}
