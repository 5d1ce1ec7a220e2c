//! The marker workload both capture modes must report with the same fields.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::net::{Ipv6Addr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::{execs_with_arg, exit_of, marker, of_kind, Sensor};

/// What the workload did, to check against the events.
pub struct Expected {
    pub m: String,
    pub m0: String,
    pub m7: String,
    pub sleeper_pid: u64,
    pub mp: String,
    pub mc: String,
    pub mg: String,
    pub me: u64,
    pub ok_port: u16,
    pub refused_port: u16,
    pub v6_port: u16,
    pub udp_port: u16,
}

fn run(cmd: &mut Command) -> std::process::ExitStatus {
    cmd.status().expect("spawn workload")
}

pub fn run_marker_workload() -> Expected {
    let m = marker("f");
    // argv with spaces, quotes, an empty string and a non-UTF-8 byte.
    let odd = [
        OsStr::new(&m),
        OsStr::new("two words"),
        OsStr::new("\"double\" 'single'"),
        OsStr::new(""),
        OsStr::from_bytes(b"bad\xffbyte"),
    ];
    assert!(run(Command::new("/bin/echo").args(odd).stdout(Stdio::null())).success());

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
    let sleeper_pid = sleeper.id() as u64;
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
    Expected {
        m,
        m0,
        m7,
        sleeper_pid,
        mp,
        mc,
        mg,
        me: std::process::id() as u64,
        ok_port,
        refused_port,
        v6_port,
        udp_port,
    }
}

/// Asserts every event of the workload with its fields; `source` is "ebpf" or "audit".
pub fn assert_marker_events(events: &[Value], x: &Expected, source: &str) {
    // --- argv and exec fields
    let echo = execs_with_arg(events, &x.m);
    assert_eq!(echo.len(), 1, "one exec of echo with marker {}", x.m);
    let p = &echo[0]["process"];
    assert_eq!(echo[0]["source"], source);
    assert_eq!(p["comm"], "echo");
    let echo_path = std::fs::canonicalize("/bin/echo").unwrap();
    assert_eq!(
        p["exe"],
        echo_path.to_str().unwrap(),
        "exe is the resolved binary"
    );
    assert_eq!(p["ppid"], x.me);
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
            x.m.as_str(),
            "two words",
            "\"double\" 'single'",
            "",
            "bad\\xffbyte"
        ]
    );
    assert_eq!(p["uid"], unsafe { libc::getuid() } as u64);
    assert_eq!(p["euid"], unsafe { libc::geteuid() } as u64);
    assert_eq!(p["gid"], unsafe { libc::getgid() } as u64);
    assert_eq!(p["cwd"], std::env::current_dir().unwrap().to_str().unwrap());
    let auid = std::fs::read_to_string("/proc/self/loginuid").unwrap();
    let auid: u64 = auid.trim().parse().unwrap();
    if auid == u32::MAX as u64 {
        assert_eq!(p["auid"], Value::Null);
    } else {
        assert_eq!(p["auid"], auid);
    }
    let echo_pid = p["pid"].as_u64().unwrap();
    let exit = exit_of(events, echo_pid).expect("echo exit");
    assert_eq!(exit["exit"]["code"], 0);
    assert_eq!(exit["source"], source);

    // --- exit codes
    for (mk, code) in [(&x.m0, 0), (&x.m7, 7)] {
        let e = execs_with_arg(events, mk);
        assert_eq!(e.len(), 1, "exec with {mk}");
        let pid = e[0]["process"]["pid"].as_u64().unwrap();
        let ev = exit_of(events, pid).expect("exit event");
        assert_eq!(ev["exit"]["code"], code, "{ev}");
        assert_eq!(ev["exit"]["signal"], Value::Null);
    }
    let ev = exit_of(events, x.sleeper_pid).expect("sleep exit");
    assert_eq!(ev["exit"]["signal"], 9, "{ev}");
    assert_eq!(ev["exit"]["code"], Value::Null);

    // --- process tree
    let parent = execs_with_arg(events, &x.mp);
    let child = execs_with_arg(events, &x.mc);
    let grand = execs_with_arg(events, &x.mg);
    assert_eq!((parent.len(), child.len(), grand.len()), (1, 1, 1));
    let pp = parent[0]["process"]["pid"].as_u64().unwrap();
    let cp = child[0]["process"]["pid"].as_u64().unwrap();
    assert_eq!(parent[0]["process"]["ppid"], x.me);
    assert_eq!(child[0]["process"]["ppid"], pp);
    assert_eq!(grand[0]["process"]["ppid"], cp);
    assert_ne!(pp, cp);

    // --- connects from this test process
    let connects: Vec<&Value> = of_kind(events, "net_connect")
        .into_iter()
        .filter(|e| e["process"]["pid"] == x.me)
        .collect();
    let find = |addr: &str, port: u16| -> &Value {
        connects
            .iter()
            .find(|e| e["connect"]["dst_addr"] == addr && e["connect"]["dst_port"] == port)
            .unwrap_or_else(|| panic!("connect to {addr}:{port} in {connects:?}"))
    };
    let c = find("127.0.0.1", x.ok_port);
    assert_eq!(c["source"], source);
    let c = &c["connect"];
    assert_eq!(
        (
            c["family"].as_str(),
            c["protocol"].as_str(),
            c["result"].as_str()
        ),
        (Some("ipv4"), Some("tcp"), Some("success"))
    );
    let c = &find("127.0.0.1", x.refused_port)["connect"];
    assert_eq!(
        (
            c["protocol"].as_str(),
            c["result"].as_str(),
            c["errno"].as_i64()
        ),
        (Some("tcp"), Some("refused"), Some(111))
    );
    let c = &find("::1", x.v6_port)["connect"];
    assert_eq!(
        (
            c["family"].as_str(),
            c["protocol"].as_str(),
            c["result"].as_str()
        ),
        (Some("ipv6"), Some("tcp"), Some("success"))
    );
    let c = &find("127.0.0.1", x.udp_port)["connect"];
    assert_eq!(
        (c["protocol"].as_str(), c["result"].as_str()),
        (Some("udp"), Some("success"))
    );
}

