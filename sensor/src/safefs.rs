//! Files root writes where another user might reach: state directories and the files in
//! them, the status file and the JSON output file. Nothing here follows a symbolic link
//! planted in place of the file, and no directory another user can write is trusted.
//!
//! - [`ensure_dir`] (state directories: the spool): creates a directory with the given mode,
//!   or accepts an existing one only if it is a real directory owned by this user, not shared
//!   (sticky and writable by others, like `/tmp`), and every directory above it is owned by
//!   root or this user and writable by nobody else (or sticky, which keeps others from
//!   renaming what is ours). A directory of ours with looser bits is tightened.
//! - [`ensure_parent`] (where the status and output files go): creates a missing directory
//!   0755; an existing one must pass the rule for the directories above (so `/tmp` is fine:
//!   the files themselves are protected by the opens below). Nothing is chmod'ed.
//! - [`open_append`]: `O_NOFOLLOW | O_APPEND`; an existing file must be a regular file owned
//!   by this user with one link (no FIFO that blocks, no hard link to another file).
//! - [`write_atomic`]: a temporary file created with `O_CREAT | O_EXCL | O_NOFOLLOW`, its mode
//!   set on the descriptor (whatever the umask), fsynced, then renamed over the target
//!   (`rename` replaces a planted link itself, never what it points to).
//! - [`create_new`], [`open_existing`]: `O_NOFOLLOW` opens of spool segments.
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt,
};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SafeFsError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("refusing {path}: {reason}")]
    Unsafe { path: PathBuf, reason: String },
}

impl SafeFsError {
    /// The underlying I/O error kind, for callers that map it into their own error.
    pub fn into_io(self) -> std::io::Error {
        match self {
            SafeFsError::Io { source, .. } => source,
            e @ SafeFsError::Unsafe { .. } => {
                std::io::Error::new(std::io::ErrorKind::PermissionDenied, e.to_string())
            }
        }
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SafeFsError + 'a {
    move |source| SafeFsError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn refuse(path: &Path, reason: impl Into<String>) -> SafeFsError {
    SafeFsError::Unsafe {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

const GROUP_OTHER_WRITE: u32 = 0o022;
const STICKY: u32 = 0o1000;

/// Creates `path` (and missing parents, 0755) with `mode`, or checks an existing one; see
/// the module documentation.
pub fn ensure_dir(path: &Path, mode: u32) -> Result<(), SafeFsError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                check_nearest_existing(path, parent)?;
                std::fs::create_dir_all(parent).map_err(io("create", parent))?;
            }
            match std::fs::DirBuilder::new().mode(mode).create(path) {
                Ok(()) => {}
                // Someone else made it in between: checked below like any existing one.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io("create", path)(e)),
            }
        }
        Err(e) => return Err(io("stat", path)(e)),
    }
    check_dir(path, mode)
}

/// The checks of [`ensure_dir`] on an existing directory.
pub fn check_dir(path: &Path, mode: u32) -> Result<(), SafeFsError> {
    let me = euid();
    let md = std::fs::symlink_metadata(path).map_err(io("stat", path))?;
    if md.file_type().is_symlink() {
        return Err(refuse(path, "it is a symbolic link"));
    }
    if !md.is_dir() {
        return Err(refuse(path, "it is not a directory"));
    }
    if md.uid() != me {
        return Err(refuse(
            path,
            format!("owned by uid {}, not by uid {me}", md.uid()),
        ));
    }
    if md.mode() & STICKY != 0 && md.mode() & GROUP_OTHER_WRITE != 0 {
        return Err(refuse(
            path,
            "it is a shared directory (sticky, writable by others)",
        ));
    }
    if md.mode() & 0o7777 & !mode != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(io("chmod", path))?;
    }
    check_above(path, path)
}

/// Creates `dir` 0755 if missing, else checks it like the directories above a state
/// directory; see the module documentation.
pub fn ensure_parent(dir: &Path) -> Result<(), SafeFsError> {
    match std::fs::symlink_metadata(dir) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            check_nearest_existing(dir, dir)?;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(io("create", dir))?;
        }
        Err(e) => return Err(io("stat", dir)(e)),
    }
    let real = std::fs::canonicalize(dir).map_err(io("resolve", dir))?;
    check_trusted(dir, &real)?;
    check_above(dir, &real)
}

/// An existing directory no other user can rename entries in: owned by root or us, and not
/// writable by others unless sticky.
fn check_trusted(path: &Path, dir: &Path) -> Result<(), SafeFsError> {
    let me = euid();
    let md = std::fs::metadata(dir).map_err(io("stat", dir))?;
    if !md.is_dir() {
        return Err(refuse(
            path,
            format!("{} is not a directory", dir.display()),
        ));
    }
    if md.uid() != 0 && md.uid() != me {
        return Err(refuse(
            path,
            format!("{} is owned by uid {}", dir.display(), md.uid()),
        ));
    }
    if md.mode() & GROUP_OTHER_WRITE != 0 && md.mode() & STICKY == 0 {
        return Err(refuse(
            path,
            format!("{} is writable by other users", dir.display()),
        ));
    }
    Ok(())
}

/// Before creating anything below `dir`: its nearest existing ancestor (itself included) and
/// everything above that must be trusted, so nothing is made inside another user's tree.
fn check_nearest_existing(path: &Path, dir: &Path) -> Result<(), SafeFsError> {
    let Some(existing) = dir
        .ancestors()
        .find(|a| !a.as_os_str().is_empty() && a.exists())
    else {
        return Ok(()); // relative path below a missing cwd: creating fails anyway
    };
    let real = std::fs::canonicalize(existing).map_err(io("resolve", existing))?;
    check_trusted(path, &real)?;
    check_above(path, &real)
}

