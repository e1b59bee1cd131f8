//! `update_software` (§4): installs a NEOPRO release so that a failure —
//! including a crash or a power cut halfway — leaves the box as it was.
//!
//! Steps, each recorded in the update journal (`journal.rs`) before it
//! starts: download into `staging` (sha256 checked while writing), extract
//! with the host's safe extractor into `NEOPRO_ROOT/.neopro-update/new`
//! (same filesystem as the install, so the swap is a rename), back up the
//! top-level folders and version files the release replaces into
//! `BACKUP_PATH/backup-<timestamp>-<version>`, stop the services, swap by
//! renames, start them, health gate, write the version files. A failure
//! after the backup renames the originals back from `.neopro-update/old`,
//! and copies from *that* backup only what is not there (upstream restored
//! whatever sorted last in the folder); a failure before it changed nothing.
//! A rollback that could not put everything back keeps the work folder and
//! the journal: they may hold the only good copy.
//!
//! With `{"resume": true}` (run by the agent at start when a journal is
//! left) it finishes or rolls back the interrupted update and returns
//! `{resumedCommandId, status, result | error}` for the agent to report.
//! With `"check": true` added to an update's data (asked by the agent
//! before it keeps the update for the maintenance window) it only runs the
//! checks every update starts with (`check.rs`) and returns
//! `{checked: true, version}` or the refusal the update would get.

mod backups;
mod check;
mod installed;
mod journal;

use journal::{State, Step};
use neopro_guest_sdk::serde_json::{Value, json};
use neopro_guest_sdk::{
    Command, Context, Error, Root, agent_update, archive, download, export_command, files,
    local_app, progress, services, system, time,
};
use serde::Deserialize;
use std::time::Duration;

/// The services the release runs as; stopped during the swap.
const SERVICES: [&str; 2] = ["neopro-app", "neopro-admin"];
/// Work folder inside NEOPRO_ROOT: `new/` is the extracted release.
const WORK: &str = ".neopro-update";
const NEW: &str = ".neopro-update/new";
/// Where the swap moves the originals (and copies the version files): a
/// rollback renames them back, so it needs neither space nor the backup.
const OLD: &str = ".neopro-update/old";
/// Where a rollback stages a backup copy before putting it in place.
const RESTORE: &str = ".neopro-update/restore";
/// Never taken from an archive (upstream's tar excludes).
const SKIP: [&str; 4] = ["videos", "logs", "backups", "webapp/configuration.json"];
/// Always backed up when present, even if the release does not ship them.
const CORE: [&str; 3] = ["webapp", "server", "admin"];
/// Version files at the top of NEOPRO_ROOT.
const VERSION_FILES: [&str; 2] = ["VERSION", "release.json"];
/// How long each service may take to become active.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the settle check looks: short enough to see the failed or
/// auto-restart state between two runs of a crashing app (systemd keeps it
/// for RestartSec, 100 ms by default, at least; the NEOPRO units use more).
const SETTLE_POLL: Duration = Duration::from_millis(100);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    version: Option<Value>,
    update_url: Option<String>,
    checksum: Option<String>,
    /// ed25519 over `neopro-update:<version>:<sha256>`, hex; required when
    /// the box trusts update keys.
    signature: Option<String>,
    package_size: Option<Value>,
    deployment_id: Option<String>,
    /// `updateId`: the update *deployment's* id in a normal
    /// `update_software` (upstream's query shadows the software update's),
    /// the software update's in the canary's `rollback_update`; kept with
    /// the installed record so that `rollback_update` can check it.
    update_id: Option<String>,
    #[serde(default)]
    resume: bool,
    /// Set by the agent (never the server: the agent refuses it in a
    /// command): only check the update, change nothing ([`check`]).
    #[serde(default)]
    check: bool,
}

/// Progress events: `{version, progress, deploymentId when given}`.
struct Progress {
    detail: Value,
}

impl Progress {
    fn new(version: &str, deployment_id: Option<&str>) -> Self {
        let mut detail = json!({ "version": version });
        if let Some(id) = deployment_id {
            detail["deploymentId"] = json!(id);
        }
        Progress { detail }
    }

