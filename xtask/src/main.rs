//! `cargo xtask <task>`: builds what plain cargo cannot in one go (guest
//! components for wasm32-wasip2 next to the native host) and assembles
//! `dist/`.
//!
//! Tasks:
//! - `build`: guests + release host → `dist/neopro-runtime`, `dist/components/`
//! - `guests`: guests only → `target/components/{builtin,test}/`
//! - `test`: guests, then `cargo test` with the components' location
//! - `demo`: guests + the test suite's build, then the agent against a
//!   bundled local central server
//! - `bench [idle-secs] [deploy-MiB]`: `build`, then the sandbox, agent and
//!   deploy benchmarks (release)
//! - `bench-memory [soak-minutes]`: `build`, then the memory benchmark
//! - `bench-deploy [MiB] [rounds]`: `build`, then the deploy benchmark alone
//! - `card-writes [idle-secs]`: `build`, then what the agent writes to the
//!   card, idle (at the real server's rates) and per command
//!   (RSS in each state, fsyncs per command; a soak when given minutes)
//! - `package [--target <triple>]... | --dev`: guests + release host →
//!   `dist/neopro-runtime_<version>_<arch>.deb`, checked, smoke-tested
//!   (`--dev`: this machine's dev build, as `system-test --dev` installs it)
//! - `fuzz [seconds] [seed-hex]`: each fuzz target of
//!   `runtime/tests/fuzz.rs` for that long (default 60), seeded
//! - `floors`: the agent's folders by floor; fails when one imports a folder
//!   above it (`floors.rs`, also a unit test), or when `runtime/src` names a
//!   built-in command outside the default allowlist (`named_commands.rs`)
//! - `system-test [--arch A]... [--scenario NAME]`: that package on a booted
//!   Debian under systemd-nspawn (see `system_test/`)
//! - `power-cut [--cuts N] [--seed S] [--phase P]`: real power cuts of
//!   the package on an emulated box, invariants checked after each (see
//!   `power_cut/`)
//! - `bench-cross <triple> [deploy-MiB]`: the sandbox, agent and deploy
//!   benchmarks for another architecture, run under qemu-user
//! - `migration-bundle [--target <triple>]`: the package, inside the NEOPRO
//!   release the Node.js agent installs to hand its box over

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

mod agent_release;
/// Shared with the e2e crate's system tests (`tests/support/`).
#[path = "../../tests/support/box_register.rs"]
mod box_register;
mod floors;
mod migration_bundle;
mod named_commands;
mod package;
mod power_cut;
mod system_test;
mod task_args;

const GUEST_TARGET: &str = "wasm32-wasip2";

fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    let root = workspace_root()?;
    match task.as_str() {
        "build" => build(&root),
        "guests" => guests(&root).map(|_| ()),
        "test" => test(&root),
        "demo" => demo(&root),
        "bench" => bench(&root),
        "bench-memory" => bench_memory(&root),
        "card-writes" => card_writes(&root),
        "bench-deploy" => bench_deploy(&root),
        "package" => package(&root),
        "fuzz" => fuzz(&root),
        "floors" => floors::run(&root),
        "system-test" => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            system_test::run(&root, &args)
        }
        "power-cut" => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            power_cut::run(&root, &args)
        }
        "bench-cross" => bench_cross(&root),
        "migration-bundle" => migration_bundle(&root),
        _ => bail!(
            "usage: cargo xtask <build|guests|test|demo|bench|bench-memory|bench-deploy|card-writes|package|fuzz|floors|system-test|power-cut|bench-cross|migration-bundle>"
        ),
    }
}

/// The crate whose binary is the agent, `neopro-runtime` (the command line
/// and operator commands over the agent's library).
const AGENT_CRATE: &str = "neopro-ops";

fn workspace_root() -> anyhow::Result<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .nth(1)
        .map(Path::to_owned)
        .context("xtask is not inside the workspace")
}

