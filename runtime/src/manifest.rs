//! Component manifests: what a component is, which commands it handles, and
//! the grants and limits the host enforces on it.
//!
//! A manifest is a TOML file named `<component>.toml` next to
//! `<component>.wasm`:
//!
//! ```toml
//! name = "get-logs"              # [a-z0-9-], unique on the box
//! version = "0.1.0"
//! description = "…"              # optional
//! commands = ["get_logs"]        # command types it handles
//! api-version = "0.2"            # optional: the neopro:agent WIT version it was
//!                                # built against (default 0.1, see wit/README.md)
//! progress-event = "deploy_progress"   # optional: event its progress reports become
//! progress-needs-deployment = false    # optional: a report without a deploymentId
//!                                # is not sent (the central would apply it to
//!                                # every deployment of the video)
//! resource = "videos"            # optional: commands naming the same resource
//!                                # (videos, config, software, network) never run
//!                                # at the same time
//! maintenance-window = []        # its commands that run in AUTO_UPDATE_HOUR
//!                                # unless the command says isCritical
//! check-before-window = []       # of those, the ones the agent asks to check
//!                                # themselves (their data plus "check": true)
//!                                # before keeping them for the window: a
//!                                # refusal comes at once, not hours later
//! resume-at-start = "update/state.json"  # optional, built-ins only: when this
//!                                # file exists in the staging root at start, the
//!                                # component's first command runs with
//!                                # {"resume": true} before
//!                                # the agent connects (finishes interrupted work)
//! periodic = ["expire_videos"]   # optional, built-ins only: its commands the
//!                                # agent runs itself, at start and every hour
//!                                # (jobs, not server commands)
//!
//! [limits]
//! memory-mib = 64                # linear memory cap (default 64, max 1024)
//! timeout-secs = 60              # wall time per command (default 60, max 3600)
//!
//! [grants]
//! system = true                  # system.metrics / info / version
//! services = ["neopro-app"]      # units it may start/stop/restart/query
//! may-reboot = false
//! files = { videos = "rw", neopro-root = "ro" }   # roots: videos, config,
//!                                                 # backups, neopro-root, staging, logs
//! logs = { units = ["*"], agent-log = true }      # journal units ("*" = any), LOG_PATH
//! download = { max-bytes = 1073741824, hosts = ["*"] }  # absent = no downloads;
//!                                # hosts: "*", "cdn.example" or "*.example"
//! config-store = "rw"            # configuration.json via the config-store interface
//! local-app = true               # may notify the web app (config_updated, ...)
//! ```
//!
//! Everything not granted is refused with `not-permitted`, naming the grant.
//! Unknown keys are errors, so a typo cannot silently drop a grant.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::platform::systemctl::is_valid_unit_name;

/// The `neopro:agent` WIT versions this host links, newest last. A manifest
/// naming another one is refused by name (wit/README.md: versioning policy).
pub const SUPPORTED_API_VERSIONS: &[&str] = &["0.1", "0.2"];

/// Default linear-memory cap of a component.
pub const DEFAULT_MEMORY_MIB: u32 = 64;
/// Default wall-time limit of one command.
pub const DEFAULT_TIMEOUT_SECS: u32 = 60;
const MAX_MEMORY_MIB: u32 = 1024;
const MAX_TIMEOUT_SECS: u32 = 3600;

/// A manifest that cannot be used, with the reason.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("manifest {path} is not valid: {detail}")]
    Parse { path: String, detail: String },
    #[error("manifest {path}: {detail}")]
    Invalid { path: String, detail: String },
}

/// One of the named folders a component can be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RootName {
    Videos,
    Config,
    Backups,
    NeoproRoot,
    Staging,
    Logs,
    Hostapd,
}

impl RootName {
    pub const ALL: [RootName; 7] = [
        RootName::Videos,
        RootName::Config,
        RootName::Backups,
        RootName::NeoproRoot,
        RootName::Staging,
        RootName::Logs,
        RootName::Hostapd,
    ];

    /// Roots that are the agent's own state (created 0700, files 0600):
    /// `staging` holds what the agent trusts at restart.
    pub fn is_private(self) -> bool {
        self == RootName::Staging
    }

