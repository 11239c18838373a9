//! The daxtrace trace file: format constants, the chunk codec and the reader.
//!
//! The layout is specified in `docs/trace-format.md`; this file and
//! `sink/tracefile.rs` (the writer) are its only implementation. In short:
//!
//! ```text
//! file   = file-header chunk*            (the last chunk is a footer when closed cleanly)
//! header = "DAXTRACE" version:u16 flags:u16 len:u32 crc32c:u32 json[len]
//! chunk  = "DXCK" type:u8 codec:u8 0:u16 stored:u32 raw:u32 count:u32 seq:u32 crc32c:u32 payload[stored]
//! ```
//!
//! The reader never trusts a length it has not checked: a chunk is used only
//! when its CRC32C (over its frame and payload) matches; otherwise the reader
//! scans forward for the next chunk marker, reports the bytes it skipped and
//! why, and goes on. It never panics on any input (fuzzed: `fuzz/`).

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::event::{Body, Comm, Dev, Event, FaultResult, InvalidateReason, MapResult, Size};
use crate::pipeline::{Arrivals, Released};

/// First bytes of every trace file.
pub const MAGIC: &[u8; 8] = b"DAXTRACE";
/// Format version this build writes and the newest it reads.
pub const VERSION: u16 = 1;
/// First bytes of every chunk (lets the reader resynchronise after damage).
pub const CHUNK_MAGIC: &[u8; 4] = b"DXCK";
/// Fixed part of the file header before the JSON.
pub const FILE_HEADER_LEN: usize = 20;
/// Fixed part of a chunk before its payload.
pub const CHUNK_HEADER_LEN: usize = 28;
/// Largest header JSON or chunk payload (stored or raw) a reader accepts:
/// bounds the memory a damaged length can make it allocate.
pub const MAX_PAYLOAD: u32 = 64 << 20;

/// Chunk types.
pub const CHUNK_EVENTS: u8 = 1;
pub const CHUNK_STATS: u8 = 2;
pub const CHUNK_FOOTER: u8 = 3;
/// Payload codecs.
pub const CODEC_NONE: u8 = 0;
pub const CODEC_ZSTD: u8 = 1;

/// What the recorder knew when it started (the file header's JSON).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Header {
    #[serde(default)]
    pub host: String,
    /// `uname -r` of the traced machine.
    #[serde(default)]
    pub kernel: String,
    /// `/proc/sys/kernel/random/boot_id`: timestamps compare only within one boot.
    #[serde(default)]
    pub boot_id: String,
    /// Clock of every `ts` ("mono": `bpf_ktime_get_ns`, CLOCK_MONOTONIC).
    #[serde(default)]
    pub clock: String,
    /// The attach plan used, as the recorder described it (free-form JSON).
    #[serde(default)]
    pub attach_plan: serde_json::Value,
    /// Wall-clock start, nanoseconds since the Unix epoch.
    #[serde(default)]
    pub start_unix_ns: u64,
    /// CLOCK_MONOTONIC at start, to relate `ts` to wall time.
    #[serde(default)]
    pub start_mono_ns: u64,
    /// Program that wrote the file ("daxtrace 0.1.0").
    #[serde(default)]
    pub writer: String,
    /// Where the events came from ("live", "jsonl:race.jsonl", ...).
    #[serde(default)]
    pub source: String,
}

impl Header {
    /// A header describing this machine now; `source` and `attach_plan` from the caller.
    pub fn for_this_host(source: &str, attach_plan: serde_json::Value) -> Self {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        Self {
            host: read("/proc/sys/kernel/hostname"),
            kernel: read("/proc/sys/kernel/osrelease"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            clock: "mono".into(),
            attach_plan,
            start_unix_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            start_mono_ns: mono_now_ns(),
            writer: concat!("daxtrace ", env!("CARGO_PKG_VERSION")).into(),
            source: source.into(),
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds (the clock of `bpf_ktime_get_ns`).
pub fn mono_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// A periodic stats record: counts so far, so a file cut short still says
/// how much was lost up to its last good chunk.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsRecord {
    /// Kernel timestamp of the last event written before this record.
    #[serde(default)]
    pub ts: u64,
    #[serde(default)]
    pub events: u64,
    /// Events the kernel side could not deliver, plus events the writer's queue dropped.
    #[serde(default)]
    pub lost: u64,
    /// Of `lost`, those dropped by the writer's queue (disk slower than the kernel).
    #[serde(default)]
    pub queue_dropped: u64,
    /// Events later than the reorder window (when the recorder reordered).
    #[serde(default)]
    pub late: u64,
}

/// Totals written when the file is closed cleanly.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Footer {
    #[serde(default)]
    pub events: u64,
    #[serde(default)]
    pub chunks: u64,
    #[serde(default)]
    pub lost: u64,
    #[serde(default)]
    pub queue_dropped: u64,
    #[serde(default)]
    pub late: u64,
    #[serde(default)]
    pub first_ts: u64,
    #[serde(default)]
    pub last_ts: u64,
    /// Events by kind, indexed by `Body::kind_index`.
    #[serde(default)]
    pub by_kind: [u64; 7],
    #[serde(default)]
    pub end_unix_ns: u64,
    /// Why recording stopped ("end of input", "SIGINT", "duration", "max size").
    #[serde(default)]
    pub stop_reason: String,
}

/// Errors that stop a file from being read at all. Damage inside a readable
/// file is not an error: it is reported in [`ReadReport`].
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not a daxtrace trace file (it does not start with \"DAXTRACE\")")]
    NotATraceFile,
    #[error(
        "trace file format version {found} is newer than this daxtrace reads (up to {supported}): \
         use a newer daxtrace"
    )]
    NewerVersion { found: u16, supported: u16 },
    #[error("trace file is {len} bytes, shorter than its {FILE_HEADER_LEN}-byte header: nothing was recorded")]
    TooShort { len: u64 },
}

