//! Test guest: performs whatever host call its data names, so tests can try
//! to escape a root or use a call without its grant, and check the error.

use neopro_guest_sdk::serde_json::{Value, json};
use neopro_guest_sdk::{
    Command, Context, Error, Root, download, export_command, files, logs, system,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Data {
    op: String,
    #[serde(default)]
    root: Option<String>,
    #[serde(default)]
    path: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    contents: String,
    /// Bytes to print for `print`.
    #[serde(default)]
    bytes: usize,
}

fn root(name: Option<&str>) -> Result<Root, Error> {
    Ok(match name.unwrap_or("videos") {
        "videos" => Root::Videos,
        "config" => Root::Config,
        "backups" => Root::Backups,
        "neopro-root" => Root::NeoproRoot,
        "staging" => Root::Staging,
        "logs" => Root::Logs,
        other => return Err(Error::invalid_input(format!("unknown root {other}"))),
    })
}

struct Escape;

impl Command for Escape {
    type Data = Data;

    fn run(_ctx: &Context, d: Data) -> Result<Value, Error> {
        let r = root(d.root.as_deref())?;
        Ok(match d.op.as_str() {
            "read" => json!({ "text": files::read_to_string(r, &d.path)? }),
            "write" => {
                files::write_atomic(r, &d.path, d.contents.as_bytes())?;
                json!({ "written": d.path })
            }
            "append" => {
                let mut text = match files::read_to_string(r, &d.path) {
                    Ok(t) => t,
                    Err(e) if e.is_not_found() => String::new(),
                    Err(e) => return Err(e),
                };
                text.push_str(&d.contents);
                text.push('\n');
                files::write_atomic(r, &d.path, text.as_bytes())?;
                json!({ "appended": d.path })
            }
            "remove" => {
                files::remove_file(r, &d.path)?;
                json!({ "removed": d.path })
            }
            "rename" => {
                files::rename(r, &d.path, &d.to)?;
                json!({ "renamed": d.to })
            }
            "mkdir" => {
                files::mkdir(r, &d.path)?;
                json!({ "created": d.path })
            }
            "list" => {
                let names: Vec<String> = files::list(r, &d.path)?
                    .into_iter()
                    .map(|e| e.name)
                    .collect();
                json!({ "entries": names })
            }
            "stat" => json!({ "size": files::stat(r, &d.path)?.size }),
            "metrics" => json!({ "uptime": system::metrics()?.uptime }),
            "download" => {
                let outcome = download::fetch(&d.to, r, &d.path, None, None)?;
                json!({ "bytes": outcome.bytes, "sha256": outcome.sha256 })
            }
            "journal" => json!({ "logs": logs::journal_tail(&d.path, 10)? }),
            // Asks the host for as much as it will give: the host, not the
            // guest, must bound the buffer.
            "read-max" => {
                let bytes =
                    neopro_guest_sdk::bindings::neopro::agent::files::read(r, &d.path, u64::MAX)?;
                json!({ "bytes": bytes.len() })
            }
            "sha256" => json!({ "sha256": files::sha256(r, &d.path)? }),
            "print" => {
                let line = "x".repeat(1023);
                for _ in 0..d.bytes / 1024 {
                    println!("{line}");
                    eprintln!("{line}");
                }
                json!({ "printed": d.bytes })
            }
            other => return Err(Error::invalid_input(format!("unknown op {other}"))),
        })
    }
}

export_command!(Escape);
