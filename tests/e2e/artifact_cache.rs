//! Components are compiled once, then loaded from the precompiled cache.
// Test fixtures failing to set up should stop the test loudly.
#![allow(clippy::expect_used)]

use neopro_e2e::{Site, component};
use neopro_runtime::sandbox::{CacheStats, CodeTarget, LoadOrigin, precompile_component};
use neopro_runtime::store::hash::sha256_hex;

fn cached_artifacts(site: &Site) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(site.config.cache_dir())
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n: &String| n.ends_with(".cwasm"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn second_load_comes_from_the_cache() {
    let site = Site::new();
    let first = site.sandbox();
    let loaded = site.load(&first, "get-config");
    assert_eq!(loaded.origin(), LoadOrigin::Compiled);
    assert_eq!(
        first.cache_stats(),
        CacheStats {
            hits: 0,
            compiled: 1
        }
    );

    let wasm = std::fs::read(component("get-config").wasm_path).expect("wasm");
    let artifacts = cached_artifacts(&site);
    assert_eq!(artifacts.len(), 1);
    assert!(artifacts[0].starts_with(&format!("{}-", sha256_hex(&wasm))));
    assert!(
        site.config
            .cache_dir()
            .join(format!("{}.sha256", artifacts[0]))
            .is_file(),
        "checksum written beside the artifact"
    );

    // A new agent process (new sandbox) over the same state folder.
    let second = site.sandbox();
    let again = site.load(&second, "get-config");
    assert_eq!(again.origin(), LoadOrigin::Cache);
    assert_eq!(
        second.cache_stats(),
        CacheStats {
            hits: 1,
            compiled: 0
        }
    );
}

#[test]
fn a_damaged_artifact_is_recompiled() {
    let site = Site::new();
    let _ = site.load(&site.sandbox(), "get-config");
    let artifacts = cached_artifacts(&site);
    let path = site.config.cache_dir().join(&artifacts[0]);
    std::fs::write(&path, b"not an artifact").expect("damage");

    let sandbox = site.sandbox();
    let loaded = site.load(&sandbox, "get-config");
    assert_eq!(loaded.origin(), LoadOrigin::Compiled);
    assert_eq!(
        sandbox.cache_stats(),
        CacheStats {
            hits: 0,
            compiled: 1
        }
    );
    assert!(
        std::fs::read(&path).is_ok_and(|b| b.len() > 1000),
        "artifact rewritten"
    );
}

#[test]
fn a_flipped_bit_inside_an_artifact_is_caught_by_its_checksum() {
    let site = Site::new();
    let _ = site.load(&site.sandbox(), "get-config");
    let path = site.config.cache_dir().join(&cached_artifacts(&site)[0]);
    let mut bytes = std::fs::read(&path).expect("artifact");
    // Past the headers: wasmtime's own checks would not notice this one.
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&path, &bytes).expect("damage");

    let sandbox = site.sandbox();
    assert_eq!(
        site.load(&sandbox, "get-config").origin(),
        LoadOrigin::Compiled
    );
    let rebuilt = std::fs::read(&path).expect("artifact rewritten");
    assert_ne!(rebuilt, bytes);
    assert_eq!(
        std::fs::read_to_string(
            site.config
                .cache_dir()
                .join(format!("{}.sha256", cached_artifacts(&site)[0]))
        )
        .expect("checksum"),
        sha256_hex(&rebuilt)
    );
    // And the next start trusts it again.
    assert_eq!(
        site.load(&site.sandbox(), "get-config").origin(),
        LoadOrigin::Cache
    );
}

/// The web app's user (the unit's group, `UMask=0002`) must not be able to
/// plant native code: a cache folder others can write is not used at all,
/// and the folder the agent creates is its own.
#[test]
fn a_cache_folder_others_can_write_is_never_loaded_from() {
    use std::os::unix::fs::PermissionsExt;
    let site = Site::new();
    let _ = site.load(&site.sandbox(), "get-config");
    let cache = site.config.cache_dir();
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .expect("mode")
    };
    assert_eq!(mode(&cache), 0o700, "the cache is the agent's alone");
    let artifact = cache.join(&cached_artifacts(&site)[0]);
    assert_eq!(mode(&artifact), 0o600);

    // An older agent (or an operator) left it group-writable: whatever is in
    // it may have been planted, checksum sidecar included.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o770)).expect("chmod");
    let sandbox = site.sandbox();
    assert_eq!(
        site.load(&sandbox, "get-config").origin(),
        LoadOrigin::Compiled
    );
    assert_eq!(
        sandbox.cache_stats(),
        CacheStats {
            hits: 0,
            compiled: 1
        }
    );

    // A private folder holding a group-writable artifact: not mapped either.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::set_permissions(&artifact, std::fs::Permissions::from_mode(0o664)).expect("chmod");
    assert_eq!(
        site.load(&site.sandbox(), "get-config").origin(),
        LoadOrigin::Compiled
    );
    assert_eq!(mode(&artifact), 0o600, "rebuilt by the agent, for itself");
}

