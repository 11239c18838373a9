//! Sinks: where the pipeline's events and findings go.

pub mod jsonl;
pub mod metrics;
#[cfg(feature = "perfetto")]
pub mod perfetto;
pub mod tracefile;
