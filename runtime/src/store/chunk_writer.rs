//! Appends a stream of chunks to a file on a thread of its own, so a
//! download's network reads and hashing (the receiving side) and its disk
//! writes overlap instead of taking turns, and the disk is kept busy from
//! the first megabytes on rather than at the closing fsync.
//!
//! How (issue 29.6, measured in docs/card-and-deploy.md):
//! - The receiving side hands chunks over in batches of [`BATCH_BYTES`]:
//!   one wake-up of the writer per megabyte, not per network read (tens
//!   of thousands for a large video). The queue is bounded in bytes
//!   ([`QUEUE_BYTES`]): it is the only memory the writer adds.
//! - Every [`WRITE_BACK_EVERY`] bytes the writer asks the kernel to start
//!   writing the range just appended (`POSIX_FADV_DONTNEED`: write-back
//!   starts at once, nobody waits for it, no journal commit) and drops the
//!   range before it, written back by then, from the page cache. On a
//!   1 GB Pi a video no longer pushes the web app's and the agent's pages
//!   out of memory, and the card writes while bytes still arrive. An
//!   fdatasync every few megabytes did the same but committed the ext4
//!   journal (and flushed the disk's cache) each time, holding the writes
//!   up behind every commit.
//! - One fsync at the end, by the caller: it finds little left to write.
//!   A write-back error is kept by the kernel for that fsync (the advice
//!   never consumes it).

use bytes::Bytes;
use std::io::Write;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

/// Bytes queued for the writer at most (the batch being filled included);
/// a chunk larger than this is queued alone.
pub const QUEUE_BYTES: u64 = 4 << 20;
/// The receiving side hands chunks over once it holds this many bytes.
pub const BATCH_BYTES: u64 = 1 << 20;
/// Write-back is started after every this many bytes written.
pub const WRITE_BACK_EVERY: u64 = 8 << 20;

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

/// Bytes handed to the writer and not yet written, shared by both sides.
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

/// The receiving side's handle. Dropped or finished, it hands its last
/// batch over and waits for the writer thread: what was received is on
/// the file (a download cut by its deadline resumes from there), and
/// nothing writes to the file once the handle is gone.
#[derive(Debug)]
pub struct ChunkWriter {
    chunks: Option<mpsc::Sender<Vec<Bytes>>>,
    budget: Arc<Budget>,
    writer: Option<JoinHandle<Result<(), ChunkWriteError>>>,
    /// Chunks not handed over yet, and their bytes.
    batch: Vec<Bytes>,
    batch_bytes: u64,
}

impl ChunkWriter {
    /// Starts appending to `file` (opened for appending).
    pub fn start(file: cap_std::fs::File) -> Result<Self, ChunkWriteError> {
        let (chunks, queue) = mpsc::channel::<Vec<Bytes>>();
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
            batch: Vec::new(),
            batch_bytes: 0,
        })
    }

    /// Queues `chunk`; once a batch is full, hands it over, waiting while
    /// the writer holds [`QUEUE_BYTES`]. `false`: the writer stopped (its
    /// error comes from [`Self::finish`]).
    pub fn push(&mut self, chunk: Bytes) -> bool {
        self.batch_bytes += chunk.len() as u64;
        self.batch.push(chunk);
        if self.batch_bytes < BATCH_BYTES {
            return true;
        }
        self.hand_over()
    }

    /// Hands the batch to the writer thread.
    fn hand_over(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let len = self.batch_bytes;
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
        self.batch_bytes = 0;
        let batch = std::mem::take(&mut self.batch);
        self.chunks
            .as_ref()
            .is_some_and(|chunks| chunks.send(batch).is_ok())
    }

    /// Bytes received and not yet written: a free-space check must count
    /// them as already taken.
    pub fn queued(&self) -> u64 {
        *self.budget.queued() + self.batch_bytes
    }

    /// Writes the last batch and waits until every chunk is written (not
    /// yet fsynced: the caller's fsync makes it durable, and finds little
    /// left to do).
    pub fn finish(mut self) -> Result<(), ChunkWriteError> {
        let handed = self.hand_over();
        let stopped = self.stop();
        match (handed, stopped) {
            (_, Err(e)) => Err(e),
            (false, Ok(())) => Err(ChunkWriteError::Lost),
            (true, Ok(())) => Ok(()),
        }
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
        let _ = self.hand_over();
        let _ = self.stop();
    }
}