    fn at(&self, percent: u8) {
        let _ = progress::report(percent, &self.detail);
    }

    /// A milestone: always reaches the server despite the rate limit.
    fn stage(&self, percent: u8, stage: &str) {
        let mut detail = self.detail.clone();
        detail["stage"] = json!(stage);
        let _ = progress::report(percent, &detail);
    }

    /// The closing event of a failed update.
    fn failed(&self, error: &Error) {
        let mut detail = self.detail.clone();
        detail["error"] = json!(error.message());
        let _ = progress::report(0, &detail);
    }
}

struct UpdateSoftware;

impl Command for UpdateSoftware {
    type Data = Data;

    fn run(ctx: &Context, data: Data) -> Result<Value, Error> {
        if ctx.command_type == "rollback_update" {
            let version = match &data.version {
                Some(Value::String(v)) => Some(v.trim().to_owned()),
                _ => None,
            };
            return installed::rollback_update(data.update_id.as_deref(), version.as_deref());
        }
        if data.resume {
            return resume();
        }
        if !data.check {
            // Creates the staging root on a fresh box (the disk check reads
            // its free space).
            files::mkdir(Root::Staging, journal::DIR)?;
        }
        let checked = check::check(&check::Request {
            version: data.version.as_ref(),
            update_url: data.update_url.as_deref(),
            checksum: data.checksum.as_deref(),
            package_size: data.package_size.as_ref(),
        })?;
        if data.check {
            // The agent asks before keeping the command for the window.
            return Ok(json!({ "checked": true, "version": checked.version }));
        }
        let check::Checked { version, url, .. } = checked;
        let progress = Progress::new(&version, data.deployment_id.as_deref());
        progress.at(2);

        // A journal left by an update that could not be resumed: put the
        // box back first.
        if let Some(old) = State::load()? {
            neopro_guest_sdk::warn!(
                "an interrupted update of {} is rolled back first",
                old.version
            );
            let outcome = rollback(&old);
            if !outcome.restored {
                return Err(Error::failed(format!(
                    "not installing {version}: the interrupted update of {} could not be rolled back ({}); the original files stay in NEOPRO_ROOT/{OLD}",
                    old.version, outcome.summary
                )));
            }
        }

        let previous = system::version()?.version;
        if previous == version {
            if services_healthy() {
                progress.at(100);
                return Ok(json!({
                    "success": true,
                    "version": version,
                    "previousVersion": previous,
                    "message": "already installed",
                }));
            }
            // A repair: the check left the disk to the run.
            check::enough_disk(data.package_size.as_ref())?;
        }

        let mut state = State {
            command_id: ctx.id.clone(),
            version: version.clone(),
            previous_version: previous.clone(),
            deployment_id: data.deployment_id.clone(),
            step: Step::Preparing,
            backup: None,
            saved: Vec::new(),
            replaced: Vec::new(),
        };
        state.save()?;
        let source = Source {
            url: &url,
            checksum: data.checksum.as_deref(),
            signature: data.signature.as_deref(),
        };
        match prepare(&mut state, &source, &progress) {
            Ok(Prepared::App) => {}
            Ok(Prepared::Agent(staged)) => {
                // Nothing of the app changed; the new agent sends the
                // command's result once it is up and authenticated.
                cleanup();
                remember_agent(&state, &staged, data.update_id.as_deref());
                progress.stage(90, "agent_staged");
                return Ok(json!({
                    "success": true,
                    "agentUpdate": "staged",
                    "version": staged,
                }));
            }
            Err(e) => {
                cleanup();
                progress.failed(&e);
                return Err(e);
            }
        }
        match install(&mut state, &progress) {
            Ok(report) => {
                cleanup();
                remember_installed(&state, data.update_id.as_deref());
                progress.at(100);
                Ok(json!({
                    "success": true,
                    "version": version,
                    "previousVersion": previous,
                    "report": report,
                }))
            }
            Err(e) => {
                let outcome = rollback(&state);
                let error = with_rollback(e, &outcome.summary);
                progress.failed(&error);
                Err(error)
            }
        }
    }
}

