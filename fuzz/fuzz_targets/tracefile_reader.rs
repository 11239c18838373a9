//! Any bytes given to the trace-file reader: no panic, no runaway memory,
//! and the report accounts for the input.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use tracer::source::tracefile::{decode_events, TraceReader};

fuzz_target!(|data: &[u8]| {
    // As a whole file (the fuzzer finds the magic and version from the seeds).
    if let Ok(mut r) = TraceReader::new(Cursor::new(data)) {
        let n = r.by_ref().count() as u64;
        let rep = r.report();
        assert_eq!(n, rep.events);
        assert!(rep.bytes_read <= data.len() as u64);
        let _ = rep.warnings();
    }
    // As a raw event-chunk payload (past the CRC, straight into the codec).
    let mut out = Vec::new();
    let _ = decode_events(data, &mut out);
});