    /// The name used in manifests and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            RootName::Videos => "videos",
            RootName::Config => "config",
            RootName::Backups => "backups",
            RootName::NeoproRoot => "neopro-root",
            RootName::Staging => "staging",
            RootName::Logs => "logs",
            RootName::Hostapd => "hostapd",
        }
    }
}

impl fmt::Display for RootName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a command touches that another command must not touch at the same
/// time. Declared in the manifest, so a pushed component that writes videos
/// waits for a running `deploy_video` exactly like a built-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resource {
    Videos,
    Config,
    Software,
    Network,
}

impl Resource {
    pub const ALL: [Resource; 4] = [
        Resource::Videos,
        Resource::Config,
        Resource::Software,
        Resource::Network,
    ];
}

/// Read-only or read-write access to a root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Access {
    #[serde(rename = "ro")]
    ReadOnly,
    #[serde(rename = "rw")]
    ReadWrite,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::ReadOnly => "ro",
            Access::ReadWrite => "rw",
        }
    }
}

/// Memory and time bounds of one command run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Limits {
    pub memory_mib: u32,
    pub timeout_secs: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mib: DEFAULT_MEMORY_MIB,
            timeout_secs: DEFAULT_TIMEOUT_SECS,
        }
    }
}

/// Journal and log-file access.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct LogGrants {
    /// Unit names whose journal may be read; `"*"` allows any valid name.
    pub units: Vec<String>,
    /// May read the agent's own log (LOG_PATH).
    pub agent_log: bool,
}

/// Download permission.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DownloadGrant {
    /// Largest single download, further bounded by MAX_DOWNLOAD_SIZE.
    pub max_bytes: u64,
    /// Hosts it may download from: `"*"` (any; the built-ins, which follow
    /// the server's URLs), `"cdn.example"`, or `"*.example"` (its
    /// subdomains). None declared means none allowed.
    #[serde(default)]
    pub hosts: Vec<String>,
}

impl DownloadGrant {
    /// Whether `host` (as in the URL, any case) is covered by `hosts`.
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts
            .iter()
            .any(|pattern| host_matches(pattern, &host))
    }
}

/// `pattern` covers `host` (both lower case): `"*"`, exact, or `"*.suffix"`
/// for strict subdomains.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    if pattern == "*" || pattern == host {
        return true;
    }
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
        None => false,
    }
}

/// Everything a component may do beyond pure computation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Grants {
    pub files: BTreeMap<RootName, Access>,
    pub system: bool,
    pub logs: LogGrants,
    pub services: Vec<String>,
    pub may_reboot: bool,
    pub download: Option<DownloadGrant>,
    /// May notify the local web app (`local-app.notify`).
    pub local_app: bool,
    /// The web app's configuration.json through the config-store interface.
    pub config_store: Option<Access>,
    /// May stage an agent release or roll one back (the `agent-update`
    /// interface; `archive` in 0.1): the built-in updater only, never a
    /// pushed component.
    pub agent_update: bool,
}

impl Grants {
    /// The access granted to a root, if any.
    pub fn access(&self, root: RootName) -> Option<Access> {
        self.files.get(&root).copied()
    }

    /// The first grant that lets a component change the box, if any: as
    /// shown to an operator, and its key path in the manifest.
    pub fn first_write_grant(&self) -> Option<(String, Vec<String>)> {
        let at = |shown: String, key: &[&str]| {
            let mut path = vec!["grants".to_owned()];
            path.extend(key.iter().map(|k| (*k).to_owned()));
            Some((shown, path))
        };
        if let Some((root, _)) = self.files.iter().find(|(_, a)| **a == Access::ReadWrite) {
            let root = root.to_string();
            return at(format!("files.{root} = \"rw\""), &["files", &root]);
        }
        if self.config_store == Some(Access::ReadWrite) {
            return at("config-store = \"rw\"".to_owned(), &["config-store"]);
        }
        if !self.services.is_empty() {
            return at("services".to_owned(), &["services"]);
        }
        if self.may_reboot {
            return at("may-reboot".to_owned(), &["may-reboot"]);
        }
        if self.download.is_some() {
            return at("download".to_owned(), &["download"]);
        }
        if self.agent_update {
            return at("agent-update".to_owned(), &["agent-update"]);
        }
        None
    }

