//! `get_logs`: the last lines of a service's journal, or of the agent's own
//! log for `service = "sync-agent"` (upstream behaviour, §2.8).

use neopro_guest_sdk::serde_json::{Value, json};
use neopro_guest_sdk::{Command, Context, Error, export_command, logs};
use serde::Deserialize;

/// Upper bound on `lines`: a bigger tail would not fit the server's result column anyway.
const MAX_LINES: u64 = 10_000;

#[derive(Deserialize)]
struct Data {
    #[serde(default = "default_service")]
    service: String,
    #[serde(default = "default_lines")]
    lines: Value,
}

fn default_service() -> String {
    "neopro-app".to_owned()
}

fn default_lines() -> Value {
    json!(100)
}

/// The server's REST API forwards `lines` as a number or a numeric string.
fn parse_lines(value: &Value) -> Result<u32, Error> {
    let n = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        Value::Null => Some(100),
        _ => None,
    };
    match n {
        Some(n @ 1..=MAX_LINES) => Ok(n as u32),
        _ => Err(Error::invalid_input(format!(
            "lines must be a whole number between 1 and {MAX_LINES}, got {value}"
        ))),
    }
}

struct GetLogs;

impl Command for GetLogs {
    type Data = Data;

    fn run(_ctx: &Context, data: Data) -> Result<Value, Error> {
        let lines = parse_lines(&data.lines)?;
        let logs = if data.service == "sync-agent" {
            logs::agent_log_tail(lines)?
        } else if logs::is_valid_unit_name(&data.service) {
            logs::journal_tail(&data.service, lines)?
        } else {
            return Err(Error::invalid_input(format!(
                "'{}' is not a valid service name (letters, digits and :-_.@ only)",
                data.service
            )));
        };
        Ok(json!({ "success": true, "logs": logs }))
    }
}

export_command!(GetLogs);
