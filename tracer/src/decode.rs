//! Ring-buffer bytes -> `Event`, and back (for trace files and tests).
//!
//! A record is `tracer_common::Header` at offset 0 then one payload chosen by
//! `Header::kind`. Short, oversized or unknown records are typed errors,
//! never panics: the kernel side and a damaged file are both untrusted.

use std::mem::size_of;

use thiserror::Error;
use tracer_common::{self as wire, Header, Kind};

use crate::event::{Body, Comm, Dev, Event, FaultResult, InvalidateReason, MapResult, Size};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than its {need}-byte header")]
    ShortHeader { len: usize, need: usize },
    #[error("unknown record kind {kind}")]
    UnknownKind { kind: u16 },
    #[error("{kind:?} record is {len} bytes, expected {need}")]
    SizeMismatch { kind: Kind, len: usize, need: usize },
    #[error("{kind:?} record has an invalid {field} value {value}")]
    BadField {
        kind: Kind,
        field: &'static str,
        value: u64,
    },
}

fn read_pod<T: Copy>(bytes: &[u8]) -> T {
    debug_assert!(bytes.len() >= size_of::<T>());
    // SAFETY: length checked by callers; T is a repr(C) plain-data wire type
    // valid for any bit pattern; read_unaligned copes with any alignment.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
}

fn payload<P: Copy>(kind: Kind, bytes: &[u8]) -> Result<P, DecodeError> {
    let need = size_of::<Header>() + size_of::<P>();
    if bytes.len() != need {
        return Err(DecodeError::SizeMismatch {
            kind,
            len: bytes.len(),
            need,
        });
    }
    Ok(read_pod::<P>(&bytes[size_of::<Header>()..]))
}

fn size(kind: Kind, v: u8) -> Result<Size, DecodeError> {
    match v {
        wire::SIZE_PTE => Ok(Size::Pte),
        wire::SIZE_PMD => Ok(Size::Pmd),
        _ => Err(DecodeError::BadField {
            kind,
            field: "size",
            value: v.into(),
        }),
    }
}

fn fault_id(v: u64) -> Option<u64> {
    (v != wire::NO_FAULT).then_some(v)
}

/// Decode one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    if bytes.len() < size_of::<Header>() {
        return Err(DecodeError::ShortHeader {
            len: bytes.len(),
            need: size_of::<Header>(),
        });
    }
    let h: Header = read_pod(bytes);
    let kind = Kind::from_u16(h.kind).ok_or(DecodeError::UnknownKind { kind: h.kind })?;
    let body = match kind {
        Kind::FaultBegin => {
            let p: wire::FaultBegin = payload(kind, bytes)?;
            Body::FaultBegin {
                fault: p.fault,
                pgoff: p.pgoff,
                size: size(kind, p.size)?,
                write: p.write != 0,
            }
        }
        Kind::FaultEnd => {
            let p: wire::FaultEnd = payload(kind, bytes)?;
            Body::FaultEnd {
                fault: p.fault,
                result: FaultResult::from_vm_fault(p.result),
            }
        }
        Kind::MapBlocks => {
            let p: wire::MapBlocks = payload(kind, bytes)?;
            let result = match p.result {
                wire::MAP_HOLE => MapResult::Hole,
                wire::MAP_MAPPED => MapResult::Mapped,
                wire::MAP_UNWRITTEN => MapResult::Unwritten,
                v => {
                    return Err(DecodeError::BadField {
                        kind,
                        field: "result",
                        value: v.into(),
                    })
                }
            };
            Body::MapBlocks {
                fault: fault_id(p.fault),
                pgoff: p.pgoff,
                npages: p.npages,
                result,
                new: p.new != 0,
                write: p.write != 0,
            }
        }
        Kind::LoadHole => {
            let p: wire::LoadHole = payload(kind, bytes)?;
            Body::LoadHole {
                fault: p.fault,
                pgoff: p.pgoff,
                size: size(kind, p.size)?,
            }
        }
        Kind::InsertMapping => {
            let p: wire::InsertMapping = payload(kind, bytes)?;
            Body::InsertMapping {
                fault: p.fault,
                pgoff: p.pgoff,
                size: size(kind, p.size)?,
                inferred: p.inferred != 0,
            }
        }
        Kind::Invalidate => {
            let p: wire::Invalidate = payload(kind, bytes)?;
            let reason = match p.reason {
                wire::INV_TRUNCATE => InvalidateReason::Truncate,
                wire::INV_PUNCH_HOLE => InvalidateReason::PunchHole,
                wire::INV_COLLAPSE_RANGE => InvalidateReason::CollapseRange,
                wire::INV_ZERO_RANGE => InvalidateReason::ZeroRange,
                wire::INV_WRITE => InvalidateReason::Write,
                v => {
                    return Err(DecodeError::BadField {
                        kind,
                        field: "reason",
                        value: v.into(),
                    })
                }
            };
            Body::Invalidate {
                pgoff: p.pgoff,
                npages: p.npages,
                reason,
            }
        }
        Kind::Lost => {
            let p: wire::Lost = payload(kind, bytes)?;
            Body::Lost { count: p.count }
        }
    };
    Ok(Event {
        ts: h.ts,
        cpu: h.cpu,
        tid: h.tid,
        pid: h.pid,
        comm: Comm::from_kernel(h.comm),
        dev: Dev::from_kernel(h.dev),
        ino: h.ino,
        probe: h.probe,
        body,
    })
}

