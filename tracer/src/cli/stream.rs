#[derive(clap::Args)]
pub struct Args {}
pub fn run(_a: Args) -> anyhow::Result<super::Outcome> { anyhow::bail!("not built yet") }
