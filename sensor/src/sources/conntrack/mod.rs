//! Network flows from conntrack (off by default): ctnetlink new/destroy events become `flow`
//! events. The kernel only reports connections it tracks, and it tracks them only when
//! something in the network namespace uses conntrack (an nft rule with a `ct` expression, an
//! iptables `-m conntrack/state` rule, NAT, ...). The sensor never changes the firewall on its
//! own; `add_tracking_table = true` explicitly asks for a minimal table (see
//! [`tracking_table`]) that is removed on exit.
//!
//! - [`msg`]: pure parser of ctnetlink messages (fixtures and fuzzing);
//! - [`source`]: the netlink subscription thread ([`ConntrackCapture`]);
//! - [`tracking_table`]: the optional nft table, in nftables netlink, plus a ruleset dump;
//! - [`events_will_flow`] / [`probe`]: what `sensor probe` reports.
pub mod msg;
pub mod source;
pub mod tracking_table;

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use source::{ConntrackCapture, ConntrackError, ConntrackStats};

/// `[conntrack]` in the TOML configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConntrackConfig {
    /// Emit `flow` events from conntrack. Off by default.
    pub enabled: bool,
    /// Add a minimal nft table `inet sensor_conntrack` whose only rule is `ct state new` (no
    /// verdict), so that the kernel tracks connections even when no other rule uses conntrack.
    /// Removed on exit (and by the kernel if the sensor dies, on kernels >= 5.12). Off by
    /// default: the sensor never touches the firewall unless told to.
    pub add_tracking_table: bool,
    /// Receive buffer of the event socket; a full buffer loses events (counted as
    /// `conntrack_socket_overflows`).
    pub receive_buffer_bytes: u32,
    /// Report flows between two loopback addresses.
    pub include_loopback: bool,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            add_tracking_table: false,
            receive_buffer_bytes: 8 * 1024 * 1024,
            include_loopback: true,
        }
    }
}

const SYSCTL_DIR: &str = "/proc/sys/net/netfilter";
const XT_TABLES: [&str; 2] = ["/proc/net/ip_tables_names", "/proc/net/ip6_tables_names"];

/// What the probe found about conntrack on this host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConntrackProbe {
    /// `/proc/sys/net/netfilter/nf_conntrack_max` exists (nf_conntrack built in or loaded).
    pub present: bool,
    /// `nf_conntrack_events`: 0 off, 1 on, 2 on when a listener exists (default on new kernels).
    pub events_sysctl: Option<u32>,
    /// `nf_conntrack_acct`: byte/packet counters.
    pub acct: Option<u32>,
    /// `nf_conntrack_count`: entries tracked right now.
    pub count: Option<u64>,
    /// nft rules that make the kernel track connections (None: the ruleset could not be read).
    pub ct_rules: Option<Vec<String>>,
    /// Why the ruleset could not be read.
    pub ruleset_error: Option<String>,
    /// iptables-legacy (x_tables) tables that exist (`/proc/net/ip{,6}_tables_names`): their
    /// rules cannot be read through nftables netlink and may use conntrack; `nat` always does.
    pub legacy_tables: Vec<String>,
    /// Why subscribing to the event groups failed (None: it works).
    pub subscribe_error: Option<String>,
}

