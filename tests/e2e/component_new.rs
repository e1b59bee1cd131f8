//! `neopro-runtime component new` in a temporary folder outside the
//! repository: the project it writes builds with its own toolchain (cargo
//! for Rust, npm for TypeScript), its own test passes, and the built `.wasm`
//! runs with `run-component` as it is, found with its manifest.
//!
//! Offline: cargo and npm take what `cargo xtask test` already fetched (the
//! guests' crates, the TypeScript template's lockfile).
#![allow(clippy::expect_used)]

use neopro_e2e::process::agent_binary;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A box: videos in a temporary NEOPRO root and its site.conf.
fn site(dir: &Path) -> PathBuf {
    let videos = dir.join("neopro/videos/Match");
    std::fs::create_dir_all(&videos).expect("videos");
    std::fs::write(videos.join("but.mp4"), "0123456789").expect("video");
    std::fs::write(videos.join("arret.mp4"), "01234").expect("video");
    std::fs::create_dir_all(dir.join("state")).expect("state");
    let conf = dir.join("site.conf");
    std::fs::write(
        &conf,
        format!(
            "NEOPRO_ROOT={}\nSTATE_PATH={}\n",
            dir.join("neopro").display(),
            dir.join("state").display()
        ),
    )
    .expect("site.conf");
    conf
}

/// `run-component WASM --data DATA`: (exit code, stdout JSON or null, stderr).
fn run_component(wasm: &Path, conf: &Path, data: &str) -> (i32, Value, String) {
    let out = Command::new(agent_binary())
        .arg("run-component")
        .arg(wasm)
        .arg("--config")
        .arg(conf)
        .args(["--data", data])
        .output()
        .expect("run-component");
    let stdout = String::from_utf8_lossy(&out.stdout);
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn component_new(dir: &Path, lang: &str) -> PathBuf {
    let out = run(Command::new(agent_binary())
        .args(["component", "new", "video-stats", "--lang", lang, "--dir"])
        .arg(dir));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("video-stats"), "{printed}");
    dir.join("video-stats")
}

fn assert_runs_like_the_template_says(wasm: &Path, conf: &Path) {
    assert_eq!(
        run_component(wasm, conf, r#"{"folder":"Match"}"#).1,
        json!({"success": true, "folder": "Match", "videos": 2, "bytes": 15})
    );
    let (code, _, stderr) = run_component(wasm, conf, r#"{"folder":"Nope"}"#);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("error (not-found): no folder 'Nope' in the video library"),
        "{stderr}"
    );
}

#[test]
fn a_rust_component_from_component_new_builds_tests_and_runs_outside_the_repo() {
    let work = tempfile::tempdir().expect("temp dir");
    let project = component_new(work.path(), "rust");
    let cargo = || {
        let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        // Its own target dir, its own workspace: nothing from this repo's build.
        c.current_dir(&project)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("RUSTFLAGS")
            .env("CARGO_NET_OFFLINE", "true");
        c
    };
    run(cargo().args(["test", "--quiet"]));
    run(cargo().args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"]));
    let wasm = project.join("target/wasm32-wasip2/release/video_stats.wasm");
    assert!(wasm.is_file(), "{} not built", wasm.display());
    let conf = site(&work.path().join("box"));
    assert_runs_like_the_template_says(&wasm, &conf);
    operator_tools_treat_it_as_any_component(&wasm, &conf, work.path());
}

/// `component keygen | sign | inspect` and a signed `run-component`: the
/// same for a Rust and a TypeScript component.
fn operator_tools_treat_it_as_any_component(wasm: &Path, conf: &Path, work: &Path) {
    let key = work.join("ops.key");
    let out = run(Command::new(agent_binary())
        .args(["component", "keygen", "--out"])
        .arg(&key));
    let public = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("ed25519:"))
        .expect("public key printed")
        .to_owned();
    let signed = run(Command::new(agent_binary())
        .args(["component", "sign", "--key"])
        .arg(&key)
        .arg(wasm));
    let params: Value = serde_json::from_slice(&signed.stdout).expect("install parameters");
    assert_eq!(params["name"], json!("video-stats"));
    assert!(wasm.with_extension("sig").is_file());
    let mut text = std::fs::read_to_string(conf).expect("site.conf");
    text.push_str(&format!("TRUSTED_COMPONENT_KEYS={public}\n"));
    std::fs::write(conf, text).expect("site.conf");
    let inspected = run(Command::new(agent_binary())
        .args(["--config"])
        .arg(conf)
        .args(["component", "inspect"])
        .arg(wasm));
    let inspected = String::from_utf8_lossy(&inspected.stdout);
    for line in [
        "world:     neopro:agent/command",
        "links:     yes, it can run on this agent",
        "  commands: video_stats",
        "signature: valid, by trusted key",
    ] {
        assert!(inspected.contains(line), "{line} not in:\n{inspected}");
    }
    let (code, result, stderr) = run_component(wasm, conf, "{}");
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("signature: valid, by trusted key"),
        "{stderr}"
    );
    assert_eq!(result["videos"], json!(0), "{result}");
}

