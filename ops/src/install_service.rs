//! `neopro-runtime install-service`: the systemd unit (hardened, dedicated
//! user, `Type=notify` + watchdog) and a polkit rule that lets that user
//! restart only the NEOPRO units and reboot — instead of the upstream
//! agent's blanket password-less sudo. Commands run as argument vectors.

use neopro_runtime::config::SiteConfig;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The unit's name.
pub const UNIT: &str = "neopro-runtime.service";
/// Where the polkit rule goes.
pub const POLKIT_RULE: &str = "/etc/polkit-1/rules.d/50-neopro-runtime.rules";
/// Units the agent may restart by default (the web app, the admin app, the
/// hotspot, the web server, itself).
pub const DEFAULT_UNITS: &[&str] = &[
    "neopro-app.service",
    "neopro-admin.service",
    "hostapd.service",
    "nginx.service",
    UNIT,
];

#[derive(Debug, Clone, clap::Args)]
pub struct InstallArgs {
    /// The agent's user (a system user, created if missing).
    #[arg(long, default_value = "neopro")]
    pub user: String,
    /// The agent's group (default: the group owning NEOPRO_ROOT, so the web
    /// app and the agent can both write the NEOPRO folders).
    #[arg(long)]
    pub group: Option<String>,
    /// The agent binary the unit starts (default: this program).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Another unit the agent may restart (repeatable; added to the defaults).
    #[arg(long = "allow-unit", value_name = "UNIT")]
    pub allow_units: Vec<String>,
    /// Watchdog period in seconds (the agent pings every half of it).
    #[arg(long, default_value_t = 60)]
    pub watchdog_sec: u32,
    /// Print every file and command instead of doing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Write the files under DIR instead of / and run no command (packaging, tests).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

/// Why the installation stopped.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(
        "install-service must run as root: `sudo neopro-runtime install-service` \
         (or --dry-run to see what it would do)"
    )]
    NotRoot,
    #[error(transparent)]
    Config(#[from] neopro_runtime::config::ConfigError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {reason}")]
    Command { command: String, reason: String },
    #[error("'{0}' is not a valid unit name")]
    BadUnit(String),
    #[error("'{0}' is not a valid user or group name")]
    BadName(String),
    #[error(
        "'{0}' cannot go in the systemd unit as is (it contains a space, a quote, a backslash, \
         '%', '$' or a control character, which systemd would split or expand): use a path \
         without them"
    )]
    UnsafePath(PathBuf),
}

/// Paths go into `ExecStart=`, `Environment=` and `ReadWritePaths=`
/// unquoted, where systemd splits on spaces, unquotes, and expands `%` and
/// `$`: refused rather than escaped, so the unit says exactly the path.
fn check_unit_path(path: &Path) -> Result<(), InstallError> {
    let plain = path.to_str().is_some_and(|p| {
        !p.chars()
            .any(|c| c.is_whitespace() || c.is_control() || "\"'\\%$".contains(c))
    });
    if plain {
        Ok(())
    } else {
        Err(InstallError::UnsafePath(path.to_owned()))
    }
}

/// Everything the unit depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitParams {
    pub binary: PathBuf,
    pub config_file: PathBuf,
    pub user: String,
    pub group: String,
    pub watchdog_sec: u32,
    /// Folders the agent writes (`-` prefixed: a missing one is not fatal).
    pub rw_paths: Vec<PathBuf>,
    /// `StateDirectory=` name when STATE_PATH is `/var/lib/<name>`.
    pub state_directory: Option<String>,
}

impl UnitParams {
    /// The stock install: /usr/bin binary, /etc/neopro/site.conf, the
    /// default folders, user `neopro` in group `pi`.
    pub fn stock() -> UnitParams {
        let config = SiteConfig::from_sources(None, &|_| None);
        Self::for_config(
            config.as_ref().ok(),
            Path::new("/usr/bin/neopro-runtime"),
            Path::new(neopro_runtime::config::DEFAULT_CONFIG_FILE),
            "neopro",
            "pi",
            60,
        )
    }

