//! Runs command components: one engine, a precompiled-artifact cache, one
//! `InstancePre` per component, a fresh `Store` per command with the
//! component's memory cap and deadline. Whatever a guest does (trap, panic,
//! endless loop, runaway allocation) becomes an error result; the agent
//! keeps running.

mod artifact_file;
mod cache;
mod cache_sweep;
pub mod compile_child;
mod engine;
mod error;
mod output;
pub mod registry;

pub use cache::{CacheStats, LoadOrigin, packaged_artifact};
pub use engine::{
    CodeTarget, MEMORY_32, MEMORY_64, MemorySettings, TICK, engine_config, memory_settings,
    precompile_component,
};
pub use error::SandboxError;

use crate::host::progress::ProgressState;
use crate::host::{
    CallContext, CommandPre, HostServices, HostState, MemoryCap, ProgressSink, WireCommand,
    WitError,
};
use crate::manifest::Manifest;
use crate::store::hash::sha256_hex;
use cache::ArtifactCache;
use output::CapturedOutput;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::WasiCtxBuilder;

/// The environment variable holding the running agent's version in every
/// component (`neopro_guest_sdk::system::agent_version`).
pub const AGENT_VERSION_ENV: &str = "NEOPRO_AGENT_VERSION";

/// Largest component accepted on the compiler child's stdin.
pub const MAX_COMPONENT_BYTES: u64 = 64 << 20;

/// A command's failure, as sent to the server: the WIT error variant.
pub type CommandError = WitError;

/// How much of a guest's stderr / stdout is kept per command (the start;
/// the rest is dropped, never refused).
const STDERR_CAPACITY: usize = 64 << 10;
const STDOUT_CAPACITY: usize = 16 << 10;

/// One command to run.
#[derive(Debug, Clone)]
pub struct CommandRequest {
    pub id: String,
    pub command_type: String,
    /// The `data` object as JSON text.
    pub data: String,
}

/// A component ready to run commands.
pub struct LoadedComponent {
    manifest: Arc<Manifest>,
    pre: CommandPre,
    origin: LoadOrigin,
}

impl LoadedComponent {
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Whether this load compiled the component or used the cache.
    pub fn origin(&self) -> LoadOrigin {
        self.origin
    }
}

/// A component's interface, as `inspect` shows it.
#[derive(Debug)]
pub struct Description {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// Whether it can run here: its imports are all provided and it exports
    /// the `command` world's handler.
    pub links: Result<(), String>,
}

/// The component host.
pub struct Sandbox {
    engine: Engine,
    ticker: Arc<engine::EpochTicker>,
    linker: Linker<HostState>,
    cache: ArtifactCache,
    services: Arc<HostServices>,
}

impl Sandbox {
    /// Starts the engine; `cache_dir` keeps precompiled artifacts across runs.
    pub fn new(
        services: Arc<HostServices>,
        cache_dir: Option<&Path>,
    ) -> Result<Self, SandboxError> {
        let target = CodeTarget::Host;
        let engine = engine::new_engine(target)?;
        if engine.is_pulley() {
            // armv7: Cranelift has no backend, guests run interpreted (host
            // calls stay native). Expected, but worth a line in the log.
            tracing::info!(
                "no native compiler for {}: components run on wasmtime's Pulley interpreter",
                std::env::consts::ARCH
            );
        }
        let ticker = engine::EpochTicker::start(&engine)?;
        let mut linker = Linker::new(&engine);
        // WASI only for what Rust's std needs (clocks, random, stdio going to
        // in-memory pipes): no preopened folders, no environment, no sockets.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| SandboxError::Engine(format!("linking WASI: {e}")))?;
        crate::host::add_to_linker(&mut linker)
            .map_err(|e| SandboxError::Engine(format!("linking host interfaces: {e}")))?;
        let cache = ArtifactCache::new(cache_dir, &engine, &target.label(&engine));
        Ok(Sandbox {
            engine,
            ticker,
            linker,
            cache,
            services,
        })
    }