/// Where the release comes from and how it is vouched for.
struct Source<'a> {
    url: &'a str,
    checksum: Option<&'a str>,
    signature: Option<&'a str>,
}

/// What the downloaded archive turned out to be.
enum Prepared {
    /// A NEOPRO app release, extracted and backed up, ready to swap.
    App,
    /// An agent release, staged by the host for the agent to switch to.
    Agent(String),
}

/// Download, verify, extract, back up. Changes nothing installed.
fn prepare(state: &mut State, source: &Source, progress: &Progress) -> Result<Prepared, Error> {
    let (url, checksum) = (source.url, source.checksum);
    progress.at(5);
    files::mkdir(Root::Staging, journal::DIR)?;
    let mut detail = progress.detail.clone();
    detail["progressRange"] = json!([5, 35]);
    match download::fetch(
        url,
        Root::Staging,
        journal::PACKAGE,
        checksum,
        Some(&detail),
    ) {
        Ok(_) => {}
        Err(Error::ChecksumMismatch(m)) => {
            return Err(Error::ChecksumMismatch(format!(
                "Checksum verification failed: {m}"
            )));
        }
        Err(e) => return Err(e),
    }
    // An agent release is checked (signature always required), staged and
    // switched to by the host: none of the app steps apply.
    if let Some(staged) = agent_update::stage_agent_release(
        Root::Staging,
        journal::PACKAGE,
        &state.version,
        source.signature,
        state.deployment_id.as_deref(),
    )? {
        return Ok(Prepared::Agent(staged));
    }
    archive::check_app_release(&state.version)?;
    archive::verify_signature(
        Root::Staging,
        journal::PACKAGE,
        &state.version,
        source.signature,
    )?;
    progress.stage(35, "downloaded");
    files::remove_tree_if_exists(Root::NeoproRoot, WORK)?;
    files::mkdir(Root::NeoproRoot, WORK)?;
    archive::extract_tar_gz(
        Root::Staging,
        journal::PACKAGE,
        Root::NeoproRoot,
        NEW,
        &SKIP,
    )?;
    let mut replaced = Vec::new();
    for entry in files::list(Root::NeoproRoot, NEW)? {
        if entry.name.starts_with('.') {
            return Err(Error::invalid_input(format!(
                "the update archive holds '{}' at its top; hidden top-level entries are not installed",
                entry.name
            )));
        }
        replaced.push(entry.name);
    }
    if replaced.is_empty() {
        return Err(Error::invalid_input("the update archive is empty"));
    }
    // The club's configuration stays with the web app.
    if replaced.iter().any(|n| n == "webapp")
        && files::exists(Root::NeoproRoot, "webapp/configuration.json")?
    {
        files::copy_tree(
            Root::NeoproRoot,
            "webapp/configuration.json",
            Root::NeoproRoot,
            &format!("{NEW}/webapp/configuration.json"),
        )?;
    }
    progress.at(40);
    let mut saved: Vec<String> = Vec::new();
    for name in CORE
        .iter()
        .map(|s| (*s).to_owned())
        .chain(replaced.iter().cloned())
        .chain(VERSION_FILES.iter().map(|s| (*s).to_owned()))
    {
        if !saved.contains(&name) && files::exists(Root::NeoproRoot, &name)? {
            saved.push(name);
        }
    }
    let backup = backups::create(&state.version, &state.previous_version, &saved)?;
    state.replaced = replaced;
    state.saved = saved;
    state.backup = Some(backup.clone());
    state.step = Step::BackedUp;
    state.save()?;
    backups::prune(&backup);
    progress.stage(42, "backed_up");
    Ok(Prepared::App)
}