    pub fn for_config(
        config: Option<&SiteConfig>,
        binary: &Path,
        config_file: &Path,
        user: &str,
        group: &str,
        watchdog_sec: u32,
    ) -> UnitParams {
        let mut rw_paths = Vec::new();
        let mut state_directory = None;
        if let Some(c) = config {
            let config_dir = c.config_path.parent().map(Path::to_owned);
            let log_dir = c.log_path.parent().map(Path::to_owned);
            let mut all: Vec<PathBuf> = [
                Some(c.neopro_root.clone()),
                Some(c.videos_path.clone()),
                config_dir,
                Some(c.backup_path.clone()),
                log_dir,
            ]
            .into_iter()
            .flatten()
            .collect();
            match c.state_path.strip_prefix("/var/lib") {
                Ok(name) if name.components().count() == 1 => {
                    state_directory = Some(name.display().to_string());
                }
                _ => all.push(c.state_path.clone()),
            }
            all.sort();
            for p in all {
                if !rw_paths.iter().any(|kept: &PathBuf| p.starts_with(kept)) {
                    rw_paths.push(p);
                }
            }
        }
        UnitParams {
            binary: binary.to_owned(),
            config_file: config_file.to_owned(),
            user: user.to_owned(),
            group: group.to_owned(),
            watchdog_sec,
            rw_paths,
            state_directory,
        }
    }
}

/// The systemd unit.
pub fn render_unit(p: &UnitParams) -> String {
    let rw: String = p
        .rw_paths
        .iter()
        .map(|d| format!("ReadWritePaths=-{}\n", d.display()))
        .collect();
    let state = p
        .state_directory
        .as_ref()
        .map(|s| format!("StateDirectory={s}\nStateDirectoryMode=0700\n"))
        .unwrap_or_default();
    format!(
        "# neopro-runtime: the NEOPRO device agent.\n\
# Written by `neopro-runtime install-service`; change it with\n\
# `systemctl edit neopro-runtime` (a drop-in) rather than here.\n\
[Unit]\n\
Description=NEOPRO device agent (neopro-runtime)\n\
After=network-online.target time-sync.target\n\
Wants=network-online.target\n\
# Never give up restarting: a box in a gym has nobody to restart it.\n\
StartLimitIntervalSec=0\n\
\n\
[Service]\n\
Type=notify\n\
NotifyAccess=main\n\
ExecStart={binary} --config {config} run\n\
Environment=CONFIG_FILE={config}\n\
User={user}\n\
Group={group}\n\
# get_logs reads the journal.\n\
SupplementaryGroups=systemd-journal\n\
# Files the agent writes stay writable by the web app (same group).\n\
UMask=0002\n\
Restart=always\n\
RestartSec=5\n\
# The agent pings the watchdog every WatchdogSec/2 from its main loop.\n\
WatchdogSec={watchdog}\n\
# A hung agent killed by the watchdog gets 10 s, not TimeoutStopSec, to go.\n\
TimeoutAbortSec=10\n\
# 30 s for running commands to finish and report, then the link closes.\n\
TimeoutStopSec=45\n\
# Start-up may finish or roll back an interrupted software update (services\n\
# stopped and started, health gate: minutes) and compile the components on a\n\
# slow SD card. Above update_software's own 30 min limit, so systemd never\n\
# kills a start the agent would let finish (the default 90 s could, in a loop).\n\
TimeoutStartSec=35min\n\
\n\
# Hardening. Privileged actions (restarting the NEOPRO units, rebooting)\n\
# go through systemd/logind over D-Bus and the polkit rule written next to\n\
# this unit, so NoNewPrivileges does not get in the way (no sudo).\n\
NoNewPrivileges=yes\n\
ProtectSystem=strict\n\
ProtectHome=read-only\n\
{rw}{state}# A marker in /run outlives the agent's restarts but not a reboot: how the\n\
# agent tells at its next start whether a reboot it asked for happened (a\n\
# container keeps the kernel's boot id across its reboots).\n\
RuntimeDirectory=neopro-runtime\n\
RuntimeDirectoryMode=0700\n\
RuntimeDirectoryPreserve=yes\n\
PrivateTmp=yes\n\
PrivateDevices=yes\n\
ProtectKernelTunables=yes\n\
ProtectKernelModules=yes\n\
ProtectKernelLogs=yes\n\
ProtectControlGroups=yes\n\
ProtectClock=yes\n\
ProtectHostname=yes\n\
RestrictSUIDSGID=yes\n\
RestrictRealtime=yes\n\
RestrictNamespaces=yes\n\
LockPersonality=yes\n\
RemoveIPC=yes\n\
# Other users' processes are invisible; /proc/stat and /proc/meminfo (metrics) stay.\n\
ProtectProc=invisible\n\
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK\n\
SystemCallArchitectures=native\n\
CapabilityBoundingSet=\n\
PrivateIPC=yes\n\
# Not MemoryDenyWriteExecute: wasmtime compiles components to machine code.\n\
# @system-service holds what wasmtime needs (mmap, mprotect, membarrier are\n\
# in @default on systemd 252); checked on amd64 by `cargo xtask system-test`\n\
# (every built-in command and a fresh JIT compile, no SIGSYS). It cannot be\n\
# checked under qemu-user (seccomp then filters qemu's own host syscalls):\n\
# check a new arm64 or armhf syscall need on a real Pi.\n\
SystemCallFilter=@system-service\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n",
        binary = p.binary.display(),
        config = p.config_file.display(),
        user = p.user,
        group = p.group,
        watchdog = p.watchdog_sec,
    )
}