/// Why some bytes of a file were not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DamageKind {
    /// The file header's JSON failed its CRC or did not parse.
    BadHeader,
    /// Bytes that are not a chunk (no chunk marker, or a frame whose lengths are impossible).
    Garbage,
    /// A chunk whose CRC32C does not match: some byte of it changed.
    BadCrc { seq: u32, count: u32 },
    /// CRC matched but the payload did not decode (written by a buggy or newer writer).
    BadPayload { seq: u32, what: String },
    /// Chunks missing from the sequence (a gap in `seq`).
    MissingChunks { from: u32, to: u32 },
    /// The file ends inside a chunk: it was cut (killed recorder, partial copy).
    Truncated { need: u64, have: u64 },
}

/// One damaged region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub offset: u64,
    pub len: u64,
    pub kind: DamageKind,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (o, n) = (self.offset, self.len);
        match &self.kind {
            DamageKind::BadHeader => write!(f, "file header damaged (bytes {o}..{}): host, kernel and attach plan unknown", o + n),
            DamageKind::Garbage => write!(f, "skipped {n} bytes at {o} that are not a valid chunk"),
            DamageKind::BadCrc { seq, count } => write!(
                f,
                "chunk {seq} at byte {o} is damaged (CRC32C mismatch): skipped {n} bytes, about {count} events"
            ),
            DamageKind::BadPayload { seq, what } => write!(f, "chunk {seq} at byte {o} does not decode ({what}): skipped {n} bytes"),
            DamageKind::MissingChunks { from, to } => write!(f, "chunks {from}..={to} are missing before byte {o}"),
            DamageKind::Truncated { need, have } => write!(
                f,
                "file cut at byte {}: its last chunk (at byte {o}) needs {need} bytes, only {have} are there",
                o + have
            ),
        }
    }
}

/// What reading a file found besides events.
#[derive(Clone, Debug, Default)]
pub struct ReadReport {
    pub chunks: u64,
    pub events: u64,
    pub damage: Vec<Damage>,
    /// The last periodic stats record read.
    pub stats: Option<StatsRecord>,
    /// Present only when the writer closed the file cleanly.
    pub footer: Option<Footer>,
    /// Bytes consumed so far (for progress bars).
    pub bytes_read: u64,
}

impl ReadReport {
    /// Lost events known so far: the footer's total, else the last stats record.
    pub fn lost(&self) -> u64 {
        self.footer
            .as_ref()
            .map(|f| f.lost)
            .or(self.stats.as_ref().map(|s| s.lost))
            .unwrap_or(0)
    }

    /// Lines for the user about what was skipped or is missing; empty for a clean file.
    pub fn warnings(&self) -> Vec<String> {
        let mut w: Vec<String> = self.damage.iter().map(ToString::to_string).collect();
        if self.footer.is_none() {
            w.push(format!(
                "no footer: the file was not closed cleanly (recorder killed or file cut); read {} complete chunks, {} events",
                self.chunks, self.events
            ));
        }
        w
    }
}

/// Streaming reader: holds one decoded chunk at a time.
pub struct TraceReader<R> {
    r: R,
    header: Option<Header>,
    version: u16,
    /// Offset of the next unread byte.
    pos: u64,
    len: u64,
    events: Vec<Event>,
    next: usize,
    report: ReadReport,
    expect_seq: u32,
    done: bool,
    raw: Vec<u8>,
    stored: Vec<u8>,
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

impl TraceReader<BufReader<File>> {
    pub fn open(path: &Path) -> Result<Self, TraceError> {
        Self::new(BufReader::with_capacity(1 << 20, File::open(path)?))
    }
}

/// Does this prefix of a file say it is a trace file?
pub fn is_trace_file(prefix: &[u8]) -> bool {
    prefix.starts_with(MAGIC)
}

impl<R: Read + Seek> TraceReader<R> {
    /// Read the file header. Errors only when the input is not a trace file
    /// at all or is of a newer version; a damaged header is reported instead.
    pub fn new(mut r: R) -> Result<Self, TraceError> {
        let len = r.seek(SeekFrom::End(0))?;
        r.seek(SeekFrom::Start(0))?;
        let mut fixed = [0u8; FILE_HEADER_LEN];
        let n = read_full(&mut r, &mut fixed)?;
        if n < MAGIC.len() || &fixed[..8] != MAGIC {
            return if fixed[..n].starts_with(&MAGIC[..n.min(8)]) && n < FILE_HEADER_LEN {
                Err(TraceError::TooShort { len })
            } else {
                Err(TraceError::NotATraceFile)
            };
        }
        if n < FILE_HEADER_LEN {
            return Err(TraceError::TooShort { len });
        }
        let version = u16::from_le_bytes([fixed[8], fixed[9]]);
        if version > VERSION || version == 0 {
            return Err(TraceError::NewerVersion {
                found: version,
                supported: VERSION,
            });
        }
        let hlen = u32::from_le_bytes(fixed[12..16].try_into().expect("4 bytes"));
        let hcrc = u32::from_le_bytes(fixed[16..20].try_into().expect("4 bytes"));
        let mut rd = Self {
            r,
            header: None,
            version,
            pos: FILE_HEADER_LEN as u64,
            len,
            events: Vec::new(),
            next: 0,
            report: ReadReport::default(),
            expect_seq: 0,
            done: false,
            raw: Vec::new(),
            stored: Vec::new(),
            zstd: None,
        };
        let end = FILE_HEADER_LEN as u64 + u64::from(hlen);
        if hlen <= MAX_PAYLOAD && end <= len {
            let mut json = vec![0u8; hlen as usize];
            read_full(&mut rd.r, &mut json)?;
            if crc32c::crc32c(&json) == hcrc {
                if let Ok(h) = serde_json::from_slice::<Header>(&json) {
                    rd.header = Some(h);
                    rd.pos = end;
                }
            }
        }
        if rd.header.is_none() {
            // Find the first chunk so the damage report covers the header only.
            let start = FILE_HEADER_LEN as u64;
            let first = rd.scan_for_chunk(start)?;
            rd.report.damage.push(Damage {
                offset: 0,
                len: first.unwrap_or(len),
                kind: DamageKind::BadHeader,
            });
            rd.pos = first.unwrap_or(len);
        }
        rd.report.bytes_read = rd.pos;
        Ok(rd)
    }