/// Stop, swap, start, health gate, version files. Returns the report.
fn install(state: &mut State, progress: &Progress) -> Result<Value, Error> {
    progress.at(45);
    local_app::notify(
        "system_notification",
        Some(&json!({
            "type": "warning",
            "title": "Mise à jour système",
            "message": "Mise à jour en cours. Les services vont redémarrer.",
            "duration": 10000,
            "dismissible": false,
        })),
    );
    progress.at(50);
    state.step = Step::Swapping;
    state.save()?;
    for service in SERVICES {
        if let Err(e) = services::stop(service) {
            neopro_guest_sdk::warn!("{}", e.message());
        }
    }
    progress.stage(60, "stopped");
    files::mkdir(Root::NeoproRoot, OLD)?;
    // The version files are rewritten in place at the end.
    for name in VERSION_FILES {
        if !state.replaced.iter().any(|r| r == name) && files::exists(Root::NeoproRoot, name)? {
            files::copy_tree(
                Root::NeoproRoot,
                name,
                Root::NeoproRoot,
                &format!("{OLD}/{name}"),
            )?;
        }
    }
    for name in &state.replaced {
        if files::exists(Root::NeoproRoot, name)? {
            files::rename(Root::NeoproRoot, name, &format!("{OLD}/{name}"))?;
        }
        files::rename(Root::NeoproRoot, &format!("{NEW}/{name}"), name)?;
    }
    state.step = Step::Swapped;
    state.save()?;
    progress.stage(80, "installed");
    finish(state, Some(progress))
}

/// Start the services, health gate, version files, report.
fn finish(state: &State, progress: Option<&Progress>) -> Result<Value, Error> {
    start_and_check(progress)?;
    write_version_files(&state.version)?;
    let mut statuses = serde_json::Map::new();
    for service in SERVICES {
        statuses.insert(
            service.to_owned(),
            json!(
                services::status(service).unwrap_or_else(|e| format!("unknown ({})", e.message()))
            ),
        );
    }
    Ok(json!({
        "timestamp": time::iso8601(time::now_ms()),
        "previousVersion": state.previous_version,
        "newVersion": state.version,
        "servicesStatus": statuses,
        "backup": state.backup,
        "errors": [],
        "healthy": true,
    }))
}

fn start_and_check(progress: Option<&Progress>) -> Result<(), Error> {
    for service in SERVICES {
        services::start(service)?;
    }
    if let Some(p) = progress {
        p.stage(85, "started");
    }
    for service in SERVICES {
        let state = services::wait_active(service, HEALTH_TIMEOUT)?;
        if state != "active" {
            return Err(Error::failed(format!(
                "Service {service} is not active after restart (state: {state})"
            )));
        }
    }
    health_url_answers()?;
    // An app that crashes a few seconds after starting was "active" at
    // first and passed a one-time check (UPDATE_SETTLE_SECS, default 10 s).
    stays_active(services::settle_time())?;
    if let Some(p) = progress {
        p.stage(95, "healthy");
    }
    Ok(())
}

/// Every service stays `active` for `settle`; the first other state seen
/// fails the release.
fn stays_active(settle: Duration) -> Result<(), Error> {
    // UPDATE_SETTLE_SECS=0: the check is off.
    if settle.is_zero() {
        return Ok(());
    }
    let start = std::time::Instant::now();
    loop {
        for service in SERVICES {
            let state = services::status(service)?;
            if state != "active" {
                return Err(Error::failed(format!(
                    "Service {service} did not stay active after the update: {state} {:.0} s after \
                     it started (it must stay active for {} s)",
                    start.elapsed().as_secs_f64(),
                    settle.as_secs()
                )));
            }
        }
        if start.elapsed() >= settle {
            return Ok(());
        }
        std::thread::sleep(SETTLE_POLL);
    }
}

