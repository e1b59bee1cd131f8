//! `cargo xtask power-cut [--cuts N] [--seed S] [--phase P]... [--control-cuts K] [--dev]`:
//! real power cuts of a box (issue 29). The agent's `.deb` on a Debian
//! bookworm machine shaped like a box ([`image`]), booted under qemu with
//! its disk behind a volatile write cache ([`machine`]); the test central
//! on the host ([`central`]). In a loop: a phase's command is sent, the
//! power is cut at a random moment of it, the box boots again, the agent
//! starts as on a box, and the named invariants ([`checks`]) are checked
//! against what the box holds ([`snapshot`]) and what the central got.
//! Then the must-fail control: the same on a disk that ignores flushes,
//! which must report violations.
//!
//! Prints a line per phase and ends with `N cuts, M violations`; exits
//! non-zero when M > 0 or when the control saw none. Logs, consoles and
//! the per-cut record (`cuts.jsonl`) stay in `target/power-cut/`.

mod central;
mod checks;
mod image;
mod machine;
mod phases;
mod qga;
mod rng;
mod snapshot;

use anyhow::{Context, bail};
use central::Central;
use checks::{Expect, InFlight, Violation};
use machine::{Disk, Machine};
use phases::Phase;
use qga::Qga;
use rng::Rng;
use serde_json::{Value, json};
use snapshot::Snapshot;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a boot may take until the guest agent answers (TCG, a loaded
/// machine: 15–60 s seen).
const BOOT_LIMIT: Duration = Duration::from_secs(600);
/// From the guest agent answering to the agent authenticated (its first
/// start compiles the built-in components under emulation).
const AUTH_LIMIT: Duration = Duration::from_secs(300);
/// How long a result may take to arrive after the agent authenticated.
const RESULT_LIMIT: Duration = Duration::from_secs(90);

struct Args {
    cuts: u32,
    seed: u64,
    phases: Vec<Phase>,
    control_cuts: u32,
    dev: bool,
    video_mib: u32,
    /// Only build (or check) the cached image.
    image_only: bool,
    /// A package to cut instead of building one (an older or released one).
    deb: Option<std::path::PathBuf>,
    /// Where logs and disks go (default `target/power-cut`).
    work: Option<std::path::PathBuf>,
}

const USAGE: &str = "usage: cargo xtask power-cut [--cuts N] [--seed S] [--phase P]... \
                     [--control-cuts K] [--video-mib M] [--dev] [--deb PACKAGE] [--work DIR] [--image-only]";

fn parse(args: &[String]) -> anyhow::Result<Args> {
    let mut parsed = Args {
        cuts: 20,
        seed: 1,
        phases: Vec::new(),
        control_cuts: 1,
        dev: false,
        video_mib: 16,
        image_only: false,
        deb: None,
        work: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--dev" {
            parsed.dev = true;
            continue;
        }
        if flag == "--image-only" {
            parsed.image_only = true;
            continue;
        }
        let value = it.next().with_context(|| USAGE.to_owned())?;
        let number = || {
            value
                .parse::<u64>()
                .with_context(|| format!("{flag} {value}: {USAGE}"))
        };
        match flag.as_str() {
            "--cuts" => parsed.cuts = u32::try_from(number()?)?,
            "--seed" => parsed.seed = number()?,
            "--control-cuts" => parsed.control_cuts = u32::try_from(number()?)?,
            "--video-mib" => parsed.video_mib = u32::try_from(number()?)?.max(1),
            "--deb" => parsed.deb = Some(value.into()),
            "--work" => parsed.work = Some(value.into()),
            "--phase" => {
                for name in value.split(',') {
                    parsed.phases.push(Phase::parse(name.trim())?);
                }
            }
            _ => bail!("{USAGE}"),
        }
    }
    if parsed.phases.is_empty() {
        parsed.phases = phases::ALL.to_vec();
    }
    Ok(parsed)
}

