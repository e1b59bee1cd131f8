//! `cargo xtask package [--target <triple>]`: the Debian package of the
//! agent, `dist/neopro-runtime_<version>_<arch>.deb`, built with `dpkg-deb`
//! from a staged tree (no cargo-deb to compile), then checked by listing it.
//! A foreign-architecture binary is also smoke-tested under qemu-user.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const PACKAGE: &str = "neopro-runtime";
/// Where the agent looks for built-in components when neither
/// `COMPONENTS_PATH` nor `components/` next to the binary exist
/// (`registry::SYSTEM_COMPONENTS_DIR`).
pub const COMPONENTS_DIR: &str = "usr/lib/neopro-runtime/components";
pub const BINARY: &str = "usr/bin/neopro-runtime";
/// The built-in components precompiled for the package's boxes, where the
/// agent looks for them (`registry::PACKAGED_ARTIFACTS` in the components
/// folder).
pub const PRECOMPILED_DIR: &str = "usr/lib/neopro-runtime/components/precompiled";
pub const UNIT: &str = "usr/lib/systemd/system/neopro-runtime.service";
pub const SITE_CONF_EXAMPLE: &str = "etc/neopro/site.conf.example";

/// Cross linker used when the caller did not choose one (Debian's
/// `gcc-aarch64-linux-gnu`, `gcc-arm-linux-gnueabihf`).
const CROSS_LINKERS: &[(&str, &str)] = &[
    ("aarch64-unknown-linux-gnu", "aarch64-linux-gnu-gcc"),
    ("armv7-unknown-linux-gnueabihf", "arm-linux-gnueabihf-gcc"),
];

/// How a foreign binary of a target triple runs here: the qemu-user
/// emulator and the sysroot its dynamic loader and libc come from (Debian's
/// `libc6-dev-<arch>-cross`).
pub fn qemu_for(triple: &str) -> anyhow::Result<(&'static str, &'static str)> {
    let cpu = triple.split('-').next().unwrap_or(triple);
    Ok(match cpu {
        "aarch64" => ("qemu-aarch64", "/usr/aarch64-linux-gnu"),
        "armv7" => ("qemu-arm", "/usr/arm-linux-gnueabihf"),
        "x86_64" => ("qemu-x86_64", "/usr/x86_64-linux-gnu"),
        _ => bail!("no qemu-user emulator known for target {triple}"),
    })
}

/// What `std::env::consts::ARCH` (hence get-system-info's `architecture`,
/// like Node's `os.arch()`) says on a target triple: `arm` on armv7.
pub fn rust_arch(triple: &str) -> &str {
    match triple.split('-').next().unwrap_or(triple) {
        "armv7" => "arm",
        "i686" => "x86",
        cpu => cpu,
    }
}

/// What goes into the package.
pub struct Inputs {
    pub version: String,
    /// Debian architecture (`arm64`, `amd64`).
    pub arch: String,
    pub binary: PathBuf,
    /// Folder of `<name>.wasm` + `<name>.toml`.
    pub components: PathBuf,
    /// Folder of the components precompiled for the package's target
    /// (`<sha256>-<target>-<engine hash>.cwasm` + `.sha256`), if it ships
    /// them (armhf).
    pub precompiled: Option<PathBuf>,
    pub unit: PathBuf,
    pub site_conf_example: PathBuf,
}

/// One file the package must contain, with its permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub path: String,
    pub mode: &'static str,
}

/// Debian architecture name of a Rust target triple.
pub fn deb_arch(triple: &str) -> anyhow::Result<&'static str> {
    let cpu = triple.split('-').next().unwrap_or(triple);
    Ok(match cpu {
        "aarch64" => "arm64",
        "x86_64" => "amd64",
        "armv7" => "armhf",
        "i686" => "i386",
        _ => bail!("no Debian architecture known for target {triple}"),
    })
}

