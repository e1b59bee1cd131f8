//! Authentication and credentials: the site's identity, re-read from
//! site.conf at every connect; `authenticate` and its answer; the wait
//! after a refusal; the session number progress events carry; and the two
//! silences that mean the server no longer counts us (no answer to
//! `authenticate`, no `ping_check`), each answered by a reconnect. Also what
//! to tell the operator when the server refuses us (the troubleshooting
//! table of the original agent's README).

use crate::config::SiteConfig;
use crate::link::LinkHandle;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The fix for an `auth_error` message.
pub fn hint(message: &str) -> &'static str {
    if message.contains("Site non trouvé") {
        "This site does not exist on the central server: register it again with `neopro-runtime register`."
    } else if message.contains("Clé API invalide") {
        "The API key in site.conf does not match the server's: run `neopro-runtime resync`."
    } else if message.contains("Identifiants manquants") {
        "SITE_ID or SITE_API_KEY is empty: check /etc/neopro/site.conf."
    } else {
        "Check SITE_ID and SITE_API_KEY in /etc/neopro/site.conf, or run `neopro-runtime diagnose`."
    }
}

/// Site identity, re-read from site.conf before every authentication so a
/// fixed file is picked up without a restart.
#[derive(Debug, Clone, Default)]
struct Credentials {
    site_id: String,
    api_key: String,
}

/// How long authentication waits, for what.
#[derive(Debug, Clone)]
pub(super) struct AuthTimings {
    /// First wait after a refusal; doubles up to 6×.
    pub retry: Duration,
    /// No answer to `authenticate` within this: reconnect and try again (an
    /// event that reached the server before it was ready is dropped).
    pub answer_timeout: Duration,
    /// No `ping_check` for this long while authenticated: reconnect (zero:
    /// never).
    pub ping_check_timeout: Duration,
}

/// What the server went silent about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Silence {
    /// `authenticate` went out and no answer came.
    NoAnswer,
    /// Authenticated, and the server's `ping_check`s stopped.
    NoPingCheck,
}

/// Where this connection stands with the server.
#[derive(Debug)]
pub(super) struct Authentication {
    config_file: Option<PathBuf>,
    timings: AuthTimings,
    credentials: Credentials,
    authenticated: bool,
    /// Authentications so far in this process.
    sessions: u64,
    /// The authenticated session number (0 while not authenticated), shared
    /// with the progress sinks of running commands.
    session_no: Arc<AtomicU64>,
    /// When `authenticate` went out without an answer yet.
    awaiting_since: Option<Instant>,
    /// Refusals in a row.
    failures: u32,
    /// When the server last showed it counts us as connected (`ping_check`,
    /// or the authentication itself); `None` while not authenticated.
    last_ping_check: Option<Instant>,
}

impl Authentication {
    /// Starts with the credentials `config` was loaded with; `config_file`
    /// is read again at every connect.
    pub(super) fn new(
        config: &SiteConfig,
        config_file: Option<PathBuf>,
        timings: AuthTimings,
    ) -> Self {
        Authentication {
            config_file,
            timings,
            credentials: Credentials {
                site_id: config.site_id.clone().unwrap_or_default(),
                api_key: config.site_api_key.clone().unwrap_or_default(),
            },
            authenticated: false,
            sessions: 0,
            session_no: Arc::new(AtomicU64::new(0)),
            awaiting_since: None,
            failures: 0,
            last_ping_check: None,
        }
    }

    pub(super) fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    pub(super) fn site_id(&self) -> &str {
        &self.credentials.site_id
    }

    pub(super) fn api_key(&self) -> &str {
        &self.credentials.api_key
    }

    /// The session number, as running commands' progress sinks read it.
    pub(super) fn session_no(&self) -> Arc<AtomicU64> {
        self.session_no.clone()
    }

    /// Reads the credentials again from site.conf (a fixed file is picked
    /// up without a restart); a file that cannot be read keeps the previous
    /// ones.
    pub(super) fn reload_credentials(&mut self) {
        match SiteConfig::load(self.config_file.as_deref()) {
            Ok(fresh) => {
                self.credentials = Credentials {
                    site_id: fresh.site_id.unwrap_or_default(),
                    api_key: fresh.site_api_key.unwrap_or_default(),
                };
            }
            Err(e) => tracing::warn!("keeping the previous credentials: {e}"),
        }
        if self.credentials.site_id.is_empty() || self.credentials.api_key.is_empty() {
            tracing::error!(
                "SITE_ID and SITE_API_KEY are required: register the site with `neopro-runtime register`"
            );
        }
    }

    /// Sends `authenticate`; its answer is awaited (see [`Self::silence`]).
    pub(super) fn ask(&mut self, link: &LinkHandle) {
        let credentials = json!({
            "siteId": self.credentials.site_id,
            "apiKey": self.credentials.api_key,
        });
        if link.emit("authenticate", &[credentials]).is_ok() {
            self.awaiting_since = Some(Instant::now());
        }
    }

