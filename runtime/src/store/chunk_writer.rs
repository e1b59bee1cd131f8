//! Appends a stream of chunks to a file on a thread of its own, with the
//! disk's write-back kept going on another, so a download's network reads,
//! hashing and disk writes overlap instead of taking turns.
//!
//! Why: written inline, each chunk waits for the page cache, and the
//! kernel starts writing a large file back only once gigabytes are dirty
//! (10 % of memory here); the final fsync then writes the whole file after
//! the transfer. Here the receiving side only queues chunks (bounded in
//! bytes: the queue is the only memory it adds), the writer thread appends
//! them, and every [`FLUSH_EVERY`] bytes a flusher thread asks the disk to
//! catch up, so the closing fsync finds little left to write.

use bytes::Bytes;
use std::io::Write;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

/// Bytes queued for the writer at most; a chunk larger than this is queued
/// alone.
pub const QUEUE_BYTES: u64 = 4 << 20;
/// Write-back is started after every this many bytes written.
pub const FLUSH_EVERY: u64 = 8 << 20;

/// Why the writer stopped.
#[derive(Debug, thiserror::Error)]
pub enum ChunkWriteError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the writer thread could not be started: {0}")]
    Start(std::io::Error),
    #[error("the writer thread stopped unexpectedly")]
    Lost,
}

impl ChunkWriteError {
    /// The underlying error kind (disk full, …), for the caller's message.
    pub fn kind(&self) -> std::io::ErrorKind {
        match self {
            ChunkWriteError::Io(e) | ChunkWriteError::Start(e) => e.kind(),
            ChunkWriteError::Lost => std::io::ErrorKind::Other,
        }
    }
}

/// Bytes in the queue, shared by both sides.
#[derive(Debug, Default)]
struct Budget {
    queued: Mutex<u64>,
    freed: Condvar,
}

impl Budget {
    fn queued(&self) -> MutexGuard<'_, u64> {
        self.queued.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The receiving side's handle. Dropped or finished, it waits for the
/// threads: nothing writes to the file once it is gone.
#[derive(Debug)]
pub struct ChunkWriter {
    chunks: Option<mpsc::Sender<Bytes>>,
    budget: Arc<Budget>,
    writer: Option<JoinHandle<Result<(), ChunkWriteError>>>,
}

impl ChunkWriter {
    /// Starts appending to `file` (opened for appending).
    pub fn start(file: cap_std::fs::File) -> Result<Self, ChunkWriteError> {
        let (chunks, queue) = mpsc::channel::<Bytes>();
        let budget = Arc::new(Budget::default());
        let freed = budget.clone();
        let writer = std::thread::Builder::new()
            .name("download-writer".to_owned())
            .spawn(move || write_loop(file, &queue, &freed))
            .map_err(ChunkWriteError::Start)?;
        Ok(ChunkWriter {
            chunks: Some(chunks),
            budget,
            writer: Some(writer),
        })
    }

    /// Queues `chunk`, waiting while the queue holds [`QUEUE_BYTES`].
    /// `false`: the writer stopped (its error comes from [`Self::finish`]).
    pub fn push(&mut self, chunk: Bytes) -> bool {
        let len = chunk.len() as u64;
        {
            let mut queued = self.budget.queued();
            while *queued > 0 && *queued + len > QUEUE_BYTES {
                if self.writer.as_ref().is_none_or(JoinHandle::is_finished) {
                    return false;
                }
                queued = self
                    .budget
                    .freed
                    .wait_timeout(queued, std::time::Duration::from_millis(100))
                    .map(|(guard, _)| guard)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            *queued += len;
        }
        self.chunks
            .as_ref()
            .is_some_and(|chunks| chunks.send(chunk).is_ok())
    }

    /// Bytes queued and not yet written: a free-space check must count
    /// them as already taken.
    pub fn queued(&self) -> u64 {
        *self.budget.queued()
    }

    /// Waits until every queued chunk is written (not yet fsynced: the
    /// caller's fsync makes it durable, and finds little left to do).
    pub fn finish(mut self) -> Result<(), ChunkWriteError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), ChunkWriteError> {
        self.chunks = None;
        match self.writer.take() {
            Some(writer) => writer.join().unwrap_or(Err(ChunkWriteError::Lost)),
            None => Ok(()),
        }
    }
}

impl Drop for ChunkWriter {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The writer thread: appends chunks in order; the first error stops it
/// (the queue is then dropped unwritten).
fn write_loop(
    mut file: cap_std::fs::File,
    queue: &mpsc::Receiver<Bytes>,
    budget: &Budget,
) -> Result<(), ChunkWriteError> {
    let flusher = Flusher::start(&file);
    let mut since_flush = 0u64;
    let result = (|| {
        for chunk in queue {
            file.write_all(&chunk)?;
            {
                let mut queued = budget.queued();
                *queued = queued.saturating_sub(chunk.len() as u64);
            }
            budget.freed.notify_all();
            since_flush += chunk.len() as u64;
            if since_flush >= FLUSH_EVERY {
                since_flush = 0;
                if let Some(flusher) = &flusher {
                    flusher.request();
                }
            }
        }
        Ok(())
    })();
    // Wakes a receiving side waiting for room that will never come.
    budget.freed.notify_all();
    let flushed = flusher.map_or(Ok(()), Flusher::finish);
    result.and(flushed)
}

/// Runs `fdatasync` on a second handle of the file when asked, so the
/// writer never waits for the disk. An error it sees is returned: the
/// kernel reports a write-back error once per open file, and the caller's
/// own fsync would not see it again.
struct Flusher {
    wanted: mpsc::SyncSender<()>,
    thread: JoinHandle<std::io::Result<()>>,
}

impl Flusher {
    /// `None` when the handle or the thread cannot be had: the caller's
    /// final fsync then does all the writing, as before.
    fn start(file: &cap_std::fs::File) -> Option<Flusher> {
        let handle = file.try_clone().ok()?;
        let (wanted, requests) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("download-flush".to_owned())
            .spawn(move || {
                for () in requests {
                    crate::store::atomic::count_fsync();
                    handle.sync_data()?;
                }
                Ok(())
            })
            .ok()?;
        Some(Flusher { wanted, thread })
    }

    /// Asks for a write-back; one already asked for covers this one too.
    fn request(&self) {
        let _ = self.wanted.try_send(());
    }

    fn finish(self) -> Result<(), ChunkWriteError> {
        drop(self.wanted);
        match self.thread.join() {
            Ok(result) => result.map_err(ChunkWriteError::Io),
            Err(_) => Err(ChunkWriteError::Lost),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_land_in_order_and_whole() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let folder = cap_std::fs::Dir::open_ambient_dir(dir.path(), cap_std::ambient_authority())?;
        let file = folder.open_with(
            "out",
            cap_std::fs::OpenOptions::new().create(true).append(true),
        )?;
        let mut writer = ChunkWriter::start(file)?;
        let mut expected = Vec::new();
        // 20 MiB in uneven chunks, one larger than the whole queue.
        for i in 0..200u32 {
            let len = if i == 7 {
                (QUEUE_BYTES as usize) * 2
            } else {
                81_919
            };
            let chunk: Vec<u8> = (0..len).map(|j| (j as u32 ^ i) as u8).collect();
            expected.extend_from_slice(&chunk);
            assert!(writer.push(Bytes::from(chunk)));
        }
        writer.finish()?;
        assert_eq!(std::fs::read(dir.path().join("out"))?, expected);
        Ok(())
    }
}
