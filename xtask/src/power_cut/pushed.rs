//! The pushed-component phases (`install_component`, `remove_component`,
//! `docs/pushed-components.md`): the site policy and the trusted key the
//! rig gives the box, the commands, and `components-whole`. After any cut
//! the component's folder holds the whole state before the command or the
//! whole state after it: every version `state.json` names has the wasm and
//! the manifest the rig signed for it and an install record with their
//! sha256 and signature (so the signature the agent re-verifies at every
//! load is valid); the agent runs the active version; nothing a cut left
//! half-done stays for ever (`.staging-`, `.removed-`, a finished download
//! in `.incoming`, a version folder no state names).

use super::central::Pushed;
use super::checks::{Expect, Violation};
use super::phases::Command;
use super::qga::Qga;
use super::snapshot::{STATE, Snapshot};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// The component the central pushes (the test component `video-inventory`).
pub const NAME: &str = "video-inventory";
/// The command it handles.
pub const COMMAND: &str = "video_inventory";
/// The site policy (`COMPONENT_POLICY_PATH`'s default).
const POLICY_PATH: &str = "/etc/neopro/component-policy.toml";
pub(super) const SITE_CONF: &str = "/etc/neopro/site.conf";
/// Signatures required; the component's command allowed; the grants and
/// limits it asks for.
const POLICY: &str = "allow-unsigned = false\nextend-allowlist = true\n\
                      [grants]\nsystem = true\nfiles = { videos = \"ro\" }\n";

/// The states a component command goes between: `None`, not installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub before: Option<String>,
    pub after: Option<String>,
}

fn violation(check: &'static str, detail: String) -> Violation {
    Violation { check, detail }
}

/// The component's folder in the agent's store.
fn folder() -> String {
    format!("{STATE}/components/{NAME}")
}

/// Gives the box a site policy and trusts `key` (TRUSTED_COMPONENT_KEYS in
/// site.conf), flushed; the unit reads them when it starts again.
pub fn enable(qga: &mut Qga, key: &str) -> anyhow::Result<()> {
    // A fixed script; the policy comes on standard input, the key as an
    // argument.
    let script = format!(
        "cat > {POLICY_PATH}.pc-new && mv {POLICY_PATH}.pc-new {POLICY_PATH} && \
         {{ grep -q '^TRUSTED_COMPONENT_KEYS=' {SITE_CONF} || \
         printf '\\nTRUSTED_COMPONENT_KEYS=%s\\n' \"$1\" >> {SITE_CONF}; }} && sync"
    );
    qga.exec(
        &["/bin/sh", "-c", &script, "sh", key],
        Some(POLICY.as_bytes()),
        Duration::from_secs(60),
    )?
    .ok("writing the site policy and the trusted key")?;
    Ok(())
}

/// `install_component` of `c`, as the server sends it.
pub fn install(c: &Pushed) -> Command {
    Command {
        kind: "install_component",
        data: json!({
            "name": c.name,
            "version": c.version,
            "url": c.url,
            "sha256": c.sha256,
            "signature": c.signature,
            "manifest": c.manifest,
        }),
        expect: Expect::Unchanged,
        release: None,
    }
}

pub fn remove() -> Command {
    Command {
        kind: "remove_component",
        data: json!({ "name": NAME }),
        expect: Expect::Unchanged,
        release: None,
    }
}

