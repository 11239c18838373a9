//! The simulator's oracle (bytes) against the real detector (events).
//!
//! * property: over random schedules, a page has a finding iff its data is
//!   corrupted, and a schedule has a finding iff it corrupts (precision and
//!   recall exactly 1); with the 4.6+ entry lock nothing is found or corrupted;
//! * hand-built interleavings: the oracle alone sees the seed's race, the
//!   PMD-vs-PTE race and the write(2)-vs-hole-load race, and sees nothing in
//!   the orderings DESIGN.md §2 excludes.

use proptest::prelude::*;
use rand::SeedableRng;
use tracer::detect::{Finding, Rule, Severity};
use tracer::event::{Body, PageKey};
use tracer::source::sim::{
    compare, detect, jitter, Actor, Clock, ModelConfig, Op, Pick, Run, Scenario, ScheduleError,
    Sim, SimOptions, Simulation, Tally, SIM_DEV,
};

fn rng() -> rand::rngs::SmallRng {
    rand::rngs::SmallRng::seed_from_u64(7)
}

fn page(ino: u64, pgoff: u64) -> PageKey {
    PageKey {
        dev: SIM_DEV,
        ino,
        pgoff,
    }
}

/// Run a hand-built interleaving: `script[i]` is the actor that takes step i.
fn scripted(
    actors: Vec<Vec<Op>>,
    script: &[usize],
    fixed: bool,
) -> Result<(Run, Vec<Finding>), ScheduleError> {
    let sc = Scenario {
        files: 1,
        actors: actors.into_iter().map(|ops| Actor { ops }).collect(),
    };
    let mut sim = Sim::new();
    let cfg = ModelConfig {
        fixed,
        ..ModelConfig::default()
    };
    let run = sim.run(&sc, cfg, script, &mut rng())?.clone();
    let (findings, stats) = detect(&run.events, SimOptions::default().pipeline);
    assert_eq!((stats.late, stats.evicted), (0, 0));
    Ok((run, findings))
}

const INO: u64 = 12; // ModelConfig::default().ino_base
const R: Op = Op::Read { file: 0, pgoff: 0 };
const W: Op = Op::Write { file: 0, pgoff: 0 };

fn severities(f: &[Finding]) -> Vec<(Rule, Severity, u64)> {
    let mut v: Vec<_> = f
        .iter()
        .map(|f| (f.rule, f.severity, f.page.pgoff))
        .collect();
    v.sort();
    v
}

// ---- hand-built: the oracle sees each race from the bytes alone ------------

#[test]
fn seed_sequence_corrupts_bytes() {
    // P1 read fault: get_block -> hole; P2 write fault: get_block -> allocates,
    // dax_insert_mapping; P1: dax_load_hole.
    let (run, findings) = scripted(vec![vec![R], vec![W]], &[0, 1, 1, 1, 0], false).unwrap();
    assert_eq!(
        run.corrupted,
        vec![page(INO, 0)],
        "the oracle sees zeros mapped over P2's data"
    );
    assert_eq!(
        run.wrong_reads, 1,
        "P1's load right after its fault returns zeros"
    );
    assert_eq!(run.incoherent_at_end, 1);
    let kinds: Vec<&str> = run.events.iter().map(|e| e.body.kind_name()).collect();
    assert_eq!(
        kinds,
        [
            "fault_begin",
            "map_blocks", // P1 lookup: hole
            "fault_begin",
            "map_blocks", // P2 lookup: hole
            "map_blocks", // P2 get_block(create=1): allocates
            "insert_mapping",
            "fault_end", // P2
            "load_hole",
            "fault_end", // P1
        ]
    );
    assert!(
        run.events.windows(2).all(|w| w[0].ts < w[1].ts),
        "strictly increasing ts"
    );
    assert_eq!(
        severities(&findings),
        [(Rule::HoleLoadAfterAllocate, Severity::Corruption, 0)]
    );
}

#[test]
fn stale_hole_before_the_writers_insert_is_corruption_in_bytes() {
    // P1's hole load lands between P2's allocation and P2's insert: the bytes
    // P2's store put in the new block are already invisible to P1.
    let (run, findings) = scripted(vec![vec![R], vec![W]], &[0, 1, 1, 0, 1], false).unwrap();
    assert_eq!(run.corrupted, vec![page(INO, 0)]);
    assert_eq!(
        severities(&findings),
        [(Rule::HoleLoadAfterAllocate, Severity::StaleHole, 0)]
    );
}

