//! `reboot` (§2.6): answers first, then the box reboots through the service
//! manager once the answer is delivered (upstream rebooted 2 s later whether
//! or not the answer had left, so the server often timed the command out).

use neopro_guest_sdk::serde_json::{Value, json};
use neopro_guest_sdk::{Command, Context, Error, export_command, power};

/// If the server cannot confirm the result within this, reboot anyway; the
/// result is sent again after the boot.
const MAX_WAIT_SECS: u32 = 60;

struct Reboot;

impl Command for Reboot {
    type Data = Value;

    fn run(_ctx: &Context, _data: Value) -> Result<Value, Error> {
        power::schedule_reboot(MAX_WAIT_SECS)?;
        Ok(json!({
            "success": true,
            "message": "Rebooting as soon as this result is delivered",
        }))
    }
}

export_command!(Reboot);
