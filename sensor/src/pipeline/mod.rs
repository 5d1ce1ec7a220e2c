//! The pipeline after capture: one task takes the sources' events in batches and runs each
//! through shed admission, enrichment, the filter and the output (docs/ARCHITECTURE.md#pipeline).
//!
//! - [`order`]: forks applied in capture order; events of unknown processes held briefly.
//! - [`shed`]: load shedding at the task's entry, and its counters.
//! - [`task`]: the pipeline task.
pub mod order;
pub mod shed;
pub mod task;

pub use order::AttribStats;
pub use task::{run_stage, Attribution, Downstream};
