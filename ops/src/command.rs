//! The operator subcommands as the command line sees them (anyhow is
//! fine here: this is CLI glue).

use super::prompt::Terminal;
use super::{Context, diagnose, install_service, register, reset, resync};
use anyhow::Context as _;
use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum OpsCommand {
    /// Create this box's site on the central server and write site.conf (id + API key).
    Register(register::RegisterArgs),
    /// Get a new API key for this site from the central server and save it in site.conf.
    Resync(resync::ResyncArgs),
    /// Check configuration, network, TLS, the server's health and authentication.
    Diagnose(diagnose::DiagnoseArgs),
    /// Install the hardened systemd unit and the narrow polkit rule, then start the agent.
    InstallService(install_service::InstallArgs),
    /// Stop the agent and delete its state (journal, scheduled updates, agent releases,
    /// pushed components); keep site.conf unless --remove-site-conf. Run it in a golden
    /// image before cloning it, and on a box whose club is deleted.
    Reset(reset::ResetArgs),
}

fn read_password_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs one operator command; `config` is the global `--config`.
pub fn run(command: OpsCommand, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let env = |k: &str| std::env::var(k).ok();
    let ctx = Context::new(config, &env);
    let mut out = std::io::stdout();
    match command {
        OpsCommand::Register(mut args) => {
            if args.password_stdin {
                args.password = Some(read_password_line()?);
            }
            let mut prompter = Terminal::new(args.non_interactive);
            runtime()?.block_on(register::register(&args, &ctx, &mut prompter, &mut out))?;
            Ok(ExitCode::SUCCESS)
        }
        OpsCommand::Resync(mut args) => {
            if args.password_stdin {
                args.password = Some(read_password_line()?);
            }
            let mut prompter = Terminal::new(args.non_interactive);
            runtime()?.block_on(resync::resync(&args, &ctx, &mut prompter, &mut out))?;
            Ok(ExitCode::SUCCESS)
        }
        OpsCommand::Diagnose(args) => {
            let report = runtime()?.block_on(diagnose::diagnose(&ctx.config_path, &args));
            diagnose::print(&report, args.json, &mut out)?;
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        OpsCommand::InstallService(args) => {
            install_service::run(&args, &ctx, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        OpsCommand::Reset(args) => {
            if !super::site_file::running_as_root() {
                return Err(reset::ResetError::NotRoot.into());
            }
            let mut prompter = Terminal::new(false);
            reset::reset(&args, &ctx, &mut prompter, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