/// The box's health URL, when configured, must answer 2xx within
/// [`HEALTH_TIMEOUT`] (a web app takes a moment to listen).
fn health_url_answers() -> Result<(), Error> {
    let start = std::time::Instant::now();
    loop {
        let problem = match services::health_check() {
            Ok(None) => return Ok(()),
            Ok(Some(code)) if (200..300).contains(&code) => return Ok(()),
            Ok(Some(code)) => format!("the health URL answered {code}"),
            Err(e) => e.message().to_owned(),
        };
        if start.elapsed() >= HEALTH_TIMEOUT {
            return Err(Error::failed(format!("Health check failed: {problem}")));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn services_healthy() -> bool {
    SERVICES
        .iter()
        .all(|s| services::status(s).is_ok_and(|state| state == "active"))
}

fn write_version_files(version: &str) -> Result<(), Error> {
    let build_date = time::iso8601(time::now_ms());
    files::write_atomic(
        Root::NeoproRoot,
        "VERSION",
        format!("{version}\n").as_bytes(),
    )?;
    files::write_json(
        Root::NeoproRoot,
        "release.json",
        &json!({"version": version, "buildDate": build_date, "source": "central-dashboard"}),
    )?;
    if files::exists(Root::NeoproRoot, "webapp")? {
        files::write_json(
            Root::NeoproRoot,
            "webapp/version.json",
            &json!({"version": version, "buildDate": build_date}),
        )?;
    }
    Ok(())
}

/// Records what the update just installed, for `rollback_update`.
fn remember_installed(state: &State, update_id: Option<&str>) {
    let record = installed::Installed {
        command_id: state.command_id.clone(),
        update_id: update_id.map(str::to_owned),
        deployment_id: state.deployment_id.clone(),
        version: state.version.clone(),
        previous_version: state.previous_version.clone(),
        backup: state.backup.clone().unwrap_or_default(),
        saved: state.saved.clone(),
        replaced: state.replaced.clone(),
        rolled_back: false,
        agent: false,
    };
    if let Err(e) = record.save() {
        neopro_guest_sdk::warn!(
            "rollback_update will not be possible for {}: {}",
            state.version,
            e.message()
        );
    }
}

/// Records the agent release just staged, for `rollback_update` (which
/// finds out from the host whether that agent is the one running).
fn remember_agent(state: &State, version: &str, update_id: Option<&str>) {
    let record = installed::Installed {
        command_id: state.command_id.clone(),
        update_id: update_id.map(str::to_owned),
        deployment_id: state.deployment_id.clone(),
        version: version.to_owned(),
        previous_version: state.previous_version.clone(),
        backup: String::new(),
        saved: Vec::new(),
        replaced: Vec::new(),
        rolled_back: false,
        agent: true,
    };
    if let Err(e) = record.save() {
        neopro_guest_sdk::warn!(
            "rollback_update will not be possible for agent {version}: {}",
            e.message()
        );
    }
}

/// Removes the work folder and the journal.
fn cleanup() {
    let _ = files::remove_tree_if_exists(Root::NeoproRoot, WORK);
    State::clear();
}

/// How a rollback went.
struct Rollback {
    /// For the operator, after "Rollback: ".
    summary: String,
    /// Every file is back in place. Otherwise the work folder (which may
    /// hold the only good copy) and the journal are kept for another try.
    restored: bool,
}

/// Puts the box back as it was before `state`'s update and says how it went.
fn rollback(state: &State) -> Rollback {
    let Some(backup) = state
        .backup
        .as_deref()
        .filter(|_| state.step >= Step::BackedUp)
    else {
        cleanup();
        return Rollback {
            summary: "nothing had been changed".to_owned(),
            restored: true,
        };
    };
    let mut problems = Vec::new();
    let mut restored = true;
    if state.step >= Step::Swapping {
        for service in SERVICES {
            if let Err(e) = services::stop(service) {
                problems.push(e.message().to_owned());
            }
        }
        let names = state
            .replaced
            .iter()
            .cloned()
            .chain(VERSION_FILES.iter().map(|s| (*s).to_owned()));
        for name in names {
            if let Err(e) = restore(state, backup, &name) {
                restored = false;
                problems.push(format!("{name}: {}", e.message()));
            }
        }
    }
    let services = match start_and_check(None) {
        Ok(()) => "services active".to_owned(),
        Err(e) => {
            problems.push(e.message().to_owned());
            "services not healthy".to_owned()
        }
    };
    if restored {
        cleanup();
    } else {
        neopro_guest_sdk::warn!(
            "the rollback of the update to {} is incomplete; the original files stay in NEOPRO_ROOT/{OLD}",
            state.version
        );
        problems.push(format!("the original files stay in {OLD}"));
    }
    let summary = if problems.is_empty() {
        format!(
            "restored backup {backup} (version {}), {services}",
            state.previous_version
        )
    } else {
        format!(
            "restored backup {backup} (version {}) with problems: {}",
            state.previous_version,
            problems.join("; ")
        )
    };
    Rollback { summary, restored }
}

/// Puts `name` back as it was before the swap. The original the swap moved
/// aside is renamed back (same filesystem: no space, no backup needed); the
/// backup's copy is used only when that original is not there, and is
/// staged first so that a failed copy leaves what is installed alone.
fn restore(state: &State, backup: &str, name: &str) -> Result<(), Error> {
    let moved = format!("{OLD}/{name}");
    if files::exists(Root::NeoproRoot, &moved)? {
        files::remove_tree_if_exists(Root::NeoproRoot, name)?;
        return files::rename(Root::NeoproRoot, &moved, name);
    }
    if state.replaced.iter().any(|r| r == name)
        && files::exists(Root::NeoproRoot, &format!("{NEW}/{name}"))?
    {
        // Not swapped yet: what is installed is the original.
        return Ok(());
    }
    if !state.saved.iter().any(|s| s == name) {
        // Added by the release.
        return files::remove_tree_if_exists(Root::NeoproRoot, name);
    }
    let staged = format!("{RESTORE}/{name}");
    files::remove_tree_if_exists(Root::NeoproRoot, &staged)?;
    files::mkdir(Root::NeoproRoot, RESTORE)?;
    files::copy_tree(
        Root::Backups,
        &format!("{backup}/{name}"),
        Root::NeoproRoot,
        &staged,
    )?;
    files::remove_tree_if_exists(Root::NeoproRoot, name)?;
    files::rename(Root::NeoproRoot, &staged, name)
}

/// `<error>. Rollback: <outcome>`, with one period even when the error
/// ends with one (`... error code.. Rollback` before).
fn rollback_message(error: &str, outcome: &str) -> String {
    format!(
        "{}. Rollback: {outcome}",
        error.trim_end().trim_end_matches('.')
    )
}

fn with_rollback(error: Error, outcome: &str) -> Error {
    let message = rollback_message(error.message(), outcome);
    match error {
        Error::InvalidInput(_) => Error::InvalidInput(message),
        Error::NotPermitted(_) => Error::NotPermitted(message),
        Error::NotFound(_) => Error::NotFound(message),
        Error::ChecksumMismatch(_) => Error::ChecksumMismatch(message),
        Error::TooLarge(_) => Error::TooLarge(message),
        Error::Timeout(_) => Error::Timeout(message),
        Error::Io(_) => Error::Io(message),
        Error::Failed(_) => Error::Failed(message),
    }
}

/// Finishes or rolls back an update the agent was running when it stopped.
fn resume() -> Result<Value, Error> {
    let Some(state) = State::load()? else {
        return Ok(json!({ "resumedCommandId": null }));
    };
    neopro_guest_sdk::warn!(
        "resuming the update to {} interrupted at step {:?}",
        state.version,
        state.step
    );
    let outcome = match state.step {
        Step::Swapped => match finish(&state, None) {
            Ok(report) => {
                cleanup();
                json!({"status": "success", "result": {
                    "success": true,
                    "version": state.version,
                    "previousVersion": state.previous_version,
                    "report": report,
                }})
            }
            Err(e) => {
                let rolled = rollback(&state).summary;
                let error = format!(
                    "{} (after the agent restarted mid-update)",
                    e.message().trim_end().trim_end_matches('.')
                );
                json!({"status": "error", "error": rollback_message(&error, &rolled)})
            }
        },
        _ => {
            let rolled = rollback(&state).summary;
            json!({"status": "error", "error": format!(
                "the update to {} was interrupted (the agent stopped) and was not completed. Rollback: {rolled}",
                state.version)})
        }
    };
    let mut outcome = outcome;
    outcome["resumedCommandId"] = json!(state.command_id);
    outcome["deploymentId"] = json!(state.deployment_id);
    Ok(outcome)
}

export_command!(UpdateSoftware);
