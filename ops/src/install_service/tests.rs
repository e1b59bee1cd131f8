use super::*;
use std::path::Path;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn args() -> InstallArgs {
    InstallArgs {
        user: "neopro".to_owned(),
        group: None,
        binary: Some(PathBuf::from("/usr/bin/neopro-runtime")),
        allow_units: Vec::new(),
        watchdog_sec: 60,
        dry_run: false,
        root: None,
    }
}

/// A box: NEOPRO folders under `dir/home/pi/neopro`, site.conf, and an
/// /etc with passwd/group under `dir/root`.
fn fixture(dir: &Path, with_user: bool) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let neopro = dir.join("home/pi/neopro");
    for sub in ["videos", "webapp", "backups", "logs"] {
        std::fs::create_dir_all(neopro.join(sub))?;
    }
    let conf = dir.join("site.conf");
    std::fs::write(
        &conf,
        format!("NEOPRO_ROOT={}\nSITE_ID=x\n", neopro.display()),
    )?;
    let etc = dir.join("root/etc");
    std::fs::create_dir_all(&etc)?;
    let me = std::fs::metadata(&neopro)?;
    let mut passwd = format!(
        "root:x:0:0::/root:/bin/sh\npi:x:{}:{}::/home/pi:/bin/bash\n",
        me.uid(),
        me.gid()
    );
    if with_user {
        passwd.push_str("neopro:x:998:998::/nonexistent:/usr/sbin/nologin\n");
    }
    std::fs::write(etc.join("passwd"), passwd)?;
    let gid = me.gid();
    let group = if gid == 0 {
        "root:x:0:\n".to_owned()
    } else {
        format!("root:x:0:\npi:x:{gid}:\n")
    };
    std::fs::write(etc.join("group"), group)?;
    Ok(conf)
}

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn the_shipped_unit_and_rule_match_the_templates() -> TestResult {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let stock = UnitParams::stock();
    let units: Vec<String> = DEFAULT_UNITS.iter().map(|u| (*u).to_owned()).collect();
    let expected = [
        ("neopro-runtime.service", render_unit(&stock)),
        ("50-neopro-runtime.rules", render_polkit("neopro", &units)),
    ];
    for (name, text) in expected {
        let path = config.join(name);
        if std::env::var_os("NEOPRO_BLESS").is_some() {
            std::fs::write(&path, &text)?;
        }
        let shipped = std::fs::read_to_string(&path)?;
        assert_eq!(
            shipped, text,
            "config/{name} is out of date: run `NEOPRO_BLESS=1 cargo test -p neopro-runtime shipped_unit`"
        );
    }
    Ok(())
}

#[test]
fn the_unit_is_hardened_and_names_the_neopro_folders() {
    let stock = UnitParams::stock();
    let unit = render_unit(&stock);
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=60",
        "Restart=always",
        "User=neopro",
        "Group=pi",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        "ReadWritePaths=-/home/pi/neopro",
        "StateDirectory=neopro-runtime",
        // The journal, outbox and components are the agent's alone.
        "StateDirectoryMode=0700",
        // The reboot marker: kept across restarts, gone after a reboot.
        "RuntimeDirectory=neopro-runtime",
        "RuntimeDirectoryPreserve=yes",
        "SystemCallFilter=@system-service",
        "TimeoutAbortSec=10",
        "PrivateIPC=yes",
        "CapabilityBoundingSet=",
        "ExecStart=/usr/bin/neopro-runtime --config /etc/neopro/site.conf run",
        "StartLimitIntervalSec=0",
        // An update resumed before READY=1 may take minutes.
        "TimeoutStartSec=35min",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "missing '{line}' in\n{unit}"
        );
    }
    // The NEOPRO folders collapse into NEOPRO_ROOT; no wildcard write access.
    assert_eq!(unit.matches("ReadWritePaths=").count(), 1, "{unit}");
    // wasmtime needs W+X memory.
    assert!(
        !unit
            .lines()
            .any(|l| l.starts_with("MemoryDenyWriteExecute"))
    );
}

