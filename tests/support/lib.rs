//! Shared set-up for the end-to-end tests: a temporary NEOPRO install, the
//! components built by `cargo xtask guests`, and a sandbox over them.
//!
//! A broken set-up should stop a test loudly, hence the `expect`s.
#![allow(clippy::expect_used)]

pub mod box_register;
pub mod central;
pub mod central_api;
pub mod conformance;
pub mod fake_systemctl;
pub mod http;
pub mod local_app;
pub mod process;
pub mod proxy;
pub mod release;

use neopro_runtime::config::SiteConfig;
use neopro_runtime::host::{HostServices, WitError};
use neopro_runtime::sandbox::registry::{ComponentSpec, spec_for_wasm};
use neopro_runtime::sandbox::{CommandRequest, LoadedComponent, Sandbox};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where `cargo xtask guests` put the built components.
pub fn components_dir() -> PathBuf {
    let dir = std::env::var_os("NEOPRO_TEST_COMPONENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/components/test"));
    assert!(
        dir.join("escape.wasm").is_file(),
        "test components missing in {}: run the tests with `cargo xtask test`",
        dir.display()
    );
    dir
}

/// A component built for the tests, with its manifest.
pub fn component(name: &str) -> ComponentSpec {
    spec_for_wasm(&components_dir().join(format!("{name}.wasm")))
        .expect("test component and manifest")
}

/// A throw-away NEOPRO install: every root under one temporary folder.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub config: SiteConfig,
}

impl Site {
    pub fn new() -> Site {
        Self::with_extra("")
    }

    /// A site whose web app is release 2.1.3 with `configuration` as its
    /// configuration.json.
    pub fn with_webapp(configuration: &str) -> Site {
        let site = Site::new();
        site.write("neopro/webapp/configuration.json", configuration);
        site.write("neopro/VERSION", "2.1.3\n");
        site
    }

    /// Waits until the agent's link status file (what `diagnose` reads; its
    /// own thread writes it) satisfies `done`.
    pub async fn wait_link_status(
        &self,
        what: &str,
        timeout: std::time::Duration,
        done: impl Fn(&neopro_runtime::agent::session::link_status::LinkStatus) -> bool,
    ) {
        let path = &self.config.runtime_path;
        process::wait_for(what, timeout, || {
            neopro_runtime::agent::session::link_status::read(path)
                .ok()
                .flatten()
                .is_some_and(|s| done(&s))
        })
        .await;
    }

    /// A site whose site.conf also has `extra` lines.
    pub fn with_extra(extra: &str) -> Site {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        for sub in [
            "neopro/webapp",
            "neopro/videos",
            "neopro/backups",
            "neopro/logs",
            "state",
        ] {
            std::fs::create_dir_all(root.join(sub)).expect("site folders");
        }
        // No settle time after updates, and no web app (port 9: not
        // `localhost:3000`, where a real one may run), unless a test asks
        // (later keys win).
        let text = format!(
            "NEOPRO_ROOT={}
STATE_PATH={}
RUNTIME_PATH={}
UPDATE_SETTLE_SECS=0
LOCAL_APP_URL=http://127.0.0.1:9
{extra}
",
            root.join("neopro").display(),
            root.join("state").display(),
            root.join("run").display()
        );
        let config = SiteConfig::from_sources(Some((&root.join("site.conf"), &text)), &|_| None)
            .expect("site config");
        Site { dir, config }
    }

    /// Path of something in the site folder.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, contents: &str) {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("parent folder");
        }
        std::fs::write(p, contents).expect("write fixture");
    }

    /// A sandbox over this site, caching artifacts in its state folder.
    pub fn sandbox(&self) -> Sandbox {
        let services = Arc::new(HostServices::from_config(&self.config));
        Sandbox::new(services, Some(&self.config.cache_dir())).expect("sandbox")
    }

    /// Loads a test component into `sandbox`.
    pub fn load(&self, sandbox: &Sandbox, name: &str) -> LoadedComponent {
        let spec = component(name);
        sandbox
            .load_file(&spec.wasm_path, spec.manifest)
            .expect("component loads")
    }

    /// Runs a component's first command type with `data`.
    pub fn run(&self, name: &str, data: Value) -> Result<Value, WitError> {
        let sandbox = self.sandbox();
        let loaded = self.load(&sandbox, name);
        run_loaded(&sandbox, &loaded, data)
    }
}