/// systemd verbs the rule grants: update_software stops and starts the web
/// apps around the swap, restart_service restarts. Never enable, disable,
/// mask, reload-or-* or anything that outlives a boot.
pub const POLKIT_VERBS: &[&str] = &["start", "stop", "restart"];

/// The polkit rule: `user` may start, stop and restart `units` and reboot;
/// nothing else.
pub fn render_polkit(user: &str, units: &[String]) -> String {
    let quote = |v: &str| format!("\"{v}\"");
    let list: Vec<String> = units.iter().map(|u| quote(u)).collect();
    let verbs: Vec<String> = POLKIT_VERBS.iter().map(|v| quote(v)).collect();
    format!(
        "// Written by `neopro-runtime install-service`: the NEOPRO agent's user may\n\
// start, stop and restart these units and reboot the box; nothing else (no sudo).\n\
polkit.addRule(function(action, subject) {{\n\
    if (subject.user !== \"{user}\") {{\n\
        return polkit.Result.NOT_HANDLED;\n\
    }}\n\
    var units = [{units}];\n\
    var verbs = [{verbs}];\n\
    if (action.id === \"org.freedesktop.systemd1.manage-units\" &&\n\
        verbs.indexOf(action.lookup(\"verb\")) >= 0 &&\n\
        units.indexOf(action.lookup(\"unit\")) >= 0) {{\n\
        return polkit.Result.YES;\n\
    }}\n\
    if (action.id === \"org.freedesktop.login1.reboot\" ||\n\
        action.id === \"org.freedesktop.login1.reboot-multiple-sessions\") {{\n\
        return polkit.Result.YES;\n\
    }}\n\
    return polkit.Result.NOT_HANDLED;\n\
}});\n",
        units = list.join(", "),
        verbs = verbs.join(", ")
    )
}

/// A file to write.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedFile {
    pub path: PathBuf,
    pub mode: u32,
    pub contents: String,
}

/// Everything install-service will do.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub files: Vec<PlannedFile>,
    pub commands: Vec<Vec<String>>,
    /// Things the operator should know (not errors).
    pub notes: Vec<String>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Name of the group `gid` in a group file.
fn group_name(group_file: &Path, gid: u32) -> Option<String> {
    std::fs::read_to_string(group_file)
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 3 && f[2].parse::<u32>().ok() == Some(gid)).then(|| f[0].to_owned())
        })
}

/// The gid of group `name` in a group file.
fn group_gid(group_file: &Path, name: &str) -> Option<u32> {
    std::fs::read_to_string(group_file)
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 3 && f[0] == name).then(|| f[2].parse().ok())?
        })
}

/// Whether a process of `uid` in group `gid` may enter the folder `meta`
/// describes, by its mode bits (an ACL granting more is re-granted, which
/// is harmless).
fn can_enter(meta: &std::fs::Metadata, uid: Option<u32>, gid: Option<u32>) -> bool {
    let mode = meta.mode();
    if uid == Some(0) || uid.is_some_and(|u| u == meta.uid()) {
        return uid == Some(0) || mode & 0o100 != 0;
    }
    if gid.is_some_and(|g| g == meta.gid()) {
        return mode & 0o010 != 0;
    }
    mode & 0o001 != 0
}

/// What install-service granted with ACLs (`tree <dir>` / `traverse
/// <dir>`), so that `apt purge` removes exactly that.
pub const ACL_RECORD: &str = "/etc/neopro/install-service.acl";

