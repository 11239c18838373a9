//! Any bytes given to the trace-file reader: no panic, no runaway memory,
//! and the report accounts for the input (checks in `../checks.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, reason = "each target uses one of the checks")]
#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::tracefile(data));