/// The component's version folder `version` is whole: the wasm and the
/// manifest the rig signed, an install record with their sha256 and the
/// signature.
fn version_whole(
    snap: &Snapshot,
    known: &BTreeMap<String, Pushed>,
    version: &str,
    what: &str,
) -> Vec<Violation> {
    let dir = format!("{}/{version}", folder());
    let Some(signed) = known.get(version) else {
        return vec![violation(
            "components-whole",
            format!("state.json names the {what} version {version}, which the rig never pushed"),
        )];
    };
    let mut out = Vec::new();
    for (file, want) in [
        ("component.wasm", &signed.sha256),
        ("manifest.toml", &signed.manifest_sha256),
    ] {
        let path = format!("{dir}/{file}");
        match snap.component_shas.get(&path) {
            None => out.push(violation(
                "components-whole",
                format!("{path} (the {what} version) is missing"),
            )),
            Some(sha) if sha != want => out.push(violation(
                "components-whole",
                format!(
                    "{path} (the {what} version) has sha256 {sha}, not what was signed ({want})"
                ),
            )),
            Some(_) => {}
        }
    }
    let record_path = format!("{dir}/install.json");
    match snap
        .files
        .get(&record_path)
        .map(|b| serde_json::from_slice::<Value>(b))
    {
        None => out.push(violation(
            "components-whole",
            format!("{record_path} (the {what} version) is missing"),
        )),
        Some(Err(e)) => out.push(violation(
            "components-whole",
            format!("{record_path} does not parse ({e})"),
        )),
        Some(Ok(record)) => {
            if record["sha256"] != json!(signed.sha256)
                || record["signature"] != json!(signed.signature)
            {
                out.push(violation(
                    "components-whole",
                    format!(
                        "{record_path} records sha256 {} and signature {}, not the signed ones",
                        record["sha256"], record["signature"]
                    ),
                ));
            }
        }
    }
    out
}

/// What a cut left in the store that nothing will ever remove: a version
/// folder being built (`.staging-`), a component being removed
/// (`.removed-`), a finished download no install took (`.incoming`), a
/// version folder `state.json` does not name (`named`).
fn leftovers(snap: &Snapshot, named: &[&str]) -> Vec<Violation> {
    let root = format!("{STATE}/components/");
    let ours = format!("{NAME}/");
    snap.entries
        .iter()
        .filter_map(|e| {
            let rel = e.path.strip_prefix(&root)?;
            let parts: Vec<&str> = rel.split('/').collect();
            let left = match parts.as_slice() {
                [top] if top.starts_with(".removed-") => "a component being removed",
                [".incoming", file] if e.kind == 'f' && !file.starts_with('.') => {
                    "a finished download no install took"
                }
                [_, sub] if sub.starts_with(".staging-") => "a version folder being built",
                [_, version]
                    if rel.starts_with(&ours)
                        && e.kind == 'd'
                        && !version.starts_with('.')
                        && !named.contains(version) =>
                {
                    "a version folder state.json does not name"
                }
                _ => return None,
            };
            Some(violation(
                "no-orphans",
                format!("{} ({left}) is left after the agent started", e.path),
            ))
        })
        .collect()
}