impl Default for Site {
    fn default() -> Self {
        Self::new()
    }
}

/// An agent running in this process against a test central.
pub struct RunningAgent {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), neopro_runtime::agent::AgentError>>,
}

impl RunningAgent {
    /// Asks the agent to stop (as SIGTERM would) and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(std::time::Duration::from_secs(20), &mut self.task)
            .await
            .expect("agent stops in time")
            .expect("agent task");
        result.expect("agent ran");
    }
}

/// Short timers so tests see retries and dead links in milliseconds.
pub fn fast_options() -> neopro_runtime::agent::AgentOptions {
    use std::time::Duration;
    neopro_runtime::agent::AgentOptions {
        session: neopro_runtime::agent::session::SessionSettings {
            auth_retry: Duration::from_millis(400),
            watch_interval: Duration::from_millis(100),
            shutdown_grace: Duration::from_secs(5),
            auth_answer_timeout: Duration::from_secs(2),
            expiry_interval: Duration::from_secs(3600),
        },
        connect_timeout: Duration::from_secs(1),
        backoff: neopro_runtime::link::backoff::BackoffPolicy {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(400),
            stable_after: Duration::from_secs(60),
        },
        compiler: None,
    }
}

impl Site {
    /// Writes site.conf for an agent talking to `url` as (`site_id`, `api_key`).
    /// The web app is port 9 (nothing listens) unless a test appends its own
    /// `LOCAL_APP_URL`: the default, `localhost:3000`, would notify whatever
    /// web app runs on this machine (a hand check against the real one).
    pub fn write_agent_conf(&self, url: &str, site_id: &str, api_key: &str) -> PathBuf {
        let path = self.path("site.conf");
        let text = format!(
            "CENTRAL_SERVER_ENABLED=true\nCENTRAL_SERVER_URL={url}\nSITE_ID={site_id}\nSITE_API_KEY={api_key}\n\
             NEOPRO_ROOT={}\nSTATE_PATH={}\nRUNTIME_PATH={}\nCOMPONENTS_PATH={}\nHEARTBEAT_INTERVAL=1000\nUPDATE_SETTLE_SECS=0\n\
             PING_CHECK_TIMEOUT=3000\n\
             LOCAL_APP_URL=http://127.0.0.1:9\n\
             ALLOWED_COMMANDS=get_config,get_logs,get_system_info,test_loop,test_escape,unhandled_command\n",
            self.path("neopro").display(),
            self.path("state").display(),
            self.path("run").display(),
            components_dir().display()
        );
        std::fs::write(&path, text).expect("site.conf");
        path
    }

    /// Appends lines to site.conf (later keys win over earlier ones).
    pub fn append_conf(&self, lines: &str) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.path("site.conf"))
            .expect("site.conf exists");
        file.write_all(lines.as_bytes())
            .expect("append to site.conf");
    }

    /// Starts the agent with the site.conf written by [`Site::write_agent_conf`].
    /// Its log goes to the test's captured output (shown when a test fails).
    pub fn start_agent(&self) -> RunningAgent {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("neopro_runtime=debug")
            .try_init();
        let conf = self.path("site.conf");
        let config = SiteConfig::load(Some(&conf)).expect("site.conf loads");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(neopro_runtime::agent::run(
            config,
            Some(conf),
            fast_options(),
            async move {
                let _ = stopped.await;
            },
        ));
        RunningAgent {
            stop: Some(stop),
            task,
        }
    }
}

/// Runs an already loaded component.
pub fn run_loaded(
    sandbox: &Sandbox,
    loaded: &LoadedComponent,
    data: Value,
) -> Result<Value, WitError> {
    let request = CommandRequest {
        id: "test-command".to_owned(),
        command_type: loaded.manifest().commands[0].clone(),
        data: data.to_string(),
    };
    let json = sandbox.execute(loaded, &request, None)?;
    Ok(serde_json::from_str(&json).expect("result is JSON"))
}

/// The error kind and message, for exact assertions.
pub fn error_of(result: Result<Value, WitError>) -> (String, String) {
    match result {
        Ok(v) => ("ok".to_owned(), v.to_string()),
        Err(e) => (e.kind().to_owned(), e.message().to_owned()),
    }
}