/// A cargo command with the environment of a plain `cargo` run. `cargo
/// xtask` is `cargo run`, which gives xtask the package variables of xtask
/// itself (`CARGO_PKG_NAME=xtask`, `CARGO_MANIFEST_DIR`, …); a nested cargo
/// inheriting them reruns every build script that watches them (ring does:
/// `rerun-if-env-changed=CARGO_PKG_NAME`), so ring and everything above it,
/// the agent included, was compiled again at every switch between a plain
/// `cargo` (clippy) and an xtask step.
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                name,
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
            )
        {
            cmd.env_remove(name);
        }
    }
    cmd
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// A guest crate: its package name and its component manifest.
struct Guest {
    package: String,
    manifest: PathBuf,
    /// The component name from the manifest.
    name: String,
    builtin: bool,
}

fn read_toml(path: &Path) -> anyhow::Result<toml::Table> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.parse::<toml::Table>()
        .with_context(|| format!("parsing {}", path.display()))
}

fn find_guests(root: &Path) -> anyhow::Result<Vec<Guest>> {
    let mut guests = Vec::new();
    for (folder, builtin) in [
        ("commands", true),
        ("tests/guests", false),
        // The template (guest-sdk/template) is built and tested, never shipped.
        ("guest-sdk", false),
    ] {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join(folder))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("Cargo.toml").is_file())
            .collect();
        dirs.sort();
        for dir in dirs {
            let cargo_toml = read_toml(&dir.join("Cargo.toml"))?;
            let package = cargo_toml
                .get("package")
                .and_then(|p| p.get("name"))
                .and_then(|n| n.as_str())
                .with_context(|| format!("{}: no package name", dir.display()))?
                .to_owned();
            let manifest = std::fs::read_dir(&dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| {
                    p.extension().is_some_and(|x| x == "toml")
                        && p.file_name().is_some_and(|n| n != "Cargo.toml")
                })
                .with_context(|| {
                    format!("{}: no component manifest (<name>.toml)", dir.display())
                })?;
            let name = read_toml(&manifest)?
                .get("name")
                .and_then(|n| n.as_str())
                .with_context(|| format!("{}: no name", manifest.display()))?
                .to_owned();
            guests.push(Guest {
                package,
                manifest,
                name,
                builtin,
            });
        }
    }
    Ok(guests)
}

/// Installs the wasm target when rustup is there and it is missing.
fn ensure_guest_target() -> anyhow::Result<()> {
    let Ok(out) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        return Ok(());
    };
    let installed = String::from_utf8_lossy(&out.stdout);
    if !installed.lines().any(|l| l.trim() == GUEST_TARGET) {
        run(Command::new("rustup").args(["target", "add", GUEST_TARGET]))?;
    }
    Ok(())
}

/// Builds every guest and lays them out as component folders.
/// Returns (builtin dir, test dir).
fn guests(root: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    ensure_guest_target()?;
    let list = find_guests(root)?;
    let mut cmd = cargo();
    cmd.current_dir(root)
        .args(["build", "--release", "--target", GUEST_TARGET]);
    for g in &list {
        cmd.args(["-p", &g.package]);
    }
    run(&mut cmd)?;
    let target = target_dir(root);
    let built = target.join(GUEST_TARGET).join("release");
    let builtin_dir = target.join("components/builtin");
    let test_dir = target.join("components/test");
    for dir in [&builtin_dir, &test_dir] {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
    }
    for g in &list {
        let wasm = built.join(format!("{}.wasm", g.package.replace('-', "_")));
        let dests: Vec<&PathBuf> = if g.builtin {
            vec![&builtin_dir, &test_dir]
        } else {
            vec![&test_dir]
        };
        for dir in dests {
            std::fs::copy(&wasm, dir.join(format!("{}.wasm", g.name)))
                .with_context(|| format!("copying {}", wasm.display()))?;
            std::fs::copy(&g.manifest, dir.join(format!("{}.toml", g.name)))?;
        }
    }
    ts_guests(root, &target.join("components/ts"))?;
    Ok((builtin_dir, test_dir))
}

