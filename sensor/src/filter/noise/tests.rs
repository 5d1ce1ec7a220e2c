//! Unit tests of the `noise` module.
use super::*;
use crate::event::{Ancestor, FileActivity, Login, Process, Source};

fn ev(kind: Kind, pid: u32, start: u64, comm: &str) -> Event {
    let mut e = Event::new(kind, Source::Ebpf, 0, "h");
    e.process = Some(Process {
        pid,
        start_boottime_ns: start,
        comm: comm.into(),
        exe: Some(format!("/usr/bin/{comm}")),
        argv: Some(vec![comm.into()].into()),
        ..Default::default()
    });
    e
}

fn rule(name: &str) -> NoiseRule {
    NoiseRule {
        name: name.into(),
        ..Default::default()
    }
}

fn filter(rules: Vec<NoiseRule>) -> NoiseFilter {
    NoiseFilter::new(&NoiseConfig {
        rules,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn globs() {
    let cases: &[(&str, &str, bool)] = &[
        ("date", "date", true),
        ("date", "dates", false),
        ("*", "", true),
        ("*", "anything/at/all", true),
        ("/usr/bin/*", "/usr/bin/python3", true),
        ("/usr/bin/*", "/usr/lib/x", false),
        ("/usr/*/python*", "/usr/local/bin/python3.11", true),
        ("py?hon", "python", true),
        ("py?hon", "pyhon", false),
        ("[ch]at", "cat", true),
        ("[ch]at", "bat", false),
        ("[!ch]at", "bat", true),
        ("[a-c]*", "banana", true),
        ("[a-c]*", "date", false),
        ("*.sh", "/etc/x.sh", true),
        ("*.sh", "/etc/x.shy", false),
        ("a*b*c", "aXbYc", true),
        ("a*b*c", "aXbY", false),
        ("\\*", "*", true),
        ("\\*", "x", false),
        ("[]]", "]", true),
        ("[a-]", "-", true),
        ("**x", "abx", true),
        ("é*", "été", true),
    ];
    for (p, s, want) in cases {
        assert_eq!(Glob::new(p).unwrap().is_match(s), *want, "{p} vs {s}");
    }
    assert!(Glob::new("[abc").is_err());
    assert!(Glob::new("x\\").is_err());
    assert!(Glob::new("[z-a]").is_err());
    assert_eq!(Glob::new("date").unwrap().literal(), Some("date"));
    assert_eq!(Glob::new("d\\*").unwrap().literal(), Some("d*"));
    assert_eq!(Glob::new("d*").unwrap().literal(), None);
}

#[test]
fn pathological_glob_is_fast() {
    let g = Glob::new("*a*a*a*a*a*a*a*b").unwrap();
    let s = "a".repeat(5000);
    let t = std::time::Instant::now();
    assert!(!g.is_match(&s));
    assert!(t.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn defaults_drop_date_and_who_execs_only() {
    let mut f = NoiseFilter::new(&NoiseConfig::default()).unwrap();
    assert_eq!(
        f.check(&ev(Kind::ProcessExec, 10, 1, "date")),
        Verdict::Drop(0)
    );
    assert_eq!(
        f.check(&ev(Kind::ProcessExec, 11, 1, "who")),
        Verdict::Drop(0)
    );
    assert_eq!(
        f.check(&ev(Kind::ProcessExec, 12, 1, "tput")),
        Verdict::Drop(1)
    );
    // Same argv shape, another command: kept.
    assert_eq!(
        f.check(&ev(Kind::ProcessExec, 13, 1, "data")),
        Verdict::Keep
    );
    assert_eq!(f.check(&ev(Kind::ProcessExec, 14, 1, "id")), Verdict::Keep);
    // A connect by `date` is not an exec: kept.
    assert_eq!(f.check(&ev(Kind::NetConnect, 10, 1, "date")), Verdict::Keep);
    assert_eq!(f.rule_names(), vec!["routine_info", "shell_prompt"]);
}

#[test]
fn exe_comm_argv_parent_user_path() {
    let mut r1 = rule("nagios");
    r1.exe = vec!["/usr/lib/nagios/plugins/*".into()];
    let mut r2 = rule("health_curl");
    r2.comm = vec!["curl".into()];
    r2.argv = vec![r"\shttp://127\.0\.0\.1:\d+/health\b".into()];
    let mut r3 = rule("cron_children");
    r3.parent_exe = vec!["/usr/sbin/cron".into()];
    r3.users = vec!["0".into()];
    let mut r4 = rule("logs");
    r4.path_prefix = vec!["/var/log/".into()];
    r4.kinds = vec!["file".into()];
    let mut r5 = rule("backup_args");
    r5.argv_glob = vec!["rsync * /backup/*".into()];
    let mut f = filter(vec![r1, r2, r3, r4, r5]);

    let mut e = ev(Kind::ProcessExec, 1, 1, "check_disk");
    e.process.as_mut().unwrap().exe = Some("/usr/lib/nagios/plugins/check_disk".into());
    assert_eq!(f.check(&e), Verdict::Drop(0));

    let mut e = ev(Kind::ProcessExec, 2, 1, "curl");
    e.process.as_mut().unwrap().argv = Some(
        vec![
            "curl".into(),
            "-s".into(),
            "http://127.0.0.1:8080/health".into(),
        ]
        .into(),
    );
    assert_eq!(f.check(&e), Verdict::Drop(1));
    e.process.as_mut().unwrap().argv = Some(vec!["curl".into(), "http://evil/x".into()].into());
    assert_eq!(f.check(&e), Verdict::Keep);
    e.process.as_mut().unwrap().argv = None;
    assert_eq!(
        f.check(&e),
        Verdict::Keep,
        "no argv: an argv condition cannot match"
    );

    let mut e = ev(Kind::ProcessExec, 3, 1, "run-parts");
    e.process.as_mut().unwrap().ancestors = vec![Ancestor {
        pid: 1,
        comm: "cron".into(),
        exe: "/usr/sbin/cron".into(),
    }];
    assert_eq!(f.check(&e), Verdict::Drop(2));
    e.process.as_mut().unwrap().uid = 1000;
    assert_eq!(f.check(&e), Verdict::Keep, "user condition");

    let mut e = ev(Kind::File, 4, 1, "rsyslogd");
    e.file = Some(FileActivity {
        path: "/var/log/syslog".into(),
        ops: vec!["modify".into()],
        new_path: None,
    });
    assert_eq!(f.check(&e), Verdict::Drop(3));
    e.file.as_mut().unwrap().path = "/var/logs/x".into();
    assert_eq!(f.check(&e), Verdict::Keep, "whole components");
    e.file.as_mut().unwrap().new_path = Some("/var/log/x.1".into());
    assert_eq!(f.check(&e), Verdict::Drop(3), "rename into the tree");
    let mut e = ev(Kind::ProcessExec, 5, 1, "tail");
    e.file = None;
    assert_eq!(f.check(&e), Verdict::Keep, "path rule is file-only");

    let mut e = ev(Kind::ProcessExec, 6, 1, "rsync");
    e.process.as_mut().unwrap().argv = Some(
        vec![
            "rsync".into(),
            "-a".into(),
            "/srv/".into(),
            "/backup/srv".into(),
        ]
        .into(),
    );
    assert_eq!(f.check(&e), Verdict::Drop(4));
}

#[test]
fn users_by_name_and_logins() {
    let mut r = rule("monitoring_logins");
    r.users = vec!["root".into(), "nagios-not-a-user".into()];
    r.kinds = vec!["login".into(), "process_exec".into()];
    let mut f = filter(vec![r]);
    let mut e = ev(Kind::ProcessExec, 1, 1, "x");
    e.process.as_mut().unwrap().uid = 0; // root resolves to 0
    assert_eq!(f.check(&e), Verdict::Drop(0));
    let mut l = ev(Kind::Login, 2, 1, "sshd");
    l.process = None;
    l.login = Some(Login {
        user: "nagios-not-a-user".into(),
        ..Default::default()
    });
    assert_eq!(f.check(&l), Verdict::Drop(0));
    l.login.as_mut().unwrap().user = "alice".into();
    assert_eq!(f.check(&l), Verdict::Keep);
    // Kinds restrict: a connect by root is kept.
    let mut c = ev(Kind::NetConnect, 1, 1, "x");
    c.process.as_mut().unwrap().uid = 0;
    assert_eq!(f.check(&c), Verdict::Keep);
}

#[test]
fn invalid_rules() {
    let bad = |r: NoiseRule| {
        NoiseFilter::new(&NoiseConfig {
            rules: vec![r],
            ..Default::default()
        })
        .unwrap_err()
        .to_string()
    };
    assert!(bad(rule("x")).contains("drop everything"));
    assert!(bad(rule("Bad Name")).contains("name"));
    let mut r = rule("x");
    r.kinds = vec!["process_exit".into()];
    assert!(bad(r).contains("cannot be filtered"));
    let mut r = rule("x");
    r.kinds = vec!["sensor_health".into()];
    assert!(bad(r).contains("cannot be filtered"));
    let mut r = rule("x");
    r.kinds = vec!["nope".into()];
    assert!(bad(r).contains("unknown kind"));
    let mut r = rule("x");
    r.argv = vec!["(".into()];
    assert!(bad(r).contains("argv"));
    let mut r = rule("x");
    r.comm = vec!["[x".into()];
    assert!(bad(r).contains("comm"));
    let mut r = rule("x");
    r.comm = vec!["systemd-tmpfiles".into()];
    assert!(bad(r).contains("15 bytes"));
    let mut r = rule("x");
    r.path_prefix = vec!["var/log".into()];
    assert!(bad(r).contains("absolute"));
    let mut a = rule("dup");
    a.comm = vec!["a".into()];
    let e = NoiseFilter::new(&NoiseConfig {
        rules: vec![a.clone(), a],
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("duplicate"));
    // Only kinds: allowed (drop all flows).
    let mut r = rule("no_flows");
    r.kinds = vec!["flow".into()];
    let mut f = filter(vec![r]);
    let mut e = ev(Kind::Flow, 0, 0, "");
    e.process = None;
    assert_eq!(f.check(&e), Verdict::Drop(0));
}

#[test]
fn exits_follow_their_exec() {
    let mut f = NoiseFilter::new(&NoiseConfig::default()).unwrap();
    // Dropped exec -> dropped exit.
    assert_eq!(
        f.check(&ev(Kind::ProcessExec, 100, 5, "date")),
        Verdict::Drop(0)
    );
    assert_eq!(
        f.check(&ev(Kind::ProcessExit, 100, 5, "date")),
        Verdict::DropExit(0)
    );
    // Shipped exec -> shipped exit, even when the exit's comm is a filtered one.
    assert_eq!(
        f.check(&ev(Kind::ProcessExec, 101, 5, "bash")),
        Verdict::Keep
    );
    assert_eq!(
        f.check(&ev(Kind::ProcessExit, 101, 5, "date")),
        Verdict::Keep
    );
    // bash (shipped) exec's date in place: the date exec is dropped, the exit is kept.
    assert_eq!(
        f.check(&ev(Kind::ProcessExec, 102, 7, "bash")),
        Verdict::Keep
    );
    assert_eq!(
        f.check(&ev(Kind::ProcessExec, 102, 7, "date")),
        Verdict::Drop(0)
    );
    assert_eq!(
        f.check(&ev(Kind::ProcessExit, 102, 7, "date")),
        Verdict::Keep
    );
    // date exec's something shipped in place: the exit is kept.
    assert_eq!(
        f.check(&ev(Kind::ProcessExec, 103, 7, "date")),
        Verdict::Drop(0)
    );
    assert_eq!(
        f.check(&ev(Kind::ProcessExec, 103, 7, "python3")),
        Verdict::Keep
    );
    assert_eq!(
        f.check(&ev(Kind::ProcessExit, 103, 7, "python3")),
        Verdict::Keep
    );
    // pid reuse: the old (dropped) entry does not swallow a new process's exit.
    assert_eq!(
        f.check(&ev(Kind::ProcessExec, 104, 1, "date")),
        Verdict::Drop(0)
    );
    assert_eq!(
        f.check(&ev(Kind::ProcessExec, 104, 2, "vim")),
        Verdict::Keep
    );
    assert_eq!(
        f.check(&ev(Kind::ProcessExit, 104, 2, "vim")),
        Verdict::Keep
    );
    // A late exit of an older process with the pid is kept.
    assert_eq!(
        f.check(&ev(Kind::ProcessExec, 105, 9, "date")),
        Verdict::Drop(0)
    );
    assert_eq!(
        f.check(&ev(Kind::ProcessExit, 105, 3, "sleep")),
        Verdict::Keep
    );
    assert_eq!(
        f.check(&ev(Kind::ProcessExit, 105, 9, "date")),
        Verdict::DropExit(0)
    );
    // An exit with no exec seen and an unfiltered comm: kept.
    assert_eq!(
        f.check(&ev(Kind::ProcessExit, 106, 1, "sshd")),
        Verdict::Keep
    );
    let c = f.tracker_counts();
    assert_eq!((c.exits_dropped, c.inconsistencies, c.tracked), (2, 0, 0));
}

#[test]
fn audit_order_exit_before_exec() {
    // Audit: start times are 0, and the proc connector's exit can precede the exec.
    let mut f = NoiseFilter::new(&NoiseConfig::default()).unwrap();
    assert_eq!(
        f.check(&ev(Kind::ProcessExit, 200, 0, "date")),
        Verdict::DropExit(0)
    );
    assert_eq!(
        f.check(&ev(Kind::ProcessExec, 200, 0, "date")),
        Verdict::Drop(0)
    );
    assert_eq!(f.tracker_counts().tracked, 0);
    // In order, with start 0 on both.
    assert_eq!(
        f.check(&ev(Kind::ProcessExec, 201, 0, "who")),
        Verdict::Drop(0)
    );
    assert_eq!(
        f.check(&ev(Kind::ProcessExit, 201, 0, "who")),
        Verdict::DropExit(0)
    );
    // Exit first, then an exec that is shipped (renamed process): counted.
    assert_eq!(
        f.check(&ev(Kind::ProcessExit, 202, 0, "date")),
        Verdict::DropExit(0)
    );
    assert_eq!(
        f.check(&ev(Kind::ProcessExec, 202, 0, "evil")),
        Verdict::Keep
    );
    assert_eq!(f.tracker_counts().inconsistencies, 1);
    // An exec-only rule with an exe condition is not used for early exits.
    let mut r = rule("pinned");
    r.comm = vec!["date".into()];
    r.exe = vec!["/usr/bin/date".into()];
    let mut f = filter(vec![r]);
    assert_eq!(
        f.check(&ev(Kind::ProcessExit, 300, 0, "date")),
        Verdict::Keep
    );
}

#[test]
fn disabled_keeps_everything() {
    let mut f = NoiseFilter::new(&NoiseConfig {
        enabled: false,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(f.check(&ev(Kind::ProcessExec, 1, 1, "date")), Verdict::Keep);
    assert!(kernel_comm_filter(&NoiseConfig {
        enabled: false,
        ..Default::default()
    })
    .is_empty());
}

#[test]
fn kernel_comm_list() {
    let mut cfg = NoiseConfig::default();
    let mut pinned = rule("pinned");
    pinned.comm = vec!["sleep".into()];
    pinned.exe = vec!["/usr/bin/sleep".into()];
    let mut globbed = rule("globbed");
    globbed.comm = vec!["check_*".into()];
    let mut connects = rule("connects");
    connects.comm = vec!["ntpd".into()];
    connects.kinds = vec!["net_connect".into()];
    let mut any_kind = rule("any_kind");
    any_kind.comm = vec!["true".into(), "date".into()];
    cfg.extra_rules = vec![pinned, globbed, connects, any_kind];
    let keys = kernel_comm_rules(&cfg);
    let names: Vec<(String, u32)> = keys
        .iter()
        .map(|(k, i)| {
            let n = k.iter().position(|&b| b == 0).unwrap();
            (String::from_utf8(k[..n].to_vec()).unwrap(), *i)
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("date".to_string(), 0),
            ("who".to_string(), 0),
            ("uptime".to_string(), 0),
            ("hostname".to_string(), 0),
            ("tput".to_string(), 1),
            ("dircolors".to_string(), 1),
            ("lesspipe".to_string(), 1),
            ("basename".to_string(), 1),
            ("dirname".to_string(), 1),
            ("true".to_string(), 5),
        ]
    );
    assert_eq!(kernel_comm_filter(&cfg).len(), 10);
    assert_eq!(comm_key("date"), *b"date\0\0\0\0\0\0\0\0\0\0\0\0");
    assert_eq!(comm_key("123456789012345")[15], 0);
}

#[test]
fn defaults_serialize_to_toml() {
    let cfg = NoiseConfig::default();
    let text = toml::to_string_pretty(&cfg).unwrap();
    assert!(text.contains("name = \"routine_info\""), "{text}");
    assert!(!text.contains("exe ="), "empty lists are omitted: {text}");
    assert_eq!(toml::from_str::<NoiseConfig>(&text).unwrap(), cfg);
    // A user list replaces the defaults; extra_rules adds to them.
    let c: NoiseConfig = toml::from_str("[[extra_rules]]\nname = \"x\"\ncomm = [\"x\"]\n").unwrap();
    assert_eq!(c.all_rules().count(), 3);
    let c: NoiseConfig = toml::from_str("rules = []\n").unwrap();
    assert_eq!(c.all_rules().count(), 0);
    assert!(toml::from_str::<NoiseConfig>("[[rules]]\nname = \"x\"\nbogus = 1\n").is_err());
}
