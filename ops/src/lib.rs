//! neopro-ops: the `neopro-runtime` command line ([`cli`]) and the operator
//! commands — setting a box up and finding out why it does not connect
//! (`register`, `resync`, `diagnose`, `install-service`), `reset`, and the
//! component tools (`component new | keygen | sign | verify | inspect |
//! check`). They run once, by a person at the box; the agent itself never
//! calls them. A crate of their own so that they reach the agent only through
//! its public API (crate `neopro-runtime`), and the agent cannot reach them.

pub mod central_api;
pub mod cli;
pub mod command;
pub mod component;
pub mod diagnose;
pub mod install_service;
pub mod new_component;
pub mod precompile;
pub mod prompt;
pub mod register;
pub mod reset;
pub mod resync;
pub mod site_file;
pub mod tls_probe;

use std::path::{Path, PathBuf};

/// Why `register` or `resync` stopped. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Api(#[from] central_api::ApiError),
    #[error(transparent)]
    Prompt(#[from] prompt::PromptError),
    #[error(transparent)]
    File(#[from] site_file::SiteFileError),
    #[error(transparent)]
    Config(#[from] neopro_runtime::config::ConfigError),
    #[error(
        "{what} is needed: pass {flag} (or set {env}), or run the command in a terminal to be asked"
    )]
    Missing {
        what: &'static str,
        flag: &'static str,
        env: &'static str,
    },
    #[error(
        "{path} already has SITE_ID={site_id}: this box is registered. Use `neopro-runtime resync` \
         for a new API key, or --force to register it as a new site"
    )]
    AlreadyRegistered { path: PathBuf, site_id: String },
    #[error(
        "site {site_id} was created on the central server but {path} could not be written ({reason}); \
         fix that, then run `neopro-runtime resync --site-id {site_id}` to get a key for it"
    )]
    CreatedNotSaved {
        site_id: String,
        path: PathBuf,
        reason: String,
    },
    /// The old key no longer works, so the new one is printed: it is the
    /// only copy.
    #[error(
        "the central server gave site {site_id} a new API key (the old one no longer works) \
         but {path} could not be written ({reason}). Fix that, then put this line in {path}:\n\
         SITE_API_KEY={key}\n\
         and restart the agent (`sudo systemctl restart neopro-runtime`)"
    )]
    KeyNotSaved {
        site_id: String,
        key: String,
        path: PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Choice(String),
}

/// Where the operator commands read and write, and what they read from the
/// environment (injected so tests control both).
pub struct Context<'a> {
    /// site.conf: `--config`, else `CONFIG_FILE`, else /etc/neopro/site.conf.
    pub config_path: PathBuf,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Where user names are looked up.
    pub passwd: PathBuf,
}

impl<'a> Context<'a> {
    pub fn new(explicit: Option<&Path>, env: &'a dyn Fn(&str) -> Option<String>) -> Context<'a> {
        let config_path = explicit.map(Path::to_owned).unwrap_or_else(|| {
            PathBuf::from(
                env("CONFIG_FILE")
                    .unwrap_or_else(|| neopro_runtime::config::DEFAULT_CONFIG_FILE.to_owned()),
            )
        });
        Context {
            config_path,
            env,
            passwd: PathBuf::from("/etc/passwd"),
        }
    }

    /// A non-empty value from the environment.
    pub fn env(&self, key: &str) -> Option<String> {
        (self.env)(key).filter(|v| !v.trim().is_empty())
    }
}

/// A flag's value, else the environment's, else `None`.
fn pick(flag: &Option<String>, ctx: &Context<'_>, env: &str) -> Option<String> {
    flag.clone()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| ctx.env(env))
}

/// A value from flag / environment, else asked (with `default`), else the
/// default when nobody can be asked.
fn value_or_ask(
    prompter: &mut dyn prompt::Prompter,
    given: Option<String>,
    question: &str,
    default: Option<&str>,
    missing: OpsError,
) -> Result<String, OpsError> {
    if let Some(v) = given {
        return Ok(v);
    }
    if prompter.interactive() {
        loop {
            let answer = prompter.ask(question, default)?;
            if !answer.trim().is_empty() {
                return Ok(answer.trim().to_owned());
            }
        }
    }
    default.map(str::to_owned).ok_or(missing)
}

/// The admin password: given, else asked without echo.
fn password(
    prompter: &mut dyn prompt::Prompter,
    given: Option<String>,
) -> Result<String, OpsError> {
    match given {
        Some(p) => Ok(p),
        None if prompter.interactive() => Ok(prompter.ask_secret("Admin password")?),
        None => Err(OpsError::Missing {
            what: "the admin password",
            flag: "--password-stdin",
            env: "ADMIN_PASSWORD",
        }),
    }
}

/// Who should own a rewritten site.conf: `--user` when running as root,
/// else the existing file's owner when running as root, else us.
fn owner_for(
    ctx: &Context<'_>,
    user: Option<&str>,
    existing: &Path,
) -> Result<Option<site_file::Owner>, OpsError> {
    if !site_file::running_as_root() {
        return Ok(None);
    }
    match user {
        Some(name) => Ok(Some(site_file::lookup_user(&ctx.passwd, name)?)),
        None => Ok(site_file::current_owner(existing)),
    }
}