pub fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let args = parse(args)?;
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|u| u.split_whitespace().next().map(str::to_owned))
        });
    if uid.as_deref() != Some("0") {
        bail!("power-cut must run as root (mmdebstrap builds the image as root)");
    }
    image::check_host(args.image_only)?;
    if args.image_only {
        return image::ensure().map(|_| ());
    }
    let started = Instant::now();
    let profile = if args.dev {
        super::Profile::Dev
    } else {
        super::Profile::Release
    };
    let deb = match &args.deb {
        Some(deb) => deb.clone(),
        None => {
            let deb = super::build_package(root, None, profile)?;
            // The rig's central is a binary of the e2e crate, built as
            // `cargo xtask test` builds it.
            super::dev_build(root)?;
            deb
        }
    };
    let image = image::ensure()?;
    let work = args
        .work
        .clone()
        .unwrap_or_else(|| super::target_dir(root).join("power-cut"));
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    let central_bin = super::target_dir(root).join("debug/power-cut-central");
    if !central_bin.is_file() {
        bail!(
            "{} is missing: cargo test --no-run builds it",
            central_bin.display()
        );
    }
    let mut central = Central::start(&central_bin, args.video_mib, &work.join("central.log"))?;
    let prepared = work.join("prepared.raw");
    copy_disk(&image.disk, &prepared)?;
    inject(&prepared, &deb, "neopro-runtime.deb")?;
    prepare(&image, &prepared, &work.join("prepare"), &mut central)?;
    eprintln!(
        "power-cut: package, image and an installed, registered box ready in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let mut log = std::fs::File::create(work.join("cuts.jsonl"))?;
    let campaign_disk = work.join("campaign.raw");
    copy_disk(&prepared, &campaign_disk)?;
    let t0 = Instant::now();
    let mut campaign = Campaign::new(
        Machine::new(
            &image,
            &campaign_disk,
            &work.join("campaign"),
            Disk::Volatile,
        )?,
        Rng::new(args.seed),
        args.phases.clone(),
        false,
    );
    let outcome = campaign.run(&mut central, args.cuts, &mut log);
    let campaign_secs = t0.elapsed().as_secs_f64();
    if let Err(e) = &outcome {
        eprintln!("power-cut: the campaign stopped: {e:#}");
    }

    let mut control = None;
    if args.control_cuts > 0 {
        let control_disk = work.join("control.raw");
        copy_disk(&prepared, &control_disk)?;
        let mut run = Campaign::new(
            Machine::new(&image, &control_disk, &work.join("control"), Disk::Lying)?,
            Rng::new(args.seed ^ 0x00c0_47a1),
            vec![Phase::DeployVideo],
            true,
        );
        let done = run.run(&mut central, args.control_cuts, &mut log);
        if let Err(e) = &done {
            eprintln!("power-cut: the control stopped: {e:#}");
        }
        control = Some(run);
    }

    let text = report(
        &campaign,
        control.as_ref(),
        args.seed,
        central.video_size >> 20,
        campaign_secs,
    );
    print!("{text}");
    std::fs::write(work.join("report.txt"), &text)?;
    println!(
        "logs: {} (report.txt, cuts.jsonl, consoles)",
        work.display()
    );
    outcome?;
    let violations = campaign.violations.len();
    if violations > 0 {
        bail!("{violations} violation(s) over {} cuts", campaign.cuts);
    }
    if let Some(c) = &control
        && c.violations.is_empty()
    {
        bail!(
            "the must-fail control (a disk that ignores flushes) reported no violation: the rig cannot see a lost flush"
        );
    }
    Ok(())
}

/// A sparse copy of a disk.
fn copy_disk(from: &Path, to: &Path) -> anyhow::Result<()> {
    super::run(Command::new("cp").arg("--sparse=always").arg(from).arg(to))
}

/// Puts a host file into `/root/<name>` of an unmounted ext4 disk.
fn inject(disk: &Path, file: &Path, name: &str) -> anyhow::Result<()> {
    let script = disk.with_extension("debugfs");
    std::fs::write(
        &script,
        format!("cd /root\nwrite {} {name}\n", file.display()),
    )?;
    let out = Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&script)
        .arg(disk)
        .output()
        .context("debugfs (apt-get install e2fsprogs)")?;
    let text = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || text.contains("rror") {
        bail!("debugfs could not write {}: {text}", file.display());
    }
    Ok(())
}

