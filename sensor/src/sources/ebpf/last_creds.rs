//! The last known credentials of the processes that were there before the programs were
//! attached. The kernel side keeps every process's last known credentials (`LAST_CREDS`,
//! `sensor-ebpf/src/cred_watch.rs`) from its fork, exec and reported changes; a process older
//! than the sensor has none until then. Its ia32 set*id would then be reported only if it
//! changed the ids again, so its entry is filled in here, from `/proc/<pid>/status`, once the
//! fork program is attached (docs/ARCHITECTURE.md, "ia32").
use std::path::Path;

use aya::{maps::HashMap, Ebpf};
use sensor_common::CredSnap;

use crate::{
    enrich::procfs,
    proc_text::{parse_status, status_field},
};

/// `BPF_NOEXIST`: an entry the kernel side wrote meanwhile is newer than /proc's text.
const BPF_NOEXIST: u64 = 1;

/// What `seed` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Seeded {
    /// Entries written.
    pub written: usize,
    /// Processes the kernel side already knew.
    pub known: usize,
    /// Processes whose status could not be read or parsed (most exited during the walk).
    pub unreadable: usize,
    /// Entries the map refused (full, or another error).
    pub refused: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum LastCredsError {
    #[error("map LAST_CREDS missing from the object")]
    Missing,
    #[error("map LAST_CREDS: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("{path}: {source}")]
    Proc {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The credentials `/proc/<pid>/status` text states: real and effective uid and gid, and the
/// effective capabilities (`CapEff`, hexadecimal).
pub fn creds_of_status(text: &str) -> Option<CredSnap> {
    let ids = parse_status(text)?;
    let cap_effective = u64::from_str_radix(status_field(text, "CapEff")?, 16).ok()?;
    Some(CredSnap {
        uid: ids.uid,
        euid: ids.euid,
        gid: ids.gid,
        egid: ids.egid,
        cap_effective,
    })
}

/// Writes the credentials of every process under `proc_root` that `LAST_CREDS` lacks.
pub fn seed(ebpf: &mut Ebpf, proc_root: &Path) -> Result<Seeded, LastCredsError> {
    let map = ebpf.map_mut("LAST_CREDS").ok_or(LastCredsError::Missing)?;
    let mut map: HashMap<_, u32, CredSnap> = HashMap::try_from(map)?;
    let pids = procfs::list_pids(proc_root).map_err(|source| LastCredsError::Proc {
        path: proc_root.display().to_string(),
        source,
    })?;
    let mut seeded = Seeded::default();
    for tgid in pids {
        let Some(creds) = procfs::read_status(proc_root, tgid).and_then(|t| creds_of_status(&t))
        else {
            seeded.unreadable += 1;
            continue;
        };
        match map.insert(tgid, creds, BPF_NOEXIST) {
            Ok(()) => seeded.written += 1,
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::EEXIST) =>
            {
                seeded.known += 1
            }
            Err(_) => seeded.refused += 1,
        }
    }
    Ok(seeded)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of a 6.x `/proc/<pid>/status` that matter, around others.
    const STATUS: &str = "Name:\tsu\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\n\
        Uid:\t1000\t0\t0\t0\nGid:\t100\t50\t50\t50\nFDSize:\t64\n\
        CapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\n\
        CapBnd:\t000001ffffffffff\nNoNewPrivs:\t0\n";

    #[test]
    fn status_gives_real_and_effective_ids_and_effective_caps() {
        assert_eq!(
            creds_of_status(STATUS),
            Some(CredSnap {
                uid: 1000,
                euid: 0,
                gid: 100,
                egid: 50,
                cap_effective: 0x1ff_ffff_ffff,
            })
        );
    }

    #[test]
    fn text_without_every_line_gives_nothing() {
        assert_eq!(creds_of_status(""), None);
        let no_caps = STATUS.replace("CapEff:\t000001ffffffffff\n", "");
        assert_eq!(creds_of_status(&no_caps), None);
        let bad_caps = STATUS.replace("CapEff:\t000001ffffffffff", "CapEff:\tzz");
        assert_eq!(creds_of_status(&bad_caps), None);
        let short_uid = STATUS.replace("Uid:\t1000\t0\t0\t0", "Uid:\t1000");
        assert_eq!(creds_of_status(&short_uid), None);
    }
}
