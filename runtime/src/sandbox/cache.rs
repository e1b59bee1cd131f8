//! Precompiled components on disk, keyed by the wasm's sha256, the machine
//! the code is for (`x86_64`, `aarch64`, `pulley32`) and the engine's
//! compatibility hash: compiling takes ~100 ms+ on a Pi (seconds in
//! a debug build), loading a precompiled artifact a few milliseconds.
//!
//! Each artifact has a `.sha256` file beside it, written after it. An
//! artifact is machine code the engine maps and runs without re-validating
//! it, so one whose bytes no longer match (a bad SD-card sector, a torn
//! write) is discarded and rebuilt from the wasm instead of being run.
//!
//! Hashing a 46 MB artifact took 0.2 s of a 0.3 s one-shot run, so a full
//! check is remembered: `<artifact>.verified` holds the size, the
//! modification time (ns) and the hash the file had when it last matched.
//! A load whose artifact still has that size and time, and whose `.sha256`
//! still names that hash, skips re-hashing; anything else re-hashes. (A bit
//! flipped in place without a write is then only caught by wasmtime's header
//! checks or at the next change of the file; the `.verified` stamp is lost
//! with the cache folder, never trusted beyond it.)

use super::SandboxError;
use crate::store::hash::sha256_hex;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::Engine;
use wasmtime::component::Component;

/// How a component got into memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadOrigin {
    /// Compiled now (and written to the cache if possible).
    Compiled,
    /// Loaded from a precompiled artifact.
    Cache,
    /// Loaded from an artifact the package shipped (nothing compiled, nothing
    /// written).
    Packaged,
}

/// Counters, for tests and `components`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    pub hits: u64,
    pub compiled: u64,
}

/// Feeds `Hash` output into sha256, giving a hash stable across runs (unlike
/// `DefaultHasher`, whose algorithm is not guaranteed) and across machines:
/// `usize` values (every length prefix of a string or list) are fed as 8
/// bytes, so a 64-bit build machine names a Pulley artifact exactly as the
/// 32-bit box that loads it (with native widths the armhf agent computed
/// `f0c48ed870c8efc8` where x86_64 computed `e5112579a8713065` for the same
/// engine configuration, and never found the packaged artifacts).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    fn write_isize(&mut self, i: isize) {
        self.write_i64(i as i64);
    }
}

/// The on-disk artifact cache.
#[derive(Debug)]
pub struct ArtifactCache {
    dir: Option<PathBuf>,
    /// `<target>-<engine hash>`: an x86_64 or aarch64 artifact (a state
    /// folder copied from another box) is never even opened on armv7, nor
    /// the reverse; wasmtime's header check is the second line.
    key: String,
    /// The agent binary, to compile in a child process (see
    /// `compile_child`); `None` compiles in this process.
    compiler: Option<PathBuf>,
    /// Artifacts the package shipped (read-only, owned by root) and their
    /// `<target>-<engine hash>` key; looked at after this cache, before
    /// compiling.
    packaged: Option<(PathBuf, String)>,
    hits: AtomicU64,
    compiled: AtomicU64,
}

impl ArtifactCache {
    /// A cache in `dir`; with `None`, or if the folder cannot be created, every
    /// load compiles (the agent still works, only slower).
    pub fn new(dir: Option<&Path>, engine: &Engine, target: &str) -> Self {
        let engine_hash = engine_hash(engine);
        // Artifacts are native code: a folder anyone but the agent can
        // write is not used at all (the components are then compiled at each
        // start, slower but safe), and the operator is told how to fix it.
        let dir = dir.and_then(|d| match crate::store::private_dir::ensure_private(d) {
            Ok(()) => Some(d.to_owned()),
            Err(e @ crate::store::private_dir::PrivateDirError::Writable { .. }) => {
                tracing::error!(
                    "not loading precompiled components from the component cache: {e}"
                );
                None
            }
            Err(e) => {
                tracing::warn!(
                    "component cache {} unavailable ({e}); components will be compiled at each start",
                    d.display()
                );
                None
            }
        });
        if let Some(dir) = &dir {
            super::cache_sweep::sweep(dir, target, &engine_hash);
        }
        ArtifactCache {
            dir,
            key: format!("{target}-{engine_hash}"),
            compiler: None,
            packaged: None,
            hits: AtomicU64::new(0),
            compiled: AtomicU64::new(0),
        }
    }

