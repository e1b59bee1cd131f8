//! Service control and reboot through the service manager: systemd's
//! `systemctl` in production, a recording double in tests. Always an
//! argument vector, never a shell string, and every call is bounded in time
//! so a hung systemd cannot hang a command.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `systemctl start` waits for the unit to come up; a unit that takes longer
/// than this is reported as not starting.
const CALL_TIMEOUT: Duration = Duration::from_secs(90);
/// How often a running systemctl is checked for completion.
const POLL: Duration = Duration::from_millis(10);
/// Most output kept from one call (the messages are short).
const MAX_OUTPUT: u64 = 16 << 10;

/// Why a service-manager call failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServiceError {
    #[error("'{0}' is not a valid service name (letters, digits and :-_.@ only)")]
    InvalidName(String),
    #[error(
        "cannot run {program}: {detail} (is systemd's systemctl installed? see SYSTEMCTL_PATH)"
    )]
    Spawn { program: String, detail: String },
    #[error("systemctl {action} {unit} failed: {detail}")]
    Failed {
        action: &'static str,
        unit: String,
        detail: String,
    },
    #[error("systemctl {action} {unit} did not finish within {secs} s")]
    Timeout {
        action: &'static str,
        unit: String,
        secs: u64,
    },
}

/// What a finished systemctl said.
struct Output {
    success: bool,
    /// Ended by a signal rather than an exit code.
    killed: bool,
    stdout: String,
    stderr: String,
}

/// The box's service manager.
#[derive(Debug, Clone)]
pub struct ServiceManager {
    systemctl: PathBuf,
    timeout: Duration,
}

impl ServiceManager {
    pub fn new(systemctl: PathBuf) -> Self {
        ServiceManager {
            systemctl,
            timeout: CALL_TIMEOUT,
        }
    }

    /// The program it runs.
    pub fn program(&self) -> &Path {
        &self.systemctl
    }

    pub fn start(&self, unit: &str) -> Result<(), ServiceError> {
        self.change("start", unit)
    }

    pub fn stop(&self, unit: &str) -> Result<(), ServiceError> {
        self.change("stop", unit)
    }

    pub fn restart(&self, unit: &str) -> Result<(), ServiceError> {
        self.change("restart", unit)
    }

    /// Queues a restart and returns at once (`--no-block`): for the unit
    /// this process runs in, which systemd stops (with its children) before
    /// a blocking `systemctl restart` could report success.
    pub fn restart_no_block(&self, unit: &str) -> Result<(), ServiceError> {
        check_name(unit)?;
        let out = self.run("restart", unit, &["restart", "--no-block", unit])?;
        // systemd may stop the unit, and this systemctl with it, before it
        // exits: killed by a signal means the restart is under way (a
        // refusal exits with a code and says why on stderr).
        if out.success || (out.killed && out.stderr.trim().is_empty()) {
            Ok(())
        } else {
            Err(ServiceError::Failed {
                action: "restart",
                unit: unit.to_owned(),
                detail: first_line(&out.stderr, "exit status not 0"),
            })
        }
    }

    /// The unit's active state (`active`, `inactive`, `failed`, ...).
    /// `systemctl is-active` exits non-zero for every state but `active`;
    /// that is an answer, not a failure (upstream reported it as an error).
    pub fn is_active(&self, unit: &str) -> Result<String, ServiceError> {
        check_name(unit)?;
        let out = self.run("is-active", unit, &["is-active", unit])?;
        let state = out.stdout.trim();
        if state.is_empty() {
            return Err(ServiceError::Failed {
                action: "is-active",
                unit: unit.to_owned(),
                detail: first_line(&out.stderr, "no answer"),
            });
        }
        Ok(state.to_owned())
    }

