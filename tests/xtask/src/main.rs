//! `cargo xtask <task>`: builds what plain cargo cannot in one go (guest
//! components for wasm32-wasip2 next to the native host) and assembles
//! `dist/`.
//!
//! Tasks:
//! - `build`: guests + release host → `dist/neopro-runtime`, `dist/components/`
//! - `guests`: guests only → `target/components/{builtin,test}/`
//! - `test`: guests, then `cargo test` with the components' location
//! - `demo`: `build`, then the agent against a bundled local central server
//! - `bench [idle-secs] [deploy-MiB]`: `build`, then the sandbox, agent and
//!   deploy benchmarks (release)
//! - `bench-memory [soak-minutes]`: `build`, then the memory benchmark
//!   (RSS in each state, fsyncs per command; a soak when given minutes)
//! - `package [--target <triple>]`: guests + release host →
//!   `dist/neopro-runtime_<version>_<arch>.deb`, checked, smoke-tested
//! - `fuzz [seconds] [seed-hex]`: each fuzz target of
//!   `runtime/tests/fuzz.rs` for that long (default 60), seeded

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

mod package;

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
        "package" => package(&root),
        "fuzz" => fuzz(&root),
        _ => bail!("usage: cargo xtask <build|guests|test|demo|bench|bench-memory|package|fuzz>"),
    }
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .nth(2)
        .map(Path::to_owned)
        .context("xtask is not inside the workspace")
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
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
    Ok((builtin_dir, test_dir))
}

fn build(root: &Path) -> anyhow::Result<()> {
    let (builtin, _) = guests(root)?;
    run(cargo()
        .current_dir(root)
        .args(["build", "--release", "-p", "neopro-runtime"]))?;
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

/// The interop test runs a real socket.io server: install it once.
fn interop_packages(root: &Path) -> anyhow::Result<()> {
    let interop = root.join("tests/interop");
    if !interop.join("node_modules/socket.io").is_dir() {
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&interop))?;
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
    // Unit tests of the SDK and inside the built-in components (pure logic,
    // run natively).
    let mut unit = cargo();
    unit.current_dir(root)
        .args(["test", "-p", "neopro-guest-sdk"]);
    for g in find_guests(root)?.iter().filter(|g| g.builtin) {
        unit.args(["-p", &g.package]);
    }
    run(&mut unit)
}

/// The stable-toolchain fuzz targets (proptest-driven, seeded, time
/// bounded): `cargo xtask fuzz [seconds per target] [seed hex]`. The targets
/// run one after the other so each gets the machine for its whole budget.
fn fuzz(root: &Path) -> anyhow::Result<()> {
    let secs = std::env::args().nth(2).unwrap_or_else(|| "60".to_owned());
    let mut cmd = cargo();
    cmd.current_dir(root).env("NEOPRO_FUZZ_SECS", &secs).args([
        "test",
        "-p",
        "neopro-runtime",
        "--test",
        "fuzz",
        "--",
        "--test-threads=1",
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
    run(cargo()
        .current_dir(root)
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "neopro-e2e",
            "--bin",
            "agent-bench",
            "--",
        ])
        .arg(root.join("dist/neopro-runtime"))
        .arg(idle))?;
    // The deploy benchmark writes its temporary files under target/ (a real
    // disk, not a tmpfs /tmp).
    let mib = std::env::args().nth(3).unwrap_or_else(|| "1024".to_owned());
    run(cargo()
        .current_dir(target_dir(root))
        .args(["run", "--quiet", "--release", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .args(["-p", "neopro-e2e", "--bin", "deploy-bench", "--"])
        .arg(root.join("dist/neopro-runtime"))
        .arg(mib))
}

/// `cargo xtask bench-memory [soak-minutes]`: RSS and peak of the release
/// agent in each state, the journal's fsyncs per command, and (with a
/// duration, 30 minutes or more; not run in CI) a soak.
fn bench_memory(root: &Path) -> anyhow::Result<()> {
    build(root)?;
    let soak = std::env::args().nth(2).unwrap_or_else(|| "0".to_owned());
    run(cargo()
        .current_dir(root)
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "neopro-e2e",
            "--bin",
            "memory-bench",
            "--",
        ])
        .arg(root.join("dist/neopro-runtime"))
        .arg(soak))
}

/// `cargo xtask package [--target <triple>]`: see `package.rs`.
fn package(root: &Path) -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(2).collect();
    let triple = match args.as_slice() {
        [] => None,
        [flag, t] if flag == "--target" => Some(t.clone()),
        _ => bail!("usage: cargo xtask package [--target <triple>]"),
    };
    let (builtin, _) = guests(root)?;
    let mut cmd = cargo();
    cmd.current_dir(root)
        .args(["build", "--release", "-p", "neopro-runtime"]);
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
    eprintln!("release build: {:.0} s", started.elapsed().as_secs_f64());
    let triple = triple.unwrap_or_else(|| format!("{}-unknown-linux-gnu", std::env::consts::ARCH));
    let inputs = package::Inputs {
        version: package::workspace_version(root)?,
        arch: package::deb_arch(&triple)?.to_owned(),
        binary: release.join("release/neopro-runtime"),
        components: builtin,
        unit: root.join("config/neopro-runtime.service"),
        site_conf_example: root.join("config/site.conf.example"),
    };
    package::check_binary_arch(&inputs.binary, &inputs.arch)?;
    let stage = target_dir(root).join(format!("deb/{}", inputs.arch));
    package::stage(&inputs, &root.join("README.md"), &stage)?;
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
        &inputs.components,
        &triple,
        &target_dir(root).join(format!("deb/smoke-{}", inputs.arch)),
    )
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

/// Builds dist/, then runs the agent against a bundled local central
/// server that sends a few commands and prints the results.
fn demo(root: &Path) -> anyhow::Result<()> {
    build(root)?;
    run(cargo()
        .current_dir(root)
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "neopro-e2e",
            "--bin",
            "demo-central",
            "--",
        ])
        .arg(root.join("dist/neopro-runtime"))
        .arg(target_dir(root).join("demo"))
        .arg(target_dir(root).join("components/test/video-inventory.wasm")))
}
