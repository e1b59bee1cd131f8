//! site.conf: the box's configuration, read the way the upstream agent reads
//! it (dotenv `KEY=VALUE`, `#` comments, optional quotes; the real
//! environment wins over the file), plus this agent's own keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where site.conf lives unless `--config` or `CONFIG_FILE` says otherwise.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/neopro/site.conf";

/// Commands allowed when `ALLOWED_COMMANDS` is not set (upstream's list).
/// `update_settings` is deliberately absent, as upstream.
pub const DEFAULT_ALLOWED_COMMANDS: &[&str] = &[
    "deploy_video",
    "delete_video",
    "update_software",
    "update_config",
    "reboot",
    "restart_service",
    "get_logs",
    "get_system_info",
    "get_config",
    "update_hotspot",
    "get_hotspot_config",
    "network_diagnostics",
];

/// Why the configuration cannot be used; each message names the key or line
/// to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}, line {line}: expected KEY=VALUE, found '{text}'")]
    Syntax {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("{key} must be {expected}, got '{value}' (set it in {source_name})")]
    Invalid {
        key: &'static str,
        expected: &'static str,
        value: String,
        source_name: String,
    },
}

/// The effective configuration of this box.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteConfig {
    /// The file it was read from, if one existed.
    pub file: Option<PathBuf>,
    pub central_server_url: String,
    pub central_server_enabled: bool,
    pub site_id: Option<String>,
    pub site_api_key: Option<String>,
    pub site_name: Option<String>,
    pub club_name: Option<String>,
    pub neopro_root: PathBuf,
    pub videos_path: PathBuf,
    pub config_path: PathBuf,
    pub backup_path: PathBuf,
    pub log_path: PathBuf,
    pub log_level: String,
    pub heartbeat_interval: Duration,
    /// `PING_CHECK_TIMEOUT` (ms, default 75000, 0 = off): no `ping_check`
    /// from the server for this long while the link is up means the server
    /// forgot this box's session; the agent reconnects and re-authenticates.
    pub ping_check_timeout: Duration,
    pub max_download_size: u64,
    /// MAX_CONCURRENT_COMMANDS: commands running at once (each holds a
    /// thread and a wasm Store); the rest wait in arrival order.
    pub max_concurrent_commands: usize,
    /// The command types the server may run here. Unlike upstream, a list
    /// in site.conf restricts (upstream silently re-adds its defaults).
    pub allowed_commands: Vec<String>,
    /// Whether site.conf (or the environment) set `ALLOWED_COMMANDS`: an
    /// explicit list also bounds the component-management commands.
    pub allowed_commands_set: bool,
    /// The site policy for pushed components (`COMPONENT_POLICY_PATH`).
    pub component_policy_path: PathBuf,
    /// Public keys whose signatures pushed components may carry
    /// (`TRUSTED_COMPONENT_KEYS`, `ed25519:<hex>` separated by commas).
    /// Kept as text: a typo must not stop the agent, only installs.
    pub trusted_component_keys: Vec<String>,
    /// Journal, outbox, component cache and installed components.
    pub state_path: PathBuf,
    /// What only matters while the agent runs (`link-status.json`): a
    /// tmpfs, so an idle agent writes nothing to the SD card. See
    /// [`runtime_path_default`].
    pub runtime_path: PathBuf,
    /// Overrides where built-in components are looked up.
    pub components_path: Option<PathBuf>,
    /// The journalctl program used for log tails (`JOURNALCTL_PATH`).
    pub journalctl: PathBuf,
    /// The web app's Socket.IO server, notified of changes (`LOCAL_APP_URL`).
    pub local_app_url: String,
    /// Service control and updates (issue #5).
    pub services: ServiceSettings,
    /// `AUTO_UPDATE_ENABLED` / `AUTO_UPDATE_HOUR`.
    pub update_window: UpdateWindow,
    /// `UPDATE_TRUSTED_KEYS`: ed25519 public keys (hex); when set, every
    /// software update must carry a signature by one of them.
    pub update_keys: Vec<[u8; 32]>,
    /// `UPDATE_HEALTH_URL`: after an update, this must answer 2xx too.
    pub update_health_url: Option<String>,
    /// `UPDATE_ALLOW_DOWNGRADE`: whether `update_software` may install a
    /// release older than the installed one (default false; rolling back
    /// stays possible).
    pub update_allow_downgrade: bool,
    /// `UPDATE_SETTLE_SECS`: how long neopro-app and neopro-admin must stay
    /// active (no restart) after an update before it counts as healthy.
    pub update_settle: Duration,
    /// `AGENT_UPDATE_DEADLINE_SECS` (default 600): how long a new agent
    /// version on trial has to authenticate before the previous one comes
    /// back.
    pub agent_update_deadline: Duration,
    /// The hotspot's hostapd.conf (`HOSTAPD_CONF`); its folder is the
    /// `hostapd` root.
    pub hostapd_conf: PathBuf,
}

