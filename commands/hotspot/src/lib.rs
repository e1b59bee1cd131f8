//! `update_hotspot` / `get_hotspot_config` (§2.11–2.12) over `hostapd.conf`
//! (`HOSTAPD_CONF`). Unlike upstream, line breaks and control characters in
//! the SSID or passphrase are refused (upstream let them add arbitrary
//! hostapd directives), values are inserted literally (no `$&` expansion),
//! lengths are counted in bytes as hostapd does, and a hostapd that does not
//! come back really gets its previous configuration back.

use neopro_guest_sdk::serde_json::{Value, json};
use neopro_guest_sdk::{Command, Context, Error, Root, export_command, files, services};
use serde::Deserialize;
use std::time::Duration;

const CONF: &str = "hostapd.conf";
const BACKUP: &str = "hostapd.conf.backup";
const UNIT: &str = "hostapd";
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
struct Data {
    ssid: Option<Value>,
    password: Option<Value>,
}

/// A present, non-empty string field (upstream tested truthiness).
fn text_field(value: Option<&Value>, name: &str) -> Result<Option<String>, Error> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Error::invalid_input(format!(
            "{name} must be a string, got {other}"
        ))),
    }
}

/// Validation in upstream's order, plus the control-character rule.
fn validate(ssid: Option<&str>, password: Option<&str>) -> Result<(), Error> {
    if ssid.is_none() && password.is_none() {
        return Err(Error::invalid_input(
            "At least one of ssid or password must be provided",
        ));
    }
    for value in [ssid, password].into_iter().flatten() {
        if value.chars().any(char::is_control) {
            return Err(Error::invalid_input(
                "ssid and password may not contain line breaks or control characters",
            ));
        }
    }
    if let Some(p) = password
        && !(8..=63).contains(&p.len())
    {
        return Err(Error::invalid_input(
            "WiFi password must be between 8 and 63 characters",
        ));
    }
    if let Some(s) = ssid
        && s.len() > 32
    {
        return Err(Error::invalid_input("SSID must be 32 characters or less"));
    }
    Ok(())
}

/// Replaces the first line starting with `key=` by `key=value`, literally.
fn set_first(text: &str, key: &str, value: &str) -> String {
    let prefix = format!("{key}=");
    let mut done = false;
    let mut out = String::with_capacity(text.len() + value.len());
    for line in text.split_inclusive('\n') {
        if !done && line.starts_with(&prefix) {
            done = true;
            out.push_str(&prefix);
            out.push_str(value);
            if line.ends_with('\n') {
                out.push('\n');
            }
        } else {
            out.push_str(line);
        }
    }
    out
}

/// The value of the first `key=` line.
fn get_first<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let prefix = format!("{key}=");
    text.lines().find_map(|l| l.strip_prefix(prefix.as_str()))
}

fn read_conf() -> Result<Option<String>, Error> {
    match files::read_to_string(Root::Hostapd, CONF) {
        Ok(text) => Ok(Some(text)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn hostapd_active() -> bool {
    services::restart(UNIT).is_ok()
        && services::wait_active(UNIT, ACTIVE_TIMEOUT).is_ok_and(|s| s == "active")
}

fn update(data: &Data) -> Result<Value, Error> {
    let ssid = text_field(data.ssid.as_ref(), "ssid")?;
    let password = text_field(data.password.as_ref(), "password")?;
    validate(ssid.as_deref(), password.as_deref())?;
    let Some(original) = read_conf()? else {
        return Err(Error::not_found(
            "hostapd.conf not found - hotspot not configured on this device",
        ));
    };
    // A new backup is 0600 like hostapd.conf (the old passphrase is in it);
    // one left 0644 by an older agent is not replaced in place but renewed.
    if files::exists(Root::Hostapd, BACKUP)? {
        files::remove_file(Root::Hostapd, BACKUP)?;
    }
    files::write_atomic(Root::Hostapd, BACKUP, original.as_bytes())?;
    let mut text = original.clone();
    if let Some(s) = &ssid {
        text = set_first(&text, "ssid", s);
    }
    if let Some(p) = &password {
        text = set_first(&text, "wpa_passphrase", p);
    }
    files::write_atomic(Root::Hostapd, CONF, text.as_bytes())?;
    if !hostapd_active() {
        files::write_atomic(Root::Hostapd, CONF, original.as_bytes())?;
        let _ = services::restart(UNIT);
        return Err(Error::failed(
            "Failed to restart hostapd with new configuration - backup restored",
        ));
    }
    Ok(json!({
        "success": true,
        "message": "Hotspot configuration updated",
        "ssidUpdated": ssid.is_some(),
        "passwordUpdated": password.is_some(),
    }))
}

fn get() -> Result<Value, Error> {
    let Some(text) = read_conf()? else {
        return Ok(json!({
            "success": true, "configured": false,
            "message": "Hotspot not configured on this device",
        }));
    };
    let channel = get_first(&text, "channel").and_then(|c| {
        let digits: String = c.trim().chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u64>().ok()
    });
    let is_active = services::status(UNIT).is_ok_and(|s| s == "active");
    Ok(json!({
        "success": true,
        "configured": true,
        "ssid": get_first(&text, "ssid"),
        "channel": channel,
        "isActive": is_active,
    }))
}

struct Hotspot;

impl Command for Hotspot {
    type Data = Data;

    fn run(ctx: &Context, data: Data) -> Result<Value, Error> {
        match ctx.command_type.as_str() {
            "get_hotspot_config" => get(),
            _ => update(&data),
        }
    }
}

export_command!(Hotspot);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_line_changes_and_values_are_literal() {
        let text = "interface=wlan0\n#ssid=old\nssid=Club\nssid=second\nwpa_passphrase=secret12\n";
        assert_eq!(
            set_first(text, "ssid", "New $& Wi-Fi"),
            "interface=wlan0\n#ssid=old\nssid=New $& Wi-Fi\nssid=second\nwpa_passphrase=secret12\n"
        );
        assert_eq!(get_first(text, "ssid"), Some("Club"));
    }

    #[test]
    fn injections_and_bad_lengths_are_refused() {
        let refused =
            |s: Option<&str>, p: Option<&str>| validate(s, p).map_err(|e| e.message().to_owned());
        assert_eq!(
            refused(Some("x\nwpa_passphrase=evil"), None),
            Err("ssid and password may not contain line breaks or control characters".to_owned())
        );
        assert_eq!(
            refused(None, Some("password\r\nmacaddr_acl=0")),
            Err("ssid and password may not contain line breaks or control characters".to_owned())
        );
        assert_eq!(
            refused(None, Some("short")),
            Err("WiFi password must be between 8 and 63 characters".to_owned())
        );
        assert_eq!(
            refused(Some(&"é".repeat(17)), None),
            Err("SSID must be 32 characters or less".to_owned())
        );
        assert_eq!(refused(Some("Club Wi-Fi"), Some("12345678")), Ok(()));
    }
}
