//! `local-app`: one-shot Socket.IO notifications to the web app on the box.

use super::bindings::neopro::agent::local_app::Host;
use super::{HostState, WitError};
use std::time::Duration;

/// How long a notification may take; the app being down must not slow a
/// deployment down.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);

fn valid_event(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Host for HostState {
    fn notify(&mut self, event: String, payload: Option<String>) -> Result<(), WitError> {
        self.call
            .require(self.call.manifest.grants.local_app, "local-app = true")?;
        if !valid_event(&event) {
            return Err(WitError::InvalidInput(format!(
                "'{event}' is not a valid event name (a-z, 0-9 and '_')"
            )));
        }
        let args = match payload {
            None => Vec::new(),
            Some(text) => vec![serde_json::from_str(&text).map_err(|e| {
                WitError::InvalidInput(format!("the payload is not valid JSON: {e}"))
            })?],
        };
        let url = self.call.services.local_app_url.clone();
        let sent = super::download::block_on(crate::link::notify_once(
            &url,
            &event,
            &args,
            NOTIFY_TIMEOUT,
        ))?;
        sent.map_err(|e| {
            WitError::Failed(format!("the local web app at {url} was not notified: {e}"))
        })
    }
}
