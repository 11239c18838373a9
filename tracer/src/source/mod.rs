//! Event sources. Each yields `event::Event`s; the pipeline does not care which.
//!
//! [`open_any`] opens a path (or `-` for stdin) and picks the reader by
//! sniffing the first bytes: JSON Lines now; the trace-file format plugs in
//! here (see the `TRACEFILE` hook below).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use crate::event::Event;

pub mod jsonl;
pub mod ringbuf;
pub mod sim;
pub mod tracefile;

/// Why a source could not yield an event.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The I/O error is in the message, not a `source`: a report of the
    /// error chain would print it twice.
    #[error("{input}: {error}")]
    Io { input: String, error: io::Error },
    /// One record is bad; the records around it may be fine (`--skip-bad`).
    #[error("{input}:{line}: {what}")]
    BadLine {
        input: String,
        line: u64,
        what: String,
    },
    #[error("{input}: {what}")]
    Format { input: String, what: String },
}

impl SourceError {
    /// Whether skipping this record and going on makes sense.
    pub fn is_skippable(&self) -> bool {
        matches!(self, SourceError::BadLine { .. })
    }
}

/// A stream of events from any source.
pub type EventIter = Box<dyn Iterator<Item = Result<Event, SourceError>> + Send>;

/// Open `path` (`-`: stdin) as an event stream, choosing the format from
/// its first bytes.
pub fn open_any(path: &Path) -> Result<EventIter, SourceError> {
    let name = if path.as_os_str() == "-" {
        "stdin".to_owned()
    } else {
        path.display().to_string()
    };
    let io_err = |error| SourceError::Io {
        input: name.clone(),
        error,
    };
    let raw: Box<dyn Read + Send> = if path.as_os_str() == "-" {
        Box::new(io::stdin())
    } else {
        Box::new(File::open(path).map_err(io_err)?)
    };
    let mut input = BufReader::with_capacity(1 << 16, raw);
    let head = input.fill_buf().map_err(io_err)?.to_vec();
    if tracefile::is_trace_file(&head) {
        if path.as_os_str() == "-" {
            return Err(SourceError::Format {
                input: name,
                what: "a trace file on standard input: give its path instead (the reader seeks past damage)".into(),
            });
        }
        return tracefile::open_events(path, name);
    }
    if head.is_empty() || jsonl_sniff(&head) {
        return Ok(Box::new(jsonl::JsonlReader::new(input, name)));
    }
    Err(SourceError::Format {
        input: name,
        what: "not JSON Lines (first byte is not '{') and not a known trace format; pass a file written by daxtrace".into(),
    })
}

/// JSON Lines start with `{` after optional whitespace.
fn jsonl_sniff(head: &[u8]) -> bool {
    head.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_none_or(|&b| b == b'{')
}

/// Several inputs, one after another (`analyze a.jsonl b.jsonl`); each is
/// opened when the previous one ends.
pub fn open_many(paths: Vec<std::path::PathBuf>) -> EventIter {
    let mut paths = paths.into_iter();
    let mut cur: Option<EventIter> = None;
    Box::new(std::iter::from_fn(move || loop {
        if let Some(it) = cur.as_mut() {
            match it.next() {
                Some(x) => return Some(x),
                None => cur = None,
            }
        }
        let p = paths.next()?;
        match open_any(&p) {
            Ok(it) => cur = Some(it),
            Err(e) => return Some(Err(e)),
        }
    }))
}

/// What a postmortem input holds, told by its first bytes, never its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A daxtrace trace file (`tracefile::MAGIC`).
    TraceFile,
    /// Anything else is read as JSON Lines (DESIGN.md §3).
    JsonLines,
}

/// Look at the first bytes of `path` to tell a trace file from JSON Lines.
pub fn sniff(path: &std::path::Path) -> std::io::Result<Format> {
    use std::io::Read;
    let mut prefix = [0u8; 8];
    let mut f = std::fs::File::open(path)?;
    let mut n = 0;
    while n < prefix.len() {
        match f.read(&mut prefix[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(if tracefile::is_trace_file(&prefix[..n]) {
        Format::TraceFile
    } else {
        Format::JsonLines
    })
}
