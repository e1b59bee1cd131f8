use super::*;

fn manifest(grants: &str) -> Manifest {
    let text = format!(
        "name = \"probe\"\nversion = \"1.0.0\"\ncommands = [\"probe\"]\n[grants]\n{grants}"
    );
    match Manifest::parse("probe.toml", &text) {
        Ok(m) => m,
        Err(e) => panic!("test manifest does not parse: {e}"),
    }
}

fn refusal(result: Result<(), WitError>) -> String {
    match result {
        Err(WitError::NotPermitted(m)) => m,
        other => panic!("expected not-permitted, got {other:?}"),
    }
}

#[test]
fn roots_ro_rw_and_missing() {
    let m = manifest("files = { videos = \"rw\", logs = \"ro\" }");
    let g = Granter::new(&m);
    assert!(
        g.check(Grant::Root(RootName::Videos, Access::ReadWrite))
            .is_ok()
    );
    assert!(
        g.check(Grant::Root(RootName::Videos, Access::ReadOnly))
            .is_ok()
    );
    assert!(
        g.check(Grant::Root(RootName::Logs, Access::ReadOnly))
            .is_ok()
    );
    assert_eq!(
        refusal(g.check(Grant::Root(RootName::Logs, Access::ReadWrite))),
        "component 'probe' has read-only access to 'logs' (grant files.logs = \"rw\" to write)"
    );
    assert_eq!(
        refusal(g.check(Grant::Root(RootName::Config, Access::ReadOnly))),
        "component 'probe' has no access to 'config' (missing grant files.config = \"ro\")"
    );
}

#[test]
fn boolean_grants() {
    let none = manifest("");
    let all = manifest("system = true\nlocal-app = true\nmay-reboot = true");
    for (grant, line) in [
        (Grant::System, "system = true"),
        (Grant::LocalApp, "local-app = true"),
        (Grant::Reboot, "may-reboot = true"),
    ] {
        assert!(Granter::new(&all).check(grant).is_ok(), "{line}");
        assert_eq!(
            refusal(Granter::new(&none).check(grant)),
            format!("component 'probe' lacks the grant {line}")
        );
    }
}

#[test]
fn services() {
    let m = manifest("services = [\"neopro-app\"]");
    let g = Granter::new(&m);
    assert!(g.check(Grant::Service("neopro-app")).is_ok());
    assert!(g.check(Grant::AnyService).is_ok());
    assert_eq!(
        refusal(g.check(Grant::Service("ssh"))),
        "component 'probe' lacks the grant services containing \"ssh\""
    );
    let none = manifest("");
    assert_eq!(
        refusal(Granter::new(&none).check(Grant::AnyService)),
        "component 'probe' lacks the grant services (at least one unit)"
    );
}

#[test]
fn agent_unit_names_are_interchangeable() {
    let m = manifest("services = [\"neopro-sync-agent\"]");
    let is_agent = |u: &str| u == "neopro-runtime" || u == "neopro-sync-agent";
    let g = Granter::new(&m);
    assert!(g.check_service("neopro-runtime", is_agent).is_ok());
    assert!(g.check_service("neopro-sync-agent", is_agent).is_ok());
    assert_eq!(
        refusal(g.check_service("neopro-app", is_agent)),
        "component 'probe' lacks the grant services containing \"neopro-app\""
    );
}

#[test]
fn journal_and_agent_log() {
    let m = manifest("logs = { units = [\"neopro-app\"], agent-log = true }");
    let g = Granter::new(&m);
    assert!(g.check(Grant::JournalUnit("neopro-app")).is_ok());
    assert!(g.check(Grant::AgentLog).is_ok());
    assert_eq!(
        refusal(g.check(Grant::JournalUnit("ssh"))),
        "component 'probe' lacks the grant logs.units containing \"ssh\""
    );
    let any = manifest("logs = { units = [\"*\"] }");
    assert!(Granter::new(&any).check(Grant::JournalUnit("ssh")).is_ok());
    assert_eq!(
        refusal(Granter::new(&any).check(Grant::AgentLog)),
        "component 'probe' lacks the grant logs.agent-log = true"
    );
}

#[test]
fn download_hosts() {
    let none = manifest("");
    assert_eq!(
        refusal(Granter::new(&none).check(Grant::Download {
            host: "cdn.example"
        })),
        "component 'probe' lacks the grant download"
    );
    let listed =
        manifest("download = { max-bytes = 10, hosts = [\"cdn.example\", \"*.neopro.fr\"] }");
    let g = Granter::new(&listed);
    assert!(
        g.check(Grant::Download {
            host: "cdn.example"
        })
        .is_ok()
    );
    assert!(
        g.check(Grant::Download {
            host: "CDN.Example"
        })
        .is_ok()
    );
    assert!(
        g.check(Grant::Download {
            host: "videos.neopro.fr"
        })
        .is_ok()
    );
    assert_eq!(
        refusal(g.check(Grant::Download {
            host: "neopro.fr.evil"
        })),
        "component 'probe' may not download from 'neopro.fr.evil' (add \"neopro.fr.evil\" to grants.download.hosts)"
    );
    let undeclared = manifest("download = { max-bytes = 10 }");
    assert!(
        Granter::new(&undeclared)
            .check(Grant::Download {
                host: "cdn.example"
            })
            .is_err(),
        "no hosts declared means none"
    );
    let any = manifest("download = { max-bytes = 10, hosts = [\"*\"] }");
    assert!(
        Granter::new(&any)
            .check(Grant::Download { host: "x.y" })
            .is_ok()
    );
}

#[test]
fn config_store_has_its_own_grant() {
    let files_only = manifest("files = { config = \"rw\" }");
    assert_eq!(
        refusal(Granter::new(&files_only).check(Grant::ConfigStore(Access::ReadWrite))),
        "component 'probe' lacks the grant config-store = \"rw\""
    );
    let ro = manifest("config-store = \"ro\"");
    assert!(
        Granter::new(&ro)
            .check(Grant::ConfigStore(Access::ReadOnly))
            .is_ok()
    );
    assert_eq!(
        refusal(Granter::new(&ro).check(Grant::ConfigStore(Access::ReadWrite))),
        "component 'probe' may only read the configuration store (grant config-store = \"rw\" to write)"
    );
    let rw = manifest("config-store = \"rw\"");
    assert!(
        Granter::new(&rw)
            .check(Grant::ConfigStore(Access::ReadWrite))
            .is_ok()
    );
}
