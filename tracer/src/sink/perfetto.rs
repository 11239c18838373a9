//! Perfetto export: a protobuf `Trace` that opens in the Perfetto UI.
//!
//! Layout: one process track per pid and a thread track per task; each fault
//! is a slice on its task's track (fault_begin .. fault_end); lookups,
//! allocations, hole loads, inserts and invalidations are instants there.
//! Pages of interest (those named in findings, then pages that saw both a
//! hole load and an allocation) get their own track under a "pages" track,
//! with every event that touched them; findings are instants on their page's
//! track and on a top-level "findings" track.
//!
//! The output is streamed: each `TracePacket` is written as field 1 of
//! `Trace` (tag 0x0a, length, bytes), which is exactly a serialised `Trace`.
//! Timestamps are CLOCK_MONOTONIC (`timestamp_clock_id` 3), as recorded.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Write};

use perfetto_protos::debug_annotation::DebugAnnotation;
use perfetto_protos::process_descriptor::ProcessDescriptor;
use perfetto_protos::thread_descriptor::ThreadDescriptor;
use perfetto_protos::trace_packet::TracePacket;
use perfetto_protos::track_descriptor::TrackDescriptor;
use perfetto_protos::track_event::{track_event::Type, TrackEvent};
use protobuf::Message;

use crate::detect::Finding;
use crate::event::{Body, Event, PageKey, Size};
use crate::pipeline::Sink;

/// Most pages given their own track (the UI gets slow with many more).
pub const MAX_PAGE_TRACKS: usize = 256;
/// `BUILTIN_CLOCK_MONOTONIC`: the clock of every `ts`.
const CLOCK_MONOTONIC: u32 = 3;
const SEQ_ID: u32 = 1;

const UUID_FINDINGS: u64 = 1;
const UUID_PAGES: u64 = 2;
const UUID_PROCESS: u64 = 1 << 40;
const UUID_THREAD: u64 = 2 << 40;
const UUID_PAGE: u64 = 3 << 40;

/// Chooses the pages of interest in a first pass over the input.
#[derive(Default)]
pub struct Interest {
    finding_pages: Vec<PageKey>,
    /// bit 0: a hole was loaded; bit 1: blocks were allocated.
    seen: HashMap<PageKey, u8>,
}

impl Interest {
    pub fn on_event(&mut self, ev: &Event) {
        let (pgoff, bit) = match ev.body {
            Body::LoadHole { pgoff, .. } => (pgoff, 1),
            Body::MapBlocks {
                pgoff, new: true, ..
            } => (pgoff, 2),
            _ => return,
        };
        *self
            .seen
            .entry(PageKey {
                dev: ev.dev,
                ino: ev.ino,
                pgoff,
            })
            .or_default() |= bit;
    }

    pub fn on_finding(&mut self, f: &Finding) {
        self.finding_pages.push(f.page);
    }

    /// Finding pages first, then contested pages, at most [`MAX_PAGE_TRACKS`].
    pub fn pages(self) -> Vec<PageKey> {
        let mut out: Vec<PageKey> = Vec::new();
        let mut have = HashSet::new();
        for p in self.finding_pages {
            if have.insert(p) {
                out.push(p);
            }
        }
        let mut contested: Vec<PageKey> = self
            .seen
            .into_iter()
            .filter(|(_, b)| *b == 3)
            .map(|(k, _)| k)
            .collect();
        contested.sort_unstable();
        out.extend(contested.into_iter().filter(|p| !have.contains(p)));
        out.truncate(MAX_PAGE_TRACKS);
        out
    }
}

impl Sink for Interest {
    fn on_event(&mut self, ev: &Event) {
        Interest::on_event(self, ev);
    }
    fn on_late(&mut self, ev: &Event) {
        Interest::on_event(self, ev);
    }
    fn on_finding(&mut self, f: &Finding) {
        Interest::on_finding(self, f);
    }
}

pub struct PerfettoWriter<W: Write> {
    out: W,
    pages: BTreeMap<PageKey, u64>,
    threads: HashSet<u32>,
    processes: HashSet<u32>,
    buf: Vec<u8>,
    first: bool,
    error: Option<io::Error>,
    /// Open fault slices per task: a fault_end closes only a slice we opened.
    open: HashMap<u32, u64>,
}

impl<W: Write> PerfettoWriter<W> {
    pub fn new(out: W, pages: Vec<PageKey>) -> Self {
        let mut w = Self {
            out,
            pages: BTreeMap::new(),
            threads: HashSet::new(),
            processes: HashSet::new(),
            buf: Vec::new(),
            first: true,
            error: None,
            open: HashMap::new(),
        };
        w.track(UUID_FINDINGS, None, "findings".into());
        w.track(
            UUID_PAGES,
            None,
            format!("pages of interest ({})", pages.len()),
        );
        for (i, p) in pages.into_iter().enumerate() {
            let uuid = UUID_PAGE + i as u64;
            w.track(
                uuid,
                Some(UUID_PAGES),
                format!("page {} ino {} pgoff {}", p.dev, p.ino, p.pgoff),
            );
            w.pages.insert(p, uuid);
        }
        w
    }

