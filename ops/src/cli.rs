//! The `neopro-runtime` command line (anyhow lives here and only here).

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use neopro_runtime::config::SiteConfig;
use neopro_runtime::host::{HostServices, ProgressSink};
use neopro_runtime::sandbox::registry::{self, ComponentSpec, Registry};
use neopro_runtime::sandbox::{CommandRequest, Sandbox};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(name = "neopro-runtime", version, about = "NEOPRO device agent")]
struct Cli {
    /// site.conf to use (default: $CONFIG_FILE, else /etc/neopro/site.conf).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the agent: connect to the central server and execute its commands.
    Run,
    /// Run one component locally and print its result JSON on stdout.
    RunComponent {
        /// Installed component name, command type, or path to a .wasm file
        /// (its manifest is the .toml next to it; a .sig beside it is
        /// verified against --key, else TRUSTED_COMPONENT_KEYS, and must be
        /// valid). After running a .wasm file, warns when a box with this
        /// site.conf (its site policy and ALLOWED_COMMANDS) would refuse to
        /// install it; `component check` gives the full report.
        component: String,
        /// A trusted public key (ed25519:<hex>) for the .sig beside a .wasm
        /// file, instead of site.conf's TRUSTED_COMPONENT_KEYS; repeatable.
        #[arg(long = "key", value_name = "PUBLIC_KEY")]
        keys: Vec<String>,
        /// Run a .wasm file without checking the .sig beside it (a local
        /// test of a build signed before; a box always checks).
        #[arg(long, conflicts_with = "keys")]
        ignore_signature: bool,
        /// The command's data object as JSON.
        #[arg(long, conflicts_with = "data_file")]
        data: Option<String>,
        /// Read the data object from a file.
        #[arg(long, value_name = "FILE")]
        data_file: Option<PathBuf>,
        /// Command type to run (default: the component's first).
        #[arg(long = "type", value_name = "COMMAND_TYPE")]
        command_type: Option<String>,
    },
    /// List the installed components with their commands and grants.
    Components,
    /// Operator tools for pushed components: keygen, sign, verify, inspect.
    #[command(subcommand)]
    Component(crate::component::ComponentCommand),
    #[command(flatten)]
    Ops(crate::command::OpsCommand),
    /// Internal: compile the component on stdin into this artifact (the
    /// agent runs it as a child so the compiler's memory leaves with it).
    #[command(name = "precompile-component", hide = true)]
    PrecompileComponent { artifact: PathBuf },
    /// Internal (package build): precompile every `<name>.wasm` of
    /// `components` for the package of Rust target `target` into `out`,
    /// named as that package's agent looks for them.
    #[command(name = "precompile-package", hide = true)]
    PrecompilePackage {
        #[arg(long)]
        target: String,
        components: PathBuf,
        out: PathBuf,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(config: &SiteConfig, agent: bool) {
    neopro_runtime::logging::init(config, agent);
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Ops(ops) = cli.command {
        return crate::command::run(ops, cli.config.as_deref());
    }
    // Needs no site.conf: it only compiles what it is given.
    if let Command::PrecompilePackage {
        target,
        components,
        out,
    } = &cli.command
    {
        crate::precompile::run(target, components, out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::PrecompileComponent { artifact } = &cli.command {
        neopro_runtime::sandbox::compile_child::run_child(artifact)?;
        return Ok(ExitCode::SUCCESS);
    }
    let config = SiteConfig::load(cli.config.as_deref()).context("invalid configuration")?;
    init_logging(&config, matches!(cli.command, Command::Run));
    match cli.command {
        Command::RunComponent {
            component,
            keys,
            ignore_signature,
            data,
            data_file,
            command_type,
        } => {
            let trust = if ignore_signature {
                Trust::Ignore
            } else {
                Trust::Keys(keys)
            };
            run_component(&config, &component, &trust, data, data_file, command_type)
        }
        Command::Components => list_components(&config),
        Command::Component(command) => crate::component::run(&config, command),
        Command::Run => {
            // Before anything reads the state: a state copied from another
            // box (a cloned SD card) is set aside.
            neopro_runtime::store::machine_binding::check_at_start(&config.state_path);
            // May exec a newer agent from its slot (same PID), or return.
            neopro_runtime::selfupdate::launcher::launch(&config.state_path);
            run_agent(config, cli.config)
        }
        Command::Ops(_) => Ok(ExitCode::SUCCESS),
        Command::PrecompileComponent { .. } | Command::PrecompilePackage { .. } => {
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_agent(config: SiteConfig, config_file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    // One async worker is plenty: the async side only moves messages;
    // components run on blocking threads. Fewer threads, smaller RSS.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(neopro_runtime::agent::run(
        config,
        config_file,
        neopro_runtime::agent::AgentOptions {
            compiler: std::env::current_exe().ok(),
            ..neopro_runtime::agent::AgentOptions::default()
        },
        neopro_runtime::agent::stop_signal(),
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// How `run-component` treats the .sig beside a .wasm file.
enum Trust {
    /// Verify it against these keys, or site.conf's when none are given.
    Keys(Vec<String>),
    /// Do not look at it (`--ignore-signature`).
    Ignore,
}

fn find_component(
    config: &SiteConfig,
    which: &str,
    trust: &Trust,
) -> anyhow::Result<ComponentSpec> {
    if is_wasm_path(which) {
        let path = Path::new(which);
        let spec = registry::spec_for_wasm(path)?;
        let bundle = crate::component::Bundle::open(path)?;
        if let (Some(_), Trust::Ignore) = (&bundle.signature, trust) {
            eprintln!(
                "signature: {} not checked (--ignore-signature)",
                bundle.signature_path.display()
            );
        } else if let (Some(_), Trust::Keys(given)) = (&bundle.signature, trust) {
            let keys = if given.is_empty() {
                crate::component::site_keys(config)?
            } else {
                given
                    .iter()
                    .map(|k| {
                        neopro_runtime::signing::components::PublicKey::parse(k).context("--key")
                    })
                    .collect::<anyhow::Result<_>>()?
            };
            let signer = bundle
                .verify(&keys)
                .with_context(|| format!("refusing to run {which}"))?;
            if let Some(signer) = signer {
                eprintln!("signature: valid, by trusted key {signer}");
            }
        }
        return Ok(spec);
    }
    let dir = registry::components_dir(config);
    let (mut registry, problems) = Registry::scan(&dir)?;
    for p in problems {
        tracing::warn!("{p}");
    }
    let (_, pushed_problems) = neopro_runtime::pushed::overlay(config, &mut registry);
    for p in pushed_problems {
        tracing::warn!("{p}");
    }
    registry
        .by_name(which)
        .or_else(|| registry.for_command(which))
        .cloned()
        .with_context(|| {
            format!(
                "no component named '{which}' or handling '{which}' in {}",
                dir.display()
            )
        })
}

/// Prints progress events on stderr, where they do not mix with the result.
struct StderrProgress;

impl ProgressSink for StderrProgress {
    fn emit(&self, event: &str, payload: serde_json::Value) {
        eprintln!("{event} {payload}");
    }
}

fn run_component(
    config: &SiteConfig,
    which: &str,
    trust: &Trust,
    data: Option<String>,
    data_file: Option<PathBuf>,
    command_type: Option<String>,
) -> anyhow::Result<ExitCode> {
    let data = match (data, data_file) {
        (Some(d), _) => d,
        (None, Some(f)) => {
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?
        }
        (None, None) => "{}".to_owned(),
    };
    match serde_json::from_str::<serde_json::Value>(&data) {
        Ok(serde_json::Value::Object(_)) => {}
        Ok(_) => bail!("--data must be a JSON object, like {{\"lines\": 50}}"),
        Err(e) => bail!("--data is not valid JSON: {e}"),
    }
    let spec = find_component(config, which, trust)?;
    let command_type = match command_type {
        Some(t) if spec.manifest.commands.contains(&t) => t,
        Some(t) => bail!("component '{}' does not handle '{t}'", spec.manifest.name),
        None => spec.manifest.commands.first().cloned().unwrap_or_default(),
    };
    let services = Arc::new(HostServices::from_config(config));
    let mut sandbox = Sandbox::new(services, Some(&config.cache_dir()))?;
    sandbox.use_packaged_artifacts(
        &neopro_runtime::sandbox::registry::components_dir(config)
            .join(neopro_runtime::sandbox::registry::PACKAGED_ARTIFACTS),
    );
    let component = sandbox.load_file(&spec.wasm_path, spec.manifest.clone())?;
    tracing::debug!("{} loaded: {:?}", spec.manifest.name, component.origin());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let request = CommandRequest {
        id: format!("local-{}-{nanos}", std::process::id()),
        command_type,
        data,
    };
    let outcome = match sandbox.execute(&component, &request, Some(Arc::new(StderrProgress))) {
        Ok(json) => {
            let value: serde_json::Value = serde_json::from_str(&json)?;
            println!("{}", serde_json::to_string_pretty(&value)?);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error ({}): {}", e.kind(), e.message());
            ExitCode::from(1)
        }
    };
    if is_wasm_path(which) {
        warn_if_a_box_would_refuse(config, Path::new(which))?;
    }
    Ok(outcome)
}

fn is_wasm_path(which: &str) -> bool {
    which.ends_with(".wasm") || which.contains('/')
}

/// A local run ignores the site policy and the allowlist; a box does not:
/// say what `install_component` on a box with this site.conf would refuse
/// (the signature aside: see `component check`).
fn warn_if_a_box_would_refuse(config: &SiteConfig, wasm: &Path) -> anyhow::Result<()> {
    let bundle = crate::component::Bundle::open(wasm)?;
    let report = neopro_runtime::pushed::check::check(
        config,
        &config.component_policy_path,
        &bundle.candidate(),
        neopro_runtime::pushed::check::Depth {
            link: None,
            signature: false,
            installed: None,
        },
    );
    if report.would_install() {
        return Ok(());
    }
    eprintln!(
        "warning: a box with this site.conf would refuse to install {}:",
        wasm.display()
    );
    for line in crate::component::report_lines(&report) {
        if !line.starts_with("ok ") && !line.starts_with("skipped ") {
            eprintln!("warning:   {line}");
        }
    }
    eprintln!(
        "warning: `neopro-runtime component check {}` gives the full report",
        wasm.display()
    );
    Ok(())
}

fn list_components(config: &SiteConfig) -> anyhow::Result<ExitCode> {
    let dir = registry::components_dir(config);
    let (mut registry, mut problems) = Registry::scan(&dir)?;
    let (_, pushed_problems) = neopro_runtime::pushed::overlay(config, &mut registry);
    println!(
        "components in {} and {} (pushed):",
        dir.display(),
        config.pushed_components_dir().display()
    );
    let mut count = 0;
    for spec in registry.components() {
        count += 1;
        let m = &spec.manifest;
        match &spec.origin {
            neopro_runtime::sandbox::registry::Origin::BuiltIn => {
                println!("{} {}", m.name, m.version)
            }
            neopro_runtime::sandbox::registry::Origin::Pushed { .. } => {
                println!("{} {} (pushed)", m.name, m.version)
            }
        }
        println!("  commands: {}", m.commands.join(", "));
        println!(
            "  limits:   {} MiB, {} s",
            m.limits.memory_mib, m.limits.timeout_secs
        );
        let grants = m.grant_summary();
        if grants.is_empty() {
            println!("  grants:   none");
        } else {
            println!("  grants:   {}", grants.join("; "));
        }
    }
    if count == 0 {
        println!("  (none)");
    }
    for p in problems.drain(..) {
        eprintln!("warning: {p}");
    }
    for p in pushed_problems {
        eprintln!("warning: {p}");
    }
    Ok(ExitCode::SUCCESS)
}
