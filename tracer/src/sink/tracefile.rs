//! Trace file writer (format: `docs/trace-format.md`, reader: `source::tracefile`).
//!
//! Events are appended to per-chunk columns; a chunk is compressed with zstd,
//! framed with its length and CRC32C, and handed to the kernel at once, so a
//! writer killed at any moment leaves every earlier chunk readable.
//! `write_event` does no allocation once the column buffers have grown.

use hashbrown::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::detect::Finding;
use crate::event::{Body, Dev, Event, MapResult, Size};
use crate::pipeline::Sink;
use crate::source::tracefile::{
    kind, put_varint, zigzag, ChunkFrame, Footer, Header, StatsRecord, CHUNK_EVENTS, CHUNK_FOOTER,
    CHUNK_STATS, CODEC_NONE, CODEC_ZSTD, COLUMNS, COL_COUNT, COL_CPU, COL_FAULT, COL_FILE,
    COL_KIND, COL_NPAGES, COL_PGOFF, COL_PROBE, COL_TASK, COL_TS, FAULT_RESULTS, MAGIC, REASONS,
    VERSION,
};

#[derive(Clone, Copy, Debug)]
pub struct WriterOptions {
    /// Events per chunk (a chunk is also cut by `flush_chunk`).
    pub chunk_events: usize,
    /// zstd level (3: fast; 19: smallest).
    pub zstd_level: i32,
}

impl Default for WriterOptions {
    fn default() -> Self {
        // 64 Ki events: big enough for zstd to find the columns' repetition,
        // small enough that a killed recorder loses little.
        Self {
            chunk_events: 1 << 16,
            zstd_level: 3,
        }
    }
}

/// Create `path` for writing a trace: mode 0600 (traces name files and
/// tasks), truncating any old file.
pub fn create_private(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // `mode` applies only to new files: tighten an existing one too, if it
    // is a regular file. A device or FIFO keeps its mode: `-o /dev/null`
    // run as root must not make /dev/null private.
    if f.metadata()?.is_file() {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}

/// A chunk dictionary: each distinct key gets the next id, in order of
/// first use. hashbrown's fast hash (std's SipHash was a third of the
/// writer's time, and `record` runs beside the traced work); the last key
/// is checked first, so a run of one task's events on one file skips the
/// lookup.
struct Dict<K> {
    index: HashMap<K, u32>,
    list: Vec<K>,
    last: Option<(K, u32)>,
}

impl<K> Default for Dict<K> {
    fn default() -> Self {
        Self {
            index: HashMap::new(),
            list: Vec::new(),
            last: None,
        }
    }
}

impl<K: Copy + Eq + std::hash::Hash> Dict<K> {
    #[inline]
    fn id(&mut self, k: K) -> u32 {
        if let Some((l, i)) = self.last {
            if l == k {
                return i;
            }
        }
        let next = self.list.len() as u32;
        let list = &mut self.list;
        let i = *self.index.entry(k).or_insert_with(|| {
            list.push(k);
            next
        });
        self.last = Some((k, i));
        i
    }

    fn clear(&mut self) {
        self.index.clear();
        self.list.clear();
        self.last = None;
    }
}

/// The columns of the chunk being built.
#[derive(Default)]
struct ChunkBuilder {
    n: u32,
    base_ts: u64,
    prev_ts: u64,
    prev_fault: u64,
    prev_pgoff: u64,
    tasks: Dict<(u32, u32, [u8; 16])>,
    files: Dict<(Dev, u64)>,
    cols: [Vec<u8>; COLUMNS],
}

impl ChunkBuilder {
    fn clear(&mut self) {
        self.n = 0;
        self.prev_fault = 0;
        self.prev_pgoff = 0;
        self.tasks.clear();
        self.files.clear();
        for c in &mut self.cols {
            c.clear();
        }
    }

    fn push(&mut self, ev: &Event) {
        if self.n == 0 {
            self.base_ts = ev.ts;
            self.prev_ts = ev.ts;
        }
        self.n += 1;
        let ti = self.tasks.id((ev.tid, ev.pid, ev.comm.0));
        let fi = self.files.id((ev.dev, ev.ino));
        let c = &mut self.cols;
        // Signed deltas: events may arrive slightly out of order.
        put_varint(
            &mut c[COL_TS],
            zigzag(ev.ts.wrapping_sub(self.prev_ts) as i64),
        );
        self.prev_ts = ev.ts;
        put_varint(&mut c[COL_CPU], u64::from(ev.cpu));
        put_varint(&mut c[COL_TASK], u64::from(ti));
        put_varint(&mut c[COL_FILE], u64::from(fi));
        put_varint(&mut c[COL_PROBE], u64::from(ev.probe));
        let pmd = |s: Size| u8::from(s == Size::Pmd);
        let (k, flags, fault, pgoff) = match ev.body {
            Body::FaultBegin {
                fault,
                pgoff,
                size,
                write,
            } => (
                kind::FAULT_BEGIN,
                pmd(size) | u8::from(write) << 1,
                Some(fault),
                Some(pgoff),
            ),
            Body::MapBlocks {
                fault,
                pgoff,
                npages,
                result,
                new,
                write,
            } => {
                put_varint(&mut c[COL_NPAGES], npages);
                let r = match result {
                    MapResult::Hole => 0,
                    MapResult::Mapped => 1,
                    MapResult::Unwritten => 2,
                };
                let fl =
                    r | u8::from(new) << 2 | u8::from(write) << 3 | u8::from(fault.is_some()) << 4;
                (kind::MAP_BLOCKS, fl, fault, Some(pgoff))
            }
            Body::LoadHole { fault, pgoff, size } => {
                (kind::LOAD_HOLE, pmd(size), Some(fault), Some(pgoff))
            }
            Body::InsertMapping {
                fault,
                pgoff,
                size,
                inferred,
            } => (
                kind::INSERT_MAPPING,
                pmd(size) | u8::from(inferred) << 1,
                Some(fault),
                Some(pgoff),
            ),
            Body::FaultEnd { fault, result } => {
                let r = FAULT_RESULTS
                    .iter()
                    .position(|x| *x == result)
                    .unwrap_or(FAULT_RESULTS.len() - 1);
                (kind::FAULT_END, r as u8, Some(fault), None)
            }
            Body::Invalidate {
                pgoff,
                npages,
                reason,
            } => {
                put_varint(&mut c[COL_NPAGES], npages);
                let r = REASONS.iter().position(|x| *x == reason).unwrap_or(0);
                (kind::INVALIDATE, r as u8, None, Some(pgoff))
            }
            Body::Lost { count } => {
                put_varint(&mut c[COL_COUNT], count);
                (kind::LOST, 0, None, None)
            }
        };
        c[COL_KIND].push(k << 5 | flags);
        if let Some(f) = fault {
            put_varint(
                &mut c[COL_FAULT],
                zigzag(f.wrapping_sub(self.prev_fault) as i64),
            );
            self.prev_fault = f;
        }
        if let Some(p) = pgoff {
            put_varint(
                &mut c[COL_PGOFF],
                zigzag(p.wrapping_sub(self.prev_pgoff) as i64),
            );
            self.prev_pgoff = p;
        }
    }

    /// The raw (uncompressed) payload.
    fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        put_varint(out, u64::from(self.n));
        put_varint(out, self.base_ts);
        put_varint(out, self.tasks.list.len() as u64);
        for &(tid, pid, comm) in &self.tasks.list {
            put_varint(out, u64::from(tid));
            put_varint(out, u64::from(pid));
            out.extend_from_slice(&comm);
        }
        put_varint(out, self.files.list.len() as u64);
        for &(dev, ino) in &self.files.list {
            put_varint(out, u64::from(dev.major));
            put_varint(out, u64::from(dev.minor));
            put_varint(out, ino);
        }
        for c in &self.cols {
            put_varint(out, c.len() as u64);
            out.extend_from_slice(c);
        }
    }
}