    /// Compile cache misses by running `program precompile-component`.
    pub fn set_compiler(&mut self, program: PathBuf) {
        self.compiler = Some(program);
    }

    /// Also load the artifacts a package shipped in `dir`, made for
    /// `target` ([`packaged_artifact`]). A folder others than root or the
    /// agent can write is not used: its files are native code.
    pub fn use_packaged(&mut self, dir: &Path, target: super::CodeTarget) {
        if !dir.is_dir() {
            return;
        }
        if let Err(e) = crate::store::private_dir::check_private(dir) {
            tracing::error!("not loading the packaged precompiled components: {e}");
            return;
        }
        match super::engine::new_engine(target) {
            Ok(engine) => {
                let key = format!("{}-{}", target.label(&engine), engine_hash(&engine));
                self.packaged = Some((dir.to_owned(), key));
            }
            Err(e) => tracing::warn!("packaged precompiled components not used: {e}"),
        }
    }

    /// Artifact path for a wasm hash.
    pub fn artifact_path(&self, wasm_sha256: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(artifact_name(wasm_sha256, &self.key)))
    }

    /// The packaged artifact for a wasm hash, if the package shipped one.
    fn load_packaged(&self, engine: &Engine, wasm_sha256: &str) -> Option<Component> {
        let (dir, key) = self.packaged.as_ref()?;
        let path = dir.join(artifact_name(wasm_sha256, key));
        if !path.is_file() {
            return None;
        }
        match only_agent_wrote(&path)
            .and_then(|()| verify_against_checksum(&path, false))
            .and_then(|()| deserialize(engine, &path))
        {
            Ok(component) => Some(component),
            Err(e) => {
                // Read-only: left in place, the component is compiled into
                // the agent's own cache instead.
                tracing::warn!(
                    "not using the packaged artifact {} ({e}); compiling the component",
                    path.display()
                );
                None
            }
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            compiled: self.compiled.load(Ordering::Relaxed),
        }
    }

    /// Loads the precompiled artifact for `wasm` (whose sha256 the caller
    /// computed once), or compiles and stores it.
    pub fn load(
        &self,
        engine: &Engine,
        name: &str,
        wasm: &[u8],
        wasm_sha256: &str,
    ) -> Result<(Component, LoadOrigin), SandboxError> {
        let path = self.artifact_path(wasm_sha256);
        if let Some(path) = path.as_deref().filter(|p| p.is_file()) {
            match only_agent_wrote(path)
                .and_then(|()| verify_artifact(path))
                .and_then(|()| deserialize(engine, path))
            {
                Ok(component) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok((component, LoadOrigin::Cache));
                }
                Err(e) => {
                    tracing::warn!(
                        "discarding unusable cached artifact {}: {e}",
                        path.display()
                    );
                    let _ = std::fs::remove_file(path);
                    let _ = std::fs::remove_file(sidecar(path));
                    let _ = std::fs::remove_file(stamp(path));
                }
            }
        }
        if let Some(component) = self.load_packaged(engine, wasm_sha256) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok((component, LoadOrigin::Packaged));
        }
        if let (Some(program), Some(path)) = (&self.compiler, path.as_deref()) {
            match super::compile_child::compile_in_child(program, wasm, path)
                .and_then(|()| verify_artifact(path).map_err(|e| e.to_string()))
                .and_then(|()| deserialize(engine, path).map_err(|e| e.to_string()))
            {
                Ok(component) => {
                    self.compiled.fetch_add(1, Ordering::Relaxed);
                    return Ok((component, LoadOrigin::Compiled));
                }
                Err(e) => tracing::warn!(
                    "compiling {name} in a child process failed ({e}); compiling it in the agent"
                ),
            }
        }
        let component =
            Component::new(engine, wasm).map_err(|e| SandboxError::InvalidComponent {
                name: name.to_owned(),
                detail: format!("{e:?}"),
            })?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        if let Some(path) = path
            && let Err(e) = store(&component, &path)
        {
            tracing::warn!("cannot cache compiled {name} at {}: {e}", path.display());
        }
        Ok((component, LoadOrigin::Compiled))
    }
}

