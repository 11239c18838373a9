//! Sinks: where the pipeline's events and findings go.

pub mod jsonl;
pub mod metrics;
pub mod tracefile;
#[cfg(feature = "perfetto")]
pub mod perfetto;
