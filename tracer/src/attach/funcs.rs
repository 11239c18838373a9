//! Function probes (fentry/fexit, kprobe/kretprobe): which programs serve
//! which kernel function for which step, and attaching them.
//!
//! Programs are `fe_`/`fx_`/`kp_`/`kr_` + function (tracer-ebpf/src/funcs.rs).
//! Fault entries and lookup entries stash per-task state that the return
//! side reads, so a lookup needs its entry program too.

use aya::programs::{FEntry, FExit, KProbe};
use aya::{Btf, Ebpf};
use tracer_common::Probe;

use super::plan::{Backend, Step};
use super::AttachError;

/// The probe identity of `symbol` at `step`, if this build has programs for it.
pub fn probe(symbol: &str, step: Step) -> Option<Probe> {
    let want_ret = matches!(step, Step::FaultEnd | Step::Lookup);
    Probe::FUNCS
        .iter()
        .copied()
        .find(|p| p.function() == symbol && p.tracepoint().starts_with("func_ret:") == want_ret)
}

/// Program names for `probe` on a function backend, in load order.
pub fn programs(backend: Backend, probe: Probe) -> Vec<String> {
    let f = probe.function();
    let ret = probe.tracepoint().starts_with("func_ret:");
    // Lookups are read at return from what their entry stashed.
    let lookup = ret
        && !matches!(
            f,
            "__dax_fault" | "dax_fault" | "dax_iomap_pte_fault" | "dax_iomap_pmd_fault"
        );
    match (backend, ret) {
        (Backend::Fentry, false) => vec![format!("fe_{f}")],
        (Backend::Fentry, true) if lookup => vec![format!("fe_{f}"), format!("fx_{f}")],
        (Backend::Fentry, true) => vec![format!("fx_{f}")],
        (Backend::Kprobe, false) => vec![format!("kp_{f}")],
        (Backend::Kprobe, true) if lookup => vec![format!("kp_{f}"), format!("kr_{f}")],
        (Backend::Kprobe, true) => vec![format!("kr_{f}")],
        _ => Vec::new(),
    }
}

/// Whether this build has a program for `symbol` at `step` on `backend`.
pub fn program(backend: Backend, symbol: &str, step: Step) -> Option<String> {
    probe(symbol, step).and_then(|p| programs(backend, p).pop())
}

/// Load and attach the function programs of `probe` at `symbol`.
pub fn attach(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    backend: Backend,
    probe: Probe,
    symbol: &str,
) -> Result<(), AttachError> {
    let names = programs(backend, probe);
    if names.is_empty() {
        return Err(AttachError::NoProgram(symbol.to_string()));
    }
    for name in names {
        let perr = |source| AttachError::ProgramNamed {
            program: name.clone(),
            source,
        };
        let prog = ebpf
            .program_mut(&name)
            .ok_or_else(|| AttachError::NoProgram(name.clone()))?;
        super::load::load_program(prog, symbol, btf).map_err(|e| e.into_attach(&name))?;
        match &name[..3] {
            "fe_" => {
                let p: &mut FEntry = prog.try_into().map_err(perr)?;
                p.attach().map_err(perr)?;
            }
            "fx_" => {
                let p: &mut FExit = prog.try_into().map_err(perr)?;
                p.attach().map_err(perr)?;
            }
            _ => {
                let p: &mut KProbe = prog.try_into().map_err(perr)?;
                p.attach(symbol, 0).map_err(perr)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            probe("dax_iomap_pte_fault", Step::FaultBegin),
            Some(Probe::FnDaxIomapPteFault)
        );
        assert_eq!(
            probe("dax_iomap_pte_fault", Step::FaultEnd),
            Some(Probe::FnDaxIomapPteFaultRet)
        );
        assert_eq!(
            probe("ext4_iomap_begin", Step::Lookup),
            Some(Probe::FnExt4IomapBeginRet)
        );
        assert_eq!(probe("vmf_insert_mixed", Step::Insert), None);
        assert_eq!(
            programs(Backend::Kprobe, Probe::FnExt4IomapBeginRet),
            ["kp_ext4_iomap_begin", "kr_ext4_iomap_begin"]
        );
        assert_eq!(
            programs(Backend::Fentry, Probe::FnDaxIomapPteFaultRet),
            ["fx_dax_iomap_pte_fault"]
        );
        assert_eq!(
            programs(Backend::Fentry, Probe::FnDaxInsertEntry),
            ["fe_dax_insert_entry"]
        );
        assert!(programs(Backend::TpBtf, Probe::FnDaxInsertEntry).is_empty());
        // Every function probe names a function of the plan's table.
        for p in Probe::FUNCS {
            assert!(
                super::super::plan::TABLE
                    .iter()
                    .any(|c| c.symbol == p.function()),
                "{p:?}"
            );
        }
    }
}