/// TypeScript test components (guest-sdk/template-ts): `npm ci` from the
/// lockfile when node_modules is missing, then the SDK's build step (jco on
/// QuickJS), laid out in `target/components/ts/` like the Rust ones.
fn ts_guests(root: &Path, out: &Path) -> anyhow::Result<()> {
    if out.exists() {
        std::fs::remove_dir_all(out)?;
    }
    std::fs::create_dir_all(out)?;
    let project = root.join("guest-sdk/template-ts");
    if !project.join("node_modules/@neopro/guest-sdk").is_dir() {
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&project))?;
    }
    run(Command::new("npm")
        .args(["run", "--silent", "build", "--", "--out"])
        .arg(out)
        .current_dir(&project))?;
    // Test fixtures of the same project, each named after its source file
    // (the build names its output after the project's manifest).
    for (fixture, source) in [
        ("memory-hog", "memory-hog.ts"),
        ("host-probe", "host-probe.js"),
    ] {
        let scratch = out.join(format!(".{fixture}"));
        run(Command::new("npm")
            .args(["run", "--silent", "build", "--", "--src"])
            .arg(format!("fixtures/{source}"))
            .arg("--out")
            .arg(&scratch)
            .current_dir(&project))?;
        std::fs::rename(
            scratch.join("video-inventory.wasm"),
            out.join(format!("{fixture}.wasm")),
        )?;
        std::fs::remove_dir_all(&scratch)?;
    }
    npm_cache_for_component_new(root)
}

/// `component new --lang ts` writes a project without a lockfile, and the
/// test that builds one installs it `--offline`: npm then needs the package
/// metadata of its whole tree in its cache, which `npm ci` (lockfile: the
/// tarballs only) never fetches, and the tarballs of whatever that fresh
/// resolution picks that no lockfile pins (on a fresh machine, e.g.
/// `string_decoder` 1.4.0). Installing the template's package.json once
/// here (scripts off: only the cache is wanted) puts both there.
fn npm_cache_for_component_new(root: &Path) -> anyhow::Result<()> {
    let template =
        std::fs::read_to_string(root.join("ops/src/new_component/templates/ts/package.json.tmpl"))?;
    let manifest = template
        .replace("{{component}}", "npm-cache-prime")
        .replace("{{snake}}", "npm_cache_prime");
    let dir = target_dir(root).join("npm-cache-prime");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("package.json"), manifest)?;
    // The SDK as the project gets it: a copy without node_modules, whose
    // dependencies npm resolves from the registry (a link to guest-sdk/js
    // would be resolved from its installed node_modules instead).
    copy_without_node_modules(&root.join("guest-sdk/js"), &dir.join("neopro-guest-sdk"))?;
    run(Command::new("npm")
        .args(["install", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(&dir))
}

fn copy_without_node_modules(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "node_modules" {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_without_node_modules(&entry.path(), &to.join(&name))?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(&name))?;
        }
    }
    Ok(())
}

fn build(root: &Path) -> anyhow::Result<()> {
    let (builtin, _) = guests(root)?;
    run(cargo()
        .current_dir(root)
        .args(["build", "--release", "-p", AGENT_CRATE]))?;
    let dist = root.join("dist");
    if dist.exists() {
        std::fs::remove_dir_all(&dist)?;
    }
    std::fs::create_dir_all(dist.join("components"))?;
    std::fs::copy(
        target_dir(root).join("release/neopro-runtime"),
        dist.join("neopro-runtime"),
    )?;
    for entry in std::fs::read_dir(&builtin)? {
        let path = entry?.path();
        if let Some(name) = path.file_name() {
            std::fs::copy(&path, dist.join("components").join(name))?;
        }
    }
    eprintln!("dist/ ready: {}", dist.display());
    Ok(())
}

/// The interop test runs a real socket.io server and the conformance tests
/// the conformance peers (socket.io central, web app and TV client): their
/// npm packages, from their lockfiles, installed once.
fn interop_packages(root: &Path) -> anyhow::Result<()> {
    for folder in ["tests/interop", "tests/conformance"] {
        let dir = root.join(folder);
        if !dir.join("node_modules/socket.io").is_dir() {
            run(Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--prefix"])
                .arg(&dir))?;
        }
    }
    Ok(())
}

