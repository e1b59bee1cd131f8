//! Everything about an `update_software` command that can be checked before
//! it runs — the version as a plain name, the URL's scheme, the checksum's
//! syntax, a signature's syntax when the box checks them, the announced size
//! against the free disk, no silent downgrade — checked by the agent before
//! it decides to run or to schedule, so that an update scheduled for the
//! maintenance window is refused at once, with the very message an update
//! run at once would get, instead of being answered "scheduled" and failing
//! hours later.
//!
//! Whether a release is the app's or the agent's is known only once it is
//! downloaded, and each kind has its own installed version (the app 2.x,
//! the agent 0.x). So the pre-check refuses a downgrade only when the
//! version is older than both, which either kind would be refused for; the
//! rest is checked after the download, by `archive.check-app-release` for
//! an app release and by the agent release's own checks for the agent.
//!
//! The checks and their messages are the update-software component's and
//! the host's (download, signature): `tests/e2e/update.rs` holds them equal.

use crate::config::SiteConfig;
use serde_json::Value;

/// Used for the disk check when the server gives no size (the component's).
const DEFAULT_PACKAGE_SIZE: u64 = 100 << 20;

fn check_version(value: Option<&Value>) -> Result<String, String> {
    let text = match value {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err("version is required".to_owned()),
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
        Err(format!(
            "version '{text}' must be 1-64 letters, digits, '.', '_', '+' or '-'"
        ))
    }
}

/// `packageSize` as the component reads it (a BIGINT sent as a string).
fn package_size(value: Option<&Value>) -> u64 {
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

/// Free bytes where the package would be downloaded (the staging folder,
/// or the nearest folder above it that exists on a fresh box).
fn free_bytes(config: &SiteConfig) -> Option<u64> {
    let staging = config.staging_dir();
    let existing = staging.ancestors().find(|p| p.is_dir())?;
    let s = rustix::fs::statvfs(existing).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

/// The installed release, as the component reads it.
fn installed_version(config: &SiteConfig) -> String {
    crate::platform::metrics::version_info(&config.neopro_root).version
}

/// `Err(message)` when the update cannot succeed whenever it runs.
pub fn precheck(config: &SiteConfig, data: &Value) -> Result<(), String> {
    let version = check_version(data.get("version"))?;
    let url = data
        .get("updateUrl")
        .and_then(Value::as_str)
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| "updateUrl is required".to_owned())?;
    let installed = installed_version(config);
    if installed == version {
        // "already installed" (or a repair): the component decides.
        return Ok(());
    }
    let agent = crate::selfupdate::own_version();
    if !config.update_allow_downgrade
        && crate::version_order::is_older(&version, &installed)
        && crate::version_order::is_older(&version, &agent)
    {
        return Err(older_than_both(&version, &installed, &agent));
    }
    if let Some(free) = free_bytes(config) {
        let needed = package_size(data.get("packageSize")).saturating_mul(3);
        if free < needed {
            return Err(format!(
                "Espace disque insuffisant: {}MB disponibles, {}MB requis",
                mb(free),
                mb(needed)
            ));
        }
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!(
            "only http:// and https:// downloads are allowed, not '{url}'"
        ));
    }
    if let Some(checksum) = data.get("checksum").filter(|c| !c.is_null()) {
        let text = match checksum {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        crate::host::download::normalise_sha256(&text).map_err(|e| e.message().to_owned())?;
    }
    // No signature is not refused here: the release may carry its own
    // (the signed manifest the upstream Updates page delivers unchanged),
    // which is known only once it is downloaded.
    let signature = data
        .get("signature")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty());
    if !config.update_keys.is_empty()
        && let Some(signature) = signature
        && !(signature.len() == 128 && signature.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(crate::signing::releases::SignatureError::Malformed.to_string());
    }
    Ok(())
}