/// A state folder copied from a box of another architecture (an SD card
/// image of a 64-bit Pi put in a 32-bit one, or the reverse): an artifact for
/// another machine, with a valid checksum, sits exactly where this agent
/// looks. It must be recompiled, never mapped and run.
#[test]
fn an_artifact_for_another_machine_is_recompiled_not_loaded() {
    let site = Site::new();
    let sandbox = site.sandbox();
    let _ = site.load(&sandbox, "get-config");
    let name = cached_artifacts(&site)[0].clone();
    let path = site.config.cache_dir().join(&name);
    let native = std::fs::read(&path).expect("artifact");

    let wasm = std::fs::read(component("get-config").wasm_path).expect("wasm");
    let foreign = precompile_component(CodeTarget::Pulley32, &wasm).expect("precompile");
    assert_ne!(foreign, native);
    std::fs::write(&path, &foreign).expect("plant");
    std::fs::write(
        site.config.cache_dir().join(format!("{name}.sha256")),
        sha256_hex(&foreign),
    )
    .expect("plant checksum");

    let fresh = site.sandbox();
    let loaded = site.load(&fresh, "get-config");
    assert_eq!(loaded.origin(), LoadOrigin::Compiled);
    assert_eq!(
        fresh.cache_stats(),
        CacheStats {
            hits: 0,
            compiled: 1
        }
    );
    let rebuilt = std::fs::read(&path).expect("artifact rewritten");
    assert_ne!(rebuilt, foreign, "the foreign artifact was replaced");
    // The rebuilt one runs.
    let result = neopro_e2e::run_loaded(&fresh, &loaded, serde_json::json!({}));
    assert!(result.is_ok(), "{result:?}");
}

/// Sets a file's modification time.
fn set_mtime(path: &std::path::Path, time: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(time))
        .expect("set mtime");
}

#[test]
fn a_verified_artifact_is_not_hashed_again_until_it_changes() {
    let site = Site::new();
    let _ = site.load(&site.sandbox(), "get-config");
    let name = cached_artifacts(&site)[0].clone();
    let path = site.config.cache_dir().join(&name);
    let stamp = site.config.cache_dir().join(format!("{name}.verified"));
    assert!(!stamp.exists(), "a fresh artifact is not stamped");
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    set_mtime(&path, an_hour_ago);
    assert_eq!(
        site.load(&site.sandbox(), "get-config").origin(),
        LoadOrigin::Cache
    );
    let stamped = std::fs::read_to_string(&stamp).expect("stamped after a full check");
    let sum = std::fs::read_to_string(site.config.cache_dir().join(format!("{name}.sha256")))
        .expect("checksum");
    assert!(stamped.ends_with(&format!(" {sum}")), "{stamped}");

    // The stamp is what is trusted: bytes changed behind an unchanged time
    // and size are not re-hashed (wasmtime's header checks still run)...
    let mut bytes = std::fs::read(&path).expect("artifact");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&path, &bytes).expect("damage");
    set_mtime(&path, an_hour_ago);
    assert_eq!(
        site.load(&site.sandbox(), "get-config").origin(),
        LoadOrigin::Cache
    );
    // ... while any write that moves the time is caught and rebuilt.
    std::fs::write(&path, &bytes).expect("damage again");
    assert_eq!(
        site.load(&site.sandbox(), "get-config").origin(),
        LoadOrigin::Compiled
    );
}