fn test(root: &Path) -> anyhow::Result<()> {
    interop_packages(root)?;
    let (_, test_dir) = guests(root)?;
    run(cargo()
        .current_dir(root)
        .env("NEOPRO_TEST_COMPONENTS", &test_dir)
        .args(["test"]))?;
    run(&mut guest_unit_tests(root)?)
}

/// `cargo test` of the unit tests of the SDK and inside the built-in
/// components (pure logic, run natively; their host build of wit-bindgen is
/// the suite's only one, 90 s cold).
fn guest_unit_tests(root: &Path) -> anyhow::Result<Command> {
    let mut unit = cargo();
    unit.current_dir(root)
        .args(["test", "-p", "neopro-guest-sdk"]);
    for g in find_guests(root)?.iter().filter(|g| g.builtin) {
        unit.args(["-p", &g.package]);
    }
    Ok(unit)
}

/// The stable-toolchain fuzz targets (proptest-driven, seeded, time
/// bounded): `cargo xtask fuzz [seconds per target] [seed hex]`.
fn fuzz(root: &Path) -> anyhow::Result<()> {
    let secs = std::env::args().nth(2).unwrap_or_else(|| "60".to_owned());
    let mut cmd = cargo();
    // `--test fuzz` without `-p`: the workspace's default members, so the
    // features (and the build) are the test suite's, reused; `-p
    // neopro-runtime` alone resolves other features and compiled the agent
    // and half its dependencies again (3 min in CI).
    // Two targets at a time: each is one thread and gets its whole budget
    // on a core of its own (CI's two), so four take two budgets of wall time.
    cmd.current_dir(root).env("NEOPRO_FUZZ_SECS", &secs).args([
        "test",
        "--test",
        "fuzz",
        "--",
        "--test-threads=2",
        "--nocapture",
    ]);
    if let Some(seed) = std::env::args().nth(3) {
        cmd.env("NEOPRO_FUZZ_SEED", seed);
    }
    run(&mut cmd)
}

/// The sandbox benchmark, then the agent benchmark (release binary, loopback).
/// `cargo xtask bench [idle seconds]` (default 60).
fn bench(root: &Path) -> anyhow::Result<()> {
    build(root)?;
    let test_dir = target_dir(root).join("components/test");
    run(cargo()
        .current_dir(root)
        .env("NEOPRO_TEST_COMPONENTS", &test_dir)
        .args(["bench", "-p", "neopro-runtime", "--bench", "sandbox"]))?;
    let idle = std::env::args().nth(2).unwrap_or_else(|| "60".to_owned());
    run(e2e_release_bin(root, "agent-bench")
        .arg(root.join("dist/neopro-runtime"))
        .arg(idle))?;
    let mib = std::env::args().nth(3).unwrap_or_else(|| "1024".to_owned());
    run(e2e_release_bin_under_target(root, "deploy-bench").arg(mib))
}

/// [`e2e_release_bin`] run from target/ (its temporary files on a real
/// disk, not a tmpfs /tmp), the release agent of `dist/` as its first
/// argument.
fn e2e_release_bin_under_target(root: &Path, bin: &str) -> Command {
    let mut command = cargo();
    command
        .current_dir(target_dir(root))
        .args(["run", "--quiet", "--release", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .args(["-p", "neopro-e2e", "--bin", bin, "--"])
        .arg(root.join("dist/neopro-runtime"));
    command
}

/// `cargo run --release` of one of the e2e crate's benchmark binaries, its
/// arguments to follow.
fn e2e_release_bin(root: &Path, bin: &str) -> Command {
    let mut command = cargo();
    command.current_dir(root).args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "neopro-e2e",
        "--bin",
        bin,
        "--",
    ]);
    command
}

