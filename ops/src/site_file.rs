//! Writing site.conf: it holds the site's API key, so it is written
//! atomically, mode 0600 from the first byte, owned by the agent's user.
//! Updating keys keeps every other line (and the operator's comments).

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why site.conf could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SiteFileError {
    #[error(
        "cannot write {path}: {source}{}",
        if source.kind() == std::io::ErrorKind::PermissionDenied {
            " (run the command with sudo, or choose another file with --config)"
        } else { "" }
    )]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no user named '{0}' on this box (create it first, or pick another with --user)")]
    UnknownUser(String),
}

/// A uid and gid to give the file to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// Looks `name` up in a passwd file (`/etc/passwd` on a Pi: no directory
/// service to ask).
pub fn lookup_user(passwd: &Path, name: &str) -> Result<Owner, SiteFileError> {
    let text = std::fs::read_to_string(passwd).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() >= 4 && fields[0] == name).then_some(fields)
        })
        .find_map(|f| {
            Some(Owner {
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
            })
        })
        .ok_or_else(|| SiteFileError::UnknownUser(name.to_owned()))
}

/// The owner to keep when rewriting `path` as root (None otherwise).
pub fn current_owner(path: &Path) -> Option<Owner> {
    let m = std::fs::metadata(path).ok()?;
    Some(Owner {
        uid: m.uid(),
        gid: m.gid(),
    })
}

pub fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A value as dotenv reads it back unchanged: quoted when it holds spaces,
/// `#` or quotes; line breaks become spaces.
pub fn quote(value: &str) -> String {
    let value = value.replace(['\n', '\r'], " ");
    let plain = !value.is_empty()
        && !value.contains(|c: char| c.is_whitespace() || matches!(c, '#' | '"' | '\'' | '`'));
    if plain || value.is_empty() {
        value
    } else if !value.contains('"') {
        format!("\"{value}\"")
    } else if !value.contains('\'') {
        format!("'{value}'")
    } else {
        format!("`{}`", value.replace('`', "'"))
    }
}

fn line_key(line: &str) -> Option<&str> {
    let t = line.trim_start();
    if t.starts_with('#') {
        return None;
    }
    let t = t.strip_prefix("export ").unwrap_or(t);
    t.split_once('=').map(|(k, _)| k.trim())
}

/// `text` with each `(key, value)` set: the first line of a key is
/// replaced, later duplicates (which would win) are dropped, missing keys
/// are appended.
pub fn set_keys(text: &str, updates: &[(&str, String)]) -> String {
    let mut done = vec![false; updates.len()];
    let mut out = String::new();
    for line in text.lines() {
        match line_key(line).and_then(|k| updates.iter().position(|(u, _)| *u == k)) {
            Some(i) if done[i] => {}
            Some(i) => {
                done[i] = true;
                out.push_str(&format!("{}={}\n", updates[i].0, quote(&updates[i].1)));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for (i, (key, value)) in updates.iter().enumerate() {
        if !done[i] {
            out.push_str(&format!("{key}={}\n", quote(value)));
        }
    }
    out
}

/// Checks up front that `path` can be written (so a site is not created on
/// the server for a file we then cannot save).
pub fn check_writable(path: &Path) -> Result<(), SiteFileError> {
    let err = |source| SiteFileError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = parent(path);
    std::fs::create_dir_all(dir).map_err(err)?;
    let probe = dir.join(format!(".site.conf.probe-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&probe)
        .map_err(err)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Replaces `path` with `contents`: temp file created 0600, given to
/// `owner`, fsynced, renamed over, directory fsynced.
pub fn write_private(
    path: &Path,
    contents: &str,
    owner: Option<Owner>,
) -> Result<(), SiteFileError> {
    let err = |source| SiteFileError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = parent(path);
    std::fs::create_dir_all(dir).map_err(err)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "site.conf".to_owned());
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        if let Some(o) = owner {
            rustix::fs::fchown(
                &file,
                Some(rustix::fs::Uid::from_raw(o.uid)),
                Some(rustix::fs::Gid::from_raw(o.gid)),
            )?;
        }
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use neopro_runtime::config::parse_dotenv;

    #[test]
    fn set_keys_replaces_in_place_drops_duplicates_and_appends() {
        let text = "# mine\nSITE_ID=old\nLOG_LEVEL=debug\nexport SITE_ID=older\n";
        let out = set_keys(
            text,
            &[
                ("SITE_ID", "new".to_owned()),
                ("SITE_NAME", "Club de l'Ouest #1".to_owned()),
            ],
        );
        assert_eq!(
            out,
            "# mine\nSITE_ID=new\nLOG_LEVEL=debug\nSITE_NAME=\"Club de l'Ouest #1\"\n"
        );
        let values = parse_dotenv(Path::new("x"), &out).map_err(|e| e.to_string());
        assert_eq!(
            values
                .ok()
                .and_then(|v| v.get("SITE_NAME").cloned())
                .as_deref(),
            Some("Club de l'Ouest #1")
        );
    }

    #[test]
    fn private_write_is_0600_and_replaces() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("etc/neopro/site.conf");
        check_writable(&path)?;
        write_private(&path, "A=1\n", None)?;
        write_private(&path, "A=2\n", None)?;
        assert_eq!(std::fs::read_to_string(&path)?, "A=2\n");
        assert_eq!(std::fs::metadata(&path)?.mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(path.parent().ok_or("parent")?)?.count(),
            1
        );
        Ok(())
    }

    #[test]
    fn users_come_from_passwd() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let passwd = dir.path().join("passwd");
        std::fs::write(
            &passwd,
            "root:x:0:0::/root:/bin/sh\nneopro:x:998:997::/nonexistent:/usr/sbin/nologin\n",
        )?;
        assert_eq!(
            lookup_user(&passwd, "neopro")?,
            Owner { uid: 998, gid: 997 }
        );
        assert_eq!(
            lookup_user(&passwd, "pi").map_err(|e| e.to_string()),
            Err(
                "no user named 'pi' on this box (create it first, or pick another with --user)"
                    .to_owned()
            )
        );
        Ok(())
    }
}
