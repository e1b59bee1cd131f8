//! The wasmtime engine, configured for a 1 GB Raspberry Pi, and the epoch
//! ticker that enforces per-command deadlines.

use super::SandboxError;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use wasmtime::{Config, Engine};

/// One epoch tick. Deadlines are counted in ticks, so this is the precision
/// of a command's time limit.
pub const TICK: Duration = Duration::from_millis(10);

/// Virtual address space reserved per linear memory. wasmtime's default
/// (4 GiB + 2 GiB guard per memory) makes `mmap` fail on 39-bit-VA aarch64
/// kernels (wasmtime issues 8607, 7637); 128 MiB covers our memory caps'
/// common case and larger memories simply move when they grow.
pub const MEMORY_RESERVATION: u64 = 128 << 20;
/// Guard region after each memory; small, since bounds are checked anyway
/// once memories are not 4 GiB-reserved.
pub const MEMORY_GUARD: u64 = 64 << 10;
/// Extra room reserved when a memory grows, to avoid a copy per growth.
pub const MEMORY_GROWTH_RESERVATION: u64 = 16 << 20;

/// Builds the engine shared by every component.
pub fn new_engine() -> Result<Engine, SandboxError> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.memory_reservation(MEMORY_RESERVATION);
    config.memory_guard_size(MEMORY_GUARD);
    config.memory_reservation_for_growth(MEMORY_GROWTH_RESERVATION);
    config.max_wasm_stack(1 << 20);
    Engine::new(&config).map_err(|e| SandboxError::Engine(e.to_string()))
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
