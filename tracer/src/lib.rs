//! daxtrace library: the pipeline every use shares.
//!
//! The data walks one road, and the modules follow it:
//! `source` (ring buffer | trace file | JSON Lines | simulator) -> `decode`
//! -> `reorder` -> `timeline` + `detect` -> `sink` (dashboard, trace writer,
//! JSON Lines, metrics). `pipeline` wires the middle; `attach` is the kernel
//! side (what to attach where).

pub mod attach;
pub mod decode;
pub mod detect;
pub mod event;
mod huge;
pub mod pipeline;
pub mod reorder;
pub mod sink;
pub mod source;
pub mod timeline;
pub mod tui;
pub mod workload;
