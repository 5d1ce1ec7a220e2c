//! The conntrack check (thin): whether the conntrack tables exist, and whether they count bytes.
use std::fs;
use std::path::Path;

use super::error::ProbeError;

const CONNTRACK_MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
const CONNTRACK_ACCT: &str = "/proc/sys/net/netfilter/nf_conntrack_acct";

pub(super) fn check_conntrack() -> Result<String, ProbeError> {
    let path = Path::new(CONNTRACK_MAX);
    let max = fs::read_to_string(path).map_err(|e| ProbeError::io("open", path, e))?;
    let acct = match fs::read_to_string(CONNTRACK_ACCT) {
        Ok(v) => v.trim().to_string(),
        Err(e) => ProbeError::io("open", Path::new(CONNTRACK_ACCT), e).to_string(),
    };
    Ok(format!(
        "nf_conntrack_max={} nf_conntrack_acct={acct}",
        max.trim()
    ))
}