#[test]
fn folders_outside_the_root_and_a_custom_state_path_are_listed() -> TestResult {
    let text = "NEOPRO_ROOT=/srv/neopro\nVIDEOS_PATH=/media/usb/videos\nSTATE_PATH=/srv/state\n";
    let config = SiteConfig::from_sources(Some((Path::new("s"), text)), &|_| None)?;
    let p = UnitParams::for_config(
        Some(&config),
        Path::new("/b"),
        Path::new("/c"),
        "u",
        "g",
        30,
    );
    assert_eq!(
        p.rw_paths,
        [
            PathBuf::from("/media/usb/videos"),
            PathBuf::from("/srv/neopro"),
            PathBuf::from("/srv/state")
        ]
    );
    assert_eq!(p.state_directory, None);
    Ok(())
}

#[test]
fn the_polkit_rule_allows_only_start_stop_restart_of_listed_units_and_reboot() {
    let rule = render_polkit("neopro", &["neopro-app.service".to_owned()]);
    assert!(rule.contains("subject.user !== \"neopro\""));
    assert!(rule.contains("var units = [\"neopro-app.service\"];"));
    // update_software stops and starts the apps; restart_service restarts.
    assert!(
        rule.contains("var verbs = [\"start\", \"stop\", \"restart\"];"),
        "{rule}"
    );
    assert!(rule.contains("verbs.indexOf(action.lookup(\"verb\")) >= 0 &&"));
    assert!(rule.contains("units.indexOf(action.lookup(\"unit\")) >= 0)"));
    for verb in ["enable", "disable", "mask", "reload", "kill"] {
        assert!(!rule.contains(&format!("\"{verb}\"")), "{verb} in {rule}");
    }
    assert!(rule.contains("org.freedesktop.login1.reboot"));
    assert_eq!(rule.matches("polkit.Result.YES").count(), 2);
}

#[test]
fn root_mode_writes_the_files_and_runs_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let conf = fixture(dir.path(), false)?;
    let env = no_env;
    let ctx = super::super::Context::new(Some(&conf), &env);
    let root = dir.path().join("root");
    let mut a = args();
    a.root = Some(root.clone());
    a.allow_units = vec!["kiosk".to_owned()];
    let mut out = Vec::new();
    run(&a, &ctx, &mut out)?;
    let unit_path = root.join("etc/systemd/system/neopro-runtime.service");
    let unit = std::fs::read_to_string(&unit_path)?;
    let neopro = dir.path().join("home/pi/neopro");
    assert!(
        unit.contains(&format!("ReadWritePaths=-{}\n", neopro.display())),
        "{unit}"
    );
    assert!(unit.contains(&format!(
        "ExecStart=/usr/bin/neopro-runtime --config {} run\n",
        conf.display()
    )));
    assert_eq!(
        std::fs::metadata(&unit_path)?.permissions().mode() & 0o777,
        0o644
    );
    let rule = std::fs::read_to_string(root.join("etc/polkit-1/rules.d/50-neopro-runtime.rules"))?;
    assert!(rule.contains("\"kiosk.service\""), "{rule}");
    let printed = String::from_utf8(out)?;
    assert!(printed.contains(
        "not run (--root): useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin neopro"
    ), "{printed}");
    assert!(printed.contains("not run (--root): systemctl daemon-reload"));
    assert!(printed.contains("not run (--root): systemctl restart neopro-runtime.service"));
    assert!(printed.contains(&format!("not run (--root): chmod 0600 {}", conf.display())));
    Ok(())
}

#[test]
fn dry_run_prints_every_file_and_command_and_writes_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let conf = fixture(dir.path(), true)?;
    let env = no_env;
    let ctx = super::super::Context::new(Some(&conf), &env);
    let root = dir.path().join("root");
    let mut a = args();
    a.root = Some(root.clone());
    a.dry_run = true;
    let mut out = Vec::new();
    run(&a, &ctx, &mut out)?;
    let printed = String::from_utf8(out)?;
    assert!(
        printed.contains(&format!(
            "--- would write {} (mode 0644) ---\n# neopro-runtime: the NEOPRO device agent.",
            root.join("etc/systemd/system/neopro-runtime.service")
                .display()
        )),
        "{printed}"
    );
    assert!(
        printed.contains("--- would write ")
            && printed.contains("50-neopro-runtime.rules (mode 0644) ---\n// Written")
    );
    assert!(printed.contains("would run: systemctl enable neopro-runtime.service"));
    // The user exists in this /etc: not created again.
    assert!(!printed.contains("useradd"), "{printed}");
    assert!(!root.join("etc/systemd").exists());
    Ok(())
}

