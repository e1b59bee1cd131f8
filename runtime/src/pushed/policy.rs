//! The site policy: the most a component pushed by the server may be given
//! on this box. The site (not the server) writes it, so a compromised or
//! mistaken server cannot grant a pushed component more than the club's
//! installer allowed.
//!
//! ```toml
//! allow-unsigned = false        # default: only signed components install
//! extend-allowlist = false      # may pushed command types run without
//!                               # being listed in ALLOWED_COMMANDS?
//! replace-builtin = []          # built-in command types a pushed
//!                               # component may take over
//! allow-downgrade = false       # may install_component put an older
//!                               # version over the installed one?
//! [limits]
//! max-memory-mib = 64
//! max-timeout-secs = 300
//! max-compile-mib = 256         # refuse components whose first compile
//!                               # would need more memory than this
//! [grants]                      # same syntax as a manifest's [grants]
//! files = { videos = "ro" }
//! system = true
//! ```
//!
//! No policy file means pushed components are disabled on the box.

use crate::manifest::{Access, Grants, Manifest, RootName, host_matches};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Default ceilings when the policy has no `[limits]`.
const DEFAULT_MAX_MEMORY_MIB: u32 = 64;
const DEFAULT_MAX_TIMEOUT_SECS: u32 = 300;
/// What the first compile of a pushed component may cost by default: a
/// 1 GB Pi also plays video. Fits Rust and QuickJS components (a 1.6 MB
/// QuickJS one needs ~115 MB), refuses SpiderMonkey ones (13 MB, ~510 MB).
const DEFAULT_MAX_COMPILE_MIB: u32 = 256;

/// The compiler's peak memory for a component of `wasm_bytes`, estimated
/// from measurements with this engine (cranelift, parallel compilation on
/// 2 cores): ~40 MiB per MiB of WebAssembly above a fixed ~32 MiB
/// (docs/typescript-sdk.md, "Engine: QuickJS by default"). Deliberately on
/// the high side.
pub fn estimated_compile_mib(wasm_bytes: u64) -> u64 {
    32 + (wasm_bytes * 40).div_ceil(1 << 20)
}

/// The policy cannot be read, or a component goes beyond it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error(
        "pushed components are disabled on this box: there is no site policy at {0} (see config/component-policy.toml.example)"
    )]
    Missing(PathBuf),
    #[error("cannot read the site policy {path}: {detail}")]
    Read { path: PathBuf, detail: String },
    #[error("the site policy {path} is not valid: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error("component '{name}' asks for more than the site policy {path} allows: {}", .items.join("; "))]
    Exceeds {
        name: String,
        path: PathBuf,
        items: Vec<String>,
    },
    #[error(
        "component '{name}' would replace the built-in command '{command}', which the site policy {path} does not allow (replace-builtin)"
    )]
    ReplacesBuiltin {
        name: String,
        command: String,
        path: PathBuf,
    },
    #[error(
        "component '{name}' is not signed and the site policy {path} requires signatures (allow-unsigned = false)"
    )]
    Unsigned { name: String, path: PathBuf },
    #[error(
        "component '{name}' {version} is older than the installed {installed}: the site policy {path} refuses downgrades (set allow-downgrade = true to allow them; rollback_component returns to the previous version)"
    )]
    Downgrade {
        name: String,
        version: String,
        installed: String,
        path: PathBuf,
    },
    #[error(
        "component '{name}' {version} is older than {highest}, the newest version this box ever installed (removing a component does not lower it): the site policy {path} refuses downgrades (set allow-downgrade = true to allow them)"
    )]
    BelowHighWater {
        name: String,
        version: String,
        highest: String,
        path: PathBuf,
    },
    #[error(
        "component '{name}' ({:.1} MB of WebAssembly) would need about {needed_mib} MiB of memory to compile, more than the {max_mib} MiB the site policy {} allows (max-compile-mib): build it with the QuickJS engine (the TypeScript SDK's default) or make it smaller, or raise max-compile-mib on a box with the memory to spare",
        *.wasm_bytes as f64 / 1e6,
        .path.display()
    )]
    CompileTooLarge {
        name: String,
        wasm_bytes: u64,
        needed_mib: u64,
        max_mib: u32,
        path: PathBuf,
    },
}

/// Upper bounds of a pushed component's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct LimitCeiling {
    pub max_memory_mib: u32,
    pub max_timeout_secs: u32,
    pub max_compile_mib: u32,
}

