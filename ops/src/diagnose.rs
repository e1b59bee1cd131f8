//! `neopro-runtime diagnose`: why does this box not connect? Checks, in the
//! order a connection needs them: site.conf, the clock, DNS, TCP, TLS (the
//! certificate against the local clock), `GET /health`, and a real
//! Socket.IO authentication whose refusal is reported with the server's
//! exact words and the fix from the troubleshooting table.

use neopro_runtime::config::SiteConfig;
use neopro_runtime::link::{self, LinkConfig, LinkEvent};
use serde::Serialize;
use serde_json::json;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Default, clap::Args)]
pub struct DiagnoseArgs {
    /// Print the report as JSON (one object: checks, ok).
    #[arg(long)]
    pub json: bool,
    /// Seconds allowed for each network step.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub timeout: u64,
    /// Also authenticate as the site with a second connection when the agent
    /// is running. The central server then forgets the agent's own session
    /// until the agent notices (no ping_check for PING_CHECK_TIMEOUT) and
    /// authenticates again.
    #[arg(long)]
    pub auth: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub config_file: String,
    pub checks: Vec<Check>,
    /// No check failed (warnings allowed).
    pub ok: bool,
}

impl Report {
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// A clock before this date is certainly wrong (the program did not exist).
const CLOCK_FLOOR: i64 = 1_764_547_200; // 2025-12-01

struct Builder(Vec<Check>);

impl Builder {
    fn add(
        &mut self,
        name: &'static str,
        status: Status,
        detail: impl Into<String>,
        fix: Option<String>,
    ) {
        self.0.push(Check {
            name,
            status,
            detail: detail.into(),
            fix,
        });
    }
    fn ok(&mut self, name: &'static str, detail: impl Into<String>) {
        self.add(name, Status::Ok, detail, None);
    }
    fn warn(&mut self, name: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.add(name, Status::Warn, detail, Some(fix.into()));
    }
    fn fail(&mut self, name: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.add(name, Status::Fail, detail, Some(fix.into()));
    }
    fn skip(&mut self, name: &'static str, why: impl Into<String>) {
        self.add(name, Status::Skip, why, None);
    }
}

/// Runs every check against the site.conf at `path`.
pub async fn diagnose(path: &Path, args: &DiagnoseArgs) -> Report {
    diagnose_with(path, args, webpki_roots(), None).await
}

fn webpki_roots() -> rustls::RootCertStore {
    rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// [`diagnose`] with the TLS trust roots and the clock given (tests).
pub async fn diagnose_with(
    path: &Path,
    args: &DiagnoseArgs,
    roots: rustls::RootCertStore,
    now: Option<SystemTime>,
) -> Report {
    let timeout = Duration::from_secs(args.timeout.max(1));
    let mut b = Builder(Vec::new());
    let report = |b: Builder| Report {
        config_file: path.display().to_string(),
        ok: !b.0.iter().any(|c| c.status == Status::Fail),
        checks: b.0,
    };
    let config = match check_config(&mut b, path) {
        Some(c) => c,
        None => return report(b),
    };
    let now = now.unwrap_or_else(SystemTime::now);
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if now_secs < CLOCK_FLOOR {
        b.warn(
            "clock",
            format!("this box's clock says {}: that is in the past", super::tls_probe::date(now_secs)),
            "the clock is wrong (no battery-backed clock on a Pi): check `timedatectl status` and NTP",
        );
    } else {
        b.ok("clock", super::tls_probe::date(now_secs));
    }

    let Some((scheme, host, port)) = parse_url(&config.central_server_url) else {
        return report(b);
    };
    // DNS
    let addrs: Vec<std::net::SocketAddr> = match tokio::time::timeout(
        timeout,
        tokio::net::lookup_host((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(a)) => a.collect(),
        Ok(Err(e)) => {
            b.fail(
                    "dns",
                    format!("cannot resolve {host}: {e}"),
                    "check the network and DNS of this box (`cat /etc/resolv.conf`, `ping 1.1.1.1`) and the host name in CENTRAL_SERVER_URL",
                );
            return skip_rest(b, "no address for the server", report);
        }
        Err(_) => {
            b.fail(
                "dns",
                format!("no DNS answer for {host} within {} s", timeout.as_secs()),
                "check the network and DNS of this box (`cat /etc/resolv.conf`)",
            );
            return skip_rest(b, "no address for the server", report);
        }
    };
    let listed: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    b.ok("dns", format!("{host} -> {}", listed.join(", ")));

    // TCP: the first address that answers.
    let mut connected = None;
    let mut last_error = String::new();
    for addr in &addrs {
        let started = Instant::now();
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => {
                connected = Some((*addr, started.elapsed()));
                break;
            }
            Ok(Err(e)) => last_error = format!("{addr}: {e}"),
            Err(_) => last_error = format!("{addr}: no answer within {} s", timeout.as_secs()),
        }
    }
    let Some((addr, took)) = connected else {
        b.fail(
            "tcp",
            format!("cannot connect to port {port}: {last_error}"),
            format!(
                "the central server is down, or a firewall blocks port {port}; check CENTRAL_SERVER_URL ({})",
                config.central_server_url
            ),
        );
        return skip_rest(b, "no TCP connection to the server", report);
    };
    b.ok(
        "tcp",
        format!("connected to {addr} in {} ms", took.as_millis()),
    );

    // TLS
    if scheme == "https" {
        let host_name = host.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            super::tls_probe::probe(addr, &host_name, roots, Some(now), timeout)
        })
        .await;
        match outcome {
            Ok(o) => {
                let verdict = o
                    .validity
                    .and_then(|(nb, na)| super::tls_probe::clock_verdict(now_secs, nb, na));
                match (o.error, verdict) {
                    (None, _) => {
                        let until = o
                            .validity
                            .map(|(_, na)| {
                                format!(
                                    ", certificate valid until {} ({} days)",
                                    super::tls_probe::date(na),
                                    (na - now_secs) / 86_400
                                )
                            })
                            .unwrap_or_default();
                        b.ok("tls", format!("{}{until}", o.version.unwrap_or_default()));
                    }
                    (Some(_), Some(verdict)) if verdict.contains("is before the start") => {
                        b.fail(
                            "tls",
                            verdict,
                            "set the time: `sudo timedatectl set-ntp true` and wait for \
                             synchronisation (`timedatectl status`), or by hand \
                             `sudo date -s 'YYYY-MM-DD HH:MM'`; then run diagnose again",
                        );
                        return skip_rest(b, "TLS refused", report);
                    }
                    (Some(_), Some(verdict)) => {
                        b.fail(
                            "tls",
                            verdict,
                            "if this box's clock is right, the server's certificate really expired: \
                             contact NEOPRO support; otherwise fix the clock (`timedatectl status`)",
                        );
                        return skip_rest(b, "TLS refused", report);
                    }
                    (Some(e), None) => {
                        b.fail(
                            "tls",
                            format!("TLS handshake with {host} failed: {e}"),
                            "check CENTRAL_SERVER_URL; a network that intercepts HTTPS (captive \
                             portal, proxy) also causes this",
                        );
                        return skip_rest(b, "TLS refused", report);
                    }
                }
            }
            Err(e) => b.fail("tls", format!("TLS check crashed: {e}"), "report this bug"),
        }
    } else if !is_local(&host) {
        b.warn(
            "tls",
            format!(
                "{} is plain http://: the API key travels unencrypted",
                config.central_server_url
            ),
            "use the https:// URL of the central server",
        );
    } else {
        b.skip("tls", "plain http:// to this machine");
    }

