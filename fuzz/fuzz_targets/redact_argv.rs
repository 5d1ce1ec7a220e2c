//! Arbitrary command lines through the redactor with its built-in rules: it must never
//! panic, keep the argument count, and leave an argv it reports unchanged byte-identical.
//!
//! Input: arguments separated by NUL bytes, as in `/proc/<pid>/cmdline`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sensor::filter::redact::{RedactionConfig, Redactor};

fn redactor() -> &'static Redactor {
    static R: OnceLock<Redactor> = OnceLock::new();
    R.get_or_init(|| Redactor::new(&RedactionConfig::default()).expect("built-in rules"))
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 4096 {
        return;
    }
    let text = String::from_utf8_lossy(data);
    let original: Vec<String> = text.split('\0').map(str::to_string).collect();
    let mut argv = original.clone();
    let changed = redactor().redact_argv(&mut argv);
    assert_eq!(argv.len(), original.len());
    let differing = argv.iter().zip(&original).filter(|(a, b)| a != b).count();
    assert!(differing <= changed, "{differing} args differ, {changed} reported");
});
