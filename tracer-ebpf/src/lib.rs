#![no_std]
// Empty library target: lets `tracer` name this crate as a build-dependency
// so cargo rebuilds it when the programs change. The programs are in main.rs.