#[test]
fn pmd_allocation_vs_pte_hole_load() {
    let pte = Op::Read { file: 0, pgoff: 5 };
    let pmd = Op::PmdWrite { file: 0, pgoff: 0 };
    let (run, findings) = scripted(vec![vec![pte], vec![pmd]], &[0, 1, 1, 0], false).unwrap();
    assert_eq!(
        run.corrupted,
        vec![page(INO, 5)],
        "only the page the PTE reader mapped shows zeros over data"
    );
    assert_eq!(
        severities(&findings),
        [(Rule::HoleLoadAfterAllocate, Severity::Corruption, 5)]
    );
}

#[test]
fn pte_allocation_vs_pmd_hole_load() {
    let pmd = Op::PmdRead { file: 0, pgoff: 0 };
    let pte = Op::Write { file: 0, pgoff: 3 };
    let (run, findings) = scripted(vec![vec![pmd], vec![pte]], &[0, 1, 1, 1, 0], false).unwrap();
    // The huge zero page covers 512 pages, but only page 3 holds data.
    assert_eq!(run.corrupted, vec![page(INO, 3)]);
    assert_eq!(
        severities(&findings),
        [(Rule::HoleLoadAfterAllocate, Severity::Corruption, 3)]
    );
}

#[test]
fn write2_vs_hole_load() {
    let pw = Op::Pwrite {
        file: 0,
        pgoff: 0,
        npages: 2,
    };
    let (run, findings) = scripted(vec![vec![R], vec![pw]], &[0, 1, 0], false).unwrap();
    assert_eq!(run.corrupted, vec![page(INO, 0)]);
    assert_eq!(run.wrong_reads, 1);
    let alloc = run
        .events
        .iter()
        .find(|e| matches!(e.body, Body::MapBlocks { fault: None, .. }))
        .unwrap();
    assert!(matches!(
        alloc.body,
        Body::MapBlocks {
            new: true,
            write: true,
            npages: 2,
            ..
        }
    ));
    assert_eq!(
        severities(&findings),
        [(Rule::HoleLoadAfterAllocate, Severity::StaleHole, 0)]
    );
}

#[test]
fn insert_of_freed_blocks_corrupts() {
    // write(2) allocates page 0; P1 looks it up (mapped); a punch frees it; P1
    // maps the freed block, which still holds the written bytes.
    let pw = Op::Pwrite {
        file: 0,
        pgoff: 0,
        npages: 1,
    };
    let punch = Op::Punch {
        file: 0,
        pgoff: 0,
        npages: 1,
    };
    let (run, findings) =
        scripted(vec![vec![R], vec![pw], vec![punch]], &[1, 0, 2, 0], false).unwrap();
    assert_eq!(run.corrupted, vec![page(INO, 0)]);
    assert_eq!(
        severities(&findings),
        [(Rule::InsertAfterInvalidate, Severity::StaleMapping, 0)]
    );
}

#[test]
fn invalidation_between_allocation_and_hole_load_clears_the_reader_not_the_writer() {
    // R lookup (hole), W lookup (hole), W allocates, punch, R loads a hole
    // (legitimate: the page is a hole again), W inserts its freed block.
    let punch = Op::Punch {
        file: 0,
        pgoff: 0,
        npages: 1,
    };
    let (run, findings) = scripted(
        vec![vec![R], vec![W], vec![punch]],
        &[0, 1, 1, 2, 0, 1],
        false,
    )
    .unwrap();
    assert_eq!(
        run.corrupted,
        vec![page(INO, 0)],
        "W maps freed blocks holding its bytes"
    );
    assert_eq!(
        severities(&findings),
        [(Rule::InsertAfterInvalidate, Severity::StaleMapping, 0)]
    );
}

#[test]
fn excluded_orderings_leave_the_bytes_intact() {
    // Hole load before the allocation: the allocation tears the zero page down.
    let (run, findings) = scripted(vec![vec![R], vec![W]], &[0, 0, 1, 1, 1], false).unwrap();
    assert!(run.corrupted.is_empty() && findings.is_empty());
    // Lookup after the allocation: the reader maps the block.
    let (run, findings) = scripted(vec![vec![R], vec![W]], &[1, 1, 0, 1, 0], false).unwrap();
    assert!(run.corrupted.is_empty() && findings.is_empty());
    // Other page, other file.
    let w1 = Op::Write { file: 0, pgoff: 1 };
    let (run, findings) = scripted(vec![vec![R], vec![w1]], &[0, 1, 1, 1, 0], false).unwrap();
    assert!(run.corrupted.is_empty() && findings.is_empty());
    let sc = Scenario {
        files: 2,
        actors: vec![
            Actor { ops: vec![R] },
            Actor {
                ops: vec![Op::Write { file: 1, pgoff: 0 }],
            },
        ],
    };
    let run = Sim::new()
        .run(&sc, ModelConfig::default(), &[0, 1, 1, 1, 0], &mut rng())
        .unwrap()
        .clone();
    assert!(run.corrupted.is_empty());
    assert!(detect(&run.events, SimOptions::default().pipeline)
        .0
        .is_empty());
}

