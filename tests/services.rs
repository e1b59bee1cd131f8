//! restart_service and reboot against a recording systemctl double: only
//! managed and granted units, argument vectors only, and the reboot / agent
//! restart only after the result reached the central server.
#![allow(clippy::expect_used)]

use neopro_e2e::central::Central;
use neopro_e2e::fake_systemctl::FakeSystemctl;
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

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

async fn wait_for(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reboot_result_arrives_before_the_reboot_and_the_reboot_is_journaled() {
    let central = Central::start(&[("site-1", "key-1")]).await;
    let (site, fake) = site_with_fake("");
    let conf = site.write_agent_conf(&central.url(), "site-1", "key-1");
    let mut text = std::fs::read_to_string(&conf).expect("conf");
    text.push_str(&format!(
        "{}\nALLOWED_COMMANDS=reboot,restart_service\nAGENT_SERVICE=neopro-sync-agent\n",
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
    wait_for("the reboot call", || fake.reboot_at_ns().is_some()).await;
    let reboot_at = fake.reboot_at_ns().unwrap_or(0);
    assert!(
        reboot_at > result_seen,
        "reboot asked {} ms before the result was seen",
        (result_seen.saturating_sub(reboot_at)) / 1_000_000
    );
    assert!(pending.is_file(), "pending reboot journaled");
    assert_eq!(fake.calls(), vec!["reboot"]);

    // The agent's own unit: answer first, restart after delivery.
    central.send_command(
        "s-1",
        "restart_service",
        json!({"service": "neopro-sync-agent"}),
    );
    let result = central.result_of("s-1", WAIT).await;
    let result_seen = now_ns();
    assert_eq!(result["result"]["status"], json!("restarting"), "{result}");
    assert!(!fake.calls().iter().any(|c| c.contains("neopro-sync-agent")));
    wait_for("the agent restart", || {
        fake.calls()
            .iter()
            .any(|c| c == "restart neopro-sync-agent")
    })
    .await;
    assert!(now_ns() > result_seen);
    agent.stop().await;

    // The next start logs the reboot's outcome and forgets it.
    let agent = site.start_agent();
    wait_for("the pending reboot to be handled", || !pending.exists()).await;
    agent.stop().await;
}
