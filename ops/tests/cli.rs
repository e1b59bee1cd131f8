//! The `neopro-runtime` binary as an operator uses it.
// A broken fixture should stop the test loudly.
#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn components_dir() -> PathBuf {
    std::env::var_os("NEOPRO_TEST_COMPONENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/components/test"))
}

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().expect("temp dir");
        let neopro = dir.path().join("neopro");
        std::fs::create_dir_all(neopro.join("webapp")).expect("webapp");
        std::fs::write(
            dir.path().join("site.conf"),
            format!(
                "# test site\nNEOPRO_ROOT={}\nSTATE_PATH={}\nCOMPONENTS_PATH={}\n",
                neopro.display(),
                dir.path().join("state").display(),
                components_dir().display()
            ),
        )
        .expect("site.conf");
        Site { dir }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_neopro-runtime"))
            .arg("--config")
            .arg(self.dir.path().join("site.conf"))
            .args(args)
            .env_remove("COMPONENTS_PATH")
            .env_remove("RUST_LOG")
            .output()
            .expect("run neopro-runtime")
    }
    /// `component keygen` into `ops.key` in the site folder: the key file,
    /// the public key it printed (`ed25519:…`) and all it printed.
    fn keygen(&self) -> (String, String, String) {
        let key = self.dir.path().join("ops.key").display().to_string();
        let printed = stdout(&self.run(&["component", "keygen", "--out", &key]));
        let public = printed
            .lines()
            .find(|l| l.starts_with("ed25519:"))
            .expect("public key printed")
            .to_owned();
        (key, public, printed)
    }

    /// `component sign` of `wasm` with `key`, which must succeed.
    fn sign(&self, key: &str, wasm: &str) {
        let out = self.run(&["component", "sign", "--key", key, wasm]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn run_component_by_name_prints_the_result_json() {
    let site = Site::new();
    std::fs::write(
        site.dir.path().join("neopro/webapp/configuration.json"),
        r#"{"categories":[]}"#,
    )
    .expect("config");
    let out = site.run(&["run-component", "get-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let value: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON on stdout");
    assert_eq!(
        value,
        serde_json::json!({"success": true, "configuration": {"categories": []}})
    );
}

#[test]
fn run_component_by_command_type_and_by_path() {
    let site = Site::new();
    let by_type = site.run(&["run-component", "get_config"]);
    assert!(by_type.status.success(), "{}", stderr(&by_type));
    let path = components_dir().join("get-config.wasm");
    let by_path = site.run(&["run-component", &path.display().to_string()]);
    assert!(by_path.status.success(), "{}", stderr(&by_path));
    assert_eq!(stdout(&by_type), stdout(&by_path));
}

#[test]
fn an_error_result_goes_to_stderr_with_a_non_zero_exit() {
    let site = Site::new();
    let out = site.run(&[
        "run-component",
        "get-logs",
        "--data",
        r#"{"service":"neopro-app; touch x"}"#,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out)
            .contains("error (invalid-input): 'neopro-app; touch x' is not a valid service name")
    );
}

#[test]
fn bad_arguments_are_explained() {
    let site = Site::new();
    let out = site.run(&["run-component", "get-config", "--data", "[1,2]"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--data must be a JSON object"));

    let out = site.run(&["run-component", "no-such-thing"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no component named 'no-such-thing' or handling 'no-such-thing'")
    );

    let missing = site.dir.path().join("lonely.wasm");
    std::fs::write(&missing, b"\0asm").expect("wasm");
    let out = site.run(&["run-component", &missing.display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("has no manifest next to it"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn components_lists_commands_and_grants() {
    let site = Site::new();
    let out = site.run(&["components"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("get-logs 0.1.0\n  commands: get_logs\n  limits:   64 MiB, 30 s\n  grants:   logs.units = [*]; logs.agent-log\n"), "{text}");
    assert!(
        text.contains("escape 0.1.0\n  commands: test_escape\n"),
        "{text}"
    );
    assert!(
        text.contains("grants:   files.videos = rw; files.staging = ro"),
        "{text}"
    );
}

#[test]
fn invalid_site_conf_names_the_line() {
    let site = Site::new();
    std::fs::write(site.dir.path().join("site.conf"), "SITE_ID=x\nnonsense\n").expect("conf");
    let out = site.run(&["components"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("line 2: expected KEY=VALUE, found 'nonsense'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn operators_keygen_sign_verify_inspect_and_run_a_signed_bundle() {
    let site = Site::new();
    let dir = site.dir.path();
    std::fs::create_dir_all(dir.join("neopro/videos/Match")).expect("videos");
    std::fs::write(dir.join("neopro/videos/Match/but.mp4"), b"12345").expect("video");
    std::fs::write(dir.join("neopro/VERSION"), "2.1.3\n").expect("version");
    for ext in ["wasm", "toml"] {
        std::fs::copy(
            components_dir().join(format!("video-inventory.{ext}")),
            dir.join(format!("inventory.{ext}")),
        )
        .expect("bundle");
    }
    let wasm = dir.join("inventory.wasm").display().to_string();
    let key = dir.join("ops.key").display().to_string();

    let out = site.run(&["component", "keygen", "--out", &key]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let public = stdout(&out)
        .lines()
        .find(|l| l.starts_with("ed25519:"))
        .expect("public key printed")
        .to_owned();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).expect("key").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "secret key readable by its owner only");
    let again = site.run(&["component", "keygen", "--out", &key]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "an existing key is never overwritten"
    );

    let out = site.run(&[
        "component",
        "sign",
        "--key",
        &key,
        &wasm,
        "--url",
        "https://cdn.example/inv.wasm",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let params: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("params JSON");
    assert_eq!(params["name"], "video-inventory");
    assert_eq!(params["url"], "https://cdn.example/inv.wasm");
    assert_eq!(
        params["manifest"].as_str(),
        std::fs::read_to_string(dir.join("inventory.toml"))
            .ok()
            .as_deref()
    );
    assert!(dir.join("inventory.sig").is_file());

    let out = site.run(&["component", "verify", &wasm, "--key", &public]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("valid signature by key"));

    // Not trusted by the site yet: run-component refuses the signed bundle.
    let out = site.run(&["run-component", &wasm]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is signed but no trusted key is known"),
        "{}",
        stderr(&out)
    );
    // ...unless given the key, or told to ignore the signature (a local run).
    let out = site.run(&["run-component", &wasm, "--key", &public]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("signature: valid, by trusted key"),
        "{}",
        stderr(&out)
    );
    let out = site.run(&["run-component", &wasm, "--ignore-signature"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("inventory.sig not checked (--ignore-signature)"),
        "{}",
        stderr(&out)
    );
    let other = "ed25519:".to_owned() + &"0".repeat(64);
    let out = site.run(&["run-component", &wasm, "--key", &other]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let conf = dir.join("site.conf");
    let mut text = std::fs::read_to_string(&conf).expect("site.conf");
    text.push_str(&format!("TRUSTED_COMPONENT_KEYS={public}\n"));
    std::fs::write(&conf, text).expect("site.conf");
    let out = site.run(&["run-component", &wasm]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let result: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("result JSON");
    assert_eq!(result["videos"], 1);
    assert_eq!(result["neoproVersion"], "2.1.3");

    let out = site.run(&["component", "inspect", &wasm]);
    let text = stdout(&out);
    for expected in [
        "world:     neopro:agent/command",
        "links:     yes, it can run on this agent",
        "  neopro:agent/files@0.2.0",
        "  commands: video_inventory",
        "  grants:   files.videos = ro; system",
        "signature: valid, by trusted key",
    ] {
        assert!(text.contains(expected), "missing '{expected}' in:\n{text}");
    }

    // A manifest edited after signing no longer verifies, and will not run.
    let manifest = dir.join("inventory.toml");
    let edited = std::fs::read_to_string(&manifest)
        .expect("manifest")
        .replace("memory-mib = 16", "memory-mib = 17");
    std::fs::write(&manifest, edited).expect("edit");
    let out = site.run(&["run-component", &wasm]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("bad signature"), "{}", stderr(&out));
}

#[test]
fn sign_release_makes_what_a_box_with_update_trusted_keys_accepts() {
    let site = Site::new();
    let dir = site.dir.path();
    let (key, public, _) = site.keygen();
    let archive = dir.join("release.tar.gz");
    std::fs::write(&archive, b"not really a tarball").expect("archive");
    let out = site.run(&[
        "component",
        "sign-release",
        "--key",
        &key,
        "--version",
        "2.2.0",
        &archive.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let printed: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let checksum = printed["checksum"].as_str().expect("checksum");
    let signature = printed["signature"].as_str().expect("signature");

    // The key as keygen printed it is accepted in site.conf...
    let text = format!("UPDATE_TRUSTED_KEYS={public}\n");
    let config = neopro_runtime::config::SiteConfig::from_sources(
        Some((&dir.join("site.conf"), &text)),
        &|_| None,
    )
    .expect("site.conf with the key");
    // ... and the signature verifies for that version only.
    use neopro_runtime::signing::releases::check;
    assert_eq!(
        check(&config.update_keys, "2.2.0", checksum, Some(signature)),
        Ok(())
    );
    assert!(check(&config.update_keys, "2.2.1", checksum, Some(signature)).is_err());
}

/// The template's video-inventory bundle as `inventory.{wasm,toml}` in the
/// site folder, and the path of its .wasm.
fn inventory_bundle(site: &Site) -> String {
    let dir = site.dir.path();
    for ext in ["wasm", "toml"] {
        std::fs::copy(
            components_dir().join(format!("video-inventory.{ext}")),
            dir.join(format!("inventory.{ext}")),
        )
        .expect("bundle");
    }
    dir.join("inventory.wasm").display().to_string()
}

fn append(path: &Path, text: &str) {
    let mut all = std::fs::read_to_string(path).expect("read");
    all.push_str(text);
    std::fs::write(path, all).expect("write");
}

#[test]
fn component_check_reports_each_refusal_with_the_line_to_change() {
    let site = Site::new();
    let dir = site.dir.path();
    let wasm = inventory_bundle(&site);
    let conf = dir.join("site.conf");
    let policy = dir.join("policy.toml");
    // No built-in handles video_inventory on this box (the test components
    // folder has one); line 5 of site.conf: an allowlist without the
    // component's command nor install_component.
    let builtins = dir.join("builtins");
    std::fs::create_dir_all(&builtins).expect("builtins");
    let text = std::fs::read_to_string(&conf).expect("site.conf").replace(
        &format!("COMPONENTS_PATH={}", components_dir().display()),
        &format!("COMPONENTS_PATH={}", builtins.display()),
    );
    std::fs::write(&conf, text).expect("site.conf");
    append(&conf, "ALLOWED_COMMANDS=get_logs,get_config\n");
    std::fs::write(
        &policy,
        "allow-unsigned = false\nextend-allowlist = false\n[limits]\nmax-memory-mib = 8\nmax-compile-mib = 30\n[grants]\nfiles = { videos = \"ro\" }\n",
    )
    .expect("policy");
    let p = policy.display().to_string();
    let c = conf.display().to_string();
    let out = site.run(&["component", "check", &wasm, "--policy", &p]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let expected = format!(
        "component: video-inventory 1.0.0 ({wasm})
box:       site.conf {c}, policy {p}
ok       policy: {p}
REFUSED  grants: component 'video-inventory' asks for more than the site policy {p} allows: system; limits.memory-mib = 16 (the policy allows 8)
         change: allow them at {p}:6 [grants] and {p}:3 [limits] (manifest syntax), or ask for less in {dir}/inventory.toml
skipped  versions: no record of the box's components here ({dir}/state/components does not exist): pass --installed FILE with the box's list_components result
REFUSED  signature: component 'video-inventory' is not signed and the site policy {p} requires signatures (allow-unsigned = false)
         change: sign it (neopro-runtime component sign --key KEY_FILE <wasm>), or set {p}:1 allow-unsigned
REFUSED  commands: component 'video-inventory' handles 'video_inventory', which this box does not allow: add it to ALLOWED_COMMANDS in site.conf, or set extend-allowlist = true in the site policy {p}
         change: add video_inventory to {c}:5 ALLOWED_COMMANDS, or set {p}:2 extend-allowlist
REFUSED  install_component: this box does not accept install_component: ALLOWED_COMMANDS is set in site.conf and does not list it
         change: add install_component (and remove_component, list_components, rollback_component) to {c}:5 ALLOWED_COMMANDS
ok       api-version: 0.2, imports neopro:agent@0.2.0; this agent links neopro:agent 0.1, 0.2
ok       links: a neopro:agent/command component, every import provided
REFUSED  compile: component 'video-inventory' (0.1 MB of WebAssembly) would need about 37 MiB of memory to compile, more than the 30 MiB the site policy {p} allows (max-compile-mib): build it with the QuickJS engine (the TypeScript SDK's default) or make it smaller, or raise max-compile-mib on a box with the memory to spare
         change: raise {p}:5 max-compile-mib, or make the component smaller
result:    a box with this site.conf and policy would refuse it (5 refusals)
",
        dir = dir.display()
    );
    assert_eq!(stdout(&out), expected);

    // run-component runs it, then says what a box with this site.conf
    // (its COMPONENT_POLICY_PATH) would refuse, signature aside.
    append(&conf, &format!("COMPONENT_POLICY_PATH={p}\n"));
    std::fs::create_dir_all(dir.join("neopro/videos")).expect("videos");
    let out = site.run(&["run-component", &wasm]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    for line in [
        format!("warning: a box with this site.conf would refuse to install {wasm}:\n"),
        format!(
            "warning:   REFUSED  grants: component 'video-inventory' asks for more than the site policy {p} allows: system; limits.memory-mib = 16 (the policy allows 8)\n"
        ),
        format!(
            "warning:            change: add video_inventory to {c}:5 ALLOWED_COMMANDS, or set {p}:2 extend-allowlist\n"
        ),
        format!("warning: `neopro-runtime component check {wasm}` gives the full report\n"),
    ] {
        assert!(err.contains(&line), "missing '{line}' in:\n{err}");
    }
    assert!(!err.contains("signature:"), "{err}");

    // The fixes the report names: a box that installs it.
    let (key, public, printed) = site.keygen();
    site.sign(&key, &wasm);
    std::fs::write(
        &policy,
        "[limits]\nmax-memory-mib = 16\n[grants]\nsystem = true\nfiles = { videos = \"ro\" }\n",
    )
    .expect("policy");
    let text = std::fs::read_to_string(&conf).expect("site.conf").replace(
        "ALLOWED_COMMANDS=get_logs,get_config",
        "ALLOWED_COMMANDS=get_logs,get_config,video_inventory,install_component",
    );
    std::fs::write(&conf, format!("{text}TRUSTED_COMPONENT_KEYS={public}\n")).expect("conf");
    let out = site.run(&["component", "check", &wasm]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let report = stdout(&out);
    for line in [
        "ok       grants: files.videos = ro; system; limits 16 MiB, 10 s: within the policy\n".to_owned(),
        "ok       commands: video_inventory: in ALLOWED_COMMANDS\n".to_owned(),
        "ok       install_component: in ALLOWED_COMMANDS\n".to_owned(),
        "ok       compile: about 37 MiB estimated for 0.1 MB of WebAssembly, within max-compile-mib = 256\n".to_owned(),
        "result:    a box with this site.conf and policy would install it\n".to_owned(),
    ] {
        assert!(report.contains(&line), "missing '{line}' in:\n{report}");
    }
    let key_id = printed
        .split("(key id ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("key id printed")
        .to_owned();
    assert!(
        report.contains(&format!(
            "ok       signature: valid, by trusted key {key_id}\n"
        )),
        "{report}"
    );
    let out = site.run(&["run-component", &wasm]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning:"), "{}", stderr(&out));

    // The box's list_components result: a newer version installed there,
    // and a built-in of that box handling the same command type.
    let list = dir.join("list.json");
    std::fs::write(
        &list,
        r#"{"success":true,"components":[{"name":"video-inventory","version":"1.2.0","previousVersion":null,"commands":["video_inventory"],"sha256":"00"}],"builtin":[{"name":"inventory-classic","version":"1.0.0","commands":["video_inventory"]}],"highWater":{"video-inventory":"1.2.0"},"problems":[]}"#,
    )
    .expect("list.json");
    let l = list.display().to_string();
    let out = site.run(&["component", "check", &wasm, "--installed", &l]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let report = stdout(&out);
    for line in [
        format!(
            "REFUSED  versions: component 'video-inventory' 1.0.0 is older than the installed 1.2.0: the site policy {p} refuses downgrades (set allow-downgrade = true to allow them; rollback_component returns to the previous version) (from the list_components result {l})\n"
        ),
        format!(
            "         change: give this build a version above it in {dir}/inventory.toml, or set allow-downgrade in {p} (not set yet)\n",
            dir = dir.display()
        ),
        format!(
            "REFUSED  commands: component 'video-inventory' would replace the built-in command 'video_inventory', which the site policy {p} does not allow (replace-builtin)\n"
        ),
        "result:    a box with this site.conf and policy would refuse it (2 refusals)\n".to_owned(),
    ] {
        assert!(report.contains(&line), "missing '{line}' in:\n{report}");
    }
    std::fs::write(&list, "{\"success\":true}").expect("list.json");
    let out = site.run(&["component", "check", &wasm, "--installed", &l]);
    assert_eq!(out.status.code(), Some(2), "a usage error, not a verdict");
    assert!(
        stderr(&out).contains(&format!("{l} is not a list_components result (the JSON the box answered, with \"components\"): missing field `components`")),
        "{}",
        stderr(&out)
    );

    // Without a policy: pushed components are disabled, said once.
    std::fs::remove_file(&policy).expect("rm policy");
    let out = site.run(&["component", "check", &wasm]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains(&format!(
            "REFUSED  policy: pushed components are disabled on this box: there is no site policy at {p} (see config/component-policy.toml.example)\n         change: install the box's policy at {p} (example: config/component-policy.toml.example), or point COMPONENT_POLICY_PATH in site.conf (component check: --policy) at a copy of it\nskipped  grants: needs a usable site policy\n"
        )),
        "{}",
        stdout(&out)
    );
}

#[test]
fn inspect_without_a_trusted_key_says_the_signature_is_not_checked() {
    let site = Site::new();
    let dir = site.dir.path();
    let wasm = inventory_bundle(&site);
    let (key, signer, _) = site.keygen();
    site.sign(&key, &wasm);
    let out = site.run(&["component", "inspect", &wasm]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).ends_with(
            "signature: not checked (no trusted key given; `component verify --key ed25519:…` checks it)\n"
        ),
        "{}",
        stdout(&out)
    );

    // Renamed for upload: verify is told where the manifest and .sig are.
    let renamed = dir.join("inventory-1.0.0.wasm").display().to_string();
    std::fs::rename(&wasm, &renamed).expect("rename");
    let out = site.run(&["component", "verify", &renamed, "--key", &signer]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!(
            "reading the manifest {}/inventory-1.0.0.toml (it must sit beside the .wasm, named like it; or pass --manifest FILE)",
            dir.display()
        )),
        "{}",
        stderr(&out)
    );
    let manifest = dir.join("inventory.toml").display().to_string();
    let sig = dir.join("inventory.sig").display().to_string();
    let out = site.run(&[
        "component",
        "verify",
        &renamed,
        "--key",
        &signer,
        "--manifest",
        &manifest,
        "--signature",
        &sig,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("{renamed}: valid signature by key ")),
        "{}",
        stdout(&out)
    );
}
