//! Fuzzing on the stable toolchain: proptest strategies drive each parser
//! that reads bytes from the network, the disk or an operator (the
//! Engine.IO / Socket.IO decoder, site.conf, component manifests and the site
//! policy, the tar.gz extractor) for a time budget, with a seeded generator
//! so a failure is reproduced by its seed.
//!
//! `cargo xtask fuzz [seconds]` runs each target for that long (CI: 60 s
//! each); a plain `cargo test` runs them for 2 s. Environment:
//! `NEOPRO_FUZZ_SECS` (per target), `NEOPRO_FUZZ_SEED` (hex, 32 bytes at
//! most; a fixed default), `NEOPRO_FUZZ_CASES` (upper bound of cases).
//! A failure prints the target, seed, case number and input.
//!
//! What is checked, beyond "no panic": the decoder re-encodes what it
//! accepted to the same packet; a config or manifest either parses or gives
//! an error naming what is wrong; the extractor never writes outside its
//! destination, every link it leaves points inside, and skipped prefixes
//! stay out.
#![allow(clippy::expect_used)]

use neopro_runtime::link::packet::{SocketPacket, decode_engine, decode_socket, encode_event};
use neopro_runtime::store::extract::{Limits, extract_tar_gz};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn budget() -> Duration {
    let secs = std::env::var("NEOPRO_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(2);
    Duration::from_secs(secs)
}

fn seed() -> [u8; 32] {
    let mut seed = *b"neopro-runtime fuzz seed 2026-12";
    if let Ok(text) = std::env::var("NEOPRO_FUZZ_SEED")
        && let Ok(bytes) = hex_decode(text.trim())
    {
        seed = [0; 32];
        for (i, b) in bytes.iter().take(32).enumerate() {
            seed[i] = *b;
        }
    }
    seed
}

fn hex_decode(text: &str) -> Result<Vec<u8>, ()> {
    if !text.len().is_multiple_of(2) {
        return Err(());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|_| ()))
        .collect()
}

fn max_cases() -> u64 {
    std::env::var("NEOPRO_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX)
}

/// Runs `check` on values of `strategy` until the budget is spent. A panic
/// or an `Err` stops with the seed, the case number and the input.
fn fuzz<S: Strategy>(target: &str, strategy: S, check: impl Fn(&S::Value) -> Result<(), String>)
where
    S::Value: std::fmt::Debug,
{
    let seed = seed();
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed),
    );
    let deadline = Instant::now() + budget();
    let limit = max_cases();
    let mut cases = 0u64;
    while Instant::now() < deadline && cases < limit {
        let Ok(tree) = strategy.new_tree(&mut runner) else {
            continue;
        };
        let value = tree.current();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| check(&value)));
        let problem = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(panic) => Some(format!(
                "panicked: {}",
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default()
            )),
        };
        if let Some(problem) = problem {
            let seed_hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
            panic!(
                "fuzz target {target}: case {cases} (NEOPRO_FUZZ_SEED={seed_hex}): {problem}\ninput: {value:?}"
            );
        }
        cases += 1;
    }
    // Printed so CI logs show how much each target covered.
    println!(
        "fuzz target {target}: {cases} cases in {:.1} s, no failure",
        budget().as_secs_f64()
    );
    assert!(cases > 0, "no case ran for {target}");
}

// ---- Engine.IO / Socket.IO ----------------------------------------------

fn packet_like() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "0",
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "9",
        "/",
        "/admin,",
        ",",
        "[",
        "]",
        "{",
        "}",
        "\"",
        ":",
        "\"command\"",
        "\"id\"",
        "null",
        "true",
        "1e400",
        "-0",
        "18446744073709551616",
        "\\ud800",
        "\\u0000",
        "\\\"",
        "é",
        "\u{1F600}",
        " ",
        "\n",
        "{\"sid\":\"x\"}",
        "{\"pingInterval\":25000,\"pingTimeout\":20000,\"sid\":\"a\",\"upgrades\":[],\"maxPayload\":1}",
    ]);
    (prop::collection::vec(pieces, 0..24), ".{0,8}")
        .prop_map(|(parts, tail)| format!("{}{tail}", parts.concat()))
}

fn check_packet(text: &String) -> Result<(), String> {
    let _ = decode_engine(text);
    if let Ok((ns, SocketPacket::Event { ack, name, args })) = decode_socket(text) {
        // What was accepted survives a round trip (for the default namespace,
        // the only one the agent speaks).
        if ns == "/" {
            let again = encode_event(&name, &args, ack);
            match decode_socket(&again) {
                Ok((
                    _,
                    SocketPacket::Event {
                        name: n2,
                        args: a2,
                        ack: k2,
                    },
                )) if n2 == name && a2 == args && k2 == ack => {}
                other => return Err(format!("re-encoded {again:?} decodes to {other:?}")),
            }
        }
    }
    let _ = decode_engine(&format!("4{text}"));
    Ok(())
}

