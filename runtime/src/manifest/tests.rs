use super::*;
use crate::platform::systemctl::is_valid_unit_name;

#[test]
fn parses_a_full_manifest() -> Result<(), ManifestError> {
    let m = Manifest::parse(
        "t.toml",
        r#"
name = "deploy-video"
version = "1.2.0"
commands = ["deploy_video", "delete_video"]
progress-event = "deploy_progress"
[limits]
memory-mib = 128
timeout-secs = 900
[grants]
system = true
services = ["neopro-app"]
files = { videos = "rw", config = "ro" }
logs = { units = ["*"], agent-log = true }
download = { max-bytes = 1000 }
"#,
    )?;
    assert_eq!(m.commands, vec!["deploy_video", "delete_video"]);
    assert_eq!(m.grants.access(RootName::Videos), Some(Access::ReadWrite));
    assert_eq!(m.grants.access(RootName::Config), Some(Access::ReadOnly));
    assert_eq!(m.grants.access(RootName::Backups), None);
    assert!(m.grants.may_read_journal("anything"));
    assert_eq!(m.memory_bytes(), 128 << 20);
    assert_eq!(
        m.grants.download,
        Some(DownloadGrant {
            max_bytes: 1000,
            hosts: Vec::new()
        })
    );
    Ok(())
}

#[test]
fn defaults_grant_nothing() -> Result<(), ManifestError> {
    let m = Manifest::parse(
        "t.toml",
        "name = \"x\"\nversion = \"1\"\ncommands = [\"x\"]\n",
    )?;
    assert_eq!(m.grants, Grants::default());
    assert_eq!(m.limits, Limits::default());
    assert!(m.grant_summary().is_empty());
    assert!(!m.grants.may_read_journal("neopro-app"));
    Ok(())
}

