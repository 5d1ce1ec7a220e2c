//! A JetStream cluster of Debian's `nats-server` processes on 127.0.0.1 for the fleet-mode
//! tests: free ports, store dirs under the test's temp dir, stopped by pid on drop.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `nats-server` binary, or `None` (the caller prints why it skips).
pub fn server_binary() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/usr/local/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

/// Prints the skip notice and returns true when nats-server is missing.
pub fn skip_without_server(test: &str) -> bool {
    if server_binary().is_some() {
        return false;
    }
    println!(
        "SKIPPED {test}: nats-server is not installed (scripts/setup installs Debian's \
         nats-server package)"
    );
    true
}

pub struct Node {
    pub name: String,
    pub port: u16,
    conf: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn spawn(&mut self) {
        let bin = server_binary().expect("nats-server");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.log)
                    .unwrap(),
            )
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server {} did not listen: {}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Sends `sig` to the server's pid and waits for it to exit.
    pub fn stop(&mut self, sig: i32) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(c.id() as i32, sig) };
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn start(&mut self) {
        if self.child.is_none() {
            self.spawn();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop(libc::SIGKILL);
    }
}

/// `n` clustered JetStream servers.
pub struct Cluster {
    pub nodes: Vec<Node>,
}

impl Cluster {
    pub fn start(dir: &Path, n: usize) -> Cluster {
        // Hold every probe listener until all ports are chosen, so no two are the same.
        let probes: Vec<std::net::TcpListener> = (0..2 * n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let port = |i: usize| probes[i].local_addr().unwrap().port();
        let ports: Vec<(u16, u16)> = (0..n).map(|i| (port(2 * i), port(2 * i + 1))).collect();
        drop(probes);
        let mut nodes = Vec::new();
        for (i, (port, cport)) in ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let store = dir.join(format!("js-{name}"));
            std::fs::create_dir_all(&store).unwrap();
            let routes: Vec<String> = ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, (_, c))| format!("\"nats-route://127.0.0.1:{c}\""))
                .collect();
            let conf = dir.join(format!("{name}.conf"));
            let mut text = format!(
                "server_name: {name}\nlisten: \"127.0.0.1:{port}\"\n\
                 jetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 64MB\n  max_file_store: 2GB\n}}\n",
                store.display()
            );
            // One node runs JetStream standalone; more form a cluster.
            if n > 1 {
                text.push_str(&format!(
                    "cluster {{\n  name: \"sensor-test\"\n  listen: \"127.0.0.1:{cport}\"\n  routes: [{}]\n}}\n",
                    routes.join(", ")
                ));
            }
            std::fs::write(&conf, text).unwrap();
            nodes.push(Node {
                name,
                port: *port,
                conf,
                log: dir.join(format!("nats-n{}.log", i + 1)),
                child: None,
            });
        }
        for n in &mut nodes {
            n.spawn();
        }
        Cluster { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect()
    }

    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- {}\n{}", n.name, n.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }
}
