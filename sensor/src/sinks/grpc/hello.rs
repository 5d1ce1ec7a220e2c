//! What the sensor says about itself when a stream opens: ids, version, host, and (once the
//! probe has run, off the async workers) the kernel release and usable capabilities.
use sensor_proto::v1 as pb;
use tokio::sync::oneshot;

use super::ShipConfig;

/// The Hello before the probe's facts and the capture mode are known.
pub(super) fn first_hello(cfg: &ShipConfig, sensor_id: &str, boot_id: &str) -> pb::Hello {
    pb::Hello {
        sensor_id: sensor_id.to_string(),
        boot_id: boot_id.to_string(),
        version: env!("CARGO_PKG_VERSION").into(),
        host: if cfg.host.is_empty() {
            crate::hostname::kernel_hostname()
        } else {
            cfg.host.clone()
        },
        kernel: String::new(),
        mode: String::new(),
        capabilities: Vec::new(),
        protocol_version: pb::ProtocolVersion::ProtocolVersion1 as i32,
        sent_unix_ns: 0,
    }
}

/// Runs the probe on its own thread; the kernel release and capabilities arrive on the
/// returned channel.
pub(super) fn probe_host_in_background() -> oneshot::Receiver<(String, Vec<String>)> {
    let (caps_tx, caps_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("ship-probe".into())
        .spawn(move || {
            let _ = caps_tx.send(host_facts());
        })
        .ok();
    caps_rx
}

/// uname release and the probe's usable capabilities, for the Hello.
fn host_facts() -> (String, Vec<String>) {
    let caps = crate::probe::probe_checks();
    let mut v = Vec::new();
    for (name, check) in [
        ("btf", &caps.btf),
        ("bpf_syscall", &caps.bpf_syscall),
        ("ringbuf", &caps.ringbuf),
        ("tracefs", &caps.tracefs),
        ("audit", &caps.audit),
        ("fanotify_fid", &caps.fanotify_fid),
        ("fanotify_fd", &caps.fanotify_fd),
        ("conntrack", &caps.conntrack),
    ] {
        if check.ok {
            v.push(name.to_string());
        }
    }
    if let Some(l) = &caps.lockdown {
        v.push(format!("lockdown={l}"));
    }
    (caps.kernel_release.clone(), v)
}
