//! Test guest: panics with a known message, to prove it reaches the result.

use neopro_guest_sdk::serde_json::Value;
use neopro_guest_sdk::{Command, Context, Error, export_command};

struct Panic;

impl Command for Panic {
    type Data = Value;

    fn run(_ctx: &Context, _data: Value) -> Result<Value, Error> {
        panic!("the video index is corrupt");
    }
}

export_command!(Panic);