    // HTTP health
    match super::central_api::CentralApi::new(&config.central_server_url) {
        Ok(api) => match api.health().await {
            Ok(h) if h.status_code == 200 => match h.status.as_deref() {
                Some("healthy") | None => b.ok(
                    "health",
                    format!("GET /health: HTTP 200{}", h.status.map(|s| format!(", {s}")).unwrap_or_default()),
                ),
                Some(other) => b.warn(
                    "health",
                    format!("GET /health: HTTP 200, the server reports itself {other}"),
                    "the central server has a problem of its own; the agent keeps retrying",
                ),
            },
            Ok(h) => b.warn(
                "health",
                format!("GET /health: HTTP {}{}", h.status_code, h.status.map(|s| format!(", {s}")).unwrap_or_default()),
                "the server answers but is unhealthy, or this is not a NEOPRO central server: check CENTRAL_SERVER_URL",
            ),
            Err(e) => b.fail("health", e.to_string(), "check CENTRAL_SERVER_URL and the network"),
        },
        Err(e) => b.fail("health", e.to_string(), "report this bug"),
    }

    // The running agent's session, from the status it keeps: a second
    // session as the site makes the real server forget the agent's own.
    let agent = running_agent(&mut b, &config);
    match (&config.site_id, &config.site_api_key) {
        _ if agent && !args.auth => b.skip(
            "authentication",
            "not checked: the running agent's session is reported above; \
             `neopro-runtime diagnose --auth` checks the key with a second session",
        ),
        (Some(id), Some(key)) => {
            if agent {
                b.warn(
                    "agent session",
                    "--auth: authenticating as this site while its agent runs makes the central \
                     server forget the agent's session",
                    format!(
                        "nothing to do: the agent notices within PING_CHECK_TIMEOUT ({} s) and \
                         authenticates again; commands sent meanwhile wait or are refused",
                        config.ping_check_timeout.as_secs()
                    ),
                );
            }
            authenticate(&mut b, &config.central_server_url, id, key, timeout).await
        }
        _ => b.skip("authentication", "SITE_ID or SITE_API_KEY is empty"),
    }
    report(b)
}