#[test]
fn a_typescript_component_from_component_new_builds_tests_and_runs_outside_the_repo() {
    let work = tempfile::tempdir().expect("temp dir");
    let project = component_new(work.path(), "ts");
    let npm = |args: &[&str]| {
        run(Command::new("npm")
            .args(args)
            .current_dir(&project)
            .env("npm_config_audit", "false")
            .env("npm_config_fund", "false"))
    };
    // The shipped lockfile, as it is: `npm ci` fails when it does not match
    // package.json.
    assert!(
        project.join("package-lock.json").is_file(),
        "component new wrote the lockfile"
    );
    npm(&["ci", "--offline"]);
    npm(&["test"]);
    // src/ and test/ type-check as they are (test/ with Node's types).
    npm(&["run", "typecheck"]);
    npm(&["run", "build"]);
    let wasm = project.join("dist/video-stats.wasm");
    assert!(
        project.join("dist/video-stats.toml").is_file(),
        "manifest beside the wasm"
    );
    let conf = site(&work.path().join("box"));
    assert_runs_like_the_template_says(&wasm, &conf);
    operator_tools_treat_it_as_any_component(&wasm, &conf, work.path());
    // The release rebuilt from its source and lockfile in another folder
    // (as anyone checking it would): the same bytes, so the same signature.
    let copy = work.path().join("checkout/video-stats");
    copy_source(&project, &copy);
    for args in [&["ci", "--offline"][..], &["run", "build"][..]] {
        run(Command::new("npm")
            .args(args)
            .current_dir(&copy)
            .env("npm_config_audit", "false")
            .env("npm_config_fund", "false"));
    }
    let rebuilt = copy.join("dist/video-stats.wasm");
    assert_eq!(
        std::fs::read(&rebuilt).expect("rebuilt wasm"),
        std::fs::read(&wasm).expect("wasm"),
        "two builds of the same source and lockfile differ"
    );
    run(Command::new(agent_binary())
        .args(["component", "sign", "--key"])
        .arg(work.path().join("ops.key"))
        .arg(&rebuilt));
    assert_eq!(
        std::fs::read_to_string(rebuilt.with_extension("sig")).expect("sig"),
        std::fs::read_to_string(wasm.with_extension("sig")).expect("sig")
    );
    // A bug in the handler, rebuilt: the signature of the previous build is
    // gone (not refused as "signed for another build"), and the error
    // names the TypeScript line, not the bundle's.
    let index = project.join("src/index.ts");
    let source = std::fs::read_to_string(&index).expect("src/index.ts");
    let broken = source.replace(
        "  const { videos, bytes } = countFiles(entries);",
        "  const { videos, bytes } = countFiles(undefined as unknown as typeof entries);",
    );
    assert_ne!(broken, source, "the template's countFiles line moved");
    std::fs::write(&index, broken).expect("src/index.ts");
    npm(&["run", "build"]);
    assert!(!wasm.with_extension("sig").exists(), "stale signature left");
    let (code, _, stderr) = run_component(&wasm, &conf, r#"{"folder":"Match"}"#);
    assert_eq!(code, 1, "{stderr}");
    let line = source
        .lines()
        .position(|l| l.contains("countFiles(entries)"))
        .expect("countFiles line")
        + 1;
    assert!(
        stderr.contains("cannot read property 'filter' of undefined")
            && stderr.contains("at countFiles (src/count.ts:6)")
            && stderr.contains(&format!("(src/index.ts:{line})")),
        "{stderr}"
    );
}

/// The project's sources as a checkout has them: no node_modules, no dist.
fn copy_source(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("folder");
    for entry in std::fs::read_dir(from).expect("project") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if name == "node_modules" || name == "dist" {
            continue;
        }
        let kind = entry.file_type().expect("type");
        if kind.is_dir() {
            copy_source(&entry.path(), &to.join(&name));
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(&name)).expect("copy");
        }
    }
}
