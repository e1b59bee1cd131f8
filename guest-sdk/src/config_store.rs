//! configuration.json (CONFIG_PATH), shared with concurrent commands.
//!
//! Use [`update`]: it reads the document, lets you change it, and writes it
//! back only if nobody changed it meanwhile (retrying otherwise).

use crate::Error;
use crate::bindings::neopro::agent::config_store as host;
use serde_json::Value;

/// What a successful write produced.
#[derive(Debug, Clone)]
pub struct Written {
    /// The protocol's `configHash` of the new document.
    pub config_hash: String,
    /// The document as written.
    pub config: Value,
}

/// How many times [`update`] re-reads after losing a race.
const ATTEMPTS: usize = 8;

fn parse(json: Option<String>) -> Result<Option<Value>, Error> {
    match json {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::invalid_input(format!("configuration.json is not valid JSON: {e}"))
        }),
    }
}

/// The current document, or `None` when there is none yet.
pub fn read() -> Result<Option<Value>, Error> {
    parse(host::read()?.json)
}

/// Reads, applies `change` (given the current document or `None`), writes.
/// `change` may run more than once if another command writes meanwhile, so
/// it must not have side effects.
pub fn update(
    mut change: impl FnMut(Option<Value>) -> Result<Value, Error>,
) -> Result<Written, Error> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let snapshot = host::read()?;
        let current = parse(snapshot.json)?;
        let next = change(current)?;
        let text = next.to_string();
        match host::write(&text, &snapshot.version) {
            Ok(written) => {
                return Ok(Written {
                    config_hash: written.config_hash,
                    config: next,
                });
            }
            Err(Error::Failed(m)) if m.starts_with("configuration changed") => {
                last = Some(Error::Failed(m));
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::failed("configuration kept changing; gave up")))
}