    /// What the engine runs: `x86_64` / `aarch64` native code, or `pulley32`
    /// bytecode on an armhf box.
    pub fn code_target(&self) -> String {
        CodeTarget::Host.label(&self.engine)
    }

    /// Compiles components in a child process running `program` (the agent
    /// binary), so the agent never holds the compiler's memory; see
    /// [`compile_child`].
    pub fn compile_in_child(&mut self, program: PathBuf) {
        self.cache.set_compiler(program);
    }

    /// Loads the built-in components' artifacts a package shipped in
    /// `dir` (the components folder's `precompiled/`), on the machines whose
    /// package ships them ([`CodeTarget::packaged_for_this_machine`]).
    pub fn use_packaged_artifacts(&mut self, dir: &Path) {
        if let Some(target) = CodeTarget::packaged_for_this_machine() {
            self.cache.use_packaged(dir, target);
        }
    }

    /// [`Sandbox::use_packaged_artifacts`] for artifacts made for `target`
    /// (tests: this machine's own code standing in for a package's).
    pub fn use_packaged_artifacts_for(&mut self, dir: &Path, target: CodeTarget) {
        self.cache.use_packaged(dir, target);
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    pub fn services(&self) -> &Arc<HostServices> {
        &self.services
    }

    /// Loads a component file with its manifest.
    pub fn load_file(
        &self,
        wasm: &Path,
        manifest: Manifest,
    ) -> Result<LoadedComponent, SandboxError> {
        let bytes = std::fs::read(wasm).map_err(|source| SandboxError::ReadComponent {
            path: wasm.to_owned(),
            source,
        })?;
        self.load(&bytes, manifest)
    }

    /// Compiles (or loads from cache) and links a component.
    pub fn load(&self, wasm: &[u8], manifest: Manifest) -> Result<LoadedComponent, SandboxError> {
        self.load_hashed(wasm, &sha256_hex(wasm), manifest)
    }

    /// [`Sandbox::load`] for bytes whose sha256 the caller already computed
    /// (a pushed component checked against its install record): hashed
    /// once per load, not once per check.
    pub fn load_hashed(
        &self,
        wasm: &[u8],
        wasm_sha256: &str,
        manifest: Manifest,
    ) -> Result<LoadedComponent, SandboxError> {
        let (component, origin) =
            self.cache
                .load(&self.engine, &manifest.name, wasm, wasm_sha256)?;
        let link_error = |e: wasmtime::Error| SandboxError::Link {
            name: manifest.name.clone(),
            detail: format!("{e:#}"),
        };
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(link_error)?;
        let pre = CommandPre::new(instance_pre).map_err(link_error)?;
        Ok(LoadedComponent {
            manifest: Arc::new(manifest),
            pre,
            origin,
        })
    }

    /// What a component imports and exports, and whether it links against
    /// this agent, for `neopro-runtime component inspect`. Compiles it (no
    /// cache).
    pub fn describe(&self, wasm: &[u8]) -> Result<Description, SandboxError> {
        let component = wasmtime::component::Component::new(&self.engine, wasm).map_err(|e| {
            SandboxError::InvalidComponent {
                name: "the file".to_owned(),
                detail: format!("{e:#}"),
            }
        })?;
        let ty = component.component_type();
        let imports = ty
            .imports(&self.engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        let exports = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        let links = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| format!("{e:#}"))
            .and_then(|pre| {
                CommandPre::new(pre)
                    .map(|_| ())
                    .map_err(|e| format!("{e:#}"))
            });
        Ok(Description {
            imports,
            exports,
            links,
        })
    }

    /// Runs one command in a fresh store. Blocking: call it from a blocking
    /// thread in async code.
    pub fn execute(
        &self,
        component: &LoadedComponent,
        request: &CommandRequest,
        progress: Option<Arc<dyn ProgressSink>>,
    ) -> Result<String, CommandError> {
        let manifest = &component.manifest;
        let stderr = CapturedOutput::new(STDERR_CAPACITY);
        let stdout = CapturedOutput::new(STDOUT_CAPACITY);
        let wasi = WasiCtxBuilder::new()
            // The one environment variable a component sees (wit/README.md,
            // "The environment"): the running agent's version, a slot's
            // after an agent update. Not a WIT function: that would be a
            // minor version of the package for one string.
            .env(AGENT_VERSION_ENV, crate::selfupdate::own_version())
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap::new(manifest.memory_bytes()),
            call: CallContext {
                manifest: manifest.clone(),
                command_id: request.id.clone(),
                deadline: std::time::Instant::now()
                    + Duration::from_secs(u64::from(manifest.limits.timeout_secs)),
                services: self.services.clone(),
                progress: ProgressState::new(progress),
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.memory);
        let limit = Duration::from_secs(u64::from(manifest.limits.timeout_secs));
        store.set_epoch_deadline(engine::deadline_ticks(limit));
        store.epoch_deadline_trap();

        let wire = WireCommand {
            id: request.id.clone(),
            command_type: request.command_type.clone(),
            data: request.data.clone(),
        };
        let _ticking = self.ticker.running();
        let outcome = component.pre.execute(&mut store, &wire);

        let guest_stdout = stdout.text();
        if !guest_stdout.trim().is_empty() {
            tracing::debug!(
                component = %manifest.name,
                "guest stdout: {}{}",
                guest_stdout.trim(),
                match stdout.dropped() {
                    0 => String::new(),
                    n => format!(" ({n} more bytes dropped)"),
                }
            );
        }
        match outcome {
            Ok(Ok(json)) => match serde_json::from_str::<serde_json::Value>(&json) {
                Ok(_) => Ok(json),
                Err(e) => Err(WitError::Failed(format!(
                    "component '{}' returned a result that is not JSON: {e}",
                    manifest.name
                ))),
            },
            Ok(Err(error)) => Err(guest_error(manifest, error, store.data().memory.exceeded())),
            Err(trap) => {
                let stderr = stderr.text();
                Err(classify_trap(
                    manifest,
                    &trap,
                    store.data().memory.exceeded(),
                    &stderr,
                ))
            }
        }
    }
}

/// The message when a component went over its memory limit.
fn out_of_memory(manifest: &Manifest) -> String {
    format!(
        "component '{}' ran out of memory: it tried to use more than its limit of {} MiB",
        manifest.name, manifest.limits.memory_mib
    )
}

/// An error the guest returned itself. A guest whose memory growth was
/// refused and that answers `failed` (a TypeScript component: QuickJS
/// throws "out of memory", the SDK returns it) ran out of memory as surely
/// as one that trapped: `too-large` naming the limit, its message kept.
fn guest_error(manifest: &Manifest, error: WitError, memory_exceeded: bool) -> WitError {
    match error {
        WitError::Failed(message) if memory_exceeded => {
            WitError::TooLarge(format!("{} ({message})", out_of_memory(manifest)))
        }
        other => other,
    }
}

/// Turns a trap into the error the operator reads.
fn classify_trap(
    manifest: &Manifest,
    trap: &wasmtime::Error,
    memory_exceeded: bool,
    stderr: &str,
) -> WitError {
    let name = &manifest.name;
    if trap.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return WitError::Timeout(format!(
            "component '{name}' did not finish within its time limit of {} s",
            manifest.limits.timeout_secs
        ));
    }
    if memory_exceeded {
        return WitError::TooLarge(out_of_memory(manifest));
    }
    if let Some(panic) = panic_message(stderr) {
        return WitError::Failed(format!("component '{name}' panicked: {panic}"));
    }
    let tail: String = {
        let t = stderr.trim();
        let start = t.len().saturating_sub(1024);
        let start = (start..t.len())
            .find(|i| t.is_char_boundary(*i))
            .unwrap_or(t.len());
        t[start..].to_owned()
    };
    if tail.is_empty() {
        WitError::Failed(format!("component '{name}' crashed: {trap:#}"))
    } else {
        WitError::Failed(format!(
            "component '{name}' crashed: {trap:#}; its last output: {tail}"
        ))
    }
}

