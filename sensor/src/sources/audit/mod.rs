//! Audit netlink fallback: record parsing, grouping by serial, and normalization (pure), used
//! when eBPF cannot load.
pub mod assemble;
pub mod coexist;
pub mod control;
pub mod handover;
pub mod normalize;
pub mod pam;
pub mod privilege;
pub mod proc_connector;
pub mod record;
mod record_loop;
pub mod rules;
pub mod session;
pub mod socket_types;
pub mod source;
pub mod status;
pub mod uring;
