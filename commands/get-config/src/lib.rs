//! `get_config`: returns the web app's `configuration.json` as installed
//! under NEOPRO_ROOT (upstream reads `<NEOPRO_ROOT>/webapp/configuration.json`,
//! not CONFIG_PATH; the dashboard relies on that).

use neopro_guest_sdk::serde_json::{Value, json};
use neopro_guest_sdk::{Command, Context, Error, Root, export_command, files};

const CONFIGURATION: &str = "webapp/configuration.json";

struct GetConfig;

impl Command for GetConfig {
    type Data = Value;

    fn run(_ctx: &Context, _data: Value) -> Result<Value, Error> {
        match files::read_json::<Value>(Root::NeoproRoot, CONFIGURATION) {
            Ok(configuration) => Ok(json!({ "success": true, "configuration": configuration })),
            Err(e) if e.is_not_found() => Ok(json!({
                "success": true,
                "configuration": null,
                "message": "No configuration file found",
            })),
            Err(e) => Err(e),
        }
    }
}

export_command!(GetConfig);
