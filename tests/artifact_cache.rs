//! Components are compiled once, then loaded from the precompiled cache.
// Test fixtures failing to set up should stop the test loudly.
#![allow(clippy::expect_used)]

use neopro_e2e::{Site, component};
use neopro_runtime::sandbox::{CacheStats, LoadOrigin};
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
