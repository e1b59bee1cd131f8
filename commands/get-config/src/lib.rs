//! `get_config`: returns the web app's configuration.json through the
//! config store (CONFIG_PATH; upstream read `<NEOPRO_ROOT>/webapp/
//! configuration.json`, the same file with the default settings).

use neopro_guest_sdk::serde_json::{Value, json};
use neopro_guest_sdk::{Command, Context, Error, config_store, export_command};

struct GetConfig;

impl Command for GetConfig {
    type Data = Value;

    fn run(_ctx: &Context, _data: Value) -> Result<Value, Error> {
        Ok(match config_store::read()? {
            Some(configuration) => json!({ "success": true, "configuration": configuration }),
            None => json!({
                "success": true,
                "configuration": null,
                "message": "No configuration file found",
            }),
        })
    }
}

export_command!(GetConfig);