    /// Whether the journal of `unit` may be read.
    pub fn may_read_journal(&self, unit: &str) -> bool {
        self.logs.units.iter().any(|u| u == "*" || u == unit)
    }
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: Option<String>,
    pub commands: Vec<String>,
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub progress_event: Option<String>,
    /// Its progress reports go out only with a `deploymentId`: the central
    /// matches one without it by `videoId` and puts every deployment of
    /// that video back in progress (a finished one reads 0 %). The
    /// manifest says so; the agent knows no event by name.
    #[serde(default)]
    pub progress_needs_deployment: bool,
    #[serde(default)]
    pub resource: Option<Resource>,
    #[serde(default)]
    pub maintenance_window: Vec<String>,
    /// Its maintenance-window commands the agent runs with `"check": true`
    /// added to their data before keeping them for the window: the
    /// component owns its rules, the agent knows none of them.
    #[serde(default)]
    pub check_before_window: Vec<String>,
    #[serde(default)]
    pub resume_at_start: Option<String>,
    /// Its commands the agent runs on its own, at start and every hour
    /// (the videos' expiry): declared here so the agent runs jobs by what
    /// the manifests say, knowing none by name.
    #[serde(default)]
    pub periodic: Vec<String>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub grants: Grants,
    /// Its commands change nothing on the box (checked: no grant that could),
    /// so they need no journal entry before running; a re-delivered one may
    /// simply run again. Saves an SD-card fsync per command.
    #[serde(default)]
    pub read_only: bool,
}

/// ` (line N)` for the key at `path` in manifest `text` (the line of its
/// innermost key), or nothing when it cannot be found (the message is still
/// complete without it).
fn line_of(text: &str, path: &[String]) -> String {
    let Ok(table) = toml::de::DeTable::parse(text) else {
        return String::new();
    };
    let mut table = table.get_ref();
    let mut found = None;
    for (i, part) in path.iter().enumerate() {
        let Some((key, value)) = table.iter().find(|(k, _)| k.get_ref() == part) else {
            return String::new();
        };
        found = Some(key.span().start);
        if i + 1 < path.len() {
            let toml::de::DeValue::Table(inner) = value.get_ref() else {
                return String::new();
            };
            table = inner;
        }
    }
    found
        .and_then(|at| text.get(..at))
        .map(|before| format!(" (line {})", before.matches('\n').count() + 1))
        .unwrap_or_default()
}

