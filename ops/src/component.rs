//! `neopro-runtime component keygen | sign | verify | inspect | check`: the operator's
//! tools for pushed components (CLI glue, so anyhow).
//!
//! A bundle is three files side by side: `<name>.wasm`, its manifest
//! `<name>.toml` and, once signed, `<name>.sig` (one line: the signature).

use anyhow::{Context, bail};
use clap::Subcommand;
use neopro_runtime::config::SiteConfig;
use neopro_runtime::host::HostServices;
use neopro_runtime::manifest::Manifest;
use neopro_runtime::pushed::check as pushed_check;
use neopro_runtime::sandbox::Sandbox;
use neopro_runtime::signing::components::{self as signing, PublicKey, SecretKey};
use neopro_runtime::store::hash::sha256_hex;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Subcommand, Debug)]
pub enum ComponentCommand {
    /// Start a new command component: writes DIR/NAME/ with the code, the
    /// manifest, a test and the vendored SDK + WIT; it builds anywhere.
    New {
        /// The component name (a-z, 0-9, '-'); its command type is the same
        /// with '_' (video-stats handles video_stats).
        name: String,
        /// The folder to create NAME/ in (default: the current one).
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
        /// rust (cargo, wasm32-wasip2) or ts (TypeScript, npm, QuickJS).
        #[arg(long, value_enum, default_value = "rust")]
        lang: crate::new_component::Lang,
    },
    /// Create a signing key pair: the secret key file (mode 0600, keep it off
    /// the boxes) and the public key to put in TRUSTED_COMPONENT_KEYS.
    Keygen {
        /// Where to write the secret key (never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Sign a component: writes <name>.sig beside it and prints the
    /// install_component parameters.
    Sign {
        /// The component's .wasm (its manifest is the .toml beside it).
        wasm: PathBuf,
        /// The secret key file made by `keygen`.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Where the boxes will download the .wasm from (goes into the
        /// printed parameters).
        #[arg(long)]
        url: Option<String>,
    },
    /// Check a bundle's signature against trusted keys (--key, else
    /// TRUSTED_COMPONENT_KEYS of site.conf).
    Verify {
        wasm: PathBuf,
        /// A trusted public key (ed25519:<hex>); repeatable.
        #[arg(long = "key", value_name = "PUBLIC_KEY")]
        keys: Vec<String>,
        #[command(flatten)]
        parts: BundleParts,
    },
    /// Show a component's hash, world, imports, exports, manifest and
    /// signature.
    Inspect { wasm: PathBuf },
    /// What a box with this site.conf (--config) and site policy would do
    /// with the component at install_component: grants and limits against
    /// the policy, signature, command allowlist, API version, linking and
    /// compile budget, each refusal with the line to change. Exits 1 when
    /// the box would refuse it.
    Check {
        /// The component's .wasm (its manifest is the .toml beside it, its
        /// signature the .sig).
        wasm: PathBuf,
        /// The box's site policy (default: COMPONENT_POLICY_PATH of
        /// site.conf, else /etc/neopro/component-policy.toml).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// The box's list_components result (JSON, as the box answered it):
        /// its installed versions, the newest it ever had of each, and its
        /// command types, so a downgrade or clash it would refuse is
        /// refused here. Default: this machine's STATE_PATH store, if any.
        #[arg(long, value_name = "FILE")]
        installed: Option<PathBuf>,
        #[command(flatten)]
        parts: BundleParts,
    },
    /// Sign a software release archive for update_software on boxes with
    /// UPDATE_TRUSTED_KEYS; prints the sha256 and the signature.
    SignRelease {
        /// The release archive (.tar.gz).
        archive: PathBuf,
        /// The version the release installs (it is signed too).
        #[arg(long)]
        version: String,
        /// The secret key file made by `keygen`.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Also rewrite the archive so it carries its own signature: a
        /// signed manifest of every entry as its first entry. Such a
        /// release needs no `signature` field, so the upstream Updates page
        /// can deliver it unchanged. The printed checksum is the new file's.
        #[arg(long)]
        embed: bool,
    },
}

/// Where a bundle's manifest and signature are when they are not named
/// like its .wasm (a .wasm renamed for upload).
#[derive(clap::Args, Debug, Default)]
pub struct BundleParts {
    /// The manifest (default: the .toml named like the .wasm, beside it).
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// The signature (default: the .sig named like the .wasm, beside it).
    #[arg(long, value_name = "FILE")]
    pub signature: Option<PathBuf>,
}

/// A component with its manifest text and signature, read from disk.
pub struct Bundle {
    pub wasm: Vec<u8>,
    pub manifest_path: PathBuf,
    pub manifest_text: String,
    pub signature: Option<String>,
    pub signature_path: PathBuf,
}

impl Bundle {
    pub fn open(wasm_path: &Path) -> anyhow::Result<Self> {
        Self::open_parts(wasm_path, &BundleParts::default())
    }