/// The unit's runtime folder (`RuntimeDirectory=neopro-runtime`).
pub const UNIT_RUNTIME_DIRECTORY: &str = "/run/neopro-runtime";

/// Where runtime-only state goes when `RUNTIME_PATH` is not set: the
/// folder systemd made for the unit (`RUNTIME_DIRECTORY`, the first of a
/// colon-separated list); else the unit's folder when it exists (an
/// operator's `diagnose` outside the unit reads what the agent wrote);
/// else `STATE_PATH/run` (an agent run by hand, a test: on disk, but
/// apart from the state).
pub fn runtime_path_default(
    env: &dyn Fn(&str) -> Option<String>,
    state_path: &Path,
    is_dir: &dyn Fn(&Path) -> bool,
) -> PathBuf {
    let from_systemd = env("RUNTIME_DIRECTORY").and_then(|dirs| {
        let first = PathBuf::from(dirs.split(':').next().unwrap_or_default());
        first.is_absolute().then_some(first)
    });
    if let Some(dir) = from_systemd {
        return dir;
    }
    let unit = PathBuf::from(UNIT_RUNTIME_DIRECTORY);
    if is_dir(&unit) {
        return unit;
    }
    state_path.join("run")
}

/// Units the agent may control, and how (`SYSTEMCTL_PATH`, `MANAGED_SERVICES`,
/// `AGENT_SERVICE`).
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSettings {
    /// The systemctl program (a test double in tests).
    pub systemctl: PathBuf,
    /// The only units any component may start, stop, restart or query.
    pub managed: Vec<String>,
    /// The agent's own unit: restarting it waits until the result is delivered.
    pub agent_unit: String,
}

/// The unit `install-service` installs the agent as (`AGENT_SERVICE`).
pub const DEFAULT_AGENT_SERVICE: &str = "neopro-runtime";

/// Units restart_service may touch unless `MANAGED_SERVICES` says otherwise.
pub const DEFAULT_MANAGED_SERVICES: &[&str] = &[
    "neopro-app",
    "neopro-admin",
    "neopro-sync-agent",
    "neopro-runtime",
    "nginx",
    "hostapd",
];

/// A comma-separated list (blanks around items ignored), or `default` when
/// the key is not set.
fn list_or(value: Option<String>, default: &[&str]) -> Vec<String> {
    match value {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        None => default.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// `KEY=VALUE` pairs of one dotenv file, in file order (later keys win).
pub fn parse_dotenv(path: &Path, text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut values = BTreeMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(ConfigError::Syntax {
                path: path.to_owned(),
                line: index + 1,
                text: raw.to_owned(),
            });
        };
        let key = key.trim();
        let valid_key = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
        if !valid_key {
            return Err(ConfigError::Syntax {
                path: path.to_owned(),
                line: index + 1,
                text: raw.to_owned(),
            });
        }
        values.insert(key.to_owned(), unquote(value.trim()));
    }
    Ok(values)
}

