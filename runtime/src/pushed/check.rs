//! What a box would do with a component at `install_component`, checked
//! before pushing it (`neopro-runtime component check`, and the warning of
//! `run-component`): the same checks as [`Manager::install`], all of them
//! instead of the first failing one, each refusal with the line to change.

use super::inventory::Inventory;
use super::policy::{Policy, PolicyError};
use super::{Manager, PushedError, check_is_component, check_not_management, version_problems};
use crate::config::SiteConfig;
use crate::sandbox::Sandbox;
use crate::sandbox::manifest::{Manifest, SUPPORTED_API_VERSIONS};
use crate::signing::components::SigningError;
use crate::store::hash::sha256_hex;
use std::path::{Path, PathBuf};

/// The component as it would be pushed: the bytes, the manifest text as
/// signed and the signature, if any.
pub struct Candidate<'a> {
    pub wasm: &'a [u8],
    /// Where the manifest was read from (named in messages).
    pub manifest_path: &'a Path,
    pub manifest_text: &'a str,
    pub signature: Option<&'a str>,
}

/// What to check beyond the manifest, policy and allowlist.
#[derive(Clone, Copy)]
pub struct Depth<'a> {
    /// Compile the component and link it against this agent.
    pub link: Option<&'a Sandbox>,
    /// Check the signature (or the policy's leave to go unsigned).
    pub signature: bool,
    /// What the box has installed (its `list_components` result); `None`:
    /// this machine's store when it has one, else not checked.
    pub installed: Option<&'a Inventory>,
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass(String),
    /// The box would refuse the install: why, and what to change where.
    Refuse {
        reason: String,
        change: String,
    },
    /// Could not be checked (what is missing).
    Skipped(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub topic: &'static str,
    pub verdict: Verdict,
}

/// Every check, in the order `install_component` makes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `name version` from the manifest, when it parses.
    pub component: Option<String>,
    pub site_conf: PathBuf,
    pub policy: PathBuf,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn refusals(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| matches!(f.verdict, Verdict::Refuse { .. }))
    }

    /// Whether the box would install it (every check made passed).
    pub fn would_install(&self) -> bool {
        self.refusals().next().is_none()
    }
}

