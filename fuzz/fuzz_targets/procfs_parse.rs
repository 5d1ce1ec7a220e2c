//! Arbitrary bytes as /proc files and cgroup paths: the parsers must never panic, and the
//! container id they return is always 64 lowercase hex digits or empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sensor::enrich::{container, procfs};

fuzz_target!(|data: &[u8]| {
    if let Some(s) = procfs::parse_stat(data) {
        let _ = procfs::tty_name(s.tty_nr);
    }
    let _ = procfs::parse_cmdline(data);
    let text = String::from_utf8_lossy(data);
    let _ = procfs::parse_status(&text);
    let _ = sensor::proc_text::status_kb(&text, "VmRSS");
    let _ = procfs::parse_id_file(&text);
    let _ = procfs::parse_cgroup(&text);
    let c = container::container_from_cgroup_file(&text);
    assert!(c.id.is_empty() || c.id.len() == 64);
    if let Some(id) = container::container_id_from_path(&text) {
        assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
});