    fn emit(&mut self, mut p: TracePacket) {
        if self.error.is_some() {
            return;
        }
        p.set_trusted_packet_sequence_id(SEQ_ID);
        if self.first {
            // Tells the UI this sequence starts clean (required for interned-free packets too).
            p.set_first_packet_on_sequence(true);
            p.set_sequence_flags(1);
            self.first = false;
        }
        self.buf.clear();
        self.buf.push(0x0a); // Trace.packet, field 1, length-delimited
        let res = p
            .write_length_delimited_to_vec(&mut self.buf)
            .map_err(io::Error::other)
            .and_then(|()| self.out.write_all(&self.buf));
        if let Err(e) = res {
            self.error = Some(e);
        }
    }

    fn track(&mut self, uuid: u64, parent: Option<u64>, name: String) {
        let mut d = TrackDescriptor::new();
        d.set_uuid(uuid);
        if let Some(p) = parent {
            d.set_parent_uuid(p);
        }
        d.set_name(name);
        let mut p = TracePacket::new();
        p.set_track_descriptor(d);
        self.emit(p);
    }

    fn thread_track(&mut self, ev: &Event) -> u64 {
        if self.processes.insert(ev.pid) {
            let mut pd = ProcessDescriptor::new();
            pd.set_pid(ev.pid as i32);
            let mut d = TrackDescriptor::new();
            d.set_uuid(UUID_PROCESS + u64::from(ev.pid));
            d.process = Some(pd).into();
            let mut p = TracePacket::new();
            p.set_track_descriptor(d);
            self.emit(p);
        }
        let uuid = UUID_THREAD + u64::from(ev.tid);
        if self.threads.insert(ev.tid) {
            let mut td = ThreadDescriptor::new();
            td.set_pid(ev.pid as i32);
            td.set_tid(ev.tid as i32);
            td.set_thread_name(ev.comm.as_str().to_owned());
            let mut d = TrackDescriptor::new();
            d.set_uuid(uuid);
            d.set_parent_uuid(UUID_PROCESS + u64::from(ev.pid));
            d.thread = Some(td).into();
            let mut p = TracePacket::new();
            p.set_track_descriptor(d);
            self.emit(p);
        }
        uuid
    }

    fn track_event(
        &mut self,
        ts: u64,
        track: u64,
        ty: Type,
        name: Option<String>,
        args: Vec<DebugAnnotation>,
    ) {
        let mut te = TrackEvent::new();
        te.set_type(ty);
        te.set_track_uuid(track);
        if let Some(n) = name {
            te.set_name(n);
        }
        te.debug_annotations = args;
        let mut p = TracePacket::new();
        p.set_timestamp(ts);
        p.set_timestamp_clock_id(CLOCK_MONOTONIC);
        p.set_track_event(te);
        self.emit(p);
    }

    /// Flush and return the writer, or the first write error.
    pub fn finish(mut self) -> io::Result<W> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

fn arg_u(name: &str, v: u64) -> DebugAnnotation {
    let mut a = DebugAnnotation::new();
    a.set_name(name.into());
    a.set_uint_value(v);
    a
}

fn arg_s(name: &str, v: &str) -> DebugAnnotation {
    let mut a = DebugAnnotation::new();
    a.set_name(name.into());
    a.set_string_value(v.into());
    a
}

fn size_name(s: Size) -> &'static str {
    match s {
        Size::Pte => "pte",
        Size::Pmd => "pmd",
    }
}

/// The instant's name for an event, or `None` for slice begin/end and lost.
fn instant_name(b: &Body) -> Option<String> {
    Some(match *b {
        Body::MapBlocks { new: true, .. } => "allocate".into(),
        Body::MapBlocks { result, .. } => {
            format!("lookup: {}", serde_json::to_value(result).ok()?.as_str()?)
        }
        Body::LoadHole { size, .. } => format!("load_hole ({})", size_name(size)),
        Body::InsertMapping { size, inferred, .. } => {
            format!(
                "insert_mapping ({}){}",
                size_name(size),
                if inferred { " inferred" } else { "" }
            )
        }
        Body::Invalidate { reason, .. } => format!(
            "invalidate: {}",
            serde_json::to_value(reason).ok()?.as_str()?
        ),
        Body::FaultBegin { .. } | Body::FaultEnd { .. } | Body::Lost { .. } => return None,
    })
}