    /// Reboots the box. `--no-block` queues the reboot and returns: the
    /// shutdown kills every process, this systemctl included, and a killed
    /// systemctl with nothing on stderr is the reboot under way, not a
    /// failure (a refusal exits with a code and says why).
    ///
    /// The call can also lose its reply to the shutdown it started:
    /// `systemctl reboot` asks logind over the system bus, logind queues the
    /// shutdown, and the bus may stop before the answer is written
    /// ("Connection reset by peer"). Then the service manager itself is
    /// asked whether the box is going down; only a box that is not is a
    /// failed reboot.
    pub fn reboot(&self) -> Result<(), ServiceError> {
        let out = self.run("reboot", "", &["reboot", "--no-block"])?;
        if out.success || (out.killed && out.stderr.trim().is_empty()) {
            return Ok(());
        }
        if lost_the_reply(&out.stderr) && self.shutting_down() {
            return Ok(());
        }
        Err(ServiceError::Failed {
            action: "reboot",
            unit: String::new(),
            detail: first_line(&out.stderr, "exit status not 0"),
        })
    }

    /// Whether the box is already shutting down: `is-system-running`
    /// answers `stopping` (with a non-zero exit, which is still an answer),
    /// or is itself killed by the shutdown.
    fn shutting_down(&self) -> bool {
        match self.run("is-system-running", "", &["is-system-running"]) {
            Ok(out) => out.killed || out.stdout.trim() == "stopping",
            Err(_) => false,
        }
    }

    fn change(&self, action: &'static str, unit: &str) -> Result<(), ServiceError> {
        check_name(unit)?;
        let out = self.run(action, unit, &[action, unit])?;
        if out.success {
            Ok(())
        } else {
            Err(ServiceError::Failed {
                action,
                unit: unit.to_owned(),
                detail: first_line(&out.stderr, "exit status not 0"),
            })
        }
    }

    fn run(&self, action: &'static str, unit: &str, args: &[&str]) -> Result<Output, ServiceError> {
        let mut child = spawn(&self.systemctl, args).map_err(|e| ServiceError::Spawn {
            program: self.systemctl.display().to_string(),
            detail: e.to_string(),
        })?;
        // Read the pipes on their own threads so a chatty child never blocks
        // on a full pipe while we wait for it.
        let stdout = child.stdout.take().map(reader);
        let stderr = child.stderr.take().map(reader);
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(ServiceError::Timeout {
                        action,
                        unit: unit.to_owned(),
                        secs: self.timeout.as_secs(),
                    });
                }
                Err(e) => {
                    return Err(ServiceError::Failed {
                        action,
                        unit: unit.to_owned(),
                        detail: e.to_string(),
                    });
                }
            }
        };
        let collect = |h: Option<std::thread::JoinHandle<String>>| {
            h.and_then(|h| h.join().ok()).unwrap_or_default()
        };
        use std::os::unix::process::ExitStatusExt;
        Ok(Output {
            success: status.success(),
            killed: status.signal().is_some(),
            stdout: collect(stdout),
            stderr: collect(stderr),
        })
    }
}

fn check_name(unit: &str) -> Result<(), ServiceError> {
    if is_valid_unit_name(unit) {
        Ok(())
    } else {
        Err(ServiceError::InvalidName(unit.to_owned()))
    }
}

