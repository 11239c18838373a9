//! Any bytes given to the JSON Lines reader (the one `analyze` uses): events
//! or line-numbered errors, never a panic; whatever parses prints and parses
//! back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::event::Event;
use tracer::source::jsonl::JsonlReader;

fuzz_target!(|data: &[u8]| {
    for item in JsonlReader::new(data, "fuzz") {
        match item {
            Ok(ev) => {
                let text = serde_json::to_string(&ev).unwrap();
                let back: Event = serde_json::from_str(&text).unwrap();
                assert_eq!(back, ev, "{text}");
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
