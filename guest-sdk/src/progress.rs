//! Progress of long commands, forwarded to the server.

use crate::Error;
use serde_json::Value;

/// Reports `percent` (0..=100) with extra fields merged into the progress
/// event (pass `Value::Null` for none). Cheap: the host throttles.
pub fn report(percent: u8, detail: &Value) -> Result<(), Error> {
    let detail = if detail.is_null() {
        String::new()
    } else {
        detail.to_string()
    };
    crate::bindings::neopro::agent::progress::report(percent, &detail)
}