/// Spawns the program; a program file that another thread of this process
/// has just written can be briefly "busy" (ETXTBSY): retried a few times.
fn spawn(program: &Path, args: &[&str]) -> std::io::Result<std::process::Child> {
    let mut attempt = 0;
    loop {
        let result = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match result {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempt < 5 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn reader(pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.take(MAX_OUTPUT).read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// The messages of a call whose connection closed under it, after the
/// request left: what a caller sees when the shutdown stops the bus.
fn lost_the_reply(stderr: &str) -> bool {
    const LOST: [&str; 4] = [
        "Connection reset by peer",
        "Transport endpoint is not connected",
        "Broken pipe",
        "Remote peer disconnected",
    ];
    LOST.iter().any(|m| stderr.contains(m))
}

fn first_line(text: &str, default: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(default)
        .to_owned()
}

/// systemd unit-name characters; never starting with `-` so that a name
/// can never be read as an option by the program it is passed to.
pub fn is_valid_unit_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":-_.@\\".contains(&b))
}

/// A systemctl double for tests: a real program that records its
/// arguments in `calls.log` next to it.
#[cfg(test)]
pub(crate) mod double {
    use super::ServiceManager;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    /// A systemctl double: records its arguments; `bad` fails to start;
    /// `down` is inactive.
    pub(crate) fn fake(dir: &Path) -> std::io::Result<ServiceManager> {
        let script = dir.join("systemctl");
        let log = dir.join("calls.log");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$*\" >> '{}'\ncase \"$1 $2\" in\n\
                 'start bad') echo 'Job for bad.service failed.' >&2; exit 1;;\n\
                 'is-active down') echo inactive; exit 3;;\n\
                 'is-active '*) echo active;;\nesac\nexit 0\n",
                log.display()
            ),
        )?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
        Ok(ServiceManager::new(script))
    }

    /// What the double was asked so far, a line a call.
    pub(crate) fn calls(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("calls.log")).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::double::fake;
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn calls_are_argument_vectors_and_states_are_answers() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let sm = fake(dir.path())?;
        assert_eq!(sm.start("neopro-app"), Ok(()));
        assert_eq!(sm.is_active("neopro-app"), Ok("active".to_owned()));
        assert_eq!(sm.is_active("down"), Ok("inactive".to_owned()));
        assert_eq!(
            sm.start("bad"),
            Err(ServiceError::Failed {
                action: "start",
                unit: "bad".to_owned(),
                detail: "Job for bad.service failed.".to_owned()
            })
        );
        assert_eq!(
            sm.restart("x; reboot"),
            Err(ServiceError::InvalidName("x; reboot".to_owned()))
        );
        assert_eq!(sm.reboot(), Ok(()));
        let calls = super::double::calls(dir.path());
        assert_eq!(
            calls,
            "start neopro-app\nis-active neopro-app\nis-active down\nstart bad\nreboot --no-block\n"
        );
        Ok(())
    }

    /// A systemctl whose reboot call loses its reply as a shutdown's does,
    /// on a box in the given state.
    fn losing_reply(dir: &Path, state: &str) -> std::io::Result<ServiceManager> {
        let script = dir.join("systemctl");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ncase \"$1\" in\n\
                 reboot) echo 'Call to Reboot failed: Connection reset by peer' >&2; exit 1;;\n\
                 is-system-running) echo {state}; [ {state} = running ] || exit 1;;\nesac\n"
            ),
        )?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
        Ok(ServiceManager::new(script))
    }

    #[test]
    fn a_reboot_whose_reply_is_lost_to_the_shutdown_is_under_way() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        assert_eq!(losing_reply(dir.path(), "stopping")?.reboot(), Ok(()));
        Ok(())
    }

    #[test]
    fn a_lost_reply_on_a_box_still_running_is_a_failed_reboot() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        assert_eq!(
            losing_reply(dir.path(), "running")?.reboot(),
            Err(ServiceError::Failed {
                action: "reboot",
                unit: String::new(),
                detail: "Call to Reboot failed: Connection reset by peer".to_owned()
            })
        );
        Ok(())
    }

    #[test]
    fn a_missing_program_is_a_clear_error() {
        let sm = ServiceManager::new(PathBuf::from("/nonexistent/systemctl"));
        assert!(matches!(sm.stop("nginx"), Err(ServiceError::Spawn { .. })));
    }

    #[test]
    fn a_hung_program_is_killed() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let script = dir.path().join("systemctl");
        std::fs::write(&script, "#!/bin/sh\nexec sleep 30\n")?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
        let mut sm = ServiceManager::new(script);
        sm.timeout = Duration::from_millis(200);
        let started = Instant::now();
        assert_eq!(
            sm.start("nginx"),
            Err(ServiceError::Timeout {
                action: "start",
                unit: "nginx".to_owned(),
                secs: 0
            })
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        Ok(())
    }
}
