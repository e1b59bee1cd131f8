//! `network_diagnostics` (§2.14): the host runs the probes (bounded, no
//! shell); the answer keeps upstream's shape with `success: true` first.

use neopro_guest_sdk::serde_json::{Map, Value, json};
use neopro_guest_sdk::{Command, Context, Error, export_command, system};

struct NetworkDiagnostics;

impl Command for NetworkDiagnostics {
    type Data = Value;

    fn run(_ctx: &Context, _data: Value) -> Result<Value, Error> {
        let mut out = Map::new();
        out.insert("success".to_owned(), json!(true));
        if let Value::Object(fields) = system::network_diagnostics()? {
            out.extend(fields);
        }
        Ok(Value::Object(out))
    }
}

export_command!(NetworkDiagnostics);
