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
    #[command(flatten)]
    attach: super::live::BackendArgs,
}

pub fn run(a: Args) -> Result<Outcome> {
    // Mount tracefs only if we may; otherwise report what needs root.
    let root = if tracer::attach::privileges::is_root() { tracer::attach::tracefs::find_or_mount().ok() } else { None };
    let req = plan::Request { backend: a.attach.backend, btf_file: a.attach.btf.clone() };
    let desc = plan::describe(root.as_deref(), plan::Depth::Full, &req)?;
    let plan = plan::plan(&desc, a.attach.backend);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", plan.render());
    }
    Ok(Outcome::Clean)
}
