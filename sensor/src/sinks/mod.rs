//! Sinks: JSON lines (the event model, or OCSF 1.5.0) to stdout or a file, and gRPC to the
//! collector through a disk spool (`grpc/`).
pub mod grpc;
pub mod json;
pub mod ocsf;
