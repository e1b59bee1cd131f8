//! What a component may hold in memory: its linear memories together (not
//! each) stay under the manifest's `memory-mib`, and every host-side buffer
//! the guest can size is bounded by what is left of that budget.
//!
//! Why a total: wasmtime's limiter is asked per memory, and a component may
//! define several (a core module each, or multi-memory), so a per-memory cap
//! would let a component with 8 memories use 8× its limit. Why the host
//! buffers too: a `files.read` of a 2 GB video would otherwise be allocated
//! in the agent before the guest's cap is ever consulted.

use super::WitError;

/// Most linear memories one component may define. The cap below is on
/// their total, so this only bounds bookkeeping and address space.
pub const MAX_MEMORIES: usize = 8;

/// Caps a component's linear memories (their sum) and remembers that the cap
/// was hit, so the resulting trap can be reported as "memory limit" rather
/// than as an opaque `unreachable`.
#[derive(Debug)]
pub struct MemoryCap {
    limit: usize,
    used: usize,
    exceeded: bool,
}

impl MemoryCap {
    /// A cap of `limit` bytes over all of a component's memories.
    pub fn new(limit: usize) -> Self {
        MemoryCap {
            limit,
            used: 0,
            exceeded: false,
        }
    }

    /// Whether a growth was refused.
    pub fn exceeded(&self) -> bool {
        self.exceeded
    }

    /// Bytes of linear memory the component's memories hold now.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Bytes the component may still grow by: the most a host call can hand
    /// back to it (a reply must be copied into its memory).
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used) as u64
    }

    /// The cap in MiB, for messages.
    fn limit_mib(&self) -> usize {
        self.limit >> 20
    }

    /// `Ok` when a reply of `bytes` fits in what the component has left,
    /// else the `too-large` error naming `what`.
    pub fn check_reply(&self, what: &str, bytes: u64) -> Result<(), WitError> {
        if bytes <= self.remaining() {
            Ok(())
        } else {
            Err(self.too_large(what, bytes))
        }
    }

    /// The error for a reply of `bytes` that does not fit.
    pub fn too_large(&self, what: &str, bytes: u64) -> WitError {
        WitError::TooLarge(format!(
            "{what} is {bytes} bytes, more than the {} bytes left of this component's memory limit of {} MiB",
            self.remaining(),
            self.limit_mib()
        ))
    }
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A new memory is announced as a growth from 0 to its initial size.
        let growth = desired.saturating_sub(current);
        let total = self.used.saturating_add(growth);
        if total > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn instances(&self) -> usize {
        32
    }

    fn tables(&self) -> usize {
        32
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn the_cap_is_on_the_total_of_all_memories() -> wasmtime::Result<()> {
        let mut cap = MemoryCap::new(16 << 20);
        // Two memories of 10 MiB: the second does not fit.
        assert!(cap.memory_growing(0, 10 << 20, None)?);
        assert!(!cap.memory_growing(0, 10 << 20, None)?);
        assert!(cap.exceeded());
        // The first may still grow into what is left.
        assert!(cap.memory_growing(10 << 20, 16 << 20, None)?);
        assert_eq!(cap.used(), 16 << 20);
        assert_eq!(cap.remaining(), 0);
        Ok(())
    }

    #[test]
    fn replies_are_bounded_by_the_remaining_budget() -> wasmtime::Result<()> {
        let mut cap = MemoryCap::new(16 << 20);
        assert!(cap.memory_growing(0, 4 << 20, None)?);
        assert!(cap.check_reply("x", 12 << 20).is_ok());
        let refused = cap.check_reply("videos/a.mp4", u64::MAX);
        assert!(
            matches!(&refused, Err(WitError::TooLarge(m)) if m == &format!(
                "videos/a.mp4 is {} bytes, more than the 12582912 bytes left of this component's memory limit of 16 MiB",
                u64::MAX
            )),
            "{refused:?}"
        );
        Ok(())
    }
}
