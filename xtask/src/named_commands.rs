//! Part of `cargo xtask floors`: the framework names no built-in command.
//! A command is known to the agent by what its manifest declares
//! (`maintenance-window`, `check-before-window`, `periodic`, the
//! `agent-update` grant, `progress-event`), never by its name; the one
//! place that lists names is the default allowlist (`config.rs`). So no
//! string literal in `runtime/src` may be the name of a command a built-in
//! manifest (`commands/*/*.toml`) declares, outside `config.rs` and test
//! code (`tests.rs` files, items under `#[cfg(test)]`).

use anyhow::bail;
use std::path::Path;

/// Literals that are a command's name but mean something else there.
const OTHER_MEANINGS: &[(&str, &str, &str)] = &[
    (
        "platform/systemctl.rs",
        "reboot",
        "the systemctl verb, used by the host's power interface",
    ),
    (
        "follow_up.rs",
        "reboot",
        "the reboot follow-up a may-reboot component asks for, whatever its command",
    ),
];

/// The command types the built-in manifests declare (`commands = [...]`).
fn built_in_commands(commands_dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(commands_dir)? {
        let dir = entry?.path();
        for file in std::fs::read_dir(&dir)? {
            let file = file?.path();
            if file.extension().is_none_or(|e| e != "toml") || file.ends_with("Cargo.toml") {
                continue;
            }
            let text = std::fs::read_to_string(&file)?;
            let Some(line) = text
                .lines()
                .find(|l| l.trim_start().starts_with("commands"))
            else {
                continue;
            };
            let list = line.split_once('=').map(|(_, v)| v).unwrap_or("");
            names.extend(
                list.split('"')
                    .skip(1)
                    .step_by(2)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// The lines of `text` that are not test code, with their numbers: an
/// item under `#[cfg(test)]` is skipped to its closing brace.
fn non_test_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut skipping = false;
    let mut depth: i64 = 0;
    let mut opened = false;
    for (n, line) in text.lines().enumerate() {
        let code = crate::floors::code_of(line);
        if !skipping && code.trim_start().starts_with("#[cfg(test)]") {
            skipping = true;
            depth = 0;
            opened = false;
            continue;
        }
        if skipping {
            for c in code.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            let ended = (opened && depth <= 0) || (!opened && code.trim_end().ends_with(';'));
            if ended {
                skipping = false;
            }
            continue;
        }
        out.push((n + 1, code));
    }
    out
}

/// `file:line: "name"` for every command name found as a literal.
pub fn check(root: &Path) -> anyhow::Result<usize> {
    let names = built_in_commands(&root.join("commands"))?;
    let src = root.join("runtime/src");
    let mut files = Vec::new();
    crate::floors::rust_files(&src, &mut files)?;
    files.sort();
    let mut found = Vec::new();
    for file in &files {
        let rel = file
            .strip_prefix(&src)?
            .to_string_lossy()
            .replace('\\', "/");
        if rel == "config.rs" || rel.ends_with("/tests.rs") || rel.contains("/tests/") {
            continue;
        }
        let text = std::fs::read_to_string(file)?;
        for (n, code) in non_test_lines(&text) {
            for name in &names {
                let exempt = OTHER_MEANINGS
                    .iter()
                    .any(|(f, lit, _)| *f == rel && lit == name);
                if !exempt && code.contains(&format!("\"{name}\"")) {
                    found.push(format!("  {rel}:{n}: \"{name}\""));
                }
            }
        }
    }
    if !found.is_empty() {
        bail!(
            "runtime/src names built-in commands (declare what the agent needs in the component's manifest instead; only config.rs's default allowlist lists names):\n{}",
            found.join("\n")
        );
    }
    Ok(names.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_name_is_found_outside_tests_and_the_allowlist() {
        let dir = crate::floors::tests::tree(&[
            (
                "commands/installer/installer.toml",
                "name = \"installer\"\ncommands = [\"install_release\", \"undo\"]\n",
            ),
            ("runtime/src/config.rs", "const A: &[&str] = &[\"undo\"];\n"),
            (
                "runtime/src/agent/run.rs",
                "fn f() {\n    // \"undo\" in a comment is fine\n    g(\"install_release\");\n}\n\n#[cfg(test)]\nmod tests {\n    fn t() {\n        g(\"undo\");\n    }\n}\n\nfn h() { g(\"undo\") }\n",
            ),
            ("runtime/src/agent/tests.rs", "fn t() { g(\"undo\") }\n"),
        ]);
        let err = format!("{:#}", check(dir.path()).expect_err("names found"));
        assert!(
            err.contains("  agent/run.rs:3: \"install_release\""),
            "{err}"
        );
        assert!(err.contains("  agent/run.rs:13: \"undo\""), "{err}");
        assert_eq!(err.matches("  agent/").count(), 2, "{err}");
    }
}