/// `cargo xtask bench-deploy [MiB] [rounds]` (default 512 MiB, 3 rounds):
/// the deploy benchmark of `bench` alone.
fn bench_deploy(root: &Path) -> anyhow::Result<()> {
    build(root)?;
    let mib = std::env::args().nth(2).unwrap_or_else(|| "512".to_owned());
    let rounds = std::env::args().nth(3).unwrap_or_else(|| "3".to_owned());
    run(e2e_release_bin_under_target(root, "deploy-bench")
        .arg(mib)
        .arg(rounds))
}

/// `cargo xtask card-writes [idle-seconds]` (default 300): the release
/// agent's writes, counted by `strace` and `/proc/<pid>/io`, idle at the
/// real server's rates and per command (issue 29.5). Its folders live under
/// target/ (a real disk), its runtime folder on /dev/shm (a tmpfs, as the
/// unit's /run/neopro-runtime on a box).
fn card_writes(root: &Path) -> anyhow::Result<()> {
    build(root)?;
    let idle = std::env::args().nth(2).unwrap_or_else(|| "300".to_owned());
    run(e2e_release_bin_under_target(root, "card-writes").arg(idle))
}

/// `cargo xtask bench-memory [soak-minutes]`: RSS and peak of the release
/// agent in each state, the journal's fsyncs per command, and (with a
/// duration, 30 minutes or more; not run in CI) a soak.
fn bench_memory(root: &Path) -> anyhow::Result<()> {
    build(root)?;
    let soak = std::env::args().nth(2).unwrap_or_else(|| "0".to_owned());
    run(e2e_release_bin(root, "memory-bench")
        .arg(root.join("dist/neopro-runtime"))
        .arg(soak))
}

/// `cargo xtask package [--target <triple>]...`: see `package.rs`. Several
/// targets are built by one cargo run first: their fat-LTO links, each
/// single-threaded, then run side by side on the machine's cores.
fn package(root: &Path) -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(2).collect();
    let PackageArgs { triples, dev } = parse_package_args(&args)?;
    if dev {
        // The suite's dev build packaged for this machine: what the amd64
        // system test and the power-cut rig install while iterating, and in
        // CI (the release `.deb`s are the Pis').
        return build_package(root, None, Profile::Dev).map(|_| ());
    }
    if triples.len() > 1 {
        let mut cmd = cargo();
        cmd.current_dir(root)
            .args(["build", "--release", "-p", AGENT_CRATE]);
        for t in &triples {
            if !rustup_has_target(t) {
                run(Command::new("rustup").args(["target", "add", t]))?;
            }
            cmd.args(["--target", t]);
            package::cross_linker_env(&mut cmd, t);
        }
        let started = std::time::Instant::now();
        run(&mut cmd)?;
        eprintln!(
            "release build for {}: {:.0} s",
            triples.join(", "),
            started.elapsed().as_secs_f64()
        );
    }
    if triples.is_empty() {
        return build_package(root, None, Profile::Release).map(|_| ());
    }
    for t in triples {
        build_package(root, Some(t), Profile::Release)?;
    }
    Ok(())
}

struct PackageArgs {
    triples: Vec<String>,
    dev: bool,
}

/// `--target <triple>` (repeatable) or `--dev` (this machine's dev build).
fn parse_package_args(args: &[String]) -> anyhow::Result<PackageArgs> {
    let usage = "usage: cargo xtask package [--target <triple>]... | --dev";
    let mut parsed = PackageArgs {
        triples: Vec::new(),
        dev: false,
    };
    for (flag, value) in task_args::flags(args, &["--dev"], usage)? {
        match (flag, value) {
            ("--target", Some(t)) => parsed.triples.push(t.to_owned()),
            ("--dev", None) => parsed.dev = true,
            _ => bail!("{usage}"),
        }
    }
    if parsed.dev && !parsed.triples.is_empty() {
        bail!("--dev packages this machine's dev build; --target is for release builds ({usage})");
    }
    Ok(parsed)
}

