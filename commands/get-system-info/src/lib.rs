//! `get_system_info`: hardware, OS, network and live metrics in the upstream
//! shape `{success, systemInfo, networkStatus, metrics}` (§2.9, §7.2).
//!
//! The agent's own version shows on the dashboard here: the site page's
//! "Infos système" dialog lists `systemInfo.os`, so `os` reads
//! `<distribution>, agent neopro-runtime <version>` (`os_details.distro`
//! keeps the distribution alone, `agent_version` the version alone).
//! Upstream's server keeps `sites.software_version` for the app's version,
//! so the heartbeat's `agentVersion` is shown nowhere (docs/real-peers.md).

use neopro_guest_sdk::serde_json::{Value, json};
use neopro_guest_sdk::system::{self, Info, InterfaceInfo, Metrics};
use neopro_guest_sdk::{Command, Context, Error, export_command};
use std::time::{SystemTime, UNIX_EPOCH};

struct GetSystemInfo;

impl Command for GetSystemInfo {
    type Data = Value;

    fn run(_ctx: &Context, _data: Value) -> Result<Value, Error> {
        let info = system::info()?;
        let metrics = system::metrics()?;
        Ok(json!({
            "success": true,
            "systemInfo": system_info(&info, system::agent_version().as_deref()),
            "networkStatus": {
                "interfaces": info.interfaces.iter().map(interface_summary).collect::<Vec<_>>(),
                "activeConnections": info.active_connections,
            },
            "metrics": metrics_json(&metrics),
        }))
    }
}

/// Wired with IPv4, then Wi-Fi with IPv4, then any IPv4, then any IPv6
/// (the order the dashboard expects), then the first interface.
fn primary(interfaces: &[InterfaceInfo]) -> Option<&InterfaceInfo> {
    let usable: Vec<&InterfaceInfo> = interfaces.iter().filter(|i| i.kind != "loopback").collect();
    usable
        .iter()
        .find(|i| i.kind == "wired" && i.ip4.is_some())
        .or_else(|| {
            usable
                .iter()
                .find(|i| i.kind == "wireless" && i.ip4.is_some())
        })
        .or_else(|| usable.iter().find(|i| i.ip4.is_some()))
        .or_else(|| usable.iter().find(|i| i.ip6.is_some()))
        .or_else(|| usable.first())
        .copied()
}

/// What the dashboard's "OS" line shows: the distribution and the agent.
fn os_line(os: Option<&str>, agent: Option<&str>) -> Option<String> {
    match (os, agent) {
        (Some(os), Some(agent)) => Some(format!("{os}, agent neopro-runtime {agent}")),
        (None, Some(agent)) => Some(format!("agent neopro-runtime {agent}")),
        (os, None) => os.map(str::to_owned),
    }
}

fn system_info(info: &Info, agent_version: Option<&str>) -> Value {
    let primary = primary(&info.interfaces);
    let ip_address = primary.and_then(|i| i.ip4.clone().or_else(|| i.ip6.clone()));
    let raspberry = match (&info.raspberry_revision, &info.raspberry_serial) {
        (None, None) => Value::Null,
        (revision, serial) => json!({ "revision": revision, "serial": serial }),
    };
    let manufacturer = if info.raspberry_revision.is_some() {
        "Raspberry Pi Foundation"
    } else {
        ""
    };
    json!({
        "hostname": info.hostname,
        "os": os_line(info.os.as_deref(), agent_version),
        "agent_version": agent_version,
        "kernel": info.kernel,
        "architecture": info.architecture,
        "cpu_model": info.cpu_model,
        "cpu_cores": info.cpu_cores,
        "total_memory": info.total_memory,
        "ip_address": ip_address,
        "mac_address": primary.and_then(|i| i.mac.clone()),
        "manufacturer": manufacturer,
        "model": info.model.clone().unwrap_or_default(),
        "version": info.raspberry_revision.clone().unwrap_or_default(),
        "cpu": {
            "manufacturer": cpu_manufacturer(info.cpu_model.as_deref()),
            "brand": info.cpu_model,
            "speed": info.cpu_speed_mhz.map(|mhz| mhz as f64 / 1000.0),
            "cores": info.cpu_cores,
        },
        "os_details": {
            "platform": "linux",
            "distro": info.os,
            "kernel": info.kernel,
            "arch": info.architecture,
            "hostname": info.hostname,
        },
        "network_interfaces": info.interfaces.iter().map(interface_detail).collect::<Vec<_>>(),
        "raspberry": raspberry,
    })
}

fn cpu_manufacturer(model: Option<&str>) -> Value {
    match model {
        Some(m) => json!(m.split_whitespace().next().unwrap_or_default()),
        None => Value::Null,
    }
}

fn interface_summary(i: &InterfaceInfo) -> Value {
    json!({ "name": i.name, "ip4": i.ip4, "ip6": i.ip6, "mac": i.mac, "type": i.kind })
}

fn interface_detail(i: &InterfaceInfo) -> Value {
    json!({
        "iface": i.name,
        "ip4": i.ip4.clone().unwrap_or_default(),
        "ip6": i.ip6.clone().unwrap_or_default(),
        "mac": i.mac.clone().unwrap_or_default(),
        "type": i.kind,
        "internal": i.kind == "loopback",
    })
}

fn metrics_json(m: &Metrics) -> Value {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    json!({
        "cpu": m.cpu,
        "memory": m.memory,
        "temperature": m.temperature,
        "disk": m.disk,
        "uptime": m.uptime,
        "localIp": m.local_ip,
        "timestamp": now_ms,
    })
}

export_command!(GetSystemInfo);