/// Works out the files and commands; touches nothing.
pub fn plan(args: &InstallArgs, config_file: &Path, etc: &Path) -> Result<Plan, InstallError> {
    if !valid_name(&args.user) {
        return Err(InstallError::BadName(args.user.clone()));
    }
    let mut notes = Vec::new();
    let config = if config_file.exists() {
        SiteConfig::load(Some(config_file))?
    } else {
        notes.push(format!(
            "{} does not exist yet: run `sudo neopro-runtime register` before the agent can connect",
            config_file.display()
        ));
        SiteConfig::from_sources(None, &|_| None)?
    };
    let root_meta = std::fs::metadata(&config.neopro_root).ok();
    let group = match &args.group {
        Some(g) => g.clone(),
        None => root_meta
            .as_ref()
            .and_then(|m| group_name(&etc.join("group"), m.gid()))
            .filter(|g| g != "root")
            .unwrap_or_else(|| args.user.clone()),
    };
    if !valid_name(&group) {
        return Err(InstallError::BadName(group));
    }
    let mut units: Vec<String> = DEFAULT_UNITS.iter().map(|u| (*u).to_owned()).collect();
    // The agent restarts itself under the name site.conf gives it, and may
    // control every unit MANAGED_SERVICES lists (except the upstream agent's
    // name, which the agent maps to its own unit and never calls).
    let agent_unit = std::iter::once(&config.services.agent_unit);
    let managed = config
        .services
        .managed
        .iter()
        .filter(|u| u.as_str() != "neopro-sync-agent");
    for u in args.allow_units.iter().chain(agent_unit).chain(managed) {
        let u = if u.contains('.') {
            u.clone()
        } else {
            format!("{u}.service")
        };
        if !neopro_runtime::platform::systemctl::is_valid_unit_name(&u) {
            return Err(InstallError::BadUnit(u));
        }
        if !units.contains(&u) {
            units.push(u);
        }
    }
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => {
            std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/usr/bin/neopro-runtime"))
        }
    };
    let binary = std::path::absolute(&binary).unwrap_or(binary);
    let config_abs = std::path::absolute(config_file).unwrap_or_else(|_| config_file.to_owned());
    let params = UnitParams::for_config(
        Some(&config),
        &binary,
        &config_abs,
        &args.user,
        &group,
        args.watchdog_sec,
    );
    for path in [&params.binary, &params.config_file]
        .into_iter()
        .chain(&params.rw_paths)
    {
        check_unit_path(path)?;
    }
    if let Some(name) = &params.state_directory {
        check_unit_path(Path::new(name))?;
    }

    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<String>>();
    let mut commands = Vec::new();
    let user_exists = super::site_file::lookup_user(&etc.join("passwd"), &args.user).is_ok();
    if !user_exists {
        commands.push(s(&[
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            &args.user,
        ]));
    }
    // Access that does not depend on a one-time chmod: ACLs on each folder
    // the agent writes, with default entries so that what the web app (or
    // anyone) creates there later, whatever its umask, stays writable by the
    // agent, and what the agent writes stays writable by the app's group.
    // Parent folders the agent cannot enter (Debian 12 makes /home/pi 0700)
    // get search permission for the agent's user only.
    let agent_uid = super::site_file::lookup_user(&etc.join("passwd"), &args.user)
        .ok()
        .map(|o| o.uid);
    let agent_gid = group_gid(&etc.join("group"), &group);
    let mut acl_record = String::new();
    let mut entered: Vec<PathBuf> = Vec::new();
    for dir in &params.rw_paths {
        if dir.starts_with(&config.state_path) || !dir.is_dir() {
            continue;
        }
        let mut ancestors: Vec<&Path> = dir.ancestors().skip(1).collect();
        ancestors.reverse();
        for parent in ancestors {
            if entered.iter().any(|e| e == parent) {
                continue;
            }
            entered.push(parent.to_owned());
            let Ok(meta) = std::fs::metadata(parent) else {
                continue;
            };
            if can_enter(&meta, agent_uid, agent_gid) {
                continue;
            }
            let shown = parent.display().to_string();
            notes.push(format!(
                "{shown} is mode {:04o}: the agent's user {} could not enter it (no NEOPRO file \
                 would be readable); giving {} search permission on it, nothing else: \
                 setfacl -m u:{}:x {shown}",
                meta.mode() & 0o7777,
                args.user,
                args.user,
                args.user
            ));
            commands.push(s(&["setfacl", "-m", &format!("u:{}:x", args.user), &shown]));
            acl_record.push_str(&format!("traverse {shown}\n"));
        }
        let shown = dir.display().to_string();
        let entries = format!(
            "u:{user}:rwX,d:u:{user}:rwX,g:{group}:rwX,d:g:{group}:rwX",
            user = args.user
        );
        notes.push(format!(
            "{shown}: read/write for {} and group {group}, also for what is created there later \
             (default ACLs): setfacl -R -P -m {entries} {shown}",
            args.user
        ));
        // -P: never follow a link (one in the NEOPRO folders could point
        // anywhere, e.g. /etc).
        commands.push(s(&["setfacl", "-R", "-P", "-m", &entries, &shown]));
        acl_record.push_str(&format!("tree {shown}\n"));
    }
    if config_file.exists() {
        let conf = config_abs.display().to_string();
        commands.push(s(&["chown", &format!("{}:{group}", args.user), &conf]));
        commands.push(s(&["chmod", "0600", &conf]));
    }
    commands.push(s(&["systemctl", "daemon-reload"]));
    commands.push(s(&["systemctl", "enable", UNIT]));
    commands.push(s(&["systemctl", "restart", UNIT]));

    Ok(Plan {
        files: vec![
            PlannedFile {
                path: PathBuf::from("/etc/systemd/system").join(UNIT),
                mode: 0o644,
                contents: render_unit(&params),
            },
            PlannedFile {
                path: PathBuf::from(POLKIT_RULE),
                mode: 0o644,
                contents: render_polkit(&args.user, &units),
            },
            PlannedFile {
                path: PathBuf::from(ACL_RECORD),
                mode: 0o644,
                contents: format!(
                    "# ACL entries `neopro-runtime install-service` gave the user {}; \
                     `apt purge neopro-runtime` removes them\n{acl_record}",
                    args.user
                ),
            },
        ],
        commands,
        notes,
    })
}

