//! Follows a growing binary log of fixed-size records (wtmp/btmp) across appends, half-written
//! records, truncation and rotation. Thin over the file system; the decisions are in
//! [`TailState`], which is pure and tested without files.
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What happened to the file between two polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Same file, maybe grown.
    Same,
    /// Shorter than what we already read: truncated in place.
    Truncated,
    /// The path now names another inode: rotated.
    Rotated,
    /// The path is gone (rotated away and not yet recreated).
    Missing,
}

/// Pure bookkeeping of one followed file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TailState {
    pub inode: Option<u64>,
    pub offset: u64,
    /// Bytes of an incomplete trailing record, kept until the rest arrives.
    pub partial: Vec<u8>,
}

impl TailState {
    pub fn classify(&self, inode: Option<u64>, size: u64) -> Change {
        match (self.inode, inode) {
            (_, None) => Change::Missing,
            (Some(a), Some(b)) if a != b => Change::Rotated,
            _ if size < self.offset => Change::Truncated,
            _ => Change::Same,
        }
    }

    /// Appends newly read bytes; returns whole records and keeps the rest.
    pub fn feed(&mut self, bytes: &[u8], record_len: usize) -> Vec<Vec<u8>> {
        self.offset += bytes.len() as u64;
        self.partial.extend_from_slice(bytes);
        let whole = self.partial.len() / record_len * record_len;
        let rest = self.partial.split_off(whole);
        let records = self
            .partial
            .chunks_exact(record_len)
            .map(<[u8]>::to_vec)
            .collect();
        self.partial = rest;
        records
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Counts of unusual things seen, for health.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TailStats {
    pub rotations: u64,
    pub truncations: u64,
    /// Bytes of a half record discarded because the file was rotated or truncated under it.
    pub torn_bytes: u64,
}

pub struct Tailer {
    path: PathBuf,
    record_len: usize,
    file: Option<File>,
    pub state: TailState,
    pub stats: TailStats,
}

impl Tailer {
    /// Starts following `path`; `from_start` replays what is already in it.
    pub fn new(path: &Path, record_len: usize, from_start: bool) -> Self {
        let mut t = Tailer {
            path: path.to_path_buf(),
            record_len,
            file: None,
            state: TailState::default(),
            stats: TailStats::default(),
        };
        if let Ok(f) = File::open(path) {
            if let Ok(m) = f.metadata() {
                t.state.inode = Some(m.ino());
                if !from_start {
                    // Start at the last whole record: a half-written one is completed later.
                    t.state.offset = m.len() / record_len as u64 * record_len as u64;
                }
            }
            t.file = Some(f);
        }
        t
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_rest(&mut self) -> Result<Vec<Vec<u8>>, TailError> {
        let Some(f) = self.file.as_mut() else {
            return Ok(Vec::new());
        };
        let io = |source| TailError::Io {
            path: self.path.clone(),
            source,
        };
        f.seek(SeekFrom::Start(self.state.offset)).map_err(io)?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(|source| TailError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(self.state.feed(&buf, self.record_len))
    }

    /// Reads every whole record that appeared since the last call.
    pub fn poll(&mut self) -> Result<Vec<Vec<u8>>, TailError> {
        let meta = std::fs::metadata(&self.path).ok();
        let change = self.state.classify(
            meta.as_ref().map(MetadataExt::ino),
            meta.as_ref().map_or(0, |m| m.len()),
        );
        let mut out = Vec::new();
        match change {
            Change::Same => {
                if self.file.is_none() {
                    // The file (re)appeared.
                    self.reopen();
                }
                out.extend(self.read_rest()?);
            }
            Change::Truncated => {
                self.stats.truncations += 1;
                self.stats.torn_bytes += self.state.partial.len() as u64;
                self.state.offset = 0;
                self.state.partial.clear();
                out.extend(self.read_rest()?);
            }
            Change::Rotated | Change::Missing => {
                // Finish the old file first: records appended just before the rename.
                out.extend(self.read_rest()?);
                if change == Change::Rotated {
                    self.stats.rotations += 1;
                    self.stats.torn_bytes += self.state.partial.len() as u64;
                    self.reopen();
                    out.extend(self.read_rest()?);
                }
            }
        }
        Ok(out)
    }

    fn reopen(&mut self) {
        self.file = File::open(&self.path).ok();
        self.state = TailState {
            inode: self
                .file
                .as_ref()
                .and_then(|f| f.metadata().ok())
                .map(|m| m.ino()),
            offset: 0,
            partial: Vec::new(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn feed_buffers_half_records() {
        let mut s = TailState::default();
        assert!(s.feed(&[1; 5], 4).len() == 1);
        assert_eq!(s.partial, vec![1]);
        let r = s.feed(&[2; 3], 4);
        assert_eq!(r, vec![vec![1, 2, 2, 2]]);
        assert!(s.partial.is_empty());
        assert_eq!(s.offset, 8);
    }

    #[test]
    fn classify_changes() {
        let s = TailState {
            inode: Some(5),
            offset: 100,
            partial: vec![],
        };
        assert_eq!(s.classify(Some(5), 200), Change::Same);
        assert_eq!(s.classify(Some(5), 50), Change::Truncated);
        assert_eq!(s.classify(Some(6), 500), Change::Rotated);
        assert_eq!(s.classify(None, 0), Change::Missing);
    }

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "tail-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn appends_rotation_and_truncation_on_real_files() {
        let d = dir();
        let p = d.join("wtmp");
        std::fs::write(&p, [0u8; 8]).unwrap(); // history: skipped
        let mut t = Tailer::new(&p, 4, false);
        assert!(t.poll().unwrap().is_empty());
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&[1, 1, 1, 1, 2, 2]).unwrap();
        assert_eq!(t.poll().unwrap(), vec![vec![1; 4]]);
        f.write_all(&[2, 2]).unwrap();
        assert_eq!(t.poll().unwrap(), vec![vec![2; 4]]);
        // rotation: a last record lands in the old file, then a new file appears
        f.write_all(&[3; 4]).unwrap();
        std::fs::rename(&p, d.join("wtmp.1")).unwrap();
        std::fs::write(&p, [4u8; 4]).unwrap();
        assert_eq!(t.poll().unwrap(), vec![vec![3; 4], vec![4; 4]]);
        assert_eq!(t.stats.rotations, 1);
        // truncation in place
        std::fs::write(&p, [5u8; 4]).unwrap();
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(0);
        std::fs::write(&p, []).unwrap();
        assert!(t.poll().unwrap().is_empty());
        std::fs::write(&p, [6u8; 4]).unwrap();
        let got = t.poll().unwrap();
        assert_eq!(got, vec![vec![6; 4]]);
        assert!(t.stats.truncations >= 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn missing_file_appears_later() {
        let root = dir();
        let d = root.join("late");
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("btmp");
        let mut t = Tailer::new(&p, 4, false);
        assert!(t.poll().unwrap().is_empty());
        std::fs::write(&p, [7u8; 4]).unwrap();
        assert_eq!(t.poll().unwrap(), vec![vec![7; 4]]);
        let _ = std::fs::remove_dir_all(&root);
    }
}