    /// `None` when the header was damaged.
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    pub fn version(&self) -> u16 {
        self.version
    }

    /// File size in bytes.
    pub fn file_len(&self) -> u64 {
        self.len
    }

    pub fn report(&self) -> &ReadReport {
        &self.report
    }

    /// Next event, or `None` at the end of the readable data. I/O errors
    /// while reading end the stream and are reported as a truncation.
    pub fn next_event(&mut self) -> Option<Event> {
        loop {
            if self.next < self.events.len() {
                let ev = self.events[self.next];
                self.next += 1;
                return Some(ev);
            }
            if self.done {
                return None;
            }
            self.advance();
        }
    }

    /// The next events in file order, a chunk at a time, into `buf` (cleared
    /// first; its allocation is reused by the next chunk). `false` at the end
    /// of the readable data. Mixes freely with [`TraceReader::next_event`].
    pub fn next_batch(&mut self, buf: &mut Vec<Event>) -> bool {
        buf.clear();
        loop {
            if self.next < self.events.len() {
                if self.next == 0 {
                    // Hand the decoded chunk over whole; decode the next into `buf`'s old allocation.
                    std::mem::swap(buf, &mut self.events);
                } else {
                    buf.extend_from_slice(&self.events[self.next..]);
                }
                self.events.clear();
                self.next = 0;
                return true;
            }
            if self.done {
                return false;
            }
            self.advance();
        }
    }

    /// Read the next chunk; an I/O error ends the stream and is reported.
    fn advance(&mut self) {
        if let Err(e) = self.read_chunk() {
            // The file shrank under us or the disk failed: report and stop.
            self.report.damage.push(Damage {
                offset: self.pos,
                len: self.len.saturating_sub(self.pos),
                kind: DamageKind::BadPayload {
                    seq: self.expect_seq,
                    what: format!("read error: {e}"),
                },
            });
            self.done = true;
        }
    }

    /// Read the next chunk into `self.events` (maybe none) or set `done`.
    fn read_chunk(&mut self) -> io::Result<()> {
        self.events.clear();
        self.next = 0;
        let pos = self.pos;
        if pos >= self.len {
            self.done = true;
            return Ok(());
        }
        let avail = self.len - pos;
        self.r.seek(SeekFrom::Start(pos))?;
        let mut h = [0u8; CHUNK_HEADER_LEN];
        let n = read_full(
            &mut self.r,
            &mut h[..usize::try_from(avail.min(CHUNK_HEADER_LEN as u64)).unwrap_or(0)],
        )?;
        let frame =
            (n == CHUNK_HEADER_LEN && &h[..4] == CHUNK_MAGIC).then(|| ChunkFrame::parse(&h));
        let Some(frame) = frame.filter(|f| f.stored <= MAX_PAYLOAD && f.raw <= MAX_PAYLOAD) else {
            if n < CHUNK_HEADER_LEN && CHUNK_MAGIC.starts_with(&h[..n.min(4)]) {
                return self.skip_to_next(
                    pos,
                    DamageKind::Truncated {
                        need: CHUNK_HEADER_LEN as u64,
                        have: avail,
                    },
                );
            }
            return self.skip_to_next(pos, DamageKind::Garbage);
        };
        let total = CHUNK_HEADER_LEN as u64 + u64::from(frame.stored);
        if total > avail {
            return self.skip_to_next(
                pos,
                DamageKind::Truncated {
                    need: total,
                    have: avail,
                },
            );
        }
        self.stored.resize(frame.stored as usize, 0);
        read_full(&mut self.r, &mut self.stored)?;
        let mut crc = crc32c::crc32c(&h[..24]);
        crc = crc32c::crc32c_append(crc, &self.stored);
        if crc != frame.crc {
            return self.skip_to_next(
                pos,
                DamageKind::BadCrc {
                    seq: frame.seq,
                    count: frame.count,
                },
            );
        }
        // A good chunk: whatever happens to its payload, the next one starts after it.
        self.pos = pos + total;
        self.report.bytes_read = self.pos;
        if frame.seq != self.expect_seq && frame.seq > self.expect_seq {
            self.note_missing(pos, frame.seq);
        }
        self.expect_seq = frame.seq.wrapping_add(1);
        if let Err(what) = self.decode_frame(&frame) {
            self.events.clear();
            self.report.damage.push(Damage {
                offset: pos,
                len: total,
                kind: DamageKind::BadPayload {
                    seq: frame.seq,
                    what,
                },
            });
            return Ok(());
        }
        Ok(())
    }

    /// Record a gap in chunk numbers unless damage already explains it.
    fn note_missing(&mut self, pos: u64, seq: u32) {
        let from = self.expect_seq;
        let explained = self.report.damage.last().is_some_and(|d| {
            d.offset + d.len == pos
                && matches!(d.kind, DamageKind::BadCrc { .. } | DamageKind::Garbage)
        });
        if !explained {
            self.report.damage.push(Damage {
                offset: pos,
                len: 0,
                kind: DamageKind::MissingChunks { from, to: seq - 1 },
            });
        }
    }

