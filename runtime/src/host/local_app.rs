//! `local-app`: one-shot Socket.IO notifications to the web app on the box.

use super::bindings::neopro::agent::local_app::Host;
use super::{HostState, WitError};
use crate::host::grants::Grant;
use std::time::Duration;

/// The `local-app` capability's state.
#[derive(Debug)]
pub struct LocalAppHost {
    /// LOCAL_APP_URL.
    pub url: String,
}

impl LocalAppHost {
    pub fn from_config(config: &crate::config::SiteConfig) -> Self {
        LocalAppHost {
            url: config.local_app_url.clone(),
        }
    }
}

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
        self.call.check(Grant::LocalApp)?;
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
        let url = self.call.services.local_app.url.clone();
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