    /// [`Bundle::open`] with the manifest and signature where `parts` says.
    pub fn open_parts(wasm_path: &Path, parts: &BundleParts) -> anyhow::Result<Self> {
        let wasm =
            std::fs::read(wasm_path).with_context(|| format!("reading {}", wasm_path.display()))?;
        let manifest_path = parts
            .manifest
            .clone()
            .unwrap_or_else(|| neopro_runtime::sandbox::registry::manifest_for_wasm(wasm_path));
        let manifest_text = std::fs::read_to_string(&manifest_path).with_context(|| {
            format!(
                "reading the manifest {} (it must sit beside the .wasm, named like it; or pass --manifest FILE)",
                manifest_path.display()
            )
        })?;
        let signature_path = parts
            .signature
            .clone()
            .unwrap_or_else(|| wasm_path.with_extension("sig"));
        let signature = match std::fs::read_to_string(&signature_path) {
            Ok(text) => Some(text.trim().to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => bail!("reading {}: {e}", signature_path.display()),
        };
        Ok(Bundle {
            wasm,
            manifest_path,
            manifest_text,
            signature,
            signature_path,
        })
    }

    /// The bundle as `install_component` would receive it.
    pub fn candidate(&self) -> pushed_check::Candidate<'_> {
        pushed_check::Candidate {
            wasm: &self.wasm,
            manifest_path: &self.manifest_path,
            manifest_text: &self.manifest_text,
            signature: self.signature.as_deref(),
        }
    }

    pub fn sha256(&self) -> String {
        sha256_hex(&self.wasm)
    }

