//! `neopro-runtime reset`: the box forgets what this agent did on it — for
//! a golden image before it is cloned, or a box whose club is deleted.
//!
//! Why a command: upstream's `prepare-golden-image.sh` removes site.conf but
//! knows nothing of this agent's state (journal, scheduled updates, agent
//! releases, pushed components, `took-over.json`), and `delete-club.sh`
//! stops only the Node agent. The agent is stopped first (its state is not
//! removed under it), then every entry of `STATE_PATH` is deleted (the
//! folder itself is systemd's `StateDirectory=`), and site.conf is kept or,
//! with `--remove-site-conf`, deleted with the unit disabled (a box without
//! a site must not start an agent at boot). A running agent started on a
//! cloned card sets a foreign state aside by itself
//! ([`neopro_runtime::store::machine_binding`]); `reset` is the deliberate way.

use super::prompt::Prompter;
use neopro_runtime::config::SiteConfig;
use neopro_runtime::store::tree;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    /// Also delete site.conf (the site's id and API key) and disable the
    /// agent's unit: for a golden image, or a box leaving its club.
    #[arg(long)]
    pub remove_site_conf: bool,
    /// Do not ask for confirmation (scripts).
    #[arg(long)]
    pub yes: bool,
}

/// Why `reset` stopped; what was done before is said.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("reset must run as root: `sudo neopro-runtime reset`")]
    NotRoot,
    #[error(
        "reset deletes this box's agent state and asks first: run it in a terminal, or pass --yes"
    )]
    NotConfirmed,
    #[error("reset cancelled: nothing was changed")]
    Cancelled,
    #[error(transparent)]
    Config(#[from] neopro_runtime::config::ConfigError),
    #[error(transparent)]
    Prompt(#[from] super::prompt::PromptError),
    #[error("cannot run {program}: {source}; nothing was changed")]
    Systemctl {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("`systemctl {action} {unit}` failed ({output}); nothing was deleted")]
    Stop {
        action: &'static str,
        unit: String,
        output: String,
    },
    #[error("{unit} is stopped, but deleting {path} failed: {source}")]
    Delete {
        unit: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write to the terminal: {0}")]
    Output(#[from] std::io::Error),
}

/// systemctl's exit code for a unit that is not loaded (not installed):
/// nothing to stop.
const NOT_LOADED: i32 = 5;

/// Resets the box described by the site.conf of `ctx` (a missing site.conf
/// is the defaults: there may be state without a site).
pub fn reset(
    args: &ResetArgs,
    ctx: &super::Context<'_>,
    prompter: &mut dyn Prompter,
    out: &mut dyn Write,
) -> Result<(), ResetError> {
    let config_path = ctx.config_path.as_path();
    let text = match std::fs::read_to_string(config_path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(neopro_runtime::config::ConfigError::Read {
                path: config_path.to_owned(),
                source,
            }
            .into());
        }
    };
    let config = SiteConfig::from_sources(text.as_deref().map(|t| (config_path, t)), ctx.env)?;
    let unit = config.services.agent_unit.clone();
    let state = config.state_path.clone();
    let site_conf = if args.remove_site_conf {
        format!(
            "delete {} (this box's site id and API key) and disable {unit}",
            config_path.display()
        )
    } else {
        format!("keep {}", config_path.display())
    };
    let plan = format!(
        "This stops {unit}, deletes its state in {} (command journal, unsent results, \
         scheduled updates, agent releases, pushed components, caches) and will {site_conf}.",
        state.display()
    );
    if !args.yes {
        if !prompter.interactive() {
            return Err(ResetError::NotConfirmed);
        }
        writeln!(out, "{plan}")?;
        let answer = prompter.ask("Type 'reset' to go on", None)?;
        if answer.trim() != "reset" {
            return Err(ResetError::Cancelled);
        }
    }
    systemctl(&config.services.systemctl, "stop", &unit)?;
    if args.remove_site_conf {
        systemctl(&config.services.systemctl, "disable", &unit)?;
    }
    let deleted = wipe(&state).map_err(|source| ResetError::Delete {
        unit: unit.clone(),
        path: state.clone(),
        source,
    })?;
    writeln!(
        out,
        "{unit} stopped; {deleted} entries of {} deleted",
        state.display()
    )?;
    if args.remove_site_conf {
        match std::fs::remove_file(config_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ResetError::Delete {
                    unit,
                    path: config_path.to_owned(),
                    source,
                });
            }
        }
        writeln!(
            out,
            "{} deleted, {unit} disabled. To give this box a club: `neopro-runtime register`, then \
             `neopro-runtime install-service`",
            config_path.display()
        )?;
    } else {
        writeln!(
            out,
            "{} kept. Start the agent again with `sudo systemctl start {unit}`",
            config_path.display()
        )?;
    }
    Ok(())
}

fn systemctl(program: &Path, action: &'static str, unit: &str) -> Result<(), ResetError> {
    let output = std::process::Command::new(program)
        .args([action, unit])
        .env_remove("NOTIFY_SOCKET")
        .output()
        .map_err(|source| ResetError::Systemctl {
            program: program.to_owned(),
            source,
        })?;
    if output.status.success() || output.status.code() == Some(NOT_LOADED) {
        return Ok(());
    }
    Err(ResetError::Stop {
        action,
        unit: unit.to_owned(),
        output: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

/// Deletes every entry of `state` (links removed, never followed); the
/// folder stays. Returns how many entries there were.
fn wipe(state: &Path) -> std::io::Result<usize> {
    let dir = match cap_std::fs::Dir::open_ambient_dir(state, cap_std::ambient_authority()) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut deleted = 0;
    for entry in dir.entries()? {
        let name = entry?.file_name();
        tree::remove_tree(&dir, Path::new(&name))?;
        deleted += 1;
    }
    neopro_runtime::store::atomic::sync_filesystem(&dir)?;
    Ok(deleted)
}

#[cfg(test)]
mod tests;
