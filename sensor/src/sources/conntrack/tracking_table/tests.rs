//! Unit tests of the `tracking_table` module.
use super::*;

#[test]
fn add_batch_layout() {
    let (d, acked) = build_add_batch("t", 100, true);
    assert_eq!(acked, vec![101, 102, 103]);
    let msgs: Vec<_> = nlmsg::messages(&d)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let types: Vec<u16> = msgs.iter().map(|m| m.msg_type).collect();
    assert_eq!(
        types,
        vec![
            NFNL_MSG_BATCH_BEGIN,
            nft_type(NFT_MSG_NEWTABLE),
            nft_type(NFT_MSG_NEWCHAIN),
            nft_type(NFT_MSG_NEWRULE),
            NFNL_MSG_BATCH_END
        ]
    );
    assert_eq!(msgs[0].payload, &[0, 0, 0, 10]); // res_id = NFNL_SUBSYS_NFTABLES, big-endian
    assert_eq!(msgs[4].seq, 104);
    // The table carries the owner flag.
    let flags = attrs(&msgs[1].payload[4..])
        .map(Result::unwrap)
        .find(|a| a.kind == NFTA_TABLE_FLAGS)
        .unwrap();
    assert_eq!(flags.payload, &NFT_TABLE_F_OWNER.to_be_bytes());
    // The rule parses back as ct + bitwise + cmp and counts as using conntrack.
    let r = parse_rule(msgs[3].payload).unwrap();
    assert_eq!((r.table.as_str(), r.chain.as_str()), ("t", CHAIN_NAME));
    assert_eq!(r.exprs, vec!["ct", "bitwise", "cmp"]);
    assert!(r.uses_conntrack());
    assert_eq!(r.family, NFPROTO_INET);
    let (_, acked) = build_add_batch("t", 1, false);
    assert_eq!(acked.len(), 3);
}

#[test]
fn del_batch_layout() {
    let (d, acked) = build_del_batch("sensor_conntrack", 7);
    assert_eq!(acked, vec![8]);
    let msgs: Vec<_> = nlmsg::messages(&d)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[1].msg_type, nft_type(NFT_MSG_DELTABLE));
    assert_eq!(msgs[1].flags, NLM_F_REQUEST | NLM_F_ACK);
    let name = attrs(&msgs[1].payload[4..]).next().unwrap().unwrap();
    assert_eq!(name.payload, b"sensor_conntrack\0");
}

#[test]
fn conntrack_detection() {
    let mk = |exprs: &[&str]| RuleSummary {
        family: 2,
        table: "filter".into(),
        chain: "INPUT".into(),
        exprs: exprs.iter().map(|s| s.to_string()).collect(),
    };
    assert!(mk(&["payload", "cmp", "match:conntrack", "counter"]).uses_conntrack());
    assert!(mk(&["target:MASQUERADE"]).uses_conntrack());
    assert!(mk(&["masq"]).uses_conntrack());
    assert!(!mk(&["payload", "cmp", "immediate"]).uses_conntrack());
    assert!(!mk(&["match:tcp", "target:ACCEPT"]).uses_conntrack());
    assert!(!mk(&["notrack"]).uses_conntrack());
}

#[test]
fn xt_match_names_are_read() {
    let e = nested(
        NFTA_LIST_ELEM,
        &[
            attr(NFTA_EXPR_NAME, b"match\0"),
            nested(NFTA_EXPR_DATA, &[attr(NFTA_MATCH_NAME, b"state\0")]),
        ],
    );
    let mut payload = vec![2, 0, 0, 0];
    payload.extend(attr(NFTA_RULE_TABLE, b"filter\0"));
    payload.extend(nested(NFTA_RULE_EXPRESSIONS, &[e]));
    let r = parse_rule(&payload).unwrap();
    assert_eq!(r.exprs, vec!["match:state"]);
    assert!(r.uses_conntrack());
    assert!(parse_rule(&[1, 2]).is_err());
    let mut bad = payload.clone();
    bad[4] = 2; // attribute length 2
    assert!(parse_rule(&bad).is_err());
}
