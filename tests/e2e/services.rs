//! restart_service and reboot against a recording systemctl double: only
//! managed and granted units, argument vectors only, and the reboot / agent
//! restart only after the result reached the central server.
#![allow(clippy::expect_used)]

use neopro_e2e::central::Central;
use neopro_e2e::fake_systemctl::FakeSystemctl;
use neopro_e2e::process::wait_for;
use neopro_e2e::{Site, error_of};
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WAIT: Duration = Duration::from_secs(20);

fn site_with_fake(extra: &str) -> (Site, FakeSystemctl) {
    let fake = FakeSystemctl::temp();
    let site = Site::with_extra(&format!("{}\n{extra}", fake.conf_line()));
    (site, fake)
}

#[test]
fn restart_service_restarts_and_checks_the_unit() {
    let (site, fake) = site_with_fake("");
    let result = site.run("restart-service", json!({"service": "nginx"}));
    assert_eq!(
        result.ok(),
        Some(json!({"success": true, "status": "active"}))
    );
    assert_eq!(fake.calls(), vec!["restart nginx", "is-active nginx"]);
}

#[test]
fn restart_service_accepts_the_service_suffix() {
    let (site, fake) = site_with_fake("");
    let result = site.run(
        "restart-service",
        json!({"service": "neopro-admin.service"}),
    );
    assert_eq!(
        result.ok(),
        Some(json!({"success": true, "status": "active"}))
    );
    assert_eq!(
        fake.calls(),
        vec![
            "restart neopro-admin.service",
            "is-active neopro-admin.service"
        ]
    );
}

#[test]
fn restart_service_reports_a_unit_that_does_not_come_back() {
    let (site, fake) = site_with_fake("");
    fake.fail_start("neopro-app");
    let (kind, message) = error_of(site.run("restart-service", json!({"service": "neopro-app"})));
    assert_eq!(kind, "failed");
    assert_eq!(
        message,
        "systemctl restart neopro-app failed: Job for neopro-app.service failed because the control process exited with error code."
    );

    let marker = site.path("broken");
    std::fs::write(&marker, "").expect("marker");
    fake.failed_while("neopro-admin", &marker);
    let (kind, message) = error_of(site.run("restart-service", json!({"service": "neopro-admin"})));
    assert_eq!(kind, "failed");
    assert_eq!(
        message,
        "Service neopro-admin is not active after restart (state: failed)"
    );
}

#[test]
fn restart_service_touches_only_managed_units_and_never_a_shell() {
    let (site, fake) = site_with_fake("MANAGED_SERVICES=neopro-app");
    let (kind, message) = error_of(site.run("restart-service", json!({"service": "nginx"})));
    assert_eq!(kind, "not-permitted");
    assert_eq!(
        message,
        "service 'nginx' is not managed by the agent on this box (MANAGED_SERVICES in site.conf: neopro-app)"
    );
    let (kind, message) = error_of(site.run("restart-service", json!({"service": "ssh"})));
    assert_eq!(kind, "not-permitted");
    assert_eq!(
        message,
        "component 'restart-service' lacks the grant services containing \"ssh\""
    );
    let (kind, message) =
        error_of(site.run("restart-service", json!({"service": "nginx; reboot"})));
    assert_eq!(kind, "invalid-input");
    assert_eq!(
        message,
        "'nginx; reboot' is not a valid service name (letters, digits and :-_.@ only)"
    );
    let (kind, _) = error_of(site.run("restart-service", json!({})));
    assert_eq!(kind, "invalid-input");
    assert!(
        fake.calls().is_empty(),
        "systemctl never ran: {:?}",
        fake.calls()
    );
}

