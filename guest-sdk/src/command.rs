//! The [`Command`] trait and the glue between it and the WIT export.

use crate::__private::WireCommand;
use crate::Error;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Facts about the command being run, besides its data.
#[derive(Debug, Clone)]
pub struct Context {
    /// The server's command id.
    pub id: String,
    /// The command type, e.g. `get_logs` (a component may handle several).
    pub command_type: String,
}

/// One command handler. See the crate docs for a worked example.
pub trait Command {
    /// The command's `data` object. Use `serde_json::Value` to take it as is;
    /// with a struct, a field the server may omit must be an `Option` or have
    /// a `#[serde(default)]`.
    type Data: DeserializeOwned;

    /// Runs the command; the returned value becomes the `result` field of the
    /// `command_result` sent to the server (build it with `serde_json::json!`
    /// or `serde_json::to_value`).
    fn run(ctx: &Context, data: Self::Data) -> Result<Value, Error>;
}

/// Parses the data, runs the command, serializes the result.
#[doc(hidden)]
pub fn execute<C: Command>(command: WireCommand) -> Result<String, Error> {
    let raw = if command.data.trim().is_empty() {
        "{}"
    } else {
        command.data.as_str()
    };
    let data: C::Data = serde_json::from_str(raw).map_err(|e| {
        Error::invalid_input(format!(
            "invalid data for command '{}': {e}",
            command.command_type
        ))
    })?;
    let ctx = Context {
        id: command.id,
        command_type: command.command_type,
    };
    let output = C::run(&ctx, data)?;
    serde_json::to_string(&output)
        .map_err(|e| Error::failed(format!("could not encode the result as JSON: {e}")))
}
