//! The one temp-dir guard of the integration tests (the sensor's and, through `#[path]`, the
//! collector's): a directory removed on drop, also when the test fails.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new directory named after `tag` under the system temp dir.
    pub fn new(tag: &str) -> TempDir {
        TempDir::new_in(&std::env::temp_dir(), tag)
    }

    /// A new directory named after `tag` under `base` (e.g. a path on the root filesystem
    /// when the system temp dir is a tmpfs the test must avoid).
    pub fn new_in(base: &Path, tag: &str) -> TempDir {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = base.join(format!(
            "it-{tag}-{}-{nanos}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Takes charge of an existing directory.
    pub fn adopt(dir: PathBuf) -> TempDir {
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