/// Issue 16: a box upgraded from an agent that named artifacts
/// `<wasm sha256>-<engine hash>.cwasm` (before the target key), or from an
/// older engine of this machine, has artifacts nothing loads any more; they
/// are deleted when the cache opens, and the current one is kept and used.
#[test]
fn artifacts_of_earlier_agents_are_swept_at_start_and_current_ones_kept() {
    let site = Site::new();
    let sandbox = site.sandbox();
    let _ = site.load(&sandbox, "get-config");
    drop(sandbox);
    let current = cached_artifacts(&site)[0].clone();
    let dir = site.config.cache_dir();
    let wasm = std::fs::read(component("get-config").wasm_path).expect("wasm");
    let sha = sha256_hex(&wasm);
    let target = current
        .strip_prefix(&format!("{sha}-"))
        .and_then(|k| k.strip_suffix(".cwasm"))
        .and_then(|k| k.rsplit_once('-'))
        .map(|(label, _)| label.to_owned())
        .expect("current name is <sha>-<target>-<hash>.cwasm");
    let old_name = format!("{sha}-0011223344556677.cwasm");
    let older_engine = format!("{sha}-{target}-8899aabbccddeeff.cwasm");
    let other_machine = format!("{sha}-someothercpu-8899aabbccddeeff.cwasm");
    let mut planted = Vec::new();
    for name in [&old_name, &older_engine, &other_machine] {
        for suffix in ["", ".sha256", ".verified"] {
            let path = dir.join(format!("{name}{suffix}"));
            std::fs::write(&path, b"old artifact").expect("plant");
            planted.push(path);
        }
    }
    let unrelated = dir.join("notes.txt");
    std::fs::write(&unrelated, "kept").expect("plant");

    let fresh = site.sandbox();
    for suffix in ["", ".sha256", ".verified"] {
        for name in [&old_name, &older_engine] {
            let path = dir.join(format!("{name}{suffix}"));
            assert!(!path.exists(), "{} was not swept", path.display());
        }
        let path = dir.join(format!("{other_machine}{suffix}"));
        assert!(path.exists(), "{} is another machine's", path.display());
    }
    assert!(unrelated.exists());
    assert!(dir.join(&current).exists() && dir.join(format!("{current}.sha256")).exists());
    let loaded = site.load(&fresh, "get-config");
    assert_eq!(loaded.origin(), LoadOrigin::Cache);
}

/// Writes what `cargo xtask package` ships for `name` (made for this
/// machine here; an armhf package's are Pulley bytecode) into `dir`.
fn ship(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let wasm = std::fs::read(component(name).wasm_path).expect("wasm");
    let (file, bytes, sha256) =
        neopro_runtime::sandbox::packaged_artifact(CodeTarget::Host, &wasm).expect("precompile");
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(dir.join(&file), bytes).expect("artifact");
    std::fs::write(dir.join(format!("{file}.sha256")), sha256).expect("checksum");
    dir.join(file)
}

/// Issue 16: the artifacts a package ships are loaded as they are — no
/// compile, nothing written to the agent's cache on the first start; one
/// that does not match its checksum is left alone and the component
/// compiled instead.
#[test]
fn packaged_artifacts_load_without_compiling_and_a_damaged_one_is_compiled() {
    let site = Site::new();
    let packaged = site.path("components/precompiled");
    let artifact = ship(&packaged, "get-config");
    // As installed by dpkg: old enough that the agent's own cache would
    // stamp it as verified.
    set_mtime(
        &artifact,
        std::time::SystemTime::now() - std::time::Duration::from_secs(3600),
    );
    let mut sandbox = site.sandbox();
    sandbox.use_packaged_artifacts_for(&packaged, CodeTarget::Host);
    let loaded = site.load(&sandbox, "get-config");
    assert_eq!(loaded.origin(), LoadOrigin::Packaged);
    assert_eq!(
        sandbox.cache_stats(),
        CacheStats {
            hits: 1,
            compiled: 0
        }
    );
    assert!(cached_artifacts(&site).is_empty(), "nothing compiled");
    let mut shipped: Vec<String> = std::fs::read_dir(&packaged)
        .expect("list")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    shipped.sort();
    let name = artifact.file_name().and_then(|n| n.to_str()).unwrap_or("");
    assert_eq!(
        shipped,
        [name.to_owned(), format!("{name}.sha256")],
        "nothing written beside the package's files"
    );
    let result = neopro_e2e::run_loaded(&sandbox, &loaded, serde_json::json!({}));
    assert!(result.is_ok(), "{result:?}");

    // A damaged shipped artifact: compiled into the agent's cache, the
    // package's file left as it is (dpkg owns it).
    let mut bytes = std::fs::read(&artifact).expect("artifact");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&artifact, &bytes).expect("damage");
    let mut fresh = site.sandbox();
    fresh.use_packaged_artifacts_for(&packaged, CodeTarget::Host);
    assert_eq!(
        site.load(&fresh, "get-config").origin(),
        LoadOrigin::Compiled
    );
    assert_eq!(std::fs::read(&artifact).expect("still there"), bytes);
    assert_eq!(cached_artifacts(&site).len(), 1);
}

/// Shipped artifacts are native code: a folder others can write is never
/// loaded from.
#[test]
fn packaged_artifacts_in_a_folder_others_can_write_are_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let site = Site::new();
    let packaged = site.path("components/precompiled");
    ship(&packaged, "get-config");
    std::fs::set_permissions(&packaged, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let mut sandbox = site.sandbox();
    sandbox.use_packaged_artifacts_for(&packaged, CodeTarget::Host);
    assert_eq!(
        site.load(&sandbox, "get-config").origin(),
        LoadOrigin::Compiled
    );
}
