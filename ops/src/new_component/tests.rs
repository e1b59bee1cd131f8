use super::*;
use std::collections::BTreeSet;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn listing(dir: &Path, ext: &str) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(ext))
        .collect()
}

#[test]
fn every_sdk_source_and_wit_file_is_vendored() {
    let sdk: BTreeSet<String> = vendored::RUST_SDK
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    assert_eq!(sdk, listing(&repo().join("guest-sdk/src"), ".rs"));
    let wit: BTreeSet<String> = vendored::WIT.iter().map(|(n, _)| (*n).to_owned()).collect();
    assert_eq!(wit, listing(&repo().join("wit"), ".wit"));
    let js: BTreeSet<String> = vendored::JS_SDK
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    let js_dir = repo().join("guest-sdk/js");
    let mut expected: BTreeSet<String> = ["package.json", "index.js", "index.d.ts"]
        .map(str::to_owned)
        .into();
    for (folder, ext) in [
        ("build", ".mjs"),
        ("testing", ".js"),
        ("testing", ".mjs"),
        ("testing", ".d.ts"),
        ("types", ".d.ts"),
        ("types/interfaces", ".d.ts"),
    ] {
        expected.extend(
            listing(&js_dir.join(folder), ext)
                .into_iter()
                .map(|n| format!("{folder}/{n}")),
        );
    }
    assert_eq!(js, expected);
}

#[test]
fn the_vendored_sdk_asks_for_the_workspace_versions() {
    let workspace: toml::Table = std::fs::read_to_string(repo().join("Cargo.toml"))
        .unwrap_or_default()
        .parse()
        .unwrap_or_default();
    let names = Names::new("x").unwrap_or_else(|e| panic!("{e}"));
    let sdk: toml::Table = names
        .fill(include_str!("templates/rust/sdk-Cargo.toml.tmpl"))
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    for dep in ["wit-bindgen", "serde", "serde_json"] {
        let version = |t: &toml::Table, section: &str| {
            t.get(section)
                .and_then(|s| s.get("dependencies").or(Some(s)))
                .and_then(|d| d.get(dep))
                .and_then(|d| d.get("version"))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let ws = workspace.get("workspace").and_then(|w| w.as_table());
        let ws_version = ws.and_then(|w| version(w, "dependencies"));
        assert!(
            ws_version.is_some(),
            "{dep} not in [workspace.dependencies]"
        );
        assert_eq!(version(&sdk, "dependencies"), ws_version, "{dep}");
    }
}

#[test]
fn names_become_manifest_command_and_library_names() {
    let n = Names::new("video-stats").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n.component, "video-stats");
    assert_eq!(n.snake, "video_stats");
    for bad in [
        "",
        "Video",
        "1abc",
        "a_b",
        "a-",
        "a--b",
        "a/b",
        "..",
        "a".repeat(65).as_str(),
    ] {
        let err = Names::new(bad).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("must be 1-64 characters")),
            "{bad}: {err:?}"
        );
    }
}

#[test]
fn writes_a_complete_rust_project_and_never_overwrites() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let created = create("video-stats", tmp.path(), Lang::Rust).unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path().join("video-stats");
    assert_eq!(created.dir, dir);
    for f in [
        "Cargo.toml",
        "video-stats.toml",
        "src/lib.rs",
        "neopro-guest-sdk/Cargo.toml",
        "neopro-guest-sdk/src/lib.rs",
        "wit/world.wit",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
    assert!(!cargo.contains(".workspace"), "no workspace inheritance");
    assert!(!cargo.contains("{{"), "placeholder left: {cargo}");
    let manifest = std::fs::read_to_string(dir.join("video-stats.toml")).unwrap_or_default();
    let parsed = neopro_runtime::manifest::Manifest::parse("video-stats.toml", &manifest)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parsed.commands, vec!["video_stats".to_owned()]);

    std::fs::write(dir.join("src/lib.rs"), "mine").unwrap_or_else(|e| panic!("{e}"));
    let again = create("video-stats", tmp.path(), Lang::Rust).map_err(|e| e.to_string());
    assert_eq!(
        again.err(),
        Some(format!(
            "{} already exists: choose another name or --dir (nothing was overwritten)",
            dir.display()
        ))
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("src/lib.rs")).unwrap_or_default(),
        "mine"
    );
    let leftovers: Vec<String> = listing(tmp.path(), "").into_iter().collect();
    assert_eq!(leftovers, vec!["video-stats".to_owned()]);
}

#[test]
fn writes_a_typescript_project_with_the_sdk_and_wit() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    create("video-stats", tmp.path(), Lang::Ts).unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path().join("video-stats");
    for f in [
        "package.json",
        ".npmrc",
        "tsconfig.json",
        "video-stats.toml",
        "src/index.ts",
        "test/count.test.ts",
        "test/index.test.ts",
        "neopro-guest-sdk/package.json",
        "neopro-guest-sdk/build/cli.mjs",
        "neopro-guest-sdk/build/bundle-config.mjs",
        "neopro-guest-sdk/testing/index.js",
        "neopro-guest-sdk/testing/register.mjs",
        "neopro-guest-sdk/types/interfaces/neopro-agent-files.d.ts",
        "wit/world.wit",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let package: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("package.json")).unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(package["name"], "video-stats");
    assert_eq!(package["scripts"]["build"], "neopro-component build");
    // Every version pinned exactly, as in the shipped lockfile.
    for (dep, version) in package["devDependencies"].as_object().into_iter().flatten() {
        let v = version.as_str().unwrap_or_default();
        assert!(
            v.starts_with("file:") || v.chars().all(|c| c.is_ascii_digit() || c == '.'),
            "{dep} {v}"
        );
    }
}

#[test]
fn a_typescript_project_ships_a_lockfile_matching_its_package_and_sdk() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    create("video-stats", tmp.path(), Lang::Ts).unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path().join("video-stats");
    let json = |path: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let lock = json(&dir.join("package-lock.json"));
    let package = json(&dir.join("package.json"));
    let sdk = json(&repo().join("guest-sdk/js/package.json"));
    assert_eq!(lock["name"], "video-stats");
    assert_eq!(lock["packages"][""]["name"], "video-stats");
    // What `npm ci` compares: the root's dependencies, and the vendored SDK's.
    assert_eq!(
        lock["packages"][""]["devDependencies"],
        package["devDependencies"]
    );
    let locked_sdk = &lock["packages"]["node_modules/@neopro/guest-sdk"];
    assert_eq!(locked_sdk["resolved"], "file:neopro-guest-sdk");
    assert_eq!(locked_sdk["dependencies"], sdk["dependencies"]);
    assert_eq!(locked_sdk["version"], sdk["version"]);
}
