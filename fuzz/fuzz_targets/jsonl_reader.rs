//! Any bytes given to the JSON Lines reader (the one `analyze` uses): events
//! or line-numbered errors, never a panic; whatever parses prints and parses
//! back to itself (checks in `../checks.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, reason = "each target uses one of the checks")]
#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::jsonl(data));
