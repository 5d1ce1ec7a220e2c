//! The optional tracking table (`conntrack.add_tracking_table = true`), spoken directly in
//! nftables netlink (`NFNL_SUBSYS_NFTABLES` batches) — the sensor never runs `nft`.
//!
//! It is the equivalent of
//! ```text
//! table inet sensor_conntrack {            # flags owner (kernel >= 5.12)
//!     chain track {
//!         type filter hook prerouting priority 0; policy accept;
//!         ct state new
//!     }
//! }
//! ```
//! The `ct` expression makes the kernel register conntrack for IPv4 and IPv6 in the network
//! namespace (all hooks), so every connection is tracked and reported; the rule has no verdict
//! and changes no packet's fate. With the `owner` flag the kernel deletes the table itself when
//! the sensor's socket closes, so even a crash (SIGKILL) leaves no table behind; on older
//! kernels the flag is refused and the table is created without it and removed on `remove` /
//! drop only.
//!
//! Also here: a dump of the ruleset (`NFT_MSG_GETRULE`) to tell whether some rule references
//! conntrack, for [`super::events_will_flow`].
use std::time::{Duration, Instant};

use super::msg::{attrs, build::attr, build::nested, CtParseError};
use super::source::{ConntrackError, NfnlSocket};
use crate::sources::nlmsg;

pub const TABLE_NAME: &str = "sensor_conntrack";
pub const CHAIN_NAME: &str = "track";

pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub const NFNL_MSG_BATCH_END: u16 = 0x11;
pub const NFT_MSG_NEWTABLE: u16 = 0;
pub const NFT_MSG_DELTABLE: u16 = 2;
pub const NFT_MSG_NEWCHAIN: u16 = 3;
pub const NFT_MSG_NEWRULE: u16 = 6;
pub const NFT_MSG_GETRULE: u16 = 7;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLM_F_DUMP: u16 = 0x300;

pub const NFPROTO_UNSPEC: u8 = 0;
pub const NFPROTO_INET: u8 = 1;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
const NFT_TABLE_F_OWNER: u32 = 0x2;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NF_INET_PRE_ROUTING: u32 = 0;
const NF_ACCEPT: u32 = 1;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_CT_DREG: u16 = 1;
const NFTA_CT_KEY: u16 = 2;
const NFT_CT_STATE: u32 = 0;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFT_CMP_NEQ: u32 = 1;
const NFTA_DATA_VALUE: u16 = 1;
const NFT_REG_1: u32 = 1;
/// `NF_CT_STATE_BIT(IP_CT_NEW)` = 1 << (2 + 1), in host byte order like nft sends it.
const CT_STATE_NEW_BIT: u32 = 1 << 3;
/// xt matches / targets (iptables-nft) stored as `match` / `target` expressions.
const NFTA_MATCH_NAME: u16 = 1;

/// Expressions whose presence makes the kernel track connections (they take a conntrack
/// reference on the namespace when the rule is loaded).
const CT_EXPRS: [&str; 7] = [
    "ct",
    "connlimit",
    "nat",
    "masq",
    "redir",
    "flow_offload",
    "synproxy",
];
/// xt extensions (iptables-nft compat expressions) that need conntrack.
const CT_XT: [&str; 12] = [
    "conntrack",
    "state",
    "connbytes",
    "connmark",
    "connlimit",
    "helper",
    "CT",
    "CONNMARK",
    "MASQUERADE",
    "SNAT",
    "DNAT",
    "REDIRECT",
];

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("netlink: {0}")]
    Socket(Box<ConntrackError>),
    #[error("{op}: kernel answered {}", std::io::Error::from_raw_os_error(*errno))]
    Kernel { op: &'static str, errno: i32 },
    #[error("{op}: no answer within {timeout:?}")]
    Timeout { op: &'static str, timeout: Duration },
    #[error("malformed reply: {0}")]
    Malformed(#[from] CtParseError),
}

impl From<ConntrackError> for TableError {
    fn from(e: ConntrackError) -> Self {
        TableError::Socket(Box::new(e))
    }
}

impl TableError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            TableError::Kernel { errno, .. } => Some(*errno),
            TableError::Socket(e) => e.errno(),
            _ => None,
        }
    }
}

fn nfgenmsg(family: u8, res_id: u16) -> [u8; 4] {
    let r = res_id.to_be_bytes();
    [family, 0, r[0], r[1]]
}