/// ELF `e_machine` and `EI_CLASS` (1 = 32-bit, 2 = 64-bit) expected for a
/// Debian architecture.
fn elf_machine(arch: &str) -> Option<(u16, u8)> {
    match arch {
        "arm64" => Some((0xB7, 2)),
        "amd64" => Some((0x3E, 2)),
        "armhf" => Some((0x28, 1)),
        "i386" => Some((0x03, 1)),
        _ => None,
    }
}

/// Refuses a binary built for another machine than the package says
/// (e.g. a host binary slipping into the arm64 or armhf package, or an
/// aarch64 binary in the armhf one: both are ARM, only the class differs).
pub fn check_binary_arch(binary: &Path, arch: &str) -> anyhow::Result<()> {
    let bytes = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    if bytes.get(..4) != Some(b"\x7fELF".as_slice()) {
        bail!("{} is not an ELF executable", binary.display());
    }
    let class = *bytes.get(4).context("truncated ELF header")?;
    let machine = bytes
        .get(18..20)
        .map(|m| u16::from_le_bytes([m[0], m[1]]))
        .context("truncated ELF header")?;
    let bits = |class: u8| if class == 1 { 32 } else { 64 };
    match elf_machine(arch) {
        Some((want, _)) if want != machine => bail!(
            "{} is built for ELF machine {machine:#x}, the {arch} package needs {want:#x}",
            binary.display()
        ),
        Some((_, want)) if want != class => bail!(
            "{} is a {}-bit ELF (class {class}), the {arch} package needs a {}-bit one",
            binary.display(),
            bits(class),
            bits(want)
        ),
        Some(_) => Ok(()),
        None => bail!("unknown Debian architecture {arch}"),
    }
}

/// Component files (`.wasm` and `.toml`) of a folder, sorted.
fn component_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm" || x == "toml"))
        .collect();
    files.sort();
    if !files
        .iter()
        .any(|p| p.extension().is_some_and(|x| x == "wasm"))
    {
        bail!("no component (.wasm) in {}", dir.display());
    }
    Ok(files)
}

/// The precompiled artifacts and their checksums, sorted; one artifact per
/// component, each with its `.sha256`, or an error naming what is missing.
fn precompiled_files(dir: &Path, components: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let artifacts: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    let wasms = component_files(components)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .count();
    if artifacts.len() != wasms {
        bail!(
            "{} holds {} precompiled artifacts for {wasms} components",
            dir.display(),
            artifacts.len()
        );
    }
    for artifact in artifacts {
        let mut sum = artifact.as_os_str().to_owned();
        sum.push(".sha256");
        if !Path::new(&sum).is_file() {
            bail!("{} has no .sha256 beside it", artifact.display());
        }
    }
    Ok(files)
}

/// The documentation pages the README links to (`docs/*.md` beside it).
fn doc_pages(readme: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dir = readme.parent().unwrap_or(Path::new(".")).join("docs");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "md"))
        .collect();
    pages.sort();
    Ok(pages)
}

/// The files the package of `inputs` must hold (directories aside).
pub fn expected_files(inputs: &Inputs) -> anyhow::Result<Vec<Expected>> {
    let mut files = vec![
        Expected {
            path: BINARY.to_owned(),
            mode: "-rwxr-xr-x",
        },
        Expected {
            path: UNIT.to_owned(),
            mode: "-rw-r--r--",
        },
        Expected {
            path: SITE_CONF_EXAMPLE.to_owned(),
            mode: "-rw-r--r--",
        },
        Expected {
            path: format!("usr/share/doc/{PACKAGE}/README.md"),
            mode: "-rw-r--r--",
        },
    ];
    for page in doc_pages(&crate::workspace_root()?.join("README.md"))? {
        if let Some(name) = page.file_name().and_then(|n| n.to_str()) {
            files.push(Expected {
                path: format!("usr/share/doc/{PACKAGE}/docs/{name}"),
                mode: "-rw-r--r--",
            });
        }
    }
    for file in component_files(&inputs.components)? {
        if let Some(name) = file.file_name().and_then(|n| n.to_str()) {
            files.push(Expected {
                path: format!("{COMPONENTS_DIR}/{name}"),
                mode: "-rw-r--r--",
            });
        }
    }
    if let Some(dir) = &inputs.precompiled {
        for file in precompiled_files(dir, &inputs.components)? {
            if let Some(name) = file.file_name().and_then(|n| n.to_str()) {
                files.push(Expected {
                    path: format!("{PRECOMPILED_DIR}/{name}"),
                    mode: "-rw-r--r--",
                });
            }
        }
    }
    Ok(files)
}

