//! A guest's stdout / stderr, captured in memory: the first and the last
//! bytes (half the capacity each) are kept, everything in between is
//! accepted and dropped.
//!
//! Why not wasmtime-wasi's `MemoryOutputPipe`: once full it closes the
//! stream, and the guest's next `println!` panics ("failed printing to
//! stdout"), turning a chatty component into a failed command. The start of
//! the output is what carries a panic message or the first error, so the
//! start is what is kept.

use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Captured output; clones share the buffer.
#[derive(Debug, Clone)]
pub struct CapturedOutput {
    capacity: usize,
    kept: Arc<Mutex<Captured>>,
}

#[derive(Debug, Default)]
struct Captured {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    dropped: u64,
}

impl CapturedOutput {
    /// Keeps at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        CapturedOutput {
            capacity,
            kept: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Captured> {
        match self.kept.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn keep(&self, bytes: &[u8]) {
        let half = self.capacity / 2;
        let mut kept = self.lock();
        let room = half.saturating_sub(kept.head.len());
        let (head, rest) = bytes.split_at(room.min(bytes.len()));
        kept.head.extend_from_slice(head);
        let tail_cap = self.capacity - half;
        // Only the last `tail_cap` bytes of `rest` can survive.
        let rest = &rest[rest.len().saturating_sub(tail_cap)..];
        let skipped = bytes.len() - head.len() - rest.len();
        kept.dropped = kept.dropped.saturating_add(skipped as u64);
        kept.tail.extend(rest);
        let over = kept.tail.len().saturating_sub(tail_cap);
        kept.tail.drain(..over).for_each(drop);
        kept.dropped = kept.dropped.saturating_add(over as u64);
    }

    /// What was kept, as text: the start, a marker when bytes were dropped,
    /// the end.
    pub fn text(&self) -> String {
        let kept = self.lock();
        let mut bytes = kept.head.clone();
        if kept.dropped > 0 {
            bytes.extend_from_slice(format!("\n[… {} bytes dropped …]\n", kept.dropped).as_bytes());
        }
        bytes.extend(kept.tail.iter());
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Bytes written past the capacity (and dropped).
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }
}

impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.keep(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always room: what does not fit is dropped, never refused.
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.keep(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_and_end_are_kept_and_the_middle_dropped_without_refusing() -> StreamResult<()> {
        let captured = CapturedOutput::new(16);
        let mut stream = captured.clone();
        for _ in 0..1000 {
            assert!(stream.check_write()? > 0);
            stream.write(Bytes::from_static(b"0123456789"))?;
        }
        stream.write(Bytes::from_static(b"panicked"))?;
        assert_eq!(
            captured.text(),
            "01234567\n[… 9992 bytes dropped …]\npanicked"
        );
        assert_eq!(captured.dropped(), 10_008 - 16);
        Ok(())
    }

    #[test]
    fn short_output_is_kept_whole() -> StreamResult<()> {
        let captured = CapturedOutput::new(16);
        let mut stream = captured.clone();
        stream.write(Bytes::from_static(b"hello "))?;
        stream.write(Bytes::from_static(b"world"))?;
        assert_eq!(captured.text(), "hello world");
        assert_eq!(captured.dropped(), 0);
        Ok(())
    }
}