/// The message of a Rust panic printed to stderr:
/// `thread '…' panicked at src/lib.rs:12:9:\n<message>\nnote: …`.
fn panic_message(stderr: &str) -> Option<String> {
    let start = stderr.find("panicked at ")?;
    let after = &stderr[start + "panicked at ".len()..];
    let (location, rest) = after.split_once('\n')?;
    let location = location.trim_end_matches(':');
    let message: Vec<&str> = rest
        .lines()
        .take_while(|l| !l.starts_with("note: "))
        .collect();
    let message = message.join("\n");
    let message = message.trim();
    Some(if message.is_empty() {
        format!("(no message) at {location}")
    } else {
        format!("{message} (at {location})")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_extracted_from_stderr() {
        let stderr = "\nthread '<unnamed>' panicked at tests/guests/panic/src/lib.rs:12:9:\nthe video index is corrupt\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("the video index is corrupt (at tests/guests/panic/src/lib.rs:12:9)")
        );
        assert_eq!(panic_message("nothing to see"), None);
    }

    /// A core module defining two memories of 10 MiB each (160 pages),
    /// hand-encoded: magic, version, memory section.
    const TWO_MEMORIES: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // header
        0x05, 0x07, 0x02, // memory section: 7 bytes, 2 memories
        0x00, 0xa0, 0x01, // min 160 pages, no max
        0x00, 0xa0, 0x01,
    ];

    #[test]
    fn two_memories_share_one_cap() -> Result<(), wasmtime::Error> {
        let engine = engine::new_engine(engine::CodeTarget::Host)
            .map_err(|e| wasmtime::Error::msg(e.to_string()))?;
        let module = wasmtime::Module::new(&engine, TWO_MEMORIES)?;
        // 24 MiB: both fit.
        let mut store = Store::new(&engine, MemoryCap::new(24 << 20));
        store.limiter(|cap| cap);
        assert!(wasmtime::Instance::new(&mut store, &module, &[]).is_ok());
        assert_eq!(store.data().used(), 20 << 20);
        // 16 MiB: each would fit alone, together they do not.
        let mut store = Store::new(&engine, MemoryCap::new(16 << 20));
        store.limiter(|cap| cap);
        assert!(wasmtime::Instance::new(&mut store, &module, &[]).is_err());
        assert!(store.data().exceeded());
        Ok(())
    }

    #[test]
    fn a_guest_failure_after_a_refused_growth_is_too_large() -> Result<(), String> {
        let manifest = Manifest::parse(
            "ts.toml",
            "name = \"ts\"\nversion = \"1\"\ncommands = [\"ts\"]\n[limits]\nmemory-mib = 16\n",
        )
        .map_err(|e| e.to_string())?;
        let failed = || WitError::Failed("out of memory".to_owned());
        let seen = |e: WitError| (e.kind(), e.message().to_owned());
        assert_eq!(
            seen(guest_error(&manifest, failed(), true)),
            (
                "too-large",
                "component 'ts' ran out of memory: it tried to use more than its limit of 16 MiB (out of memory)"
                    .to_owned()
            )
        );
        // Within its memory, or another kind: the guest's own error.
        assert_eq!(
            seen(guest_error(&manifest, failed(), false)),
            ("failed", "out of memory".to_owned())
        );
        let not_found = WitError::NotFound("no videos".to_owned());
        assert_eq!(
            seen(guest_error(&manifest, not_found, true)),
            ("not-found", "no videos".to_owned())
        );
        Ok(())
    }

    #[test]
    fn deadlines_round_up() {
        assert_eq!(engine::deadline_ticks(Duration::from_millis(1000)), 101);
        assert_eq!(engine::deadline_ticks(Duration::from_millis(1005)), 102);
    }
}