/// root drops to nobody (setresuid), then execs a set-uid-root binary: both are
/// `privilege_change` events in either mode.
pub fn privilege_workload(mode: &str) {
    // A set-uid-root copy of `id` on the root filesystem (not a nosuid tmpfs).
    let dir = std::path::PathBuf::from("/var/tmp").join(marker("suid"));
    std::fs::create_dir_all(&dir).unwrap();
    let suid = dir.join("suid-id");
    std::fs::copy("/usr/bin/id", &suid).unwrap();
    std::os::unix::fs::chown(&suid, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&suid, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let sensor = Sensor::start(mode, &[]);
    let m = marker("pv");
    // root drops to nobody with setresuid/setresgid, then runs the set-uid binary.
    let status = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&suid)
        .arg(&m)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    if mode == "audit" {
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let events = sensor.stop();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = status; // `id` rejects the extra argument; the exec is what matters

    // setpriv (argv has the marker too) then, in the same process, the set-uid binary.
    let exec: Vec<&serde_json::Value> = execs_with_arg(&events, &m)
        .into_iter()
        .filter(|e| e["process"]["comm"] == "suid-id")
        .collect();
    assert_eq!(exec.len(), 1);
    let pid = exec[0]["process"]["pid"].as_u64().unwrap();
    let changes: Vec<&serde_json::Value> = of_kind(&events, "privilege_change")
        .into_iter()
        .filter(|e| e["process"]["pid"] == pid)
        .collect();
    let drop = changes
        .iter()
        .find(|e| e["privilege"]["new_uid"] == 65534 && e["privilege"]["old_uid"] == 0)
        .unwrap_or_else(|| panic!("setresuid drop to nobody in {changes:?}"));
    assert_eq!(drop["privilege"]["via"], "setresuid");
    let up = changes
        .iter()
        .find(|e| e["privilege"]["via"] == "exec_setuid")
        .unwrap_or_else(|| panic!("exec of set-uid binary in {changes:?}"));
    assert_eq!(
        (
            up["privilege"]["old_euid"].as_u64(),
            up["privilege"]["new_euid"].as_u64()
        ),
        (Some(65534), Some(0))
    );
    assert_eq!(up["privilege"]["new_uid"], 65534);
    assert_eq!(exec[0]["process"]["euid"], 0);
    assert_eq!(exec[0]["process"]["uid"], 65534);
}

/// Effective capabilities, the same in both modes where the kernel says them: a root `capsh`
/// that sets its capabilities to `cap_net_raw` alone (capset: the new set; the old one in eBPF
/// mode, where the programs read it), and `nobody` running a copy of `true` with the
/// `cap_net_raw+ep` file capability (exec: from the set `setpriv` keeps, the test's own, to
/// 0x2000, in both).
pub fn capability_workload(mode: &str) {
    let dir = std::path::PathBuf::from("/var/tmp").join(marker("fcaps"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let fcap = dir.join("fcap-true");
    std::fs::copy("/bin/true", &fcap).unwrap();
    let set = Command::new("setcap")
        .args(["cap_net_raw+ep"])
        .arg(&fcap)
        .status()
        .expect("setcap (libcap2-bin, scripts/setup installs it)");
    assert!(set.success());
    let sensor = Sensor::start(mode, &[]);
    let m = marker("caps");
    let capsh = Command::new("capsh")
        .args(["--caps=cap_net_raw+ep", "--", "-c", "exit 0", &m])
        .spawn()
        .expect("capsh (libcap2-bin)");
    let capsh_pid = u64::from(capsh.id());
    assert!(capsh.wait_with_output().unwrap().status.success());
    let run = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&fcap)
        .arg(&m)
        .spawn()
        .unwrap();
    let fcap_pid = u64::from(run.id());
    assert!(run.wait_with_output().unwrap().status.success());
    if mode == "audit" {
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let events = sensor.stop();
    let _ = std::fs::remove_dir_all(&dir);
    let changes = of_kind(&events, "privilege_change");
    let of = |pid: u64, via: &str| -> Vec<&Value> {
        changes
            .iter()
            .copied()
            .filter(|e| e["process"]["pid"] == pid && e["privilege"]["via"] == via)
            .collect()
    };
    let capset = of(capsh_pid, "capset");
    let to_net_raw: Vec<&&Value> = capset
        .iter()
        .filter(|e| e["privilege"]["new_caps"] == "0x2000")
        .collect();
    assert_eq!(
        to_net_raw.len(),
        1,
        "{mode}: capset to cap_net_raw in {changes:?}"
    );
    if mode == "ebpf" {
        assert!(
            to_net_raw[0]["privilege"]["old_caps"].is_string(),
            "{}",
            to_net_raw[0]
        );
    }
    let exec = of(fcap_pid, "exec_file_caps");
    assert_eq!(exec.len(), 1, "{mode}: file-capability exec in {changes:?}");
    // setpriv keeps the caller's effective set across its setresuid (it sets it back with
    // capset): ours.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let ours = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    let ours = format!("{ours:#x}");
    let p = &exec[0]["privilege"];
    assert_eq!(
        (p["old_caps"].as_str(), p["new_caps"].as_str()),
        (Some(ours.as_str()), Some("0x2000")),
        "{mode}: {p}"
    );
    assert_eq!(
        (p["new_uid"].as_u64(), p["new_euid"].as_u64()),
        (Some(65534), Some(65534))
    );
}

/// `n` sequential execs of `/bin/true <marker>-<i>` under a sensor in `mode`: every exec and
/// exit arrives, or the shortfall is covered by the drops the sensor reported.
pub fn exec_storm_is_complete_or_counted(mode: &str, n: usize, settle: std::time::Duration) {
    let sensor = Sensor::start(mode, &[]);
    let m = marker("storm");
    for i in 0..n {
        let status = Command::new("/bin/true")
            .arg(format!("{m}-{i}"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    std::thread::sleep(settle);
    let events = sensor.stop();
    let prefix = format!("{m}-");
    let storm_execs: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "process_exec")
        .filter(|e| {
            e["process"]["argv"][1]
                .as_str()
                .is_some_and(|a| a.starts_with(&prefix))
        })
        .collect();
    let pids: std::collections::HashSet<u64> = storm_execs
        .iter()
        .map(|e| e["process"]["pid"].as_u64().unwrap())
        .collect();
    let execs = storm_execs.len();
    let exits = events
        .iter()
        .filter(|e| e["kind"] == "process_exit")
        .filter(|e| {
            e["process"]["pid"]
                .as_u64()
                .is_some_and(|p| pids.contains(&p))
        })
        .count();
    let drops = super::final_drops(&events);
    eprintln!("{mode} storm: {execs} exec, {exits} exit events of {n}; drops reported {drops}");
    assert!(execs <= n && exits <= execs);
    let shortfall = (n - execs) + (execs - exits);
    assert!(
        shortfall as u64 <= drops,
        "{shortfall} events missing but only {drops} drops reported"
    );
}
