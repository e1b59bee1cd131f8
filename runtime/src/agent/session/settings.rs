//! The session's timings, which tests shorten.

use std::time::Duration;

/// Timings that tests shorten.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// First wait after an authentication refusal; doubles up to 6×.
    pub auth_retry: Duration,
    /// How often CONFIG_PATH is checked for changes.
    pub watch_interval: Duration,
    /// How long running commands may finish after a stop request.
    pub shutdown_grace: Duration,
    /// No answer to `authenticate` within this: reconnect and try again (an
    /// event that reached the server before it was ready is dropped).
    pub auth_answer_timeout: Duration,
    /// How often the manifests' `periodic` jobs run (also once at start).
    pub expiry_interval: Duration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            auth_retry: Duration::from_secs(300),
            watch_interval: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(30),
            auth_answer_timeout: Duration::from_secs(20),
            expiry_interval: Duration::from_secs(3600),
        }
    }
}
