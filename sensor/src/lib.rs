//! Host security sensor library: capture sources, decoding, normalized events and output.
pub mod btf;
pub mod config;
pub mod counters;
pub mod enrich;
pub mod escape;
pub mod event;
pub mod filter;
pub mod health;
pub mod hostname;
pub mod output;
pub mod probe;
pub mod runtime;
pub mod selfstat;
pub mod ship;
pub mod sources;
pub mod timefmt;