fn event_args(ev: &Event) -> Vec<DebugAnnotation> {
    let mut a = vec![
        arg_s("dev", &ev.dev.to_string()),
        arg_u("ino", ev.ino),
        arg_u("cpu", u64::from(ev.cpu)),
    ];
    if let Some(f) = ev.body.fault() {
        a.push(arg_u("fault", f));
    }
    match ev.body {
        Body::FaultBegin { pgoff, .. }
        | Body::LoadHole { pgoff, .. }
        | Body::InsertMapping { pgoff, .. } => {
            a.push(arg_u("pgoff", pgoff));
        }
        Body::MapBlocks { pgoff, npages, .. } | Body::Invalidate { pgoff, npages, .. } => {
            a.push(arg_u("pgoff", pgoff));
            a.push(arg_u("npages", npages));
        }
        Body::FaultEnd { result, .. } => {
            if let Ok(serde_json::Value::String(s)) = serde_json::to_value(result) {
                a.push(arg_s("result", &s));
            }
        }
        Body::Lost { count } => a.push(arg_u("count", count)),
    }
    a
}

/// Pages an event touches: (first, count).
fn span(b: &Body) -> Option<(u64, u64)> {
    match *b {
        Body::FaultBegin { pgoff, size, .. }
        | Body::LoadHole { pgoff, size, .. }
        | Body::InsertMapping { pgoff, size, .. } => Some(size.span(pgoff)),
        Body::MapBlocks { pgoff, npages, .. } | Body::Invalidate { pgoff, npages, .. } => {
            Some((pgoff, npages.max(1)))
        }
        Body::FaultEnd { .. } | Body::Lost { .. } => None,
    }
}

impl<W: Write> Sink for PerfettoWriter<W> {
    fn on_event(&mut self, ev: &Event) {
        let track = self.thread_track(ev);
        match ev.body {
            Body::FaultBegin {
                fault,
                pgoff,
                size,
                write,
            } => {
                let name = format!(
                    "{} {} fault pgoff {pgoff}",
                    size_name(size),
                    if write { "write" } else { "read" }
                );
                self.track_event(
                    ev.ts,
                    track,
                    Type::TYPE_SLICE_BEGIN,
                    Some(name),
                    event_args(ev),
                );
                self.open.insert(ev.tid, fault);
            }
            Body::FaultEnd { fault, .. } => {
                if self.open.get(&ev.tid) == Some(&fault) {
                    self.open.remove(&ev.tid);
                    self.track_event(ev.ts, track, Type::TYPE_SLICE_END, None, event_args(ev));
                }
            }
            Body::Lost { count } => {
                self.track_event(
                    ev.ts,
                    UUID_FINDINGS,
                    Type::TYPE_INSTANT,
                    Some(format!("lost {count} events")),
                    vec![],
                );
            }
            ref b => {
                if let Some(name) = instant_name(b) {
                    self.track_event(ev.ts, track, Type::TYPE_INSTANT, Some(name), event_args(ev));
                }
            }
        }
        // The same step on every page track it covers.
        if let (Some((first, n)), Some(name)) = (span(&ev.body), instant_name(&ev.body)) {
            let lo = PageKey {
                dev: ev.dev,
                ino: ev.ino,
                pgoff: first,
            };
            let hi = PageKey {
                dev: ev.dev,
                ino: ev.ino,
                pgoff: first.saturating_add(n - 1),
            };
            let hits: Vec<u64> = self.pages.range(lo..=hi).map(|(_, u)| *u).collect();
            for uuid in hits {
                let name = format!("{name} by {} ({})", ev.tid, ev.comm);
                self.track_event(ev.ts, uuid, Type::TYPE_INSTANT, Some(name), event_args(ev));
            }
        }
    }

    fn on_late(&mut self, ev: &Event) {
        self.on_event(ev);
    }

    fn on_finding(&mut self, f: &Finding) {
        let name = format!("FINDING {} ({})", f.rule.name(), f.severity.name());
        let mut args = vec![
            arg_s("dev", &f.page.dev.to_string()),
            arg_u("ino", f.page.ino),
            arg_u("pgoff", f.page.pgoff),
        ];
        for (i, s) in f.steps.iter().enumerate() {
            let role = serde_json::to_value(s.role)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let fault = s.fault.map_or_else(|| "-".to_owned(), |x| x.to_string());
            args.push(arg_s(
                &format!("step{i}"),
                &format!(
                    "{role} ts={} tid={} ({}) fault={fault}",
                    s.ts, s.tid, s.comm
                ),
            ));
        }
        if let Some(&uuid) = self.pages.get(&f.page) {
            self.track_event(
                f.ts,
                uuid,
                Type::TYPE_INSTANT,
                Some(name.clone()),
                args.clone(),
            );
        }
        self.track_event(f.ts, UUID_FINDINGS, Type::TYPE_INSTANT, Some(name), args);
    }
}
