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

#[test]
fn every_option_is_documented_in_the_shipped_config() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/collector.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let defaults: toml::Table = toml::from_str(&CollectorConfig::defaults_toml()).unwrap();
    let mut missing = Vec::new();
    for (section, keys) in &defaults {
        let body = text
            .split(&format!("[{section}]\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("no [{section}] in {}", path.display()));
        let body = body.split("\n[").next().unwrap();
        for key in keys.as_table().unwrap().keys() {
            let listed = body.lines().any(|l| {
                let l = l.trim_start_matches('#');
                l.starts_with(&format!("{key} =")) || l.starts_with(&format!("{key}="))
            });
            if !listed {
                missing.push(format!("{section}.{key}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not documented in {}: {missing:?}",
        path.display()
    );
}
