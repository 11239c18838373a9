//! Sinks: where the pipeline's events and findings go.

pub mod jsonl;
pub mod metrics;
pub mod tracefile;
pub mod perfetto;
