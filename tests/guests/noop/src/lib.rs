//! Test and benchmark guest: does nothing, so a run measures the host's
//! per-command cost (fresh store, instantiation, call, result).

use neopro_guest_sdk::serde_json::{Value, json};
use neopro_guest_sdk::{Command, Context, Error, export_command};

struct Noop;

impl Command for Noop {
    type Data = Value;

    fn run(_ctx: &Context, _data: Value) -> Result<Value, Error> {
        Ok(json!({ "success": true }))
    }
}

export_command!(Noop);