    fn decode_frame(&mut self, frame: &ChunkFrame) -> Result<(), String> {
        let payload: &[u8] = match frame.codec {
            CODEC_NONE => &self.stored,
            CODEC_ZSTD => {
                self.raw.clear();
                self.raw.reserve(frame.raw as usize);
                // One reused context, and output bounded by the capacity `raw`
                // (<= MAX_PAYLOAD) reserved: a lying frame cannot make us allocate more.
                if self.zstd.is_none() {
                    self.zstd =
                        Some(zstd::bulk::Decompressor::new().map_err(|e| format!("zstd: {e}"))?);
                }
                let dec = self.zstd.as_mut().expect("set above");
                let got = dec
                    .decompress_to_buffer(&self.stored[..], &mut self.raw)
                    .map_err(|e| format!("zstd: {e}"))?;
                if got != frame.raw as usize {
                    return Err(format!("payload is {got} bytes, frame says {}", frame.raw));
                }
                &self.raw
            }
            c => return Err(format!("unknown codec {c}")),
        };
        match frame.kind {
            CHUNK_EVENTS => {
                decode_events(payload, &mut self.events).map_err(|e| e.to_string())?;
                if self.events.len() != frame.count as usize {
                    return Err(format!(
                        "{} events, frame says {}",
                        self.events.len(),
                        frame.count
                    ));
                }
                self.report.chunks += 1;
                self.report.events += self.events.len() as u64;
            }
            CHUNK_STATS => {
                let s: StatsRecord =
                    serde_json::from_slice(payload).map_err(|e| format!("stats: {e}"))?;
                self.report.stats = Some(s);
            }
            CHUNK_FOOTER => {
                let f: Footer =
                    serde_json::from_slice(payload).map_err(|e| format!("footer: {e}"))?;
                self.report.footer = Some(f);
            }
            // A newer writer's optional chunk type: skip it silently (same major version).
            _ => {}
        }
        Ok(())
    }

    /// Skip damaged bytes from `pos` to the next chunk marker (or the end),
    /// merging with an adjacent damage entry of the same kind.
    fn skip_to_next(&mut self, pos: u64, kind: DamageKind) -> io::Result<()> {
        let next = self.scan_for_chunk(pos + 1)?;
        let end = next.unwrap_or(self.len);
        let kind = match kind {
            // A "cut" chunk followed by more chunks was really a damaged length.
            DamageKind::Truncated { .. } if next.is_some() => DamageKind::Garbage,
            k => k,
        };
        match self.report.damage.last_mut() {
            Some(d)
                if d.offset + d.len == pos
                    && d.kind == DamageKind::Garbage
                    && kind == DamageKind::Garbage =>
            {
                d.len = end - d.offset;
            }
            _ => self.report.damage.push(Damage {
                offset: pos,
                len: end - pos,
                kind,
            }),
        }
        self.pos = end;
        self.report.bytes_read = end;
        if next.is_none() {
            self.done = true;
        }
        Ok(())
    }

    /// Offset of the next `CHUNK_MAGIC` at or after `from`.
    fn scan_for_chunk(&mut self, from: u64) -> io::Result<Option<u64>> {
        if from >= self.len {
            return Ok(None);
        }
        self.r.seek(SeekFrom::Start(from))?;
        let mut buf = vec![0u8; 64 << 10];
        let mut base = from;
        let mut carry = 0usize;
        loop {
            let n = self.r.read(&mut buf[carry..])?;
            if n == 0 {
                return Ok(None);
            }
            let have = carry + n;
            if let Some(i) = buf[..have].windows(4).position(|w| w == CHUNK_MAGIC) {
                return Ok(Some(base + i as u64));
            }
            // Keep the last 3 bytes: a marker may straddle two reads.
            let keep = have.min(3);
            buf.copy_within(have - keep..have, 0);
            base += (have - keep) as u64;
            carry = keep;
        }
    }
}

impl<R: Read + Seek> Iterator for TraceReader<R> {
    type Item = Event;
    fn next(&mut self) -> Option<Event> {
        self.next_event()
    }
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A chunk's fixed header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChunkFrame {
    pub kind: u8,
    pub codec: u8,
    pub stored: u32,
    pub raw: u32,
    pub count: u32,
    pub seq: u32,
    pub crc: u32,
}

impl ChunkFrame {
    fn parse(h: &[u8; CHUNK_HEADER_LEN]) -> Self {
        let u = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        Self {
            kind: h[4],
            codec: h[5],
            stored: u(8),
            raw: u(12),
            count: u(16),
            seq: u(20),
            crc: u(24),
        }
    }

    /// The 28 header bytes, with the CRC over them (first 24) and the payload.
    pub fn encode(&self, payload: &[u8]) -> [u8; CHUNK_HEADER_LEN] {
        let mut h = [0u8; CHUNK_HEADER_LEN];
        h[..4].copy_from_slice(CHUNK_MAGIC);
        h[4] = self.kind;
        h[5] = self.codec;
        h[8..12].copy_from_slice(&self.stored.to_le_bytes());
        h[12..16].copy_from_slice(&self.raw.to_le_bytes());
        h[16..20].copy_from_slice(&self.count.to_le_bytes());
        h[20..24].copy_from_slice(&self.seq.to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&h[..24]), payload);
        h[24..28].copy_from_slice(&crc.to_le_bytes());
        h
    }
}

/// Open `path` as a trace file for `source::open_any`: yields its events;
/// when they end, prints what was skipped or is missing (one
/// `daxtrace: warning:` line each, on stderr: damage is never silent) and
/// shows a progress bar meanwhile when stderr is a terminal.
///
/// Reading, CRC checks, zstd and decoding run on a thread of their own, a
/// chunk or two ahead of the consumer: on two cores decompression overlaps
/// the detector. Chunks travel as `Vec<Event>` whose allocations go back to
/// the reader for reuse, so memory stays at a few chunks (~6 MB each).
pub fn open_events(path: &Path, name: String) -> Result<super::EventIter, super::SourceError> {
    let mut it = open_batches(path, name)?;
    Ok(Box::new(std::iter::from_fn(move || it.next_item().map(Ok))))
}

