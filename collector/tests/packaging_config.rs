//! The /etc/collector/collector.toml shipped in the Debian package
//! (`packaging/collector.toml`) loads and validates, and is the built-in defaults.
use std::path::Path;

use collector::config::CollectorConfig;

#[test]
fn shipped_config_loads_validates_and_is_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/collector.toml");
    let cfg = CollectorConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    cfg.validate().unwrap();
    assert_eq!(cfg, CollectorConfig::default());
}
