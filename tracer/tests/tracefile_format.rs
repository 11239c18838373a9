//! The trace file format: exact round-trip, damage handling, versioning, permissions.

use std::io::Cursor;
use std::os::unix::fs::PermissionsExt;

use proptest::prelude::*;
use tracer::event::{Body, Comm, Dev, Event, FaultResult, InvalidateReason, MapResult, Size};
use tracer::sink::tracefile::{TraceWriter, WriterOptions};
use tracer::source::tracefile::{synth::Workload, DamageKind, Header, TraceError, TraceReader};

fn header() -> Header {
    Header {
        host: "lab".into(),
        kernel: "6.12.0-test".into(),
        boot_id: "b0".into(),
        clock: "mono".into(),
        attach_plan: serde_json::json!({"fault": "fs_dax:dax_pte_fault"}),
        start_unix_ns: 1,
        start_mono_ns: 2,
        writer: "test".into(),
        source: "synth".into(),
    }
}

/// Write `events` with `per_chunk` events per chunk and a stats record after
/// every chunk; return the bytes and the byte offset where each chunk starts.
fn write(events: &[Event], per_chunk: usize, footer: bool) -> (Vec<u8>, Vec<u64>) {
    let mut w = TraceWriter::new(
        Vec::new(),
        &header(),
        WriterOptions {
            chunk_events: per_chunk,
            zstd_level: 3,
        },
    )
    .unwrap();
    for (i, e) in events.iter().enumerate() {
        w.write_event(e);
        if (i + 1) % (per_chunk * 2) == 0 {
            w.write_stats(0, 0);
        }
    }
    if footer {
        let (_, out) = w.finish(0, 0, "test").unwrap();
        let starts = chunk_starts(&out);
        (out, starts)
    } else {
        w.flush_chunk();
        // Reach into the writer's output: finish() is the only way out, so
        // write a footer and cut it off again.
        let (_, mut out) = w.finish(0, 0, "test").unwrap();
        let starts = chunk_starts(&out);
        out.truncate(*starts.last().unwrap() as usize);
        let starts = starts[..starts.len() - 1].to_vec();
        (out, starts)
    }
}

/// Offsets of every chunk, found by walking the frames (independent of the reader).
fn chunk_starts(b: &[u8]) -> Vec<u64> {
    let hlen = u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
    let mut pos = 20 + hlen;
    let mut v = Vec::new();
    while pos < b.len() {
        assert_eq!(&b[pos..pos + 4], b"DXCK");
        v.push(pos as u64);
        let stored = u32::from_le_bytes(b[pos + 8..pos + 12].try_into().unwrap()) as usize;
        pos += 28 + stored;
    }
    v
}

fn read_all(b: &[u8]) -> (Vec<Event>, tracer::source::tracefile::ReadReport) {
    let mut r = TraceReader::new(Cursor::new(b)).unwrap();
    let evs: Vec<Event> = r.by_ref().collect();
    (evs, r.report().clone())
}

fn size() -> impl Strategy<Value = Size> {
    prop_oneof![Just(Size::Pte), Just(Size::Pmd)]
}