/// The first 8 bytes of the engine's compatibility hash, in hex: artifacts
/// load only into an engine with the same one.
fn engine_hash(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}

fn artifact_name(wasm_sha256: &str, key: &str) -> String {
    format!("{wasm_sha256}-{key}.cwasm")
}

/// Compiles `wasm` for `target` the way a package ships it: the file name
/// the agent of that target looks for, the artifact, and its checksum (the
/// `<name>.sha256` beside it).
pub fn packaged_artifact(
    target: super::CodeTarget,
    wasm: &[u8],
) -> Result<(String, Vec<u8>, String), SandboxError> {
    let engine = super::engine::new_engine(target)?;
    let bytes = engine
        .precompile_component(wasm)
        .map_err(|e| SandboxError::InvalidComponent {
            name: "the file".to_owned(),
            detail: format!("{e:#}"),
        })?;
    let key = format!("{}-{}", target.label(&engine), engine_hash(&engine));
    let sha256 = sha256_hex(&bytes);
    Ok((artifact_name(&sha256_hex(wasm), &key), bytes, sha256))
}

/// The checksum file of an artifact.
fn sidecar(artifact: &Path) -> PathBuf {
    let mut name = artifact.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// The "last verified" stamp of an artifact.
fn stamp(artifact: &Path) -> PathBuf {
    let mut name = artifact.as_os_str().to_owned();
    name.push(".verified");
    PathBuf::from(name)
}

/// `<size> <mtime ns> <sha256>` of a file as it is now, given its hash.
fn stamp_text(path: &Path, sha256: &str) -> std::io::Result<String> {
    let meta = std::fs::metadata(path)?;
    let mtime = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(format!("{} {mtime} {sha256}", meta.len()))
}

/// How old an artifact's modification time must be before a stamp trusts
/// it: file times have a coarse clock (a few ms), so a write right after
/// the one that made the file could keep its time; a write after the stamp
/// always moves it.
const STAMP_MIN_AGE: std::time::Duration = std::time::Duration::from_secs(2);

/// Remembers that `path` matched `sha256` as it is now (best effort: no
/// stamp only means the next load hashes again).
fn write_stamp(path: &Path, sha256: &str) {
    let settled = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age >= STAMP_MIN_AGE);
    if !settled {
        return;
    }
    let (Some(dir), Some(name)) = (path.parent(), stamp(path).file_name().map(|n| n.to_owned()))
    else {
        return;
    };
    let written = stamp_text(path, sha256).and_then(|text| {
        let dir = crate::store::atomic::open_state_dir(dir)?;
        crate::store::atomic::write(&dir, Path::new(&name), text.as_bytes())
    });
    if let Err(e) = written {
        tracing::debug!("cannot stamp {} as verified: {e}", path.display());
    }
}

