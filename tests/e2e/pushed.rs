//! Components pushed by the server: install from a local HTTP server, run
//! through the link, upgrade, roll back, survive a restart, remove; and every
//! kind of bad install refused with its reason, leaving the box as it was.
// A broken fixture should stop the test loudly.
#![allow(clippy::expect_used)]

use neopro_e2e::central::Central;
use neopro_e2e::http::{Fault, FileServer};
use neopro_e2e::{Site, components_dir};
use neopro_runtime::agent::dispatch::Dispatcher;
use neopro_runtime::journal::Outcome;
use neopro_runtime::pushed::check;
use neopro_runtime::pushed::inventory::Inventory;
use neopro_runtime::signing::components::SecretKey;
use neopro_runtime::store::hash::sha256_hex;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

const POLICY: &str = "allow-unsigned = false\nextend-allowlist = true\n\
    [grants]\nsystem = true\nfiles = { videos = \"ro\" }\n";

fn wasm_of(name: &str) -> Vec<u8> {
    std::fs::read(components_dir().join(format!("{name}.wasm"))).expect("test component")
}

fn manifest(version: &str, extra: &str) -> String {
    format!(
        "name = \"video-inventory\"\nversion = \"{version}\"\ncommands = [\"video_inventory\"]\n\
         [limits]\nmemory-mib = 16\n[grants]\nsystem = true\nfiles = {{ videos = \"ro\" }}\n{extra}"
    )
}

/// install_component parameters for `wasm` served by `server`.
fn install_params(
    server: &FileServer,
    wasm: &[u8],
    manifest: &str,
    key: Option<&SecretKey>,
) -> Value {
    let parsed: toml::Table = toml::from_str(manifest).expect("manifest TOML");
    json!({
        "name": parsed["name"].as_str(),
        "version": parsed["version"].as_str(),
        "url": server.url("component.wasm"),
        "sha256": sha256_hex(wasm),
        "signature": key.map(|k| k.sign(&sha256_hex(wasm), manifest)),
        "manifest": manifest,
    })
}

/// A site with videos, a site policy and one trusted key.
fn site(policy: &str) -> Site {
    let site = Site::new();
    site.write("neopro/videos/Match/but.mp4", "0123456789");
    site.write("neopro/videos/Match/arret.mp4", "01234");
    site.write("neopro/videos/Sponsors/pub.mp4", "0");
    site.write("neopro/VERSION", "2.1.3\n");
    site.write("component-policy.toml", policy);
    site
}

/// The built-in components only (the test folder also holds the template,
/// which these tests push).
fn builtin_dir() -> std::path::PathBuf {
    components_dir()
        .parent()
        .expect("components folder")
        .join("builtin")
}

fn extra_conf(site: &Site, key: &SecretKey) -> String {
    format!(
        "COMPONENT_POLICY_PATH={}\nTRUSTED_COMPONENT_KEYS={}\nCOMPONENTS_PATH={}\n",
        site.path("component-policy.toml").display(),
        key.public_key(),
        builtin_dir().display()
    )
}

/// A dispatcher over the site, as the agent builds it.
fn dispatcher(site: &Site, key: &SecretKey, allowed: &str) -> Dispatcher {
    let text = format!(
        "NEOPRO_ROOT={}\nSTATE_PATH={}\n{}{allowed}\n",
        site.path("neopro").display(),
        site.path("state").display(),
        extra_conf(site, key),
    );
    let config = neopro_runtime::config::SiteConfig::from_sources(
        Some((&site.path("site.conf"), &text)),
        &|_| None,
    )
    .expect("site.conf");
    Dispatcher::new(&config, Arc::new(site.sandbox()))
}

fn run(dispatcher: &Dispatcher, command_type: &str, data: Value) -> Outcome {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(dispatcher.run("t", command_type, &data, None))
}

fn error(outcome: Outcome) -> String {
    match outcome {
        Outcome::Error { error } => error,
        Outcome::Success { result } => panic!("expected an error, got {result}"),
    }
}

fn success(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Success { result } => result,
        Outcome::Error { error } => panic!("expected success, got: {error}"),
    }
}

fn inventory() -> Value {
    json!({
        "success": true, "neoproVersion": "2.1.3", "videos": 3, "bytes": 16,
        "categories": [
            {"name": "Match", "videos": 2, "bytes": 15},
            {"name": "Sponsors", "videos": 1, "bytes": 1},
        ]
    })
}

fn sorted_categories(mut v: Value) -> Value {
    if let Some(list) = v["categories"].as_array_mut() {
        list.sort_by_key(|c| c["name"].as_str().unwrap_or_default().to_owned());
    }
    v
}

