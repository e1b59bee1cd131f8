use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(text: &str) -> Result<SiteConfig, ConfigError> {
    SiteConfig::from_sources(Some((Path::new("/etc/neopro/site.conf"), text)), &no_env)
}

#[test]
fn reads_upstream_keys_with_comments_and_quotes() -> Result<(), ConfigError> {
    let c = load(
        "# NEOPRO\nCENTRAL_SERVER_URL=\"https://central.example\"\nCENTRAL_SERVER_ENABLED=true\n\
         SITE_ID='abc-123'\nSITE_API_KEY=key # inline comment\n\nNEOPRO_ROOT=/srv/neopro\n\
         HEARTBEAT_INTERVAL=15000\n",
    )?;
    assert_eq!(c.central_server_url, "https://central.example");
    assert!(c.central_server_enabled);
    assert_eq!(c.site_id.as_deref(), Some("abc-123"));
    assert_eq!(c.site_api_key.as_deref(), Some("key"));
    assert_eq!(c.heartbeat_interval, Duration::from_secs(15));
    assert_eq!(c.videos_path, PathBuf::from("/srv/neopro/videos"));
    assert_eq!(
        c.config_path,
        PathBuf::from("/srv/neopro/webapp/configuration.json")
    );
    assert_eq!(c.log_path, PathBuf::from("/srv/neopro/logs/sync-agent.log"));
    Ok(())
}

#[test]
fn defaults_match_upstream() -> Result<(), ConfigError> {
    let c = SiteConfig::from_sources(None, &no_env)?;
    assert_eq!(c.central_server_url, "http://localhost:3001");
    assert!(!c.central_server_enabled);
    assert_eq!(c.neopro_root, PathBuf::from("/home/pi/neopro"));
    assert_eq!(c.videos_path, PathBuf::from("/home/pi/neopro/videos"));
    assert_eq!(c.backup_path, PathBuf::from("/home/pi/neopro/backups"));
    assert_eq!(c.heartbeat_interval, Duration::from_secs(30));
    assert_eq!(c.max_download_size, 1_073_741_824);
    assert_eq!(c.state_path, PathBuf::from("/var/lib/neopro-runtime"));
    assert_eq!(c.allowed_commands.len(), DEFAULT_ALLOWED_COMMANDS.len());
    assert!(!c.allowed_commands.iter().any(|c| c == "update_settings"));
    // The unit install-service writes, so the agent knows its own restart.
    assert_eq!(c.services.agent_unit, "neopro-runtime");
    assert!(c.services.managed.iter().any(|u| u == "neopro-runtime"));
    Ok(())
}

#[test]
fn environment_wins_over_the_file() -> Result<(), ConfigError> {
    let env = |k: &str| (k == "SITE_ID").then(|| "from-env".to_owned());
    let c = SiteConfig::from_sources(
        Some((Path::new("/x/site.conf"), "SITE_ID=from-file\n")),
        &env,
    )?;
    assert_eq!(c.site_id.as_deref(), Some("from-env"));
    Ok(())
}

#[test]
fn allowed_commands_in_the_file_restrict() -> Result<(), ConfigError> {
    let c = load("ALLOWED_COMMANDS= get_logs , get_system_info,,\n")?;
    assert_eq!(c.allowed_commands, vec!["get_logs", "get_system_info"]);
    Ok(())
}

#[test]
fn errors_name_the_line_or_key() {
    let err = load("SITE_ID=a\nthis is not a setting\n").map(|_| ()).err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("/etc/neopro/site.conf, line 2: expected KEY=VALUE, found 'this is not a setting'")
    );
    let err = load("HEARTBEAT_INTERVAL=soon\n").map(|_| ()).err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some(
            "HEARTBEAT_INTERVAL must be a whole number, got 'soon' (set it in /etc/neopro/site.conf)"
        )
    );
    let err = load("VIDEOS_PATH=videos\n").map(|_| ()).err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some(
            "VIDEOS_PATH must be an absolute path, got 'videos' (set it in /etc/neopro/site.conf)"
        )
    );
}

#[test]
fn the_shipped_example_parses_and_documents_every_key() -> Result<(), ConfigError> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/site.conf.example");
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let c = SiteConfig::from_sources(Some((&path, &text)), &no_env)?;
    assert!(c.central_server_enabled);
    assert_eq!(c.allowed_commands.len(), DEFAULT_ALLOWED_COMMANDS.len());
    for key in [
        "CENTRAL_SERVER_URL",
        "CENTRAL_SERVER_ENABLED",
        "SITE_ID",
        "SITE_API_KEY",
        "NEOPRO_ROOT",
        "VIDEOS_PATH",
        "CONFIG_PATH",
        "BACKUP_PATH",
        "LOG_PATH",
        "LOG_LEVEL",
        "STATE_PATH",
        "COMPONENTS_PATH",
        "JOURNALCTL_PATH",
        "LOCAL_APP_URL",
        "HEARTBEAT_INTERVAL",
        "MAX_DOWNLOAD_SIZE",
        "ALLOWED_COMMANDS",
        "SYSTEMCTL_PATH",
        "MANAGED_SERVICES",
        "AGENT_SERVICE",
        "AUTO_UPDATE_ENABLED",
        "AUTO_UPDATE_HOUR",
        "HOSTAPD_CONF",
        "UPDATE_TRUSTED_KEYS",
        "UPDATE_HEALTH_URL",
        "UPDATE_ALLOW_DOWNGRADE",
    ] {
        assert!(text.contains(&format!("{key}=")), "{key} undocumented");
    }
    Ok(())
}

#[test]
fn runtime_state_goes_to_the_units_tmpfs_and_never_into_the_state_folder_by_surprise()
-> Result<(), ConfigError> {
    let state = Path::new("/var/lib/neopro-runtime");
    let none = |_: &str| None;
    let systemd = |k: &str| (k == "RUNTIME_DIRECTORY").then(|| "/run/x:/run/y".to_owned());
    // Under the unit: systemd's folder (the first of the list).
    assert_eq!(
        runtime_path_default(&systemd, state, &|_| false),
        PathBuf::from("/run/x")
    );
    // An operator's diagnose beside the unit: the unit's folder.
    assert_eq!(
        runtime_path_default(&none, state, &|p| p == Path::new("/run/neopro-runtime")),
        PathBuf::from("/run/neopro-runtime")
    );
    // By hand, no unit: apart from the state, under it.
    assert_eq!(
        runtime_path_default(&none, state, &|_| false),
        state.join("run")
    );
    // A relative RUNTIME_DIRECTORY is not trusted.
    let relative = |k: &str| (k == "RUNTIME_DIRECTORY").then(|| "run".to_owned());
    assert_eq!(
        runtime_path_default(&relative, state, &|_| false),
        state.join("run")
    );
    // RUNTIME_PATH wins.
    let c = SiteConfig::from_sources(
        Some((Path::new("/x/site.conf"), "RUNTIME_PATH=/dev/shm/agent\n")),
        &systemd,
    )?;
    assert_eq!(c.runtime_path, PathBuf::from("/dev/shm/agent"));
    Ok(())
}
