//! Host security sensor library: capture sources, decoding, normalized events and output.
pub mod alloc_cache;
pub mod btf;
pub mod config;
pub mod enrich;
pub mod escape;
pub mod event;
pub mod filter;
pub mod hashing;
pub mod hostname;
pub mod limits;
pub mod logging;
pub mod pipeline;
pub mod probe;
pub mod proc_text;
pub mod runtime;
pub mod safefs;
pub mod sinks;
pub mod sources;
pub mod telemetry;
#[cfg(test)]
mod test_dir;
pub mod timefmt;

/// The unit tests run on the binary's allocator (src/main.rs) too.
#[cfg(test)]
#[global_allocator]
static ALLOC: alloc_cache::CachingAlloc = alloc_cache::CachingAlloc;