/// The 1-based line of `path` that sets `key` (`KEY=` in site.conf,
/// `key =` in the policy) or opens the table `key` (`[limits]`).
fn line_of(path: &Path, key: &str) -> Option<usize> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .position(|line| {
            let line = line.trim_start();
            if key.starts_with('[') {
                return line.trim_end() == key;
            }
            line.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

/// `path:line key`, or `key in path` when the key is not written yet.
fn at(path: &Path, key: &str) -> String {
    match line_of(path, key) {
        Some(line) => format!("{}:{line} {key}", path.display()),
        None => format!("{key} in {} (not set yet)", path.display()),
    }
}

/// Checks `candidate` as a box with `config` and the policy at
/// `policy_path` would at install.
pub fn check(
    config: &SiteConfig,
    policy_path: &Path,
    candidate: &Candidate<'_>,
    depth: Depth<'_>,
) -> Report {
    let mut config = config.clone();
    config.component_policy_path = policy_path.to_owned();
    let site_conf = config
        .file
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_CONFIG_FILE));
    let mut report = Report {
        component: None,
        site_conf: site_conf.clone(),
        policy: policy_path.to_owned(),
        findings: Vec::new(),
    };
    let mut push = |topic, verdict| report.findings.push(Finding { topic, verdict });
    let manifest_name = candidate.manifest_path.display().to_string();
    let manifest = match Manifest::parse(&manifest_name, candidate.manifest_text) {
        Ok(m) => m,
        Err(e) => {
            push(
                "manifest",
                Verdict::Refuse {
                    reason: e.to_string(),
                    change: format!("fix {manifest_name}"),
                },
            );
            return report;
        }
    };
    let name = manifest.name.clone();
    let manifest_path = candidate.manifest_path;
    let manager = Manager::new(&config);
    let sha256 = sha256_hex(candidate.wasm);
    let local;
    let installed = match depth.installed {
        Some(given) => Some(given),
        None if manager.has_store() => {
            local = manager.inventory();
            Some(&local)
        }
        None => None,
    };

    // The policy, and what it bounds: grants and limits.
    let policy = match Policy::load(policy_path) {
        Ok(p) => {
            push("policy", Verdict::Pass(policy_path.display().to_string()));
            Some(p)
        }
        Err(e) => {
            let change = match &e {
                PolicyError::Missing(_) => format!(
                    "install the box's policy at {} (example: config/component-policy.toml.example), or point COMPONENT_POLICY_PATH in site.conf (component check: --policy) at a copy of it",
                    policy_path.display()
                ),
                _ => format!("fix {}", policy_path.display()),
            };
            push(
                "policy",
                Verdict::Refuse {
                    reason: e.to_string(),
                    change,
                },
            );
            None
        }
    };
    let needs_policy = || Verdict::Skipped("needs a usable site policy".to_owned());
    match &policy {
        None => push("grants", needs_policy()),
        Some(p) => match p.check_manifest(&manifest) {
            Ok(()) => {
                let grants = manifest.grant_summary();
                push(
                    "grants",
                    Verdict::Pass(format!(
                        "{}; limits {} MiB, {} s: within the policy",
                        if grants.is_empty() {
                            "none".to_owned()
                        } else {
                            grants.join("; ")
                        },
                        manifest.limits.memory_mib,
                        manifest.limits.timeout_secs
                    )),
                )
            }
            Err(e) => {
                let mut places = Vec::new();
                if let PolicyError::Exceeds { items, .. } = &e {
                    if items.iter().any(|i| !i.starts_with("limits.")) {
                        places.push(at(policy_path, "[grants]"));
                    }
                    if items.iter().any(|i| i.starts_with("limits.")) {
                        places.push(at(policy_path, "[limits]"));
                    }
                }
                push(
                    "grants",
                    Verdict::Refuse {
                        reason: e.to_string(),
                        change: format!(
                            "allow them at {} (manifest syntax), or ask for less in {}",
                            places.join(" and "),
                            manifest_path.display()
                        ),
                    },
                )
            }
        },
    }

    // No downgrade below what the box has, no other bytes under its version.
    match (&policy, installed) {
        (_, None) => push(
            "versions",
            Verdict::Skipped(format!(
                "no record of the box's components here ({} does not exist): pass --installed FILE with the box's list_components result",
                config.pushed_components_dir().display()
            )),
        ),
        (None, Some(_)) => push("versions", needs_policy()),
        (Some(p), Some(inventory)) => {
            let problems = version_problems(p, &manifest, Some(&sha256), inventory);
            if problems.is_empty() {
                let now = match (inventory.installed(&name), inventory.high_water.get(&name)) {
                    (Some(c), _) => format!("{name} {} installed", c.version),
                    (None, Some(h)) => format!("{name} not installed, {h} the newest it ever had"),
                    (None, None) => format!("{name} never installed"),
                };
                push(
                    "versions",
                    Verdict::Pass(format!("{now} (from {})", inventory.source)),
                );
            }
            for e in problems {
                let change = match &e {
                    PushedError::Store(_) => format!(
                        "give this build a new version in {}",
                        manifest_path.display()
                    ),
                    _ => format!(
                        "give this build a version above it in {}, or set {}",
                        manifest_path.display(),
                        at(policy_path, "allow-downgrade")
                    ),
                };
                push(
                    "versions",
                    Verdict::Refuse {
                        reason: format!("{e} (from {})", inventory.source),
                        change,
                    },
                );
            }
        }
    }

    // Signed by a trusted key, or unsigned where the policy allows it.
    if depth.signature {
        let verdict = match (&policy, candidate.signature) {
            (None, None) => needs_policy(),
            (Some(p), signature) => {
                match manager.check_signature(p, &name, &sha256, candidate.manifest_text, signature)
                {
                    Ok(Some(signer)) => Verdict::Pass(format!("valid, by trusted key {signer}")),
                    Ok(None) => Verdict::Pass(format!(
                        "not signed, allowed by {}",
                        at(policy_path, "allow-unsigned")
                    )),
                    Err(e) => signature_refusal(e, &site_conf, policy_path),
                }
            }
            (None, Some(signature)) => {
                match manager.check_signature(
                    &Policy::default(),
                    &name,
                    &sha256,
                    candidate.manifest_text,
                    Some(signature),
                ) {
                    Ok(signer) => Verdict::Pass(format!(
                        "valid, by trusted key {}",
                        signer.unwrap_or_default()
                    )),
                    Err(e) => signature_refusal(e, &site_conf, policy_path),
                }
            }
        };
        push("signature", verdict);
    }

    // Its command types: not reserved, free, allowed to run.
    match &policy {
        None => {
            let verdict = match check_not_management(&name, &manifest.commands) {
                Ok(()) => needs_policy(),
                Err(e) => Verdict::Refuse {
                    reason: e.to_string(),
                    change: format!("commands in {}", manifest_path.display()),
                },
            };
            push("commands", verdict)
        }
        Some(p) => {
            let problems = match installed {
                Some(inventory) => manager.command_problems(p, &manifest, inventory),
                None => manager.command_problems(p, &manifest, &manager.inventory()),
            };
            if problems.is_empty() {
                let how = if p.extend_allowlist {
                    format!("allowed by {}", at(policy_path, "extend-allowlist"))
                } else {
                    "in ALLOWED_COMMANDS".to_owned()
                };
                push(
                    "commands",
                    Verdict::Pass(format!("{}: {how}", manifest.commands.join(", "))),
                );
            }
            for e in problems {
                let change = command_change(&e, &site_conf, policy_path, manifest_path);
                push(
                    "commands",
                    Verdict::Refuse {
                        reason: e.to_string(),
                        change,
                    },
                );
            }
        }
    }

    // The server can send install_component at all.
    match &policy {
        None => push("install_component", needs_policy()),
        Some(p) => {
            let allowed = super::allowed_commands(
                &config,
                &crate::sandbox::registry::Registry::default(),
                Some(p),
            );
            if allowed.contains("install_component") {
                push(
                    "install_component",
                    Verdict::Pass(if config.allowed_commands_set {
                        "in ALLOWED_COMMANDS".to_owned()
                    } else {
                        "enabled by the site policy (ALLOWED_COMMANDS not set)".to_owned()
                    }),
                );
            } else {
                push(
                    "install_component",
                    Verdict::Refuse {
                        reason: "this box does not accept install_component: ALLOWED_COMMANDS is set in site.conf and does not list it".to_owned(),
                        change: format!(
                            "add install_component (and remove_component, list_components, rollback_component) to {}",
                            at(&site_conf, "ALLOWED_COMMANDS")
                        ),
                    },
                );
            }
        }
    }

    // The WIT API it was built against, and that it links here.
    let api = manifest.api_version.as_deref().unwrap_or("0.1");
    let supported = SUPPORTED_API_VERSIONS.join(", ");
    let rebuild = "rebuild it with the SDK and WIT of this agent (`neopro-runtime component new` vendors them)";
    let described = match (depth.link, check_is_component(&name, candidate.wasm)) {
        (_, Err(e)) => Err(e.to_string()),
        (None, Ok(())) => Ok(None),
        (Some(sandbox), Ok(())) => sandbox
            .describe(candidate.wasm)
            .map(Some)
            .map_err(|e| e.to_string()),
    };
    let imported: Vec<String> = match &described {
        Ok(Some(d)) => {
            let mut versions: Vec<String> = d
                .imports
                .iter()
                .filter_map(|i| i.strip_prefix("neopro:agent/"))
                .filter_map(|i| i.split_once('@').map(|(_, v)| v.to_owned()))
                .collect();
            versions.sort();
            versions.dedup();
            versions
        }
        _ => Vec::new(),
    };
    let foreign: Vec<&String> = imported
        .iter()
        .filter(|v| {
            !SUPPORTED_API_VERSIONS
                .iter()
                .any(|s| v.starts_with(&format!("{s}.")))
        })
        .collect();
    if foreign.is_empty() {
        let imports = if imported.is_empty() {
            String::new()
        } else {
            format!(", imports neopro:agent@{}", imported.join(", @"))
        };
        push(
            "api-version",
            Verdict::Pass(format!(
                "{api}{imports}; this agent links neopro:agent {supported}"
            )),
        );
    } else {
        push(
            "api-version",
            Verdict::Refuse {
                reason: format!(
                    "it imports neopro:agent@{}; this agent links neopro:agent {supported}",
                    foreign
                        .iter()
                        .map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(", @")
                ),
                change: rebuild.to_owned(),
            },
        );
    }
    match &described {
        Ok(None) => {}
        Ok(Some(d)) => match &d.links {
            Ok(())
                if d.exports
                    .iter()
                    .any(|e| e.starts_with("neopro:agent/handler")) =>
            {
                push(
                    "links",
                    Verdict::Pass(
                        "a neopro:agent/command component, every import provided".to_owned(),
                    ),
                )
            }
            Ok(()) => push(
                "links",
                Verdict::Refuse {
                    reason: "not the neopro:agent command world (no neopro:agent/handler export)"
                        .to_owned(),
                    change: rebuild.to_owned(),
                },
            ),
            Err(e) => push(
                "links",
                Verdict::Refuse {
                    reason: format!("it does not link against this agent: {e}"),
                    change: rebuild.to_owned(),
                },
            ),
        },
        Err(e) => push(
            "links",
            Verdict::Refuse {
                reason: e.clone(),
                change: rebuild.to_owned(),
            },
        ),
    }

    // The first compile fits the site's memory budget.
    let bytes = candidate.wasm.len() as u64;
    match &policy {
        None => push("compile", needs_policy()),
        Some(p) => match p.check_compile_size(&name, bytes) {
            Ok(()) => push(
                "compile",
                Verdict::Pass(format!(
                    "about {} MiB estimated for {:.1} MB of WebAssembly, within max-compile-mib = {}",
                    super::policy::estimated_compile_mib(bytes),
                    bytes as f64 / 1e6,
                    p.limits.max_compile_mib
                )),
            ),
            Err(e) => push(
                "compile",
                Verdict::Refuse {
                    reason: e.to_string(),
                    change: format!(
                        "raise {}, or make the component smaller",
                        at(policy_path, "max-compile-mib")
                    ),
                },
            ),
        },
    }
    report.component = Some(format!("{} {}", manifest.name, manifest.version));
    report
}

