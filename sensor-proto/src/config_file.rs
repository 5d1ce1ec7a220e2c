//! TOML configuration files, read the same way by the sensor and the collector: one error
//! type, one reader, one parser. Validation stays with each program's own config.
use std::path::Path;

use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config {path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// Parses `text` (read from `path`, named in errors) into `T`.
pub fn parse<T: DeserializeOwned>(text: &str, path: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|source| ConfigError::Parse {
        path: path.to_string(),
        source,
    })
}

/// Reads the file at `path` as text.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct T {
        a: u32,
    }

    #[test]
    fn parse_names_the_file_and_read_names_the_path() {
        assert_eq!(parse::<T>("a = 3", "x.toml").unwrap(), T { a: 3 });
        let e = parse::<T>("a = \"no\"", "x.toml").unwrap_err();
        assert!(e.to_string().starts_with("invalid config x.toml: "), "{e}");
        let e = read(Path::new("/nonexistent/dir/c.toml")).unwrap_err();
        assert!(matches!(&e, ConfigError::Read { source, .. }
            if source.kind() == std::io::ErrorKind::NotFound));
        assert!(e
            .to_string()
            .starts_with("cannot read config /nonexistent/dir/c.toml: "));
    }
}
