//! The cut loop: a phase's command, the cut at a random moment of it, the
//! boot after it, the checks; per-phase tallies for the report.

use super::app_release::{self, AppRelease};
use super::central::{Central, Pushed};
use super::checks::{self, Expect, InFlight, Violation};
use super::machine::Machine;
use super::phases::{self, Phase};
use super::qga::Qga;
use super::rng::Rng;
use super::snapshot::{self, Snapshot};
use super::{agent_slot, agent_update, expiry, jobs, pushed};
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, Instant};

/// How long a boot may take until the guest agent answers (TCG, a loaded
/// machine: 15–60 s seen).
pub(super) const BOOT_LIMIT: Duration = Duration::from_secs(600);
/// From the guest agent answering to the agent authenticated (its first
/// start compiles the built-in components under emulation).
pub(super) const AUTH_LIMIT: Duration = Duration::from_secs(300);
/// How long a result may take to arrive after the agent authenticated.
pub(super) const RESULT_LIMIT: Duration = Duration::from_secs(90);
/// The narrowest window a command phase's cuts fall in.
const MIN_WINDOW: Duration = Duration::from_secs(2);
/// The narrowest window of `remove_component` (its result comes within
/// 0.1 s under emulation).
const MIN_REMOVE_WINDOW: Duration = Duration::from_millis(150);
/// Where the control's command numbers (and so its videos' names) start.
const CONTROL_NUMBERS: u64 = 1_000_000;
/// How long the app's services may take to be active once the agent
/// finished (they start with the boot; a rollback restarts them).
const APP_SETTLE: Duration = Duration::from_secs(60);
/// The box's architecture (the rig emulates an amd64 box).
const ARCH: &str = "amd64";
/// One agent release in this many fails at start (its trial rolls back).
const CRASHING_ONE_IN: u64 = 3;

#[derive(Default, Clone, Copy)]
pub struct PhaseStats {
    pub cuts: u32,
    pub checked: u32,
    pub violations: u32,
}

pub struct Campaign {
    machine: Machine,
    rng: Rng,
    order: Vec<Phase>,
    next: usize,
    /// The must-fail control: cut only once the command's success arrived.
    control: bool,
    counter: u64,
    /// Every command id sent.
    sent: Vec<String>,
    /// configuration.json as last checked.
    config: Value,
    known_configs: Vec<Value>,
    /// sha256 of every file allowed under a video's final name.
    known_shas: BTreeSet<String>,
    /// The app release installed, as last checked.
    release: String,
    in_flight: Option<InFlight>,
    success_reported: bool,
    windows: BTreeMap<Phase, Duration>,
    pub stats: BTreeMap<Phase, PhaseStats>,
    pub violations: Vec<(u32, Phase, Violation)>,
    /// Violations already counted (the result checks look at every command
    /// each time).
    counted: BTreeSet<String>,
    pub cuts: u32,
    /// Seconds from each cut to the end of its check.
    cycles: Vec<f64>,
    /// Every play the rig put in the web app's buffer (flushed).
    plays: BTreeSet<String>,
    /// A log rotation was prepared: LOG_PATH is checked from then on.
    log_filled: bool,
    /// The expired video the agent's expiry has still to remove (`videos/…`).
    expiring: Option<String>,
    /// The box has a site policy and trusts the central's key: the pushed
    /// component is checked from then on.
    components_enabled: bool,
    /// Every version of the pushed component the central signed.
    pushed: BTreeMap<String, Pushed>,
    /// The pushed component's active version, as last checked.
    component: Option<String>,
    /// What the component command in flight changes.
    component_change: Option<pushed::Change>,
    /// The box trusts the central's key for updates.
    updates_trusted: bool,
    /// The agent's version, as last reported (a heartbeat).
    agent: Option<String>,
    /// What the agent update in flight changes.
    agent_change: Option<agent_update::Change>,
    /// Where the last phase's cut fell (for `cuts.jsonl`).
    note: Value,
    /// No cut starts after it (`--minutes`).
    pub deadline: Option<Instant>,
    /// Which box this is in the log's lines, when several are cut.
    pub label: String,
    /// The agent updates' final results, by status.
    pub agent_updates: BTreeMap<String, u32>,
}