/// The refusal, before the download, of a version older than both the
/// installed app and the running agent.
pub fn older_than_both(version: &str, app: &str, agent: &str) -> String {
    format!(
        "refusing to install {version}: it is older than both the installed release {app} and the running agent {agent}. Downgrades are refused unless UPDATE_ALLOW_DOWNGRADE=true in site.conf"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(
        dir: &std::path::Path,
        extra: &str,
    ) -> Result<SiteConfig, Box<dyn std::error::Error>> {
        let file = dir.join("site.conf");
        std::fs::create_dir_all(dir.join("neopro"))?;
        std::fs::write(dir.join("neopro/VERSION"), "2.0.0\n")?;
        std::fs::write(
            &file,
            format!(
                "NEOPRO_ROOT={0}/neopro\nSTATE_PATH={0}/state\n{extra}\n",
                dir.display()
            ),
        )?;
        Ok(SiteConfig::load(Some(&file))?)
    }

    #[test]
    fn what_can_be_checked_before_running_is_checked() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let config = config(dir.path(), "")?;
        let good = json!({"version": "2.1.0", "updateUrl": "https://x/u.tar.gz",
            "checksum": "ab".repeat(32), "packageSize": "1000"});
        assert_eq!(precheck(&config, &good), Ok(()));
        let with = |key: &str, value: Value| {
            let mut data = good.clone();
            data[key] = value;
            precheck(&config, &data)
        };
        assert_eq!(
            with("version", json!("../../x")),
            Err("version '../../x' must be 1-64 letters, digits, '.', '_', '+' or '-'".into())
        );
        assert_eq!(
            with("checksum", json!("zz")),
            Err("'zz' is not a sha256 checksum (64 hex digits)".into())
        );
        assert_eq!(
            with("updateUrl", json!("file:///etc/passwd")),
            Err("only http:// and https:// downloads are allowed, not 'file:///etc/passwd'".into())
        );
        let Err(disk) = with("packageSize", json!("900000000000000000")) else {
            panic!("a package beyond any disk must be refused");
        };
        assert!(disk.starts_with("Espace disque insuffisant: "), "{disk}");
        let agent = crate::selfupdate::own_version();
        assert_eq!(
            with("version", json!("0.0.1")),
            Err(older_than_both("0.0.1", "2.0.0", &agent))
        );
        Ok(())
    }

    /// An agent release numbered below the app (agent 0.x, app 2.x) is not
    /// refused before its download tells what it is.
    #[test]
    fn a_version_older_than_the_app_only_waits_for_the_download()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let config = config(dir.path(), "")?;
        let agent = crate::selfupdate::own_version();
        assert!(crate::version_order::is_older(&agent, "2.0.0"), "{agent}");
        let data = json!({"version": "99.0.0", "updateUrl": "https://x/u.tar.gz"});
        assert_eq!(precheck(&config, &data), Ok(()));
        // Newer than the agent, older than the app.
        let between = format!("{agent}.1");
        let data = json!({"version": between, "updateUrl": "https://x/u.tar.gz"});
        assert_eq!(precheck(&config, &data), Ok(()));
        Ok(())
    }

    #[test]
    fn signatures_are_required_when_keys_are_trusted_and_downgrades_when_allowed()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let key = "ab".repeat(32);
        let config = config(
            dir.path(),
            &format!("UPDATE_TRUSTED_KEYS={key}\nUPDATE_ALLOW_DOWNGRADE=true"),
        )?;
        let data = json!({"version": "1.0.0", "updateUrl": "https://x/u.tar.gz"});
        // Unsigned commands wait for the download: the archive may carry
        // its own signed manifest.
        assert_eq!(precheck(&config, &data), Ok(()));
        let mut malformed = data.clone();
        malformed["signature"] = json!("zz");
        assert_eq!(
            precheck(&config, &malformed),
            Err("the update signature must be 128 hex digits (ed25519)".into())
        );
        let mut signed = data.clone();
        signed["signature"] = json!("cd".repeat(64));
        assert_eq!(precheck(&config, &signed), Ok(()), "downgrade allowed here");
        Ok(())
    }
}