fn error_of(text: &str) -> String {
    match Manifest::parse("t.toml", text) {
        Ok(_) => "accepted".to_owned(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn rejects_typos_and_bad_values() {
    assert!(
        error_of(
            "name = \"x\"\nversion = \"1\"\ncommands = [\"x\"]\n[grants]\nmay_reboot = true\n"
        )
        .contains("unknown field `may_reboot`")
    );
    assert_eq!(
        error_of("name = \"X y\"\nversion = \"1\"\ncommands = [\"x\"]\n"),
        "manifest t.toml: name 'X y' must be 1-64 characters of a-z, 0-9 and '-'"
    );
    assert_eq!(
        error_of("name = \"x\"\nversion = \"1\"\ncommands = []\n"),
        "manifest t.toml: commands must list at least one command type"
    );
    assert_eq!(
        error_of(
            "name = \"x\"\nversion = \"1\"\ncommands = [\"x\"]\n[grants]\nservices = [\"a; rm -rf /\"]\n"
        ),
        "manifest t.toml: grants.services: 'a; rm -rf /' is not a valid unit name"
    );
    assert_eq!(
        error_of("name = \"x\"\nversion = \"1\"\ncommands = [\"x\"]\n[limits]\nmemory-mib = 0\n"),
        "manifest t.toml: limits.memory-mib must be between 1 and 1024, got 0"
    );
    assert!(
        error_of(
            "name = \"x\"\nversion = \"1\"\ncommands = [\"x\"]\n[grants.files]\nhome = \"rw\"\n"
        )
        .contains("unknown variant `home`")
    );
}

#[test]
fn unit_names_are_checked_character_by_character() {
    assert!(is_valid_unit_name("neopro-app"));
    assert!(is_valid_unit_name("getty@tty1.service"));
    assert!(!is_valid_unit_name("neopro-app; touch x"));
    assert!(!is_valid_unit_name("--since=yesterday"));
    assert!(!is_valid_unit_name(""));
    assert!(!is_valid_unit_name("a/b"));
}

#[test]
fn read_only_is_checked_against_the_grants() -> Result<(), ManifestError> {
    let base = "name = \"x\"\nversion = \"1\"\ncommands = [\"x\"]\nread-only = true\n";
    let m = Manifest::parse(
        "t.toml",
        &format!("{base}[grants]\nsystem = true\nfiles = {{ config = \"ro\" }}\n"),
    )?;
    assert!(m.read_only);
    let refused = Manifest::parse(
        "t.toml",
        &format!("{base}[grants]\nfiles = {{ videos = \"rw\" }}\n"),
    );
    assert_eq!(
        refused.err().map(|e| e.to_string()),
        Some(
            "manifest t.toml: read-only = true (line 4), but the grant files.videos = \"rw\" (line 6) lets it change the box; remove one of the two"
                .to_owned()
        )
    );
    assert!(Manifest::parse("t.toml", &format!("{base}[grants]\nmay-reboot = true\n")).is_err());
    Ok(())
}

#[test]
fn read_only_with_a_writable_config_store_is_refused_naming_both_lines() {
    let text = "name = \"x\"\nversion = \"1\"\ncommands = [\"x\"]\nread-only = true\n\n[grants]\nsystem = true\nconfig-store = \"rw\"\n";
    assert_eq!(
        Manifest::parse("t.toml", text).err().map(|e| e.to_string()),
        Some(
            "manifest t.toml: read-only = true (line 4), but the grant config-store = \"rw\" (line 8) lets it change the box; remove one of the two"
                .to_owned()
        )
    );
    // Reading it is fine.
    let ro = text.replace("config-store = \"rw\"", "config-store = \"ro\"");
    assert!(Manifest::parse("t.toml", &ro).is_ok());
}

#[test]
fn scheduling_properties_are_declared() -> Result<(), ManifestError> {
    let m = Manifest::parse(
        "t.toml",
        "name = \"u\"\nversion = \"1\"\ncommands = [\"u\"]\nresource = \"software\"\nmaintenance-window = [\"u\"]\nresume-at-start = \"update/state.json\"\n",
    )?;
    assert_eq!(m.resource, Some(Resource::Software));
    assert_eq!(m.maintenance_window, vec!["u"]);
    assert_eq!(m.resume_at_start.as_deref(), Some("update/state.json"));
    let plain = Manifest::parse(
        "t.toml",
        "name = \"x\"\nversion = \"1\"\ncommands = [\"x\"]\n",
    )?;
    assert_eq!(plain.resource, None);
    assert!(plain.maintenance_window.is_empty());
    assert_eq!(plain.resume_at_start, None);
    assert!(plain.periodic.is_empty());
    Ok(())
}

#[test]
fn periodic_jobs_are_declared_and_must_be_its_own_commands() -> Result<(), ManifestError> {
    let m = Manifest::parse(
        "t.toml",
        "name = \"e\"\nversion = \"1\"\ncommands = [\"expire\"]\nperiodic = [\"expire\"]\n",
    )?;
    assert_eq!(m.periodic, vec!["expire"]);
    let err = Manifest::parse(
        "t.toml",
        "name = \"e\"\nversion = \"1\"\ncommands = [\"expire\"]\nperiodic = [\"other\"]\n",
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        err.contains("periodic names 'other', which is not one of its commands"),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_check_before_the_window_is_declared_for_its_window_commands_only() -> Result<(), ManifestError>
{
    let head = "name = \"i\"\nversion = \"1\"\ncommands = [\"install\", \"undo\"]\nmaintenance-window = [\"install\"]\n";
    let m = Manifest::parse(
        "t.toml",
        &format!("{head}check-before-window = [\"install\"]\n"),
    )?;
    assert_eq!(m.check_before_window, vec!["install"]);
    let err = Manifest::parse(
        "t.toml",
        &format!("{head}check-before-window = [\"undo\"]\n"),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert_eq!(
        err,
        "manifest t.toml: check-before-window names 'undo', which is not one of its maintenance-window commands"
    );
    Ok(())
}

#[test]
fn bad_scheduling_properties_are_refused_by_name() {
    assert_eq!(
        error_of(
            "name = \"x\"\nversion = \"1\"\ncommands = [\"x\"]\nresume-at-start = \"../etc/passwd\"\n"
        ),
        "manifest t.toml: resume-at-start '../etc/passwd' must be a relative path inside the staging root"
    );
    assert_eq!(
        error_of(
            "name = \"x\"\nversion = \"1\"\ncommands = [\"x\"]\nmaintenance-window = [\"y\"]\n"
        ),
        "manifest t.toml: maintenance-window names 'y', which is not one of its commands"
    );
    assert!(
        error_of("name = \"x\"\nversion = \"1\"\ncommands = [\"x\"]\nresource = \"disk\"\n")
            .starts_with("manifest t.toml is not valid: unknown variant `disk`"),
    );
}

#[test]
fn a_progress_rule_needs_its_progress_event() -> Result<(), ManifestError> {
    assert_eq!(
        error_of(
            "name = \"x\"\nversion = \"1\"\ncommands = [\"x\"]\nprogress-needs-deployment = true\n"
        ),
        "manifest t.toml: progress-needs-deployment is set but no progress-event is declared"
    );
    let declared = Manifest::parse(
        "t.toml",
        "name = \"x\"\nversion = \"1\"\ncommands = [\"x\"]\nprogress-event = \"x_progress\"\nprogress-needs-deployment = true\n",
    )?;
    assert!(declared.progress_needs_deployment);
    let default = Manifest::parse(
        "t.toml",
        "name = \"x\"\nversion = \"1\"\ncommands = [\"x\"]\nprogress-event = \"x_progress\"\n",
    )?;
    assert!(!default.progress_needs_deployment);
    Ok(())
}

#[test]
fn api_version_must_be_one_the_host_links() {
    assert_eq!(
        error_of("name = \"x\"\nversion = \"1\"\ncommands = [\"x\"]\napi-version = \"0.1\"\n"),
        "accepted"
    );
    assert_eq!(
        error_of("name = \"x\"\nversion = \"1\"\ncommands = [\"x\"]\napi-version = \"0.2\"\n"),
        "accepted"
    );
    assert_eq!(
        error_of("name = \"x\"\nversion = \"1\"\ncommands = [\"x\"]\napi-version = \"0.3\"\n"),
        "manifest t.toml: api-version '0.3' is not supported by this agent (it links neopro:agent 0.1, 0.2); rebuild the component against a supported version or update the agent"
    );
}

#[test]
fn download_hosts_are_patterns() {
    assert_eq!(
        error_of(
            "name = \"x\"\nversion = \"1\"\ncommands = [\"x\"]\n[grants]\ndownload = { max-bytes = 1, hosts = [\"a b\"] }\n"
        ),
        "manifest t.toml: grants.download.hosts: 'a b' is not a host name, \"*\" or \"*.domain\""
    );
    assert!(host_matches("*.neopro.fr", "cdn.neopro.fr"));
    assert!(!host_matches("*.neopro.fr", "neopro.fr"));
    assert!(!host_matches("*.neopro.fr", "evilneopro.fr"));
    assert!(host_matches("CDN.example", "cdn.example"));
}