/// A site on the test policy that trusts a fresh key, its agent
/// authenticated with the management commands allowed (ALLOWED_COMMANDS
/// stays explicit: they must be listed): the key, site, central and agent.
async fn managed_site() -> (SecretKey, Site, Central, neopro_e2e::RunningAgent) {
    let key = SecretKey::generate().expect("key");
    let site = site(POLICY);
    let central = Central::start(&[("site-1", "key-1")]).await;
    site.write_agent_conf(&central.url(), "site-1", "key-1");
    site.append_conf(&extra_conf(&site, &key));
    site.append_conf(
        "ALLOWED_COMMANDS=get_config,install_component,remove_component,list_components,rollback_component\n",
    );
    let agent = site.start_agent();
    central.next("authenticate", WAIT).await;
    (key, site, central, agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_run_upgrade_rollback_restart_and_remove_through_the_link() {
    let (key, site, central, agent) = managed_site().await;

    let v1 = wasm_of("video-inventory");
    let v1_server = FileServer::start(v1.clone(), Fault::None);
    central.send_command(
        "i1",
        "install_component",
        install_params(&v1_server, &v1, &manifest("1.0.0", ""), Some(&key)),
    );
    let installed = central.result_of("i1", WAIT).await;
    assert_eq!(installed["status"], json!("success"), "{installed}");
    assert_eq!(
        installed["result"],
        json!({
            "success": true, "name": "video-inventory", "version": "1.0.0",
            "previousVersion": null, "alreadyInstalled": false,
            "commands": ["video_inventory"], "sha256": sha256_hex(&v1),
            "signer": key.public_key().id(),
        })
    );
    // On disk: wasm, manifest, install record, and its precompiled artifact.
    let dir = site.path("state/components/video-inventory/1.0.0");
    assert_eq!(std::fs::read(dir.join("component.wasm")).expect("wasm"), v1);
    assert!(dir.join("manifest.toml").is_file() && dir.join("install.json").is_file());
    let artifacts = std::fs::read_dir(site.path("state/cache"))
        .expect("cache")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&sha256_hex(&v1)) && n.ends_with(".cwasm"))
        .count();
    assert_eq!(artifacts, 1, "precompiled at install");

    central.send_command("r1", "video_inventory", json!({}));
    let ran = central.result_of("r1", WAIT).await;
    assert_eq!(ran["status"], json!("success"), "{ran}");
    assert_eq!(sorted_categories(ran["result"].clone()), inventory());

    // Upgrade: another build (here the noop guest) as 1.1.0.
    let v2 = wasm_of("noop");
    let v2_server = FileServer::start(v2.clone(), Fault::None);
    central.send_command(
        "i2",
        "install_component",
        install_params(&v2_server, &v2, &manifest("1.1.0", ""), Some(&key)),
    );
    let upgraded = central.result_of("i2", WAIT).await;
    assert_eq!(
        upgraded["result"]["previousVersion"],
        json!("1.0.0"),
        "{upgraded}"
    );
    central.send_command("r2", "video_inventory", json!({}));
    assert_eq!(
        central.result_of("r2", WAIT).await["result"],
        json!({"success": true})
    );

    central.send_command(
        "b1",
        "rollback_component",
        json!({"name": "video-inventory"}),
    );
    assert_eq!(
        central.result_of("b1", WAIT).await["result"],
        json!({"success": true, "name": "video-inventory", "version": "1.0.0", "previousVersion": "1.1.0"})
    );
    central.send_command("r3", "video_inventory", json!({"category": "Sponsors"}));
    assert_eq!(
        central.result_of("r3", WAIT).await["result"]["videos"],
        json!(1)
    );

    // A restart keeps the installed component and its active version.
    agent.stop().await;
    // Counted, not assumed to be the 2nd: under load the first agent may
    // already have authenticated twice (it re-authenticates when no answer
    // comes within its timeout).
    let before = central.count("authenticate");
    let agent = site.start_agent();
    central.nth("authenticate", before + 1, WAIT).await;
    assert_eq!(central.send_command("l1", "list_components", json!({})), 1);
    let listed = central.result_of("l1", WAIT).await;
    let components = &listed["result"]["components"];
    assert_eq!(components.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(components[0]["version"], json!("1.0.0"));
    assert_eq!(components[0]["previousVersion"], json!("1.1.0"));
    assert_eq!(components[0]["signer"], json!(key.public_key().id()));
    central.send_command("r4", "video_inventory", json!({}));
    assert_eq!(
        sorted_categories(central.result_of("r4", WAIT).await["result"].clone()),
        inventory()
    );

    central.send_command("x1", "remove_component", json!({"name": "video-inventory"}));
    assert_eq!(
        central.result_of("x1", WAIT).await["result"],
        json!({"success": true, "name": "video-inventory", "removedVersion": "1.0.0"})
    );
    assert!(!site.path("state/components/video-inventory").exists());
    central.send_command("r5", "video_inventory", json!({}));
    assert_eq!(
        central.result_of("r5", WAIT).await,
        json!({"commandId": "r5", "status": "error", "error": "Command type 'video_inventory' is not allowed"})
    );
    agent.stop().await;
}

#[test]
fn bad_installs_are_refused_with_their_reason_and_change_nothing() {
    let key = SecretKey::generate().expect("key");
    let stranger = SecretKey::generate().expect("key");
    let site = site(POLICY);
    let d = dispatcher(&site, &key, "");
    let v1 = wasm_of("video-inventory");
    let good = FileServer::start(v1.clone(), Fault::None);
    success(run(
        &d,
        "install_component",
        install_params(&good, &v1, &manifest("1.0.0", ""), Some(&key)),
    ));
    let state_before = std::fs::read(site.path("state/components/video-inventory/state.json"))
        .expect("state.json");

    let other = wasm_of("noop");
    let v2 = manifest("2.0.0", "");
    let refused = |params: Value| error(run(&d, "install_component", params));

    // The server sends a file that is not the one announced.
    let mut wrong = install_params(&good, &other, &v2, Some(&key));
    wrong["sha256"] = json!(sha256_hex(&other));
    assert_eq!(
        refused(wrong),
        format!(
            "the download of component 'video-inventory' failed: Checksum mismatch: expected {}, got {}",
            sha256_hex(&other),
            sha256_hex(&v1)
        )
    );
    // Signed by a trusted key, but over another manifest.
    let id = key.public_key().id();
    let bad_signature = format!(
        "bad signature: the component or its manifest is not what key {id} signed (altered on the way, or signed for another build)"
    );
    let mut tampered = install_params(&good, &v1, &v2, Some(&key));
    tampered["manifest"] = json!(v2.replace("memory-mib = 16", "memory-mib = 32"));
    assert_eq!(refused(tampered), bad_signature);
    let mut swapped = install_params(&good, &v1, &v2, Some(&key));
    swapped["sha256"] = json!(sha256_hex(&other));
    assert_eq!(refused(swapped), bad_signature);
    assert_eq!(
        refused(install_params(&good, &v1, &v2, Some(&stranger))),
        format!(
            "the component is signed by key {}, which is not trusted on this box (TRUSTED_COMPONENT_KEYS in site.conf)",
            stranger.public_key().id()
        )
    );
    let policy = site.path("component-policy.toml").display().to_string();
    assert_eq!(
        refused(install_params(&good, &v1, &v2, None)),
        format!(
            "component 'video-inventory' is not signed and the site policy {policy} requires signatures (allow-unsigned = false)"
        )
    );
    assert_eq!(
        refused(install_params(
            &good,
            &v1,
            &manifest("2.0.0", "services = [\"nginx\"]\nlocal-app = true\n"),
            Some(&key)
        )),
        format!(
            "component 'video-inventory' asks for more than the site policy {policy} allows: services \"nginx\"; local-app"
        )
    );
    // Taking over a built-in command needs the policy's permission.
    let takeover = "name = \"my-config\"\nversion = \"1.0.0\"\ncommands = [\"get_config\"]\n";
    let mut params = install_params(&good, &v1, takeover, Some(&key));
    params["name"] = json!("my-config");
    assert_eq!(
        refused(params),
        format!(
            "component 'my-config' would replace the built-in command 'get_config', which the site policy {policy} does not allow (replace-builtin)"
        )
    );
    // A core module, and a component built for another host.
    let core = b"\0asm\x01\0\0\0".to_vec();
    let core_server = FileServer::start(core.clone(), Fault::None);
    assert_eq!(
        refused(install_params(&core_server, &core, &v2, Some(&key))),
        "'video-inventory' is not a WebAssembly component: it is a core WebAssembly module; build it as a component for wasm32-wasip2 with the guest SDK (see the README, \"Write and push your own command\")"
    );
    let foreign = wasm_of("foreign-import");
    let foreign_server = FileServer::start(foreign.clone(), Fault::None);
    let foreign_error = refused(install_params(&foreign_server, &foreign, &v2, Some(&key)));
    assert!(
        foreign_error.starts_with("component 'video-inventory' cannot run on this agent: component imports instance `test:foreign/gadget`"),
        "{foreign_error}"
    );
    // Parameters that do not match the manifest.
    let mut mismatch = install_params(&good, &v1, &v2, Some(&key));
    mismatch["version"] = json!("3.0.0");
    assert_eq!(
        refused(mismatch),
        "the manifest says 'version' is '2.0.0' but the command says '3.0.0'"
    );
    let mut missing = install_params(&good, &v1, &v2, Some(&key));
    if let Some(o) = missing.as_object_mut() {
        o.remove("url");
    }
    assert_eq!(refused(missing), "install_component: missing field `url`");

    // Nothing changed: 1.0.0 is still active and runs, nothing was left over.
    assert_eq!(
        std::fs::read(site.path("state/components/video-inventory/state.json"))
            .expect("state.json"),
        state_before
    );
    let mut entries: Vec<String> = std::fs::read_dir(site.path("state/components/video-inventory"))
        .expect("component dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    entries.sort();
    assert_eq!(entries, ["1.0.0", "state.json"]);
    let incoming: Vec<_> = std::fs::read_dir(site.path("state/components/.incoming"))
        .expect("incoming")
        .collect();
    assert!(incoming.is_empty(), "no download left behind");
    assert_eq!(
        sorted_categories(success(run(&d, "video_inventory", json!({})))),
        inventory()
    );

    // A damaged installed file is refused, not run.
    std::fs::write(
        site.path("state/components/video-inventory/1.0.0/component.wasm"),
        b"\0asm garbage",
    )
    .expect("damage");
    let d = dispatcher(&site, &key, "");
    let damaged = error(run(&d, "video_inventory", json!({})));
    assert!(
        damaged.contains("is damaged (its sha256 no longer matches the installed one)"),
        "{damaged}"
    );
}

#[test]
fn the_allowlist_and_policy_decide_what_pushed_commands_may_run() {
    let key = SecretKey::generate().expect("key");
    // No extend-allowlist: a pushed command type must be in ALLOWED_COMMANDS.
    let site = site("[grants]\nsystem = true\nfiles = { videos = \"ro\" }\n");
    let v1 = wasm_of("video-inventory");
    let server = FileServer::start(v1.clone(), Fault::None);
    let params = install_params(&server, &v1, &manifest("1.0.0", ""), Some(&key));
    let policy = site.path("component-policy.toml").display().to_string();

    let d = dispatcher(&site, &key, "");
    assert_eq!(
        error(run(&d, "install_component", params.clone())),
        format!(
            "component 'video-inventory' handles 'video_inventory', which this box does not allow: add it to ALLOWED_COMMANDS in site.conf, or set extend-allowlist = true in the site policy {policy}"
        )
    );
    // An explicit ALLOWED_COMMANDS without the management commands: the
    // server cannot install at all.
    let d = dispatcher(&site, &key, "ALLOWED_COMMANDS=get_config,video_inventory");
    assert_eq!(
        error(run(&d, "install_component", params.clone())),
        "Command type 'install_component' is not allowed"
    );
    let d = dispatcher(
        &site,
        &key,
        "ALLOWED_COMMANDS=get_config,video_inventory,install_component",
    );
    success(run(&d, "install_component", params.clone()));
    assert_eq!(
        sorted_categories(success(run(&d, "video_inventory", json!({})))),
        inventory()
    );
    // Without a site policy, pushed components are disabled, and installed
    // ones are not loaded.
    std::fs::remove_file(site.path("component-policy.toml")).expect("remove policy");
    let d = dispatcher(&site, &key, "");
    assert_eq!(
        error(run(&d, "install_component", params)),
        "Command type 'install_component' is not allowed"
    );
    assert_eq!(
        error(run(&d, "video_inventory", json!({}))),
        "Command type 'video_inventory' is not allowed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_in_flight_finishes_on_the_version_it_started_with() {
    let key = SecretKey::generate().expect("key");
    let site = site(POLICY);
    let d = dispatcher(&site, &key, "");
    let slow_manifest = |version: &str| {
        format!(
            "name = \"slow\"\nversion = \"{version}\"\ncommands = [\"slow\"]\n[limits]\ntimeout-secs = 1\n"
        )
    };
    let v1 = wasm_of("loop-forever");
    let v1_server = FileServer::start(v1.clone(), Fault::None);
    success(
        d.run(
            "i1",
            "install_component",
            &install_params(&v1_server, &v1, &slow_manifest("1.0.0"), Some(&key)),
            None,
        )
        .await,
    );

    // Start 1.0.0 (it spins until its 1 s limit), then install 1.1.0 while
    // it runs.
    let empty = json!({});
    let first = d.run("r1", "slow", &empty, None);
    tokio::pin!(first);
    // One poll: the command has taken its component and is running.
    assert!(
        tokio::time::timeout(Duration::ZERO, &mut first)
            .await
            .is_err()
    );
    let v2 = wasm_of("noop");
    let v2_server = FileServer::start(v2.clone(), Fault::None);
    success(
        d.run(
            "i2",
            "install_component",
            &install_params(&v2_server, &v2, &slow_manifest("1.1.0"), Some(&key)),
            None,
        )
        .await,
    );
    assert_eq!(
        error(first.await),
        "component 'slow' did not finish within its time limit of 1 s"
    );
    assert_eq!(
        success(d.run("r2", "slow", &json!({}), None).await),
        json!({"success": true})
    );
}

#[test]
fn a_built_in_command_is_replaced_only_where_the_policy_allows_and_comes_back_on_removal() {
    let key = SecretKey::generate().expect("key");
    let site = site(&format!("replace-builtin = [\"get_config\"]\n{POLICY}"));
    site.write("neopro/webapp/configuration.json", "{\"categories\":[]}");
    let d = dispatcher(&site, &key, "");
    let builtin = json!({"success": true, "configuration": {"categories": []}});
    assert_eq!(success(run(&d, "get_config", json!({}))), builtin);

    let noop = wasm_of("noop");
    let server = FileServer::start(noop.clone(), Fault::None);
    let takeover = "name = \"my-config\"\nversion = \"1.0.0\"\ncommands = [\"get_config\"]\n";
    success(run(
        &d,
        "install_component",
        install_params(&server, &noop, takeover, Some(&key)),
    ));
    assert_eq!(
        success(run(&d, "get_config", json!({}))),
        json!({"success": true})
    );
    success(run(&d, "remove_component", json!({"name": "my-config"})));
    assert_eq!(success(run(&d, "get_config", json!({}))), builtin);
    assert_eq!(
        error(run(&d, "remove_component", json!({"name": "my-config"}))),
        "no pushed component named 'my-config' is installed"
    );
}

#[test]
fn withdrawn_trust_unloads_installed_components_and_blocks_rollback_to_them() {
    let key = SecretKey::generate().expect("key");
    let site = site(&POLICY.replace("allow-unsigned = false", "allow-unsigned = true"));
    let d = dispatcher(&site, &key, "");
    let v1 = wasm_of("video-inventory");
    let server = FileServer::start(v1.clone(), Fault::None);
    // 1.0.0 unsigned (allowed today), 1.1.0 signed.
    success(run(
        &d,
        "install_component",
        install_params(&server, &v1, &manifest("1.0.0", ""), None),
    ));
    success(run(
        &d,
        "install_component",
        install_params(&server, &v1, &manifest("1.1.0", ""), Some(&key)),
    ));
    // The management commands are never a pushed component's to claim.
    let reserved = "name = \"sneaky\"\nversion = \"1.0.0\"\ncommands = [\"install_component\"]\n";
    let mut params = install_params(&server, &v1, reserved, Some(&key));
    params["name"] = json!("sneaky");
    assert_eq!(
        error(run(&d, "install_component", params)),
        "component 'sneaky' claims 'install_component', which only the agent itself handles; pick another command type"
    );

    // The site stops accepting unsigned components: rolling back to the
    // unsigned 1.0.0 is refused, 1.1.0 stays active.
    site.write("component-policy.toml", POLICY);
    let policy = site.path("component-policy.toml").display().to_string();
    let d = dispatcher(&site, &key, "");
    assert_eq!(
        error(run(
            &d,
            "rollback_component",
            json!({"name": "video-inventory"})
        )),
        format!(
            "component 'video-inventory' is not signed and the site policy {policy} requires signatures (allow-unsigned = false)"
        )
    );
    assert_eq!(
        success(run(&d, "list_components", json!({})))["components"][0]["version"],
        json!("1.1.0")
    );
    assert_eq!(
        sorted_categories(success(run(&d, "video_inventory", json!({})))),
        inventory()
    );

    // The key is withdrawn from site.conf: its components no longer load.
    let stranger = SecretKey::generate().expect("key");
    let d = dispatcher(&site, &stranger, "");
    assert_eq!(
        error(run(&d, "video_inventory", json!({}))),
        "Command type 'video_inventory' is not allowed"
    );
}

/// Issue 24 point 8: removing a component does not reset what "older"
/// means; the site's no-downgrade rule holds across a remove.
#[test]
fn an_older_version_after_a_remove_is_still_refused_as_a_downgrade() {
    let key = SecretKey::generate().expect("key");
    let site = site(POLICY);
    let d = dispatcher(&site, &key, "");
    let v1 = wasm_of("video-inventory");
    let server = FileServer::start(v1.clone(), Fault::None);
    success(run(
        &d,
        "install_component",
        install_params(&server, &v1, &manifest("1.2.0", ""), Some(&key)),
    ));
    success(run(
        &d,
        "remove_component",
        json!({"name": "video-inventory"}),
    ));
    let policy = site.path("component-policy.toml").display().to_string();
    assert_eq!(
        error(run(
            &d,
            "install_component",
            install_params(&server, &v1, &manifest("1.1.0", ""), Some(&key)),
        )),
        format!(
            "component 'video-inventory' 1.1.0 is older than 1.2.0, the newest version this box ever installed (removing a component does not lower it): the site policy {policy} refuses downgrades (set allow-downgrade = true to allow them)"
        )
    );
    let listed = success(run(&d, "list_components", json!({})));
    assert_eq!(listed["components"], json!([]));
    assert_eq!(listed["highWater"], json!({"video-inventory": "1.2.0"}));
    // An author's machine, before pushing: `component check --installed`
    // with this box's list_components result refuses what the box refused.
    let list = site.path("list.json");
    std::fs::write(&list, serde_json::to_vec(&listed).expect("json")).expect("list.json");
    let installed = Inventory::from_list_file(&list).expect("a list_components result");
    let (older, newer) = (manifest("1.1.0", ""), manifest("1.2.0", ""));
    let versions = |manifest_text: &str, installed: Option<&Inventory>| {
        let report = check::check(
            &author_config(&site, &key),
            &site.path("component-policy.toml"),
            &check::Candidate {
                wasm: &v1,
                manifest_path: &site.path("video-inventory.toml"),
                manifest_text,
                signature: Some(&key.sign(&sha256_hex(&v1), manifest_text)),
            },
            check::Depth {
                link: None,
                signature: true,
                installed,
            },
        );
        report
            .findings
            .into_iter()
            .find(|f| f.topic == "versions")
            .expect("a versions finding")
            .verdict
    };
    let from = format!("(from the list_components result {})", list.display());
    assert_eq!(
        versions(&older, Some(&installed)),
        check::Verdict::Refuse {
            reason: format!(
                "component 'video-inventory' 1.1.0 is older than 1.2.0, the newest version this box ever installed (removing a component does not lower it): the site policy {policy} refuses downgrades (set allow-downgrade = true to allow them) {from}"
            ),
            change: format!(
                "give this build a version above it in {}, or set allow-downgrade in {policy} (not set yet)",
                site.path("video-inventory.toml").display()
            ),
        }
    );
    assert_eq!(
        versions(&newer, Some(&installed)),
        check::Verdict::Pass(format!(
            "video-inventory not installed, 1.2.0 the newest it ever had {from}"
        ))
    );
    // Without the list, and no store of the box on this machine.
    assert!(matches!(versions(&older, None), check::Verdict::Skipped(_)));
    // The same version again is fine.
    success(run(
        &d,
        "install_component",
        install_params(&server, &v1, &manifest("1.2.0", ""), Some(&key)),
    ));
    // The installed version number with other bytes: the box's store
    // refuses it, and so does the check with its list.
    let listed = success(run(&d, "list_components", json!({})));
    std::fs::write(&list, serde_json::to_vec(&listed).expect("json")).expect("list.json");
    let installed = Inventory::from_list_file(&list).expect("a list_components result");
    let other = wasm_of("noop");
    let report = check::check(
        &author_config(&site, &key),
        &site.path("component-policy.toml"),
        &check::Candidate {
            wasm: &other,
            manifest_path: &site.path("video-inventory.toml"),
            manifest_text: &newer,
            signature: None,
        },
        check::Depth {
            link: None,
            signature: false,
            installed: Some(&installed),
        },
    );
    assert!(
        report.findings.iter().any(|f| f.verdict
            == check::Verdict::Refuse {
                reason: format!(
                    "component 'video-inventory' version 1.2.0 is already installed with different contents; give the new build a new version {from}"
                ),
                change: format!(
                    "give this build a new version in {}",
                    site.path("video-inventory.toml").display()
                ),
            }),
        "{:?}",
        report.findings
    );
}

/// An author's copy of the box's site.conf: the same policy and keys, but
/// a STATE_PATH of this machine, where no component of the box is stored.
fn author_config(site: &Site, key: &SecretKey) -> neopro_runtime::config::SiteConfig {
    let text = format!(
        "NEOPRO_ROOT={}\nSTATE_PATH={}\n{}",
        site.path("neopro").display(),
        site.path("author-state").display(),
        extra_conf(site, key),
    );
    neopro_runtime::config::SiteConfig::from_sources(
        Some((&site.path("author-site.conf"), &text)),
        &|_| None,
    )
    .expect("site.conf")
}

#[test]
fn an_older_version_is_refused_unless_the_policy_allows_downgrades() {
    let key = SecretKey::generate().expect("key");
    let site = site(POLICY);
    let d = dispatcher(&site, &key, "");
    let v1 = wasm_of("video-inventory");
    let server = FileServer::start(v1.clone(), Fault::None);
    for version in ["1.0.0", "1.2.0"] {
        success(run(
            &d,
            "install_component",
            install_params(&server, &v1, &manifest(version, ""), Some(&key)),
        ));
    }
    // A signed but older version pushed over 1.2.0.
    let policy = site.path("component-policy.toml").display().to_string();
    assert_eq!(
        error(run(
            &d,
            "install_component",
            install_params(&server, &v1, &manifest("1.1.0", ""), Some(&key)),
        )),
        format!(
            "component 'video-inventory' 1.1.0 is older than the installed 1.2.0: the site policy {policy} refuses downgrades (set allow-downgrade = true to allow them; rollback_component returns to the previous version)"
        )
    );
    let listed = success(run(&d, "list_components", json!({})));
    assert_eq!(listed["components"][0]["version"], json!("1.2.0"));
    assert_eq!(listed["components"][0]["previousVersion"], json!("1.0.0"));
    // The explicit rollback stays allowed.
    assert_eq!(
        success(run(
            &d,
            "rollback_component",
            json!({"name": "video-inventory"})
        ))["version"],
        json!("1.0.0")
    );
    // A site that allows it.
    site.write(
        "component-policy.toml",
        &format!("allow-downgrade = true\n{POLICY}"),
    );
    let d = dispatcher(&site, &key, "");
    success(run(
        &d,
        "rollback_component",
        json!({"name": "video-inventory"}),
    ));
    assert_eq!(
        success(run(
            &d,
            "install_component",
            install_params(&server, &v1, &manifest("1.1.0", ""), Some(&key)),
        ))["version"],
        json!("1.1.0")
    );
}

#[test]
fn remove_and_rollback_check_names_as_install_does() {
    let key = SecretKey::generate().expect("key");
    let site = site(POLICY);
    let d = dispatcher(&site, &key, "");
    for command in ["remove_component", "rollback_component"] {
        assert_eq!(
            error(run(&d, command, json!({"name": "../journal"}))),
            "'../journal' is not a component name: use 1-64 characters of a-z, 0-9 and '-'"
        );
    }
}

/// The TypeScript port of the template (guest-sdk/template-ts, built by
/// `cargo xtask guests` with the SDK's QuickJS build step).
fn ts_wasm_of(name: &str) -> Vec<u8> {
    let ts = components_dir()
        .parent()
        .expect("components folder")
        .join("ts");
    std::fs::read(ts.join(format!("{name}.wasm"))).expect("TypeScript test component")
}

#[test]
fn the_typescript_template_installs_signed_and_answers_as_the_rust_one() {
    let key = SecretKey::generate().expect("key");
    let site = site(POLICY);
    let d = dispatcher(&site, &key, "");
    let rust = wasm_of("video-inventory");
    let ts = ts_wasm_of("video-inventory");
    let server = FileServer::start(ts.clone(), Fault::None);
    let installed = success(run(
        &d,
        "install_component",
        install_params(&server, &ts, &manifest("1.0.0", ""), Some(&key)),
    ));
    assert_eq!(installed["sha256"], json!(sha256_hex(&ts)));
    let cases = [
        json!({}),
        json!({"category": "Sponsors"}),
        json!({"category": "Nope"}),
    ];
    let from_ts: Vec<Outcome> = cases
        .iter()
        .map(|data| run(&d, "video_inventory", data.clone()))
        .collect();
    assert_eq!(sorted_categories(success(from_ts[0].clone())), inventory());

    // The same commands on the same files through the Rust template.
    let site_rust = self::site(POLICY);
    let d_rust = dispatcher(&site_rust, &key, "");
    let server = FileServer::start(rust.clone(), Fault::None);
    success(run(
        &d_rust,
        "install_component",
        install_params(&server, &rust, &manifest("1.0.0", ""), Some(&key)),
    ));
    for (data, ts_outcome) in cases.iter().zip(from_ts) {
        let rust_outcome = run(&d_rust, "video_inventory", data.clone());
        match (rust_outcome, ts_outcome) {
            (Outcome::Success { result: r }, Outcome::Success { result: t }) => {
                assert_eq!(sorted_categories(t), sorted_categories(r), "{data}")
            }
            (r, t) => assert_eq!(format!("{t:?}"), format!("{r:?}"), "{data}"),
        }
    }
}

/// A TypeScript component that allocates past its manifest's limit, pushed
/// and run through the link: the server gets `too-large` naming the limit
/// (whether the engine trapped or QuickJS threw its own "out of memory"),
/// and the same agent process answers the next commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typescript_component_out_of_memory_is_too_large_and_the_agent_carries_on() {
    let (key, site, central, agent) = managed_site().await;

    let hog = ts_wasm_of("memory-hog");
    let hog_manifest = "name = \"memory-hog\"\nversion = \"1.0.0\"\ncommands = [\"memory_hog\"]\n\
        [limits]\nmemory-mib = 16\ntimeout-secs = 30\n";
    let server = FileServer::start(hog.clone(), Fault::None);
    central.send_command(
        "i1",
        "install_component",
        install_params(&server, &hog, hog_manifest, Some(&key)),
    );
    let installed = central.result_of("i1", WAIT).await;
    assert_eq!(installed["status"], json!("success"), "{installed}");

    // A few MiB fit: the limit is not hit by a small run.
    central.send_command("ok1", "memory_hog", json!({"mib": 1}));
    let small = central.result_of("ok1", WAIT).await;
    assert_eq!(
        small["result"],
        json!({"success": true, "chunks": 16}),
        "{small}"
    );
    for id in ["oom1", "oom2"] {
        central.send_command(id, "memory_hog", json!({"mib": 256}));
        let out = central.result_of(id, WAIT).await;
        assert_eq!(out["status"], json!("error"), "{out}");
        let error = out["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with(
                "component 'memory-hog' ran out of memory: it tried to use more than its limit of 16 MiB"
            ),
            "{out}"
        );
    }
    // The same agent process carries on: a built-in and the component again.
    central.send_command("c1", "get_config", json!({}));
    let config = central.result_of("c1", WAIT).await;
    assert_eq!(config["status"], json!("success"), "{config}");
    central.send_command("ok2", "memory_hog", json!({"mib": 1}));
    assert_eq!(
        central.result_of("ok2", WAIT).await["result"],
        json!({"success": true, "chunks": 16})
    );
    // The agent loop ran on and stops cleanly.
    agent.stop().await;

    // The error's kind, which the link does not carry: `run-component`
    // prints it.
    std::fs::write(site.path("memory-hog.wasm"), &hog).expect("wasm");
    std::fs::write(site.path("memory-hog.toml"), hog_manifest).expect("manifest");
    let out = std::process::Command::new(neopro_e2e::process::agent_binary())
        .arg("run-component")
        .arg(site.path("memory-hog.wasm"))
        .arg("--config")
        .arg(site.path("site.conf"))
        .args(["--ignore-signature", "--data", r#"{"mib":256}"#])
        .output()
        .expect("run-component");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "error (too-large): component 'memory-hog' ran out of memory: it tried to use more than its limit of 16 MiB"
        ),
        "{stderr}"
    );
}

/// The test kit (`@neopro/guest-sdk/testing`) answers host calls as the
/// agent does: the same handler (guest-sdk/template-ts/fixtures/host-probe.js)
/// makes the same calls on the agent and on the kit's fake box, with the
/// same manifest and files, and the two answers are equal, refusal for
/// refusal, message for message.
#[test]
fn the_test_kit_answers_host_calls_as_the_agent_does() {
    let site = Site::new();
    site.write("neopro/videos/Match/notes.txt", "a\nb\n");
    let manifest = "name = \"host-probe\"\nversion = \"1.0.0\"\ncommands = [\"host_probe\"]\n\
        [grants]\nfiles = { videos = \"ro\" }\n";
    site.write("host-probe.toml", manifest);
    std::fs::write(site.path("host-probe.wasm"), ts_wasm_of("host-probe")).expect("wasm");
    site.write(
        "probe.conf",
        &format!(
            "NEOPRO_ROOT={}\nSTATE_PATH={}\n",
            site.path("neopro").display(),
            site.path("state").display()
        ),
    );
    let output = |cmd: &mut std::process::Command| {
        let out = cmd.output().expect("runs");
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).expect("JSON on stdout")
    };
    let on_agent = output(
        std::process::Command::new(neopro_e2e::process::agent_binary())
            .arg("run-component")
            .arg(site.path("host-probe.wasm"))
            .arg("--config")
            .arg(site.path("probe.conf")),
    );
    let template =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/template-ts");
    let in_kit = output(
        std::process::Command::new("node")
            .args([
                "--import",
                "@neopro/guest-sdk/testing/register",
                "fixtures/kit-probe.mjs",
            ])
            .arg(site.path("host-probe.toml"))
            .current_dir(&template),
    );
    let calls = on_agent.as_array().expect("a list of outcomes");
    assert!(calls.len() > 15, "{on_agent}");
    for (agent, kit) in calls.iter().zip(in_kit.as_array().expect("a list")) {
        assert_eq!(kit, agent, "the kit differs from the agent");
    }
    assert_eq!(in_kit, on_agent);
}