/// Writes a trace file. Call [`TraceWriter::finish`] to write the footer;
/// dropping the writer without it leaves a readable file without a footer.
pub struct TraceWriter<W: Write> {
    out: W,
    opts: WriterOptions,
    chunk: ChunkBuilder,
    raw: Vec<u8>,
    compressor: zstd::bulk::Compressor<'static>,
    zbuf: Vec<u8>,
    seq: u32,
    bytes: u64,
    totals: Footer,
    /// First write error; later writes are skipped and `finish` returns it.
    error: Option<io::Error>,
}

impl TraceWriter<File> {
    /// Create `path` (mode 0600) and write the header.
    pub fn create(path: &Path, header: &Header, opts: WriterOptions) -> io::Result<Self> {
        Self::new(create_private(path)?, header, opts)
    }

    /// Ask the kernel to put what was written on disk (survives power loss, not only a kill).
    pub fn sync(&mut self) -> io::Result<()> {
        self.out.sync_data()
    }
}

impl<W: Write> TraceWriter<W> {
    pub fn new(mut out: W, header: &Header, opts: WriterOptions) -> io::Result<Self> {
        let json = serde_json::to_vec(header).map_err(io::Error::other)?;
        let mut h = Vec::with_capacity(20 + json.len());
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&VERSION.to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(&(json.len() as u32).to_le_bytes());
        h.extend_from_slice(&crc32c::crc32c(&json).to_le_bytes());
        h.extend_from_slice(&json);
        out.write_all(&h)?;
        out.flush()?;
        let compressor = zstd::bulk::Compressor::new(opts.zstd_level)?;
        Ok(Self {
            out,
            opts: WriterOptions {
                chunk_events: opts.chunk_events.clamp(1, 1 << 20),
                ..opts
            },
            chunk: ChunkBuilder::default(),
            raw: Vec::new(),
            compressor,
            zbuf: Vec::new(),
            seq: 0,
            bytes: h.len() as u64,
            totals: Footer::default(),
            error: None,
        })
    }

