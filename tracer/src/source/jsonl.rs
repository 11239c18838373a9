//! JSON Lines source: one event per line, names as DESIGN.md §3.
//!
//! A line that is not a valid event is an error naming its line number and
//! what is wrong; the caller decides whether to stop (`analyze`, exit 2) or
//! count and skip it (`--skip-bad`). Events before it are already yielded, so
//! nothing before a bad line is lost. Blank lines are skipped.

use std::io::BufRead;

use super::SourceError;
use crate::event::Event;

/// Parse one line (no trailing newline needed).
pub fn parse_line(line: &str) -> Result<Event, String> {
    let ev: Event = serde_json::from_str(line).map_err(|e| {
        // serde_json counts columns within this one line; its line is always 1.
        let what = e.to_string();
        let what = what.split(" at line ").next().unwrap_or(&what).to_owned();
        format!("{what} (column {})", e.column())
    })?;
    validate(&ev)?;
    Ok(ev)
}

/// Checks serde cannot express.
fn validate(ev: &Event) -> Result<(), String> {
    use crate::event::Body;
    match ev.body {
        Body::MapBlocks { npages: 0, .. } => Err("map_blocks with npages 0 covers no page".into()),
        Body::Invalidate { npages: 0, .. } => Err("invalidate with npages 0 covers no page".into()),
        _ => Ok(()),
    }
}

/// Yields events from a JSON Lines stream, with line numbers in errors.
pub struct JsonlReader<R> {
    input: R,
    name: String,
    line_no: u64,
    buf: String,
    done: bool,
}

impl<R: BufRead> JsonlReader<R> {
    /// `name` is how errors name the input (a path, or "stdin").
    pub fn new(input: R, name: impl Into<String>) -> Self {
        Self {
            input,
            name: name.into(),
            line_no: 0,
            buf: String::new(),
            done: false,
        }
    }

    /// Lines read so far.
    pub fn line_no(&self) -> u64 {
        self.line_no
    }
}

impl<R: BufRead> Iterator for JsonlReader<R> {
    type Item = Result<Event, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.buf.clear();
            match self.input.read_line(&mut self.buf) {
                Ok(0) => self.done = true,
                Ok(_) => {
                    self.line_no += 1;
                    let line = self.buf.trim();
                    if line.is_empty() {
                        continue;
                    }
                    return Some(parse_line(line).map_err(|what| SourceError::BadLine {
                        input: self.name.clone(),
                        line: self.line_no,
                        what,
                    }));
                }
                Err(e) => {
                    // A read error ends this input; a non-UTF-8 line is only a bad line.
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        self.line_no += 1;
                        return Some(Err(SourceError::BadLine {
                            input: self.name.clone(),
                            line: self.line_no,
                            what: "not UTF-8 text".into(),
                        }));
                    }
                    self.done = true;
                    return Some(Err(SourceError::Io {
                        input: self.name.clone(),
                        error: e,
                    }));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Body;

    #[test]
    fn reads_events_and_names_bad_lines() {
        let text = "{\"ts\":1,\"kind\":\"lost\",\"count\":3}\n\n{\"ts\":2,\"kind\":\"nope\"}\n{\"ts\":3,\"kind\":\"lost\",\"count\":1}\n";
        let got: Vec<_> = JsonlReader::new(text.as_bytes(), "t.jsonl").collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].as_ref().unwrap().body, Body::Lost { count: 3 });
        let err = got[1].as_ref().unwrap_err().to_string();
        assert!(err.starts_with("t.jsonl:3: "), "{err}");
        assert!(err.contains("unknown variant `nope`"), "{err}");
        assert_eq!(got[2].as_ref().unwrap().ts, 3);
    }

    #[test]
    fn missing_field_is_named() {
        let err =
            parse_line(r#"{"kind":"load_hole","fault":1,"pgoff":0,"size":"pte"}"#).unwrap_err();
        assert!(err.contains("missing field `ts`"), "{err}");
        let err = parse_line(r#"{"ts":1,"kind":"load_hole","fault":1,"pgoff":0,"size":"huge"}"#)
            .unwrap_err();
        assert!(err.contains("huge"), "{err}");
        assert!(parse_line("not json").is_err());
        assert!(parse_line(
            r#"{"ts":1,"kind":"invalidate","pgoff":0,"npages":0,"reason":"truncate"}"#
        )
        .is_err());
    }
}
