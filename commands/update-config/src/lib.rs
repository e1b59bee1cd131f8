//! `update_config` (replace / merge / neoProContent, protocol notes §5.1)
//! and `update_settings` (§2.13), both through the config store.

mod merge;

use neopro_guest_sdk::serde_json::{Map, Value, json};
use neopro_guest_sdk::{Command, Context, Error, config_store, export_command, local_app};

struct UpdateConfig;

impl Command for UpdateConfig {
    type Data = Value;

    fn run(ctx: &Context, data: Value) -> Result<Value, Error> {
        match ctx.command_type.as_str() {
            "update_settings" => update_settings(&data),
            _ => update_config(&data),
        }
    }
}

fn object(value: &Value, what: &str) -> Result<Value, Error> {
    if value.is_object() {
        Ok(value.clone())
    } else {
        Err(Error::invalid_input(format!(
            "{what} must be a JSON object"
        )))
    }
}

fn update_config(data: &Value) -> Result<Value, Error> {
    let mode = data.get("mode").and_then(Value::as_str);
    if mode == Some("update_agent") {
        return Err(Error::invalid_input(
            "update_config mode 'update_agent' is refused: it wrote arbitrary files on the box \
             (JavaScript for the old Node.js agent). Update the agent with a signed agent release \
             sent as update_software from the Updates page; new commands are pushed as signed \
             components (install_component)",
        ));
    }
    let configuration = data.get("configuration").filter(|v| !v.is_null());
    let neo_pro_content = data.get("neoProContent").filter(|v| !v.is_null());
    let now = neopro_guest_sdk::time::now_ms();
    let written = if let (Some("replace"), Some(configuration)) = (mode, configuration) {
        let replacement = object(configuration, "configuration")?;
        config_store::update(|_| Ok(replacement.clone()))?
    } else if let Some(content) = neo_pro_content {
        let content = object(content, "neoProContent")?;
        config_store::update(|local| {
            Ok(merge::merge_configurations(local.as_ref(), &content, now))
        })?
    } else if let Some(content) = configuration {
        let content = object(content, "configuration")?;
        config_store::update(|local| {
            Ok(merge::merge_configurations(local.as_ref(), &content, now))
        })?
    } else {
        return Err(Error::invalid_input(
            "Missing neoProContent or configuration in update_config command",
        ));
    };
    local_app::notify("config_updated", None);
    Ok(json!({
        "success": true,
        "hash": written.config_hash,
        "mode": mode.unwrap_or("merge"),
    }))
}

const LANGUAGES: [&str; 3] = ["fr", "en", "es"];

fn update_settings(data: &Value) -> Result<Value, Error> {
    let language = data.get("language").filter(|v| !v.is_null());
    let timezone = data.get("timezone").filter(|v| !v.is_null());
    if language.is_none() && timezone.is_none() {
        return Err(Error::invalid_input(
            "At least one of language or timezone must be provided",
        ));
    }
    if let Some(l) = language
        && !l.as_str().is_some_and(|l| LANGUAGES.contains(&l))
    {
        return Err(Error::invalid_input(
            "Invalid language. Valid values: fr, en, es",
        ));
    }
    if let Some(t) = timezone
        && !t.is_string()
    {
        return Err(Error::invalid_input("timezone must be a string"));
    }
    let written = config_store::update(|current| {
        let Some(Value::Object(mut config)) = current else {
            return Err(Error::not_found("Configuration file not found"));
        };
        let mut settings = match config.get("settings") {
            Some(Value::Object(s)) => s.clone(),
            _ => {
                let mut s = Map::new();
                s.insert("language".to_owned(), json!("fr"));
                s.insert("timezone".to_owned(), json!("Europe/Paris"));
                s
            }
        };
        if let Some(l) = language {
            settings.insert("language".to_owned(), l.clone());
        }
        if let Some(t) = timezone {
            settings.insert("timezone".to_owned(), t.clone());
        }
        config.insert("settings".to_owned(), Value::Object(settings));
        Ok(Value::Object(config))
    })?;
    let settings = &written.config["settings"];
    local_app::notify("settings_updated", Some(settings));
    Ok(json!({
        "success": true,
        "settings": { "language": settings["language"], "timezone": settings["timezone"] },
        "message": "Settings updated successfully",
    }))
}

export_command!(UpdateConfig);
