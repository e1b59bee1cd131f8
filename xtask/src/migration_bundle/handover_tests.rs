//! The handover script of a built bundle, run with stand-ins for
//! `systemctl`, `dpkg`, `dpkg-deb` and `node` that log every call (real
//! systemd runs it in the migration group of `cargo xtask system-test`).
//! Each test causes the fault: a bundle without its package, a package for
//! another architecture, a package swapped or linked in the web app's
//! folder, a site.conf written on Windows.

use super::{Contents, write_to};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A box laid out for the handover: the bundle extracted into
/// `neopro/sync-agent`, site.conf, the record folder, a systemd unit folder
/// with the Node agent's unit, and the stand-ins on PATH.
struct Box_ {
    dir: tempfile::TempDir,
}

const STUBS: &[(&str, &str)] = &[
    // `is-enabled` fails while `$DISABLED` exists (a package left disabled
    // by an earlier rollback); `neopro-runtime install-service` enables.
    (
        "systemctl",
        "#!/bin/sh\necho \"systemctl $*\" >>\"$CALLS\"\n\
         case \"$1\" in is-active) echo active ;; \
         is-enabled) [ -e \"$DISABLED\" ] && exit 1 ;; esac\nexit 0\n",
    ),
    (
        "neopro-runtime",
        "#!/bin/sh\necho \"neopro-runtime $*\" >>\"$CALLS\"\nrm -f \"$DISABLED\"\n",
    ),
    // `dpkg -i` stands for the agent authenticating: link-status.json
    // written, dated later than the handover's stamp (file times are
    // coarser than the few microseconds between the two).
    (
        "dpkg",
        "#!/bin/sh\necho \"dpkg $*\" >>\"$CALLS\"\n\
         case \"$1\" in --print-architecture) echo \"$BOX_ARCH\" ;; \
         -i) printf '{\"lastAuthenticated\":1}' >\"$AUTH_STATUS\" \
         && touch -d \"@$(($(date +%s) + 2))\" \"$AUTH_STATUS\" ;; esac\nexit 0\n",
    ),
    (
        "dpkg-deb",
        "#!/bin/sh\necho \"dpkg-deb $*\" >>\"$CALLS\"\necho \"$DEB_ARCH\"\n",
    ),
    ("node", "#!/bin/sh\necho v18.19.0\n"),
];

impl Box_ {
    fn new(deb: &[u8], contents: Contents, conf: &str) -> anyhow::Result<Box_> {
        let dir = tempfile::tempdir()?;
        let deb_path = dir.path().join("neopro-runtime_9.9.9_amd64.deb");
        std::fs::write(&deb_path, deb)?;
        let b = Box_ { dir };
        b.install(&deb_path, contents)?;
        std::fs::write(b.path("site.conf"), conf)?;
        std::fs::create_dir_all(b.path("units"))?;
        // The runtime folder systemd makes for the unit.
        std::fs::create_dir_all(b.path("run"))?;
        std::fs::write(
            b.path("units/neopro-sync-agent.service"),
            "[Service]\nExecStart=/usr/bin/node agent.js\n",
        )?;
        std::fs::create_dir_all(b.path("bin"))?;
        for (name, text) in STUBS {
            super::write_file(&b.path("bin").join(name), text, 0o755)?;
        }
        Ok(b)
    }

    /// Extracts the bundle of `deb` over `neopro/` (as the Node agent's
    /// update_software does).
    fn install(&self, deb: &Path, contents: Contents) -> anyhow::Result<()> {
        let out = self.path("bundle.tar.gz");
        write_to(&self.path("stage"), &out, deb, contents)?;
        std::fs::create_dir_all(self.path("neopro"))?;
        super::super::run(
            Command::new("tar")
                .arg("-xzf")
                .arg(&out)
                .arg("-C")
                .arg(self.path("neopro")),
        )
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn deb_in_bundle(&self) -> PathBuf {
        self.path("neopro/sync-agent/neopro-runtime/neopro-runtime_9.9.9_amd64.deb")
    }

    /// Runs the handover; its exit code and journal (stdout).
    fn run(&self, box_arch: &str, deb_arch: &str) -> anyhow::Result<(i32, String)> {
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("sh")
            .arg(self.path("neopro/sync-agent/neopro-runtime/handover.sh"))
            .env("PATH", path)
            .env("CALLS", self.path("calls"))
            .env("DISABLED", self.path("disabled"))
            .env("BOX_ARCH", box_arch)
            .env("DEB_ARCH", deb_arch)
            // The agent's link status lives in its runtime folder (the
            // unit's tmpfs on a box; RUNTIME_PATH in these site.confs).
            .env("AUTH_STATUS", self.path("run/link-status.json"))
            .env("NEOPRO_SITE_CONF", self.path("site.conf"))
            .env("NEOPRO_HANDOVER_DIR", self.path("record"))
            .env("NEOPRO_SYSTEMD_DIR", self.path("units"))
            .output()?;
        Ok((
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ))
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.path("calls")).unwrap_or_default()
    }

