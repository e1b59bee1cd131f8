//! The command's time limit inside long host calls. The epoch deadline only
//! interrupts guest code: a host call hashing a 4 GB video, copying a tree or
//! extracting an archive would run on past it, holding the command's
//! resource lock (videos, software). These loops read through
//! [`DeadlineReader`] or call [`check`], and stop with a `TimedOut` error.

use std::io::{self, Read};
use std::time::Instant;

/// The text of the `TimedOut` error, so callers can tell it from a disk's.
pub const PAST_DEADLINE: &str = "the command's time limit ran out";

/// `Err(TimedOut)` once `deadline` has passed.
pub fn check(deadline: Option<Instant>) -> io::Result<()> {
    match deadline {
        Some(at) if Instant::now() >= at => {
            Err(io::Error::new(io::ErrorKind::TimedOut, PAST_DEADLINE))
        }
        _ => Ok(()),
    }
}

/// Whether an error is the deadline's (anywhere in a wrapped error's text,
/// since tar and gzip readers re-wrap the errors they pass on).
pub fn is_past_deadline(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::TimedOut && e.to_string().contains(PAST_DEADLINE)
}

/// A reader that fails with `TimedOut` once the deadline has passed.
pub struct DeadlineReader<R> {
    inner: R,
    deadline: Option<Instant>,
}

impl<R> DeadlineReader<R> {
    pub fn new(inner: R, deadline: Option<Instant>) -> Self {
        DeadlineReader { inner, deadline }
    }
}

impl<R: Read> Read for DeadlineReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        check(self.deadline)?;
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reads_stop_once_the_deadline_has_passed() {
        let mut open = DeadlineReader::new(
            io::repeat(1),
            Some(Instant::now() + Duration::from_secs(60)),
        );
        let mut buf = [0u8; 4];
        assert_eq!(open.read(&mut buf).ok(), Some(4));
        let mut late = DeadlineReader::new(io::repeat(1), Some(Instant::now()));
        let err = late.read(&mut buf).err();
        assert!(err.as_ref().is_some_and(is_past_deadline), "{err:?}");
        assert!(check(None).is_ok());
    }
}
