//! `restart_service` (§2.7): restarts a managed unit and checks that it is
//! active again. Restarting the agent itself (the host says which names mean
//! it: its unit, and the upstream `neopro-sync-agent` the server sends)
//! answers first; the host restarts it once the answer is delivered
//! (upstream died before answering).
//! Upstream's `update` flag (a `git pull` of the agent) is not supported: the
//! agent is updated as a package, never from a working copy.

use neopro_guest_sdk::serde_json::{Value, json};
use neopro_guest_sdk::{Command, Context, Error, export_command, logs, services};
use serde::Deserialize;
use std::time::Duration;

/// How long a restarted unit may take to become active.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
struct Data {
    service: Option<Value>,
    #[serde(default)]
    update: Option<Value>,
}

struct RestartService;

impl Command for RestartService {
    type Data = Data;

    fn run(_ctx: &Context, data: Data) -> Result<Value, Error> {
        let service = match &data.service {
            Some(Value::String(s)) if logs::is_valid_unit_name(s) => s.clone(),
            Some(Value::String(s)) => {
                return Err(Error::invalid_input(format!(
                    "'{s}' is not a valid service name (letters, digits and :-_.@ only)"
                )));
            }
            _ => return Err(Error::invalid_input("service is required (a service name)")),
        };
        if data
            .update
            .as_ref()
            .is_some_and(|u| u.as_bool() == Some(true))
        {
            neopro_guest_sdk::warn!(
                "restart_service: 'update' is ignored (no git pull on this agent)"
            );
        }
        services::restart(&service)?;
        if services::is_agent(&service) {
            return Ok(json!({
                "success": true,
                "status": "restarting",
                "message": format!("{service} restarts as soon as this result is delivered"),
            }));
        }
        let state = services::wait_active(&service, ACTIVE_TIMEOUT)?;
        if state != "active" {
            return Err(Error::failed(format!(
                "Service {service} is not active after restart (state: {state})"
            )));
        }
        Ok(json!({ "success": true, "status": "active" }))
    }
}

export_command!(RestartService);