/// The writer thread: appends chunks in order; the first error stops it
/// (the queue is then dropped unwritten).
fn write_loop(
    mut file: cap_std::fs::File,
    queue: &mpsc::Receiver<Vec<Bytes>>,
    budget: &Budget,
) -> Result<(), ChunkWriteError> {
    // Appending: the file may hold a resumed download's first part.
    let mut written = file.metadata().map_or(0, |m| m.len());
    let mut write_back = WriteBack::from(written);
    let result = (|| {
        for batch in queue {
            let mut len = 0u64;
            for chunk in &batch {
                file.write_all(chunk)?;
                len += chunk.len() as u64;
            }
            drop(batch);
            {
                let mut queued = budget.queued();
                *queued = queued.saturating_sub(len);
            }
            budget.freed.notify_all();
            written += len;
            write_back.advance(&file, written);
        }
        Ok(())
    })();
    // Wakes a receiving side waiting for room that will never come.
    budget.freed.notify_all();
    result
}

/// Starts the write-back of each [`WRITE_BACK_EVERY`] bytes appended and
/// drops the window before it from the page cache.
struct WriteBack {
    /// Start of the window being filled.
    window: u64,
    /// Start of the window whose write-back was started last.
    started: Option<u64>,
}

impl WriteBack {
    fn from(offset: u64) -> WriteBack {
        WriteBack {
            window: offset,
            started: None,
        }
    }

    fn advance(&mut self, file: &cap_std::fs::File, written: u64) {
        use rustix::fs::{Advice, fadvise};
        if written < self.window + WRITE_BACK_EVERY {
            return;
        }
        // Advice only: a kernel or filesystem that ignores it changes
        // nothing but the timing; errors are for the final fsync.
        if let Some(previous) = self.started {
            // Written back by now (or nearly): the clean pages go.
            let _ = fadvise(
                file,
                previous,
                std::num::NonZeroU64::new(self.window - previous),
                Advice::DontNeed,
            );
        }
        let _ = fadvise(
            file,
            self.window,
            std::num::NonZeroU64::new(written - self.window),
            Advice::DontNeed,
        );
        self.started = Some(self.window);
        self.window = written;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer appending to `out` in a new temporary folder.
    fn writer_on_a_new_file() -> Result<(tempfile::TempDir, ChunkWriter), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let folder = cap_std::fs::Dir::open_ambient_dir(dir.path(), cap_std::ambient_authority())?;
        let file = folder.open_with(
            "out",
            cap_std::fs::OpenOptions::new().create(true).append(true),
        )?;
        Ok((dir, ChunkWriter::start(file)?))
    }

    #[test]
    fn chunks_land_in_order_and_whole() -> Result<(), Box<dyn std::error::Error>> {
        let (dir, mut writer) = writer_on_a_new_file()?;
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

    #[test]
    fn a_dropped_writer_leaves_every_received_byte_on_the_file()
    -> Result<(), Box<dyn std::error::Error>> {
        // A download cut by its deadline is dropped mid-batch: what arrived
        // must be there for the next attempt to resume from.
        let (dir, mut writer) = writer_on_a_new_file()?;
        let chunk: Vec<u8> = (0..8_192u32).map(|j| j as u8).collect();
        for _ in 0..3 {
            assert!(writer.push(Bytes::from(chunk.clone())));
        }
        assert!(writer.queued() < BATCH_BYTES, "still in the batch");
        drop(writer);
        assert_eq!(std::fs::read(dir.path().join("out"))?.len(), 3 * 8_192);
        Ok(())
    }
}