/// Installs the package as a club would, registers the box with the
/// central, powers off cleanly: the disk every run starts from.
fn prepare(
    image: &image::Image,
    disk: &Path,
    dir: &Path,
    central: &mut Central,
) -> anyhow::Result<()> {
    let mut machine = Machine::new(image, disk, dir, Disk::Volatile)?;
    let started = Instant::now();
    machine.start()?;
    let mut qga = machine.connect(BOOT_LIMIT)?;
    eprintln!(
        "power-cut: first boot in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let long = Duration::from_secs(600);
    qga.exec(&["dpkg", "-i", "/root/neopro-runtime.deb"], None, long)?
        .ok("dpkg -i")?;
    let conf = format!(
        "# written by the power-cut rig before `register`\nCENTRAL_SERVER_ENABLED=true\n\
         CENTRAL_SERVER_URL={}\nHEARTBEAT_INTERVAL=2000\n",
        central.url_from_guest()
    );
    qga.exec(
        &[
            "/bin/sh",
            "-c",
            "mkdir -p /etc/neopro && cat > /etc/neopro/site.conf",
        ],
        Some(conf.as_bytes()),
        long,
    )?
    .ok("writing site.conf")?;
    let url = central.url_from_guest();
    qga.exec(
        &[
            "neopro-runtime",
            "register",
            "--server",
            &url,
            "--email",
            central::ADMIN_EMAIL,
            "--password-stdin",
            "--site-name",
            "Power cut box",
            "--club-name",
            "Power cut club",
            "--city",
            "Lyon",
            "--region",
            "Auvergne-Rhône-Alpes",
            "--country",
            "France",
            "--sports",
            "handball",
            "--non-interactive",
        ],
        Some(format!("{}\n", central::ADMIN_PASSWORD).as_bytes()),
        long,
    )?
    .ok("neopro-runtime register")?;
    let installed = Instant::now();
    qga.exec(&["neopro-runtime", "install-service"], None, long)?
        .ok("neopro-runtime install-service")?;
    central
        .wait_for(AUTH_LIMIT, |e| e.name == "authenticate" && e.at > installed)
        .context("the installed agent never authenticated")?;
    // Its first start compiled the components into the artifact cache;
    // a clean power-off keeps them (and everything else) on the disk.
    qga.exec(&["sync"], None, long)?;
    machine.power_off(Some(&mut qga))?;
    eprintln!(
        "power-cut: installed and registered in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[derive(Default, Clone, Copy)]
struct PhaseStats {
    cuts: u32,
    checked: u32,
    violations: u32,
}

struct Campaign {
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
    in_flight: Option<InFlight>,
    success_reported: bool,
    windows: BTreeMap<Phase, Duration>,
    stats: BTreeMap<Phase, PhaseStats>,
    violations: Vec<(u32, Phase, Violation)>,
    /// Violations already counted (the result checks look at every command
    /// each time).
    counted: BTreeSet<String>,
    cuts: u32,
    /// Seconds from each cut to the end of its check.
    cycles: Vec<f64>,
}

impl Campaign {
    fn new(machine: Machine, mut rng: Rng, phases: Vec<Phase>, control: bool) -> Campaign {
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
            counter: 0,
            sent: Vec::new(),
            config: Value::Null,
            known_configs: Vec::new(),
            known_shas: BTreeSet::new(),
            in_flight: None,
            success_reported: false,
            windows,
            stats: BTreeMap::new(),
            violations: Vec::new(),
            counted: BTreeSet::new(),
            cuts: 0,
            cycles: Vec::new(),
        }
    }

    fn peek(&self) -> Phase {
        self.order[self.next % self.order.len()]
    }

    fn advance(&mut self) {
        self.next += 1;
    }

    fn run(
        &mut self,
        central: &mut Central,
        cuts: u32,
        log: &mut std::fs::File,
    ) -> anyhow::Result<()> {
        self.known_shas.insert(central.video_sha256.clone());
        let boot = Instant::now();
        self.machine.start()?;
        let mut qga = self.machine.connect(BOOT_LIMIT)?;
        central
            .wait_for(AUTH_LIMIT, |e| e.name == "authenticate" && e.at > boot)
            .context("the agent did not authenticate after the first boot")?;
        self.baseline(&mut qga)?;
        while self.cuts < cuts {
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
            self.record_cut(phase, log, json!({"kind": "phase"}))?;
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
            Phase::DeployVideo => Some(phases::deploy(
                n,
                &central.video_url_from_guest(&format!("pc-{n}.mp4")),
                &central.video_sha256,
            )),
            Phase::UpdateConfig => Some(phases::update_config(n, &self.config)),
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
                        let snap = Snapshot::take(qga)?;
                        let text = snap.config_text().context("no configuration.json")?;
                        self.config = serde_json::from_slice(text)?;
                        self.known_configs.push(self.config.clone());
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
        if let Some(cid) = &id {
            let events = central.events();
            let result = events.iter().find(|e| {
                e.name == "command_result" && e.data["commandId"] == json!(cid) && e.at < cut_at
            });
            self.success_reported = result.is_some_and(|e| e.data["status"] == "success");
            // Cuts should fall over the whole phase: widen the window to
            // what the command took.
            if let Some(r) = result {
                let took = r.at.saturating_duration_since(sent_at).mul_f64(1.3);
                let w = self.windows.entry(phase).or_insert(window);
                if took > *w {
                    *w = took;
                }
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
        self.machine.start()?;
        let mut qga = self.machine.connect(BOOT_LIMIT)?;
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
        let snap = Snapshot::take(&mut qga)?;
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
                "power-cut: VIOLATION after cut {} ({}): {}: {}",
                self.cuts,
                phase.name(),
                v.check,
                v.detail
            );
        }
        eprintln!(
            "power-cut: {} cut {} ({}): {} violation(s), cycle {:.0} s",
            if self.control { "control" } else { "campaign" },
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
        self.in_flight = None;
        self.success_reported = false;
        Ok(qga)
    }
}

fn report(
    campaign: &Campaign,
    control: Option<&Campaign>,
    seed: u64,
    video_mib: u64,
    secs: f64,
) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "\npower cuts (seed {seed}; disk behind a volatile write cache; videos of {} MiB; {:.0} s, {:.1} s per cut)\n",
        video_mib,
        secs,
        secs / f64::from(campaign.cuts.max(1))
    ));
    for phase in phases::ALL {
        let s = campaign.stats.get(phase).copied().unwrap_or_default();
        if s.cuts == 0 && s.checked == 0 {
            continue;
        }
        out.push_str(&format!(
            "  {:<14} {:>4} cuts, {:>3} violations\n",
            phase.name(),
            s.cuts,
            s.violations
        ));
    }
    let by_check = checks::tally(
        &campaign
            .violations
            .iter()
            .map(|(_, _, v)| v.clone())
            .collect::<Vec<_>>(),
    );
    for (name, text) in checks::CHECKS {
        let n = by_check.get(name).copied().unwrap_or(0);
        out.push_str(&format!("  check {name:<17} {n:>3}  {text}\n"));
    }
    for (cut, phase, v) in &campaign.violations {
        out.push_str(&format!(
            "  violation after cut {cut} ({}): {}: {}\n",
            phase.name(),
            v.check,
            v.detail
        ));
    }
    if let Some(c) = control {
        out.push_str(&format!(
            "must-fail control (a disk that ignores flushes): {} cuts, {} violations{}\n",
            c.cuts,
            c.violations.len(),
            if c.violations.is_empty() {
                " — FAILED: the rig saw no lost flush"
            } else {
                " (as it must)"
            }
        ));
        for (cut, _, v) in c.violations.iter().take(5) {
            out.push_str(&format!("  control cut {cut}: {}: {}\n", v.check, v.detail));
        }
    }
    out.push_str(&format!(
        "{} cuts, {} violations\n",
        campaign.cuts,
        campaign.violations.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() -> anyhow::Result<()> {
        let a = parse(&[
            "--cuts".into(),
            "5".into(),
            "--seed".into(),
            "9".into(),
            "--phase".into(),
            "deploy_video,idle".into(),
            "--dev".into(),
        ])?;
        assert_eq!((a.cuts, a.seed, a.dev), (5, 9, true));
        assert_eq!(a.phases, [Phase::DeployVideo, Phase::Idle]);
        assert_eq!(parse(&[])?.phases.len(), phases::ALL.len());
        assert!(parse(&["--cuts".into()]).is_err());
        assert!(parse(&["--phase".into(), "nap".into()]).is_err());
        Ok(())
    }
}
