//! `[status] prometheus_textfile`: the real sensor (shipping to a collector that is not there,
//! so the spool figures are live) writes its counters for node_exporter's textfile collector.
//! Debian's `prometheus-node-exporter` (scripts/setup installs it, never starts the service)
//! runs on loopback with only that collector, started and stopped by pid; its scrape must
//! match `sensor status --json` of the same snapshot. Privileged (loads eBPF).
mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{privileged, Sensor, TempDir};
use serde_json::Value;

const EXPORTER: &str = "prometheus-node-exporter";

/// node_exporter serving only the textfile collector over `dir`; killed on drop.
struct Exporter(Child);

impl Exporter {
    fn start(dir: &Path, port: u16, log: &Path) -> Exporter {
        let child = Command::new(EXPORTER)
            .arg("--collector.disable-defaults")
            .arg("--collector.textfile")
            .arg(format!("--collector.textfile.directory={}", dir.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{EXPORTER}: {e} (scripts/setup installs it)"));
        Exporter(child)
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let (head, body) = body.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200").then(|| body.to_string())
}

/// `name{labels}` -> value, for the sensor's samples.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| l.starts_with("sensor_"))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn status_json(path: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(["status", "--json", "--path"])
        .arg(path)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn node_exporter_serves_the_sensor_status() {
    if !privileged() {
        return;
    }
    let tmp = TempDir::new("prom-textfile");
    let dir = tmp.0.clone();
    let textdir = dir.join("textfile");
    std::fs::create_dir_all(&textdir).unwrap();
    let prom = textdir.join("sensor.prom");
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (dead_collector, port) = (free_port(), free_port());
    let cfg = dir.join("sensor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[status]\ninterval_secs = 1\nprometheus_textfile = {:?}\n[output]\ntarget = \"grpc\"\n\
             [ship]\naddress = \"127.0.0.1:{dead_collector}\"\nallow_plaintext_loopback = true\n\
             spool_dir = {:?}\n",
            prom.display().to_string(),
            dir.join("spool").display().to_string()
        ),
    )
    .unwrap();
    let sensor = Sensor::start_status_only("auto", &["--config", cfg.to_str().unwrap()]);
    let status_path = sensor.status_path();
    let _exporter = Exporter::start(&textdir, port, &dir.join("exporter.log"));
    // Events to count and to spool.
    for i in 0..20 {
        let _ = Command::new("/bin/true").arg(format!("prom-{i}")).status();
    }

    // Read status, scrape, read status again: the same snapshot when the update time agrees
    // everywhere (the sensor rewrites both files every second).
    let deadline = Instant::now() + Duration::from_secs(30);
    let (status, scraped) = loop {
        assert!(
            Instant::now() < deadline,
            "no consistent scrape; exporter log: {}",
            std::fs::read_to_string(dir.join("exporter.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
        let before = status_json(&status_path);
        let Some(text) = scrape(port) else { continue };
        let after = status_json(&status_path);
        let m = samples(&text);
        let Some(t) = m.get("sensor_status_updated_timestamp_seconds") else {
            continue;
        };
        let spooled = m.get("sensor_spool_pending_events").copied().unwrap_or(0.0);
        if before["updated_unix"] == after["updated_unix"]
            && before["updated_unix"]
                .as_f64()
                .is_some_and(|u| close(u, *t))
            && spooled > 0.0
        {
            break (before, m);
        }
    };
    let _ = std::fs::read_to_string(&prom).expect("textfile written");

    let get = |k: &str| {
        *scraped
            .get(k)
            .unwrap_or_else(|| panic!("{k} not scraped: {scraped:#?}"))
    };
    let mode = status["mode"].as_str().unwrap();
    let version = status["version"].as_str().unwrap();
    assert_eq!(
        get(&format!(
            "sensor_info{{mode=\"{mode}\",version=\"{version}\"}}"
        )),
        1.0
    );
    let mut compared = 0;
    for (source, kinds) in status["events_by_source"].as_object().unwrap() {
        for (kind, v) in kinds.as_object().unwrap() {
            // node_exporter sorts labels by name.
            let k = format!("sensor_events_total{{kind=\"{kind}\",source=\"{source}\"}}");
            assert!(close(get(&k), v.as_f64().unwrap()), "{k}");
            compared += 1;
        }
    }
    assert!(compared > 0, "no events by source in {status:#}");
    for (name, v) in status["drops"].as_object().unwrap() {
        let k = format!("sensor_drops_total{{name=\"{name}\"}}");
        assert!(close(get(&k), v.as_f64().unwrap()), "{k}");
    }
    for (name, v) in status["counters"].as_object().unwrap() {
        let k = format!("sensor_counter{{name=\"{name}\"}}");
        assert!(close(get(&k), v.as_f64().unwrap()), "{k}");
    }
    let c = &status["output"]["collector"];
    for (metric, field) in [
        ("sensor_shed_level", &status["shed_level"]),
        ("sensor_cpu_seconds_total", &status["cpu_seconds"]),
        ("sensor_cpu_percent", &status["cpu_percent"]),
        ("sensor_rss_bytes", &status["rss_bytes"]),
        ("sensor_uptime_seconds", &status["uptime_s"]),
        ("sensor_spool_bytes", &c["spool_bytes"]),
        ("sensor_spool_pending_events", &c["spool_pending_events"]),
        ("sensor_spool_oldest_age_seconds", &c["spool_oldest_age_s"]),
    ] {
        let want = field.as_f64().unwrap_or(0.0);
        assert!(
            close(get(metric), want),
            "{metric}: {} vs {want}",
            get(metric)
        );
    }
    assert_eq!(get("sensor_collector_connected"), 0.0);
    assert!(get("sensor_spool_bytes") > 0.0);
    let degraded = !status["degraded"].as_array().unwrap().is_empty();
    assert_eq!(get("sensor_degraded"), if degraded { 1.0 } else { 0.0 });

    // A clean stop removes the textfile: node_exporter stops serving stale figures.
    drop(sensor);
    assert!(!prom.exists(), "textfile left behind after a clean stop");
}
