//! A component built against `neopro:agent@0.1.0` still runs on this agent
//! (wit/README.md, versioning policy rule 2; issue #25 item 4): the test
//! guest `api-v0-1`, built with plain wit-bindgen against the frozen
//! `wit/frozen/0.1`, links, and its `archive.stage-agent-release` — the
//! function 0.2 moved to `agent-update` — refuses a forged release and
//! stages a signed one through the same host code as the 0.2 interface.
// A broken fixture should stop the test loudly.
#![allow(clippy::expect_used)]

use super::self_update::{NEW, agent_release, agent_state, key_line, sign};
use neopro_e2e::release::names_in;
use neopro_e2e::{Site, components_dir, error_of, run_loaded};
use neopro_runtime::config::DEFAULT_AGENT_SERVICE;
use neopro_runtime::follow_up::{Action, Settled};
use neopro_runtime::selfupdate::own_arch;
use neopro_runtime::store::hash::sha256_hex;
use serde_json::json;

#[test]
fn a_component_built_against_0_1_links_and_stages_an_agent_release_through_archive() {
    let site = Site::with_extra(&key_line());
    let release = agent_release(NEW, own_arch(), "#!/bin/sh\necho new agent\n");
    std::fs::create_dir_all(site.path("state/staging")).expect("staging folder");
    std::fs::write(site.path("state/staging/agent.tar.gz"), &release).expect("release file");
    let sandbox = site.sandbox();

    let wasm = std::fs::read(components_dir().join("api-v0-1.wasm")).expect("test component");
    let described = sandbox.describe(&wasm).expect("a component");
    assert_eq!(described.links, Ok(()), "it links against this agent");
    for import in [
        "neopro:agent/archive@0.1.0",
        "neopro:agent/files@0.1.0",
        "neopro:agent/log@0.1.0",
    ] {
        assert!(
            described.imports.iter().any(|i| i == import),
            "imports {import}: {:?}",
            described.imports
        );
    }
    assert!(
        described
            .exports
            .iter()
            .any(|e| e == "neopro:agent/handler@0.1.0"),
        "exports the 0.1 handler: {:?}",
        described.exports
    );

    let loaded = site.load(&sandbox, "api-v0-1");
    let forged = run_loaded(
        &sandbox,
        &loaded,
        json!({"path": "agent.tar.gz", "version": NEW, "signature": sign("9.9.8", &release)}),
    );
    assert_eq!(
        error_of(forged),
        (
            "not-permitted".to_owned(),
            "agent release 9.9.9 refused: the update signature does not match any key of UPDATE_TRUSTED_KEYS".to_owned()
        )
    );
    assert_eq!(agent_state(&site), None, "no trial written");
    assert!(names_in(&site.path("state/agent")).is_empty(), "no slot");
    assert!(
        sandbox.services().follow_ups.is_empty(),
        "no restart registered"
    );

    let staged = run_loaded(
        &sandbox,
        &loaded,
        json!({
            "path": "agent.tar.gz", "version": NEW,
            "signature": sign(NEW, &release), "deploymentId": "dep-01",
        }),
    )
    .expect("staged");
    assert_eq!(
        staged,
        json!({"staged": NEW, "sha256": sha256_hex(&release)})
    );
    let trial = agent_state(&site)
        .and_then(|s| s.trial)
        .expect("trial written");
    assert_eq!(
        (
            trial.version.as_str(),
            trial.command_id.as_str(),
            trial.deployment_id.as_deref()
        ),
        (NEW, "test-command", Some("dep-01"))
    );
    assert_eq!(
        std::fs::read_to_string(site.path(&format!("state/agent/{NEW}/bin/neopro-runtime")))
            .expect("the staged binary"),
        "#!/bin/sh\necho new agent\n"
    );
    assert_eq!(
        sandbox.services().follow_ups.settle("test-command", true),
        Settled::RunNow(Action::IntoRelease(DEFAULT_AGENT_SERVICE.to_owned())),
        "the staging call registered the restart into the release: it runs as the command succeeds, and the new agent sends the result"
    );
}