/// [`open_events`] a chunk at a time: [`ReadAhead::next_slice`] hands out
/// each decoded chunk as a slice, with no per-event call through an iterator
/// object.
pub fn open_batches(path: &Path, name: String) -> Result<ReadAhead<Event, ()>, super::SourceError> {
    let r = open_reader(path, &name)?;
    let bar = progress_bar(r.file_len(), &name);
    Ok(read_batches(r, name, bar))
}

/// [`open_batches`] for a full-screen program (`top`): no progress bar, and
/// what the file skipped is kept for [`ReadAhead::take_warnings`] instead of
/// printed (stderr is the screen).
pub fn open_batches_quiet(
    path: &Path,
    name: String,
) -> Result<ReadAhead<Event, ()>, super::SourceError> {
    let r = open_reader(path, &name)?;
    let mut ra = read_batches(r, name, indicatif::ProgressBar::hidden());
    ra.warnings = Some(Vec::new());
    Ok(ra)
}

fn read_batches(
    r: TraceReader<BufReader<File>>,
    name: String,
    bar: indicatif::ProgressBar,
) -> ReadAhead<Event, ()> {
    ReadAhead::start(name, "daxtrace-read", bar, move |tx, back| {
        let mut r = r;
        loop {
            let mut buf = back.try_recv().unwrap_or_default();
            if !r.next_batch(&mut buf) {
                break;
            }
            // The consumer stopped early (error in the pipeline, user quit): so do we.
            if tx.send((buf, r.report().bytes_read)).is_err() {
                break;
            }
        }
        (Some(r.report), ())
    })
}

/// [`open_batches`] with the pipeline's arrival side (its reorder window,
/// [`Arrivals`]) run on a thread of its own after the decoding one: the
/// slices hold what the window released, for
/// [`crate::pipeline::Pipeline::apply_released`], and the arrival side comes
/// back from [`ReadAhead::into_state`] at the end of the file. What `analyze`
/// uses on trace files: decoding, ordering and the rules are three stages of
/// about equal cost, so two cores run them at about twice the speed of one,
/// with the same results as `Pipeline::push`.
#[allow(
    clippy::result_large_err,
    reason = "the error hands the caller's window back; it is moved once, on a failed open"
)]
pub fn open_ordered(
    path: &Path,
    name: String,
    arrivals: Arrivals,
) -> Result<ReadAhead<Released, Arrivals>, (super::SourceError, Arrivals)> {
    let mut decoded = match open_batches(path, name.clone()) {
        Ok(d) => d,
        Err(e) => return Err((e, arrivals)),
    };
    // The decoding stage draws the progress bar and prints the file's warnings.
    Ok(ReadAhead::start(
        name,
        "daxtrace-order",
        indicatif::ProgressBar::hidden(),
        move |tx, back| {
            let mut arrivals = arrivals;
            while let Some(evs) = decoded.next_slice() {
                let mut out = back.try_recv().unwrap_or_default();
                out.clear();
                for &ev in evs {
                    arrivals.push(ev, &mut out);
                }
                if tx.send((out, 0)).is_err() {
                    break;
                }
            }
            (None, arrivals)
        },
    ))
}

fn open_reader(
    path: &Path,
    name: &str,
) -> Result<TraceReader<BufReader<File>>, super::SourceError> {
    TraceReader::open(path).map_err(|e| match e {
        TraceError::Io(error) => super::SourceError::Io {
            input: name.to_owned(),
            error,
        },
        e => super::SourceError::Format {
            input: name.to_owned(),
            what: e.to_string(),
        },
    })
}

/// Drawn only when stderr is a terminal (indicatif hides itself otherwise).
fn progress_bar(len: u64, name: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(format!("reading {name}"));
    bar
}

/// Batches made on a thread of their own, a couple ahead of the consumer
/// (see [`open_events`]): items of type `T` a chunk at a time, their buffers
/// sent back for reuse; the thread's state `S` comes back at the end.
pub struct ReadAhead<T, S> {
    rx: std::sync::mpsc::Receiver<(Vec<T>, u64)>,
    back: std::sync::mpsc::Sender<Vec<T>>,
    cur: Vec<T>,
    i: usize,
    /// Returns the file's read report (if this stage read the file) and the state.
    worker: Option<std::thread::JoinHandle<(Option<ReadReport>, S)>>,
    state: Option<S>,
    name: String,
    bar: indicatif::ProgressBar,
    /// `Some`: the file's warnings are kept here (quiet), not printed.
    warnings: Option<Vec<String>>,
}

type Batch<T> = (Vec<T>, u64);

