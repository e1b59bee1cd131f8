//! Telling the web app on the box that something changed.

use crate::bindings::neopro::agent::local_app as host;
use serde_json::Value;

/// Emits `event` to the local web app; a failure is logged, never returned:
/// the app being down must not fail the command that changed things.
pub fn notify(event: &str, payload: Option<&Value>) {
    let payload = payload.map(Value::to_string);
    if let Err(e) = host::notify(event, payload.as_deref()) {
        crate::warn!("{}", e.message());
    }
}
