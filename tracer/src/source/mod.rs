//! Event sources. Each yields `event::Event`s; the pipeline does not care which.

pub mod ringbuf;
