//! `edge-sensor generate man|completions DIR` (hidden): the manual pages
//! and shell completions the Debian package ships, generated from this
//! command line so they never drift from it (clap_mangen, clap_complete).

use std::{fs, path::Path};

use anyhow::{Context, Result};
use clap::CommandFactory;

use super::{Cli, GenerateArgs, GenerateWhat};

pub fn generate(args: GenerateArgs) -> Result<()> {
    fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    match args.what {
        GenerateWhat::Man => man(&args.dir),
        GenerateWhat::Completions => completions(&args.dir),
    }
}

/// `edge-sensor.1` and one page per subcommand (`edge-sensor-run.1`, ...).
fn man(dir: &Path) -> Result<()> {
    let cmd = Cli::command();
    clap_mangen::generate_to(cmd, dir).context("writing the manual pages")?;
    Ok(())
}

/// bash, zsh and fish completion scripts.
fn completions(dir: &Path) -> Result<()> {
    use clap_complete::{Shell, generate_to};
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = Cli::command();
        generate_to(shell, &mut cmd, "edge-sensor", dir)
            .with_context(|| format!("writing the {shell} completions"))?;
    }
    Ok(())
}
