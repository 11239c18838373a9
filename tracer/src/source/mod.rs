//! Event sources. Each yields `event::Event`s; the pipeline does not care which.

pub mod jsonl;
pub mod ringbuf;
pub mod sim;
pub mod tracefile;