/// [`check_trusted`] for every directory above `path` (resolved).
fn check_above(path: &Path, dir: &Path) -> Result<(), SafeFsError> {
    let real = std::fs::canonicalize(dir).map_err(io("resolve", dir))?;
    for anc in real.ancestors().skip(1) {
        check_trusted(path, anc)?;
    }
    Ok(())
}

/// Checks an open file: a regular file of ours with a single link.
fn check_file(f: &File, path: &Path) -> Result<(), SafeFsError> {
    let md = f.metadata().map_err(io("stat", path))?;
    if !md.is_file() {
        return Err(refuse(path, "it is not a regular file"));
    }
    if md.uid() != euid() {
        return Err(refuse(path, format!("owned by uid {}", md.uid())));
    }
    if md.nlink() > 1 {
        return Err(refuse(path, format!("it has {} hard links", md.nlink())));
    }
    Ok(())
}

/// Opens `path` for appending, creating it with `mode`; see the module documentation.
pub fn open_append(path: &Path, mode: u32) -> Result<File, SafeFsError> {
    if let Ok(md) = std::fs::symlink_metadata(path) {
        if md.file_type().is_symlink() {
            return Err(refuse(path, "it is a symbolic link"));
        }
        if !md.is_file() {
            return Err(refuse(path, "it is not a regular file"));
        }
    }
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode)
        // O_NONBLOCK: a FIFO planted here must not block the open; cleared below.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| nofollow_error(path, e))?;
    check_file(&f, path)?;
    clear_nonblock(&f, path)?;
    Ok(f)
}

fn clear_nonblock(f: &File, path: &Path) -> Result<(), SafeFsError> {
    use std::os::fd::AsRawFd as _;
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; F_GETFL/F_SETFL take no pointers.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io("fcntl", path)(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// ELOOP from O_NOFOLLOW means a symbolic link stands where the file should be.
fn nofollow_error(path: &Path, e: std::io::Error) -> SafeFsError {
    if e.raw_os_error() == Some(libc::ELOOP) {
        refuse(path, "it is a symbolic link")
    } else {
        io("open", path)(e)
    }
}

/// Creates a new file (`O_EXCL | O_NOFOLLOW`) with exactly `mode`, open for reading and
/// appending (after a truncation the next write lands at the new end).
pub fn create_new(path: &Path, mode: u32) -> Result<File, SafeFsError> {
    let f = OpenOptions::new()
        .create_new(true)
        .append(true)
        .read(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io("create", path))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io("chmod", path))?;
    Ok(f)
}

/// Opens an existing file without following a link in its place (`write` for read-write).
pub fn open_existing(path: &Path, write: bool) -> Result<File, SafeFsError> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| nofollow_error(path, e))
}

/// Reads a whole file without following a link in its place.
pub fn read(path: &Path) -> Result<Vec<u8>, SafeFsError> {
    let mut f = open_existing(path, false)?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(io("read", path))?;
    Ok(buf)
}

/// Writes `data` to `path` through `<path>.tmp`; see the module documentation. The file ends
/// up with exactly `mode`.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), SafeFsError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    // A leftover of a crash (or anything planted): unlink removes a link itself.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("remove", &tmp)(e)),
    }
    let mut f = create_new(&tmp, mode)?;
    let written = f
        .write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(io("write", &tmp));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    drop(f);
    std::fs::rename(&tmp, path).map_err(io("rename", path))?;
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("safefs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    #[test]
    fn dir_is_created_private_and_tightened() {
        let d = scratch("dir");
        let s = d.join("a/spool");
        ensure_dir(&s, 0o700).unwrap();
        assert_eq!(std::fs::metadata(&s).unwrap().mode() & 0o7777, 0o700);
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o777)).unwrap();
        ensure_dir(&s, 0o700).unwrap();
        assert_eq!(std::fs::metadata(&s).unwrap().mode() & 0o7777, 0o700);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn symlinked_dir_and_files_are_refused() {
        let d = scratch("links");
        let victim = d.join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let vdir = d.join("victim-dir");
        std::fs::create_dir(&vdir).unwrap();
        symlink(&vdir, d.join("state")).unwrap();
        assert!(matches!(
            ensure_dir(&d.join("state"), 0o700),
            Err(SafeFsError::Unsafe { .. })
        ));
        symlink(&victim, d.join("out.json")).unwrap();
        assert!(matches!(
            open_append(&d.join("out.json"), 0o600),
            Err(SafeFsError::Unsafe { .. })
        ));
        symlink(&victim, d.join("id")).unwrap();
        symlink(&victim, d.join("id.tmp")).unwrap();
        write_atomic(&d.join("id"), b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(std::fs::read(d.join("id")).unwrap(), b"new");
        assert!(!std::fs::symlink_metadata(d.join("id"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            std::fs::metadata(d.join("id")).unwrap().mode() & 0o777,
            0o600
        );
        assert!(read(&d.join("out.json")).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn fifo_and_hard_link_are_refused() {
        let d = scratch("fifo");
        let fifo = d.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            open_append(&fifo, 0o600),
            Err(SafeFsError::Unsafe { .. })
        ));
        std::fs::write(d.join("a"), b"x").unwrap();
        std::fs::hard_link(d.join("a"), d.join("b")).unwrap();
        assert!(matches!(
            open_append(&d.join("b"), 0o600),
            Err(SafeFsError::Unsafe { .. })
        ));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn exact_mode_whatever_the_umask() {
        let d = scratch("mode");
        write_atomic(&d.join("status.json"), b"{}", 0o644).unwrap();
        assert_eq!(
            std::fs::metadata(d.join("status.json")).unwrap().mode() & 0o777,
            0o644
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
