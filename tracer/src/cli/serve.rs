//! STUB: replaced by the helper that owns this subcommand.
#[derive(clap::Args)]
pub struct Args {}
pub fn run(_a: Args) -> anyhow::Result<super::Outcome> {
    anyhow::bail!("this subcommand is not built yet")
}
