//! What the fuzz targets check, shared with the normal test suite
//! (`tracer/tests/fuzz_seeds.rs` replays every seed and every past crash
//! through these on each `cargo test`, no nightly or cargo-fuzz needed).

use std::io::Cursor;

use tracer::event::Event;
use tracer::source::jsonl::JsonlReader;
use tracer::source::tracefile::{
    decode_events, TraceReader, CHUNK_HEADER_LEN, CHUNK_MAGIC, FILE_HEADER_LEN, MAX_PAYLOAD,
};

/// Any bytes given to the JSON Lines reader (the one `analyze` uses): events
/// or line-numbered errors, never a panic; whatever parses prints and parses
/// back to itself.
pub fn jsonl(data: &[u8]) {
    for item in JsonlReader::new(data, "fuzz") {
        match item {
            Ok(ev) => {
                let text = serde_json::to_string(&ev).unwrap();
                let back: Event = serde_json::from_str(&text).unwrap();
                assert_eq!(back, ev, "{text}");
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.starts_with("fuzz:"), "errors name the input: {msg}");
            }
        }
    }
}

/// Any bytes given to the trace-file reader: no panic, no runaway memory,
/// and the report accounts for the input.
///
/// Three views of each input, so that mutations reach past the CRCs: as a
/// file; as the same file with every CRC made right again (a mutated payload
/// then reaches zstd, the columnar decoder and the stats/footer JSON, as if
/// a buggy or hostile writer had made it); and as a raw event-chunk payload.
pub fn tracefile(data: &[u8]) {
    read(data);
    if let Some(fixed) = with_crcs_fixed(data) {
        read(&fixed);
    }
    let mut out = Vec::new();
    let _ = decode_events(data, &mut out);
}

fn read(data: &[u8]) {
    // Event by event (what `export` uses) ...
    let Ok(mut r) = TraceReader::new(Cursor::new(data)) else {
        return;
    };
    let evs: Vec<Event> = r.by_ref().collect();
    let rep = r.report();
    assert_eq!(evs.len() as u64, rep.events);
    assert!(rep.bytes_read <= data.len() as u64);
    for d in &rep.damage {
        assert!(
            d.offset.saturating_add(d.len) <= data.len() as u64,
            "{d:?} past the end ({} bytes)",
            data.len()
        );
    }
    let _ = rep.warnings();
    // ... and a chunk at a time (what `analyze` uses): the same events.
    let mut r = TraceReader::new(Cursor::new(data)).expect("opened once already");
    let (mut all, mut buf) = (Vec::new(), Vec::new());
    while r.next_batch(&mut buf) {
        all.extend_from_slice(&buf);
    }
    assert_eq!(all, evs);
}

/// The input with the header's and every chunk's CRC32C recomputed.
fn with_crcs_fixed(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < FILE_HEADER_LEN {
        return None;
    }
    let mut b = data.to_vec();
    let hlen = u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
    let mut pos = FILE_HEADER_LEN;
    if let Some(json) = b.get(FILE_HEADER_LEN..FILE_HEADER_LEN.saturating_add(hlen)) {
        let crc = crc32c::crc32c(json);
        b[16..20].copy_from_slice(&crc.to_le_bytes());
        pos += hlen;
    }
    while pos + CHUNK_HEADER_LEN <= b.len() && &b[pos..pos + 4] == CHUNK_MAGIC {
        let stored = u32::from_le_bytes(b[pos + 8..pos + 12].try_into().unwrap());
        let end = pos + CHUNK_HEADER_LEN + stored as usize;
        if stored > MAX_PAYLOAD || end > b.len() {
            break;
        }
        let crc = crc32c::crc32c_append(
            crc32c::crc32c(&b[pos..pos + 24]),
            &b[pos + CHUNK_HEADER_LEN..end],
        );
        b[pos + 24..pos + 28].copy_from_slice(&crc.to_le_bytes());
        pos = end;
    }
    (b != data).then_some(b)
}
