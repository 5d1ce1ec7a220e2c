//! OCSF 1.5.0 lines: `--output ocsf` (stdout) or `--output ocsf:FILE`. Each event goes through
//! the shared mapping in `sensor_proto::ocsf`, so the sensor and `collector query --format
//! ocsf` write the same thing.
use crate::event::Event;

/// Line format of a non-gRPC output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    /// The event model's JSON (the default).
    Json,
    /// OCSF 1.5.0 JSON.
    Ocsf,
}

/// Splits an output target into its line format and where it goes: `ocsf` is OCSF to stdout,
/// `ocsf:PATH` OCSF to a file, anything else JSON to that target.
pub fn split_target(target: &str) -> (LineFormat, &str) {
    match target.strip_prefix("ocsf") {
        Some("") => (LineFormat::Ocsf, "-"),
        Some(rest) if rest.starts_with(':') && rest.len() > 1 => (LineFormat::Ocsf, &rest[1..]),
        _ => (LineFormat::Json, target),
    }
}

/// Appends one event as an OCSF JSON line to `buf`.
pub fn write_line(event: Event, buf: &mut Vec<u8>) {
    let v = sensor_proto::ocsf::to_ocsf(&event.msg, sensor_proto::ocsf::Origin::default());
    // Writing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, &v);
    buf.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(split_target("ocsf"), (LineFormat::Ocsf, "-"));
        assert_eq!(
            split_target("ocsf:/var/log/x.jsonl"),
            (LineFormat::Ocsf, "/var/log/x.jsonl")
        );
        assert_eq!(split_target("-"), (LineFormat::Json, "-"));
        assert_eq!(split_target("ocsf:"), (LineFormat::Json, "ocsf:"));
        assert_eq!(split_target("ocsfx"), (LineFormat::Json, "ocsfx"));
        assert_eq!(split_target("/tmp/a"), (LineFormat::Json, "/tmp/a"));
    }
}
