//! The session's journal work (admissions, outcomes, delivery marks), done
//! in arrival order on one thread of its own.
//!
//! Why: an admission fsyncs, and on a worn SD card an fsync takes tens to
//! hundreds of milliseconds. Done in the session loop, even handed over with
//! `block_in_place`, it holds up the loop itself: the `ping_check` the
//! server sends meanwhile is answered late, heartbeats slip, and a burst of
//! commands can hold it for seconds. Here the loop only submits the work and
//! goes on; each job sends its answer back as an event the loop handles
//! like any other. One thread keeps the order the loop saw (a command
//! admitted before its re-delivered copy is looked up, an outcome recorded
//! before it is marked delivered), as when the loop did it inline.

use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

/// Runs jobs one at a time, in submission order, off the async worker.
#[derive(Debug)]
pub struct JournalQueue {
    jobs: Option<mpsc::Sender<Job>>,
}

impl JournalQueue {
    /// Starts the thread. Should that fail (the system is out of threads),
    /// jobs run inline in the caller, as before there was a queue.
    pub fn start() -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let started = std::thread::Builder::new()
            .name("journal".to_owned())
            .spawn(move || {
                for job in queue {
                    job();
                }
            });
        match started {
            Ok(_) => JournalQueue { jobs: Some(jobs) },
            Err(e) => {
                tracing::warn!(
                    "cannot start the journal thread ({e}): journal writes hold up the session"
                );
                JournalQueue { jobs: None }
            }
        }
    }

    /// Queues `job`; it runs after every job submitted before it. The thread
    /// stops once the queue is dropped and the jobs queued are done.
    pub fn submit(&self, job: impl FnOnce() + Send + 'static) {
        let job: Job = Box::new(job);
        let job = match &self.jobs {
            Some(jobs) => match jobs.send(job) {
                Ok(()) => return,
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        job();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_in_order_off_the_calling_thread() {
        let queue = JournalQueue::start();
        let (done, results) = mpsc::channel();
        let caller = std::thread::current().id();
        for i in 0..50 {
            let done = done.clone();
            queue.submit(move || {
                let _ = done.send((i, std::thread::current().id() != caller));
            });
        }
        let seen: Vec<(i32, bool)> = (0..50)
            .map(|_| results.recv().unwrap_or((-1, false)))
            .collect();
        assert_eq!(seen, (0..50).map(|i| (i, true)).collect::<Vec<_>>());
    }
}