#[test]
fn fixed_entry_lock_serialises_the_seed_sequence() {
    // The writer cannot start while the reader holds the entry lock.
    assert_eq!(
        scripted(vec![vec![R], vec![W]], &[0, 1], true).unwrap_err(),
        ScheduleError::Blocked { step: 1, actor: 1 }
    );
    let (run, findings) = scripted(vec![vec![R], vec![W]], &[0, 0, 1, 1, 1], true).unwrap();
    assert!(run.corrupted.is_empty() && findings.is_empty());
}

#[test]
fn jittered_delivery_gives_the_same_findings() {
    let (run, findings) = scripted(
        vec![vec![R], vec![W], vec![Op::Read { file: 0, pgoff: 0 }]],
        &[0, 1, 2, 1, 1, 0, 2],
        false,
    )
    .unwrap();
    let mut ev = run.events.clone();
    let mut r = rng();
    for _ in 0..20 {
        jitter(&mut ev, &mut r);
    }
    assert_ne!(ev, run.events, "jitter must actually reorder");
    let (again, _) = detect(&ev, SimOptions::default().pipeline);
    assert_eq!(severities(&again), severities(&findings));
}

// ---- property ---------------------------------------------------------------

fn op_strategy(files: u8) -> impl Strategy<Value = Op> {
    (0..files, 0u64..3, 0u8..7, 1u64..=2).prop_map(|(file, pgoff, k, n)| match k {
        0 => Op::Read { file, pgoff },
        1 => Op::Write { file, pgoff },
        2 => Op::PmdRead { file, pgoff },
        3 => Op::PmdWrite { file, pgoff },
        4 => Op::Pwrite {
            file,
            pgoff,
            npages: n,
        },
        5 => Op::Punch {
            file,
            pgoff,
            npages: n,
        },
        _ => Op::Truncate { file, pgoff },
    })
}

fn scenario_strategy() -> impl Strategy<Value = Scenario> {
    (1u8..=2).prop_flat_map(|files| {
        prop::collection::vec(
            prop::collection::vec(op_strategy(files), 1..=3).prop_map(|ops| Actor { ops }),
            2..=4,
        )
        .prop_map(move |actors| Scenario {
            files: usize::from(files),
            actors,
        })
    })
}

/// Run one schedule both ways; returns whether it corrupted.
fn check_schedule(
    sim: &mut Sim,
    sc: &Scenario,
    choices: &[u32],
    fixed: bool,
    jit: bool,
) -> Result<bool, TestCaseError> {
    let cfg = ModelConfig {
        fixed,
        ..ModelConfig::default()
    };
    let mut r = rng();
    let run = sim
        .run_with(sc, cfg, Pick::Among(choices), &mut r)
        .expect("random schedules never block");
    let mut ev = run.events.clone();
    if jit {
        jitter(&mut ev, &mut r);
    }
    let (findings, stats) = detect(&ev, SimOptions::default().pipeline);
    prop_assert_eq!(stats.late, 0);
    let v = compare(run, &findings);
    prop_assert!(
        v.agrees(),
        "flagged but intact: {:?}; corrupted but not flagged: {:?}\nevents: {:#?}",
        v.false_pages,
        v.missed_pages,
        run.events
    );
    prop_assert_eq!(v.flagged, v.corrupt);
    if fixed {
        prop_assert!(findings.is_empty() && run.corrupted.is_empty());
    }
    Ok(v.corrupt)
}

