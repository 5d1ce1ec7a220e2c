//! The JSON names of the proto enums (`process_exec`, `ebpf`, ...; see
//! docs/ARCHITECTURE.md#event-model).
//! The proto enums are the sensor's kinds and sources too; `sensor.proto` is the only list
//! of them.
use crate::v1::{Kind, Source};

// `Kind::ALL`, `Source::ALL` and their `as_str` (the JSON names) are generated from
// sensor.proto by sensor-proto/generate (a new kind or source needs no edit here).
include!("gen/names.rs");

impl Kind {
    /// Position in [`Kind::ALL`] (0 for `Unspecified`), for per-kind tables.
    pub fn index(self) -> usize {
        Kind::ALL.iter().position(|&k| k == self).unwrap_or(0)
    }
}

impl Source {
    /// Position in [`Source::ALL`] (0 for `Unspecified`).
    pub fn index(self) -> usize {
        Source::ALL.iter().position(|&s| s == self).unwrap_or(0)
    }
}

pub fn kind_from_name(name: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| k.as_str() == name)
}

pub fn source_from_name(name: &str) -> Option<Source> {
    Source::ALL.into_iter().find(|s| s.as_str() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(kind_from_name(k.as_str()), Some(k));
        }
        for s in Source::ALL {
            assert_eq!(source_from_name(s.as_str()), Some(s));
        }
        assert_eq!(kind_from_name("nope"), None);
        assert_eq!(kind_from_name("unspecified"), None);
    }

    /// A kind or source added to sensor.proto but not to the lists above fails here.
    #[test]
    fn lists_hold_every_enum_value() {
        for i in 1..1000 {
            if let Ok(k) = Kind::try_from(i) {
                assert!(Kind::ALL.contains(&k), "{k:?} missing from Kind::ALL");
            }
            if let Ok(s) = Source::try_from(i) {
                assert!(Source::ALL.contains(&s), "{s:?} missing from Source::ALL");
            }
        }
        for k in Kind::ALL {
            assert_eq!(k.as_str().to_uppercase(), &k.as_str_name()["KIND_".len()..]);
        }
        for s in Source::ALL {
            assert_eq!(
                s.as_str().to_uppercase(),
                &s.as_str_name()["SOURCE_".len()..]
            );
        }
    }
}
