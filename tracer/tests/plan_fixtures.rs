//! The attach plan against recorded kernel descriptions
//! (`tests/data/kernels/<version>/`, see the README there): each kernel
//! must resolve to the attach points its `expected*` files name, per step,
//! and report the steps it cannot trace as missing.
//!
//! The plan is resolved as if every backend's programs were built (the
//! question here is which attach points a kernel offers, not what this
//! build has), so the expectations do not move as programs are added.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use tracer::attach::btf;
use tracer::attach::plan::{self, BtfFacts, Choice, KernelDesc};
use tracer::attach::tracefs::Field;
use tracer_common::BtfOffsets;

fn dir(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/kernels")
        .join(version)
}

fn read(version: &str, file: &str) -> String {
    std::fs::read_to_string(dir(version).join(file))
        .unwrap_or_else(|e| panic!("{version}/{file}: {e}"))
}

fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// `btf` / `btf-file`: `source kernel|file`, `func NAME`, `tp EVENT`,
/// `member STRUCT.MEMBER OFFSET`.
fn btf_facts(text: &str) -> BtfFacts {
    let mut f = BtfFacts::default();
    let mut offsets = BtfOffsets::NONE;
    for l in lines(text) {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            ["source", s] => {
                f.kernel = *s == "kernel";
                f.source = format!("fixture ({s})");
            }
            ["func", n] => {
                f.funcs.insert((*n).to_string());
            }
            ["tp", n] => {
                f.tp_btf.insert((*n).to_string());
            }
            ["member", sm, off] => {
                let (s, m) = sm.split_once('.').unwrap();
                let slot = btf::MEMBERS
                    .iter()
                    .find(|(_, st, names)| *st == s && names.contains(&m))
                    .unwrap_or_else(|| panic!("{sm} is not a member daxtrace reads"));
                btf::set(&mut offsets, slot.0, off.parse().unwrap());
            }
            _ => panic!("bad btf fixture line {l:?}"),
        }
    }
    for (name, st, names) in btf::MEMBERS {
        if btf::get(&offsets, name) == tracer_common::TpFields::ABSENT {
            f.missing.push(format!("{st}.{}", names[0]));
        }
    }
    f.offsets = Some(offsets);
    f
}

fn desc(version: &str, btf_file: Option<&str>) -> KernelDesc {
    let kernel: HashMap<String, String> = lines(&read(version, "kernel"))
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_string(), v.trim().to_string())
        })
        .collect();
    let kallsyms: HashSet<String> = plan::parse_kallsyms(&read(version, "kallsyms"));
    let events = lines(&read(version, "events"))
        .map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next().unwrap().to_string();
            // Offsets do not matter to the plan, only which fields exist.
            let fields = w
                .enumerate()
                .map(|(i, f)| {
                    (
                        f.to_string(),
                        Field {
                            offset: 8 + 8 * i as u16,
                            size: 8,
                        },
                    )
                })
                .collect();
            (name, fields)
        })
        .collect();
    let btf = btf_file.map(|f| btf_facts(&read(version, f)));
    KernelDesc {
        release: kernel["release"].clone(),
        kprobes: kernel["kprobes"] == "yes",
        btf,
        events: Some(events),
        events_unknown: String::new(),
        kallsyms: Some(kallsyms),
        tracefs: None,
        root: true,
        can_trace: true,
    }
}

