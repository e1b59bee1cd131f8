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

/// The migration handover (`config/migration/handover.sh`, run by root on a
/// box still on the Node.js agent) reads site.conf before this agent is
/// installed. It must read what this parser reads, or it looks for the
/// agent's state in the wrong folder (a CR at line end) or calls a
/// registered box unregistered (`export SITE_ID=`): issue 24, point 4.
#[test]
fn the_migration_handover_reads_site_conf_as_the_agent_does()
-> Result<(), Box<dyn std::error::Error>> {
    let handover = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/migration/handover.sh");
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/site.conf.example"),
    )?;
    let tmp = tempfile::tempdir()?;
    let cases = [
        example.clone(),
        example.replace('\n', "\r\n"),
        "export SITE_ID=abc\nexport  SITE_API_KEY = 'k # not a comment' \n".to_owned(),
        "SITE_ID=abc # the club\r\nSITE_API_KEY=\"k\\nx\" # quoted\r\nSTATE_PATH=/srv/a\nSTATE_PATH=/srv/b\r\n"
            .to_owned(),
        "  # indented comment\n\tSTATE_PATH =  /srv/state\t\r\nSITE_ID=a#b\nSITE_API_KEY=`tick`\n".to_owned(),
        "SITE_ID=\"unclosed\nSITE_API_KEY=\"\"\nMIGRATION_DEADLINE_SECS=20 # s\n".to_owned(),
    ];
    let keys = [
        "SITE_ID",
        "SITE_API_KEY",
        "STATE_PATH",
        "MIGRATION_DEADLINE_SECS",
        "LOG_PATH",
    ];
    for (n, text) in cases.iter().enumerate() {
        let file = tmp.path().join(format!("site-{n}.conf"));
        std::fs::write(&file, text)?;
        let agent = parse_dotenv(&file, text)?;
        for key in keys {
            let out = std::process::Command::new("sh")
                .arg(&handover)
                .arg("site-conf")
                .arg(&file)
                .arg(key)
                .output()?;
            assert!(out.status.success(), "case {n} {key}");
            let theirs = String::from_utf8(out.stdout)?;
            let ours = agent.get(key).cloned().unwrap_or_default();
            assert_eq!(theirs, ours, "case {n}, {key}:\n{text}");
        }
    }
    // A line the agent refuses: the handover refuses the file too.
    let bad = tmp.path().join("bad.conf");
    let text = "SITE_ID=a\nnot a setting\n";
    std::fs::write(&bad, text)?;
    assert!(parse_dotenv(&bad, text).is_err());
    let out = std::process::Command::new("sh")
        .arg(&handover)
        .args(["site-conf"])
        .arg(&bad)
        .arg("SITE_ID")
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8(out.stderr)?, "line 2 is not KEY=VALUE\n");
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