#[test]
fn bad_names_are_refused() {
    let dir = tempfile::tempdir().ok();
    let conf = dir
        .as_ref()
        .map(|d| d.path().join("none.conf"))
        .unwrap_or_default();
    let mut a = args();
    a.allow_units = vec!["../../evil".to_owned()];
    let err = plan(&a, &conf, Path::new("/nonexistent"))
        .map(|_| ())
        .map_err(|e| e.to_string());
    assert_eq!(err, Err("'../../evil' is not a valid unit name".to_owned()));
    let mut a = args();
    a.user = "-o".to_owned();
    let err = plan(&a, &conf, Path::new("/nonexistent"))
        .map(|_| ())
        .map_err(|e| e.to_string());
    assert_eq!(
        err,
        Err("'-o' is not a valid user or group name".to_owned())
    );
}

#[test]
fn folders_get_acls_that_also_cover_what_is_created_later() -> TestResult {
    let dir = tempfile::tempdir()?;
    let conf = fixture(dir.path(), true)?;
    let etc = dir.path().join("root/etc");
    let gid = std::fs::metadata(dir.path().join("home/pi/neopro"))?.gid();
    let name = if gid == 0 { "root" } else { "pi" };
    let mut a = args();
    a.group = Some(name.to_owned());
    let plan = plan(&a, &conf, &etc)?;
    let neopro = dir.path().join("home/pi/neopro").display().to_string();
    let entries = format!("u:neopro:rwX,d:u:neopro:rwX,g:{name}:rwX,d:g:{name}:rwX");
    assert!(
        plan.commands.contains(&vec![
            "setfacl".to_owned(),
            "-R".to_owned(),
            "-P".to_owned(),
            "-m".to_owned(),
            entries.clone(),
            neopro.clone()
        ]),
        "{:?}",
        plan.commands
    );
    assert!(
        !plan
            .commands
            .iter()
            .any(|c| c[0] == "chmod" && c[1] == "-R"),
        "no one-time chmod: {:?}",
        plan.commands
    );
    assert!(
        plan.files[0]
            .contents
            .contains(&format!("\nGroup={name}\n"))
    );
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains(&neopro) && n.contains("created there later")),
        "{:?}",
        plan.notes
    );
    // Recorded for purge.
    let record = plan
        .files
        .iter()
        .find(|f| f.path == Path::new(ACL_RECORD))
        .map(|f| f.contents.clone())
        .unwrap_or_default();
    assert!(record.contains(&format!("\ntree {neopro}\n")), "{record}");
    Ok(())
}

#[test]
fn a_parent_folder_the_agent_cannot_enter_is_opened_to_it_alone() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    let conf = fixture(dir.path(), true)?;
    let etc = dir.path().join("root/etc");
    let home = dir.path().join("home/pi");
    // Debian 12: home folders are 0700.
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700))?;
    let plan = plan(&args(), &conf, &etc)?;
    let shown = home.display().to_string();
    let grant = vec![
        "setfacl".to_owned(),
        "-m".to_owned(),
        "u:neopro:x".to_owned(),
        shown.clone(),
    ];
    assert!(plan.commands.contains(&grant), "{:?}", plan.commands);
    let note = plan.notes.iter().find(|n| n.starts_with(&shown));
    assert!(
        note.is_some_and(|n| n.contains("mode 0700") && n.contains("could not enter it")),
        "{:?}",
        plan.notes
    );
    // Folders it can already enter are left alone.
    assert!(
        !plan
            .commands
            .iter()
            .any(|c| c[0] == "setfacl" && c[1] == "-m" && c[3] == dir.path().display().to_string()),
        "{:?}",
        plan.commands
    );
    // The grant comes after the user exists and before the restart.
    let at = |pred: &dyn Fn(&Vec<String>) -> bool| plan.commands.iter().position(pred);
    let granted = at(&|c| *c == grant);
    let restart = at(&|c| c.get(1).is_some_and(|v| v == "restart"));
    assert!(granted < restart, "{:?}", plan.commands);
    Ok(())
}