    /// The server accepted us: returns the new session number.
    pub(super) fn accepted(&mut self) -> u64 {
        tracing::info!("authenticated as site {}", self.credentials.site_id);
        self.authenticated = true;
        self.sessions += 1;
        self.session_no.store(self.sessions, Ordering::SeqCst);
        self.last_ping_check = Some(Instant::now());
        self.awaiting_since = None;
        self.failures = 0;
        self.sessions
    }

    /// The server refused us (`auth_error`): reconnects after a wait that
    /// doubles with each refusal in a row, up to 6× the first; returns it.
    pub(super) fn refused(&mut self, args: &[Value], link: &LinkHandle) -> Duration {
        let message = args
            .first()
            .and_then(|a| a.get("message"))
            .and_then(Value::as_str)
            .unwrap_or("Erreur inconnue")
            .to_owned();
        self.awaiting_since = None;
        self.failures = self.failures.saturating_add(1);
        let factor = 1u32 << self.failures.saturating_sub(1).min(3);
        let wait = self.timings.retry.saturating_mul(factor.min(6));
        tracing::error!(
            "authentication refused by the central server: {message}. {} Retrying in {} s.",
            hint(&message),
            wait.as_secs()
        );
        let _ = link.reconnect_after(wait, &format!("authentication refused: {message}"));
        wait
    }

    /// The link dropped: returns whether it was authenticated.
    pub(super) fn disconnected(&mut self) -> bool {
        let was = self.authenticated;
        self.authenticated = false;
        self.session_no.store(0, Ordering::SeqCst);
        self.last_ping_check = None;
        self.awaiting_since = None;
        was
    }

    /// The server's `ping_check`: answered with `pong_check`; returns
    /// whether it counts (we are authenticated).
    pub(super) fn ping_check(&mut self, link: &LinkHandle) -> bool {
        let _ = link.emit("pong_check", &[]);
        if self.authenticated {
            self.last_ping_check = Some(Instant::now());
        }
        self.authenticated
    }

    /// Resolves when the server has been silent too long: no answer to
    /// `authenticate`, or no `ping_check` while authenticated. Never while
    /// neither is awaited.
    pub(super) async fn silence(&self) -> Silence {
        let answer = self
            .awaiting_since
            .map(|since| (since + self.timings.answer_timeout, Silence::NoAnswer));
        let ping_check = self
            .last_ping_check
            .filter(|_| !self.timings.ping_check_timeout.is_zero())
            .map(|at| (at + self.timings.ping_check_timeout, Silence::NoPingCheck));
        match answer
            .into_iter()
            .chain(ping_check)
            .min_by_key(|(at, _)| *at)
        {
            Some((at, silence)) => {
                tokio::time::sleep_until(at).await;
                silence
            }
            None => std::future::pending().await,
        }
    }