    fn record(&self) -> String {
        std::fs::read_to_string(self.path("record/handover-done")).unwrap_or_default()
    }

    fn conf(&self) -> String {
        format!(
            "SITE_ID=site-1\nSITE_API_KEY=key-1\nSTATE_PATH={}\nRUNTIME_PATH={}\nMIGRATION_DEADLINE_SECS=10\n",
            self.path("state").display(),
            self.path("run").display()
        )
    }
}

const PACKAGE: &[u8] = b"stand-in package bytes";

fn registered() -> anyhow::Result<Box_> {
    let b = Box_::new(PACKAGE, Contents::Complete, "")?;
    std::fs::write(b.path("site.conf"), b.conf())?;
    Ok(b)
}

fn sha(bytes: &[u8]) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("f"), bytes)?;
    super::sha256(&dir.path().join("f"))
}

/// An early failure (before the Node agent was stopped) restarts it: it is
/// active, waiting in the shim, and `start` would do nothing (issue 24,
/// point 1).
fn gave_back_early(b: &Box_, code: i32, log: &str, reason: &str) -> anyhow::Result<()> {
    assert_eq!(code, 1, "{log}");
    let calls = b.calls();
    assert!(
        calls.contains("systemctl restart neopro-sync-agent.service"),
        "{calls}"
    );
    assert!(!calls.contains("systemctl stop"), "{calls}");
    assert!(!calls.contains("dpkg -i"), "{calls}");
    let record = b.record();
    assert!(
        record.starts_with(&format!("rolled back: {reason}")),
        "{record}"
    );
    assert!(
        record.contains(&format!("\ndeb-sha256 {}\n", sha(PACKAGE)?)),
        "{record}"
    );
    assert!(log.contains(reason), "{log}");
    assert!(
        !b.path("neopro/sync-agent/src/commands.js").exists(),
        "the shim stays"
    );
    Ok(())
}

#[test]
fn a_bundle_without_its_package_restarts_the_waiting_node_agent() -> anyhow::Result<()> {
    let b = Box_::new(PACKAGE, Contents::WithoutPackage, "")?;
    std::fs::write(b.path("site.conf"), b.conf())?;
    let (code, log) = b.run("amd64", "amd64")?;
    gave_back_early(&b, code, &log, "no neopro-runtime_9.9.9_amd64.deb in")
}

#[test]
fn a_package_for_another_architecture_restarts_the_waiting_node_agent() -> anyhow::Result<()> {
    let b = registered()?;
    let (code, log) = b.run("armhf", "amd64")?;
    gave_back_early(&b, code, &log, "the bundle is for amd64, this box is armhf")
}

#[test]
fn a_package_swapped_in_the_web_apps_folder_is_never_installed() -> anyhow::Result<()> {
    let b = registered()?;
    std::fs::write(b.deb_in_bundle(), b"another package")?;
    let (code, log) = b.run("amd64", "amd64")?;
    gave_back_early(
        &b,
        code,
        &log,
        "neopro-runtime_9.9.9_amd64.deb is not the package this bundle was built with",
    )
}

#[test]
fn a_package_behind_a_link_is_never_read_as_root() -> anyhow::Result<()> {
    let b = registered()?;
    let elsewhere = b.path("elsewhere.deb");
    std::fs::write(&elsewhere, PACKAGE)?;
    std::fs::remove_file(b.deb_in_bundle())?;
    std::os::unix::fs::symlink(&elsewhere, b.deb_in_bundle())?;
    let (code, log) = b.run("amd64", "amd64")?;
    gave_back_early(&b, code, &log, "no neopro-runtime_9.9.9_amd64.deb in")
}