/// `events` as ring-buffer records one after another: the bytes, and each
/// record's span in them (benchmarks and examples decode them back).
pub fn encode_all(events: &[Event]) -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut buf = Vec::new();
    let mut spans = Vec::with_capacity(events.len());
    for e in events {
        let start = buf.len();
        encode(e, &mut buf);
        spans.push((start, buf.len()));
    }
    (buf, spans)
}

fn push_pod<T: Copy>(out: &mut Vec<u8>, v: &T) {
    // SAFETY: T is a repr(C) wire struct with explicit padding fields (all
    // initialised), so viewing it as bytes reads no uninitialised memory.
    let bytes = unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) };
    out.extend_from_slice(bytes);
}

fn size_code(s: Size) -> u8 {
    match s {
        Size::Pte => wire::SIZE_PTE,
        Size::Pmd => wire::SIZE_PMD,
    }
}

/// `VM_FAULT_*` bits for a result, the inverse of `FaultResult::from_vm_fault`.
fn vm_fault_bits(r: FaultResult) -> u32 {
    match r {
        FaultResult::Nopage => 0x100,
        FaultResult::Fallback => 0x800,
        FaultResult::Sigbus => 0x2,
        FaultResult::Retry => 0x400,
        FaultResult::Oom => 0x1,
        FaultResult::Sigsegv => 0x40,
        FaultResult::Error | FaultResult::Other => 0,
    }
}

