//! Output stages: JSON lines (the event model, or OCSF 1.5.0) to stdout or a file.
pub mod json;
pub mod ocsf;