/// Whether `triple` is this machine's (its binary runs here).
fn triple_is_host(triple: &str) -> bool {
    triple.split('-').next() == Some(std::env::consts::ARCH)
}

/// `cargo xtask migration-bundle [--target <triple>]`: the release package,
/// then the bundle the Node.js agent installs (see `migration_bundle.rs`).
fn migration_bundle(root: &Path) -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(2).collect();
    let triple = migration_bundle::parse(&args)?;
    let arch_of = triple
        .clone()
        .unwrap_or_else(|| format!("{}-unknown-linux-gnu", std::env::consts::ARCH));
    let deb = build_package(root, triple, Profile::Release)?;
    let version = package::workspace_version(root)?;
    let bundle = migration_bundle::write(root, &deb, &version, package::deb_arch(&arch_of)?)?;
    let size = std::fs::metadata(&bundle)?.len();
    println!(
        "{}: {:.1} MB, sha256 {}
         Upload it as a NEOPRO release (version, this sha256) and deploy it to the boxes          that run the Node.js agent: docs/migration.md.",
        bundle.display(),
        size as f64 / 1e6,
        migration_bundle::sha256(&bundle)?
    );
    Ok(())
}

/// The dev build of everything the test suite runs, the agent included:
/// `cargo test --no-run`, never `cargo build -p neopro-ops`, whose
/// features differ (no dev-dependencies: tokio's test-util) and so would
/// compile the agent and half its dependencies a second time.
fn dev_build(root: &Path) -> anyhow::Result<()> {
    run(cargo().current_dir(root).args(["test", "--no-run"]))
}

/// Which build of the agent goes into the package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    Release,
    /// The dev build the tests use, debug info stripped from the packaged
    /// copy: `system-test --dev` while iterating (no fat-LTO build).
    Dev,
}