/// Encode an event as the ring-buffer record the kernel would have written.
/// `decode(encode(e)) == e` for every event whose dev fits the kernel's
/// 12-bit major / 20-bit minor and whose fault_end result is not `Error`.
pub fn encode(ev: &Event, out: &mut Vec<u8>) {
    let kind = match ev.body {
        Body::FaultBegin { .. } => Kind::FaultBegin,
        Body::FaultEnd { .. } => Kind::FaultEnd,
        Body::MapBlocks { .. } => Kind::MapBlocks,
        Body::LoadHole { .. } => Kind::LoadHole,
        Body::InsertMapping { .. } => Kind::InsertMapping,
        Body::Invalidate { .. } => Kind::Invalidate,
        Body::Lost { .. } => Kind::Lost,
    };
    let h = Header {
        kind: kind as u16,
        probe: ev.probe,
        cpu: ev.cpu,
        ts: ev.ts,
        tid: ev.tid,
        pid: ev.pid,
        dev: ev.dev.to_kernel(),
        _pad: 0,
        ino: ev.ino,
        comm: ev.comm.0,
    };
    push_pod(out, &h);
    match ev.body {
        Body::FaultBegin {
            fault,
            pgoff,
            size,
            write,
        } => push_pod(
            out,
            &wire::FaultBegin {
                fault,
                pgoff,
                address: 0,
                flags: u32::from(write),
                size: size_code(size),
                write: u8::from(write),
                _pad: [0; 2],
            },
        ),
        Body::FaultEnd { fault, result } => {
            push_pod(
                out,
                &wire::FaultEnd {
                    fault,
                    pgoff: 0,
                    result: vm_fault_bits(result),
                    size: 0,
                    _pad: [0; 3],
                },
            );
        }
        Body::MapBlocks {
            fault,
            pgoff,
            npages,
            result,
            new,
            write,
        } => push_pod(
            out,
            &wire::MapBlocks {
                fault: fault.unwrap_or(wire::NO_FAULT),
                pgoff,
                npages,
                result: match result {
                    MapResult::Hole => wire::MAP_HOLE,
                    MapResult::Mapped => wire::MAP_MAPPED,
                    MapResult::Unwritten => wire::MAP_UNWRITTEN,
                },
                new: u8::from(new),
                write: u8::from(write),
                _pad: [0; 5],
            },
        ),
        Body::LoadHole { fault, pgoff, size } => {
            push_pod(
                out,
                &wire::LoadHole {
                    fault,
                    pgoff,
                    size: size_code(size),
                    _pad: [0; 7],
                },
            );
        }
        Body::InsertMapping {
            fault,
            pgoff,
            size,
            inferred,
        } => push_pod(
            out,
            &wire::InsertMapping {
                fault,
                pgoff,
                size: size_code(size),
                inferred: u8::from(inferred),
                _pad: [0; 6],
            },
        ),
        Body::Invalidate {
            pgoff,
            npages,
            reason,
        } => push_pod(
            out,
            &wire::Invalidate {
                pgoff,
                npages,
                reason: match reason {
                    InvalidateReason::Truncate => wire::INV_TRUNCATE,
                    InvalidateReason::PunchHole => wire::INV_PUNCH_HOLE,
                    InvalidateReason::CollapseRange => wire::INV_COLLAPSE_RANGE,
                    InvalidateReason::ZeroRange => wire::INV_ZERO_RANGE,
                    InvalidateReason::Write => wire::INV_WRITE,
                },
                _pad: [0; 7],
            },
        ),
        Body::Lost { count } => push_pod(out, &wire::Lost { count }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(body: Body) -> Event {
        Event {
            ts: 123_456_789,
            cpu: 3,
            tid: 4242,
            pid: 4240,
            comm: Comm::new("writer"),
            dev: Dev::new(259, 1),
            ino: 77,
            probe: tracer_common::Probe::IomapIterDstmap as u16,
            body,
        }
    }

    fn every_kind() -> Vec<Event> {
        vec![
            base(Body::FaultBegin {
                fault: 9,
                pgoff: 5,
                size: Size::Pmd,
                write: true,
            }),
            base(Body::FaultEnd {
                fault: 9,
                result: FaultResult::Nopage,
            }),
            base(Body::FaultEnd {
                fault: 9,
                result: FaultResult::Fallback,
            }),
            base(Body::MapBlocks {
                fault: None,
                pgoff: 64,
                npages: 16,
                result: MapResult::Mapped,
                new: true,
                write: true,
            }),
            base(Body::MapBlocks {
                fault: Some(9),
                pgoff: 1,
                npages: 1,
                result: MapResult::Hole,
                new: false,
                write: false,
            }),
            base(Body::MapBlocks {
                fault: Some(9),
                pgoff: 1,
                npages: 1,
                result: MapResult::Unwritten,
                new: false,
                write: false,
            }),
            base(Body::LoadHole {
                fault: 9,
                pgoff: 512,
                size: Size::Pmd,
            }),
            base(Body::InsertMapping {
                fault: 9,
                pgoff: 5,
                size: Size::Pte,
                inferred: true,
            }),
            base(Body::Invalidate {
                pgoff: 0,
                npages: u64::MAX,
                reason: InvalidateReason::Truncate,
            }),
            base(Body::Invalidate {
                pgoff: 3,
                npages: 2,
                reason: InvalidateReason::ZeroRange,
            }),
            base(Body::Lost { count: 17 }),
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        for ev in every_kind() {
            let mut buf = Vec::new();
            encode(&ev, &mut buf);
            assert_eq!(decode(&buf), Ok(ev), "{ev:?}");
        }
    }

    #[test]
    fn short_and_unknown_records_are_errors() {
        assert!(matches!(
            decode(&[0u8; 10]),
            Err(DecodeError::ShortHeader { len: 10, .. })
        ));
        let mut buf = Vec::new();
        encode(&every_kind()[0], &mut buf);
        buf[0] = 99;
        assert_eq!(decode(&buf), Err(DecodeError::UnknownKind { kind: 99 }));
        buf[0] = Kind::FaultBegin as u8;
        assert!(matches!(
            decode(&buf[..buf.len() - 1]),
            Err(DecodeError::SizeMismatch { .. })
        ));
        let mut long = buf.clone();
        long.push(0);
        assert!(matches!(
            decode(&long),
            Err(DecodeError::SizeMismatch { .. })
        ));
    }

    #[test]
    fn bad_enum_values_are_errors() {
        let mut buf = Vec::new();
        encode(&every_kind()[3], &mut buf);
        let result_at = size_of::<Header>() + 24;
        buf[result_at] = 9;
        assert!(matches!(
            decode(&buf),
            Err(DecodeError::BadField {
                field: "result",
                ..
            })
        ));
    }

    #[test]
    fn truncations_never_panic() {
        for ev in every_kind() {
            let mut buf = Vec::new();
            encode(&ev, &mut buf);
            for n in 0..buf.len() {
                assert!(decode(&buf[..n]).is_err());
            }
        }
    }
}
