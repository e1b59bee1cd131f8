//! The wasmtime engine, configured for a 1 GB Raspberry Pi, and the epoch
//! ticker that enforces per-command deadlines.

use super::SandboxError;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use wasmtime::{Config, Engine};

/// One epoch tick. Deadlines are counted in ticks, so this is the precision
/// of a command's time limit.
pub const TICK: Duration = Duration::from_millis(10);

/// What the engine makes code for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeTarget {
    /// This machine: native code where Cranelift has a backend (x86_64,
    /// aarch64), else wasmtime picks its Pulley interpreter by itself
    /// (armv7: 32-bit Raspberry Pi OS) and compiles to Pulley bytecode.
    Host,
    /// Pulley bytecode for a 32-bit box, made on another machine (a package
    /// build, tests). Loads only into a [`CodeTarget::Host`] engine of an
    /// armhf agent, whose settings [`engine_config`] makes identical.
    Pulley32,
}

impl CodeTarget {
    /// Address width of the machine the code will run on.
    fn pointer_bits(self) -> u32 {
        match self {
            CodeTarget::Host => usize::BITS,
            CodeTarget::Pulley32 => 32,
        }
    }

    /// What a package for the Rust target `triple` ships precompiled, if
    /// anything. armhf only: Pulley bytecode is the same on every machine,
    /// and compiling it on a Pi 3 at the first start is the slowest case.
    /// An arm64 package would need native aarch64 code, which this build's
    /// Cranelift cannot make on another CPU (wasmtime's `all-arch` feature).
    pub fn for_package(triple: &str) -> Option<CodeTarget> {
        triple.starts_with("armv7").then_some(CodeTarget::Pulley32)
    }

    /// What the package of this machine shipped, if anything (the reverse of
    /// [`CodeTarget::for_package`]).
    pub fn packaged_for_this_machine() -> Option<CodeTarget> {
        (std::env::consts::ARCH == "arm").then_some(CodeTarget::Pulley32)
    }

    /// Name in artifact file names, so one cache folder never mixes code
    /// for different machines even before wasmtime's own header check.
    pub fn label(self, engine: &Engine) -> String {
        match self {
            CodeTarget::Pulley32 => "pulley32".to_owned(),
            CodeTarget::Host if engine.is_pulley() => format!("pulley{}", usize::BITS),
            CodeTarget::Host => std::env::consts::ARCH.to_owned(),
        }
    }
}

/// Address space reserved for each linear memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySettings {
    /// Reserved up front per memory; a memory growing past it moves (a
    /// copy), it is not refused: the manifest's `memory-mib` is the cap.
    pub reservation: u64,
    /// Unmapped guard after each memory.
    pub guard: u64,
    /// Extra room reserved when a memory grows, to avoid a copy per growth.
    pub growth: u64,
}

/// 64-bit boxes: wasmtime's default (4 GiB + 2 GiB guard per memory) makes
/// `mmap` fail on 39-bit-VA aarch64 kernels (wasmtime issues 8607, 7637);
/// 128 MiB covers our memory caps' common case. The guard is small since
/// bounds are checked anyway once memories are not 4 GiB-reserved.
pub const MEMORY_64: MemorySettings = MemorySettings {
    reservation: 128 << 20,
    guard: 64 << 10,
    growth: 16 << 20,
};

/// 32-bit boxes (armhf) have 3 GiB of address space for the whole agent (the
/// Pi kernel's 3G/1G split); 128 MiB per memory allowed only ~30 live
/// instances under qemu's 4 GiB. 32 MiB per memory keeps the concurrent
/// commands (default cap 4: 128 MiB) far below it while still fitting a
/// typical command's memory without a move. No guard: Pulley cannot use
/// signal-based traps and checks every access explicitly, so a guard is
/// address space wasted.
pub const MEMORY_32: MemorySettings = MemorySettings {
    reservation: 32 << 20,
    guard: 0,
    growth: 16 << 20,
};

/// The memory settings for a machine with `pointer_bits`-wide addresses.
pub fn memory_settings(pointer_bits: u32) -> MemorySettings {
    if pointer_bits <= 32 {
        MEMORY_32
    } else {
        MEMORY_64
    }
}

/// The engine configuration, in one place: an artifact loads only into an
/// engine configured exactly like the one that made it, so the agent and
/// any precompilation for it must both come from here.
pub fn engine_config(target: CodeTarget) -> Result<Config, SandboxError> {
    let mut config = Config::new();
    if target == CodeTarget::Pulley32 {
        config
            .target("pulley32")
            .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
    }
    let memory = memory_settings(target.pointer_bits());
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.memory_reservation(memory.reservation);
    config.memory_guard_size(memory.guard);
    config.memory_reservation_for_growth(memory.growth);
    config.max_wasm_stack(1 << 20);
    Ok(config)
}

/// Builds an engine for `target`.
pub fn new_engine(target: CodeTarget) -> Result<Engine, SandboxError> {
    Engine::new(&engine_config(target)?).map_err(|e| SandboxError::Engine(format!("{e:#}")))
}