#[test]
fn fuzz_socket_io_decoder() {
    fuzz("socket.io decoder", packet_like(), check_packet);
}

// ---- site.conf ------------------------------------------------------------

fn site_conf() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "CENTRAL_SERVER_URL",
        "CENTRAL_SERVER_ENABLED",
        "SITE_ID",
        "SITE_API_KEY",
        "NEOPRO_ROOT",
        "VIDEOS_PATH",
        "CONFIG_PATH",
        "STATE_PATH",
        "HEARTBEAT_INTERVAL",
        "MAX_DOWNLOAD_SIZE",
        "ALLOWED_COMMANDS",
        "AUTO_UPDATE_ENABLED",
        "AUTO_UPDATE_HOUR",
        "UPDATE_TRUSTED_KEYS",
        "UPDATE_HEALTH_URL",
        "UPDATE_ALLOW_DOWNGRADE",
        "MANAGED_SERVICES",
        "LOG_LEVEL",
        "export X",
        "",
        "#",
        "=",
    ]);
    let value = prop::sample::select(vec![
        "",
        "true",
        "false",
        "3",
        "24",
        "-1",
        "99999999999999999999",
        "http://x",
        "ftp://x",
        "/tmp/a b",
        "\"quoted\"",
        "'single'",
        "\"unterminated",
        "a,b,,c",
        "ab".repeat(32).leak(),
        "ed25519:zz",
        "${HOME}",
        "\\",
        "é\u{0}",
        " spaced ",
    ]);
    prop::collection::vec(
        (
            key,
            value,
            prop::sample::select(vec!["=", " = ", "", "=="]),
            ".{0,4}",
        ),
        0..12,
    )
    .prop_map(|lines| {
        lines
            .into_iter()
            .map(|(k, v, eq, noise)| format!("{k}{eq}{v}{noise}\n"))
            .collect()
    })
}

#[test]
fn fuzz_site_conf() {
    fuzz("site.conf", site_conf(), |text| {
        let path = Path::new("/etc/neopro/site.conf");
        match neopro_runtime::config::SiteConfig::from_sources(Some((path, text)), &|_| None) {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().is_empty() => Err("an error without a message".to_owned()),
            Err(_) => Ok(()),
        }
    });
}

// ---- manifests and the site policy ---------------------------------------

fn toml_like() -> impl Strategy<Value = String> {
    let line = prop::sample::select(vec![
        "name = \"hello\"",
        "name = \"../x\"",
        "name = 3",
        "version = \"1.0.0\"",
        "version = \"\"",
        "commands = [\"hello\"]",
        "commands = [\"install_component\"]",
        "commands = []",
        "progress-event = \"deploy_progress\"",
        "[limits]",
        "memory-mib = 64",
        "memory-mib = 99999999999",
        "timeout-secs = 0",
        "[grants]",
        "system = true",
        "files = { videos = \"rw\", staging = \"rw\" }",
        "files = { nowhere = \"ro\" }",
        "logs = { units = [\"*\"], agent-log = true }",
        "services = [\"-x\", \"neopro-app\"]",
        "download = { max-bytes = 1 }",
        "may-reboot = true",
        "unknown = 1",
        "[[grants]]",
        "allow-unsigned = true",
        "extend-allowlist = true",
        "replace-builtin = [\"get_logs\"]",
        "allow-downgrade = true",
        "max-memory-mib = 64",
        "max-timeout-secs = 300",
        "= =",
        "\"",
        "[",
        "x = \"\\ud800\"",
        "x = '''",
        "",
    ]);
    prop::collection::vec((line, ".{0,3}"), 0..14).prop_map(|lines| {
        lines
            .into_iter()
            .map(|(l, noise)| format!("{l}{noise}\n"))
            .collect()
    })
}

#[test]
fn fuzz_manifest_and_policy_toml() {
    fuzz("manifest / policy TOML", toml_like(), |text| {
        if let Ok(manifest) = neopro_runtime::manifest::Manifest::parse("fuzz.toml", text)
            && !neopro_runtime::manifest::is_component_name(&manifest.name)
        {
            return Err(format!("accepted the bad name {:?}", manifest.name));
        }
        let _ = neopro_runtime::pushed::policy::Policy::parse(Path::new("policy.toml"), text);
        Ok(())
    });
}

