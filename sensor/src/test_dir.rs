//! The unit tests' temp-dir guard: a fresh directory named after the test, removed on drop
//! (also when the test panics). Derefs to its path.
use std::path::{Path, PathBuf};

pub struct TestDir(PathBuf);

impl TestDir {
    /// A new, empty directory under the system temp dir; `tag` must be unique per test.
    pub fn new(tag: &str) -> TestDir {
        let d = std::env::temp_dir().join(format!("sensor-unit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TestDir(d)
    }
}

impl std::ops::Deref for TestDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