/// Compiles a component for `target` without running it: the bytes are what
/// the agent's cache holds for it (package-time precompilation, tests).
pub fn precompile_component(target: CodeTarget, wasm: &[u8]) -> Result<Vec<u8>, SandboxError> {
    new_engine(target)?
        .precompile_component(wasm)
        .map_err(|e| SandboxError::InvalidComponent {
            name: "the file".to_owned(),
            detail: format!("{e:#}"),
        })
}

/// Advances the engine's epoch every [`TICK`], but only while at least one
/// guest runs: an idle agent then has no timer waking it 100 times a second.
/// The thread holds only a weak reference and ends when the engine is dropped.
#[derive(Debug, Default)]
pub struct EpochTicker {
    running: Mutex<usize>,
    wake: Condvar,
}

/// Marks one guest as running for as long as it lives.
pub struct Running<'a>(&'a EpochTicker);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut n = lock(&self.0.running);
        *n = n.saturating_sub(1);
    }
}

fn lock(m: &Mutex<usize>) -> std::sync::MutexGuard<'_, usize> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl EpochTicker {
    /// Starts the ticker thread for `engine`.
    pub fn start(engine: &Engine) -> Result<Arc<EpochTicker>, SandboxError> {
        let ticker = Arc::new(EpochTicker::default());
        let weak_engine = engine.weak();
        let weak_ticker = Arc::downgrade(&ticker);
        std::thread::Builder::new()
            .name("wasm-epoch".to_owned())
            .spawn(move || {
                while let Some(ticker) = weak_ticker.upgrade() {
                    {
                        let mut running = lock(&ticker.running);
                        while *running == 0 {
                            // Re-check now and then so the thread can notice
                            // that the sandbox is gone.
                            running =
                                match ticker.wake.wait_timeout(running, Duration::from_secs(5)) {
                                    Ok((guard, _)) => guard,
                                    Err(poisoned) => poisoned.into_inner().0,
                                };
                            if Arc::strong_count(&ticker) == 1 {
                                return;
                            }
                        }
                    }
                    drop(ticker);
                    std::thread::sleep(TICK);
                    match weak_engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| SandboxError::Engine(format!("cannot start the epoch ticker: {e}")))?;
        Ok(ticker)
    }

    /// Declares a running guest; ticks flow until the guard is dropped.
    pub fn running(&self) -> Running<'_> {
        *lock(&self.running) += 1;
        self.wake.notify_all();
        Running(self)
    }
}

/// Ticks for a time limit, rounded up, plus one so a deadline is never early.
pub fn deadline_ticks(limit: Duration) -> u64 {
    limit.as_millis().div_ceil(TICK.as_millis()) as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_armhf_package_ships_precompiled_components() {
        assert_eq!(
            CodeTarget::for_package("armv7-unknown-linux-gnueabihf"),
            Some(CodeTarget::Pulley32)
        );
        assert_eq!(CodeTarget::for_package("aarch64-unknown-linux-gnu"), None);
        assert_eq!(CodeTarget::for_package("x86_64-unknown-linux-gnu"), None);
        // This test host is 64-bit: its package ships none.
        assert_eq!(
            CodeTarget::packaged_for_this_machine(),
            cfg!(target_arch = "arm").then_some(CodeTarget::Pulley32)
        );
    }

    #[test]
    fn this_host_compiles_natively_and_pulley32_is_the_interpreter() -> Result<(), SandboxError> {
        let host = new_engine(CodeTarget::Host)?;
        let pulley = new_engine(CodeTarget::Pulley32)?;
        assert!(pulley.is_pulley());
        assert_eq!(CodeTarget::Pulley32.label(&pulley), "pulley32");
        // The test hosts (x86_64, aarch64) have a Cranelift backend; an
        // armv7 build has none and wasmtime picks Pulley by itself.
        let native = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));
        assert_eq!(host.is_pulley(), !native);
        let label = CodeTarget::Host.label(&host);
        if native {
            assert_eq!(label, std::env::consts::ARCH);
        } else {
            assert!(label.starts_with("pulley"), "{label}");
        }
        Ok(())
    }

    #[test]
    fn concurrent_commands_fit_a_32_bit_address_space() {
        // The agent's default concurrency cap and the 3 GiB a 32-bit Pi
        // process gets: the reserved memories of every running command must
        // leave most of it to the agent itself (heap, stacks, code).
        let commands = 4;
        let memory = memory_settings(32);
        let reserved = commands * (memory.reservation + memory.guard + memory.growth);
        assert!(reserved <= 256 << 20, "{reserved} bytes");
        assert_eq!(memory.guard, 0, "Pulley checks bounds explicitly");
        assert_eq!(memory_settings(64), MEMORY_64);
        assert_eq!(memory_settings(usize::BITS).guard == 0, usize::BITS == 32);
    }
}