fn signature_refusal(e: PushedError, site_conf: &Path, policy: &Path) -> Verdict {
    let change = match &e {
        PushedError::Policy(PolicyError::Unsigned { .. }) => format!(
            "sign it (neopro-runtime component sign --key KEY_FILE <wasm>), or set {}",
            at(policy, "allow-unsigned")
        ),
        PushedError::Signing(SigningError::Invalid(_)) => {
            "sign this build again (neopro-runtime component sign)".to_owned()
        }
        _ => format!(
            "add the signer's public key to {}",
            at(site_conf, "TRUSTED_COMPONENT_KEYS")
        ),
    };
    Verdict::Refuse {
        reason: e.to_string(),
        change,
    }
}

fn command_change(e: &PushedError, site_conf: &Path, policy: &Path, manifest: &Path) -> String {
    match e {
        PushedError::CommandNotAllowed { command, .. } => format!(
            "add {command} to {}, or set {}",
            at(site_conf, "ALLOWED_COMMANDS"),
            at(policy, "extend-allowlist")
        ),
        PushedError::Policy(PolicyError::ReplacesBuiltin { command, .. }) => format!(
            "add \"{command}\" to {}, or pick another command type in {}",
            at(policy, "replace-builtin"),
            manifest.display()
        ),
        PushedError::CommandTaken { other, .. } => format!(
            "remove_component '{other}' on the box first, or pick another command type in {}",
            manifest.display()
        ),
        PushedError::BuiltInName(_) => format!("name in {}", manifest.display()),
        _ => format!("commands in {}", manifest.display()),
    }
}