fn body() -> impl Strategy<Value = Body> {
    let fr = prop::sample::select(vec![
        FaultResult::Nopage,
        FaultResult::Fallback,
        FaultResult::Sigbus,
        FaultResult::Retry,
        FaultResult::Oom,
        FaultResult::Sigsegv,
        FaultResult::Error,
        FaultResult::Other,
    ]);
    let reason = prop::sample::select(vec![
        InvalidateReason::Truncate,
        InvalidateReason::PunchHole,
        InvalidateReason::CollapseRange,
        InvalidateReason::ZeroRange,
        InvalidateReason::Write,
    ]);
    let result = prop::sample::select(vec![
        MapResult::Hole,
        MapResult::Mapped,
        MapResult::Unwritten,
    ]);
    prop_oneof![
        (any::<u64>(), any::<u64>(), size(), any::<bool>()).prop_map(
            |(fault, pgoff, size, write)| Body::FaultBegin {
                fault,
                pgoff,
                size,
                write
            }
        ),
        (
            any::<Option<u64>>(),
            any::<u64>(),
            any::<u64>(),
            result,
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(
                |(fault, pgoff, npages, result, new, write)| Body::MapBlocks {
                    fault,
                    pgoff,
                    npages,
                    result,
                    new,
                    write
                }
            ),
        (any::<u64>(), any::<u64>(), size()).prop_map(|(fault, pgoff, size)| Body::LoadHole {
            fault,
            pgoff,
            size
        }),
        (any::<u64>(), any::<u64>(), size(), any::<bool>()).prop_map(
            |(fault, pgoff, size, inferred)| Body::InsertMapping {
                fault,
                pgoff,
                size,
                inferred
            }
        ),
        (any::<u64>(), fr).prop_map(|(fault, result)| Body::FaultEnd { fault, result }),
        (any::<u64>(), any::<u64>(), reason).prop_map(|(pgoff, npages, reason)| Body::Invalidate {
            pgoff,
            npages,
            reason
        }),
        any::<u64>().prop_map(|count| Body::Lost { count }),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    (
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<[u8; 16]>(),
        any::<(u32, u32)>(),
        any::<u64>(),
        any::<u16>(),
        body(),
    )
        .prop_map(
            |(ts, cpu, tid, pid, comm, (ma, mi), ino, probe, body)| Event {
                ts,
                cpu,
                tid,
                pid,
                comm: Comm(comm),
                dev: Dev::new(ma, mi),
                ino,
                probe,
                body,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Any events, even with extreme values and raw comm bytes, come back identical.
    #[test]
    fn round_trip_is_exact(evs in prop::collection::vec(event(), 0..300), per_chunk in 1usize..64) {
        let (bytes, _) = write(&evs, per_chunk, true);
        let (back, rep) = read_all(&bytes);
        prop_assert_eq!(&back, &evs);
        prop_assert!(rep.damage.is_empty(), "{:?}", rep.damage);
        prop_assert_eq!(rep.footer.as_ref().map(|f| f.events), Some(evs.len() as u64));
    }

    /// Any byte flipped anywhere: no panic, and every event read is one that was written.
    #[test]
    fn flipped_byte_never_panics(at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let evs: Vec<Event> = Workload::new(7).take(2000).collect();
        let (mut bytes, _) = write(&evs, 250, true);
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        let Ok(mut r) = TraceReader::new(Cursor::new(&bytes[..])) else {
            // Only the magic or version bytes make the file unreadable as a whole.
            prop_assert!(i < 10, "file refused after a flip at byte {}", i);
            return Ok(());
        };
        let back: Vec<Event> = r.by_ref().collect();
        let rep = r.report();
        if back.len() < evs.len() {
            prop_assert!(!rep.damage.is_empty(), "events missing ({} of {}) but no damage reported", back.len(), evs.len());
        }
        for e in &back {
            prop_assert!(evs.contains(e));
        }
    }
}

#[test]
fn synthetic_workload_round_trips() {
    let evs: Vec<Event> = Workload::new(1).take(200_000).collect();
    let (bytes, starts) = write(&evs, 65536, true);
    let (back, rep) = read_all(&bytes);
    assert_eq!(back, evs);
    assert!(rep.damage.is_empty());
    assert!(rep.warnings().is_empty(), "{:?}", rep.warnings());
    // 4 event chunks, 1 stats (after 131072 events), footer.
    assert_eq!(starts.len(), 6);
    let bpe = bytes.len() as f64 / evs.len() as f64;
    // The format's reason to exist: far smaller than trace-cmd's 6.8 bytes/event.
    assert!(bpe < 3.4, "{bpe} bytes/event");
}

#[test]
fn cut_at_every_chunk_boundary_reads_every_complete_chunk() {
    let evs: Vec<Event> = Workload::new(2).take(5000).collect();
    let per = 500;
    let (bytes, starts) = write(&evs, per, true);
    let (_, hdr_end) = (0, starts[0]);
    // Events before each chunk start, from the frames' counts.
    let mut before = Vec::new();
    let mut n = 0u64;
    for &s in &starts {
        before.push(n);
        n += u64::from(u32::from_le_bytes(
            bytes[s as usize + 16..s as usize + 20].try_into().unwrap(),
        ));
    }
    for (k, &s) in starts.iter().enumerate() {
        for cut in [s, s + 1, s + 27, s + 28, s + 40] {
            let cut = cut as usize;
            if cut > bytes.len() {
                continue;
            }
            let (back, rep) = read_all(&bytes[..cut]);
            assert_eq!(back.len() as u64, before[k], "cut at {cut} (chunk {k})");
            assert_eq!(back[..], evs[..back.len()]);
            assert!(rep.footer.is_none());
            let w = rep.warnings().join("\n");
            assert!(w.contains("no footer"), "{w}");
            if cut as u64 > s {
                assert!(
                    rep.damage
                        .iter()
                        .any(|d| matches!(d.kind, DamageKind::Truncated { .. })),
                    "cut at {cut}: {:?}",
                    rep.damage
                );
                assert!(w.contains(&format!("file cut at byte {cut}")), "{w}");
            } else {
                assert!(
                    rep.damage.is_empty(),
                    "clean cut at a boundary: {:?}",
                    rep.damage
                );
            }
        }
    }
    assert!(hdr_end > 20);
    // Cut inside the header: a clear error, not a panic.
    for cut in [0usize, 4, 8, 19] {
        match TraceReader::new(Cursor::new(&bytes[..cut])) {
            Err(TraceError::TooShort { .. } | TraceError::NotATraceFile) => {}
            other => panic!("cut at {cut}: {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn cut_at_random_bytes_never_panics_and_keeps_a_prefix() {
    let evs: Vec<Event> = Workload::new(3).take(20_000).collect();
    let (bytes, starts) = write(&evs, 1000, true);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..300 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let cut = 20 + (x as usize) % (bytes.len() - 20);
        let Ok(mut r) = TraceReader::new(Cursor::new(&bytes[..cut])) else {
            continue;
        };
        let back: Vec<Event> = r.by_ref().collect();
        assert_eq!(back[..], evs[..back.len()], "cut at {cut}");
        assert_eq!(back.len() % 1000, 0, "only whole chunks");
        assert!(r.report().footer.is_none() || cut == bytes.len());
        // The damage is reported: a cut inside the header or a chunk, never silent.
        let w = r.report().warnings().join("\n");
        if starts.contains(&(cut as u64)) {
            assert!(
                r.report().damage.is_empty(),
                "cut at a chunk boundary {cut}: {w}"
            );
        } else if cut as u64 > starts[0] {
            assert!(
                w.contains(&format!("file cut at byte {cut}")),
                "cut at {cut}: {w}"
            );
        } else {
            assert!(
                r.report()
                    .damage
                    .iter()
                    .any(|d| d.kind == DamageKind::BadHeader),
                "cut in the header at {cut}: {w}"
            );
        }
        assert!(w.contains("no footer"), "{w}");
    }
}

#[test]
fn damaged_chunk_is_skipped_and_reported() {
    let evs: Vec<Event> = Workload::new(4).take(4000).collect();
    let (mut bytes, starts) = write(&evs, 1000, true);
    // Chunk 1 (events 1000..2000): flip a payload byte.
    let s = starts[1] as usize;
    bytes[s + 28 + 10] ^= 0x40;
    let (back, rep) = read_all(&bytes);
    assert_eq!(back.len(), 3000);
    assert_eq!(back[..1000], evs[..1000]);
    assert_eq!(back[1000..], evs[2000..]);
    assert_eq!(rep.damage.len(), 1, "{:?}", rep.damage);
    assert!(
        matches!(
            rep.damage[0].kind,
            DamageKind::BadCrc {
                seq: 1,
                count: 1000
            }
        ),
        "{:?}",
        rep.damage[0]
    );
    assert_eq!(rep.damage[0].offset, s as u64);
    assert!(rep.footer.is_some());
    let w = rep.warnings().join("\n");
    assert!(w.contains("chunk 1") && w.contains("CRC32C"), "{w}");
}

#[test]
fn garbage_between_chunks_and_a_removed_chunk_are_reported() {
    let evs: Vec<Event> = Workload::new(5).take(3000).collect();
    let (bytes, starts) = write(&evs, 1000, true);
    let (a, b, c) = (starts[0] as usize, starts[1] as usize, starts[2] as usize);
    // Insert garbage before chunk 1.
    let mut g = bytes[..b].to_vec();
    g.extend_from_slice(&[0xAB; 100]);
    g.extend_from_slice(&bytes[b..]);
    let (back, rep) = read_all(&g);
    assert_eq!(back, evs);
    assert_eq!(rep.damage.len(), 1);
    assert_eq!(rep.damage[0].kind, DamageKind::Garbage);
    assert_eq!((rep.damage[0].offset, rep.damage[0].len), (b as u64, 100));
    // Remove chunk 1 whole: the sequence gap is reported.
    let mut r = bytes[..b].to_vec();
    r.extend_from_slice(&bytes[c..]);
    let (back, rep) = read_all(&r);
    assert_eq!(back.len(), 2000);
    assert!(
        rep.damage
            .iter()
            .any(|d| d.kind == DamageKind::MissingChunks { from: 1, to: 1 }),
        "{:?}",
        rep.damage
    );
    assert!(a > 20);
}

#[test]
fn damaged_header_still_reads_chunks() {
    let evs: Vec<Event> = Workload::new(6).take(1000).collect();
    let (mut bytes, _) = write(&evs, 500, true);
    bytes[25] ^= 1; // inside the header JSON
    let mut r = TraceReader::new(Cursor::new(&bytes[..])).unwrap();
    assert!(r.header().is_none());
    let back: Vec<Event> = r.by_ref().collect();
    assert_eq!(back, evs);
    assert_eq!(r.report().damage[0].kind, DamageKind::BadHeader);
}

#[test]
fn newer_version_is_a_clear_error() {
    let (mut bytes, _) = write(&[], 10, true);
    bytes[8] = 2;
    let e = TraceReader::new(Cursor::new(&bytes[..]))
        .err()
        .expect("refused");
    assert!(matches!(
        e,
        TraceError::NewerVersion {
            found: 2,
            supported: 1
        }
    ));
    assert!(e.to_string().contains("newer daxtrace"), "{e}");
}

#[test]
fn header_fields_survive() {
    let (bytes, _) = write(&[], 10, true);
    let r = TraceReader::new(Cursor::new(&bytes[..])).unwrap();
    assert_eq!(r.header(), Some(&header()));
}

#[test]
fn files_are_created_0600_even_over_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.dxt");
    std::fs::write(&p, b"old").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let w = TraceWriter::create(&p, &header(), WriterOptions::default()).unwrap();
    w.finish(0, 0, "test").unwrap();
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let fresh = dir.path().join("new.dxt");
    TraceWriter::create(&fresh, &header(), WriterOptions::default())
        .unwrap()
        .finish(0, 0, "t")
        .unwrap();
    assert_eq!(
        std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// Only regular files are made private: writing a trace into a FIFO (or,
/// as root, `-o /dev/null`) must leave the node's mode alone.
#[test]
fn writing_to_a_fifo_leaves_its_mode_alone() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o644) },
        0,
        "{}",
        std::io::Error::last_os_error()
    );
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o644)).unwrap();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut b = Vec::new();
            std::fs::File::open(fifo)
                .unwrap()
                .read_to_end(&mut b)
                .unwrap();
            b
        })
    };
    let mut w = TraceWriter::create(&fifo, &header(), WriterOptions::default()).unwrap();
    for e in Workload::new(10).take(100) {
        w.write_event(&e);
    }
    drop(w.finish(0, 0, "test").unwrap());
    let got = reader.join().unwrap();
    assert!(got.starts_with(b"DAXTRACE"));
    assert_eq!(
        std::fs::metadata(&fifo).unwrap().permissions().mode() & 0o777,
        0o644
    );
}