#[test]
fn the_upstream_agent_name_means_the_agent_itself() {
    // MANAGED_SERVICES may name the agent either way.
    let (site, fake) =
        site_with_fake("AGENT_SERVICE=neopro-runtime\nMANAGED_SERVICES=neopro-runtime");
    let result = site.run("restart-service", json!({"service": "neopro-sync-agent"}));
    assert_eq!(
        result.ok(),
        Some(json!({"success": true, "status": "restarting",
            "message": "neopro-sync-agent restarts as soon as this result is delivered"}))
    );
    assert!(
        fake.calls().is_empty(),
        "after delivery only: {:?}",
        fake.calls()
    );
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reboot_result_arrives_before_the_reboot_and_the_reboot_is_journaled() {
    let central = Central::start(&[("site-1", "key-1")]).await;
    let (site, fake) = site_with_fake("");
    let conf = site.write_agent_conf(&central.url(), "site-1", "key-1");
    let mut text = std::fs::read_to_string(&conf).expect("conf");
    // The agent runs as neopro-runtime; the server's UI still names it
    // neopro-sync-agent, which must never restart some other unit.
    text.push_str(&format!(
        "{}\nALLOWED_COMMANDS=reboot,restart_service\nAGENT_SERVICE=neopro-runtime\n",
        fake.conf_line()
    ));
    std::fs::write(&conf, text).expect("conf");
    let agent = site.start_agent();
    central.nth("heartbeat", 1, WAIT).await;

    central.send_command("r-1", "reboot", json!({}));
    let result = central.result_of("r-1", WAIT).await;
    let result_seen = now_ns();
    assert_eq!(
        result,
        json!({"commandId": "r-1", "status": "success", "result": {
            "success": true, "message": "Rebooting as soon as this result is delivered"}})
    );
    let pending = site.path("state/reboot-pending.json");
    wait_for("the reboot call", WAIT, || fake.reboot_at_ns().is_some()).await;
    let reboot_at = fake.reboot_at_ns().unwrap_or(0);
    assert!(
        reboot_at > result_seen,
        "reboot asked {} ms before the result was seen",
        (result_seen.saturating_sub(reboot_at)) / 1_000_000
    );
    assert!(pending.is_file(), "pending reboot journaled");
    assert_eq!(fake.calls(), vec!["reboot --no-block"]);

    // The agent's own unit: answer first, restart after delivery.
    central.send_command(
        "s-1",
        "restart_service",
        json!({"service": "neopro-sync-agent"}),
    );
    let result = central.result_of("s-1", WAIT).await;
    let result_seen = now_ns();
    assert_eq!(result["result"]["status"], json!("restarting"), "{result}");
    assert_eq!(
        fake.calls(),
        vec!["reboot --no-block"],
        "nothing before delivery"
    );
    wait_for("the agent restart", WAIT, || {
        fake.calls()
            .iter()
            .any(|c| c == "restart --no-block neopro-runtime")
    })
    .await;
    assert!(now_ns() > result_seen);
    // --no-block: systemd stops the agent, and the systemctl it spawned,
    // before a blocking restart returns (it then logged a false error).
    assert_eq!(
        fake.calls(),
        vec!["reboot --no-block", "restart --no-block neopro-runtime"]
    );
    agent.stop().await;

    // The next start logs the reboot's outcome and forgets it.
    let agent = site.start_agent();
    wait_for("the pending reboot to be handled", WAIT, || {
        !pending.exists()
    })
    .await;
    agent.stop().await;
}

const HOSTAPD: &str = "interface=wlan0\nssid=Club\nchannel=6\nwpa_passphrase=oldsecret\n";

/// A site whose HOSTAPD_CONF lives in its own folder, holding `text`.
fn hotspot_site(text: Option<&str>) -> (Site, FakeSystemctl) {
    let fake = FakeSystemctl::temp();
    let mut site = Site::with_extra(&fake.conf_line());
    site.config.hostapd_conf = site.path("hostapd/hostapd.conf");
    std::fs::create_dir_all(site.path("hostapd")).expect("hostapd folder");
    if let Some(text) = text {
        site.write("hostapd/hostapd.conf", text);
    }
    (site, fake)
}

#[test]
fn update_hotspot_changes_the_first_lines_and_restarts_hostapd() {
    use std::os::unix::fs::PermissionsExt;
    let (site, fake) = hotspot_site(Some(HOSTAPD));
    let conf = site.path("hostapd/hostapd.conf");
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // A backup an older agent left world-readable.
    site.write(
        "hostapd/hostapd.conf.backup",
        "wpa_passphrase=older secret\n",
    );
    std::fs::set_permissions(
        site.path("hostapd/hostapd.conf.backup"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let result = site.run(
        "hotspot",
        json!({"ssid": "Club $& Wi-Fi", "password": "new secret 1"}),
    );
    assert_eq!(
        result.ok(),
        Some(
            json!({"success": true, "message": "Hotspot configuration updated",
                    "ssidUpdated": true, "passwordUpdated": true})
        )
    );
    assert_eq!(
        std::fs::read_to_string(&conf).ok().as_deref(),
        Some("interface=wlan0\nssid=Club $& Wi-Fi\nchannel=6\nwpa_passphrase=new secret 1\n")
    );
    assert_eq!(
        std::fs::metadata(&conf)
            .map(|m| m.permissions().mode() & 0o777)
            .ok(),
        Some(0o600),
        "the passphrase file stays private"
    );
    assert_eq!(
        std::fs::read_to_string(site.path("hostapd/hostapd.conf.backup"))
            .ok()
            .as_deref(),
        Some(HOSTAPD)
    );
    assert_eq!(
        std::fs::metadata(site.path("hostapd/hostapd.conf.backup"))
            .map(|m| m.permissions().mode() & 0o777)
            .ok(),
        Some(0o600),
        "the backup holds the old passphrase: as private as the original"
    );
    assert_eq!(fake.calls(), vec!["restart hostapd", "is-active hostapd"]);
}

#[test]
fn hotspot_injections_are_refused_before_anything_changes() {
    let (site, fake) = hotspot_site(Some(HOSTAPD));
    for data in [
        json!({"ssid": "Club\nwpa_passphrase=attacker1"}),
        json!({"password": "longenough\nmacaddr_acl=0"}),
        json!({"ssid": "Club\r"}),
        json!({"password": "tab\there!!"}),
    ] {
        let (kind, message) = error_of(site.run("hotspot", data.clone()));
        assert_eq!(kind, "invalid-input", "{data}");
        assert_eq!(
            message,
            "ssid and password may not contain line breaks or control characters"
        );
    }
    let (_, message) = error_of(site.run("hotspot", json!({})));
    assert_eq!(message, "At least one of ssid or password must be provided");
    assert_eq!(
        std::fs::read_to_string(site.path("hostapd/hostapd.conf"))
            .ok()
            .as_deref(),
        Some(HOSTAPD)
    );
    assert!(fake.calls().is_empty());
}

#[test]
fn a_hostapd_that_does_not_come_back_gets_its_previous_configuration() {
    let (site, fake) = hotspot_site(Some(HOSTAPD));
    fake.fail_start("hostapd");
    let (kind, message) = error_of(site.run("hotspot", json!({"ssid": "Broken"})));
    assert_eq!(kind, "failed");
    assert_eq!(
        message,
        "Failed to restart hostapd with new configuration - backup restored"
    );
    assert_eq!(
        std::fs::read_to_string(site.path("hostapd/hostapd.conf"))
            .ok()
            .as_deref(),
        Some(HOSTAPD)
    );
    assert_eq!(fake.calls(), vec!["restart hostapd", "restart hostapd"]);
}

#[test]
fn get_hotspot_config_never_returns_the_passphrase() {
    let (site, _fake) = hotspot_site(Some(HOSTAPD));
    let sandbox = site.sandbox();
    let loaded = site.load(&sandbox, "hotspot");
    let request = neopro_runtime::sandbox::CommandRequest {
        id: "h-1".into(),
        command_type: "get_hotspot_config".into(),
        data: "{}".into(),
    };
    let result: serde_json::Value =
        serde_json::from_str(&sandbox.execute(&loaded, &request, None).expect("runs"))
            .expect("json");
    assert_eq!(
        result,
        json!({"success": true, "configured": true, "ssid": "Club", "channel": 6, "isActive": true})
    );
    let (site, _fake) = hotspot_site(None);
    let result = site.run("hotspot", json!({"ssid": "x"}));
    assert_eq!(
        error_of(result),
        (
            "not-found".to_owned(),
            "hostapd.conf not found - hotspot not configured on this device".to_owned()
        )
    );
}

#[test]
fn network_diagnostics_answers_in_time_with_the_upstream_shape() {
    use neopro_e2e::http::{Fault, FileServer};
    use neopro_runtime::host::HostServices;
    use neopro_runtime::sandbox::{CommandRequest, Sandbox};
    let site = Site::new();
    let central = FileServer::start(b"ok".to_vec(), Fault::None);
    let central_url = central.url("").trim_end_matches('/').to_owned();
    let mut services = HostServices::from_config(&site.config);
    // Only 127.0.0.1 in tests.
    services.system.diagnostics = neopro_runtime::platform::network_probes::Targets {
        internet: "127.0.0.1".into(),
        dns_name: "localhost".into(),
        central_url: central_url.clone(),
    };
    let sandbox = Sandbox::new(std::sync::Arc::new(services), None).expect("sandbox");
    let loaded = site.load(&sandbox, "network-diagnostics");
    let request = CommandRequest {
        id: "n-1".into(),
        command_type: "network_diagnostics".into(),
        data: "{}".into(),
    };
    let started = std::time::Instant::now();
    let json = sandbox.execute(&loaded, &request, None).expect("runs");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
    let result: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(result["success"], json!(true));
    for key in [
        "timestamp",
        "internet",
        "central_server",
        "dns",
        "gateway",
        "interfaces",
        "wifi",
        "stability",
    ] {
        assert!(result.get(key).is_some(), "{key} missing: {result}");
    }
    assert_eq!(result["central_server"]["url"], json!(central_url));
    assert_eq!(result["central_server"]["http_status"], json!(200));
    assert_eq!(result["central_server"]["reachable"], json!(true));
    assert!(result["central_server"]["http_latency_ms"].is_u64());
    assert_eq!(result["dns"]["working"], json!(true), "{result}");
    assert_eq!(result["dns"]["resolved_ip"], json!("127.0.0.1"));
    assert_eq!(result["internet"]["packets_sent"], json!(5));
    assert!(
        result["interfaces"]
            .as_array()
            .is_some_and(|l| l.iter().all(|i| i["name"] != json!("lo")))
    );
}
