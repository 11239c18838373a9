//! tracefs: where it is, which events exist, and their record layouts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::AttachError;

const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The mounted tracefs, if any (no side effects).
pub fn find() -> Option<PathBuf> {
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("events").is_dir())
}

/// The mounted tracefs; as root, mount it when it is not mounted yet (many
/// distributions mount it lazily), otherwise a clear error.
pub fn find_or_mount() -> Result<PathBuf, AttachError> {
    if let Some(p) = find() {
        return Ok(p);
    }
    let target = CANDIDATES[0];
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let (src, tgt, ty) = (c("nodev"), c(target), c("tracefs"));
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe { libc::mount(src.as_ptr(), tgt.as_ptr(), ty.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(AttachError::NoTracefs(
            std::io::Error::last_os_error().to_string(),
        ));
    }
    tracing::info!("mounted tracefs on {target}");
    find().ok_or_else(|| AttachError::NoTracefs("mounted but has no events/".into()))
}

/// One field of a tracepoint record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub offset: u16,
    pub size: u16,
}

/// Parse a tracefs `format` file into field name -> layout.
pub fn parse_format(text: &str) -> HashMap<String, Field> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let mut decl = None;
        let mut offset = None;
        let mut size = None;
        for part in rest.split(';') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("offset:") {
                offset = v.parse::<u16>().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.parse::<u16>().ok();
            } else if decl.is_none() && !part.is_empty() && !part.contains(':') {
                decl = Some(part);
            }
        }
        let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else {
            continue;
        };
        // "unsigned long ino" / "char comm[16]" / "struct folio * zero_folio"
        let name = decl
            .rsplit(|c: char| c.is_whitespace() || c == '*')
            .next()
            .unwrap_or(decl);
        let name = name.split('[').next().unwrap_or(name);
        out.insert(name.to_string(), Field { offset, size });
    }
    out
}

/// Read the format of `category:event` under `root`, if the event exists.
pub fn format(root: &Path, tracepoint: &str) -> Option<std::io::Result<HashMap<String, Field>>> {
    let (cat, ev) = tracepoint.split_once(':')?;
    let dir = root.join("events").join(cat).join(ev);
    if !dir.exists() {
        return None;
    }
    Some(std::fs::read_to_string(dir.join("format")).map(|t| parse_format(&t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const IOMAP: &str = "name: iomap_iter_dstmap\nID: 1234\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:dev_t dev;\toffset:8;\tsize:4;\tsigned:0;\n\tfield:u64 ino;\toffset:16;\tsize:8;\tsigned:0;\n\tfield:loff_t offset;\toffset:32;\tsize:8;\tsigned:1;\n\tfield:struct folio * zero_folio;\toffset:40;\tsize:8;\tsigned:0;\n\tfield:char comm[16];\toffset:48;\tsize:16;\tsigned:0;\n\nprint fmt: \"dev %d\"\n";

    #[test]
    fn parses_fields() {
        let f = parse_format(IOMAP);
        assert_eq!(f["dev"], Field { offset: 8, size: 4 });
        assert_eq!(
            f["ino"],
            Field {
                offset: 16,
                size: 8
            }
        );
        assert_eq!(
            f["offset"],
            Field {
                offset: 32,
                size: 8
            }
        );
        assert_eq!(
            f["zero_folio"],
            Field {
                offset: 40,
                size: 8
            }
        );
        assert_eq!(
            f["comm"],
            Field {
                offset: 48,
                size: 16
            }
        );
        assert_eq!(f["common_type"], Field { offset: 0, size: 2 });
        assert!(!f.contains_key("print"));
    }
}