/// Reports the running agent's link state; `true` when an agent is running.
fn running_agent(b: &mut Builder, config: &SiteConfig) -> bool {
    use neopro_runtime::agent::session::link_status;
    let status = match link_status::read(&config.runtime_path) {
        Ok(Some(status)) if link_status::writer_alive(&status) => status,
        // No agent running: nothing to add, the authentication check runs.
        Ok(_) => return false,
        Err(e) => {
            b.warn(
                "agent",
                e.to_string(),
                "run diagnose with sudo, or restart the agent",
            );
            return false;
        }
    };
    let since = |label: &str, at: &Option<String>| {
        at.as_ref()
            .map(|t| format!(", {label} {t}"))
            .unwrap_or_default()
    };
    let detail = format!(
        "running (pid {}): {}{}{}{}{}, {} result(s) waiting for delivery",
        status.pid,
        status.state,
        status
            .reason
            .as_ref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default(),
        since("connected since", &status.connected_since),
        since("last authenticated", &status.last_authenticated),
        since("last ping_check", &status.last_ping_check),
        status.results_waiting,
    );
    let file_key = link_status::key_fingerprint(config.site_api_key.as_deref().unwrap_or(""));
    if let Some(running_key) = &status.key_fingerprint
        && *running_key != file_key
    {
        b.fail(
            "agent",
            format!(
                "{detail}; but the running agent authenticates with another API key than this file has (key fingerprint {running_key}, the file's {file_key}), so its state says nothing about this file"
            ),
            "restart the agent to use this file's key (`systemctl restart neopro-runtime`), or run `diagnose --auth` to check this file's key against the server",
        );
    } else if status.state == "authenticated" {
        b.ok("agent", detail);
    } else {
        b.warn(
            "agent",
            detail,
            "the agent keeps reconnecting on its own; its log says why \
             (`journalctl -u neopro-runtime`); `diagnose --auth` checks the key",
        );
    }
    true
}

fn skip_rest(mut b: Builder, why: &str, report: impl Fn(Builder) -> Report) -> Report {
    let done: Vec<&'static str> = b.0.iter().map(|c| c.name).collect();
    for name in ["dns", "tcp", "tls", "health", "authentication"] {
        if !done.contains(&name) {
            b.skip(name, format!("skipped: {why}"));
        }
    }
    report(b)
}

