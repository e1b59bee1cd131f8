use super::*;
use crate::prompt::{Nobody, Scripted};

/// A box with agent state, site.conf and a systemctl double that logs its
/// arguments (and fails `stop` when `fail-stop` exists).
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Result<Fixture, Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let f = Fixture { dir };
        let systemctl = f.path("systemctl");
        std::fs::write(
            &systemctl,
            format!(
                "#!/bin/sh\necho \"$*\" >>{log}\n[ \"$1\" = stop ] && [ -e {fail} ] && \
                 {{ echo 'Failed to stop: access denied' >&2; exit 1; }}\nexit 0\n",
                log = f.path("calls").display(),
                fail = f.path("fail-stop").display()
            ),
        )?;
        std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755))?;
        std::fs::write(
            f.path("site.conf"),
            format!(
                "SITE_ID=club-1\nSITE_API_KEY=secret\nSTATE_PATH={}\nSYSTEMCTL_PATH={}\n",
                f.path("state").display(),
                systemctl.display()
            ),
        )?;
        std::fs::create_dir_all(f.path("state/journal"))?;
        std::fs::write(f.path("state/journal/cmd-1.json"), "{}")?;
        std::fs::create_dir_all(f.path("state/agent/1.4.0"))?;
        std::fs::write(f.path("state/took-over.json"), "{}")?;
        // A link in the state must go, its target stay.
        std::fs::write(f.path("outside"), "kept")?;
        std::os::unix::fs::symlink(f.path("outside"), f.path("state/link"))?;
        Ok(f)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn run(
        &self,
        args: &ResetArgs,
        prompter: &mut dyn Prompter,
    ) -> (Result<(), ResetError>, String) {
        let env = |_: &str| None;
        let ctx = crate::Context::new(Some(&self.path("site.conf")), &env);
        let mut out = Vec::new();
        let result = reset(args, &ctx, prompter, &mut out);
        (result, String::from_utf8_lossy(&out).into_owned())
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.path("calls")).unwrap_or_default()
    }

    fn state_entries(&self) -> usize {
        std::fs::read_dir(self.path("state")).map_or(0, |r| r.count())
    }
}

#[test]
fn reset_stops_the_agent_and_deletes_its_state_keeping_site_conf()
-> Result<(), Box<dyn std::error::Error>> {
    let f = Fixture::new()?;
    let mut answers = Scripted::new(&["reset"]);
    let (result, out) = f.run(
        &ResetArgs {
            remove_site_conf: false,
            yes: false,
        },
        &mut answers,
    );
    result?;
    assert_eq!(answers.asked, vec!["Type 'reset' to go on".to_owned()]);
    assert!(
        out.contains("This stops neopro-runtime, deletes its state in"),
        "{out}"
    );
    assert_eq!(f.calls(), "stop neopro-runtime\n");
    assert_eq!(f.state_entries(), 0);
    assert!(f.path("state").is_dir(), "the StateDirectory itself stays");
    assert_eq!(std::fs::read_to_string(f.path("outside"))?, "kept");
    assert!(std::fs::read_to_string(f.path("site.conf"))?.contains("SITE_API_KEY=secret"));
    assert!(out.contains("4 entries of"), "{out}");
    Ok(())
}

#[test]
fn remove_site_conf_also_disables_the_unit() -> Result<(), Box<dyn std::error::Error>> {
    let f = Fixture::new()?;
    let (result, out) = f.run(
        &ResetArgs {
            remove_site_conf: true,
            yes: true,
        },
        &mut Nobody,
    );
    result?;
    assert_eq!(f.calls(), "stop neopro-runtime\ndisable neopro-runtime\n");
    assert!(!f.path("site.conf").exists());
    assert_eq!(f.state_entries(), 0);
    assert!(out.contains("`neopro-runtime register`"), "{out}");
    Ok(())
}

#[test]
fn without_a_confirmation_nothing_changes() -> Result<(), Box<dyn std::error::Error>> {
    let f = Fixture::new()?;
    let args = ResetArgs {
        remove_site_conf: true,
        yes: false,
    };
    let (result, _) = f.run(&args, &mut Nobody);
    assert_eq!(
        result.err().map(|e| e.to_string()).as_deref(),
        Some(
            "reset deletes this box's agent state and asks first: run it in a terminal, or pass --yes"
        )
    );
    let (result, _) = f.run(&args, &mut Scripted::new(&["yes"]));
    assert!(matches!(result, Err(ResetError::Cancelled)));
    assert_eq!(f.calls(), "");
    assert_eq!(f.state_entries(), 4);
    assert!(f.path("site.conf").exists());
    Ok(())
}

/// An agent that cannot be stopped keeps its state: nothing is deleted
/// under a running agent.
#[test]
fn a_failed_stop_deletes_nothing() -> Result<(), Box<dyn std::error::Error>> {
    let f = Fixture::new()?;
    std::fs::write(f.path("fail-stop"), "")?;
    let (result, _) = f.run(
        &ResetArgs {
            remove_site_conf: true,
            yes: true,
        },
        &mut Nobody,
    );
    assert_eq!(
        result.err().map(|e| e.to_string()).as_deref(),
        Some(
            "`systemctl stop neopro-runtime` failed (Failed to stop: access denied); nothing was deleted"
        )
    );
    assert_eq!(f.state_entries(), 4);
    assert!(f.path("site.conf").exists());
    Ok(())
}