/// The plan as `step how backend:symbol...` lines, as the expected files
/// write it.
fn outcome(p: &plan::AttachPlan) -> String {
    p.coverage
        .iter()
        .map(|c| {
            let step = serde_json::to_value(c.step)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string();
            let mut by: Vec<String> = p
                .used()
                .filter(|e| e.step == c.step)
                .map(|e| format!("{}:{}", e.backend.name(), e.symbol))
                .collect();
            by.sort();
            format!("{step} {} {}", c.how, by.join(" "))
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `expected*` files: blocks headed `# backend NAME`.
fn check(version: &str, btf_file: Option<&str>, expected_file: &str) {
    let d = desc(version, btf_file);
    let text = read(version, expected_file);
    let mut blocks = 0;
    for block in text.split("# backend ").skip(1) {
        let (name, body) = block.split_once('\n').unwrap();
        let choice = <Choice as clap::ValueEnum>::from_str(name.trim(), false).unwrap();
        let want: String = lines(body).collect::<Vec<_>>().join("\n");
        let p = plan::plan_with(&d, choice, &|_, _| true);
        let got = outcome(&p);
        assert_eq!(
            got,
            want,
            "{version} {expected_file} backend {name}:\n{}",
            p.render()
        );
        blocks += 1;
    }
    assert!(
        blocks > 0,
        "{version}/{expected_file} has no `# backend` block"
    );
}

#[test]
fn kernel_4_4_without_btf_misses_the_fault_steps() {
    check("4.4", None, "expected");
}

#[test]
fn kernel_4_4_with_a_btf_file_uses_kprobes() {
    check("4.4", Some("btf-file"), "expected-btf");
}

#[test]
fn kernel_4_9() {
    check("4.9", None, "expected");
    check("4.9", Some("btf-file"), "expected-btf");
}

#[test]
fn kernel_4_19() {
    check("4.19", None, "expected");
}

#[test]
fn kernel_5_10() {
    check("5.10", Some("btf"), "expected");
}

#[test]
fn kernel_6_1() {
    check("6.1", Some("btf"), "expected");
}

#[test]
fn kernel_6_12() {
    check("6.12", Some("btf"), "expected");
}

/// Whatever the kernel, a step is never served by two families at once
/// (it would count every event twice).
#[test]
fn no_step_is_traced_twice() {
    for (v, b) in [
        ("4.4", Some("btf-file")),
        ("4.9", Some("btf-file")),
        ("4.19", None),
        ("5.10", Some("btf")),
        ("6.1", Some("btf")),
        ("6.12", Some("btf")),
    ] {
        let d = desc(v, b);
        for choice in [
            Choice::Auto,
            Choice::Tracepoint,
            Choice::TpBtf,
            Choice::RawTp,
            Choice::Kprobe,
            Choice::Fentry,
        ] {
            let p = plan::plan_with(&d, choice, &|_, _| true);
            for step in plan::Step::ALL {
                let fams: HashSet<_> = p
                    .used()
                    .filter(|e| e.step == step)
                    .map(|e| e.backend.family())
                    .collect();
                assert!(fams.len() <= 1, "{v} {choice:?} {step:?}: {fams:?}");
                let syms: Vec<_> = p
                    .used()
                    .filter(|e| e.step == step)
                    .map(|e| e.symbol)
                    .collect();
                let uniq: HashSet<_> = syms.iter().collect();
                assert_eq!(
                    syms.len(),
                    uniq.len(),
                    "{v} {choice:?} {step:?}: one attach point through two backends"
                );
            }
        }
    }
}

fn probe_cmd(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_daxtrace"))
        .arg("probe")
        .args(args)
        .output()
        .unwrap()
}

/// `--btf` with something that is not BTF: one line saying what is wrong
/// and what to give instead, exit 2.
#[test]
fn a_bad_btf_file_is_a_one_line_error() {
    let bad = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let out = probe_cmd(&["--btf", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot read BTF from")
            && err.contains("Cargo.toml")
            && err.contains("raw BTF file"),
        "{err}"
    );
}

/// `--btf FILE` takes the offsets from the file: a copy of the running
/// kernel's BTF must give the same offsets, and the plan names the file.
#[test]
fn offsets_from_a_btf_file_match_the_kernels() {
    let vmlinux = Path::new(btf::VMLINUX);
    if !vmlinux.exists() {
        eprintln!("no kernel BTF on this machine; nothing to compare with");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("vmlinux.btf");
    std::fs::copy(vmlinux, &copy).unwrap();
    let json = |args: &[&str]| -> serde_json::Value {
        let out = probe_cmd(args);
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let kernel = json(&["--json"]);
    let file = json(&["--json", "--btf", copy.to_str().unwrap()]);
    assert_eq!(file["btf_source"], copy.to_str().unwrap());
    assert_eq!(kernel["btf_source"], btf::VMLINUX);
    assert!(
        kernel["btf_offsets"].as_object().unwrap().len() >= 10,
        "{}",
        kernel["btf_offsets"]
    );
    assert_eq!(kernel["btf_offsets"], file["btf_offsets"]);
}