fn nft_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn message(msg_type: u16, flags: u16, seq: u32, family: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
    let mut payload = nfgenmsg(family, 0).to_vec();
    payload.extend(attrs.concat());
    nlmsg::build(msg_type, flags, seq, &payload)
}

/// Wraps `msgs` (type, flags, family, attrs) in BATCH_BEGIN / BATCH_END; sequence numbers
/// start at `seq`. Returns the datagram and the sequence numbers that expect an ack.
fn batch(seq: u32, msgs: &[(u16, u16, u8, Vec<Vec<u8>>)]) -> (Vec<u8>, Vec<u32>) {
    let mut out = nlmsg::build(
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        seq,
        &nfgenmsg(NFPROTO_UNSPEC, NFNL_SUBSYS_NFTABLES),
    );
    let mut acked = Vec::new();
    for (i, (ty, flags, family, a)) in msgs.iter().enumerate() {
        let s = seq.wrapping_add(1 + i as u32);
        out.extend(message(
            nft_type(*ty),
            NLM_F_REQUEST | NLM_F_ACK | flags,
            s,
            *family,
            a,
        ));
        acked.push(s);
    }
    out.extend(nlmsg::build(
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        seq.wrapping_add(1 + msgs.len() as u32),
        &nfgenmsg(NFPROTO_UNSPEC, NFNL_SUBSYS_NFTABLES),
    ));
    (out, acked)
}

fn expr(name: &str, data: &[Vec<u8>]) -> Vec<u8> {
    nested(
        NFTA_LIST_ELEM,
        &[
            attr(NFTA_EXPR_NAME, &cstr(name)),
            nested(NFTA_EXPR_DATA, data),
        ],
    )
}

