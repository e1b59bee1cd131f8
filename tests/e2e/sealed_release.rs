//! Releases that carry their own signature (issue 28 point 7): the
//! upstream Updates page's `update_software` has no `signature` field, so a
//! release sealed by `component sign-release --embed` (as `cargo xtask
//! package` writes agent releases) is vouched for by the signed manifest it
//! opens with. A good one installs without a signature field; a tampered,
//! extended, shortened, reordered or foreign-signed one is refused by name
//! and changes nothing on disk.
#![allow(clippy::expect_used)]

use neopro_e2e::Site;
use neopro_e2e::fake_systemctl::FakeSystemctl;
use neopro_e2e::http::{Fault, FileServer};
use neopro_e2e::release::{Item, first_entry, names_in, sealed, snapshot, tar_gz};
use neopro_runtime::selfupdate::{own_arch, state::AgentState};
use neopro_runtime::signing::manifest::{AGENT_KIND, APP_KIND, NAME};
use neopro_runtime::store::hash::sha256_hex;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

const NEW: &str = "9.9.9";

fn key(seed: u8) -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).expect("key")
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key's id in messages: the first 16 hex digits of its sha256.
fn key_id(pair: &Ed25519KeyPair) -> String {
    sha256_hex(pair.public_key().as_ref())[..16].to_owned()
}

/// A box with the trusted key of seed 21 and a recording systemctl.
fn keyed_site(fake: &FakeSystemctl) -> Site {
    let site = Site::with_extra(&format!(
        "{}\nUPDATE_TRUSTED_KEYS={}",
        fake.conf_line(),
        hex_of(key(21).public_key().as_ref())
    ));
    site.write("neopro/webapp/index.html", "v1 index");
    site.write("neopro/VERSION", "1.0.0\n");
    site
}

/// What the Updates page sends: no signature field.
fn updates_page(server: &FileServer, archive: &[u8], version: &str) -> Value {
    json!({
        "deploymentId": "dep-9", "updateId": "dep-9", "version": version,
        "updateUrl": server.url("release.tar.gz"),
        "packageSize": archive.len().to_string(),
        "checksum": sha256_hex(archive),
        "isCritical": true, "description": "release", "changelog": null,
    })
}

fn refusal(site: &Site, archive: &[u8], version: &str) -> String {
    let server = FileServer::start(archive.to_vec(), Fault::None);
    let (kind, message) =
        neopro_e2e::error_of(site.run("update-software", updates_page(&server, archive, version)));
    format!("{kind}: {message}")
}

fn agent_manifest() -> String {
    json!({"kind": "agent-release", "arch": own_arch(), "version": NEW}).to_string()
}

const BINARY: &[u8] = b"#!/bin/sh\nexit 0\n";

fn agent_items(manifest: &str) -> Vec<Item<'_>> {
    vec![
        Item::File("agent-release.json", manifest.as_bytes()),
        Item::Dir("bin"),
        Item::File("bin/neopro-runtime", BINARY),
    ]
}

/// Everything the box keeps that an update could touch.
fn disk(
    site: &Site,
) -> (
    std::collections::BTreeMap<String, Vec<u8>>,
    Option<AgentState>,
    Vec<String>,
) {
    let slots = names_in(&site.path("state/agent"));
    let state = AgentState::load(&site.path("state/agent")).expect("readable agent state");
    (snapshot(&site.path("neopro"), &[]), state, slots)
}