#[test]
fn the_polkit_rule_lists_the_agent_unit_named_in_site_conf() -> TestResult {
    let dir = tempfile::tempdir()?;
    let conf = fixture(dir.path(), true)?;
    let etc = dir.path().join("root/etc");
    let stock = plan(&args(), &conf, &etc)?;
    let rule = &stock.files[1].contents;
    assert_eq!(
        rule.matches("\"neopro-runtime.service\"").count(),
        1,
        "{rule}"
    );

    let mut text = std::fs::read_to_string(&conf)?;
    text.push_str("AGENT_SERVICE=kiosk-agent\n");
    std::fs::write(&conf, text)?;
    let custom = plan(&args(), &conf, &etc)?;
    let rule = &custom.files[1].contents;
    assert!(rule.contains("\"kiosk-agent.service\""), "{rule}");
    assert!(rule.contains("\"neopro-runtime.service\""), "{rule}");
    assert!(!rule.contains("neopro-sync-agent"), "{rule}");

    // A unit added to MANAGED_SERVICES is one the agent will be asked to
    // restart: the rule must let it.
    let mut text = std::fs::read_to_string(&conf)?;
    text.push_str("MANAGED_SERVICES=neopro-app,mpv-kiosk\n");
    std::fs::write(&conf, text)?;
    let managed = plan(&args(), &conf, &etc)?;
    let rule = &managed.files[1].contents;
    assert!(rule.contains("\"mpv-kiosk.service\""), "{rule}");
    Ok(())
}

#[test]
fn paths_systemd_would_split_or_expand_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let conf = fixture(dir.path(), true)?;
    let etc = dir.path().join("root/etc");
    for bad in [
        "/opt/neo pro/bin",
        "/opt/100%/bin",
        "/opt/$HOME/bin",
        "/opt/a\"b",
    ] {
        let mut a = args();
        a.binary = Some(PathBuf::from(bad));
        let err = plan(&a, &conf, &etc).map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err(format!(
                "'{bad}' cannot go in the systemd unit as is (it contains a space, a quote, a \
                 backslash, '%', '$' or a control character, which systemd would split or \
                 expand): use a path without them"
            ))
        );
    }
    // A folder of site.conf with a space: same refusal, nothing planned.
    let spaced = dir.path().join("my box");
    std::fs::create_dir_all(&spaced)?;
    let conf2 = spaced.join("site.conf");
    std::fs::copy(&conf, &conf2)?;
    let err = plan(&args(), &conf2, &etc).map(|_| ());
    assert!(
        matches!(&err, Err(InstallError::UnsafePath(p)) if p.ends_with("my box/site.conf")),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn files_are_replaced_whole_with_their_mode_and_no_temp_left() -> TestResult {
    let dir = tempfile::tempdir()?;
    let conf = fixture(dir.path(), true)?;
    let env = no_env;
    let ctx = super::super::Context::new(Some(&conf), &env);
    let root = dir.path().join("root");
    let rules = root.join("etc/polkit-1/rules.d");
    std::fs::create_dir_all(&rules)?;
    let rule_path = rules.join("50-neopro-runtime.rules");
    std::fs::write(&rule_path, "old rule")?;
    std::fs::set_permissions(&rule_path, std::fs::Permissions::from_mode(0o600))?;
    // A hard link sees the old inode: a rename leaves it untouched, an
    // in-place write would change it.
    let old_link = dir.path().join("old-rule-link");
    std::fs::hard_link(&rule_path, &old_link)?;
    let mut a = args();
    a.root = Some(root.clone());
    run(&a, &ctx, &mut Vec::new())?;
    assert_eq!(std::fs::read_to_string(&old_link)?, "old rule");
    let rule = std::fs::read_to_string(&rule_path)?;
    assert!(rule.starts_with("// Written by"), "{rule}");
    assert_eq!(
        std::fs::metadata(&rule_path)?.permissions().mode() & 0o777,
        0o644
    );
    let leftovers: Vec<String> = std::fs::read_dir(&rules)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    Ok(())
}
