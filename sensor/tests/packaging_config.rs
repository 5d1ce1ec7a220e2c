//! Unprivileged: the /etc/sensor/sensor.toml shipped in the Debian package
//! (`packaging/sensor.toml`) loads and validates as the sensor's configuration, and sets only
//! what the package means to change from the built-in defaults.
use std::path::Path;

use sensor::config::Config;

fn shipped() -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/sensor.toml");
    Config::load(Some(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn shipped_config_loads_and_validates() {
    let cfg = shipped();
    cfg.validate().unwrap();
    // Shipping is validated only when the output is gRPC, which the package selects.
    assert_eq!(cfg.output.target, "grpc");
    cfg.ship.validate().unwrap();
}

#[test]
fn shipped_config_differs_from_defaults_only_where_intended() {
    let mut cfg = shipped();
    // Local mode: the collector's root-only Unix socket, no TCP, no plaintext allowance.
    assert_eq!(
        cfg.ship.address,
        "unix:/run/sensor-collector/collector.sock"
    );
    assert!(!cfg.ship.allow_plaintext_loopback);
    cfg.output.target = Config::default().output.target;
    assert_eq!(cfg, Config::default());
}