impl Campaign {
    pub fn new(machine: Machine, mut rng: Rng, phases: Vec<Phase>, control: bool) -> Campaign {
        // A seeded order over the phases, repeated: every phase gets its
        // share of the cuts, a restart never comes first.
        let mut order = phases;
        for i in (1..order.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        let windows = phases::ALL.iter().map(|p| (*p, p.window())).collect();
        Campaign {
            machine,
            rng,
            order,
            next: 0,
            control,
            // The control runs on the campaign's disk after it: its videos
            // must have names the campaign never used, or its deploy would
            // change nothing a lost flush could take away.
            counter: if control { CONTROL_NUMBERS } else { 0 },
            sent: Vec::new(),
            config: Value::Null,
            known_configs: Vec::new(),
            known_shas: BTreeSet::new(),
            release: String::new(),
            in_flight: None,
            success_reported: false,
            windows,
            stats: BTreeMap::new(),
            violations: Vec::new(),
            counted: BTreeSet::new(),
            cuts: 0,
            cycles: Vec::new(),
            plays: BTreeSet::new(),
            log_filled: false,
            expiring: None,
            components_enabled: false,
            pushed: BTreeMap::new(),
            component: None,
            component_change: None,
            updates_trusted: false,
            agent: None,
            agent_change: None,
            note: Value::Null,
            deadline: None,
            label: String::new(),
            agent_updates: BTreeMap::new(),
        }
    }

    /// Stops the machine where it stands (a campaign that stopped on an
    /// error must not keep its emulator busy).
    pub fn halt(&mut self) {
        if let Err(e) = self.machine.cut() {
            eprintln!("power-cut: {}: the machine did not stop: {e:#}", self.who());
        }
    }

    /// How the log's lines name this run.
    fn who(&self) -> &str {
        match (self.label.as_str(), self.control) {
            ("", true) => "control",
            ("", false) => "campaign",
            (label, _) => label,
        }
    }

    /// Boots that hung in the emulator and were started again.
    pub fn hung_boots(&self) -> u32 {
        self.machine.hung_boots
    }

    fn peek(&self) -> Phase {
        self.order[self.next % self.order.len()]
    }

    fn advance(&mut self) {
        self.next += 1;
    }

    /// `running`: the machine is up, its agent authenticated (the set-up
    /// left it so); otherwise it is booted first.
    pub fn run(
        &mut self,
        central: &mut Central,
        cuts: u32,
        log: &mut std::fs::File,
        running: Option<Qga>,
    ) -> anyhow::Result<()> {
        self.known_shas.insert(central.video_sha256.clone());
        let mut qga = match running {
            Some(qga) => qga,
            None => {
                let boot = Instant::now();
                let qga = self.machine.boot(BOOT_LIMIT)?;
                central
                    .wait_for(AUTH_LIMIT, |e| e.name == "authenticate" && e.at > boot)
                    .context("the agent did not authenticate after the first boot")?;
                qga
            }
        };
        self.baseline(&mut qga)?;
        self.agent = agent_update::running(&central.events(), None);
        eprintln!(
            "power-cut: {} phase order {}",
            self.who(),
            self.order
                .iter()
                .map(|p| p.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
        while self.cuts < cuts && self.deadline.is_none_or(|d| Instant::now() < d) {
            // The phase cut on a running, checked box; a restart only
            // follows a cut: its turn comes right after the next phase's.
            let mut phase = self.peek();
            self.advance();
            if phase == Phase::Restart {
                phase = self
                    .order
                    .iter()
                    .copied()
                    .find(|p| *p != Phase::Restart)
                    .unwrap_or(Phase::Idle);
                self.next -= 1;
            }
            let cut_at = self.run_phase(phase, central, &mut qga)?;
            let note = std::mem::take(&mut self.note);
            self.record_cut(phase, log, note)?;
            let mut attributed = phase;
            let mut last_cut = cut_at;
            if self.cuts < cuts && self.peek() == Phase::Restart && !self.control {
                self.advance();
                last_cut = self.restart_cut()?;
                attributed = Phase::Restart;
                self.record_cut(Phase::Restart, log, json!({"kind": "restart"}))?;
            }
            qga = self.boot_and_check(central, attributed, last_cut, log)?;
        }
        self.machine.power_off(Some(&mut qga))?;
        Ok(())
    }

    fn record_cut(
        &mut self,
        phase: Phase,
        log: &mut std::fs::File,
        extra: Value,
    ) -> anyhow::Result<()> {
        self.cuts += 1;
        self.stats.entry(phase).or_default().cuts += 1;
        writeln!(
            log,
            "{}",
            json!({"control": self.control, "cut": self.cuts, "phase": phase.name(), "extra": extra,
                   "in_flight": self.in_flight.as_ref().map(|c| format!("{} {}", c.kind, c.id)),
                   "success_reported": self.success_reported})
        )?;
        Ok(())
    }

    /// The state before the first cut.
    fn baseline(&mut self, qga: &mut Qga) -> anyhow::Result<()> {
        let snap = Snapshot::take(qga)?;
        let text = snap
            .config_text()
            .context("no configuration.json on the box")?;
        self.config = serde_json::from_slice(text).context("configuration.json at the start")?;
        self.known_configs.push(self.config.clone());
        for (path, bytes) in &snap.files {
            if path.ends_with(".json")
                && !path.starts_with(snapshot::STATE)
                && let Ok(v) = serde_json::from_slice::<Value>(bytes)
            {
                self.known_configs.push(v);
            }
        }
        self.known_shas.extend(snap.shas.values().cloned());
        self.release = AppRelease::take(qga, APP_SETTLE)?
            .version()
            .context("the box's app release is not whole before the first cut")?;
        Ok(())
    }

    fn next_id(&mut self, kind: &str) -> String {
        self.counter += 1;
        format!(
            "pc-{}-{kind}-{}",
            if self.control { "control" } else { "run" },
            self.counter
        )
    }

    /// Sends `cmd` and waits for its final result (a preparation, not cut).
    fn run_to_end(&mut self, central: &mut Central, cmd: phases::Command) -> anyhow::Result<Value> {
        let id = self.next_id(cmd.kind);
        central.send(&id, cmd.kind, &cmd.data)?;
        self.sent.push(id.clone());
        let result = central
            .wait_for(RESULT_LIMIT, |e| {
                e.name == "command_result" && e.data["commandId"] == json!(id)
            })
            .with_context(|| format!("no result for {id}"))?;
        Ok(result.data)
    }

    /// Reads configuration.json back after an uncut preparation.
    fn reread_config(&mut self, qga: &mut Qga) -> anyhow::Result<()> {
        let snap = Snapshot::take(qga)?;
        let text = snap.config_text().context("no configuration.json")?;
        self.config = serde_json::from_slice(text)?;
        self.known_configs.push(self.config.clone());
        Ok(())
    }

    /// Gives the box a site policy and trusts the central's key, then
    /// restarts the agent (it reads them at start); once per run.
    fn enable_components(&mut self, central: &Central, qga: &mut Qga) -> anyhow::Result<()> {
        if self.components_enabled {
            return Ok(());
        }
        pushed::enable(qga, &central.component_key)?;
        restart_agent(central, qga, "its site policy was written")?;
        self.components_enabled = true;
        Ok(())
    }

    /// Trusts the central's key for updates, then restarts the agent (it
    /// reads site.conf at start); once per run.
    fn trust_updates(&mut self, central: &Central, qga: &mut Qga) -> anyhow::Result<()> {
        if self.updates_trusted {
            return Ok(());
        }
        agent_update::enable(qga, &central.component_key)?;
        restart_agent(central, qga, "UPDATE_TRUSTED_KEYS was written")?;
        self.updates_trusted = true;
        Ok(())
    }

    /// The `version` of the pushed component, signed and served by the central.
    fn push(&mut self, central: &mut Central, version: &str) -> anyhow::Result<Pushed> {
        let c = central.component(version)?;
        self.pushed.insert(version.to_owned(), c.clone());
        Ok(c)
    }

    /// The agent runs the active version of the pushed component.
    fn component_runs(&mut self, central: &mut Central, version: &str) -> Vec<Violation> {
        let run = phases::Command {
            kind: pushed::COMMAND,
            data: json!({}),
            expect: Expect::Unchanged,
            release: None,
        };
        let detail = match self.run_to_end(central, run) {
            Ok(r) if r["status"] == "success" => return Vec::new(),
            Ok(r) => format!("{} (version {version}) failed: {r}", pushed::COMMAND),
            Err(e) => format!("{} (version {version}): {e:#}", pushed::COMMAND),
        };
        vec![Violation {
            check: "components-whole",
            detail,
        }]
    }

    fn command_for(
        &mut self,
        phase: Phase,
        central: &mut Central,
        qga: &mut Qga,
    ) -> anyhow::Result<Option<phases::Command>> {
        self.counter += 1;
        let n = self.counter;
        Ok(match phase {
            Phase::Idle | Phase::Restart => None,
            Phase::Analytics => {
                let plays = jobs::plays(n);
                if jobs::buffer_plays(qga, &plays)? {
                    self.plays.extend(
                        plays
                            .iter()
                            .filter_map(|p| p["video_filename"].as_str().map(str::to_owned)),
                    );
                }
                None
            }
            Phase::ConfigBackup => {
                // A configuration the backups do not hold yet: the start's
                // backup job writes it.
                let change = phases::update_config(n, &self.config);
                let Expect::Replaced(doc) = change.expect.clone() else {
                    bail!("update_config must replace the configuration");
                };
                self.known_configs.push(doc.clone());
                let result = self.run_to_end(central, change)?;
                if result["status"] != "success" {
                    bail!("the update_config before a backup failed: {result}");
                }
                self.config = doc;
                None
            }
            Phase::LogRotation => {
                jobs::fill_log(qga)?;
                self.log_filled = true;
                None
            }
            Phase::ExpireVideos => {
                // A video that expired long ago, deployed uncut: the
                // start's expiry removes it.
                let url = central.video_url_from_guest(&format!("pc-{n}.mp4"));
                let deploy = phases::deploy_expired(n, &url, &central.video_sha256);
                let Expect::Added(path) = deploy.expect.clone() else {
                    bail!("a deploy must add a video");
                };
                let result = self.run_to_end(central, deploy)?;
                if result["status"] != "success" {
                    bail!("the deploy of an expired video failed: {result}");
                }
                self.reread_config(qga)?;
                if !checks::video_entries(&self.config)
                    .iter()
                    .any(|(p, _)| *p == path)
                {
                    bail!("the expired video {path} is not in configuration.json after its deploy");
                }
                self.in_flight = Some(InFlight {
                    id: "the start-up expiry".to_owned(),
                    kind: "expire_videos".to_owned(),
                    expect: Expect::Removed(path.clone()),
                    release: None,
                });
                self.expiring = Some(path);
                None
            }
            Phase::InstallComponent => {
                self.enable_components(central, qga)?;
                let version = phases::release_version(n);
                let c = self.push(central, &version)?;
                self.component_change = Some(pushed::Change {
                    before: self.component.clone(),
                    after: Some(version),
                });
                Some(pushed::install(&c))
            }
            Phase::RemoveComponent => {
                self.enable_components(central, qga)?;
                if self.component.is_none() {
                    // Nothing to remove: install one first, uncut.
                    let version = phases::release_version(n);
                    let c = self.push(central, &version)?;
                    let result = self.run_to_end(central, pushed::install(&c))?;
                    if result["status"] != "success" {
                        bail!("the install before a remove failed: {result}");
                    }
                    self.component = Some(version);
                }
                self.component_change = Some(pushed::Change {
                    before: self.component.clone(),
                    after: None,
                });
                Some(pushed::remove())
            }
            Phase::AgentUpdate => {
                let Some(before) = self.agent.clone() else {
                    // An agent whose heartbeat names no version (before
                    // `agentVersion`): the cut falls on an idle box.
                    eprintln!(
                        "power-cut: {}: agent_update cut as idle: the agent's heartbeat names no agentVersion",
                        self.who()
                    );
                    return Ok(None);
                };
                self.trust_updates(central, qga)?;
                let version = phases::agent_version(n);
                let crash = self.rng.below(CRASHING_ONE_IN) == 0;
                let release = central.agent_release(&version, ARCH, crash)?;
                self.agent_change = Some(agent_update::Change {
                    before,
                    after: (!crash).then(|| version.clone()),
                    release: version,
                });
                Some(phases::agent_update(n, &release))
            }
            Phase::DeployVideo => Some(phases::deploy(
                n,
                &central.video_url_from_guest(&format!("pc-{n}.mp4")),
                &central.video_sha256,
            )),
            Phase::UpdateConfig => Some(phases::update_config(n, &self.config)),
            Phase::UpdateSoftware => {
                let release = central.release(&phases::release_version(n))?;
                Some(phases::update_software(n, &release))
            }
            Phase::DeleteVideo => {
                let pick = self.rng.next_u64();
                let path = match phases::deployed(&self.config, pick) {
                    Some(p) => p,
                    None => {
                        // Nothing of ours to delete: deploy one first, uncut.
                        let url = central.video_url_from_guest(&format!("pc-{n}.mp4"));
                        let deploy = phases::deploy(n, &url, &central.video_sha256);
                        let result = self.run_to_end(central, deploy)?;
                        if result["status"] != "success" {
                            bail!("the deploy before a delete failed: {result}");
                        }
                        self.reread_config(qga)?;
                        phases::deployed(&self.config, pick)
                            .context("the deployed video is not in configuration.json")?
                    }
                };
                Some(phases::delete(&path))
            }
        })
    }

    /// Runs `phase` and cuts the power at a random moment of it.
    fn run_phase(
        &mut self,
        phase: Phase,
        central: &mut Central,
        qga: &mut Qga,
    ) -> anyhow::Result<Instant> {
        let command = self.command_for(phase, central, qga)?;
        let window = self.windows.get(&phase).copied().unwrap_or(phase.window());
        let delay = window.mul_f64(self.rng.unit());
        if phase.restarts_agent() {
            // The job runs at the agent's start.
            qga.spawn(&["systemctl", "restart", "neopro-runtime.service"])?;
        }
        let sent_at = Instant::now();
        let mut id = None;
        if let Some(cmd) = command {
            let cid = self.next_id(cmd.kind);
            if let Expect::Replaced(doc) = &cmd.expect {
                self.known_configs.push(doc.clone());
            }
            central.send(&cid, cmd.kind, &cmd.data)?;
            self.sent.push(cid.clone());
            self.in_flight = Some(InFlight {
                id: cid.clone(),
                kind: cmd.kind.to_owned(),
                expect: cmd.expect,
                release: cmd.release,
            });
            id = Some(cid);
        }
        if self.control {
            // Cut once the success is in: a lying disk then loses it.
            if let Some(cid) = &id {
                central
                    .wait_for(RESULT_LIMIT, |e| {
                        e.name == "command_result" && e.data["commandId"] == json!(cid)
                    })
                    .with_context(|| format!("no result for {cid}"))?;
                std::thread::sleep(Duration::from_secs(1));
            }
        } else {
            std::thread::sleep(delay);
        }
        let cut_at = Instant::now();
        self.machine.cut()?;
        let secs = |at: Instant| at.saturating_duration_since(sent_at).as_secs_f64();
        self.note =
            json!({"kind": "phase", "cut_s": secs(cut_at), "window_s": window.as_secs_f64()});
        if let Some(c) = &self.agent_change {
            self.note["agent_release"] = json!(c.after.as_deref().unwrap_or("fails at start"));
        }
        if phase == Phase::ExpireVideos
            && let Some(path) = &self.expiring
        {
            // The window follows when the expiry's configuration reached
            // the central, as a command's follows its result.
            let done = expiry::done_at(&central.events(), path, sent_at, cut_at);
            self.note["expiry_done_s"] = json!(done.map(secs));
            let w = self.windows.entry(phase).or_insert(window);
            match done {
                Some(at) => {
                    *w = at
                        .saturating_duration_since(sent_at)
                        .mul_f64(1.3)
                        .max(MIN_WINDOW);
                }
                None if delay >= window.mul_f64(0.9) => *w = window.mul_f64(1.3),
                None => {}
            }
        }
        if let Some(cid) = &id {
            let events = central.events();
            let result = events.iter().find(|e| {
                e.name == "command_result" && e.data["commandId"] == json!(cid) && e.at < cut_at
            });
            self.success_reported = result.is_some_and(|e| e.data["status"] == "success");
            self.note["result_s"] = json!(result.map(|e| secs(e.at)));
            self.note["result"] = json!(result.map(|e| {
                let text = e.data["error"].as_str().unwrap_or_default();
                format!(
                    "{} {}",
                    e.data["status"],
                    text.chars().take(200).collect::<String>()
                )
            }));
            // Cuts should fall over the whole phase: the window follows
            // what the command was seen to take (with a margin, so some
            // cuts land after the result), wider when it was still running
            // at the window's end.
            let w = self.windows.entry(phase).or_insert(window);
            match result {
                Some(r) => {
                    let took = r.at.saturating_duration_since(sent_at).mul_f64(1.3);
                    // A remove is over in tens of milliseconds: a floor
                    // of seconds would put nearly every cut after it.
                    let floor = if phase == Phase::RemoveComponent {
                        MIN_REMOVE_WINDOW
                    } else {
                        MIN_WINDOW
                    };
                    *w = took.max(floor);
                }
                None if delay >= window.mul_f64(0.9) => *w = window.mul_f64(1.3),
                None => {}
            }
        }
        Ok(cut_at)
    }

    /// Boots and cuts again at a random moment of the boot.
    fn restart_cut(&mut self) -> anyhow::Result<Instant> {
        let window = self
            .windows
            .get(&Phase::Restart)
            .copied()
            .unwrap_or(Phase::Restart.window());
        let delay = Duration::from_secs(2) + window.mul_f64(self.rng.unit());
        self.machine.start()?;
        std::thread::sleep(delay);
        let cut_at = Instant::now();
        self.machine.cut()?;
        Ok(cut_at)
    }

    /// Boots after a cut, lets the agent start, checks every invariant.
    fn boot_and_check(
        &mut self,
        central: &mut Central,
        phase: Phase,
        cut_at: Instant,
        log: &mut std::fs::File,
    ) -> anyhow::Result<Qga> {
        let boot = Instant::now();
        let mut qga = self.machine.boot(BOOT_LIMIT)?;
        let mut found = Vec::new();
        let auth = central.wait_for(AUTH_LIMIT, |e| e.name == "authenticate" && e.at > boot);
        let authenticated = auth.is_ok();
        // A restart cut falls anywhere from power-on to the agent's first
        // minute: the window follows the boots seen.
        if let Ok(e) = &auth {
            let up = e.at.saturating_duration_since(boot).mul_f64(1.2);
            let w = self.windows.entry(Phase::Restart).or_insert(up);
            *w = (*w).max(up);
        }
        let mut snap = Snapshot::take(&mut qga)?;
        if !authenticated || snap.agent != "active" {
            found.push(Violation {
                check: "agent-starts",
                detail: format!(
                    "unit {} ({}), {}",
                    snap.agent,
                    snap.status,
                    if authenticated {
                        "authenticated"
                    } else {
                        "no authenticate at the central"
                    }
                ),
            });
        }
        if let Some(path) = self.expiring.clone() {
            // The start-up expiry removes what a cut left of the last run
            // (entries whose file is gone): its due time.
            let end = Instant::now() + expiry::LIMIT;
            while expiry::names(&snap, &path) == Some(true) && Instant::now() < end {
                std::thread::sleep(Duration::from_secs(2));
                snap = Snapshot::take(&mut qga)?;
            }
            found.append(&mut expiry::gone(&snap, &path));
            if expiry::names(&snap, &path) == Some(false) {
                self.expiring = None;
            }
        }
        let (config, mut v) = checks::configuration(
            &snap,
            &self.config,
            self.in_flight.as_ref(),
            self.success_reported,
        );
        found.append(&mut v);
        if let Some(c) = &config {
            found.append(&mut checks::videos(&snap, c, &self.known_shas));
            self.known_configs.push(c.clone());
        }
        found.append(&mut checks::backups(&snap, &self.known_configs));
        found.append(&mut checks::orphans(&snap));
        found.append(&mut checks::state_files(&snap));
        found.append(&mut checks::filesystem(&snap));
        found.append(&mut agent_slot::check(&snap));
        if self.log_filled {
            found.append(&mut jobs::logs_whole(&snap));
        }
        let mut component = None;
        if self.components_enabled {
            let (allowed, durable) = match &self.component_change {
                Some(c) => (
                    vec![c.before.clone(), c.after.clone()],
                    self.success_reported.then(|| c.after.clone()),
                ),
                None => (vec![self.component.clone()], None),
            };
            let (active, mut v) = pushed::check(&snap, &self.pushed, &allowed, durable.as_ref());
            found.append(&mut v);
            component = Some(active);
        }
        // Results: every admitted or seen command must get one.
        let admitted = snap.admitted();
        let end = Instant::now() + RESULT_LIMIT;
        loop {
            let events = central.events();
            let waiting = self.sent.iter().any(|id| {
                let seen = events
                    .iter()
                    .any(|e| e.name != "sent" && e.data["commandId"] == json!(id));
                let done = events
                    .iter()
                    .any(|e| e.name == "command_result" && e.data["commandId"] == json!(id));
                (admitted.contains(id) || seen) && !done
            });
            if !waiting || Instant::now() > end {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // Re-sent results arrive right after authentication; give a
        // duplicate the time to show.
        std::thread::sleep(checks::ACK_AFTER);
        found.append(&mut checks::results(
            &central.events(),
            &self.sent,
            &admitted,
            cut_at,
        ));
        found.append(&mut jobs::analytics_kept(central, &mut qga, &self.plays)?);
        // The agent that runs once the results are in (an interrupted
        // update finished or rolled back).
        let events = central.events();
        let agent = agent_update::running(&events, Some(boot));
        if let Some(known) = &self.agent {
            found.append(&mut agent_update::check(
                agent.as_deref(),
                authenticated,
                known,
                self.agent_change.as_ref(),
                self.success_reported,
            ));
        }
        if let (Some(change), Some(cmd)) = (&self.agent_change, &self.in_flight) {
            let state = qga.exec(
                &["cat", &agent_slot::state_file()],
                None,
                Duration::from_secs(30),
            )?;
            let bytes = (state.code == 0).then_some(state.stdout.as_bytes());
            found.append(&mut agent_update::slot_state(bytes, change));
            let status = events
                .iter()
                .rev()
                .find(|e| e.name == "command_result" && e.data["commandId"] == json!(cmd.id))
                .and_then(|e| e.data["status"].as_str())
                .unwrap_or("no result");
            *self.agent_updates.entry(status.to_owned()).or_default() += 1;
        }
        if let Some(Some(version)) = &component {
            found.append(&mut self.component_runs(central, version));
        }
        // The app release once the agent finished or rolled back an
        // interrupted update (its result is in by now).
        let release = AppRelease::take(&mut qga, APP_SETTLE)?;
        found.append(&mut app_release::check(
            &release,
            &self.release,
            self.in_flight.as_ref().and_then(|c| c.release.as_deref()),
            self.success_reported,
        ));

        let mut new = Vec::new();
        for v in found {
            let key = format!("{}|{}", v.check, v.detail);
            if self.counted.insert(key) {
                new.push(v);
            }
        }
        let stats = self.stats.entry(phase).or_default();
        stats.checked += 1;
        stats.violations += new.len() as u32;
        self.cycles.push(cut_at.elapsed().as_secs_f64());
        writeln!(
            log,
            "{}",
            json!({"control": self.control, "checked_after_cut": self.cuts, "phase": phase.name(),
                   "boot_to_checked_s": boot.elapsed().as_secs_f64(),
                   "violations": new.iter().map(|v| format!("{}: {}", v.check, v.detail)).collect::<Vec<_>>()})
        )?;
        for v in &new {
            eprintln!(
                "power-cut: {}: VIOLATION after cut {} ({}): {}: {}",
                self.who(),
                self.cuts,
                phase.name(),
                v.check,
                v.detail
            );
        }
        eprintln!(
            "power-cut: {} cut {} ({}): {} violation(s), cycle {:.0} s",
            self.who(),
            self.cuts,
            phase.name(),
            new.len(),
            cut_at.elapsed().as_secs_f64()
        );
        for v in new {
            self.violations.push((self.cuts, phase, v));
        }
        if let Some(c) = config {
            self.config = c;
        }
        if let Some(v) = release.version() {
            self.release = v;
        }
        if let Some(active) = component {
            self.component = active;
        }
        self.component_change = None;
        if agent.is_some() {
            self.agent = agent;
        }
        self.agent_change = None;
        self.in_flight = None;
        self.success_reported = false;
        Ok(qga)
    }
}

/// Restarts the agent's unit and waits for it to authenticate (`why`:
/// what it must read at start).
fn restart_agent(central: &Central, qga: &mut Qga, why: &str) -> anyhow::Result<()> {
    let restarted = Instant::now();
    qga.exec(
        &["systemctl", "restart", "neopro-runtime.service"],
        None,
        Duration::from_secs(120),
    )?
    .ok(&format!("restarting the agent after {why}"))?;
    central
        .wait_for(AUTH_LIMIT, |e| e.name == "authenticate" && e.at > restarted)
        .with_context(|| format!("the agent did not authenticate after {why}"))?;
    Ok(())
}
