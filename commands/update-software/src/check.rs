//! Everything about an update that can be checked before it runs — the
//! version as a plain name, a URL, the announced size against the free
//! disk, no silent downgrade, the URL's scheme and the checksum's syntax.
//!
//! One copy, used twice: at the start of every run (so a refused update
//! sends no progress and touches nothing), and when the agent asks before
//! keeping the command for the maintenance window (`{"check": true}` added
//! to its data; the manifest declares `check-before-window`), so that a
//! scheduled update is refused at once with the very message a run would
//! get, instead of being answered "scheduled" and failing hours later.
//!
//! Whether a release is the app's or the agent's is known only once it is
//! downloaded, and each kind has its own installed version (the app 2.x,
//! the agent 0.x). So a downgrade is refused here only when the version is
//! older than both, which either kind would be refused for; the rest is
//! checked after the download, by `archive.check-app-release` for an app
//! release and by `archive.stage-agent-release` for the agent. A signature
//! is checked after the download too (only the host knows whether the box
//! trusts update keys).

use neopro_guest_sdk::serde_json::Value;
use neopro_guest_sdk::{Error, Root, archive, files, system};

/// The agent's version order (one copy of the rule, compiled into this
/// component too): semantic-version order, non-versions never ordered.
#[allow(dead_code)]
#[path = "../../../runtime/src/version_order.rs"]
mod version_order;

/// Used for the disk check when the server gives no size (upstream's).
const DEFAULT_PACKAGE_SIZE: u64 = 100 << 20;

/// What the command asks for, as the checks read it.
pub(crate) struct Request<'a> {
    pub version: Option<&'a Value>,
    pub update_url: Option<&'a str>,
    pub checksum: Option<&'a str>,
    pub package_size: Option<&'a Value>,
}

/// A request that passed.
#[derive(Debug)]
pub(crate) struct Checked {
    pub version: String,
    pub url: String,
    /// The release installed now.
    pub installed: String,
}

impl Checked {
    /// The version asked for is the one installed: "already installed" or
    /// a repair, which the run decides (nothing after the URL is checked).
    pub fn is_installed(&self) -> bool {
        self.installed == self.version
    }
}

/// `Err` when the update cannot succeed whenever it runs.
pub(crate) fn check(request: &Request) -> Result<Checked, Error> {
    let version = check_version(request.version)?;
    let url = request
        .update_url
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| Error::invalid_input("updateUrl is required"))?
        .to_owned();
    let installed = system::version()?.version;
    let checked = Checked {
        version,
        url,
        installed,
    };
    if checked.is_installed() {
        return Ok(checked);
    }
    older_than_both(&checked.version, &checked.installed)?;
    enough_disk(request.package_size)?;
    if !(checked.url.starts_with("http://") || checked.url.starts_with("https://")) {
        // The download's own rule, refused before anything is scheduled.
        return Err(Error::invalid_input(format!(
            "only http:// and https:// downloads are allowed, not '{}'",
            checked.url
        )));
    }
    if let Some(checksum) = request.checksum {
        sha256_syntax(checksum)?;
    }
    Ok(checked)
}

/// Release versions end up in paths and file names: plain characters only.
fn check_version(value: Option<&Value>) -> Result<String, Error> {
    let text = match value {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(Error::invalid_input("version is required")),
    };
    let plain = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
    if plain {
        Ok(text)
    } else {
        Err(Error::invalid_input(format!(
            "version '{text}' must be 1-64 letters, digits, '.', '_', '+' or '-'"
        )))
    }
}

/// A version older than the installed app *and* the running agent is
/// refused before its download, unless the site allows downgrades (which
/// the host's app-release rule tells: it refuses such a version only then).
fn older_than_both(version: &str, installed: &str) -> Result<(), Error> {
    let Some(agent) = system::agent_version() else {
        return Ok(());
    };
    if version_order::is_older(version, installed)
        && version_order::is_older(version, &agent)
        && matches!(
            archive::check_app_release(version),
            Err(Error::NotPermitted(_))
        )
    {
        return Err(Error::NotPermitted(format!(
            "refusing to install {version}: it is older than both the installed release {installed} and the running agent {agent}. Downgrades are refused unless UPDATE_ALLOW_DOWNGRADE=true in site.conf"
        )));
    }
    Ok(())
}

/// Three times the package must fit in the staging root (download,
/// extraction, backup). Unknown free space (no staging root yet) is not
/// refused here: the download checks its own reserve.
pub(crate) fn enough_disk(package_size: Option<&Value>) -> Result<(), Error> {
    let Ok(free) = files::free_bytes(Root::Staging) else {
        return Ok(());
    };
    let needed = size_of(package_size).saturating_mul(3);
    if free < needed {
        return Err(Error::TooLarge(format!(
            "Espace disque insuffisant: {}MB disponibles, {}MB requis",
            mb(free),
            mb(needed)
        )));
    }
    Ok(())
}

/// `packageSize` is a BIGINT the server sends as a string (§12.3 item 9).
/// A size beyond u64 is taken as u64::MAX: too big, not "unknown".
fn size_of(value: Option<&Value>) -> u64 {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match value {
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 1.0).map(|f| f as u64)),
        Some(Value::String(s)) => {
            let s = s.trim();
            s.parse().ok().or_else(|| digits(s).then_some(u64::MAX))
        }
        _ => None,
    }
    .filter(|n| *n > 0)
    .unwrap_or(DEFAULT_PACKAGE_SIZE)
}

fn mb(bytes: u64) -> u64 {
    bytes.saturating_add(1 << 19) >> 20
}

/// The form the download accepts (`sha256:` / `sha256-` prefix allowed),
/// refused before anything is scheduled.
fn sha256_syntax(text: &str) -> Result<(), Error> {
    let hex = text
        .trim()
        .trim_start_matches("sha256:")
        .trim_start_matches("sha256-");
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(());
    }
    Err(Error::invalid_input(format!(
        "'{text}' is not a sha256 checksum (64 hex digits)"
    )))
}