/// sha256 of a file, streamed (an artifact is megabytes; no need to hold it).
fn file_sha256(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// An artifact (or its checksum) another user could have written is never
/// mapped: whoever writes both could make the agent run their code.
fn only_agent_wrote(path: &Path) -> wasmtime::Result<()> {
    for file in [path.to_owned(), sidecar(path)] {
        let meta = std::fs::symlink_metadata(&file)?;
        if !crate::store::private_dir::file_is_private(&meta) {
            return Err(wasmtime::format_err!(
                "{} can be written by other users than the agent",
                file.display()
            ));
        }
    }
    Ok(())
}

fn verify_artifact(path: &Path) -> wasmtime::Result<()> {
    verify_against_checksum(path, true)
}

/// Checks `path` against its `.sha256`; `stamp` remembers a full check in
/// `<artifact>.verified` (not beside a package's files: dpkg owns that
/// folder, and a stamp left there would outlive the package).
fn verify_against_checksum(path: &Path, stamp_it: bool) -> wasmtime::Result<()> {
    let expected = std::fs::read_to_string(sidecar(path))
        .map_err(|e| wasmtime::format_err!("its checksum file is unreadable ({e})"))?;
    let expected = expected.trim();
    let stamped = std::fs::read_to_string(stamp(path)).unwrap_or_default();
    if stamp_it && stamp_text(path, expected).is_ok_and(|now| now == stamped.trim()) {
        return Ok(());
    }
    let actual = file_sha256(path)?;
    if expected == actual {
        if stamp_it {
            write_stamp(path, &actual);
        }
        Ok(())
    } else {
        Err(wasmtime::format_err!(
            "its bytes no longer match their checksum"
        ))
    }
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the artifact was produced by `Component::serialize` of this
    // agent into its own state folder (owned by the agent's user, written
    // atomically); its name carries the wasm's sha256 and the engine's
    // compatibility hash, its bytes were just checked against the checksum
    // written with it, and wasmtime checks the header before use.
    unsafe { Component::deserialize_file(engine, path) }
}

fn store(component: &Component, path: &Path) -> Result<(), String> {
    let bytes = component.serialize().map_err(|e| e.to_string())?;
    super::artifact_file::store_bytes(&bytes, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::engine::{CodeTarget, new_engine};

    /// The smallest component: the preamble of an empty one.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    /// The reverse of the e2e test `an_artifact_for_another_machine_is_…`:
    /// an armhf agent (Pulley, 32-bit) finding this machine's native
    /// artifact under its own name throws it away instead of mapping it.
    #[test]
    fn a_pulley32_cache_discards_a_native_artifact() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let native = new_engine(CodeTarget::Host)?
            .precompile_component(EMPTY_COMPONENT)
            .map_err(|e| format!("{e:#}"))?;
        let pulley = new_engine(CodeTarget::Pulley32)?;
        // Below the private temp folder: /tmp itself is writable by all,
        // and a cache there is (rightly) never used.
        let cache_dir = dir.path().join("cache");
        let cache = ArtifactCache::new(Some(&cache_dir), &pulley, "pulley32");
        let path = cache
            .artifact_path(&sha256_hex(EMPTY_COMPONENT))
            .ok_or("no cache path")?;
        assert!(path.to_string_lossy().contains("-pulley32-"), "{path:?}");
        std::fs::write(&path, &native)?;
        std::fs::write(sidecar(&path), sha256_hex(&native))?;

        // Loaded, it would have been a hit. Here a Pulley32 engine cannot
        // compile either (this test host is not a 32-bit box), so the load
        // fails, but only after the foreign artifact was discarded.
        let loaded = cache.load(
            &pulley,
            "empty",
            EMPTY_COMPONENT,
            &sha256_hex(EMPTY_COMPONENT),
        );
        assert!(loaded.is_err());
        assert_eq!(cache.stats().hits, 0);
        assert!(!path.exists(), "the native artifact was removed");
        assert!(!sidecar(&path).exists());
        Ok(())
    }

    /// What a 32-bit host feeds for a length is what a 64-bit one feeds.
    #[test]
    fn the_engine_hash_does_not_depend_on_the_hosts_pointer_width() {
        let digest = |feed: &dyn Fn(&mut Sha256Hasher)| {
            let mut h = Sha256Hasher(Sha256::new());
            feed(&mut h);
            hex::encode(h.0.finalize())
        };
        assert_eq!(digest(&|h| h.write_usize(42)), digest(&|h| h.write_u64(42)));
        // A list's length prefix, as in the engine's flags and tunables.
        assert_eq!(
            digest(&|h| [1u8, 2].as_slice().hash(h)),
            digest(&|h| {
                h.write_u64(2);
                h.write(&[1, 2]);
            })
        );
        assert_eq!(digest(&|h| h.write_isize(-1)), digest(&|h| h.write_i64(-1)));
    }

    #[test]
    fn artifacts_of_different_targets_have_different_names() -> Result<(), SandboxError> {
        let dir = tempfile::tempdir().map_err(|e| SandboxError::Engine(e.to_string()))?;
        let host = new_engine(CodeTarget::Host)?;
        let pulley = new_engine(CodeTarget::Pulley32)?;
        let cache_dir = dir.path().join("cache");
        let a = ArtifactCache::new(Some(&cache_dir), &host, &CodeTarget::Host.label(&host));
        let b = ArtifactCache::new(Some(&cache_dir), &pulley, "pulley32");
        assert_ne!(a.artifact_path("00"), b.artifact_path("00"));
        Ok(())
    }
}
