//! File handles to paths for the FID rung: `open_by_handle_at` on the marked filesystem +
//! `readlink(/proc/self/fd/N)` + the entry's name, with a bounded cache of directory paths
//! (invalidated when a directory moves or is removed).
use std::collections::HashMap;
use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;

use super::fanotify_parse::{Fid, FidInfo, MAX_HANDLE_SZ};

/// Cached directory handles.
const CACHE_MAX: usize = 8192;

#[repr(C)]
pub(super) struct HandleBuf {
    pub handle_bytes: u32,
    pub handle_type: i32,
    pub f_handle: [u8; MAX_HANDLE_SZ],
}

impl HandleBuf {
    pub fn new() -> HandleBuf {
        HandleBuf {
            handle_bytes: MAX_HANDLE_SZ as u32,
            handle_type: 0,
            f_handle: [0; MAX_HANDLE_SZ],
        }
    }

    /// The handle of `path` relative to `dirfd` (`name_to_handle_at(2)` with `flags`; an
    /// empty path with `AT_EMPTY_PATH` names `dirfd` itself).
    pub fn of(dirfd: RawFd, path: &CStr, flags: libc::c_int) -> std::io::Result<HandleBuf> {
        let mut h = HandleBuf::new();
        let mut mount_id = 0;
        // SAFETY: a valid C string, a handle buffer of MAX_HANDLE_SZ bytes (its size in
        // `handle_bytes`), a valid out pointer.
        let r = unsafe {
            libc::name_to_handle_at(
                dirfd,
                path.as_ptr(),
                (&mut h as *mut HandleBuf).cast(),
                &mut mount_id,
                flags,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(h)
    }

    fn from_fid(fid: &Fid<'_>) -> Option<HandleBuf> {
        let mut h = HandleBuf::new();
        h.f_handle
            .get_mut(..fid.handle.len())?
            .copy_from_slice(fid.handle);
        h.handle_bytes = fid.handle.len() as u32;
        h.handle_type = fid.handle_type;
        Some(h)
    }
}

/// Directory handle -> path, with a bounded cache.
pub(super) struct Resolver {
    pub mounts: Vec<([u8; 8], OwnedFd)>,
    pub cache: HashMap<Box<[u8]>, Vec<u8>>,
}

impl Resolver {
    pub fn mount_fd(&self, fsid: &[u8; 8]) -> Option<RawFd> {
        self.mounts
            .iter()
            .find(|(f, _)| f == fsid)
            .map(|(_, fd)| fd.as_raw_fd())
    }

    /// An fd on the object of a handle. `Err(true)` when the object is gone (unlinked).
    pub fn open_handle(&self, fid: &Fid<'_>, flags: libc::c_int) -> Result<OwnedFd, bool> {
        let mount_fd = self.mount_fd(&fid.fsid).ok_or(false)?;
        let mut h = HandleBuf::from_fid(fid).ok_or(false)?;
        // SAFETY: a well-formed handle buffer; the kernel validates its contents.
        let fd =
            unsafe { libc::open_by_handle_at(mount_fd, (&mut h as *mut HandleBuf).cast(), flags) };
        if fd < 0 {
            let gone = std::io::Error::last_os_error().raw_os_error() == Some(libc::ESTALE);
            return Err(gone);
        }
        // SAFETY: fresh fd we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// The current path of a handle. `Err(true)` when the object is gone (unlinked).
    pub fn open_path(&self, fid: &Fid<'_>) -> Result<Vec<u8>, bool> {
        let fd = self.open_handle(fid, libc::O_PATH | libc::O_CLOEXEC)?;
        path_of_fd(fd.as_raw_fd()).map_err(|_| false)
    }

    /// A directory opened by handle (fanotify_mark takes no O_PATH fd) and its current path.
    pub fn open_dir(&self, fid: &Fid<'_>) -> Option<(OwnedFd, Vec<u8>)> {
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
        let fd = self.open_handle(fid, flags).ok()?;
        let path = path_of_fd(fd.as_raw_fd()).ok()?;
        Some((fd, path))
    }

    pub fn dir(&mut self, fid: &Fid<'_>) -> Result<&[u8], bool> {
        if !self.cache.contains_key(fid.key) {
            let p = self.open_path(fid)?;
            if self.cache.len() >= CACHE_MAX {
                self.cache.clear();
            }
            self.cache.insert(fid.key.into(), p);
        }
        Ok(self
            .cache
            .get(fid.key)
            .map(Vec::as_slice)
            .unwrap_or_default())
    }

    /// Directory path + "/" + name, into `out`.
    pub fn join(&mut self, info: &FidInfo<'_>, out: &mut Vec<u8>) -> Result<(), bool> {
        let dir = self.dir(&info.fid)?;
        out.clear();
        out.extend_from_slice(dir);
        match info.name {
            Some(n) if !n.is_empty() && n != b"." => {
                if out.last() != Some(&b'/') {
                    out.push(b'/');
                }
                out.extend_from_slice(n);
            }
            _ => {}
        }
        Ok(())
    }

    pub fn remember(&mut self, fid: &Fid<'_>, path: &[u8]) {
        if self.cache.len() < CACHE_MAX {
            self.cache.insert(fid.key.into(), path.to_vec());
        }
    }

    /// A directory moved or was removed: drops its own entry and, when its path was cached,
    /// every cached directory below that path. Works from the directory's handle alone, so
    /// it holds when the event's old path cannot be resolved (its old parent is gone too).
    pub fn forget_dir(&mut self, fid: &Fid<'_>) {
        if let Some(p) = self.cache.remove(fid.key) {
            self.invalidate(&p);
        }
    }

    /// Drops every cached directory at or below `prefix` (it moved or was removed).
    pub fn invalidate(&mut self, prefix: &[u8]) {
        self.cache.retain(|_, p| {
            !(p.starts_with(prefix) && (p.len() == prefix.len() || p[prefix.len()] == b'/'))
        });
    }
}

/// `readlink(/proc/self/fd/N)`, with the kernel's " (deleted)" suffix removed when the
/// object really is unlinked.
pub(super) fn path_of_fd(fd: RawFd) -> std::io::Result<Vec<u8>> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}"))?;
    let mut p = link.into_os_string().into_vec();
    const DELETED: &[u8] = b" (deleted)";
    if p.ends_with(DELETED) {
        // SAFETY: stat is plain data; fstat fills it.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd and pointer.
        if unsafe { libc::fstat(fd, &mut st) } == 0 && st.st_nlink == 0 {
            p.truncate(p.len() - DELETED.len());
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn resolver_cache_invalidation() {
        let mut r = Resolver {
            mounts: Vec::new(),
            cache: HashMap::new(),
        };
        let key = |k: &[u8]| -> Box<[u8]> { k.into() };
        r.cache.insert(key(b"a"), b"/etc/d".to_vec());
        r.cache.insert(key(b"b"), b"/etc/d/sub".to_vec());
        r.cache.insert(key(b"c"), b"/etc/dd".to_vec());
        r.invalidate(b"/etc/d");
        assert_eq!(r.cache.len(), 1);
        assert!(r.cache.contains_key(&key(b"c")[..]));
        // Unknown fsid: unresolved, not a panic.
        let fid = Fid {
            fsid: [9; 8],
            handle_type: 1,
            handle: &[1, 2, 3, 4, 5, 6, 7, 8],
            key: b"zz",
        };
        assert_eq!(r.open_path(&fid), Err(false));
        let mut out = Vec::new();
        let info = FidInfo {
            fid,
            name: Some(b"x"),
        };
        assert!(r.join(&info, &mut out).is_err());
        r.cache.insert(key(b"zz"), b"/".to_vec());
        r.join(&info, &mut out).unwrap();
        assert_eq!(out, b"/x");
    }

    #[test]
    fn forgetting_a_moved_directory_by_its_handle_drops_its_subtree() {
        let cached: [(&[u8], &[u8]); 4] = [
            (b"d", b"/w/p/d"),
            (b"s", b"/w/p/d/s"),
            (b"p", b"/w/p"),
            (b"dd", b"/w/p/dd"),
        ];
        let mut r = Resolver {
            mounts: Vec::new(),
            cache: cached
                .iter()
                .map(|(k, p)| ((*k).into(), p.to_vec()))
                .collect(),
        };
        let fid = |k: &'static [u8]| Fid {
            fsid: [0; 8],
            handle_type: 1,
            handle: k,
            key: k,
        };
        r.forget_dir(&fid(b"d"));
        let mut left: Vec<&[u8]> = r.cache.keys().map(|k| &k[..]).collect();
        left.sort();
        assert_eq!(left, [&b"dd"[..], b"p"]);
        // Not cached: nothing else goes.
        r.forget_dir(&fid(b"zz"));
        assert_eq!(r.cache.len(), 2);
    }

    #[test]
    fn path_of_fd_reports_deleted_files_by_their_old_path() {
        let dir = crate::test_dir::TestDir::new("files-fid");
        let p = dir.join("gone (deleted)");
        let f = std::fs::File::create(&p).unwrap();
        let live = path_of_fd(f.as_raw_fd()).unwrap();
        assert_eq!(
            live,
            p.as_os_str().as_bytes(),
            "a real ' (deleted)' name stays"
        );
        std::fs::remove_file(&p).unwrap();
        let dead = path_of_fd(f.as_raw_fd()).unwrap();
        assert_eq!(dead, p.as_os_str().as_bytes());
    }
}