impl Default for LimitCeiling {
    fn default() -> Self {
        LimitCeiling {
            max_memory_mib: DEFAULT_MAX_MEMORY_MIB,
            max_timeout_secs: DEFAULT_MAX_TIMEOUT_SECS,
            max_compile_mib: DEFAULT_MAX_COMPILE_MIB,
        }
    }
}

/// A parsed site policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Policy {
    pub allow_unsigned: bool,
    pub extend_allowlist: bool,
    pub replace_builtin: Vec<String>,
    /// `install_component` of a version older than the installed one is
    /// refused unless this is true (a server could otherwise push back an
    /// old signed version with a known flaw); `rollback_component` stays
    /// allowed.
    pub allow_downgrade: bool,
    pub limits: LimitCeiling,
    pub grants: Grants,
    /// Where it was read from, for messages.
    #[serde(skip)]
    pub path: PathBuf,
}

impl Policy {
    /// Reads the policy file; a missing file is [`PolicyError::Missing`].
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(PolicyError::Missing(path.to_owned()));
            }
            Err(e) => {
                return Err(PolicyError::Read {
                    path: path.to_owned(),
                    detail: e.to_string(),
                });
            }
        };
        Self::parse(path, &text)
    }

    /// Parses policy text; `path` names it in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, PolicyError> {
        let mut policy: Policy = toml::from_str(text).map_err(|e| PolicyError::Parse {
            path: path.to_owned(),
            detail: e.message().to_owned(),
        })?;
        policy.path = path.to_owned();
        Ok(policy)
    }

    /// Refuses a component whose compile would not fit the memory budget,
    /// before anything is compiled.
    pub fn check_compile_size(&self, name: &str, wasm_bytes: u64) -> Result<(), PolicyError> {
        let needed_mib = estimated_compile_mib(wasm_bytes);
        if needed_mib <= u64::from(self.limits.max_compile_mib) {
            return Ok(());
        }
        Err(PolicyError::CompileTooLarge {
            name: name.to_owned(),
            wasm_bytes,
            needed_mib,
            max_mib: self.limits.max_compile_mib,
            path: self.path.clone(),
        })
    }

    /// Refuses an unsigned component unless the policy allows it.
    pub fn check_signed(&self, name: &str, signed: bool) -> Result<(), PolicyError> {
        if signed || self.allow_unsigned {
            Ok(())
        } else {
            Err(PolicyError::Unsigned {
                name: name.to_owned(),
                path: self.path.clone(),
            })
        }
    }

    /// Refuses taking over a built-in command type unless allowed.
    pub fn check_replacement(&self, name: &str, builtin_command: &str) -> Result<(), PolicyError> {
        if self.replace_builtin.iter().any(|c| c == builtin_command) {
            Ok(())
        } else {
            Err(PolicyError::ReplacesBuiltin {
                name: name.to_owned(),
                command: builtin_command.to_owned(),
                path: self.path.clone(),
            })
        }
    }

    /// Every grant and limit of `manifest` must fit inside the policy; the
    /// error lists all that do not, so one round trip fixes them all.
    pub fn check_manifest(&self, manifest: &Manifest) -> Result<(), PolicyError> {
        let mut items = Vec::new();
        let (m, p) = (&manifest.grants, &self.grants);
        // `staging` holds the built-in updater's journal and package, which
        // it trusts when the agent restarts: never a pushed component's.
        if m.access(RootName::Staging).is_some() {
            items.push("files.staging (reserved for the built-in updater)".to_owned());
        }
        // Replacing the agent's own binary: never a pushed component.
        if m.agent_update {
            items.push("agent-update (reserved for the built-in updater)".to_owned());
        }
        for (root, access) in m.files.iter().filter(|(r, _)| **r != RootName::Staging) {
            match p.access(*root) {
                None => items.push(format!("files.{root} = {}", access.as_str())),
                Some(Access::ReadOnly) if *access == Access::ReadWrite => {
                    items.push(format!("files.{root} = rw (the policy allows ro)"))
                }
                Some(_) => {}
            }
        }
        if m.system && !p.system {
            items.push("system".to_owned());
        }
        for unit in &m.logs.units {
            let allowed = p.logs.units.iter().any(|u| u == "*" || u == unit);
            if !allowed {
                items.push(format!("logs.units \"{unit}\""));
            }
        }
        if m.logs.agent_log && !p.logs.agent_log {
            items.push("logs.agent-log".to_owned());
        }
        for service in &m.services {
            if !p.services.contains(service) {
                items.push(format!("services \"{service}\""));
            }
        }
        if m.may_reboot && !p.may_reboot {
            items.push("may-reboot".to_owned());
        }
        match (&m.download, &p.download) {
            (Some(asked), None) => {
                items.push(format!("download (max-bytes = {})", asked.max_bytes))
            }
            (Some(asked), Some(allowed)) => {
                if asked.max_bytes > allowed.max_bytes {
                    items.push(format!(
                        "download.max-bytes = {} (the policy allows {})",
                        asked.max_bytes, allowed.max_bytes
                    ))
                }
                // A pushed component names its hosts, each covered by the
                // policy's (a "*" asked for needs a "*" allowed).
                if asked.hosts.is_empty() {
                    items.push(
                        "download.hosts (a pushed component must name the hosts it downloads from)"
                            .to_owned(),
                    );
                }
                for host in &asked.hosts {
                    let covered = allowed
                        .hosts
                        .iter()
                        .any(|a| a == "*" || host_matches(a, &host.to_ascii_lowercase()));
                    if !covered {
                        items.push(format!("download.hosts \"{host}\""));
                    }
                }
            }
            _ => {}
        }
        match (m.config_store, p.config_store) {
            (Some(asked), None) => items.push(format!("config-store = {}", asked.as_str())),
            (Some(Access::ReadWrite), Some(Access::ReadOnly)) => {
                items.push("config-store = rw (the policy allows ro)".to_owned())
            }
            _ => {}
        }
        // Work resumed at start runs before the agent connects, from the
        // staging root reserved for the built-ins.
        if manifest.resume_at_start.is_some() {
            items.push("resume-at-start (reserved for built-in components)".to_owned());
        }
        // Jobs the agent runs on its own, unasked by the server.
        if !manifest.periodic.is_empty() {
            items.push("periodic (reserved for built-in components)".to_owned());
        }
        if m.local_app && !p.local_app {
            items.push("local-app".to_owned());
        }
        if manifest.limits.memory_mib > self.limits.max_memory_mib {
            items.push(format!(
                "limits.memory-mib = {} (the policy allows {})",
                manifest.limits.memory_mib, self.limits.max_memory_mib
            ));
        }
        if manifest.limits.timeout_secs > self.limits.max_timeout_secs {
            items.push(format!(
                "limits.timeout-secs = {} (the policy allows {})",
                manifest.limits.timeout_secs, self.limits.max_timeout_secs
            ));
        }
        if items.is_empty() {
            Ok(())
        } else {
            Err(PolicyError::Exceeds {
                name: manifest.name.clone(),
                path: self.path.clone(),
                items,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> Policy {
        match Policy::parse(Path::new("/etc/neopro/component-policy.toml"), text) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    fn manifest(grants_and_limits: &str) -> Manifest {
        let text = format!(
            "name = \"hello\"\nversion = \"1.0.0\"\ncommands = [\"hello\"]\n{grants_and_limits}"
        );
        match Manifest::parse("hello.toml", &text) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_component_within_the_policy_passes() {
        let p = policy(
            "[grants]\nfiles = { videos = \"rw\", config = \"ro\" }\nsystem = true\nservices = [\"nginx\"]\nlogs = { units = [\"*\"] }\ndownload = { max-bytes = 1000, hosts = [\"*.neopro.fr\"] }\n",
        );
        let m = manifest(
            "[grants]\nfiles = { videos = \"ro\" }\nsystem = true\nservices = [\"nginx\"]\nlogs = { units = [\"nginx\"] }\ndownload = { max-bytes = 1000, hosts = [\"cdn.neopro.fr\"] }\n",
        );
        assert_eq!(p.check_manifest(&m), Ok(()));
    }

    #[test]
    fn every_excess_is_listed() {
        let p = policy("[grants]\nfiles = { videos = \"ro\" }\ndownload = { max-bytes = 10 }\n");
        let m = manifest(
            "[limits]\nmemory-mib = 128\n[grants]\nfiles = { videos = \"rw\", config = \"ro\" }\nsystem = true\nservices = [\"nginx\"]\nmay-reboot = true\ndownload = { max-bytes = 11, hosts = [\"x.org\"] }\nlocal-app = true\nlogs = { units = [\"ssh\"], agent-log = true }\n",
        );
        let err = p.check_manifest(&m).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "component 'hello' asks for more than the site policy /etc/neopro/component-policy.toml allows: \
                 files.videos = rw (the policy allows ro); files.config = ro; system; logs.units \"ssh\"; \
                 logs.agent-log; services \"nginx\"; may-reboot; download.max-bytes = 11 (the policy allows 10); download.hosts \"x.org\"; \
                 local-app; limits.memory-mib = 128 (the policy allows 64)"
            )
        );
    }

    #[test]
    fn hosts_config_store_and_resume_are_bounded() {
        let p = policy(
            "[grants]\ndownload = { max-bytes = 10, hosts = [\"*\"] }\nconfig-store = \"ro\"\n",
        );
        let m = manifest(
            "resume-at-start = \"x.json\"\n[grants]\ndownload = { max-bytes = 10 }\nconfig-store = \"rw\"\n",
        );
        let err = p.check_manifest(&m).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "component 'hello' asks for more than the site policy /etc/neopro/component-policy.toml allows: \
                 download.hosts (a pushed component must name the hosts it downloads from); \
                 config-store = rw (the policy allows ro); resume-at-start (reserved for built-in components)"
            )
        );
        let ok = manifest(
            "resource = \"videos\"\nmaintenance-window = [\"hello\"]\n[grants]\ndownload = { max-bytes = 10, hosts = [\"cdn.example\"] }\nconfig-store = \"ro\"\n",
        );
        assert_eq!(p.check_manifest(&ok), Ok(()));
    }

    #[test]
    fn staging_is_never_granted_to_a_pushed_component() {
        let p = policy("[grants]\nfiles = { staging = \"rw\" }\n");
        let m = manifest("[grants]\nfiles = { staging = \"ro\" }\n");
        let err = p.check_manifest(&m).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "component 'hello' asks for more than the site policy /etc/neopro/component-policy.toml allows: \
                 files.staging (reserved for the built-in updater)"
            )
        );
    }

    #[test]
    fn agent_update_is_never_granted_to_a_pushed_component() {
        // Even a policy that names it cannot hand the agent's binary out.
        let p = policy("[grants]\nagent-update = true\n");
        let m = manifest("[grants]\nagent-update = true\n");
        let err = p.check_manifest(&m).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "component 'hello' asks for more than the site policy /etc/neopro/component-policy.toml allows: \
                 agent-update (reserved for the built-in updater)"
            )
        );
    }

    #[test]
    fn unsigned_and_replacement_need_explicit_permission() {
        let strict = policy("");
        assert!(matches!(
            strict.check_signed("hello", false),
            Err(PolicyError::Unsigned { .. })
        ));
        assert_eq!(strict.check_signed("hello", true), Ok(()));
        assert!(matches!(
            strict.check_replacement("hello", "get_logs"),
            Err(PolicyError::ReplacesBuiltin { .. })
        ));
        let open = policy("allow-unsigned = true\nreplace-builtin = [\"get_logs\"]\n");
        assert_eq!(open.check_signed("hello", false), Ok(()));
        assert_eq!(open.check_replacement("hello", "get_logs"), Ok(()));
    }

    #[test]
    fn a_missing_or_misspelt_policy_is_explained() {
        let missing = Policy::load(Path::new("/nonexistent/component-policy.toml"));
        assert!(matches!(missing, Err(PolicyError::Missing(_))));
        let typo = Policy::parse(Path::new("p.toml"), "allow-unsinged = true\n");
        assert!(matches!(typo, Err(PolicyError::Parse { .. })));
    }

    #[test]
    fn a_component_too_big_to_compile_on_the_box_is_refused_before_compiling() {
        let p = policy("");
        // A QuickJS component (1.8 MB) fits the default budget...
        assert_eq!(p.check_compile_size("ts", 1_800_000), Ok(()));
        // ... a SpiderMonkey one (13.1 MB) does not.
        assert_eq!(
            p.check_compile_size("sm", 13_100_000).map_err(|e| e.to_string()),
            Err("component 'sm' (13.1 MB of WebAssembly) would need about 532 MiB of memory to compile, more than the 256 MiB the site policy /etc/neopro/component-policy.toml allows (max-compile-mib): build it with the QuickJS engine (the TypeScript SDK's default) or make it smaller, or raise max-compile-mib on a box with the memory to spare".to_owned())
        );
        let generous = policy("[limits]\nmax-compile-mib = 600\n");
        assert_eq!(generous.check_compile_size("sm", 13_100_000), Ok(()));
    }
}
