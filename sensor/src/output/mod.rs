//! Output stages. JSON lines to stdout or a file for now.
pub mod json;
