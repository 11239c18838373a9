//! The fuzz targets' checks (`fuzz/checks.rs`) on every seed in
//! `fuzz/seeds/` and every input that once crashed a target
//! (`fuzz/regressions/`), on each `cargo test`: the long runs need nightly
//! and cargo-fuzz (see `fuzz/README.md`), this replay needs neither.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use tracer::source::tracefile::TraceReader;

#[allow(dead_code, reason = "shared with the fuzz targets")]
#[path = "../../fuzz/checks.rs"]
mod checks;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut v = Vec::new();
    for dir in ["seeds", "regressions"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(fuzz.join(dir).join(target))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        v.extend(files.into_iter().map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        }));
    }
    v
}

#[test]
fn jsonl_seeds_and_regressions_pass_the_fuzz_checks() {
    let all = inputs("jsonl_reader");
    assert!(all.len() >= 30, "seeds missing: {}", all.len());
    assert!(
        all.iter().any(|(p, _)| p.ends_with("comm-nul.jsonl")),
        "the comm NUL regression is kept"
    );
    for (p, b) in &all {
        eprintln!("{}", p.display());
        checks::jsonl(b);
    }
}

#[test]
fn tracefile_seeds_and_regressions_pass_the_fuzz_checks() {
    let all = inputs("tracefile_reader");
    assert!(all.len() >= 30, "seeds missing: {}", all.len());
    let (mut clean, mut damaged, mut refused) = (0, 0, 0);
    for (p, b) in &all {
        eprintln!("{}", p.display());
        checks::tracefile(b);
        match TraceReader::new(Cursor::new(&b[..])) {
            Ok(mut r) => {
                let n = r.by_ref().count();
                if r.report().damage.is_empty() && n > 0 {
                    clean += 1;
                } else if !r.report().damage.is_empty() {
                    damaged += 1;
                }
            }
            Err(_) => refused += 1,
        }
    }
    // The seeds reach every branch worth mutating from: whole files, damaged
    // ones (cut, flipped, chunk removed) and refused ones (newer version).
    assert!(
        clean >= 20 && damaged >= 3 && refused >= 1,
        "clean {clean}, damaged {damaged}, refused {refused}"
    );
}
