//! Capture sources. Each produces normalized events into a bounded channel.
pub mod audit;
pub mod conntrack;
pub mod ebpf;
pub mod files;
pub mod logins;
pub mod netlink;