    /// Verifies the signature; `Ok(None)` when the bundle is unsigned.
    pub fn verify(&self, keys: &[PublicKey]) -> anyhow::Result<Option<String>> {
        let Some(signature) = &self.signature else {
            return Ok(None);
        };
        if keys.is_empty() {
            bail!(
                "{} is signed but no trusted key is known: pass --key, set TRUSTED_COMPONENT_KEYS in site.conf, or (run-component only) --ignore-signature",
                self.signature_path.display()
            );
        }
        Ok(Some(signing::verify(
            keys,
            &self.sha256(),
            &self.manifest_text,
            signature,
        )?))
    }
}

/// The trusted keys of site.conf.
pub fn site_keys(config: &SiteConfig) -> anyhow::Result<Vec<PublicKey>> {
    config
        .trusted_component_keys
        .iter()
        .map(|k| PublicKey::parse(k).context("TRUSTED_COMPONENT_KEYS in site.conf"))
        .collect()
}

pub fn run(config: &SiteConfig, command: ComponentCommand) -> anyhow::Result<ExitCode> {
    match command {
        ComponentCommand::New { name, dir, lang } => {
            let created = crate::new_component::create(&name, &dir, lang)?;
            println!(
                "created {} ({} files). Next:",
                created.dir.display(),
                created.files.len()
            );
            for step in created.next_steps {
                println!("  {step}");
            }
            Ok(ExitCode::SUCCESS)
        }
        ComponentCommand::Keygen { out } => keygen(&out),
        ComponentCommand::Sign { wasm, key, url } => sign(&wasm, &key, url),
        ComponentCommand::Verify { wasm, keys, parts } => {
            let keys = if keys.is_empty() {
                site_keys(config)?
            } else {
                keys.iter()
                    .map(|k| PublicKey::parse(k).map_err(anyhow::Error::from))
                    .collect::<anyhow::Result<_>>()?
            };
            let bundle = Bundle::open_parts(&wasm, &parts)?;
            match bundle.verify(&keys)? {
                Some(signer) => {
                    println!("{}: valid signature by key {signer}", wasm.display());
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    println!(
                        "{}: not signed (no {}; a signature named otherwise: --signature FILE)",
                        wasm.display(),
                        bundle.signature_path.display()
                    );
                    Ok(ExitCode::from(1))
                }
            }
        }
        ComponentCommand::Inspect { wasm } => inspect(config, &wasm),
        ComponentCommand::Check {
            wasm,
            policy,
            installed,
            parts,
        } => check(config, &wasm, policy, installed.as_deref(), &parts),
        ComponentCommand::SignRelease {
            archive,
            version,
            key,
            embed,
        } => {
            let key_text = std::fs::read_to_string(&key)
                .with_context(|| format!("reading {}", key.display()))?;
            let key = SecretKey::parse(&key_text)?;
            if embed {
                let file = std::fs::File::open(&archive)
                    .with_context(|| format!("reading {}", archive.display()))?;
                let kind = if neopro_runtime::selfupdate::release::is_agent_release(
                    std::io::BufReader::new(file),
                ) {
                    neopro_runtime::signing::manifest::AGENT_KIND
                } else {
                    neopro_runtime::signing::manifest::APP_KIND
                };
                key.seal_release(&archive, &version, kind)?;
            }
            let bytes = std::fs::read(&archive)
                .with_context(|| format!("reading {}", archive.display()))?;
            let sha256 = sha256_hex(&bytes);
            let params = serde_json::json!({
                "version": version,
                "checksum": sha256,
                "signature": key.sign_release(&version, &sha256),
            });
            println!("{}", serde_json::to_string_pretty(&params)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn keygen(out: &Path) -> anyhow::Result<ExitCode> {
    use std::os::unix::fs::OpenOptionsExt;
    let key = SecretKey::generate()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| {
            format!(
                "creating {} (an existing key is never overwritten)",
                out.display()
            )
        })?;
    file.write_all(key.to_text().as_bytes())?;
    file.sync_all()?;
    let public = key.public_key();
    println!(
        "secret key written to {} (keep it off the boxes)",
        out.display()
    );
    println!(
        "public key (key id {}), for TRUSTED_COMPONENT_KEYS:",
        public.id()
    );
    println!("{public}");
    Ok(ExitCode::SUCCESS)
}

fn sign(wasm: &Path, key_file: &Path, url: Option<String>) -> anyhow::Result<ExitCode> {
    let key_text = std::fs::read_to_string(key_file)
        .with_context(|| format!("reading {}", key_file.display()))?;
    let key = SecretKey::parse(&key_text)?;
    let mut bundle = Bundle::open(wasm)?;
    let manifest = Manifest::parse(
        &bundle.manifest_path.display().to_string(),
        &bundle.manifest_text,
    )?;
    let signature = key.sign(&bundle.sha256(), &bundle.manifest_text);
    std::fs::write(&bundle.signature_path, format!("{signature}\n"))
        .with_context(|| format!("writing {}", bundle.signature_path.display()))?;
    bundle.signature = Some(signature.clone());
    eprintln!(
        "signed {} {} with key {}; signature in {}",
        manifest.name,
        manifest.version,
        key.public_key().id(),
        bundle.signature_path.display()
    );
    let params = serde_json::json!({
        "name": manifest.name,
        "version": manifest.version,
        "url": url.unwrap_or_else(|| format!("https://<where the box downloads it>/{}.wasm", manifest.name)),
        "sha256": bundle.sha256(),
        "signature": signature,
        "manifest": bundle.manifest_text,
    });
    println!("{}", serde_json::to_string_pretty(&params)?);
    Ok(ExitCode::SUCCESS)
}

fn inspect(config: &SiteConfig, wasm: &Path) -> anyhow::Result<ExitCode> {
    let bundle = Bundle::open(wasm)?;
    let manifest = Manifest::parse(
        &bundle.manifest_path.display().to_string(),
        &bundle.manifest_text,
    );
    println!(
        "file:      {} ({} bytes)",
        wasm.display(),
        bundle.wasm.len()
    );
    println!("sha256:    {}", bundle.sha256());
    let services = Arc::new(HostServices::from_config(config));
    let sandbox = Sandbox::new(services, None)?;
    match sandbox.describe(&bundle.wasm) {
        Ok(d) => {
            let world = if d
                .exports
                .iter()
                .any(|e| e.starts_with("neopro:agent/handler"))
            {
                "neopro:agent/command"
            } else {
                "not the neopro:agent command world (no neopro:agent/handler export)"
            };
            println!("world:     {world}");
            println!(
                "links:     {}",
                match &d.links {
                    Ok(()) => "yes, it can run on this agent".to_owned(),
                    Err(e) => format!("NO: {e}"),
                }
            );
            println!("imports:");
            for i in &d.imports {
                println!("  {i}");
            }
            println!("exports:");
            for e in &d.exports {
                println!("  {e}");
            }
        }
        Err(e) => println!("component: NO: {e}"),
    }
    match &manifest {
        Ok(m) => {
            println!(
                "manifest:  {} ({} {})",
                bundle.manifest_path.display(),
                m.name,
                m.version
            );
            println!("  commands: {}", m.commands.join(", "));
            println!(
                "  limits:   {} MiB, {} s",
                m.limits.memory_mib, m.limits.timeout_secs
            );
            let grants = m.grant_summary();
            println!(
                "  grants:   {}",
                if grants.is_empty() {
                    "none".to_owned()
                } else {
                    grants.join("; ")
                }
            );
        }
        Err(e) => println!("manifest:  NOT VALID: {e}"),
    }
    let signature = match (&bundle.signature, site_keys(config)) {
        (None, _) => "none".to_owned(),
        (Some(_), Err(e)) => format!("not checked: {e:#}"),
        (Some(_), Ok(keys)) if keys.is_empty() => {
            "not checked (no trusted key given; `component verify --key ed25519:…` checks it)"
                .to_owned()
        }
        (Some(s), Ok(keys)) => match bundle.verify(&keys) {
            Ok(Some(signer)) => format!("valid, by trusted key {signer}"),
            Ok(None) => s.clone(),
            Err(e) => format!("NOT VALID here: {e:#}"),
        },
    };
    println!("signature: {signature}");
    Ok(ExitCode::SUCCESS)
}

fn check(
    config: &SiteConfig,
    wasm: &Path,
    policy: Option<PathBuf>,
    installed: Option<&Path>,
    parts: &BundleParts,
) -> anyhow::Result<ExitCode> {
    let bundle = Bundle::open_parts(wasm, parts)?;
    let installed = installed
        .map(neopro_runtime::pushed::inventory::Inventory::from_list_file)
        .transpose()?;
    let policy = policy.unwrap_or_else(|| config.component_policy_path.clone());
    let services = Arc::new(HostServices::from_config(config));
    let sandbox = Sandbox::new(services, None)?;
    let report = pushed_check::check(
        config,
        &policy,
        &bundle.candidate(),
        pushed_check::Depth {
            link: Some(&sandbox),
            signature: true,
            installed: installed.as_ref(),
        },
    );
    println!(
        "component: {} ({})",
        report.component.as_deref().unwrap_or("?"),
        wasm.display()
    );
    println!(
        "box:       site.conf {}, policy {}",
        report.site_conf.display(),
        report.policy.display()
    );
    for line in report_lines(&report) {
        println!("{line}");
    }
    let refusals = report.refusals().count();
    if refusals == 0 {
        println!("result:    a box with this site.conf and policy would install it");
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "result:    a box with this site.conf and policy would refuse it ({refusals} {})",
            if refusals == 1 { "refusal" } else { "refusals" }
        );
        Ok(ExitCode::from(1))
    }
}

/// One line per check, a `change:` line under each refusal.
pub fn report_lines(report: &pushed_check::Report) -> Vec<String> {
    let mut lines = Vec::new();
    for f in &report.findings {
        match &f.verdict {
            pushed_check::Verdict::Pass(text) => {
                lines.push(format!("ok       {}: {text}", f.topic))
            }
            pushed_check::Verdict::Skipped(why) => {
                lines.push(format!("skipped  {}: {why}", f.topic))
            }
            pushed_check::Verdict::Refuse { reason, change } => {
                lines.push(format!("REFUSED  {}: {reason}", f.topic));
                lines.push(format!("         change: {change}"));
            }
        }
    }
    lines
}