#[test]
fn stats_and_footer_carry_lost_and_late() {
    let mut evs: Vec<Event> = Workload::new(8).take(100).collect();
    evs[50].body = Body::Lost { count: 17 };
    let mut w = TraceWriter::new(
        Vec::new(),
        &header(),
        WriterOptions {
            chunk_events: 40,
            zstd_level: 1,
        },
    )
    .unwrap();
    for e in &evs[..60] {
        w.write_event(e);
    }
    w.write_stats(3, 5);
    for e in &evs[60..] {
        w.write_event(e);
    }
    let (f, bytes) = w.finish(4, 5, "end of input").unwrap();
    assert_eq!((f.lost, f.late, f.queue_dropped, f.events), (17, 4, 5, 100));
    let (_, rep) = read_all(&bytes);
    let s = rep.stats.clone().unwrap();
    assert_eq!((s.events, s.lost, s.late), (60, 17, 3));
    assert_eq!(rep.footer.as_ref().unwrap().stop_reason, "end of input");
    assert_eq!(rep.lost(), 17);
    // Cut before the footer: the stats record still tells the loss.
    let starts = chunk_starts(&bytes);
    let (_, rep) = read_all(&bytes[..*starts.last().unwrap() as usize]);
    assert_eq!(rep.lost(), 17);
}

#[test]
fn unflushed_writer_output_ends_at_last_chunk() {
    // The `footer: false` helper path: no footer, no damage.
    let evs: Vec<Event> = Workload::new(9).take(300).collect();
    let (bytes, _) = write(&evs, 100, false);
    let (back, rep) = read_all(&bytes);
    assert_eq!(back, evs);
    assert!(rep.damage.is_empty());
    assert!(rep.footer.is_none());
}
