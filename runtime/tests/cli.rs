//! The `neopro-runtime` binary as an operator uses it.
// A broken fixture should stop the test loudly.
#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn components_dir() -> PathBuf {
    std::env::var_os("NEOPRO_TEST_COMPONENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/components/test"))
}

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().expect("temp dir");
        let neopro = dir.path().join("neopro");
        std::fs::create_dir_all(neopro.join("webapp")).expect("webapp");
        std::fs::write(
            dir.path().join("site.conf"),
            format!(
                "# test site\nNEOPRO_ROOT={}\nSTATE_PATH={}\nCOMPONENTS_PATH={}\n",
                neopro.display(),
                dir.path().join("state").display(),
                components_dir().display()
            ),
        )
        .expect("site.conf");
        Site { dir }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_neopro-runtime"))
            .arg("--config")
            .arg(self.dir.path().join("site.conf"))
            .args(args)
            .env_remove("COMPONENTS_PATH")
            .env_remove("RUST_LOG")
            .output()
            .expect("run neopro-runtime")
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn run_component_by_name_prints_the_result_json() {
    let site = Site::new();
    std::fs::write(
        site.dir.path().join("neopro/webapp/configuration.json"),
        r#"{"categories":[]}"#,
    )
    .expect("config");
    let out = site.run(&["run-component", "get-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let value: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON on stdout");
    assert_eq!(
        value,
        serde_json::json!({"success": true, "configuration": {"categories": []}})
    );
}

#[test]
fn run_component_by_command_type_and_by_path() {
    let site = Site::new();
    let by_type = site.run(&["run-component", "get_config"]);
    assert!(by_type.status.success(), "{}", stderr(&by_type));
    let path = components_dir().join("get-config.wasm");
    let by_path = site.run(&["run-component", &path.display().to_string()]);
    assert!(by_path.status.success(), "{}", stderr(&by_path));
    assert_eq!(stdout(&by_type), stdout(&by_path));
}

#[test]
fn an_error_result_goes_to_stderr_with_a_non_zero_exit() {
    let site = Site::new();
    let out = site.run(&[
        "run-component",
        "get-logs",
        "--data",
        r#"{"service":"neopro-app; touch x"}"#,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out)
            .contains("error (invalid-input): 'neopro-app; touch x' is not a valid service name")
    );
}

#[test]
fn bad_arguments_are_explained() {
    let site = Site::new();
    let out = site.run(&["run-component", "get-config", "--data", "[1,2]"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--data must be a JSON object"));

    let out = site.run(&["run-component", "no-such-thing"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no component named 'no-such-thing' or handling 'no-such-thing'")
    );

    let missing = site.dir.path().join("lonely.wasm");
    std::fs::write(&missing, b"\0asm").expect("wasm");
    let out = site.run(&["run-component", &missing.display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("has no manifest next to it"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn components_lists_commands_and_grants() {
    let site = Site::new();
    let out = site.run(&["components"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("get-logs 0.1.0\n  commands: get_logs\n  limits:   64 MiB, 30 s\n  grants:   logs.units = [*]; logs.agent-log\n"), "{text}");
    assert!(
        text.contains("escape 0.1.0\n  commands: test_escape\n"),
        "{text}"
    );
    assert!(
        text.contains("grants:   files.videos = rw; files.staging = ro"),
        "{text}"
    );
}

#[test]
fn invalid_site_conf_names_the_line() {
    let site = Site::new();
    std::fs::write(site.dir.path().join("site.conf"), "SITE_ID=x\nnonsense\n").expect("conf");
    let out = site.run(&["components"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("line 2: expected KEY=VALUE, found 'nonsense'"),
        "{}",
        stderr(&out)
    );
}