/// site.conf read by the agent's rules: `export KEY=` with no value is an
/// unregistered box (the sed reader did not see the key at all), and a line
/// the agent would refuse is named; both before anything changes.
#[test]
fn a_site_conf_without_a_site_or_that_the_agent_refuses_gives_the_box_back() -> anyhow::Result<()> {
    let unregistered = |b: &Box_| {
        format!(
            "export SITE_ID=site-1\nexport SITE_API_KEY=\nSTATE_PATH={}\n",
            b.path("state").display()
        )
    };
    let refused = |b: &Box_| format!("{}not a setting\n", b.conf());
    type Text = fn(&Box_) -> String;
    let cases: [(Text, &str); 2] = [
        (unregistered, " has no SITE_ID or SITE_API_KEY"),
        (
            refused,
            ": line 6 is not KEY=VALUE (neopro-runtime would refuse the file)",
        ),
    ];
    for (conf, reason) in cases {
        let b = registered()?;
        std::fs::write(b.path("site.conf"), conf(&b))?;
        let (code, log) = b.run("amd64", "amd64")?;
        let reason = format!("{}{reason}", b.path("site.conf").display());
        gave_back_early(&b, code, &log, &reason)?;
    }
    Ok(())
}

/// A site.conf saved on Windows, with `export` and comments: the handover
/// finds STATE_PATH where the agent does and takes over at once (the sed
/// reader looked for `state\r/link-status.json` until the deadline).
#[test]
fn a_crlf_site_conf_with_export_and_comments_takes_over() -> anyhow::Result<()> {
    let b = registered()?;
    let state = b.path("state");
    std::fs::write(
        b.path("site.conf"),
        format!(
            "# box\r\nexport SITE_ID=site-1 # the club\r\nSITE_API_KEY=\"key-1\"\r\n\
             STATE_PATH={}\r\nRUNTIME_PATH={}\r\nMIGRATION_DEADLINE_SECS=10\r\n",
            state.display(),
            b.path("run").display()
        ),
    )?;
    let (code, log) = b.run("amd64", "amd64")?;
    assert_eq!(code, 0, "{log}");
    assert!(state.join("took-over.json").is_file(), "{log}");
    assert!(b.record().starts_with("took over\n"), "{}", b.record());
    let calls = b.calls();
    let stopped = calls.find("systemctl stop neopro-sync-agent.service");
    let installed = calls.find("dpkg -i ");
    assert!(stopped.is_some() && stopped < installed, "{calls}");
    // Installed from the root-owned copy, not from the web app's folder.
    assert!(
        calls.contains(&format!("dpkg -i {}/package.", b.path("record").display())),
        "{calls}"
    );
    Ok(())
}

/// Upstream's scripts run `systemctl restart neopro-sync-agent` whenever the
/// unit exists: the takeover masks it, its unit file kept aside (issue 24,
/// point 3; real systemd refusing the restart: the system test).
#[test]
fn the_takeover_masks_the_old_unit_keeping_its_file() -> anyhow::Result<()> {
    let b = registered()?;
    let (code, log) = b.run("amd64", "amd64")?;
    assert_eq!(code, 0, "{log}");
    let calls = b.calls();
    assert!(
        calls.contains("systemctl disable neopro-sync-agent.service"),
        "{calls}"
    );
    assert!(
        calls.contains("systemctl mask neopro-sync-agent.service"),
        "{calls}"
    );
    assert!(!b.path("units/neopro-sync-agent.service").exists());
    assert!(b.path("record/neopro-sync-agent.service").is_file());
    Ok(())
}

