//! Privileged: the real sensor in eBPF mode against a workload of unique markers.
mod common;

use std::ffi::OsStr;
use std::net::{Ipv6Addr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

use common::*;
use serde_json::Value;

fn run(cmd: &mut Command) -> std::process::ExitStatus {
    cmd.status().expect("spawn workload")
}

#[test]
fn exec_exit_connect_fields() {
    if !privileged() {
        return;
    }
    let sensor = Sensor::start("ebpf", &[]);
    let m = marker("f");

    // argv with spaces, quotes, an empty string and a non-UTF-8 byte.
    let odd = [
        OsStr::new(&m),
        OsStr::new("two words"),
        OsStr::new("\"double\" 'single'"),
        OsStr::new(""),
        OsStr::from_bytes(b"bad\xffbyte"),
    ];
    assert!(run(Command::new("/bin/echo")
        .args(odd)
        .stdout(std::process::Stdio::null()))
    .success());

    // exit codes 0 and 7.
    let m0 = format!("{m}-exit0");
    let m7 = format!("{m}-exit7");
    assert_eq!(
        run(Command::new("/bin/sh").args(["-c", "exit 0", &m0])).code(),
        Some(0)
    );
    assert_eq!(
        run(Command::new("/bin/sh").args(["-c", "exit 7", &m7])).code(),
        Some(7)
    );

    // SIGKILL.
    let mut sleeper = Command::new("/bin/sleep").arg("300").spawn().unwrap();
    let sleeper_pid = sleeper.id();
    std::thread::sleep(std::time::Duration::from_millis(200));
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();

    // child and grandchild (the `; true` stops shells from exec'ing the last command).
    let mp = format!("{m}-parent");
    let mc = format!("{m}-child");
    let mg = format!("{m}-grandchild");
    let script = format!("/bin/sh -c '/bin/echo {mg} >/dev/null; true' {mc}; true");
    assert!(run(Command::new("/bin/sh").args(["-c", &script, &mp])).success());

    // connects: TCP accepted, TCP refused, IPv6 loopback, UDP.
    let me = std::process::id() as u64;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let ok_port = listener.local_addr().unwrap().port();
    drop(TcpStream::connect(("127.0.0.1", ok_port)).unwrap());
    let refused_port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    assert!(TcpStream::connect(("127.0.0.1", refused_port)).is_err());
    let l6 = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
    let v6_port = l6.local_addr().unwrap().port();
    drop(TcpStream::connect((Ipv6Addr::LOCALHOST, v6_port)).unwrap());
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_port = 40000 + (std::process::id() % 20000) as u16;
    udp.connect(("127.0.0.1", udp_port)).unwrap();

    let events = sensor.stop();

    // --- argv and exec fields
    let echo = execs_with_arg(&events, &m);
    assert_eq!(echo.len(), 1, "one exec of echo with marker {m}");
    let p = &echo[0]["process"];
    assert_eq!(echo[0]["source"], "ebpf");
    assert_eq!(p["comm"], "echo");
    assert_eq!(p["exe"], "/bin/echo");
    assert_eq!(p["ppid"], me);
    let argv: Vec<&str> = p["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        argv,
        [
            "/bin/echo",
            m.as_str(),
            "two words",
            "\"double\" 'single'",
            "",
            "bad\\xffbyte"
        ]
    );
    assert_eq!(p["uid"], unsafe { libc::getuid() } as u64);
    assert_eq!(p["euid"], unsafe { libc::geteuid() } as u64);
    assert_eq!(p["cwd"], std::env::current_dir().unwrap().to_str().unwrap());
    for key in ["auid", "session", "tty", "start_time", "cgroup_id"] {
        assert!(p.get(key).is_some(), "process.{key} present");
    }
    let echo_pid = p["pid"].as_u64().unwrap();
    let exit = exit_of(&events, echo_pid).expect("echo exit");
    assert_eq!(exit["exit"]["code"], 0);

    // --- exit codes
    for (mk, code) in [(&m0, 0), (&m7, 7)] {
        let e = execs_with_arg(&events, mk);
        assert_eq!(e.len(), 1, "exec with {mk}");
        let pid = e[0]["process"]["pid"].as_u64().unwrap();
        let x = exit_of(&events, pid).expect("exit event");
        assert_eq!(x["exit"]["code"], code, "{x}");
        assert_eq!(x["exit"]["signal"], Value::Null);
    }
    let x = exit_of(&events, sleeper_pid as u64).expect("sleep exit");
    assert_eq!(x["exit"]["signal"], 9, "{x}");
    assert_eq!(x["exit"]["code"], Value::Null);

    // --- process tree
    let parent = execs_with_arg(&events, &mp);
    let child = execs_with_arg(&events, &mc);
    let grand = execs_with_arg(&events, &mg);
    assert_eq!((parent.len(), child.len(), grand.len()), (1, 1, 1));
    let pp = parent[0]["process"]["pid"].as_u64().unwrap();
    let cp = child[0]["process"]["pid"].as_u64().unwrap();
    assert_eq!(parent[0]["process"]["ppid"], me);
    assert_eq!(child[0]["process"]["ppid"], pp);
    assert_eq!(grand[0]["process"]["ppid"], cp);
    assert_ne!(pp, cp);

    // --- connects from this test process
    let connects: Vec<&Value> = of_kind(&events, "net_connect")
        .into_iter()
        .filter(|e| e["process"]["pid"] == me)
        .collect();
    let find = |addr: &str, port: u16| -> &Value {
        connects
            .iter()
            .find(|e| e["connect"]["dst_addr"] == addr && e["connect"]["dst_port"] == port)
            .unwrap_or_else(|| panic!("connect to {addr}:{port} in {connects:?}"))
    };
    let c = &find("127.0.0.1", ok_port)["connect"];
    assert_eq!(
        (
            c["family"].as_str(),
            c["protocol"].as_str(),
            c["result"].as_str()
        ),
        (Some("ipv4"), Some("tcp"), Some("success"))
    );
    let c = &find("127.0.0.1", refused_port)["connect"];
    assert_eq!(
        (
            c["protocol"].as_str(),
            c["result"].as_str(),
            c["errno"].as_i64()
        ),
        (Some("tcp"), Some("refused"), Some(111))
    );
    let c = &find("::1", v6_port)["connect"];
    assert_eq!(
        (
            c["family"].as_str(),
            c["protocol"].as_str(),
            c["result"].as_str()
        ),
        (Some("ipv6"), Some("tcp"), Some("success"))
    );
    let c = &find("127.0.0.1", udp_port)["connect"];
    assert_eq!(
        (c["protocol"].as_str(), c["result"].as_str()),
        (Some("udp"), Some("success"))
    );

    // --- health at start and at exit, nothing lost
    let health = of_kind(&events, "sensor_health");
    assert!(health.len() >= 2);
    assert_eq!(health[0]["health"]["mode"], "ebpf");
    assert_eq!(final_drops(&events), 0, "{:?}", health.last());
}

#[test]
fn exec_storm_is_complete_or_counted() {
    if !privileged() {
        return;
    }
    const N: usize = 2000;
    let sensor = Sensor::start("ebpf", &[]);
    let m = marker("s");
    for i in 0..N {
        let status = Command::new("/bin/true")
            .arg(format!("{m}-{i}"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let events = sensor.stop();
    let prefix = format!("{m}-");
    let pids: std::collections::HashSet<u64> = events
        .iter()
        .filter(|e| e["kind"] == "process_exec")
        .filter(|e| {
            e["process"]["argv"][1]
                .as_str()
                .is_some_and(|a| a.starts_with(&prefix))
        })
        .map(|e| e["process"]["pid"].as_u64().unwrap())
        .collect();
    let execs = events
        .iter()
        .filter(|e| e["kind"] == "process_exec")
        .filter(|e| {
            e["process"]["argv"][1]
                .as_str()
                .is_some_and(|a| a.starts_with(&prefix))
        })
        .count();
    let exits = events
        .iter()
        .filter(|e| e["kind"] == "process_exit")
        .filter(|e| {
            e["process"]["pid"]
                .as_u64()
                .is_some_and(|p| pids.contains(&p))
        })
        .count();
    let drops = final_drops(&events);
    eprintln!("storm: {execs} exec, {exits} exit events of {N}; drops reported {drops}");
    assert!(execs <= N && exits <= execs);
    let shortfall = (N - execs) + (execs - exits);
    assert!(
        shortfall as u64 <= drops,
        "{shortfall} events missing but only {drops} drops reported"
    );
}

#[test]
fn sigint_flushes_and_exits_cleanly() {
    if !privileged() {
        return;
    }
    let sensor = Sensor::start("ebpf", &[]);
    let m = marker("i");
    assert!(Command::new("/bin/true")
        .arg(&m)
        .status()
        .unwrap()
        .success());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(sensor.pid() as i32, libc::SIGINT) };
    let events = sensor.stop();
    assert_eq!(execs_with_arg(&events, &m).len(), 1);
    assert_eq!(
        events.last().unwrap()["kind"],
        "sensor_health",
        "final health event last"
    );
}