/// Run `cases` random schedules (scenario, step choices, delivery jitter);
/// returns how many corrupted. A failure shrinks to a minimal schedule.
fn property(cases: u32, fixed: bool) -> u64 {
    let cfg = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(cfg);
    let sim = std::cell::RefCell::new(Sim::new());
    let corrupting = std::cell::Cell::new(0u64);
    let strategy = (
        scenario_strategy(),
        prop::collection::vec(any::<u32>(), 0..40),
        any::<bool>(),
    );
    let result = runner.run(&strategy, |(sc, choices, jit)| {
        let corrupt = check_schedule(&mut sim.borrow_mut(), &sc, &choices, fixed, jit && !fixed)?;
        corrupting.set(corrupting.get() + u64::from(corrupt));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    corrupting.get()
}

#[test]
fn finding_iff_corruption_over_100k_schedules() {
    // Per page and per schedule: precision and recall exactly 1 (any
    // disagreement fails the case), and races must actually happen.
    let corrupting = property(100_000, false);
    assert!(
        corrupting > 5_000,
        "only {corrupting} corrupting schedules: the property would be vacuous"
    );
}

#[test]
fn fixed_never_finds_never_corrupts() {
    assert_eq!(property(20_000, true), 0);
}

/// The `daxtrace simulate` path (seeded draws, per-schedule pipeline), with
/// totals that must show races actually happen.
#[test]
fn simulate_path_precision_and_recall_are_one() {
    let mut sim = Simulation::new(SimOptions {
        seed: 42,
        jitter: true,
        ..SimOptions::default()
    });
    let mut t = Tally::default();
    for i in 0..20_000 {
        t.add_judged(&sim.judge(i));
    }
    assert_eq!(
        t.disagreeing_total, 0,
        "disagreeing schedules (seed 42): {:?}",
        t.disagreeing
    );
    assert_eq!(
        (t.schedule_matrix.precision(), t.schedule_matrix.recall()),
        (1.0, 1.0)
    );
    assert_eq!(
        (t.page_matrix.precision(), t.page_matrix.recall()),
        (1.0, 1.0)
    );
    // The property is not vacuous: every shape of race occurs.
    assert!(t.corrupting_schedules > 500, "{t:?}");
    assert!(
        t.findings_corruption > 0
            && t.findings_stale_hole > 0
            && t.findings_insert_after_invalidate > 0,
        "{t:?}"
    );
    assert!(t.schedule_matrix.tn > 1000);
}

#[test]
fn ties_are_never_an_order() {
    // With equal timestamps the detector must not invent findings the bytes
    // do not support; it may miss races whose order ties (DESIGN.md §2).
    let mut sim = Simulation::new(SimOptions {
        seed: 9,
        clock: Clock::Ties(3),
        ..SimOptions::default()
    });
    let mut t = Tally::default();
    for i in 0..5_000 {
        t.add_judged(&sim.judge(i));
    }
    assert!(t.page_matrix.fn_ > 0, "ties hide some races: {t:?}");
    assert_eq!(
        t.page_matrix.fp, 0,
        "a finding without corruption: {:?}",
        t.disagreeing
    );
}

/// `tests/data/race.jsonl` is simulator output, reproducible with
/// `daxtrace simulate --seed 3 --schedules 25 --without pmd_read,pmd_write -o tracer/tests/data/race.jsonl`:
/// 25 schedules (332 events) holding `corruption`, `stale_hole` and
/// `stale_mapping` findings, each schedule judged by the oracle too.
#[test]
fn sample_race_file_is_simulator_output_and_holds_every_severity() {
    // The CLI's defaults: 3 actors x <= 2 ops, 2 files, 2 hot pages.
    let shape = tracer::source::sim::ScenarioShape {
        actors: 3,
        ops: 2,
        files: 2,
        hot_pages: 2,
        mix: tracer::source::sim::Mix {
            pmd_read: 0,
            pmd_write: 0,
            ..Default::default()
        },
    };
    let mut sim = Simulation::new(SimOptions {
        seed: 3,
        shape,
        ..SimOptions::default()
    });
    let mut expected = Vec::new();
    let mut t = Tally::default();
    for i in 0..25 {
        let j = sim.judge(i);
        for ev in j.delivered {
            serde_json::to_writer(&mut expected, ev).unwrap();
            expected.push(b'\n');
        }
        t.add_judged(&j);
    }
    let file = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/race.jsonl"
    ))
    .unwrap();
    assert!(
        file == expected,
        "race.jsonl differs from the simulator's output: regenerate it (command above)"
    );
    assert_eq!(t.disagreeing_total, 0);
    assert!(t.corrupting_schedules >= 3);

    // Read back through serde (the interchange format) and judge as analyze does.
    let events: Vec<tracer::event::Event> = std::str::from_utf8(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!((200..=500).contains(&events.len()));
    let (findings, _) = detect(&events, SimOptions::default().pipeline);
    let sev: std::collections::BTreeSet<Severity> = findings.iter().map(|f| f.severity).collect();
    assert_eq!(
        sev,
        [
            Severity::Corruption,
            Severity::StaleHole,
            Severity::StaleMapping
        ]
        .into()
    );
    assert_eq!(findings.len() as u64, t.findings);
}
