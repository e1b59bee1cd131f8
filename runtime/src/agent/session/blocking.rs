//! Disk work the session loop must do inline (journal writes: a command is
//! recorded before it runs), kept off the async worker.
//!
//! Why: the agent runs one async worker thread; the link's task (pongs) and
//! the session share it. An fsync on a slow SD card takes tens of
//! milliseconds; done on the worker, it delays every pong and heartbeat.
//! `block_in_place` hands the worker to another thread for the duration, so
//! the link keeps answering while the session waits for the disk.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `work` (blocking file I/O) without holding up other tasks. On a
/// current-thread runtime (where that is impossible) it simply runs.
pub fn off_worker<T>(work: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}