fn be32(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

/// The batch that creates the table, its chain and the `ct state new` rule (pure).
pub fn build_add_batch(name: &str, seq: u32, owner: bool) -> (Vec<u8>, Vec<u32>) {
    let flags = if owner { NFT_TABLE_F_OWNER } else { 0 };
    let table = vec![
        attr(NFTA_TABLE_NAME, &cstr(name)),
        attr(NFTA_TABLE_FLAGS, &be32(flags)),
    ];
    let chain = vec![
        attr(NFTA_CHAIN_TABLE, &cstr(name)),
        attr(NFTA_CHAIN_NAME, &cstr(CHAIN_NAME)),
        nested(
            NFTA_CHAIN_HOOK,
            &[
                attr(NFTA_HOOK_HOOKNUM, &be32(NF_INET_PRE_ROUTING)),
                attr(NFTA_HOOK_PRIORITY, &be32(0)),
            ],
        ),
        attr(NFTA_CHAIN_POLICY, &be32(NF_ACCEPT)),
        attr(NFTA_CHAIN_TYPE, &cstr("filter")),
    ];
    // ct state new: ct load into reg 1, bitwise & NEW bit, cmp != 0 (as `nft` compiles it).
    let exprs = vec![
        expr(
            "ct",
            &[
                attr(NFTA_CT_DREG, &be32(NFT_REG_1)),
                attr(NFTA_CT_KEY, &be32(NFT_CT_STATE)),
            ],
        ),
        expr(
            "bitwise",
            &[
                attr(NFTA_BITWISE_SREG, &be32(NFT_REG_1)),
                attr(NFTA_BITWISE_DREG, &be32(NFT_REG_1)),
                attr(NFTA_BITWISE_LEN, &be32(4)),
                nested(
                    NFTA_BITWISE_MASK,
                    &[attr(NFTA_DATA_VALUE, &CT_STATE_NEW_BIT.to_ne_bytes())],
                ),
                nested(
                    NFTA_BITWISE_XOR,
                    &[attr(NFTA_DATA_VALUE, &0u32.to_ne_bytes())],
                ),
            ],
        ),
        expr(
            "cmp",
            &[
                attr(NFTA_CMP_SREG, &be32(NFT_REG_1)),
                attr(NFTA_CMP_OP, &be32(NFT_CMP_NEQ)),
                nested(NFTA_CMP_DATA, &[attr(NFTA_DATA_VALUE, &0u32.to_ne_bytes())]),
            ],
        ),
    ];
    let rule = vec![
        attr(NFTA_RULE_TABLE, &cstr(name)),
        attr(NFTA_RULE_CHAIN, &cstr(CHAIN_NAME)),
        nested(NFTA_RULE_EXPRESSIONS, &exprs),
    ];
    batch(
        seq,
        &[
            (
                NFT_MSG_NEWTABLE,
                NLM_F_CREATE | NLM_F_EXCL,
                NFPROTO_INET,
                table,
            ),
            (
                NFT_MSG_NEWCHAIN,
                NLM_F_CREATE | NLM_F_EXCL,
                NFPROTO_INET,
                chain,
            ),
            (
                NFT_MSG_NEWRULE,
                NLM_F_CREATE | NLM_F_APPEND,
                NFPROTO_INET,
                rule,
            ),
        ],
    )
}

/// The batch that deletes the table with everything in it (pure).
pub fn build_del_batch(name: &str, seq: u32) -> (Vec<u8>, Vec<u32>) {
    batch(
        seq,
        &[(
            NFT_MSG_DELTABLE,
            0,
            NFPROTO_INET,
            vec![attr(NFTA_TABLE_NAME, &cstr(name))],
        )],
    )
}

const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends a batch and waits for an ack (or error) for each of `acked`.
fn transact(
    sock: &mut NfnlSocket,
    op: &'static str,
    datagram: &[u8],
    acked: &[u32],
) -> Result<(), TableError> {
    sock.set_timeout(Duration::from_millis(200))?;
    sock.send(datagram)?;
    let mut pending: Vec<u32> = acked.to_vec();
    let mut first_error = None;
    let deadline = Instant::now() + REPLY_TIMEOUT;
    while !pending.is_empty() && Instant::now() < deadline {
        let Some(buf) = sock.recv()? else {
            if first_error.is_some() {
                break; // after an error the kernel may not ack the rest of the batch
            }
            continue;
        };
        for m in nlmsg::messages(buf) {
            let Ok(m) = m else { break };
            if m.msg_type != nlmsg::NLMSG_ERROR {
                continue;
            }
            // The error payload carries the original header: its seq says which message.
            let code = nlmsg::error_code(m.payload);
            let seq = m
                .payload
                .get(12..16)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .unwrap_or(m.seq);
            pending.retain(|&s| s != seq && s != m.seq);
            match code {
                Some(0) => {}
                Some(errno) => {
                    first_error.get_or_insert(TableError::Kernel { op, errno });
                }
                None => {
                    first_error.get_or_insert(TableError::Kernel {
                        op,
                        errno: libc::EPROTO,
                    });
                }
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if !pending.is_empty() {
        return Err(TableError::Timeout {
            op,
            timeout: REPLY_TIMEOUT,
        });
    }
    Ok(())
}

/// The installed tracking table. Removed by [`TrackingTable::remove`] or on drop; with the
/// `owner` flag the kernel also removes it when this socket closes.
pub struct TrackingTable {
    sock: NfnlSocket,
    name: String,
    owned: bool,
    seq: u32,
    removed: bool,
}

impl TrackingTable {
    /// Adds the table. A table of the same name left by an earlier run (without the owner
    /// flag) is replaced.
    pub fn add(name: &str) -> Result<Self, TableError> {
        let mut sock = NfnlSocket::open(0)?;
        let mut seq = seed_seq();
        let mut owned = true;
        for attempt in 0..3 {
            let (dgram, acked) = build_add_batch(name, seq, owned);
            seq = seq.wrapping_add(acked.len() as u32 + 2);
            match transact(&mut sock, "add tracking table", &dgram, &acked) {
                Ok(()) => {
                    return Ok(Self {
                        sock,
                        name: name.to_string(),
                        owned,
                        seq,
                        removed: false,
                    })
                }
                // Kernels before 5.12 reject the owner flag.
                Err(e)
                    if owned
                        && matches!(e.errno(), Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)) =>
                {
                    tracing::info!(error = %e, "nftables refused the owner flag; the table is removed on exit only");
                    owned = false;
                }
                Err(e) if e.errno() == Some(libc::EEXIST) && attempt < 2 => {
                    tracing::warn!(
                        table = name,
                        "a stale tracking table exists (left by an earlier run); replacing it"
                    );
                    let (dgram, acked) = build_del_batch(name, seq);
                    seq = seq.wrapping_add(acked.len() as u32 + 2);
                    transact(&mut sock, "delete stale tracking table", &dgram, &acked)?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(TableError::Kernel {
            op: "add tracking table",
            errno: libc::EEXIST,
        })
    }

    /// True when the kernel owns the table's lifetime (removed when the socket closes).
    pub fn owned(&self) -> bool {
        self.owned
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn delete(&mut self) -> Result<(), TableError> {
        self.removed = true;
        let (dgram, acked) = build_del_batch(&self.name, self.seq);
        self.seq = self.seq.wrapping_add(3);
        match transact(&mut self.sock, "delete tracking table", &dgram, &acked) {
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(()),
            r => r,
        }
    }

    /// Deletes the table (a missing table counts as removed).
    pub fn remove(mut self) -> Result<(), TableError> {
        self.delete()
    }
}

impl Drop for TrackingTable {
    fn drop(&mut self) {
        if !self.removed {
            if let Err(e) = self.delete() {
                tracing::error!(error = %e, table = %self.name, "removing the tracking table failed");
            }
        }
    }
}

fn seed_seq() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.subsec_nanos() | 1)
}

/// One rule of the ruleset, reduced to what the probe needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSummary {
    pub family: u8,
    pub table: String,
    pub chain: String,
    /// Expression names; xt extensions as `match:NAME` / `target:NAME`.
    pub exprs: Vec<String>,
}

impl RuleSummary {
    /// Whether loading this rule makes the kernel track connections.
    pub fn uses_conntrack(&self) -> bool {
        self.exprs.iter().any(|e| {
            CT_EXPRS.contains(&e.as_str())
                || e.strip_prefix("match:")
                    .or_else(|| e.strip_prefix("target:"))
                    .is_some_and(|x| CT_XT.contains(&x))
        })
    }
}

fn text(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Parses one `NFT_MSG_NEWRULE` payload (nfgenmsg + attributes).
pub fn parse_rule(payload: &[u8]) -> Result<RuleSummary, CtParseError> {
    if payload.len() < 4 {
        return Err(CtParseError::NoNfgenmsg { len: payload.len() });
    }
    let mut r = RuleSummary {
        family: payload[0],
        table: String::new(),
        chain: String::new(),
        exprs: Vec::new(),
    };
    for a in attrs(&payload[4..]) {
        let a = a?;
        match a.kind {
            NFTA_RULE_TABLE => r.table = text(a.payload),
            NFTA_RULE_CHAIN => r.chain = text(a.payload),
            NFTA_RULE_EXPRESSIONS => {
                for elem in attrs(a.payload) {
                    let elem = elem?;
                    let (mut name, mut xt) = (String::new(), None);
                    for f in attrs(elem.payload) {
                        let f = f?;
                        match f.kind {
                            NFTA_EXPR_NAME => name = text(f.payload),
                            NFTA_EXPR_DATA => {
                                for d in attrs(f.payload) {
                                    let d = d?;
                                    if d.kind == NFTA_MATCH_NAME {
                                        xt = Some(text(d.payload));
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                    match (name.as_str(), xt) {
                        ("match" | "target", Some(x)) => r.exprs.push(format!("{name}:{x}")),
                        _ => r.exprs.push(name),
                    }
                }
            }
            _ => {}
        }
    }
    Ok(r)
}

/// Dumps every nftables rule of this network namespace (needs CAP_NET_ADMIN).
pub fn dump_rules() -> Result<Vec<RuleSummary>, TableError> {
    let mut sock = NfnlSocket::open(0)?;
    sock.set_timeout(Duration::from_millis(500))?;
    let seq = seed_seq();
    let req = nlmsg::build(
        nft_type(NFT_MSG_GETRULE),
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        &nfgenmsg(NFPROTO_UNSPEC, 0),
    );
    sock.send(&req)?;
    let mut out = Vec::new();
    let deadline = Instant::now() + REPLY_TIMEOUT;
    while Instant::now() < deadline {
        let Some(buf) = sock.recv()? else {
            return Err(TableError::Timeout {
                op: "dump nftables rules",
                timeout: REPLY_TIMEOUT,
            });
        };
        for m in nlmsg::messages(buf) {
            let m = m.map_err(CtParseError::from)?;
            if m.seq != seq {
                continue;
            }
            match m.msg_type {
                nlmsg::NLMSG_DONE => return Ok(out),
                nlmsg::NLMSG_ERROR => match nlmsg::error_code(m.payload) {
                    Some(0) | None => {}
                    Some(errno) => {
                        return Err(TableError::Kernel {
                            op: "dump nftables rules",
                            errno,
                        })
                    }
                },
                t if t == nft_type(NFT_MSG_NEWRULE) => out.push(parse_rule(m.payload)?),
                _ => {}
            }
        }
    }
    Err(TableError::Timeout {
        op: "dump nftables rules",
        timeout: REPLY_TIMEOUT,
    })
}

#[cfg(test)]
mod tests;
