//! `orch completions SHELL` and `orch man`: shell completions and the man page, generated from
//! the clap definition (clap_complete, clap_mangen), so they never drift from the commands.

use clap::{Args, CommandFactory};

/// `orch completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `orch man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one page per command (orch.1, orch-task.1, orch-task-add.1, ...) into this
    /// directory instead of printing orch.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,
}

/// Print the completion script for `args.shell`.
pub fn completions(args: CompletionsArgs) -> anyhow::Result<()> {
    let mut command = crate::cli::Cli::command();
    clap_complete::generate(args.shell, &mut command, "orch", &mut std::io::stdout());
    Ok(())
}

/// Print the man page, or write every command's page into a directory.
pub fn man(args: ManArgs) -> anyhow::Result<()> {
    let command = crate::cli::Cli::command();
    match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| anyhow::anyhow!("create {}: {e}", dir.display()))?;
            clap_mangen::generate_to(command, &dir)
                .map_err(|e| anyhow::anyhow!("write the man pages into {}: {e}", dir.display()))?;
            println!("wrote the man pages into {}", dir.display());
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(command).render(&mut out)?;
            std::io::Write::write_all(&mut std::io::stdout(), &out)?;
        }
    }
    Ok(())
}