/// A rollback holds for its package only: the same bundle does nothing
/// again, a bundle with another package runs again; a takeover is final
/// (issue 24, point 2).
#[test]
fn a_rollback_holds_for_its_package_only() -> anyhow::Result<()> {
    let b = registered()?;
    let (code, _) = b.run("armhf", "amd64")?;
    assert_eq!(code, 1);
    std::fs::remove_file(b.path("calls"))?;
    let (code, log) = b.run("armhf", "amd64")?;
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("this package was already rolled back"),
        "{log}"
    );
    assert_eq!(b.calls(), "", "the same package must not be tried again");

    let fixed = b.path("fixed/neopro-runtime_9.9.9_amd64.deb");
    std::fs::create_dir_all(b.path("fixed"))?;
    std::fs::write(&fixed, b"the fixed package")?;
    b.install(&fixed, Contents::Complete)?;
    let (code, log) = b.run("amd64", "amd64")?;
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("this is another one: trying again"), "{log}");
    assert!(b.record().starts_with("took over\n"), "{}", b.record());

    std::fs::remove_file(b.path("calls"))?;
    b.install(
        &b.path("neopro-runtime_9.9.9_amd64.deb"),
        Contents::Complete,
    )?;
    let (code, log) = b.run("amd64", "amd64")?;
    assert_eq!(code, 0, "{log}");
    assert_eq!(b.calls(), "", "after a takeover nothing runs again");
    Ok(())
}

/// `handover.sh site-conf` on the shipped example reads what the agent
/// reads (the agent's side of this comparison is in runtime's config tests).
#[test]
fn the_example_site_conf_reads_as_the_agent_reads_it() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |key: &str| -> anyhow::Result<String> {
        let out = Command::new("sh")
            .arg(root.join("config/migration/handover.sh"))
            .arg("site-conf")
            .arg(root.join("config/site.conf.example"))
            .arg(key)
            .output()?;
        assert!(out.status.success());
        Ok(String::from_utf8(out.stdout)?)
    };
    assert_eq!(read("STATE_PATH")?, "/var/lib/neopro-runtime");
    assert_eq!(read("SITE_ID")?, "");
    assert_eq!(read("LOCATION_REGION")?, "Bretagne");
    assert_eq!(read("COMPONENTS_PATH")?, "", "commented out");
    Ok(())
}

/// After a rollback neopro-runtime stays installed, stopped and disabled; a
/// fixed bundle upgrades it, and the package's postinst only try-restarts an
/// upgraded agent: the handover runs install-service itself (found by the
/// system test's retry with a fixed bundle).
#[test]
fn a_package_left_disabled_by_a_rollback_is_enabled_again() -> anyhow::Result<()> {
    let b = registered()?;
    std::fs::write(b.path("disabled"), "")?;
    let (code, log) = b.run("amd64", "amd64")?;
    assert_eq!(code, 0, "{log}");
    let calls = b.calls();
    let installed = calls.find("dpkg -i ");
    let enabled = calls.find("neopro-runtime install-service");
    assert!(installed.is_some() && installed < enabled, "{calls}");
    assert!(b.record().starts_with("took over\n"), "{}", b.record());
    // Installed and enabled by the package itself: install-service is not
    // run a second time.
    let fresh = registered()?;
    let (code, log) = fresh.run("amd64", "amd64")?;
    assert_eq!(code, 0, "{log}");
    assert!(
        !fresh.calls().contains("install-service"),
        "{}",
        fresh.calls()
    );
    Ok(())
}

/// A state folder the agent already owns (left by a rolled-back handover):
/// systemd does not hand its files over again, so took-over.json is given
/// to the folder's owner (else the agent cannot read it and the heartbeats
/// never say where the box came from: found by the system test's retry);
/// a link the agent's user planted there is replaced, never written through.
#[test]
fn took_over_json_belongs_to_the_agent_and_no_link_is_followed() -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let b = registered()?;
    let state = b.path("state");
    std::fs::create_dir_all(&state)?;
    let target = b.path("target");
    std::fs::write(&target, "untouched")?;
    std::os::unix::fs::symlink(&target, state.join("took-over.json"))?;
    let chown = Command::new("chown")
        .arg("4321:4321")
        .arg(&state)
        .status()?;
    assert!(chown.success());
    let (code, log) = b.run("amd64", "amd64")?;
    assert_eq!(code, 0, "{log}");
    let meta = std::fs::symlink_metadata(state.join("took-over.json"))?;
    assert!(meta.is_file(), "{log}");
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (4321, 4321, 0o600)
    );
    assert_eq!(std::fs::read_to_string(&target)?, "untouched");
    let text = std::fs::read_to_string(state.join("took-over.json"))?;
    assert!(
        text.starts_with(r#"{"agent":"neopro-sync-agent","runtime":"Node.js v18.19.0","#),
        "{text}"
    );
    Ok(())
}