impl<T: Copy + Send + 'static, S: Send + 'static> ReadAhead<T, S> {
    /// Run `body` on a new thread: it sends batches (and the bytes read so
    /// far, for the bar) until done or the consumer is gone.
    fn start(
        name: String,
        thread: &str,
        bar: indicatif::ProgressBar,
        body: impl FnOnce(
                std::sync::mpsc::SyncSender<Batch<T>>,
                std::sync::mpsc::Receiver<Vec<T>>,
            ) -> (Option<ReadReport>, S)
            + Send
            + 'static,
    ) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch<T>>(2);
        let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<T>>();
        let worker = std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || body(tx, back_rx))
            .expect("spawning a trace reader thread");
        Self {
            rx,
            back: back_tx,
            cur: Vec::new(),
            i: 0,
            worker: Some(worker),
            state: None,
            name,
            bar,
            warnings: None,
        }
    }

    /// What the file skipped or is missing (quiet readers, [`open_batches_quiet`]),
    /// once `next_slice` or `next_item` returned `None`.
    pub fn take_warnings(&mut self) -> Vec<String> {
        self.warnings
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    #[inline]
    pub fn next_item(&mut self) -> Option<T> {
        if let Some(&x) = self.cur.get(self.i) {
            self.i += 1;
            return Some(x);
        }
        self.next_chunk()?;
        self.i = 1;
        self.cur.first().copied()
    }

    /// The next items not yet handed out, in file order (a chunk, or the
    /// rest of one); `None` at the end, after printing what the file skipped.
    pub fn next_slice(&mut self) -> Option<&[T]> {
        if self.i >= self.cur.len() {
            self.next_chunk()?;
        }
        let from = self.i;
        self.i = self.cur.len();
        Some(&self.cur[from..])
    }

    /// The thread's state, once `next_slice` or `next_item` returned `None`.
    pub fn into_state(mut self) -> Option<S> {
        self.state.take()
    }

    /// Swap in the next non-empty chunk (`i` = 0), or end the file.
    #[cold]
    fn next_chunk(&mut self) -> Option<()> {
        loop {
            let used = std::mem::take(&mut self.cur);
            if used.capacity() > 0 {
                // The reader may be gone already; then the buffer is simply freed.
                let _ = self.back.send(used);
            }
            match self.rx.recv() {
                Ok((batch, pos)) => {
                    self.bar.set_position(pos);
                    self.cur = batch;
                    self.i = 0;
                    if !self.cur.is_empty() {
                        return Some(());
                    }
                }
                Err(_) => {
                    let worker = self.worker.take()?;
                    let (report, state) = match worker.join() {
                        Ok(x) => x,
                        Err(panic) => std::panic::resume_unwind(panic),
                    };
                    self.state = Some(state);
                    self.bar.finish_and_clear();
                    for w in report.iter().flat_map(ReadReport::warnings) {
                        match &mut self.warnings {
                            Some(kept) => kept.push(w),
                            None => eprintln!("daxtrace: warning: {}: {w}", self.name),
                        }
                    }
                    return None;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Event chunk codec (columnar, see docs/trace-format.md "Event chunks").

/// Column order inside an event chunk.
pub(crate) const COLUMNS: usize = 10;
pub(crate) const COL_KIND: usize = 0;
pub(crate) const COL_TS: usize = 1;
pub(crate) const COL_CPU: usize = 2;
pub(crate) const COL_TASK: usize = 3;
pub(crate) const COL_FILE: usize = 4;
pub(crate) const COL_PROBE: usize = 5;
pub(crate) const COL_FAULT: usize = 6;
pub(crate) const COL_PGOFF: usize = 7;
pub(crate) const COL_NPAGES: usize = 8;
pub(crate) const COL_COUNT: usize = 9;

/// Kind codes (top 3 bits of the kind byte), = `Body::kind_index`.
pub(crate) mod kind {
    pub const FAULT_BEGIN: u8 = 0;
    pub const MAP_BLOCKS: u8 = 1;
    pub const LOAD_HOLE: u8 = 2;
    pub const INSERT_MAPPING: u8 = 3;
    pub const FAULT_END: u8 = 4;
    pub const INVALIDATE: u8 = 5;
    pub const LOST: u8 = 6;
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("column data ends early")]
    Short,
    #[error("varint longer than 10 bytes")]
    LongVarint,
    #[error("bad {0} value {1}")]
    Bad(&'static str, u64),
    #[error("{0} bytes left over in a column")]
    Trailing(usize),
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    // LEB128: 7 bits per byte, high bit = more.
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A cursor over one column.
struct Col<'a> {
    b: &'a [u8],
}

impl<'a> Col<'a> {
    fn varint(&mut self) -> Result<u64, CodecError> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&byte, rest) = self.b.split_first().ok_or(CodecError::Short)?;
            self.b = rest;
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CodecError::LongVarint)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        let v = self.varint()?;
        u32::try_from(v).map_err(|_| CodecError::Bad(what, v))
    }

    fn byte(&mut self) -> Result<u8, CodecError> {
        let (&b, rest) = self.b.split_first().ok_or(CodecError::Short)?;
        self.b = rest;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.b.len() < n {
            return Err(CodecError::Short);
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(a)
    }

    fn end(&self) -> Result<(), CodecError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(CodecError::Trailing(self.b.len()))
        }
    }
}

pub(crate) const FAULT_RESULTS: [FaultResult; 8] = [
    FaultResult::Nopage,
    FaultResult::Fallback,
    FaultResult::Sigbus,
    FaultResult::Retry,
    FaultResult::Oom,
    FaultResult::Sigsegv,
    FaultResult::Error,
    FaultResult::Other,
];
pub(crate) const REASONS: [InvalidateReason; 5] = [
    InvalidateReason::Truncate,
    InvalidateReason::PunchHole,
    InvalidateReason::CollapseRange,
    InvalidateReason::ZeroRange,
    InvalidateReason::Write,
];
pub(crate) const RESULTS: [MapResult; 3] =
    [MapResult::Hole, MapResult::Mapped, MapResult::Unwritten];

fn size_of_bit(b: u8) -> Size {
    if b & 1 == 0 {
        Size::Pte
    } else {
        Size::Pmd
    }
}

/// Decode one event chunk's raw payload into `out` (appended).
pub fn decode_events(p: &[u8], out: &mut Vec<Event>) -> Result<(), CodecError> {
    let mut top = Col { b: p };
    let n = top.varint()?;
    let base_ts = top.varint()?;
    // Task table: tid, pid, comm (16 bytes).
    let ntasks = top.varint()?;
    if ntasks > p.len() as u64 {
        return Err(CodecError::Bad("task count", ntasks));
    }
    let mut tasks = Vec::with_capacity(ntasks as usize);
    for _ in 0..ntasks {
        let tid = top.u32("tid")?;
        let pid = top.u32("pid")?;
        let comm: [u8; 16] = top.bytes(16)?.try_into().expect("16 bytes");
        tasks.push((tid, pid, Comm(comm)));
    }
    let nfiles = top.varint()?;
    if nfiles > p.len() as u64 {
        return Err(CodecError::Bad("file count", nfiles));
    }
    let mut files = Vec::with_capacity(nfiles as usize);
    for _ in 0..nfiles {
        let major = top.u32("major")?;
        let minor = top.u32("minor")?;
        let ino = top.varint()?;
        files.push((Dev::new(major, minor), ino));
    }
    let mut cols: [Col<'_>; COLUMNS] = std::array::from_fn(|_| Col { b: &[] });
    for c in &mut cols {
        let len = top.varint()?;
        let len = usize::try_from(len).map_err(|_| CodecError::Bad("column length", len))?;
        c.b = top.bytes(len)?;
    }
    top.end()?;
    // Every event has one kind byte: n cannot exceed that column.
    if n > cols[COL_KIND].b.len() as u64 {
        return Err(CodecError::Bad("event count", n));
    }
    out.reserve(n as usize);
    let (mut ts, mut fault, mut pgoff) = (base_ts, 0u64, 0u64);
    for _ in 0..n {
        let kb = cols[COL_KIND].byte()?;
        let (k, fl) = (kb >> 5, kb & 0x1f);
        ts = ts.wrapping_add(unzigzag(cols[COL_TS].varint()?) as u64);
        let cpu = cols[COL_CPU].u32("cpu")?;
        let ti = cols[COL_TASK].varint()?;
        let &(tid, pid, comm) = tasks
            .get(usize::try_from(ti).unwrap_or(usize::MAX))
            .ok_or(CodecError::Bad("task index", ti))?;
        let fi = cols[COL_FILE].varint()?;
        let &(dev, ino) = files
            .get(usize::try_from(fi).unwrap_or(usize::MAX))
            .ok_or(CodecError::Bad("file index", fi))?;
        let pr = cols[COL_PROBE].varint()?;
        let probe = u16::try_from(pr).map_err(|_| CodecError::Bad("probe", pr))?;
        let mut next_fault = |cols: &mut [Col<'_>; COLUMNS]| -> Result<u64, CodecError> {
            fault = fault.wrapping_add(unzigzag(cols[COL_FAULT].varint()?) as u64);
            Ok(fault)
        };
        let mut next_pgoff = |cols: &mut [Col<'_>; COLUMNS]| -> Result<u64, CodecError> {
            pgoff = pgoff.wrapping_add(unzigzag(cols[COL_PGOFF].varint()?) as u64);
            Ok(pgoff)
        };
        let bad_flags = |mask: u8| {
            if fl & !mask != 0 {
                Err(CodecError::Bad("flags", u64::from(kb)))
            } else {
                Ok(())
            }
        };
        let body = match k {
            kind::FAULT_BEGIN => {
                bad_flags(0b11)?;
                Body::FaultBegin {
                    fault: next_fault(&mut cols)?,
                    pgoff: next_pgoff(&mut cols)?,
                    size: size_of_bit(fl),
                    write: fl & 2 != 0,
                }
            }
            kind::MAP_BLOCKS => {
                bad_flags(0b1_1111)?;
                let result = *RESULTS
                    .get(usize::from(fl & 3))
                    .ok_or(CodecError::Bad("map result", u64::from(fl & 3)))?;
                let f = if fl & 16 != 0 {
                    Some(next_fault(&mut cols)?)
                } else {
                    None
                };
                Body::MapBlocks {
                    fault: f,
                    pgoff: next_pgoff(&mut cols)?,
                    npages: cols[COL_NPAGES].varint()?,
                    result,
                    new: fl & 4 != 0,
                    write: fl & 8 != 0,
                }
            }
            kind::LOAD_HOLE => {
                bad_flags(1)?;
                Body::LoadHole {
                    fault: next_fault(&mut cols)?,
                    pgoff: next_pgoff(&mut cols)?,
                    size: size_of_bit(fl),
                }
            }
            kind::INSERT_MAPPING => {
                bad_flags(0b11)?;
                Body::InsertMapping {
                    fault: next_fault(&mut cols)?,
                    pgoff: next_pgoff(&mut cols)?,
                    size: size_of_bit(fl),
                    inferred: fl & 2 != 0,
                }
            }
            kind::FAULT_END => {
                let result = *FAULT_RESULTS
                    .get(usize::from(fl))
                    .ok_or(CodecError::Bad("fault result", u64::from(fl)))?;
                Body::FaultEnd {
                    fault: next_fault(&mut cols)?,
                    result,
                }
            }
            kind::INVALIDATE => {
                let reason = *REASONS
                    .get(usize::from(fl))
                    .ok_or(CodecError::Bad("invalidate reason", u64::from(fl)))?;
                Body::Invalidate {
                    pgoff: next_pgoff(&mut cols)?,
                    npages: cols[COL_NPAGES].varint()?,
                    reason,
                }
            }
            kind::LOST => {
                bad_flags(0)?;
                Body::Lost {
                    count: cols[COL_COUNT].varint()?,
                }
            }
            _ => return Err(CodecError::Bad("kind", u64::from(k))),
        };
        out.push(Event {
            ts,
            cpu,
            tid,
            pid,
            comm,
            dev,
            ino,
            probe,
            body,
        });
    }
    for c in &cols {
        c.end()?;
    }
    Ok(())
}

/// A synthetic workload shaped like the lab's racing run (readers and writers
/// faulting a punched file on several CPUs), for benchmarks, the 10^8-event
/// analyze measurement and format tests. Deterministic per seed.
pub mod synth {
    use crate::event::{Body, Comm, Dev, Event, FaultResult, InvalidateReason, MapResult, Size};
    use tracer_common::Probe;

    /// xorshift64*: enough randomness for a workload shape, no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Endless events: each step is one fault (4 or 5 events) or, now and
    /// then, an allocating write(2) or a hole punch.
    pub struct Workload {
        rng: Rng,
        ts: u64,
        fault: u64,
        pending: [Option<Event>; 5],
        i: usize,
        comms: [Comm; 4],
    }

    impl Workload {
        pub fn new(seed: u64) -> Self {
            Self {
                rng: Rng(seed | 1),
                ts: 1_000_000_000,
                fault: 0,
                pending: [None; 5],
                i: 5,
                comms: [
                    Comm::new("reader"),
                    Comm::new("writer"),
                    Comm::new("punch"),
                    Comm::new("pwrite"),
                ],
            }
        }

        fn step(&mut self) {
            let r = &mut self.rng;
            let task = r.below(8) as u32;
            let tid = 4000 + task;
            let cpu = task % 2;
            let ino = 12 + r.below(2);
            let pgoff = r.below(256) + 256 * r.below(4);
            let writer = task >= 4;
            let comm = self.comms[usize::from(writer)];
            let base = Event {
                ts: 0,
                cpu,
                tid,
                pid: tid,
                comm,
                dev: Dev::new(259, 0),
                ino,
                probe: 0,
                body: Body::Lost { count: 0 },
            };
            let mut t = self.ts;
            let mut at = |gap: u64, probe: Probe, body: Body| {
                t += gap;
                Some(Event {
                    ts: t,
                    probe: probe as u16,
                    body,
                    ..base
                })
            };
            self.pending = [None; 5];
            let roll = r.below(100);
            if roll < 3 {
                let n = 1 + r.below(16);
                let comm = self.comms[2 + usize::from(roll == 0)];
                let body = if roll == 0 {
                    Body::MapBlocks {
                        fault: None,
                        pgoff,
                        npages: n,
                        result: MapResult::Mapped,
                        new: true,
                        write: true,
                    }
                } else {
                    Body::Invalidate {
                        pgoff,
                        npages: n,
                        reason: InvalidateReason::PunchHole,
                    }
                };
                let probe = if roll == 0 {
                    Probe::IomapIterDstmap
                } else {
                    Probe::Ext4PunchHole
                };
                self.pending[0] = at(200 + r.below(2000), probe, body).map(|e| Event { comm, ..e });
            } else {
                self.fault += 1;
                let fault = self.fault;
                let pmd = r.below(200) == 0;
                let size = if pmd { Size::Pmd } else { Size::Pte };
                let (pb, pd) = if pmd {
                    (Probe::DaxPmdFault, Probe::DaxPmdFaultDone)
                } else {
                    (Probe::DaxPteFault, Probe::DaxPteFaultDone)
                };
                let hole = !writer && r.below(3) != 0;
                let new = writer && r.below(4) == 0;
                let result = if hole {
                    MapResult::Hole
                } else {
                    MapResult::Mapped
                };
                self.pending[0] = at(
                    300 + r.below(3000),
                    pb,
                    Body::FaultBegin {
                        fault,
                        pgoff,
                        size,
                        write: writer,
                    },
                );
                self.pending[1] = at(
                    400 + r.below(800),
                    Probe::IomapIterDstmap,
                    Body::MapBlocks {
                        fault: Some(fault),
                        pgoff,
                        npages: 1,
                        result,
                        new,
                        write: writer,
                    },
                );
                self.pending[2] = if hole {
                    at(
                        300 + r.below(500),
                        Probe::DaxLoadHole,
                        Body::LoadHole { fault, pgoff, size },
                    )
                } else {
                    at(
                        300 + r.below(500),
                        Probe::DaxPteFaultDone,
                        Body::InsertMapping {
                            fault,
                            pgoff,
                            size,
                            inferred: true,
                        },
                    )
                };
                let fr = if r.below(100) == 0 {
                    FaultResult::Fallback
                } else {
                    FaultResult::Nopage
                };
                self.pending[3] = at(100 + r.below(200), pd, Body::FaultEnd { fault, result: fr });
            }
            // Keep time moving by the first event only, so consecutive steps
            // interleave a little like several CPUs do.
            self.ts = self.pending[0].map_or(self.ts, |e| e.ts);
            self.i = 0;
        }
    }

    impl Iterator for Workload {
        type Item = Event;
        fn next(&mut self) -> Option<Event> {
            loop {
                while self.i < self.pending.len() {
                    let e = self.pending[self.i];
                    self.i += 1;
                    if e.is_some() {
                        return e;
                    }
                }
                self.step();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_of_every_length_read_back_after_one_another() {
        // Every LEB128 length (1..=10 bytes) at its edges, written into one
        // column (so a wrong length would shift every later value).
        let mut vals = vec![0u64, 1, u64::MAX];
        for bits in (7..64).step_by(7) {
            vals.extend([(1u64 << bits) - 1, 1u64 << bits, (1u64 << bits) + 1]);
        }
        let mut out = Vec::new();
        for &v in &vals {
            put_varint(&mut out, v);
        }
        let mut c = Col { b: &out };
        for &v in &vals {
            assert_eq!(c.varint().unwrap(), v);
        }
        assert!(c.b.is_empty());
        // LEB128 lengths exactly: 7 bits per byte.
        let len = |v: u64| {
            let mut o = Vec::new();
            put_varint(&mut o, v);
            o.len()
        };
        assert_eq!(
            [len(127), len(128), len(u64::MAX), len(1 << 63)],
            [1, 2, 10, 10]
        );
    }
}