fn copy_with_mode(from: &Path, to: &Path, mode: u32) -> anyhow::Result<u64> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let size = std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    Ok(size)
}

/// Maintainer scripts (config/debian/): the user, install-service on a
/// registered box, restart on upgrade, stop + disable on remove, purge.
const MAINTAINER_SCRIPTS: &[(&str, &str)] = &[
    ("postinst", include_str!("../../config/debian/postinst")),
    ("prerm", include_str!("../../config/debian/prerm")),
    ("postrm", include_str!("../../config/debian/postrm")),
];

/// What the unit and the polkit rule need at run time: systemd (the unit,
/// journald for get_logs), dbus and polkitd (every restart, stop/start and
/// reboot goes through them; `policykit-1` on older releases), acl
/// (install-service grants the agent's access with ACLs), and the libc.
pub const DEPENDS: &str =
    "libc6 (>= 2.34), libgcc-s1, systemd, dbus, polkitd | policykit-1, acl, passwd";

/// Lays out the package tree under `stage` (emptied first).
pub fn stage(inputs: &Inputs, readme: &Path, stage: &Path) -> anyhow::Result<()> {
    if stage.exists() {
        std::fs::remove_dir_all(stage)?;
    }
    let mut bytes = 0;
    bytes += copy_with_mode(&inputs.binary, &stage.join(BINARY), 0o755)?;
    for file in component_files(&inputs.components)? {
        if let Some(name) = file.file_name() {
            bytes += copy_with_mode(&file, &stage.join(COMPONENTS_DIR).join(name), 0o644)?;
        }
    }
    if let Some(dir) = &inputs.precompiled {
        for file in precompiled_files(dir, &inputs.components)? {
            if let Some(name) = file.file_name() {
                bytes += copy_with_mode(&file, &stage.join(PRECOMPILED_DIR).join(name), 0o644)?;
            }
        }
    }
    bytes += copy_with_mode(&inputs.unit, &stage.join(UNIT), 0o644)?;
    bytes += copy_with_mode(
        &inputs.site_conf_example,
        &stage.join(SITE_CONF_EXAMPLE),
        0o644,
    )?;
    bytes += copy_with_mode(
        readme,
        &stage.join(format!("usr/share/doc/{PACKAGE}/README.md")),
        0o644,
    )?;
    // The README is an index into docs/: its pages go beside it, so its
    // links resolve on the box too.
    for page in doc_pages(readme)? {
        if let Some(name) = page.file_name() {
            bytes += copy_with_mode(
                &page,
                &stage
                    .join(format!("usr/share/doc/{PACKAGE}/docs"))
                    .join(name),
                0o644,
            )?;
        }
    }

    let debian = stage.join("DEBIAN");
    std::fs::create_dir_all(&debian)?;
    let control = format!(
        "Package: {PACKAGE}\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: NEOPRO <support@neopro.invalid>\n\
         Installed-Size: {kib}\n\
         Depends: {DEPENDS}\n\
         Section: admin\n\
         Priority: optional\n\
         Description: NEOPRO device agent\n \
         Keeps a NEOPRO video box connected to the NEOPRO central server and runs\n \
         its commands in sandboxed WebAssembly components.\n",
        version = inputs.version,
        arch = inputs.arch,
        kib = bytes.div_ceil(1024),
    );
    std::fs::write(debian.join("control"), control)?;
    // The example is documentation a site operator copies, but it lives in
    // /etc: as a conffile, local edits to it survive upgrades.
    std::fs::write(debian.join("conffiles"), format!("/{SITE_CONF_EXAMPLE}\n"))?;
    for (name, text) in MAINTAINER_SCRIPTS {
        let path = debian.join(name);
        std::fs::write(&path, text)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// `dpkg-deb --build`, files owned by root whoever builds.
pub fn build_deb(stage: &Path, deb: &Path) -> anyhow::Result<()> {
    build_deb_with(stage, deb, &[])
}

/// [`build_deb`] with gzip at its fastest level instead of dpkg's xz: for
/// the copies a test derives from a package (another version, another
/// architecture), whose compression nothing tests (7.5 s → 0.3 s for the
/// armhf package on this machine).
pub fn build_test_deb(stage: &Path, deb: &Path) -> anyhow::Result<()> {
    build_deb_with(stage, deb, &["-Zgzip", "-z1"])
}

fn build_deb_with(stage: &Path, deb: &Path, compression: &[&str]) -> anyhow::Result<()> {
    if let Some(parent) = deb.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let out = Command::new("dpkg-deb")
        .args(compression)
        .args(["--build", "--root-owner-group"])
        .arg(stage)
        .arg(deb)
        .output()
        .context("cannot run dpkg-deb (install the dpkg package)")?;
    if !out.status.success() {
        bail!(
            "dpkg-deb --build failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// One line of `dpkg-deb -c`: mode, owner, size, path (without `./`).
#[derive(Debug)]
pub struct Entry {
    pub mode: String,
    pub owner: String,
    pub size: u64,
    pub path: String,
}

pub fn list_deb(deb: &Path) -> anyhow::Result<Vec<Entry>> {
    let out = Command::new("dpkg-deb")
        .arg("-c")
        .arg(deb)
        .output()
        .context("cannot run dpkg-deb")?;
    if !out.status.success() {
        bail!(
            "dpkg-deb -c {}: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut entries = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // -rw-r--r-- root/root      1234 2026-11-28 10:00 ./usr/bin/x
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [mode, owner, size, _date, _time, path, ..] = fields[..] else {
            bail!("unexpected dpkg-deb -c line: {line}");
        };
        entries.push(Entry {
            mode: mode.to_owned(),
            owner: owner.to_owned(),
            size: size.parse().unwrap_or(0),
            path: path
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_owned(),
        });
    }
    Ok(entries)
}

fn control_field(deb: &Path, field: &str) -> anyhow::Result<String> {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg(field)
        .output()
        .context("cannot run dpkg-deb")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Checks the built package against what it must hold: every expected file
/// with its mode, owned by root, nothing else but directories, and the
/// control fields. Returns the listing for printing.
pub fn verify_deb(deb: &Path, inputs: &Inputs) -> anyhow::Result<Vec<Entry>> {
    let entries = list_deb(deb)?;
    let expected = expected_files(inputs)?;
    let mut problems = Vec::new();
    for want in &expected {
        match entries.iter().find(|e| e.path == want.path) {
            None => problems.push(format!("missing /{}", want.path)),
            Some(e) if e.mode != want.mode => problems.push(format!(
                "/{} has mode {}, expected {}",
                want.path, e.mode, want.mode
            )),
            Some(e) if e.size == 0 => problems.push(format!("/{} is empty", want.path)),
            Some(_) => {}
        }
    }
    for e in &entries {
        if e.owner != "root/root" {
            problems.push(format!(
                "/{} is owned by {}, not root/root",
                e.path, e.owner
            ));
        }
        let is_dir = e.mode.starts_with('d');
        if !is_dir && !expected.iter().any(|w| w.path == e.path) {
            problems.push(format!("unexpected file /{}", e.path));
        }
    }
    for (field, want) in [
        ("Package", PACKAGE),
        ("Depends", DEPENDS),
        ("Version", inputs.version.as_str()),
        ("Architecture", inputs.arch.as_str()),
    ] {
        let got = control_field(deb, field)?;
        if got != want {
            problems.push(format!(
                "control field {field} is '{got}', expected '{want}'"
            ));
        }
    }
    if !problems.is_empty() {
        bail!("{} is wrong:\n  {}", deb.display(), problems.join("\n  "));
    }
    Ok(entries)
}

/// The workspace version (`[workspace.package] version`).
pub fn workspace_version(root: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(root.join("Cargo.toml"))?;
    let table: toml::Table = text.parse()?;
    table
        .get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(|p| p.get("version"))
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .context("no [workspace.package] version in Cargo.toml")
}

/// Runs `run-component get-system-info` with the packaged binary, under
/// qemu-user for a foreign architecture, and checks it reports `arch`.
/// `components` is the staged package's folder: with `precompiled`, the
/// run must load the shipped artifact and compile nothing (the agent's
/// cache stays empty).
pub fn smoke_test(
    binary: &Path,
    components: &Path,
    triple: &str,
    scratch: &Path,
    precompiled: bool,
) -> anyhow::Result<()> {
    let cpu = rust_arch(triple);
    let mut cmd = if cpu == std::env::consts::ARCH {
        Command::new(binary)
    } else {
        let (qemu, sysroot) = qemu_for(triple)?;
        let mut cmd = Command::new(qemu);
        cmd.arg("-L").arg(sysroot).arg(binary);
        cmd
    };
    if scratch.exists() {
        std::fs::remove_dir_all(scratch)?;
    }
    std::fs::create_dir_all(scratch)?;
    cmd.args(["run-component", "get-system-info"])
        .env("COMPONENTS_PATH", components)
        .env("STATE_PATH", scratch.join("state"))
        .env("NEOPRO_ROOT", scratch.join("neopro"))
        .env("CONFIG_FILE", scratch.join("absent-site.conf"));
    eprintln!("+ {cmd:?}");
    let started = std::time::Instant::now();
    let out = cmd.output().with_context(|| {
        format!("cannot start {cmd:?} (for a foreign architecture install qemu-user)")
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "smoke test failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let value: serde_json::Value =
        serde_json::from_str(&stdout).context("smoke test: the result is not JSON")?;
    let arch = value
        .pointer("/systemInfo/architecture")
        .and_then(|a| a.as_str())
        .unwrap_or_default();
    if arch != cpu {
        bail!("smoke test: get-system-info reports architecture '{arch}', expected '{cpu}'");
    }
    let compiled: Vec<String> = std::fs::read_dir(scratch.join("state/cache"))
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".cwasm"))
                .collect()
        })
        .unwrap_or_default();
    if precompiled && !compiled.is_empty() {
        bail!(
            "smoke test: the packaged precompiled get-system-info was not used, the run compiled \
             {compiled:?} (stderr: {})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    eprintln!(
        "smoke test passed: get-system-info on {arch} in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        if precompiled {
            "the packaged artifact loaded, nothing compiled"
        } else {
            "compiled on first use"
        }
    );
    Ok(())
}

/// Sets the cross linker for `triple` unless the caller chose one.
pub fn cross_linker_env(cmd: &mut Command, triple: &str) {
    for (t, linker) in CROSS_LINKERS {
        if *t == triple {
            let var = format!(
                "CARGO_TARGET_{}_LINKER",
                triple.to_uppercase().replace('-', "_")
            );
            if std::env::var_os(&var).is_none() {
                cmd.env(var, linker);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(1)
            .map(Path::to_owned)
            .unwrap_or_default()
    }

    /// Inputs made of the real unit, example and component manifests, with
    /// the start of this test executable (a host ELF header, small enough to
    /// compress fast) standing in for the agent and placeholder wasm.
    fn inputs(dir: &Path) -> anyhow::Result<Inputs> {
        let root = root();
        let binary = dir.join("neopro-runtime");
        let exe = std::fs::read(std::env::current_exe()?)?;
        std::fs::write(&binary, &exe[..exe.len().min(64 << 10)])?;
        let components = dir.join("components");
        std::fs::create_dir_all(&components)?;
        for guest in crate::find_guests(&root)?.iter().filter(|g| g.builtin) {
            std::fs::copy(
                &guest.manifest,
                components.join(format!("{}.toml", guest.name)),
            )?;
            std::fs::write(
                components.join(format!("{}.wasm", guest.name)),
                b"\0asm placeholder",
            )?;
        }
        Ok(Inputs {
            version: workspace_version(&root)?,
            arch: deb_arch(&format!("{}-unknown-linux-gnu", std::env::consts::ARCH))?.to_owned(),
            binary,
            components,
            precompiled: None,
            unit: root.join("config/neopro-runtime.service"),
            site_conf_example: root.join("config/site.conf.example"),
        })
    }

    #[test]
    fn deb_contents_are_listed_and_checked() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let inputs = inputs(dir.path())?;
        let deb = dir.path().join("out.deb");
        stage(
            &inputs,
            &root().join("README.md"),
            &dir.path().join("stage"),
        )?;
        build_deb(&dir.path().join("stage"), &deb)?;
        let entries = verify_deb(&deb, &inputs)?;
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        for want in [
            "usr/bin/neopro-runtime",
            "usr/lib/neopro-runtime/components/get-system-info.wasm",
            "usr/lib/neopro-runtime/components/get-system-info.toml",
            "usr/lib/neopro-runtime/components/deploy-video.wasm",
            "usr/lib/systemd/system/neopro-runtime.service",
            "etc/neopro/site.conf.example",
            "usr/share/doc/neopro-runtime/README.md",
            // The README's links lead to its pages on the box too.
            "usr/share/doc/neopro-runtime/docs/operating.md",
            "usr/share/doc/neopro-runtime/docs/architecture.md",
        ] {
            assert!(paths.contains(&want), "{want} not in {paths:?}");
        }
        let binary = entries
            .iter()
            .find(|e| e.path == BINARY)
            .map(|e| (e.mode.as_str(), e.owner.as_str()));
        assert_eq!(binary, Some(("-rwxr-xr-x", "root/root")));
        // The shipped unit starts the packaged binary on /etc/neopro/site.conf.
        let unit = std::fs::read_to_string(&inputs.unit)?;
        let exec = unit.lines().find(|l| l.starts_with("ExecStart="));
        assert!(
            exec.is_some_and(|l| l.starts_with("ExecStart=/usr/bin/neopro-runtime ")
                && l.contains("--config /etc/neopro/site.conf")),
            "{exec:?}"
        );
        Ok(())
    }

    #[test]
    fn a_package_missing_a_file_is_refused() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let inputs = inputs(dir.path())?;
        let staged = dir.path().join("stage");
        stage(&inputs, &root().join("README.md"), &staged)?;
        std::fs::remove_file(staged.join(UNIT))?;
        std::fs::write(staged.join("usr/bin/stray"), "x")?;
        let deb = dir.path().join("out.deb");
        build_deb(&staged, &deb)?;
        let error = match verify_deb(&deb, &inputs) {
            Ok(_) => anyhow::bail!("an incomplete package passed the check"),
            Err(e) => e.to_string(),
        };
        assert!(
            error.contains("missing /usr/lib/systemd/system/neopro-runtime.service"),
            "{error}"
        );
        assert!(error.contains("unexpected file /usr/bin/stray"), "{error}");
        Ok(())
    }

    #[test]
    fn a_host_binary_is_refused_in_the_arm64_package() -> anyhow::Result<()> {
        let exe = std::env::current_exe()?;
        let foreign = if std::env::consts::ARCH == "aarch64" {
            "amd64"
        } else {
            "arm64"
        };
        let host = deb_arch(&format!("{}-unknown-linux-gnu", std::env::consts::ARCH))?;
        check_binary_arch(&exe, host)?;
        let error = match check_binary_arch(&exe, foreign) {
            Ok(()) => anyhow::bail!("a {host} binary passed as {foreign}"),
            Err(e) => e.to_string(),
        };
        assert!(
            error.contains(&format!("the {foreign} package needs")),
            "{error}"
        );
        Ok(())
    }

    #[test]
    fn maintainer_scripts_are_valid_shell_and_packaged() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let inputs = inputs(dir.path())?;
        let staged = dir.path().join("stage");
        stage(&inputs, &root().join("README.md"), &staged)?;
        for (name, _) in MAINTAINER_SCRIPTS {
            let path = staged.join("DEBIAN").join(name);
            let out = Command::new("sh").arg("-n").arg(&path).output()?;
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path)?.permissions().mode() & 0o777,
                0o755
            );
        }
        let control = std::fs::read_to_string(staged.join("DEBIAN/control"))?;
        assert!(control.contains("polkitd | policykit-1"), "{control}");
        let prerm = std::fs::read_to_string(staged.join("DEBIAN/prerm"))?;
        assert!(prerm.contains("systemctl stop"), "{prerm}");
        Ok(())
    }

    #[test]
    fn debian_architectures() -> anyhow::Result<()> {
        assert_eq!(deb_arch("aarch64-unknown-linux-gnu")?, "arm64");
        assert_eq!(deb_arch("x86_64-unknown-linux-gnu")?, "amd64");
        assert_eq!(deb_arch(ARMHF)?, "armhf");
        assert!(deb_arch("riscv64gc-unknown-linux-gnu").is_err());
        Ok(())
    }

    const ARMHF: &str = "armv7-unknown-linux-gnueabihf";

    /// The first bytes of an ELF executable: class (1 = 32-bit, 2 = 64-bit),
    /// little-endian, `e_machine`.
    fn elf_header(class: u8, machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = class;
        h[5] = 1;
        h[6] = 1;
        h[16] = 2; // ET_EXEC
        h[18..20].copy_from_slice(&machine.to_le_bytes());
        h
    }

    #[test]
    fn a_host_binary_is_refused_in_the_armhf_package() -> anyhow::Result<()> {
        let exe = std::env::current_exe()?;
        let error = match check_binary_arch(&exe, "armhf") {
            Ok(()) => anyhow::bail!("a host binary passed as armhf"),
            Err(e) => e.to_string(),
        };
        assert!(error.contains("the armhf package needs 0x28"), "{error}");
        Ok(())
    }

    /// aarch64 and armv7 are both "ARM": a 64-bit ELF with the 32-bit ARM
    /// machine number (a broken cross build) is refused by its class, a
    /// real 32-bit ARM header passes, and an aarch64 binary is refused too.
    #[test]
    fn the_armhf_package_needs_a_32_bit_arm_elf() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("neopro-runtime");
        std::fs::write(&file, elf_header(1, 0x28))?;
        check_binary_arch(&file, "armhf")?;

        std::fs::write(&file, elf_header(2, 0x28))?;
        let error = match check_binary_arch(&file, "armhf") {
            Ok(()) => anyhow::bail!("a 64-bit ELF passed as armhf"),
            Err(e) => e.to_string(),
        };
        assert!(
            error.contains("is a 64-bit ELF (class 2), the armhf package needs a 32-bit one"),
            "{error}"
        );

        std::fs::write(&file, elf_header(2, 0xB7))?;
        check_binary_arch(&file, "arm64")?;
        let error = match check_binary_arch(&file, "armhf") {
            Ok(()) => anyhow::bail!("an aarch64 binary passed as armhf"),
            Err(e) => e.to_string(),
        };
        assert!(error.contains("ELF machine 0xb7"), "{error}");
        Ok(())
    }

    #[test]
    fn an_armhf_package_is_built_and_checked() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut inputs = inputs(dir.path())?;
        inputs.arch = deb_arch(ARMHF)?.to_owned();
        std::fs::write(&inputs.binary, elf_header(1, 0x28))?;
        check_binary_arch(&inputs.binary, &inputs.arch)?;
        let staged = dir.path().join("stage");
        stage(&inputs, &root().join("README.md"), &staged)?;
        let deb = dir.path().join("neopro-runtime_armhf.deb");
        build_deb(&staged, &deb)?;
        verify_deb(&deb, &inputs)?;
        assert_eq!(control_field(&deb, "Architecture")?, "armhf");
        // The same files checked against the arm64 inputs: refused by name.
        inputs.arch = "arm64".to_owned();
        let error = match verify_deb(&deb, &inputs) {
            Ok(_) => anyhow::bail!("an armhf package passed as arm64"),
            Err(e) => e.to_string(),
        };
        assert!(
            error.contains("control field Architecture is 'armhf', expected 'arm64'"),
            "{error}"
        );
        Ok(())
    }

    /// The armhf package ships one precompiled artifact per component, each
    /// with its checksum, in the folder the agent looks in; a missing
    /// checksum or artifact stops the build.
    #[test]
    fn the_armhf_package_ships_its_precompiled_components() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut inputs = inputs(dir.path())?;
        inputs.arch = deb_arch(ARMHF)?.to_owned();
        std::fs::write(&inputs.binary, elf_header(1, 0x28))?;
        let precompiled = dir.path().join("precompiled");
        std::fs::create_dir_all(&precompiled)?;
        let mut names = Vec::new();
        for (i, wasm) in component_files(&inputs.components)?
            .iter()
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .enumerate()
        {
            let name = format!("{i:064x}-pulley32-0011223344556677.cwasm");
            std::fs::write(precompiled.join(&name), b"artifact")?;
            std::fs::write(precompiled.join(format!("{name}.sha256")), b"sum")?;
            names.push((wasm.clone(), name));
        }
        inputs.precompiled = Some(precompiled.clone());
        let staged = dir.path().join("stage");
        stage(&inputs, &root().join("README.md"), &staged)?;
        let deb = dir.path().join("neopro-runtime_armhf.deb");
        build_deb(&staged, &deb)?;
        let entries = verify_deb(&deb, &inputs)?;
        for (_, name) in &names {
            let path = format!("{PRECOMPILED_DIR}/{name}");
            let entry = entries.iter().find(|e| e.path == path);
            assert_eq!(
                entry.map(|e| (e.mode.as_str(), e.owner.as_str())),
                Some(("-rw-r--r--", "root/root")),
                "{path}"
            );
        }
        assert!(PRECOMPILED_DIR.starts_with(COMPONENTS_DIR));

        let (_, first) = &names[0];
        std::fs::remove_file(precompiled.join(format!("{first}.sha256")))?;
        let error = match stage(&inputs, &root().join("README.md"), &staged) {
            Ok(()) => anyhow::bail!("an artifact without its checksum was packaged"),
            Err(e) => e.to_string(),
        };
        assert!(error.ends_with("has no .sha256 beside it"), "{error}");
        std::fs::remove_file(precompiled.join(first))?;
        let error = match expected_files(&inputs) {
            Ok(_) => anyhow::bail!("a missing artifact passed"),
            Err(e) => e.to_string(),
        };
        assert!(
            error.contains(&format!(
                "holds {} precompiled artifacts for {} components",
                names.len() - 1,
                names.len()
            )),
            "{error}"
        );
        Ok(())
    }

    #[test]
    fn armhf_runs_under_qemu_arm_with_its_cross_linker() -> anyhow::Result<()> {
        assert_eq!(qemu_for(ARMHF)?, ("qemu-arm", "/usr/arm-linux-gnueabihf"));
        assert_eq!(
            qemu_for("aarch64-unknown-linux-gnu")?,
            ("qemu-aarch64", "/usr/aarch64-linux-gnu")
        );
        // get-system-info reports std's ARCH, which is "arm" on armv7 (as
        // Node's os.arch() on the upstream agent).
        assert_eq!(rust_arch(ARMHF), "arm");
        assert_eq!(rust_arch("aarch64-unknown-linux-gnu"), "aarch64");
        let mut cmd = Command::new("true");
        cross_linker_env(&mut cmd, ARMHF);
        let var = "CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER";
        if std::env::var_os(var).is_none() {
            let set = cmd
                .get_envs()
                .find(|(k, _)| *k == var)
                .and_then(|(_, v)| v)
                .map(|v| v.to_string_lossy().into_owned());
            assert_eq!(set.as_deref(), Some("arm-linux-gnueabihf-gcc"));
        }
        Ok(())
    }
}