// ---- the tar.gz extractor ------------------------------------------------

/// One raw tar entry, written byte for byte (names with `..` included).
#[derive(Debug, Clone)]
struct Raw {
    kind: u8,
    name: Vec<u8>,
    link: Vec<u8>,
    data: Vec<u8>,
}

fn tar_gz(entries: &[Raw], flips: &[(usize, u8)]) -> Vec<u8> {
    let mut tar = Vec::new();
    for e in entries {
        let mut header = tar::Header::new_old();
        {
            let old = header.as_old_mut();
            let n = e.name.len().min(99);
            old.name[..n].copy_from_slice(&e.name[..n]);
            let l = e.link.len().min(99);
            old.linkname[..l].copy_from_slice(&e.link[..l]);
        }
        header.set_entry_type(tar::EntryType::new(e.kind));
        header.set_size(e.data.len() as u64);
        header.set_mode(0o4777);
        header.set_cksum();
        tar.extend_from_slice(header.as_bytes());
        tar.extend_from_slice(&e.data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.extend_from_slice(&[0u8; 1024]);
    // Damage inside the tar stream (headers, sizes, checksums).
    for (at, xor) in flips {
        if !tar.is_empty() {
            let i = at % tar.len();
            tar[i] ^= xor;
        }
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = gz.write_all(&tar);
    gz.finish().unwrap_or_default()
}

fn path_like() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec![
            "a", "b", "..", ".", "", "/", "webapp", "videos", "x\u{e9}", "out", "\u{0}",
        ]),
        1..6,
    )
    .prop_map(|parts| parts.join("/").into_bytes())
}

fn archive() -> impl Strategy<Value = (Vec<Raw>, Vec<(usize, u8)>)> {
    let entry = (
        prop::sample::select(vec![
            b'0', b'1', b'2', b'3', b'4', b'5', b'6', b'S', b'L', b'x', b'g',
        ]),
        path_like(),
        path_like(),
        prop::collection::vec(any::<u8>(), 0..96),
    )
        .prop_map(|(kind, name, link, data)| Raw {
            kind,
            name,
            link,
            data,
        });
    (
        prop::collection::vec(entry, 0..10),
        prop::collection::vec((any::<usize>(), 1..=255u8), 0..3),
    )
}

/// Every path under `root` (links not followed), with what it is.
fn listing(root: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .map(Path::to_owned)
                .unwrap_or_default();
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target = std::fs::read_link(&path).unwrap_or_default();
                    out.push((rel, format!("-> {}", target.display())));
                }
                Ok(m) if m.is_dir() => {
                    out.push((rel, "dir".to_owned()));
                    stack.push(path);
                }
                Ok(m) => out.push((rel, format!("file {}", m.len()))),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

#[test]
fn fuzz_tar_gz_extractor() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(outside.join("keep")).expect("outside");
    std::fs::write(outside.join("keep/file"), b"untouched").expect("outside file");
    let before = listing(&outside);
    let stage = tmp.path().join("stage");
    let counter = std::sync::atomic::AtomicU64::new(0);
    fuzz("tar.gz extractor", archive(), |(entries, flips)| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dest = stage.join(n.to_string());
        std::fs::create_dir_all(&dest).map_err(|e| e.to_string())?;
        let dir = cap_std::fs::Dir::open_ambient_dir(&dest, cap_std::ambient_authority())
            .map_err(|e| e.to_string())?;
        let gz = tar_gz(entries, flips);
        let skip = vec!["videos".to_owned()];
        let limits = Limits {
            max_bytes: 1 << 20,
            max_entries: 64,
            deadline: None,
        };
        let result = extract_tar_gz(gz.as_slice(), &dir, &skip, limits);
        if listing(&outside) != before {
            return Err(format!(
                "wrote outside its destination: {:?}",
                listing(&outside)
            ));
        }
        let real_dest = dest.canonicalize().map_err(|e| e.to_string())?;
        for (path, what) in listing(&dest) {
            if what.starts_with("-> ")
                && let Ok(real) = dest.join(&path).canonicalize()
                && !real.starts_with(&real_dest)
            {
                return Err(format!(
                    "{} {what} leads out to {}",
                    path.display(),
                    real.display()
                ));
            }
            if path.starts_with("videos") {
                return Err(format!(
                    "a skipped prefix was extracted: {}",
                    path.display()
                ));
            }
        }
        let _ = result;
        let _ = std::fs::remove_dir_all(&dest);
        Ok(())
    });
}