fn read_num(dir: &Path, name: &str) -> Option<u64> {
    std::fs::read_to_string(dir.join(name))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Probes the host (cheap: a few sysctl reads, one ruleset dump, one socket bind).
pub fn probe() -> ConntrackProbe {
    let dir = Path::new(SYSCTL_DIR);
    let mut p = ConntrackProbe {
        present: dir.join("nf_conntrack_max").exists(),
        events_sysctl: read_num(dir, "nf_conntrack_events").map(|v| v as u32),
        acct: read_num(dir, "nf_conntrack_acct").map(|v| v as u32),
        count: read_num(dir, "nf_conntrack_count"),
        ..Default::default()
    };
    match tracking_table::dump_rules() {
        Ok(rules) => {
            p.ct_rules = Some(
                rules
                    .iter()
                    .filter(|r| r.uses_conntrack())
                    .map(|r| {
                        let fam = match r.family {
                            1 => "inet",
                            2 => "ip",
                            10 => "ip6",
                            3 => "arp",
                            7 => "bridge",
                            5 => "netdev",
                            _ => "?",
                        };
                        format!("{fam} {} {}", r.table, r.chain)
                    })
                    .collect(),
            )
        }
        Err(e) => p.ruleset_error = Some(e.to_string()),
    }
    for f in XT_TABLES {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for t in text.lines().map(str::trim).filter(|t| !t.is_empty()) {
            if !p.legacy_tables.iter().any(|x| x == t) {
                p.legacy_tables.push(t.to_string());
            }
        }
    }
    p.subscribe_error = source::NfnlSocket::open(
        source::NF_NETLINK_CONNTRACK_NEW | source::NF_NETLINK_CONNTRACK_DESTROY,
    )
    .err()
    .map(|e| e.to_string());
    p
}

impl ConntrackProbe {
    /// Whether conntrack events will arrive, and a one-line reason. `with_tracking_table`:
    /// the sensor is configured to add its own table.
    ///
    /// Limits (said in the reason where they apply): rules of iptables-legacy, of other
    /// network namespaces and of kernel users of conntrack (OVS, IPVS, bridge netfilter) are
    /// not visible in the nft ruleset; a non-zero entry count is then the only (indirect)
    /// sign, and entries can outlive the rule that created them until they time out.
    pub fn will_flow(&self, with_tracking_table: bool) -> (bool, String) {
        let mut why = String::new();
        let counters = match self.acct {
            Some(1) => "counters on (nf_conntrack_acct=1)",
            Some(_) => "no byte/packet counters (nf_conntrack_acct=0)",
            None => "counters unknown",
        };
        let count = self
            .count
            .map_or("nf_conntrack_count unreadable".to_string(), |c| {
                format!("nf_conntrack_count={c}")
            });
        if let Some(e) = &self.subscribe_error {
            let _ = write!(
                why,
                "cannot subscribe to conntrack events ({e}; needs CAP_NET_ADMIN)"
            );
            return (false, why);
        }
        if self.events_sysctl == Some(0) {
            return (
                false,
                "event delivery is off (net.netfilter.nf_conntrack_events=0)".into(),
            );
        }
        if with_tracking_table {
            return (
                true,
                format!("the sensor adds its own tracking table; {counters}; {count}"),
            );
        }
        if !self.present {
            // A rule using ct would load the module, so absence means nothing uses it.
            return (
                false,
                "nf_conntrack is not loaded: no rule uses conntrack (set conntrack.add_tracking_table = true or add a rule such as `ct state new`)".into(),
            );
        }
        match &self.ct_rules {
            Some(r) if !r.is_empty() => {
                let shown: Vec<&str> = r.iter().take(3).map(String::as_str).collect();
                return (
                    true,
                    format!(
                        "{} nft rule(s) use conntrack ({}{}); {counters}; {count}",
                        r.len(),
                        shown.join(", "),
                        if r.len() > 3 { ", ..." } else { "" }
                    ),
                );
            }
            _ => {}
        }
        let ruleset = match (&self.ct_rules, &self.ruleset_error) {
            (Some(_), _) => "no nft rule uses conntrack".to_string(),
            (None, Some(e)) => format!("nft ruleset unreadable ({e})"),
            (None, None) => "nft ruleset not checked".to_string(),
        };
        if self.legacy_tables.iter().any(|t| t == "nat") {
            return (
                true,
                format!("{ruleset}, but an iptables-legacy nat table exists (NAT uses conntrack); {counters}; {count}"),
            );
        }
        let legacy = if self.legacy_tables.is_empty() {
            String::new()
        } else {
            format!(
                "; iptables-legacy tables exist ({}) whose rules cannot be read: if they use -m conntrack/state, events flow",
                self.legacy_tables.join(", ")
            )
        };
        if self.count.unwrap_or(0) > 0 {
            return (
                true,
                format!(
                    "probably: {ruleset}, but connections are tracked ({count}): something outside nft (iptables-legacy, OVS, IPVS) uses conntrack, or the entries are left over and will time out{legacy}; {counters}"
                ),
            );
        }
        (
            false,
            format!(
                "{ruleset} and no connection is tracked ({count}): the kernel will report nothing; set conntrack.add_tracking_table = true or add a rule such as `ct state new`{legacy}"
            ),
        )
    }
}

/// Whether conntrack events will arrive with the host as it is (without the sensor's own
/// tracking table), and why not. See [`ConntrackProbe::will_flow`] for the limits.
pub fn events_will_flow() -> (bool, String) {
    probe().will_flow(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ConntrackProbe {
        ConntrackProbe {
            present: true,
            events_sysctl: Some(2),
            acct: Some(0),
            count: Some(0),
            ct_rules: Some(vec![]),
            ruleset_error: None,
            legacy_tables: vec![],
            subscribe_error: None,
        }
    }

    #[test]
    fn default_is_off() {
        let c = ConntrackConfig::default();
        assert!(!c.enabled);
        assert!(!c.add_tracking_table);
        let t = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<ConntrackConfig>(&t).unwrap(), c);
        assert!(toml::from_str::<ConntrackConfig>("bogus = 1").is_err());
    }

    #[test]
    fn verdicts() {
        let (ok, why) = base().will_flow(false);
        assert!(!ok);
        assert!(why.contains("no nft rule uses conntrack"), "{why}");
        assert!(why.contains("add_tracking_table"), "{why}");

        let (ok, why) = base().will_flow(true);
        assert!(ok, "{why}");

        let mut p = base();
        p.ct_rules = Some(vec!["inet filter input".into()]);
        p.acct = Some(1);
        let (ok, why) = p.will_flow(false);
        assert!(ok);
        assert!(
            why.contains("inet filter input") && why.contains("counters on"),
            "{why}"
        );

        let mut p = base();
        p.count = Some(12);
        let (ok, why) = p.will_flow(false);
        assert!(ok && why.starts_with("probably"), "{why}");

        let mut p = base();
        p.ct_rules = None;
        p.ruleset_error = Some("EPERM".into());
        let (ok, why) = p.will_flow(false);
        assert!(!ok && why.contains("unreadable"), "{why}");

        let mut p = base();
        p.events_sysctl = Some(0);
        p.ct_rules = Some(vec!["x".into()]);
        assert!(!p.will_flow(true).0);

        let mut p = base();
        p.subscribe_error = Some("EPERM".into());
        let (ok, why) = p.will_flow(true);
        assert!(!ok && why.contains("CAP_NET_ADMIN"), "{why}");

        let mut p = base();
        p.present = false;
        assert!(!p.will_flow(false).0);

        let mut p = base();
        p.legacy_tables = vec!["filter".into()];
        let (ok, why) = p.will_flow(false);
        assert!(
            !ok && why.contains("iptables-legacy tables exist (filter)"),
            "{why}"
        );
        p.legacy_tables.push("nat".into());
        assert!(p.will_flow(false).0);
    }
}