/// dotenv rules: a quoted value is taken verbatim (`\n` expanded inside
/// double quotes); an unquoted value ends at ` #`.
fn unquote(value: &str) -> String {
    for quote in ['"', '\'', '`'] {
        if value.len() >= 2
            && value.starts_with(quote)
            && let Some(end) = value[1..].find(quote)
        {
            let inner = &value[1..1 + end];
            return if quote == '"' {
                inner.replace("\\n", "\n")
            } else {
                inner.to_owned()
            };
        }
    }
    match value.find(" #") {
        Some(i) => value[..i].trim_end().to_owned(),
        None => value.to_owned(),
    }
}

impl SiteConfig {
    /// Loads the configuration for this process: `explicit` (from `--config`)
    /// must exist; otherwise `CONFIG_FILE` or [`DEFAULT_CONFIG_FILE`] is used
    /// if present. The environment overrides the file.
    pub fn load(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        let env = |key: &str| std::env::var(key).ok();
        let (path, must_exist) = match explicit {
            Some(p) => (p.to_owned(), true),
            None => (
                PathBuf::from(env("CONFIG_FILE").unwrap_or_else(|| DEFAULT_CONFIG_FILE.to_owned())),
                false,
            ),
        };
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => Some((path, text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => None,
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        Self::from_sources(file.as_ref().map(|(p, t)| (p.as_path(), t.as_str())), &env)
    }

    /// Builds the configuration from a file's text and an environment lookup,
    /// the environment winning (upstream precedence).
    pub fn from_sources(
        file: Option<(&Path, &str)>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let file_values = match file {
            Some((path, text)) => parse_dotenv(path, text)?,
            None => BTreeMap::new(),
        };
        let file_name = file
            .map(|(p, _)| p.display().to_string())
            .unwrap_or_else(|| "the environment".to_owned());
        let get = |key: &str| -> Option<(String, String)> {
            if let Some(v) = env(key) {
                return Some((v, "the environment".to_owned()));
            }
            file_values.get(key).map(|v| (v.clone(), file_name.clone()))
        };
        let text = |key: &str| get(key).map(|(v, _)| v).filter(|v| !v.is_empty());
        let path = |key: &'static str, default: PathBuf| -> Result<PathBuf, ConfigError> {
            match get(key) {
                Some((v, _)) if v.is_empty() => Ok(default),
                Some((v, source_name)) => {
                    let p = PathBuf::from(&v);
                    if p.is_absolute() {
                        Ok(p)
                    } else {
                        Err(ConfigError::Invalid {
                            key,
                            expected: "an absolute path",
                            value: v,
                            source_name,
                        })
                    }
                }
                None => Ok(default),
            }
        };
        let number = |key: &'static str, default: u64| -> Result<u64, ConfigError> {
            match get(key) {
                Some((v, _)) if v.trim().is_empty() => Ok(default),
                Some((v, source_name)) => {
                    v.trim().parse::<u64>().map_err(|_| ConfigError::Invalid {
                        key,
                        expected: "a whole number",
                        value: v,
                        source_name,
                    })
                }
                None => Ok(default),
            }
        };

        // Unlike upstream (fixed /home/pi/neopro/... defaults), the folder
        // defaults follow NEOPRO_ROOT; identical when it is left default.
        let neopro_root = path("NEOPRO_ROOT", PathBuf::from("/home/pi/neopro"))?;
        let state_path = path("STATE_PATH", PathBuf::from("/var/lib/neopro-runtime"))?;
        let heartbeat_ms = number("HEARTBEAT_INTERVAL", 30_000)?;
        if heartbeat_ms < 1_000 {
            return Err(ConfigError::Invalid {
                key: "HEARTBEAT_INTERVAL",
                expected: "at least 1000 (milliseconds)",
                value: heartbeat_ms.to_string(),
                source_name: file_name,
            });
        }
        let settle_secs = number("UPDATE_SETTLE_SECS", 10)?;
        if settle_secs > 600 {
            return Err(ConfigError::Invalid {
                key: "UPDATE_SETTLE_SECS",
                expected: "at most 600 (seconds)",
                value: settle_secs.to_string(),
                source_name: file_name,
            });
        }
        let agent_deadline_secs = number("AGENT_UPDATE_DEADLINE_SECS", 600)?;
        if !(1..=86_400).contains(&agent_deadline_secs) {
            return Err(ConfigError::Invalid {
                key: "AGENT_UPDATE_DEADLINE_SECS",
                expected: "from 1 to 86400 (seconds)",
                value: agent_deadline_secs.to_string(),
                source_name: file_name,
            });
        }
        let max_concurrent = number("MAX_CONCURRENT_COMMANDS", 4)?;
        if !(1..=64).contains(&max_concurrent) {
            return Err(ConfigError::Invalid {
                key: "MAX_CONCURRENT_COMMANDS",
                expected: "a number of commands from 1 to 64",
                value: max_concurrent.to_string(),
                source_name: file_name,
            });
        }
        let allowed_commands_set = text("ALLOWED_COMMANDS").is_some();
        let allowed_commands = list_or(text("ALLOWED_COMMANDS"), DEFAULT_ALLOWED_COMMANDS);

        Ok(SiteConfig {
            file: file.map(|(p, _)| p.to_owned()),
            central_server_url: text("CENTRAL_SERVER_URL")
                .unwrap_or_else(|| "http://localhost:3001".to_owned()),
            central_server_enabled: text("CENTRAL_SERVER_ENABLED").as_deref() == Some("true"),
            site_id: text("SITE_ID"),
            site_api_key: text("SITE_API_KEY"),
            site_name: text("SITE_NAME"),
            club_name: text("CLUB_NAME"),
            videos_path: path("VIDEOS_PATH", neopro_root.join("videos"))?,
            config_path: path("CONFIG_PATH", neopro_root.join("webapp/configuration.json"))?,
            backup_path: path("BACKUP_PATH", neopro_root.join("backups"))?,
            log_path: path("LOG_PATH", neopro_root.join("logs/sync-agent.log"))?,
            log_level: text("LOG_LEVEL").unwrap_or_else(|| "info".to_owned()),
            heartbeat_interval: Duration::from_millis(heartbeat_ms),
            ping_check_timeout: Duration::from_millis(number("PING_CHECK_TIMEOUT", 75_000)?),
            max_download_size: number("MAX_DOWNLOAD_SIZE", 1_073_741_824)?,
            max_concurrent_commands: max_concurrent as usize,
            allowed_commands,
            allowed_commands_set,
            component_policy_path: path(
                "COMPONENT_POLICY_PATH",
                PathBuf::from("/etc/neopro/component-policy.toml"),
            )?,
            trusted_component_keys: list_or(text("TRUSTED_COMPONENT_KEYS"), &[]),
            state_path: state_path.clone(),
            runtime_path: path(
                "RUNTIME_PATH",
                runtime_path_default(env, &state_path, &|p| p.is_dir()),
            )?,
            components_path: match text("COMPONENTS_PATH") {
                Some(_) => Some(path("COMPONENTS_PATH", PathBuf::new())?),
                None => None,
            },
            local_app_url: text("LOCAL_APP_URL")
                .unwrap_or_else(|| "http://localhost:3000".to_owned()),
            journalctl: PathBuf::from(
                text("JOURNALCTL_PATH").unwrap_or_else(|| "journalctl".to_owned()),
            ),
            update_keys: match get("UPDATE_TRUSTED_KEYS") {
                None => Vec::new(),
                Some((list, source_name)) => {
                    let mut keys = Vec::new();
                    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        // The same `ed25519:<hex>` form as TRUSTED_COMPONENT_KEYS
                        // (what `component keygen` prints), or bare hex.
                        let key = hex::decode(item.strip_prefix("ed25519:").unwrap_or(item))
                            .ok()
                            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok());
                        match key {
                            Some(key) => keys.push(key),
                            None => {
                                return Err(ConfigError::Invalid {
                                    key: "UPDATE_TRUSTED_KEYS",
                                    expected: "ed25519 public keys as 64 hex digits, separated by commas",
                                    value: item.to_owned(),
                                    source_name,
                                });
                            }
                        }
                    }
                    keys
                }
            },
            update_settle: Duration::from_secs(settle_secs),
            agent_update_deadline: Duration::from_secs(agent_deadline_secs),
            update_health_url: match get("UPDATE_HEALTH_URL") {
                Some((v, _)) if v.trim().is_empty() => None,
                Some((v, _)) if v.starts_with("http://") || v.starts_with("https://") => {
                    Some(v.trim().to_owned())
                }
                Some((v, source_name)) => {
                    return Err(ConfigError::Invalid {
                        key: "UPDATE_HEALTH_URL",
                        expected: "an http:// or https:// URL",
                        value: v,
                        source_name,
                    });
                }
                None => None,
            },
            update_allow_downgrade: match get("UPDATE_ALLOW_DOWNGRADE") {
                None => false,
                Some((v, _)) if v.trim().is_empty() || v.trim().eq_ignore_ascii_case("false") => {
                    false
                }
                Some((v, _)) if v.trim().eq_ignore_ascii_case("true") => true,
                Some((v, source_name)) => {
                    return Err(ConfigError::Invalid {
                        key: "UPDATE_ALLOW_DOWNGRADE",
                        expected: "true or false",
                        value: v,
                        source_name,
                    });
                }
            },
            hostapd_conf: path("HOSTAPD_CONF", PathBuf::from("/etc/hostapd/hostapd.conf"))?,
            update_window: UpdateWindow {
                enabled: match get("AUTO_UPDATE_ENABLED") {
                    None => true,
                    Some((v, _))
                        if v.trim().is_empty() || v.trim().eq_ignore_ascii_case("true") =>
                    {
                        true
                    }
                    Some((v, _)) if v.trim().eq_ignore_ascii_case("false") => false,
                    Some((v, source_name)) => {
                        return Err(ConfigError::Invalid {
                            key: "AUTO_UPDATE_ENABLED",
                            expected: "true or false",
                            value: v,
                            source_name,
                        });
                    }
                },
                hour: match number("AUTO_UPDATE_HOUR", 3)? {
                    h @ 0..=23 => h as u8,
                    h => {
                        return Err(ConfigError::Invalid {
                            key: "AUTO_UPDATE_HOUR",
                            expected: "an hour between 0 and 23",
                            value: h.to_string(),
                            source_name: file_name,
                        });
                    }
                },
            },
            services: ServiceSettings {
                systemctl: PathBuf::from(
                    text("SYSTEMCTL_PATH").unwrap_or_else(|| "systemctl".to_owned()),
                ),
                managed: list_or(text("MANAGED_SERVICES"), DEFAULT_MANAGED_SERVICES),
                agent_unit: text("AGENT_SERVICE")
                    .unwrap_or_else(|| DEFAULT_AGENT_SERVICE.to_owned()),
            },
            neopro_root,
        })
    }

    /// Folder of the precompiled component cache.
    pub fn cache_dir(&self) -> PathBuf {
        self.state_path.join("cache")
    }

    /// Where pushed components are stored.
    pub fn pushed_components_dir(&self) -> PathBuf {
        self.state_path.join("components")
    }

    /// Scratch folder for downloads and extraction (the `staging` root).
    pub fn staging_dir(&self) -> PathBuf {
        self.state_path.join("staging")
    }
}

/// When software updates may run (`AUTO_UPDATE_ENABLED`, `AUTO_UPDATE_HOUR`);
/// the scheduler that keeps updates for it is `agent::maintenance_window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateWindow {
    pub enabled: bool,
    /// Hour of the box's local time (0–23) when updates run.
    pub hour: u8,
}

impl Default for UpdateWindow {
    fn default() -> Self {
        UpdateWindow {
            enabled: true,
            hour: 3,
        }
    }
}

#[cfg(test)]
mod tests;