/// `path` under `root` (`/etc/x` → `root/etc/x`).
fn under(root: Option<&Path>, path: &Path) -> PathBuf {
    match root {
        Some(r) => r.join(path.strip_prefix("/").unwrap_or(path)),
        None => path.to_owned(),
    }
}

fn display_command(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Replaces `path` so that systemd and polkitd (which reloads rules as soon
/// as the folder changes) only ever see the old or the whole new file, with
/// its final mode: temp file in the same folder, fsync, rename, fsync folder.
fn replace_file(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        // The umask may have taken bits away.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Writes the files (under `--root` if given) and runs the commands (not
/// with `--root`); `--dry-run` only prints.
pub fn run(
    args: &InstallArgs,
    ctx: &super::Context<'_>,
    out: &mut dyn std::io::Write,
) -> Result<(), InstallError> {
    let root = args.root.as_deref();
    let etc = under(root, Path::new("/etc"));
    let plan = plan(args, &ctx.config_path, &etc)?;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| InstallError::Write { path, source }
    };
    if !args.dry_run && root.is_none() && !super::site_file::running_as_root() {
        return Err(InstallError::NotRoot);
    }
    for note in &plan.notes {
        let _ = writeln!(out, "note: {note}");
    }
    for f in &plan.files {
        let target = under(root, &f.path);
        if args.dry_run {
            let _ = writeln!(
                out,
                "--- would write {} (mode {:04o}) ---\n{}",
                target.display(),
                f.mode,
                f.contents
            );
            continue;
        }
        replace_file(&target, f.contents.as_bytes(), f.mode).map_err(io(&target))?;
        let _ = writeln!(out, "wrote {}", target.display());
    }
    for argv in &plan.commands {
        let shown = display_command(argv);
        if args.dry_run || root.is_some() {
            let _ = writeln!(
                out,
                "{} {shown}",
                if args.dry_run {
                    "would run:"
                } else {
                    "not run (--root):"
                }
            );
            continue;
        }
        let Some((program, arguments)) = argv.split_first() else {
            continue;
        };
        let _ = writeln!(out, "running: {shown}");
        let status = std::process::Command::new(program)
            .args(arguments)
            .status()
            .map_err(|e| InstallError::Command {
                command: shown.clone(),
                reason: e.to_string(),
            })?;
        if !status.success() {
            return Err(InstallError::Command {
                command: shown,
                reason: status.to_string(),
            });
        }
    }
    if !args.dry_run && root.is_none() {
        let _ = writeln!(
            out,
            "installed: `systemctl status neopro-runtime`, logs with `journalctl -u neopro-runtime -f`"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