/// Guests, agent binary, `.deb` checked and smoke-tested; returns the `.deb`.
fn build_package(root: &Path, triple: Option<String>, profile: Profile) -> anyhow::Result<PathBuf> {
    let (builtin, _) = guests(root)?;
    let mut cmd = cargo();
    cmd.current_dir(root);
    if profile == Profile::Dev && triple.is_none() {
        // Exactly what `cargo xtask test` builds (same features, so its
        // artifacts are reused), the agent binary included.
        cmd.args(["test", "--no-run"]);
    } else {
        cmd.args(["build", "-p", AGENT_CRATE]);
    }
    if profile == Profile::Release {
        cmd.arg("--release");
    }
    let mut release = target_dir(root);
    if let Some(t) = &triple {
        if !rustup_has_target(t) {
            run(Command::new("rustup").args(["target", "add", t]))?;
        }
        cmd.args(["--target", t]);
        package::cross_linker_env(&mut cmd, t);
        release.push(t);
    }
    let started = std::time::Instant::now();
    run(&mut cmd)?;
    eprintln!(
        "{profile:?} build: {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let triple = triple.unwrap_or_else(|| format!("{}-unknown-linux-gnu", std::env::consts::ARCH));
    let precompiled = precompile_for_package(root, &triple, &builtin)?;
    let inputs = package::Inputs {
        version: package::workspace_version(root)?,
        arch: package::deb_arch(&triple)?.to_owned(),
        binary: release.join(match profile {
            Profile::Release => "release/neopro-runtime",
            Profile::Dev => "debug/neopro-runtime",
        }),
        components: builtin,
        precompiled: precompiled.clone(),
        unit: root.join("config/neopro-runtime.service"),
        site_conf_example: root.join("config/site.conf.example"),
    };
    package::check_binary_arch(&inputs.binary, &inputs.arch)?;
    let stage = target_dir(root).join(format!("deb/{}", inputs.arch));
    package::stage(&inputs, &root.join("README.md"), &stage)?;
    if profile == Profile::Dev {
        // Debug info would make the package (and its xz pass) huge.
        let strip = if triple.starts_with("aarch64") {
            "aarch64-linux-gnu-strip"
        } else {
            "strip"
        };
        run(Command::new(strip)
            .arg("--strip-debug")
            .arg(stage.join(package::BINARY)))?;
    }
    let deb = root.join(format!(
        "dist/{}_{}_{}.deb",
        package::PACKAGE,
        inputs.version,
        inputs.arch
    ));
    package::build_deb(&stage, &deb)?;
    for e in package::verify_deb(&deb, &inputs)? {
        println!("{} {} {:>10} /{}", e.mode, e.owner, e.size, e.path);
    }
    let size = std::fs::metadata(&inputs.binary)?.len();
    println!(
        "{}: checked; binary {:.1} MB ({size} bytes, stripped)",
        deb.display(),
        size as f64 / 1e6
    );
    package::smoke_test(
        &inputs.binary,
        &stage.join(package::COMPONENTS_DIR),
        &triple,
        &target_dir(root).join(format!("deb/smoke-{}", inputs.arch)),
        precompiled.is_some(),
    )?;
    // The same binary (stripped as packaged) as an agent release for the
    // server's Updates page.
    let release = root.join(format!(
        "dist/{}-{}-{}.tar.gz",
        package::PACKAGE,
        inputs.version,
        inputs.arch
    ));
    agent_release::build(
        &agent_release::Packaged {
            version: &inputs.version,
            arch: &inputs.arch,
            binary: &stage.join(package::BINARY),
            components: &stage.join(package::COMPONENTS_DIR),
            unit: &inputs.unit,
        },
        &target_dir(root).join(format!("deb/agent-release-{}", inputs.arch)),
        &release,
    )?;
    // Signed with the host's own build (it runs here, whatever the target).
    let signer = target_dir(root).join(match profile {
        Profile::Release if triple_is_host(&triple) => "release/neopro-runtime",
        _ => "debug/neopro-runtime",
    });
    match agent_release::sign(&signer, &release, &inputs.version)? {
        Some(params) => println!(
            "{}: signed (its first entry, {}, is the signed manifest: the Updates page can deliver it as it is); parameters for a command with a signature field in {}",
            release.display(),
            agent_release::SIGNED_MANIFEST,
            params.display()
        ),
        None => println!(
            "{}: unsigned (boxes refuse unsigned agent releases): set NEOPRO_RELEASE_KEY=<key file>, or run `neopro-runtime component sign-release {} --embed --version {} --key <key file>`",
            release.display(),
            release.display(),
            inputs.version
        ),
    }
    Ok(deb)
}

/// The built-in components precompiled for `triple`'s boxes, by the host's
/// agent (dev build, the one the tests use: the artifact depends on the
/// engine configuration, not on how the agent binary was optimised), or
/// `None` for targets whose packages compile on the box (all but armhf;
/// see `neopro-runtime precompile-package`).
fn precompile_for_package(
    root: &Path,
    triple: &str,
    builtin: &Path,
) -> anyhow::Result<Option<PathBuf>> {
    if !triple.starts_with("armv7") {
        return Ok(None);
    }
    dev_build(root)?;
    let out = target_dir(root).join(format!("deb/precompiled-{}", package::deb_arch(triple)?));
    let started = std::time::Instant::now();
    run(Command::new(target_dir(root).join("debug/neopro-runtime"))
        .args(["precompile-package", "--target", triple])
        .arg(builtin)
        .arg(&out))?;
    eprintln!(
        "built-in components precompiled for {triple} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(Some(out))
}

/// `cargo xtask bench-cross <triple> [deploy-MiB]` (default 100): the
/// benchmarks of `bench` for `triple` on this machine, the foreign binaries
/// run under qemu-user (`qemu-arm` for armv7, `qemu-aarch64` for aarch64;
/// the host's own triple runs natively, for scale). The sandbox benchmark is
/// cross-built; the agent and deploy benchmarks drive the cross-built agent
/// (through a wrapper script that starts it under qemu) from a native
/// harness (dev profile: only the agent is measured). Emulated numbers
/// compare architectures on one machine; they are not a Pi's speed.
fn bench_cross(root: &Path) -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(2).collect();
    let (triple, mib) = match args.as_slice() {
        [t] => (t.clone(), "100".to_owned()),
        [t, m] => (t.clone(), m.clone()),
        _ => bail!("usage: cargo xtask bench-cross <triple> [deploy-MiB]"),
    };
    let native = package::rust_arch(&triple) == std::env::consts::ARCH;
    let emulator = if native {
        None
    } else {
        Some(package::qemu_for(&triple)?)
    };
    if !rustup_has_target(&triple) {
        run(Command::new("rustup").args(["target", "add", &triple]))?;
    }
    let (builtin, test_dir) = guests(root)?;
    let upper = triple.to_uppercase().replace('-', "_");

    // 1. The sandbox benchmark, built for `triple`, run by cargo through
    //    the qemu runner.
    let mut bench = cargo();
    bench
        .current_dir(root)
        .env("NEOPRO_TEST_COMPONENTS", &test_dir)
        .args(["bench", "-p", "neopro-runtime", "--bench", "sandbox"])
        .args(["--target", &triple]);
    package::cross_linker_env(&mut bench, &triple);
    if let Some((qemu, sysroot)) = emulator {
        bench.env(
            format!("CARGO_TARGET_{upper}_RUNNER"),
            format!("{qemu} -L {sysroot}"),
        );
    }
    run(&mut bench)?;

    // 2. The agent for `triple`, beside its components, behind a wrapper.
    let mut build = cargo();
    build
        .current_dir(root)
        .args(["build", "--release", "-p", AGENT_CRATE])
        .args(["--target", &triple]);
    package::cross_linker_env(&mut build, &triple);
    run(&mut build)?;
    let agent = target_dir(root)
        .join(&triple)
        .join("release/neopro-runtime");
    let dir = target_dir(root).join(format!("bench-cross/{triple}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(dir.join("components"))?;
    for entry in std::fs::read_dir(&builtin)? {
        let path = entry?.path();
        if let Some(name) = path.file_name() {
            std::fs::copy(&path, dir.join("components").join(name))?;
        }
    }
    let wrapper = dir.join("neopro-runtime");
    let exec = match emulator {
        Some((qemu, sysroot)) => format!("exec {qemu} -L {sysroot} '{}' \"$@\"\n", agent.display()),
        None => format!("exec '{}' \"$@\"\n", agent.display()),
    };
    std::fs::write(&wrapper, format!("#!/bin/sh\n{exec}"))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    }

    // 3. Round trips and a deploy against the native test central.
    for (bin, extra) in [("agent-bench", "5"), ("deploy-bench", mib.as_str())] {
        run(cargo()
            .current_dir(target_dir(root))
            .args(["run", "--quiet", "--manifest-path"])
            .arg(root.join("Cargo.toml"))
            .args(["-p", "neopro-e2e", "--bin", bin, "--"])
            .arg(&wrapper)
            .arg(extra))?;
    }
    Ok(())
}

fn rustup_has_target(triple: &str) -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == triple)
        })
        // Without rustup, let cargo report a missing target itself.
        .unwrap_or(true)
}

/// Runs the agent against a bundled local central server that sends a few
/// commands and prints the results. It builds exactly what `cargo xtask
/// test` builds (the dev profile, `cargo test --no-run`: same features, so
/// the test suite after the demo compiles nothing, and neither does the
/// demo after the tests); `cargo xtask build` makes the release `dist/`.
fn demo(root: &Path) -> anyhow::Result<()> {
    let (builtin, test_dir) = guests(root)?;
    dev_build(root)?;
    // The rest of the test command's build (the README runs the demo first:
    // the test command after it only runs tests).
    run(guest_unit_tests(root)?.arg("--no-run"))?;
    let debug = target_dir(root).join("debug");
    run(Command::new(debug.join("demo-central"))
        .current_dir(root)
        .arg(debug.join("neopro-runtime"))
        .arg(target_dir(root).join("demo"))
        .arg(test_dir.join("video-inventory.wasm"))
        .arg(builtin))
}
