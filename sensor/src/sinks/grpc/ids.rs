//! Identity of the event stream: a sensor id persisted in the spool directory, the kernel's
//! boot id, and the seq allocator.
//!
//! The collector de-duplicates by (sensor id, boot id, seq), so a seq must never be reused
//! within a boot, even when the sensor restarts. The allocator reserves seq numbers in
//! blocks and records the end of the reservation in `<spool>/seq` (written atomically and
//! fsynced) before handing any of them out; after a restart in the same boot numbering
//! continues above the last reservation. A gap of at most one block per restart is the cost.
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum IdError {
    #[error(transparent)]
    Fs(#[from] crate::safefs::SafeFsError),
}

pub const SENSOR_ID_FILE: &str = "sensor_id";
pub const SEQ_FILE: &str = "seq";
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// Seq numbers reserved per write of the seq file.
pub const SEQ_BLOCK: u64 = 1 << 20;

/// Writes `data` to `path` (mode 0600) via a temp file created with `O_EXCL | O_NOFOLLOW`,
/// fsync and rename (then fsyncs the directory): a link planted at either name redirects
/// nothing.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), IdError> {
    Ok(crate::safefs::write_atomic(path, data, 0o600)?)
}

/// A file's text, not following a link in its place; `Ok(None)` when it does not exist.
fn read_text(path: &Path) -> Result<Option<String>, IdError> {
    match crate::safefs::read(path) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(crate::safefs::SafeFsError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// A random id formatted like a UUID v4.
pub fn new_uuid() -> String {
    let mut b = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_ok();
    if !ok {
        // No /dev/urandom: time and pid are unique enough for an installation id.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = (t ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The sensor id stored in `dir`, created on first use.
pub fn sensor_id(dir: &Path) -> Result<String, IdError> {
    let path = dir.join(SENSOR_ID_FILE);
    match read_text(&path)? {
        Some(s) if !s.trim().is_empty() && s.trim().len() <= 128 => {
            return Ok(s.trim().to_string())
        }
        Some(_) => {
            tracing::warn!(path = %path.display(), "sensor id file is empty or invalid; making a new id")
        }
        None => {}
    }
    crate::safefs::ensure_dir(dir, 0o700)?;
    let id = new_uuid();
    write_atomic(&path, format!("{id}\n").as_bytes())?;
    tracing::info!(sensor_id = %id, path = %path.display(), "created sensor id");
    Ok(id)
}

/// The kernel's boot id (changes at every boot).
pub fn boot_id() -> String {
    std::fs::read_to_string(BOOT_ID_PATH)
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-boot".into())
}

/// `"<boot id> <last reserved seq>"`.
pub fn parse_seq_file(text: &str) -> Option<(&str, u64)> {
    let mut it = text.split_whitespace();
    let boot = it.next()?;
    let n = it.next()?.parse().ok()?;
    Some((boot, n))
}

/// Hands out seq numbers unique within a boot across restarts.
#[derive(Debug)]
pub struct SeqAllocator {
    path: PathBuf,
    boot_id: String,
    next: u64,
    reserved_to: u64,
}

impl SeqAllocator {
    /// Continues after the last reservation of this boot (and after `seen_max`, the highest
    /// seq of this boot still in the spool); starts at 1 in a new boot.
    pub fn open(dir: &Path, boot_id: &str, seen_max: u64) -> Result<Self, IdError> {
        let path = dir.join(SEQ_FILE);
        let last = match read_text(&path)? {
            Some(text) => match parse_seq_file(&text) {
                Some((b, n)) if b == boot_id => n,
                Some(_) => 0,
                None => {
                    tracing::warn!(path = %path.display(), "unreadable seq file; starting above the spool's highest seq");
                    0
                }
            },
            None => 0,
        };
        let start = last.max(seen_max) + 1;
        let mut a = SeqAllocator {
            path,
            boot_id: boot_id.to_string(),
            next: start,
            reserved_to: start - 1,
        };
        a.reserve(SEQ_BLOCK)?;
        Ok(a)
    }

    fn reserve(&mut self, n: u64) -> Result<(), IdError> {
        let to = self.reserved_to + n.max(SEQ_BLOCK);
        write_atomic(&self.path, format!("{} {}\n", self.boot_id, to).as_bytes())?;
        self.reserved_to = to;
        Ok(())
    }

    /// The first of `n` consecutive fresh seq numbers. Never fails: when the reservation
    /// cannot be persisted (disk full) numbering goes on in memory and the error is logged;
    /// only a restart before the disk recovers could then reuse numbers.
    pub fn take(&mut self, n: u64) -> u64 {
        if self.next + n - 1 > self.reserved_to {
            if let Err(e) = self.reserve(n) {
                tracing::error!(error = %e, "cannot persist the seq reservation");
                self.reserved_to = self.next + n - 1;
            }
        }
        let first = self.next;
        self.next += n;
        first
    }

    pub fn boot_id(&self) -> &str {
        &self.boot_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;

    fn tmp(tag: &str) -> TestDir {
        TestDir::new(&format!("ids-{tag}"))
    }

    #[test]
    fn uuid_shape() {
        let a = new_uuid();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, new_uuid());
    }

    #[test]
    fn sensor_id_persists() {
        let d = tmp("sid");
        let a = sensor_id(&d).unwrap();
        assert_eq!(sensor_id(&d).unwrap(), a);
    }

    #[test]
    fn seq_continues_across_restarts_and_resets_on_new_boot() {
        let d = tmp("seq");
        let mut a = SeqAllocator::open(&d, "boot-a", 0).unwrap();
        assert_eq!(a.take(10), 1);
        assert_eq!(a.take(5), 11);
        // A large take crosses the reservation.
        let big = a.take(SEQ_BLOCK + 3);
        assert_eq!(big, 16);
        let after = a.take(1);
        drop(a);
        // Restart in the same boot: strictly above anything handed out.
        let mut b = SeqAllocator::open(&d, "boot-a", 0).unwrap();
        assert!(b.take(1) > after);
        // The spool's highest seq wins if it is above the file (file lost or stale).
        std::fs::remove_file(d.join(SEQ_FILE)).unwrap();
        let mut c = SeqAllocator::open(&d, "boot-a", 5_000_000).unwrap();
        assert_eq!(c.take(1), 5_000_001);
        // New boot starts at 1.
        let mut n = SeqAllocator::open(&d, "boot-b", 0).unwrap();
        assert_eq!(n.take(1), 1);
        assert_eq!(parse_seq_file("x 5\n"), Some(("x", 5)));
        assert_eq!(parse_seq_file("x"), None);
    }

    #[test]
    fn boot_id_is_read() {
        assert!(!boot_id().is_empty());
    }
}
