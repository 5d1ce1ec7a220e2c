//! The sensor opens no listening socket of any kind: its own socket inodes (from
//! /proc/<pid>/fd) against the LISTEN / bound entries of /proc/<pid>/net/{tcp,tcp6,udp,udp6,
//! unix}. Privileged (it runs the real sensor).
mod common;
#[path = "ship_support/sockets.rs"]
mod sockets;

use std::collections::HashSet;

use sockets::*;

#[test]
fn proc_net_parsers() {
    let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:10E1 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:D431 0100007F:10E1 01 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 20 4 30 10 -1\n";
    let v = parse_inet(tcp);
    assert_eq!(
        v[0],
        InetSock {
            inode: 12345,
            state: TCP_LISTEN,
            local_port: 4321,
            remote_port: 0
        }
    );
    assert_eq!((v[1].state, v[1].remote_port), (TCP_ESTABLISHED, 4321));
    let unix = "Num       RefCount Protocol Flags    Type St Inode Path\n0000000000000000: 00000002 00000000 00010000 0001 01 555 /run/x.sock\n0000000000000000: 00000003 00000000 00000000 0001 03 556\n";
    assert_eq!(parse_unix_listening(unix), HashSet::from([555]));
}

#[test]
fn sensor_opens_no_listening_socket() {
    if !common::privileged() {
        return;
    }
    let sensor = common::Sensor::start("ebpf", &[]);
    // Let it settle (health ticks, any lazily opened sockets).
    std::thread::sleep(std::time::Duration::from_secs(3));
    let r = report(sensor.pid());
    assert!(
        r.listening.is_empty(),
        "listening sockets: {:?}",
        r.listening
    );
    // JSON output: no network connection at all.
    assert!(r.tcp.is_empty(), "tcp sockets: {:?}", r.tcp);
    sensor.stop();
}
