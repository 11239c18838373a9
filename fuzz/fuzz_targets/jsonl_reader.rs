//! Any bytes given to the JSON Lines reader: events or a line-numbered error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::event::Event;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for line in text.lines() {
        if let Ok(ev) = serde_json::from_str::<Event>(line) {
            // Whatever parses must print and parse back to the same event.
            let back: Event = serde_json::from_str(&serde_json::to_string(&ev).unwrap()).unwrap();
            assert_eq!(back, ev);
        }
    }
});
