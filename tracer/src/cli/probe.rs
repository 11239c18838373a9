//! `daxtrace probe`: what the running kernel offers for each step of the
//! fault path and each backend, and what would be used.

use anyhow::Result;

use super::Outcome;
use tracer::attach::plan;

#[derive(clap::Args)]
pub struct Args {
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
    /// Do not load and attach the programs to check the plan (as root,
    /// probe does by default, then detaches: a kernel may list an attach
    /// point and still refuse it, as fentry's EPERM on locked-down kernels).
    #[arg(long)]
    no_attach: bool,
    #[command(flatten)]
    attach: super::live::BackendArgs,
}

pub fn run(a: Args) -> Result<Outcome> {
    use tracer::attach::{load, privileges};
    // Mount tracefs only if we may; otherwise report what needs root.
    let root = if privileges::is_root() {
        tracer::attach::tracefs::find_or_mount().ok()
    } else {
        None
    };
    let req = plan::Request {
        backend: a.attach.backend,
        btf_file: a.attach.btf.clone(),
    };
    let desc = plan::describe(root.as_deref(), plan::Depth::Full, &req)?;
    let mut plan = plan::plan(&desc, a.attach.backend);
    if !a.no_attach && privileges::can_trace() && load::has_programs() {
        // Everything loaded is dropped (detached and freed) at the end of this block.
        match load::load_described(&a.attach.filter(None, None), plan::Depth::Full) {
            Ok(loaded) => plan = loaded.plan,
            Err(e) => plan.notes.push(format!(
                "checking the plan by attaching failed: {}",
                load::short_error(&e.to_string())
            )),
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", plan.render());
    }
    Ok(Outcome::Clean)
}