fn is_local(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// (scheme, host, port) of an http(s) URL.
fn parse_url(url: &str) -> Option<(String, String, u16)> {
    let parsed = reqwest::Url::parse(url.trim()).ok()?;
    let scheme = parsed.scheme().to_owned();
    let host = parsed.host_str()?.trim_matches(['[', ']']).to_owned();
    let port = parsed.port_or_known_default()?;
    Some((scheme, host, port))
}

fn check_config(b: &mut Builder, path: &Path) -> Option<SiteConfig> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            b.fail(
                "site.conf",
                format!("cannot read {}: {e}", path.display()),
                "register this box: `sudo neopro-runtime register` (or pass --config FILE)",
            );
            return None;
        }
    };
    let config = match SiteConfig::load(Some(path)) {
        Ok(c) => c,
        Err(e) => {
            let fix = match &e {
                neopro_runtime::config::ConfigError::Read { source, .. }
                    if source.kind() == std::io::ErrorKind::PermissionDenied =>
                {
                    "site.conf is readable only by its owner (the agent's user): \
                     run `sudo neopro-runtime diagnose`"
                        .to_owned()
                }
                _ => format!("edit {}", path.display()),
            };
            b.fail("site.conf", e.to_string(), fix);
            return None;
        }
    };
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        b.warn(
            "site.conf",
            format!(
                "{} is readable by other users (mode {mode:04o}) and holds the API key",
                path.display()
            ),
            format!("sudo chmod 600 {}", path.display()),
        );
    } else {
        b.ok("site.conf", format!("{} (mode {mode:04o})", path.display()));
    }

    match parse_url(&config.central_server_url) {
        Some((scheme, _, _)) if scheme == "http" || scheme == "https" => {
            b.ok("CENTRAL_SERVER_URL", config.central_server_url.clone())
        }
        _ => b.fail(
            "CENTRAL_SERVER_URL",
            format!("'{}' is not an http(s):// URL", config.central_server_url),
            format!("set CENTRAL_SERVER_URL=https://... in {}", path.display()),
        ),
    }
    if config.central_server_enabled {
        b.ok("CENTRAL_SERVER_ENABLED", "true");
    } else {
        b.fail(
            "CENTRAL_SERVER_ENABLED",
            "not \"true\": the agent will not connect",
            format!("set CENTRAL_SERVER_ENABLED=true in {}", path.display()),
        );
    }
    match &config.site_id {
        None => b.fail(
            "SITE_ID",
            "empty",
            "register this box: `sudo neopro-runtime register`",
        ),
        Some(id) if !looks_like_uuid(id) => b.warn(
            "SITE_ID",
            format!("'{id}' is not a UUID; the server will refuse it"),
            "copy the site id from the dashboard, or register again",
        ),
        Some(id) => b.ok("SITE_ID", id.clone()),
    }
    match &config.site_api_key {
        None => b.fail(
            "SITE_API_KEY",
            "empty",
            "get a key: `sudo neopro-runtime resync` (or register this box)",
        ),
        Some(key) => {
            let masked = super::central_api::mask_key(key);
            if key.len() == 64 && key.bytes().all(|c| c.is_ascii_hexdigit()) {
                b.ok("SITE_API_KEY", masked);
            } else {
                b.warn(
                    "SITE_API_KEY",
                    format!("{masked}: keys made by the server are 64 hexadecimal characters"),
                    "check for a truncated copy, or run `sudo neopro-runtime resync`",
                );
            }
        }
    }
    let missing: Vec<String> = [&config.neopro_root, &config.videos_path]
        .iter()
        .filter(|p| !p.is_dir())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        b.ok(
            "folders",
            format!(
                "{} and {}",
                config.neopro_root.display(),
                config.videos_path.display()
            ),
        );
    } else {
        b.warn(
            "folders",
            format!("missing: {}", missing.join(", ")),
            "install the NEOPRO web app first, or fix NEOPRO_ROOT / VIDEOS_PATH",
        );
    }
    Some(config)
}

fn looks_like_uuid(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.bytes().all(|c| c.is_ascii_hexdigit()))
}

/// Connects like the agent and sends `authenticate`.
async fn authenticate(b: &mut Builder, url: &str, site_id: &str, key: &str, timeout: Duration) {
    let mut config = LinkConfig::new(url);
    config.connect_timeout = timeout;
    let (handle, mut events) = link::spawn(config);
    let outcome = tokio::time::timeout(timeout + Duration::from_secs(1), async {
        loop {
            match events.recv().await {
                None => return Err("the link stopped".to_owned()),
                Some(LinkEvent::Connected) => {
                    let payload = json!({"siteId": site_id, "apiKey": key});
                    if let Err(e) = handle.emit("authenticate", &[payload]) {
                        return Err(e.to_string());
                    }
                }
                Some(LinkEvent::Disconnected(reason)) => return Err(reason),
                Some(LinkEvent::Event { name, args, .. }) => {
                    let message = args
                        .first()
                        .and_then(|a| a.get("message"))
                        .and_then(|m| m.as_str())
                        .unwrap_or("Erreur inconnue")
                        .to_owned();
                    match name.as_str() {
                        "authenticated" => return Ok(Ok(message)),
                        "auth_error" => return Ok(Err(message)),
                        _ => {}
                    }
                }
                Some(
                    LinkEvent::ServerPing
                    | LinkEvent::Oversized { .. }
                    | LinkEvent::Undecodable { .. },
                ) => {}
            }
        }
    })
    .await;
    handle.close().await;
    match outcome {
        Ok(Ok(Ok(message))) => b.ok("authentication", message),
        Ok(Ok(Err(message))) => {
            let fix = neopro_runtime::agent::session::auth::hint(&message);
            b.fail("authentication", message, fix);
        }
        Ok(Err(reason)) => b.fail(
            "authentication",
            format!("the Socket.IO link did not open: {reason}"),
            "check CENTRAL_SERVER_URL: the server answers HTTP but not Socket.IO",
        ),
        Err(_) => b.fail(
            "authentication",
            format!("no answer to authenticate within {} s", timeout.as_secs()),
            "the server is overloaded or not a NEOPRO central server; try again later",
        ),
    }
}

