//! `cargo xtask lab`: placeholder replaced below.
use anyhow::Result;

#[derive(clap::Args)]
pub struct LabArgs {}

pub fn lab(_args: LabArgs) -> Result<()> {
    anyhow::bail!("not yet")
}