#[test]
fn a_sealed_agent_release_is_staged_without_a_signature_field_and_every_tampering_changes_nothing()
{
    let fake = FakeSystemctl::temp();
    let site = keyed_site(&fake);
    let manifest = agent_manifest();
    let good = sealed(&tar_gz(&agent_items(&manifest)), NEW, AGENT_KIND, &key(21));
    let envelope = first_entry(&good);
    let before = disk(&site);
    let with_envelope = |items: Vec<Item>| {
        let mut all = vec![Item::File(NAME, &envelope)];
        all.extend(items);
        tar_gz(&all)
    };
    let prefix = "not-permitted: agent release 9.9.9 refused:";

    // Tampered: the binary's bytes changed, same size.
    let mut items = agent_items(&manifest);
    items[2] = Item::File("bin/neopro-runtime", b"#!/bin/sh\nexit 1\n");
    assert_eq!(
        refusal(&site, &with_envelope(items), NEW),
        format!(
            "{prefix} the archive entry 'bin/neopro-runtime' is not what was signed: sha256 {}, the signed release manifest says {}",
            sha256_hex(b"#!/bin/sh\nexit 1\n"),
            sha256_hex(BINARY)
        )
    );
    // An extra entry.
    let mut items = agent_items(&manifest);
    items.push(Item::File("bin/helper", b"#!/bin/sh\n"));
    assert_eq!(
        refusal(&site, &with_envelope(items), NEW),
        format!("{prefix} the archive entry 'bin/helper' is not in the signed release manifest")
    );
    // A missing entry.
    let mut items = agent_items(&manifest);
    items.pop();
    assert_eq!(
        refusal(&site, &with_envelope(items), NEW),
        format!(
            "{prefix} the archive lacks 'bin/neopro-runtime', which the signed release manifest lists (entries missing: 1)"
        )
    );
    // The manifest not first.
    let mut items = agent_items(&manifest);
    items.insert(1, Item::File(NAME, &envelope));
    assert_eq!(
        refusal(&site, &tar_gz(&items), NEW),
        format!(
            "{prefix} the release manifest {NAME} is entry 2 of the archive; it must be the first entry"
        )
    );
    // Signed by a key this box does not trust.
    let foreign = sealed(&tar_gz(&agent_items(&manifest)), NEW, AGENT_KIND, &key(22));
    assert_eq!(
        refusal(&site, &foreign, NEW),
        format!(
            "{prefix} the release manifest is signed by key {}, which is not one of UPDATE_TRUSTED_KEYS in site.conf",
            key_id(&key(22))
        )
    );
    // The signed manifest replayed as another version.
    assert_eq!(
        refusal(&site, &good, "9.9.10"),
        "not-permitted: agent release 9.9.10 refused: the release manifest is for version 9.9.9, the update command says 9.9.10"
    );
    assert_eq!(disk(&site), before, "nothing changed on disk");
    assert!(
        !site.path("state/staging/update").exists(),
        "no journal left"
    );

    // The good one, as the Updates page sends it: staged, no signature field.
    let server = FileServer::start(good.clone(), Fault::None);
    let result = site
        .run("update-software", updates_page(&server, &good, NEW))
        .expect("a sealed agent release is staged");
    assert_eq!(result["agentUpdate"], json!("staged"), "{result}");
    assert_eq!(result["version"], json!(NEW));
    let trial = AgentState::load(&site.path("state/agent"))
        .expect("state")
        .and_then(|s| s.trial)
        .expect("trial written");
    assert_eq!(trial.version, NEW);
    let slot = site.path("state/agent/9.9.9");
    assert_eq!(
        std::fs::read(slot.join("bin/neopro-runtime")).expect("binary"),
        BINARY
    );
    assert!(slot.join("agent-release.json").is_file());
    assert!(!slot.join(NAME).exists(), "the manifest is not extracted");
}

#[test]
fn a_sealed_app_release_installs_where_keys_are_set_and_a_tampered_one_changes_nothing() {
    let fake = FakeSystemctl::temp();
    let site = keyed_site(&fake);
    let items = || {
        vec![
            Item::Dir("./"),
            Item::Dir("./webapp/"),
            Item::File("./webapp/index.html", b"v2 index"),
            Item::File("./VERSION", b"2.0.0\n"),
        ]
    };
    let good = sealed(&tar_gz(&items()), "2.0.0", APP_KIND, &key(21));
    let envelope = first_entry(&good);
    let before = snapshot(&site.path("neopro"), &[]);
    let mut tampered = vec![Item::File(NAME, &envelope)];
    tampered.extend(items());
    tampered[3] = Item::File("./webapp/index.html", b"v3 index");
    assert_eq!(
        refusal(&site, &tar_gz(&tampered), "2.0.0"),
        format!(
            "not-permitted: the archive entry 'webapp/index.html' is not what was signed: sha256 {}, the signed release manifest says {}",
            sha256_hex(b"v3 index"),
            sha256_hex(b"v2 index")
        )
    );
    let plain = tar_gz(&items());
    assert_eq!(
        refusal(&site, &plain, "2.0.0"),
        format!(
            "not-permitted: this box only installs signed updates (UPDATE_TRUSTED_KEYS in site.conf) and this update has no signature: neither a signature field in the command nor a signed manifest ({NAME}) as the archive's first entry"
        )
    );
    assert_eq!(
        snapshot(&site.path("neopro"), &[]),
        before,
        "nothing changed"
    );

    let server = FileServer::start(good.clone(), Fault::None);
    let result = site
        .run("update-software", updates_page(&server, &good, "2.0.0"))
        .expect("a sealed app release installs");
    assert_eq!(result["version"], json!("2.0.0"), "{result}");
    assert_eq!(
        std::fs::read_to_string(site.path("neopro/webapp/index.html")).expect("index"),
        "v2 index"
    );
    assert!(
        !site.path(&format!("neopro/{NAME}")).exists(),
        "the manifest is not installed"
    );
}