/// Prints the report for a person (or as JSON).
pub fn print(report: &Report, as_json: bool, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    if as_json {
        let text = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
        return writeln!(out, "{text}");
    }
    writeln!(out, "neopro-runtime diagnose ({})", report.config_file)?;
    for c in &report.checks {
        let mark = match c.status {
            Status::Ok => "ok  ",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "--  ",
        };
        writeln!(out, "  {mark}  {:<22} {}", c.name, c.detail)?;
        if let Some(fix) = &c.fix {
            writeln!(out, "        {:<22} fix: {fix}", "")?;
        }
    }
    let fails = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .count();
    let warns = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Warn)
        .count();
    if fails == 0 {
        writeln!(out, "all checks passed ({warns} warning(s))")
    } else {
        writeln!(
            out,
            "{fails} problem(s), {warns} warning(s): see the fixes above"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::tls_probe::test_server;
    use super::*;

    #[tokio::test]
    async fn a_clock_before_the_certificate_is_the_reported_cause()
    -> Result<(), Box<dyn std::error::Error>> {
        let addr = test_server::start()?;
        let dir = tempfile::tempdir()?;
        let conf = dir.path().join("site.conf");
        std::fs::write(
            &conf,
            format!(
                "CENTRAL_SERVER_URL=https://localhost:{}\nCENTRAL_SERVER_ENABLED=true\n\
                 SITE_ID=00000000-0000-4000-8000-000000000001\nSITE_API_KEY={}\nNEOPRO_ROOT={}\n",
                addr.port(),
                "a".repeat(64),
                dir.path().display()
            ),
        )?;
        // A Pi that booted without network: 2022-01-01.
        let then = UNIX_EPOCH + Duration::from_secs(1_640_995_200);
        let args = DiagnoseArgs {
            json: false,
            timeout: 5,
            auth: false,
        };
        let report = diagnose_with(&conf, &args, test_server::roots()?, Some(then)).await;
        let clock = report.check("clock").ok_or("clock check")?;
        assert_eq!(clock.status, Status::Warn);
        let tls = report.check("tls").ok_or("tls check")?;
        assert_eq!(tls.status, Status::Fail);
        assert_eq!(
            tls.detail,
            "this box's clock (2022-01-01 00:00:00 UTC) is before the start of the server's \
             certificate (2026-11-28 09:51:12 UTC): the clock is wrong (a Raspberry Pi has no \
             battery-backed clock and starts in the past until it reaches a time server)"
        );
        assert!(
            tls.fix
                .as_deref()
                .is_some_and(|f| f.contains("timedatectl set-ntp true"))
        );
        assert_eq!(
            report.check("authentication").map(|c| c.status),
            Some(Status::Skip)
        );

        // The right time: the handshake passes and the expiry is shown.
        let now = UNIX_EPOCH + Duration::from_secs(test_server::NOT_BEFORE as u64 + 86_400);
        let report = diagnose_with(&conf, &args, test_server::roots()?, Some(now)).await;
        let tls = report.check("tls").ok_or("tls check")?;
        assert_eq!(
            (tls.status, tls.detail.as_str()),
            (
                Status::Ok,
                "TLS 1.3, certificate valid until 2036-11-25 09:51:12 UTC (3649 days)"
            )
        );
        Ok(())
    }
}