    /// Reconnects after a [`Silence`], to authenticate again.
    pub(super) fn on_silence(&mut self, silence: Silence, link: &LinkHandle) {
        match silence {
            Silence::NoAnswer => {
                self.awaiting_since = None;
                tracing::warn!(
                    "no answer to authenticate within {} s; reconnecting",
                    self.timings.answer_timeout.as_secs_f64()
                );
                let _ = link.reconnect_after(Duration::ZERO, "no answer to authenticate");
            }
            // The server sends `ping_check` every 30 s to each site it
            // counts as connected; none for this long on an authenticated
            // link means it dropped us from its books (it does when another
            // connection of this site closes) and will neither ping nor
            // send us commands again.
            Silence::NoPingCheck => {
                let silent = self.timings.ping_check_timeout.as_secs_f64();
                self.last_ping_check = None;
                tracing::warn!(
                    "no ping_check from the central server for {silent} s although the link is up: \
                     it no longer counts this box as connected (e.g. another connection of this site \
                     closed, such as `neopro-runtime diagnose --auth`); reconnecting to authenticate again"
                );
                let _ = link.reconnect_after(
                    Duration::ZERO,
                    &format!("no ping_check for {silent} s: the server forgot this session"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::test_peer;

    fn timings() -> AuthTimings {
        AuthTimings {
            retry: Duration::from_secs(10),
            answer_timeout: Duration::from_secs(20),
            ping_check_timeout: Duration::from_secs(75),
        }
    }

    fn site_conf(dir: &std::path::Path, text: &str) -> Result<PathBuf, Box<dyn std::error::Error>> {
        let path = dir.join("site.conf");
        std::fs::write(&path, text)?;
        Ok(path)
    }

    fn authentication(
        conf: &std::path::Path,
    ) -> Result<Authentication, Box<dyn std::error::Error>> {
        let config = SiteConfig::load(Some(conf))?;
        Ok(Authentication::new(
            &config,
            Some(conf.to_owned()),
            timings(),
        ))
    }

    /// A site registered in its site.conf (kept while the test runs).
    fn registered_site() -> Result<(tempfile::TempDir, Authentication), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let auth = authentication(&site_conf(dir.path(), "SITE_ID=s\nSITE_API_KEY=k\n")?)?;
        Ok((dir, auth))
    }

    #[test]
    fn credentials_are_read_again_at_every_connect() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let conf = site_conf(dir.path(), "SITE_ID=site-a\nSITE_API_KEY=key-1\n")?;
        let mut auth = authentication(&conf)?;
        let (link, mut server) = test_peer::connected(25_000, 0);
        auth.ask(&link);
        // The operator fixes the key: the next connect sends it.
        site_conf(dir.path(), "SITE_ID=site-a\nSITE_API_KEY=key-2\n")?;
        auth.reload_credentials();
        auth.ask(&link);
        // A broken file keeps the last good key.
        site_conf(dir.path(), "SITE_ID=site-a\nthis is not a setting\n")?;
        auth.reload_credentials();
        auth.ask(&link);
        let keys: Vec<Value> = server
            .emitted()
            .into_iter()
            .map(|(name, args)| json!([name, args]))
            .collect();
        let sent = |key: &str| json!(["authenticate", [{"siteId": "site-a", "apiKey": key}]]);
        assert_eq!(keys, vec![sent("key-1"), sent("key-2"), sent("key-2")]);
        assert_eq!((auth.site_id(), auth.api_key()), ("site-a", "key-2"));
        Ok(())
    }

    #[test]
    fn refusals_back_off_up_to_six_times_and_an_acceptance_resets_them()
    -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, mut auth) = registered_site()?;
        let (link, mut server) = test_peer::connected(25_000, 0);
        let refusal = [json!({"message": "Authentification échouée: Clé API invalide"})];
        for _ in 0..5 {
            auth.refused(&refusal, &link);
        }
        let waits: Vec<u64> = server
            .reconnects()
            .iter()
            .map(|(w, _)| w.as_secs())
            .collect();
        assert_eq!(waits, [10, 20, 40, 60, 60]);
        assert_eq!(auth.accepted(), 1);
        auth.refused(&[json!({})], &link);
        assert_eq!(
            server.reconnects(),
            vec![(
                Duration::from_secs(10),
                "authentication refused: Erreur inconnue".to_owned()
            )]
        );
        Ok(())
    }

    #[test]
    fn the_session_number_counts_authentications_and_is_zero_while_down()
    -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, mut auth) = registered_site()?;
        let shared = auth.session_no();
        assert!(!auth.disconnected(), "never authenticated");
        assert_eq!(auth.accepted(), 1);
        assert_eq!(shared.load(Ordering::SeqCst), 1);
        assert!(auth.disconnected() && !auth.is_authenticated());
        assert_eq!(shared.load(Ordering::SeqCst), 0);
        assert_eq!(auth.accepted(), 2);
        assert_eq!(shared.load(Ordering::SeqCst), 2);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn silences_reconnect_and_a_ping_check_puts_the_next_one_off()
    -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, mut auth) = registered_site()?;
        let (link, mut server) = test_peer::connected(25_000, 0);
        // Nothing awaited: never silent.
        let idle = tokio::time::timeout(Duration::from_secs(3600), auth.silence()).await;
        assert!(idle.is_err());
        // No answer to authenticate within 20 s.
        let start = Instant::now();
        auth.ask(&link);
        assert_eq!(auth.silence().await, Silence::NoAnswer);
        assert_eq!(start.elapsed(), Duration::from_secs(20));
        auth.on_silence(Silence::NoAnswer, &link);
        assert_eq!(
            server.reconnects(),
            vec![(Duration::ZERO, "no answer to authenticate".to_owned())]
        );
        // Authenticated; a ping_check after 60 s puts the silence off to 135 s.
        auth.ask(&link);
        auth.accepted();
        let start = Instant::now();
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(auth.ping_check(&link));
        assert_eq!(auth.silence().await, Silence::NoPingCheck);
        assert_eq!(start.elapsed(), Duration::from_secs(135));
        auth.on_silence(Silence::NoPingCheck, &link);
        assert_eq!(
            server.reconnects()[0].1,
            "no ping_check for 75 s: the server forgot this session"
        );
        assert!(
            server
                .emitted()
                .iter()
                .any(|(name, _)| name == "pong_check"),
            "a ping_check is answered"
        );
        Ok(())
    }

    #[test]
    fn each_upstream_message_has_its_fix() {
        assert!(hint("Authentification échouée: Site non trouvé: abc").contains("register"));
        assert!(hint("Authentification échouée: Clé API invalide").contains("resync"));
        assert!(
            hint("Authentification échouée: Identifiants manquants")
                .contains("SITE_ID or SITE_API_KEY is empty")
        );
        assert!(hint("Authentification échouée: Erreur inconnue").contains("diagnose"));
    }
}
