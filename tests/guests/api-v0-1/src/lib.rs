//! Test guest: a component built against the frozen `neopro:agent@0.1.0`
//! (`wit/frozen/0.1`) with plain wit-bindgen, as one built before 0.2 was.
//! `stage_v0_1` hashes a file of the staging root (`files@0.1.0`), logs
//! (`log@0.1.0`) and hands it to `archive@0.1.0`'s `stage-agent-release`,
//! the function 0.2 moved to `agent-update`: the agent must link both.
// wit-bindgen's export glue expands at the crate root.
#![allow(unsafe_code)]

#[allow(clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        world: "command",
        path: "../../../wit/frozen/0.1",
    });
}

use bindings::exports::neopro::agent::handler::Guest;
use bindings::neopro::agent::types::{Command, Error, Root};
use bindings::neopro::agent::{archive, files, log};
use serde_json::{Value, json};

struct StageV0_1;

fn text<'a>(data: &'a Value, key: &str) -> Option<&'a str> {
    data.get(key).and_then(Value::as_str)
}

impl Guest for StageV0_1 {
    fn execute(command: Command) -> Result<String, Error> {
        let data: Value = serde_json::from_str(&command.data)
            .map_err(|e| Error::InvalidInput(format!("data is not JSON: {e}")))?;
        let (Some(path), Some(version)) = (text(&data, "path"), text(&data, "version")) else {
            return Err(Error::InvalidInput(
                "path and version are required".to_owned(),
            ));
        };
        let sha256 = files::sha256(Root::Staging, path)?;
        log::write(
            log::Level::Info,
            &format!("staging {path} ({sha256}) through archive@0.1.0"),
        );
        let staged = archive::stage_agent_release(
            Root::Staging,
            path,
            version,
            text(&data, "signature"),
            text(&data, "deploymentId"),
        )?;
        Ok(json!({ "staged": staged, "sha256": sha256 }).to_string())
    }
}

bindings::export!(StageV0_1 with_types_in bindings);