/// A component name: it becomes a folder name under `STATE_PATH`.
pub fn is_component_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_host_pattern(pattern: &str) -> bool {
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    pattern == "*"
        || (!name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
}

fn is_command_type(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Manifest {
    /// Reads and validates a manifest file.
    pub fn from_file(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Parses and validates manifest text; `origin` names it in errors.
    pub fn parse(origin: &str, text: &str) -> Result<Self, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            path: origin.to_owned(),
            detail: e.message().to_owned(),
        })?;
        manifest.validate(origin, text)?;
        Ok(manifest)
    }

    fn validate(&self, origin: &str, text: &str) -> Result<(), ManifestError> {
        let invalid = |detail: String| {
            Err(ManifestError::Invalid {
                path: origin.to_owned(),
                detail,
            })
        };
        if !is_component_name(&self.name) {
            return invalid(format!(
                "name '{}' must be 1-64 characters of a-z, 0-9 and '-'",
                self.name
            ));
        }
        if self.commands.is_empty() {
            return invalid("commands must list at least one command type".to_owned());
        }
        if let Some(bad) = self.commands.iter().find(|c| !is_command_type(c)) {
            return invalid(format!(
                "command type '{bad}' must be 1-64 characters of a-z, 0-9 and '_'"
            ));
        }
        if let Some(event) = &self.progress_event
            && !is_command_type(event)
        {
            return invalid(format!(
                "progress-event '{event}' must be 1-64 characters of a-z, 0-9 and '_'"
            ));
        }
        if self.progress_needs_deployment && self.progress_event.is_none() {
            return invalid(
                "progress-needs-deployment is set but no progress-event is declared".to_owned(),
            );
        }
        if let Some(api) = &self.api_version
            && !SUPPORTED_API_VERSIONS.contains(&api.as_str())
        {
            return invalid(format!(
                "api-version '{api}' is not supported by this agent (it links neopro:agent {}); rebuild the component against a supported version or update the agent",
                SUPPORTED_API_VERSIONS.join(", ")
            ));
        }
        if let Some(d) = &self.grants.download
            && let Some(bad) = d.hosts.iter().find(|h| !is_host_pattern(h))
        {
            return invalid(format!(
                "grants.download.hosts: '{bad}' is not a host name, \"*\" or \"*.domain\""
            ));
        }
        // Lists of commands that must name commands it declares.
        let subsets: [(&str, &Vec<String>, &Vec<String>, &str); 3] = [
            (
                "maintenance-window",
                &self.maintenance_window,
                &self.commands,
                "one of its commands",
            ),
            (
                "check-before-window",
                &self.check_before_window,
                &self.maintenance_window,
                "one of its maintenance-window commands",
            ),
            (
                "periodic",
                &self.periodic,
                &self.commands,
                "one of its commands",
            ),
        ];
        for (key, list, among, what) in subsets {
            if let Some(bad) = list.iter().find(|c| !among.contains(c)) {
                return invalid(format!("{key} names '{bad}', which is not {what}"));
            }
        }
        if let Some(marker) = &self.resume_at_start {
            let path = Path::new(marker);
            let plain = path
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
            if marker.is_empty() || !plain {
                return invalid(format!(
                    "resume-at-start '{marker}' must be a relative path inside the staging root"
                ));
            }
        }
        if !(1..=MAX_MEMORY_MIB).contains(&self.limits.memory_mib) {
            return invalid(format!(
                "limits.memory-mib must be between 1 and {MAX_MEMORY_MIB}, got {}",
                self.limits.memory_mib
            ));
        }
        if !(1..=MAX_TIMEOUT_SECS).contains(&self.limits.timeout_secs) {
            return invalid(format!(
                "limits.timeout-secs must be between 1 and {MAX_TIMEOUT_SECS}, got {}",
                self.limits.timeout_secs
            ));
        }
        if self.read_only
            && let Some((grant, key)) = self.grants.first_write_grant()
        {
            return invalid(format!(
                "read-only = true{}, but the grant {grant}{} lets it change the box; remove one of the two",
                line_of(text, &["read-only".to_owned()]),
                line_of(text, &key)
            ));
        }
        if let Some(bad) = self.grants.services.iter().find(|s| !is_valid_unit_name(s)) {
            return invalid(format!("grants.services: '{bad}' is not a valid unit name"));
        }
        if let Some(bad) = self
            .grants
            .logs
            .units
            .iter()
            .find(|u| u.as_str() != "*" && !is_valid_unit_name(u))
        {
            return invalid(format!(
                "grants.logs.units: '{bad}' is not a valid unit name"
            ));
        }
        Ok(())
    }

    /// Memory cap in bytes.
    pub fn memory_bytes(&self) -> usize {
        // memory-mib is at most 1024 (1 GiB), which fits even a 32-bit
        // usize; saturate rather than wrap if that bound ever moves.
        crate::platform::byte_len::in_memory(crate::platform::byte_len::mib(self.limits.memory_mib))
            .unwrap_or(usize::MAX)
    }

    /// One line per grant, for `neopro-runtime components` and logs.
    pub fn grant_summary(&self) -> Vec<String> {
        let g = &self.grants;
        let mut lines = Vec::new();
        for (root, access) in &g.files {
            lines.push(format!("files.{root} = {}", access.as_str()));
        }
        if g.system {
            lines.push("system".to_owned());
        }
        if !g.logs.units.is_empty() {
            lines.push(format!("logs.units = [{}]", g.logs.units.join(", ")));
        }
        if g.logs.agent_log {
            lines.push("logs.agent-log".to_owned());
        }
        if !g.services.is_empty() {
            lines.push(format!("services = [{}]", g.services.join(", ")));
        }
        if g.may_reboot {
            lines.push("may-reboot".to_owned());
        }
        if let Some(d) = &g.download {
            lines.push(format!("download.max-bytes = {}", d.max_bytes));
            lines.push(format!("download.hosts = [{}]", d.hosts.join(", ")));
        }
        if g.local_app {
            lines.push("local-app".to_owned());
        }
        if let Some(access) = g.config_store {
            lines.push(format!("config-store = {}", access.as_str()));
        }
        if g.agent_update {
            lines.push("agent-update".to_owned());
        }
        lines
    }
}

#[cfg(test)]
mod tests;
