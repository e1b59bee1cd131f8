//! The shim of a built bundle, loaded by Node.js as the restarted Node
//! agent loads it (`require('./commands')`), with stand-ins for `sudo` and
//! `systemctl` on PATH. The fault of issue 24 point 1: the handover gives
//! the box back before it stopped the Node agent, which waited in the shim
//! with no timeout. Skipped, saying so, where `node` is missing.

use super::{Contents, write_to};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

struct Layout {
    dir: tempfile::TempDir,
    sha: String,
}

impl Layout {
    fn new() -> anyhow::Result<Layout> {
        let dir = tempfile::tempdir()?;
        let deb = dir.path().join("neopro-runtime_9.9.9_amd64.deb");
        std::fs::write(&deb, b"stand-in package")?;
        let sha = super::sha256(&deb)?;
        let out = dir.path().join("bundle.tar.gz");
        write_to(&dir.path().join("stage"), &out, &deb, Contents::Complete)?;
        let neopro = dir.path().join("neopro");
        std::fs::create_dir_all(neopro.join("sync-agent/src/commands"))?;
        std::fs::write(
            neopro.join("sync-agent/src/commands/index.js"),
            "module.exports = { own: true };\n",
        )?;
        super::super::run(
            Command::new("tar")
                .arg("-xzf")
                .arg(&out)
                .arg("-C")
                .arg(&neopro),
        )?;
        std::fs::create_dir_all(dir.path().join("bin"))?;
        std::fs::create_dir_all(dir.path().join("record"))?;
        Ok(Layout { dir, sha })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn stub(&self, name: &str, body: &str) -> anyhow::Result<()> {
        super::write_file(
            &self.path("bin").join(name),
            &format!("#!/bin/sh\necho \"{name} $*\" >>\"$CALLS\"\n{body}"),
            0o755,
        )
    }

    fn record(&self, text: &str) -> anyhow::Result<()> {
        Ok(std::fs::write(self.path("record/handover-done"), text)?)
    }

    /// Loads the shim as the agent does; what it exported, its stderr, how
    /// long it took. Bounded: a shim that waits for ever fails the test.
    fn load(&self) -> anyhow::Result<(String, String, Duration)> {
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let started = Instant::now();
        let out = Command::new("timeout")
            .args(["20", "node", "-e"])
            .arg("const c = require(process.argv[1]); process.stdout.write('exported ' + JSON.stringify(c))")
            .arg(self.path("neopro/sync-agent/src/commands"))
            .env("PATH", path)
            .env("CALLS", self.path("calls"))
            .env("RECORD", self.path("record/handover-done"))
            .env("NEOPRO_HANDOVER_DIR", self.path("record"))
            .output()?;
        anyhow::ensure!(
            out.status.code() != Some(124),
            "the shim still waits after 20 s"
        );
        // What the shim printed itself comes first.
        let stdout = String::from_utf8_lossy(&out.stdout);
        let exported = stdout.split_once("exported ").map(|(_, e)| e.to_owned());
        Ok((
            exported.unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            started.elapsed(),
        ))
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.path("calls")).unwrap_or_default()
    }
}

fn node_missing() -> bool {
    let missing = Command::new("node").arg("--version").output().is_err();
    if missing {
        eprintln!("node is not installed: shim test skipped");
    }
    missing
}

/// The handover gives the box back before stopping the Node agent: the
/// agent's own commands are loaded within seconds, not never.
#[test]
fn an_early_rollback_releases_the_waiting_node_agent() -> anyhow::Result<()> {
    if node_missing() {
        return Ok(());
    }
    let l = Layout::new()?;
    // sudo systemd-run "starts" the handover, which at once records a
    // rollback of this package; its unit still runs (restarting the agent).
    l.stub(
        "sudo",
        &format!(
            "printf 'rolled back: no package\\ndeb-sha256 {}\\n' >\"$RECORD\"\n",
            l.sha
        ),
    )?;
    l.stub("systemctl", "echo active\n")?;
    let (exported, stderr, took) = l.load()?;
    assert_eq!(exported, r#"{"own":true}"#, "{stderr}");
    assert!(
        stderr.contains(
            "neopro-runtime handover: rolled back: no package; the Node.js agent runs on"
        ),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        l.calls()
            .contains("sudo -n systemd-run --unit=neopro-handover")
    );
    Ok(())
}

/// The handover's unit ended (killed, crashed) without an outcome: the agent
/// runs on rather than wait for a stop that never comes.
#[test]
fn a_handover_that_ended_without_an_outcome_releases_the_node_agent() -> anyhow::Result<()> {
    if node_missing() {
        return Ok(());
    }
    let l = Layout::new()?;
    l.stub("sudo", "exit 0\n")?;
    l.stub("systemctl", "echo inactive\nexit 3\n")?;
    let (exported, stderr, _) = l.load()?;
    assert_eq!(exported, r#"{"own":true}"#, "{stderr}");
    assert!(
        stderr.contains("the handover ended without an outcome"),
        "{stderr}"
    );
    Ok(())
}

/// A rollback of this bundle's package: the handover is not started again
/// (issue 24 point 2), the reason is logged by the Node agent.
#[test]
fn a_rolled_back_package_is_not_tried_again_but_another_one_is() -> anyhow::Result<()> {
    if node_missing() {
        return Ok(());
    }
    let l = Layout::new()?;
    l.stub("sudo", "exit 1\n")?;
    l.stub("systemctl", "echo inactive\n")?;
    l.record(&format!(
        "rolled back: no authentication\ndeb-sha256 {}\n",
        l.sha
    ))?;
    let (exported, stderr, _) = l.load()?;
    assert_eq!(exported, r#"{"own":true}"#, "{stderr}");
    assert!(
        stderr.contains("rolled back: no authentication"),
        "{stderr}"
    );
    assert_eq!(l.calls(), "", "the handover was started again");
    // A rollback of another package: this bundle starts the handover.
    l.record(&format!(
        "rolled back: no authentication\ndeb-sha256 {}\n",
        "0".repeat(64)
    ))?;
    let _ = l.load()?;
    assert!(l.calls().contains("sudo -n systemd-run"), "{}", l.calls());
    Ok(())
}

/// After a takeover the Node agent never runs as the site again.
#[test]
fn after_a_takeover_the_node_agent_exits() -> anyhow::Result<()> {
    if node_missing() {
        return Ok(());
    }
    let l = Layout::new()?;
    l.stub("sudo", "exit 1\n")?;
    l.record(&format!("took over\ndeb-sha256 {}\n", "0".repeat(64)))?;
    let (exported, stderr, _) = l.load()?;
    assert_eq!(exported, "", "{stderr}");
    assert!(
        stderr.contains("neopro-runtime took this box over"),
        "{stderr}"
    );
    assert_eq!(l.calls(), "");
    Ok(())
}
