//! Arbitrary bytes as a wtmp/btmp stream: splitting, parsing and mapping never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sensor::sources::logins::map::{LogFile, Sessions};
use sensor::sources::logins::utmp;

fuzz_target!(|data: &[u8]| {
    let (records, _tail) = utmp::split_records(data);
    let mut sessions = Sessions::default();
    let lookup = |_pid: i32| None;
    for raw in records {
        if let Ok(rec) = utmp::parse(raw) {
            let _ = sessions.map(&rec, LogFile::Wtmp, "fuzz", &lookup);
            let _ = sessions.map(&rec, LogFile::Btmp, "fuzz", &lookup);
        }
    }
});