    /// Append one event; writes a chunk when it is full.
    pub fn write_event(&mut self, ev: &Event) {
        if self.totals.events == 0 {
            self.totals.first_ts = ev.ts;
        }
        self.totals.events += 1;
        self.totals.by_kind[ev.body.kind_index()] += 1;
        self.totals.first_ts = self.totals.first_ts.min(ev.ts);
        self.totals.last_ts = self.totals.last_ts.max(ev.ts);
        if let Body::Lost { count } = ev.body {
            self.totals.lost = self.totals.lost.saturating_add(count);
        }
        self.chunk.push(ev);
        if self.chunk.n as usize >= self.opts.chunk_events {
            self.flush_chunk();
        }
    }

    /// Write the events buffered so far as a chunk (no-op when none).
    pub fn flush_chunk(&mut self) {
        if self.chunk.n == 0 || self.error.is_some() {
            self.chunk.clear();
            return;
        }
        self.chunk.encode(&mut self.raw);
        let count = self.chunk.n;
        self.chunk.clear();
        let res = (|| {
            self.zbuf.clear();
            self.zbuf
                .reserve(zstd::zstd_safe::compress_bound(self.raw.len()));
            self.compressor
                .compress_to_buffer(&self.raw, &mut self.zbuf)?;
            let frame = ChunkFrame {
                kind: CHUNK_EVENTS,
                codec: CODEC_ZSTD,
                stored: self.zbuf.len() as u32,
                raw: self.raw.len() as u32,
                count,
                seq: self.seq,
                crc: 0,
            };
            write_chunk(&mut self.out, &frame, &self.zbuf)
        })();
        self.after_chunk(res);
    }

    /// Write a stats record (counts so far). Flushes the current chunk first
    /// so the record follows the events it counts.
    pub fn write_stats(&mut self, late: u64, queue_dropped: u64) {
        self.flush_chunk();
        self.totals.late = late;
        self.totals.queue_dropped = queue_dropped;
        let s = StatsRecord {
            ts: self.totals.last_ts,
            events: self.totals.events,
            lost: self.totals.lost,
            queue_dropped,
            late,
        };
        self.write_json_chunk(CHUNK_STATS, &s);
    }

    fn write_json_chunk<T: serde::Serialize>(&mut self, kind: u8, v: &T) {
        if self.error.is_some() {
            return;
        }
        let res = serde_json::to_vec(v)
            .map_err(io::Error::other)
            .and_then(|json| {
                let frame = ChunkFrame {
                    kind,
                    codec: CODEC_NONE,
                    stored: json.len() as u32,
                    raw: json.len() as u32,
                    count: 0,
                    seq: self.seq,
                    crc: 0,
                };
                write_chunk(&mut self.out, &frame, &json)
            });
        self.after_chunk(res);
    }

    fn after_chunk(&mut self, res: io::Result<u64>) {
        match res {
            Ok(n) => {
                self.bytes += n;
                self.seq += 1;
                self.totals.chunks += 1;
            }
            Err(e) => self.error = Some(e),
        }
    }

    /// Bytes written to the file so far (chunks not yet flushed excluded).
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Events accepted so far.
    pub fn events(&self) -> u64 {
        self.totals.events
    }

    pub fn error(&self) -> Option<&io::Error> {
        self.error.as_ref()
    }

    /// Flush, write the footer and return the totals (or the first write error).
    pub fn finish(
        mut self,
        late: u64,
        queue_dropped: u64,
        stop_reason: &str,
    ) -> io::Result<(Footer, W)> {
        self.flush_chunk();
        self.totals.late = late;
        self.totals.queue_dropped = queue_dropped;
        self.totals.stop_reason = stop_reason.to_owned();
        self.totals.end_unix_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        // The footer counts itself among the chunks.
        self.totals.chunks += 1;
        let totals = self.totals.clone();
        self.totals.chunks -= 1;
        self.write_json_chunk(CHUNK_FOOTER, &totals);
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()?;
        Ok((totals, self.out))
    }
}

/// Frame and write one chunk, then flush it to the kernel: a recorder
/// killed after this returns leaves the chunk readable.
fn write_chunk<W: Write>(out: &mut W, frame: &ChunkFrame, payload: &[u8]) -> io::Result<u64> {
    let h = frame.encode(payload);
    out.write_all(&h)?;
    out.write_all(payload)?;
    out.flush()?;
    Ok((h.len() + payload.len()) as u64)
}

/// The writer as a pipeline sink: released and late events are both kept
/// (a trace file holds everything that arrived).
impl<W: Write> Sink for TraceWriter<W> {
    fn on_event(&mut self, ev: &Event) {
        self.write_event(ev);
    }
    fn on_late(&mut self, ev: &Event) {
        self.write_event(ev);
    }
    fn on_finding(&mut self, _f: &Finding) {}
}