/// `components-whole` (and the store's part of `no-orphans`): the
/// component is in one of the states `allowed` (`None`: not installed),
/// in `durable` when the central was told the command succeeded, and
/// every version its state names is whole. Returns the active version
/// (`None` when not installed or unreadable).
pub fn check(
    snap: &Snapshot,
    known: &BTreeMap<String, Pushed>,
    allowed: &[Option<String>],
    durable: Option<&Option<String>>,
) -> (Option<String>, Vec<Violation>) {
    let mut out = Vec::new();
    let state_path = format!("{}/state.json", folder());
    let (active, previous) = match snap.files.get(&state_path) {
        None => (None, None),
        Some(bytes) => match serde_json::from_slice::<Value>(bytes) {
            Ok(state) => (
                state["active"].as_str().map(str::to_owned),
                state["previous"].as_str().map(str::to_owned),
            ),
            Err(e) => {
                out.push(violation(
                    "components-whole",
                    format!("{state_path} does not parse ({e})"),
                ));
                return (None, out);
            }
        },
    };
    let name = |v: &Option<String>| v.clone().unwrap_or_else(|| "not installed".to_owned());
    if !allowed.contains(&active) {
        out.push(violation(
            "components-whole",
            format!(
                "{NAME} is {}, none of the states before or after the command ({})",
                name(&active),
                allowed.iter().map(name).collect::<Vec<_>>().join(", ")
            ),
        ));
    } else if let Some(want) = durable
        && *want != active
    {
        out.push(violation(
            "components-whole",
            format!(
                "the central got success ({}) but {NAME} is {}",
                name(want),
                name(&active)
            ),
        ));
    }
    let mut named = Vec::new();
    for (what, version) in [("active", &active), ("previous", &previous)] {
        if let Some(v) = version {
            named.push(v.as_str());
            out.append(&mut version_whole(snap, known, v, what));
        }
    }
    out.append(&mut leftovers(snap, &named));
    (active, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::power_cut::snapshot::Entry;

    fn pushed(version: &str) -> Pushed {
        Pushed {
            name: NAME.into(),
            version: version.into(),
            url: String::new(),
            sha256: "w".repeat(64),
            manifest: String::new(),
            manifest_sha256: format!("m{version}"),
            signature: format!("sig-{version}"),
        }
    }

    /// A store holding `versions` whole, `state` as state.json.
    fn store(state: Option<&str>, versions: &[&str]) -> Snapshot {
        let mut snap = Snapshot::default();
        if let Some(s) = state {
            snap.files
                .insert(format!("{}/state.json", folder()), s.as_bytes().to_vec());
        }
        for v in versions {
            let dir = format!("{}/{v}", folder());
            let p = pushed(v);
            snap.entries.push(Entry {
                kind: 'd',
                size: 0,
                path: dir.clone(),
            });
            snap.component_shas
                .insert(format!("{dir}/component.wasm"), p.sha256.clone());
            snap.component_shas
                .insert(format!("{dir}/manifest.toml"), p.manifest_sha256.clone());
            snap.files.insert(
                format!("{dir}/install.json"),
                json!({"sha256": p.sha256, "signature": p.signature})
                    .to_string()
                    .into_bytes(),
            );
        }
        snap
    }

    fn checks(found: &[Violation]) -> Vec<&str> {
        found.iter().map(|v| v.check).collect()
    }

    #[test]
    fn the_store_is_the_state_before_or_after_and_whole() {
        let known: BTreeMap<String, Pushed> = ["1.1.0", "1.2.0"]
            .iter()
            .map(|v| ((*v).to_owned(), pushed(v)))
            .collect();
        let before = Some("1.1.0".to_owned());
        let after = Some("1.2.0".to_owned());
        let allowed = [before.clone(), after.clone()];
        // The new version active, the old one kept for a rollback.
        let snap = store(
            Some(r#"{"active":"1.2.0","previous":"1.1.0"}"#),
            &["1.1.0", "1.2.0"],
        );
        let (active, found) = check(&snap, &known, &allowed, Some(&after));
        assert_eq!((active.as_deref(), found), (Some("1.2.0"), vec![]));
        // Cut before the switch: the old state; the new folder, complete
        // but named by nothing, is left over.
        let snap = store(Some(r#"{"active":"1.1.0"}"#), &["1.1.0", "1.2.0"]);
        let (active, found) = check(&snap, &known, &allowed, None);
        assert_eq!(active.as_deref(), Some("1.1.0"));
        assert_eq!(checks(&found), ["no-orphans"], "{found:?}");
        // The success was reported, the switch lost.
        let (_, found) = check(&snap, &known, &allowed, Some(&after));
        assert_eq!(checks(&found)[0], "components-whole");
        // A wasm that is not what was signed, a missing record.
        let mut snap = store(Some(r#"{"active":"1.2.0"}"#), &["1.2.0"]);
        snap.component_shas
            .insert(format!("{}/1.2.0/component.wasm", folder()), "0".repeat(64));
        snap.files
            .remove(&format!("{}/1.2.0/install.json", folder()));
        let (_, found) = check(&snap, &known, &allowed, None);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].detail.contains("not what was signed"));
        assert!(
            found[1]
                .detail
                .contains("install.json (the active version) is missing")
        );
        // Removed: no state is "not installed"; what a cut left is named.
        let mut snap = store(None, &[]);
        for (kind, rel) in [
            ('d', format!(".removed-{NAME}")),
            ('f', format!(".incoming/{NAME}-1.2.0.wasm")),
            ('f', format!(".incoming/.{NAME}-1.3.0.wasm.partial")),
            ('d', format!("{NAME}/.staging-1.3.0")),
        ] {
            snap.entries.push(Entry {
                kind,
                size: 1,
                path: format!("{STATE}/components/{rel}"),
            });
        }
        let (active, found) = check(&snap, &known, &[before, None], Some(&None));
        assert_eq!(active, None);
        assert_eq!(checks(&found), ["no-orphans"; 3], "{found:?}");
        let (_, found) = check(&store(None, &[]), &known, &allowed, None);
        assert!(
            found[0]
                .detail
                .contains("not installed, none of the states")
        );
        let (_, found) = check(&store(Some("{"), &[]), &known, &allowed, None);
        assert!(found[0].detail.contains("does not parse"));
    }
}
