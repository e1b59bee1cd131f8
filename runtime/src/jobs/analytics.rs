//! Forwards what the local web app records — video plays and sponsor
//! impressions, appended to JSON arrays under `NEOPRO_ROOT/data` — to the
//! central server, at start and every 5 minutes (protocol notes §9.7–9.8).
//!
//! Upstream read the file, sent it, then overwrote it with `[]`, losing
//! whatever the app appended in between. Here the file is first *renamed*
//! to `<name>.sending` (the app's next append then starts a new file), read
//! after a short settle delay (the app writes in place, not atomically),
//! sent with retries, and deleted only once the server accepted it. A
//! refused or failed batch stays in `.sending` and is sent again at the
//! next pass before anything newer. At worst an event the app had read
//! before the rename is sent twice; none is lost. A batch the server keeps
//! refusing (4xx) would block every newer event while the app's buffer grows
//! without limit, so after a few refused passes it is moved aside
//! (`<name>.refused-<time>`, the newest few kept for inspection).
//!
//! "Accepted" is not "recorded": the real server answers a batch of plays
//! with `{success: true, recorded: N}` and silently skips every play its
//! database refuses (a video or sponsor it does not know, a missing file
//! name), without saying which. Such a batch is done — sending it again
//! would only duplicate the plays it did record — so it is deleted, and the
//! log says how many were recorded and how many skipped. Only a real failure
//! (no answer, an error status, a 2xx that is not the server's JSON, such as
//! a captive portal's page) keeps the batch for the next pass.
//!
//! The folder is the web app's: each pass opens it once without following a
//! link its user could have placed ([`crate::store::safe_folder`]) and does
//! every rename, read and delete inside that open folder, so a `data/`
//! swapped for a link (to `/etc`, to the agent's state) moves, reads and
//! deletes nothing there.

use crate::config::SiteConfig;
use cap_std::fs::Dir;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Upstream's fixed period.
pub const INTERVAL: Duration = Duration::from_secs(300);

/// Refused batches moved aside that are kept per buffer (older ones deleted).
pub const KEEP_REFUSED: usize = 3;

/// The most of a server answer that is read (its JSON is a few dozen bytes).
const MAX_ANSWER: usize = 64 * 1024;

/// The largest buffer read (about 80 000 plays; the app appends a few
/// hundred bytes per play). A larger one is moved aside, never read whole:
/// the folder is the web app's, and a link there to `/dev/zero` would
/// otherwise run the agent out of memory.
pub const MAX_BATCH_BYTES: u64 = 16 << 20;

/// What one pass delivered: events the server accepted (their batches are
/// deleted) and what it said it did with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delivered {
    /// Events in the batches the server accepted.
    pub sent: usize,
    /// Of those, the ones the server said it recorded.
    pub recorded: usize,
    /// Of those, the ones in batches whose answer carried no count.
    pub uncounted: usize,
}

impl Delivered {
    /// Accepted but not recorded: the server skipped them, and they are not
    /// sent again.
    pub fn skipped(&self) -> usize {
        self.sent
            .saturating_sub(self.recorded)
            .saturating_sub(self.uncounted)
    }

    fn add(&mut self, other: Delivered) {
        self.sent = self.sent.saturating_add(other.sent);
        self.recorded = self.recorded.saturating_add(other.recorded);
        self.uncounted = self.uncounted.saturating_add(other.uncounted);
    }
}

/// Why one batch was not delivered (it is kept for the next pass).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ForwardError {
    #[error("cannot read or move {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{path} is not a JSON array yet ({reason}); kept for the next pass")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{path} stayed unreadable ({reason}); moved to {moved_to} so newer events get through")]
    Quarantined {
        path: PathBuf,
        reason: String,
        moved_to: PathBuf,
    },
    #[error("the central server refused {count} {what} (HTTP {status}: {message}); kept in {path}")]
    Refused {
        what: &'static str,
        count: usize,
        status: u16,
        message: String,
        path: PathBuf,
    },
    #[error(
        "the central server refused {count} {what} {passes} times in a row (HTTP {status}: \
         {message}); moved to {moved_to} so newer events get through (the newest \
         {KEEP_REFUSED} such files are kept)"
    )]
    SetAside {
        what: &'static str,
        count: usize,
        passes: u32,
        status: u16,
        message: String,
        moved_to: PathBuf,
    },
    #[error(
        "the central server answered HTTP {status} to {count} {what} without confirming them \
         (\"{preview}\": not its JSON answer, perhaps a proxy or captive portal); kept in {path}"
    )]
    Unconfirmed {
        what: &'static str,
        count: usize,
        status: u16,
        preview: String,
        path: PathBuf,
    },
    #[error("cannot send {count} {what} ({reason}); kept in {path} for the next pass")]
    Unreachable {
        what: &'static str,
        count: usize,
        reason: String,
        path: PathBuf,
    },
    #[error("cannot set up HTTPS: {0}")]
    Tls(String),
}

/// One buffer file and where its events go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    VideoPlays,
    SponsorImpressions,
}

impl Kind {
    fn file_name(self) -> &'static str {
        match self {
            Kind::VideoPlays => "analytics_buffer.json",
            Kind::SponsorImpressions => "sponsor_impressions.json",
        }
    }
    fn endpoint(self) -> &'static str {
        match self {
            Kind::VideoPlays => "/api/analytics/video-plays",
            Kind::SponsorImpressions => "/api/analytics/impressions",
        }
    }
    fn what(self) -> &'static str {
        match self {
            Kind::VideoPlays => "video plays",
            Kind::SponsorImpressions => "sponsor impressions",
        }
    }
    /// Why the real server skips an event it accepted (it never says which).
    fn skip_reason(self) -> &'static str {
        match self {
            Kind::VideoPlays => {
                "its database refused them: a video or sponsor it does not know, or a missing \
                 file name or date; it does not say which"
            }
            Kind::SponsorImpressions => {
                "not valid for it: a site or video id that is not a UUID, or a missing date or \
                 duration; it does not say which"
            }
        }
    }
    /// The request body upstream sends.
    fn body(self, site_id: &str, events: Vec<Value>) -> Value {
        match self {
            Kind::VideoPlays => json!({"site_id": site_id, "plays": events}),
            Kind::SponsorImpressions => {
                let impressions: Vec<Value> = events
                    .into_iter()
                    .map(|mut e| {
                        let has_site = e
                            .get("site_id")
                            .and_then(Value::as_str)
                            .is_some_and(|s| !s.is_empty());
                        if !has_site && let Some(obj) = e.as_object_mut() {
                            obj.insert("site_id".to_owned(), json!(site_id));
                        }
                        e
                    })
                    .collect();
                json!({"impressions": impressions})
            }
        }
    }
}

/// How the forwarder behaves (short in tests).
#[derive(Debug, Clone)]
pub struct Settings {
    pub server_url: String,
    pub site_id: String,
    pub data_dir: PathBuf,
    /// Waited after the rename, so a write the app had started lands first.
    pub settle: Duration,
    /// Pauses between attempts on a network error, 5xx or 429.
    pub retry_delays: Vec<Duration>,
    pub request_timeout: Duration,
    /// A batch still not valid JSON this long after its last write is
    /// moved aside (`.bad-<time>`), so it cannot block newer events.
    pub quarantine_after: Duration,
    /// Passes in a row the server may refuse (4xx) a batch before it is
    /// moved aside.
    pub set_aside_after_refusals: u32,
}

impl Settings {
    pub fn from_config(config: &SiteConfig) -> Option<Settings> {
        Some(Settings {
            server_url: config
                .central_server_url
                .trim()
                .trim_end_matches('/')
                .to_owned(),
            site_id: config.site_id.clone()?,
            data_dir: config.neopro_root.join("data"),
            settle: Duration::from_millis(500),
            retry_delays: vec![Duration::from_secs(2), Duration::from_secs(10)],
            request_timeout: Duration::from_secs(10),
            quarantine_after: Duration::from_secs(600),
            // Three passes: 15 minutes of refusals.
            set_aside_after_refusals: 3,
        })
    }
}

/// Sends buffered events.
pub struct Forwarder {
    settings: Settings,
    http: reqwest::Client,
    /// Refused passes in a row of the current `.sending` batch, per kind.
    refusals: [std::sync::atomic::AtomicU32; 2],
}

/// A batch file: its name in the data folder opened for this pass, and its
/// path for messages.
#[derive(Clone)]
struct Batch {
    dir: Arc<Dir>,
    name: PathBuf,
    path: PathBuf,
}

impl Batch {
    /// `name` in the same folder.
    fn sibling(&self, name: &str) -> Batch {
        Batch {
            dir: Arc::clone(&self.dir),
            name: PathBuf::from(name),
            path: self.path.with_file_name(name),
        }
    }
}

impl Forwarder {
    pub fn new(settings: Settings) -> Result<Forwarder, ForwardError> {
        let tls =
            crate::platform::tls::client_config().map_err(|e| ForwardError::Tls(e.to_string()))?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .timeout(settings.request_timeout)
            .build()
            .map_err(|e| ForwardError::Tls(e.to_string()))?;
        Ok(Forwarder {
            settings,
            http,
            refusals: Default::default(),
        })
    }

    /// One pass over `kind`: an older kept batch first, then what the app
    /// buffered since. Returns what the server accepted and recorded.
    pub async fn forward(&self, kind: Kind) -> Result<Delivered, ForwardError> {
        let data_dir = self.settings.data_dir.clone();
        let folder = data_dir.clone();
        let opened = on_disk(move || {
            crate::store::safe_folder::open_dir(&folder).map_err(std::io::Error::from)
        });
        let mut sent = Delivered::default();
        let dir = match opened.await {
            Ok(dir) => Arc::new(dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(sent),
            Err(e) => {
                return Err(ForwardError::File {
                    path: data_dir,
                    reason: e.to_string(),
                });
            }
        };
        let buffer = Batch {
            dir,
            name: PathBuf::from(kind.file_name()),
            path: data_dir.join(kind.file_name()),
        };
        let path = buffer.path.clone();
        let sending = buffer.sibling(&format!("{}.sending", kind.file_name()));
        for _ in 0..2 {
            let had_old_batch = {
                let sending = sending.clone();
                // A link counts as a batch (to be moved aside), whatever it
                // points at.
                on_disk(move || Ok(sending.dir.symlink_metadata(&sending.name).is_ok()))
                    .await
                    .unwrap_or(false)
            };
            if !had_old_batch {
                let (from, to) = (buffer.clone(), sending.clone());
                match on_disk(move || from.dir.rename(&from.name, &to.dir, &to.name)).await {
                    Ok(()) => tokio::time::sleep(self.settings.settle).await,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(sent),
                    Err(e) => {
                        return Err(ForwardError::File {
                            path,
                            reason: e.to_string(),
                        });
                    }
                }
            }
            sent.add(self.send_counting_refusals(kind, &sending).await?);
            if !had_old_batch {
                return Ok(sent);
            }
        }
        Ok(sent)
    }

    /// [`Self::send_file`], moving the batch aside once the server refused
    /// it [`Settings::set_aside_after_refusals`] passes in a row.
    async fn send_counting_refusals(
        &self,
        kind: Kind,
        sending: &Batch,
    ) -> Result<Delivered, ForwardError> {
        use std::sync::atomic::Ordering;
        let refusals = &self.refusals[kind as usize];
        let err = match self.send_file(kind, sending).await {
            Ok(n) => {
                refusals.store(0, Ordering::Relaxed);
                return Ok(n);
            }
            Err(e) => e,
        };
        let ForwardError::Refused {
            what,
            count,
            status,
            message,
            path,
        } = err
        else {
            return Err(err);
        };
        let refused = |path| ForwardError::Refused {
            what,
            count,
            status,
            message: message.clone(),
            path,
        };
        if !is_final_refusal(status) {
            return Err(refused(path));
        }
        let passes = refusals.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if passes < self.settings.set_aside_after_refusals {
            return Err(refused(path));
        }
        let (batch, prefix) = (sending.clone(), format!("{}.refused-", kind.file_name()));
        match on_disk(move || set_aside(&batch, &prefix)).await {
            Ok(moved_to) => {
                refusals.store(0, Ordering::Relaxed);
                Err(ForwardError::SetAside {
                    what,
                    count,
                    passes,
                    status,
                    message,
                    moved_to,
                })
            }
            Err(e) => Err(ForwardError::File {
                path,
                reason: e.to_string(),
            }),
        }
    }

    async fn send_file(&self, kind: Kind, batch: &Batch) -> Result<Delivered, ForwardError> {
        let sending = batch.path.as_path();
        let read = {
            let batch = batch.clone();
            on_disk(move || {
                Ok(crate::store::untrusted_file::read_bounded_in(
                    &*batch.dir,
                    &batch.name,
                    &batch.path,
                    MAX_BATCH_BYTES,
                ))
            })
        }
        .await
        .map_err(|e| ForwardError::File {
            path: sending.to_owned(),
            reason: e.to_string(),
        })?;
        let text = match read {
            Ok(bytes) => bytes,
            // A link, a FIFO, a device, or too big to read: never read, moved
            // aside at once so newer events get through.
            Err(e)
                if e.is_foreign()
                    || matches!(
                        e,
                        crate::store::untrusted_file::UntrustedFileError::TooBig { .. }
                    ) =>
            {
                let (batch, prefix) = (batch.clone(), format!("{}.unusable-", kind.file_name()));
                let reason = e.to_string();
                return Err(match on_disk(move || set_aside(&batch, &prefix)).await {
                    Ok(moved_to) => ForwardError::Quarantined {
                        path: sending.to_owned(),
                        reason,
                        moved_to,
                    },
                    Err(e) => ForwardError::File {
                        path: sending.to_owned(),
                        reason: e.to_string(),
                    },
                });
            }
            Err(e) => {
                return Err(ForwardError::File {
                    path: sending.to_owned(),
                    reason: e.to_string(),
                });
            }
        };
        let events = match serde_json::from_slice::<Value>(&text) {
            Ok(Value::Array(events)) => events,
            Ok(_) => return Err(self.unreadable(batch, "not an array".to_owned()).await),
            Err(e) => return Err(self.unreadable(batch, e.to_string()).await),
        };
        let count = events.len();
        let delivered = if count > 0 {
            let recorded = self.post(kind, events, sending).await?;
            Delivered {
                sent: count,
                recorded: recorded.map_or(0, |n| n.min(count)),
                uncounted: if recorded.is_some() { 0 } else { count },
            }
        } else {
            Delivered::default()
        };
        // Accepted, whatever it recorded: the skipped events are not sent
        // again (the server would skip them again, and it does not say
        // which they were).
        let done = batch.clone();
        on_disk(move || done.dir.remove_file(&done.name))
            .await
            .map_err(|e| ForwardError::File {
                path: sending.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(delivered)
    }

    /// Keeps a batch that may still be being written; moves aside one that
    /// has not changed for [`Settings::quarantine_after`].
    async fn unreadable(&self, sending: &Batch, reason: String) -> ForwardError {
        let (batch, quarantine_after) = (sending.clone(), self.settings.quarantine_after);
        on_disk(move || Ok(quarantine_if_idle(&batch, reason, quarantine_after)))
            .await
            .unwrap_or_else(|e| ForwardError::File {
                path: sending.path.clone(),
                reason: e.to_string(),
            })
    }

    /// Sends one batch; on acceptance, how many events the server said it
    /// recorded (`None` when its answer carries no count).
    async fn post(
        &self,
        kind: Kind,
        events: Vec<Value>,
        kept_in: &Path,
    ) -> Result<Option<usize>, ForwardError> {
        let count = events.len();
        let url = format!("{}{}", self.settings.server_url, kind.endpoint());
        let body = kind.body(&self.settings.site_id, events).to_string();
        let mut attempt = 0;
        loop {
            let result = self
                .http
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let retryable = match result {
                Ok(response) if response.status().is_success() => {
                    let status = response.status().as_u16();
                    match read_answer(response).await.map(|b| acceptance(&b)) {
                        Ok(Acceptance::Recorded(n)) => return Ok(n),
                        Ok(Acceptance::Refused(message)) => {
                            return Err(ForwardError::Refused {
                                what: kind.what(),
                                count,
                                status,
                                message,
                                path: kept_in.to_owned(),
                            });
                        }
                        Ok(Acceptance::NotJson(preview)) => ForwardError::Unconfirmed {
                            what: kind.what(),
                            count,
                            status,
                            preview,
                            path: kept_in.to_owned(),
                        },
                        Err(e) => ForwardError::Unreachable {
                            what: kind.what(),
                            count,
                            reason: e.to_string(),
                            path: kept_in.to_owned(),
                        },
                    }
                }
                Ok(response) => {
                    let status = response.status();
                    let bytes = read_answer(response).await.unwrap_or_default();
                    let message = serde_json::from_slice::<Value>(&bytes)
                        .ok()
                        .and_then(|v| {
                            ["error", "message"]
                                .iter()
                                .find_map(|k| v.get(*k).and_then(Value::as_str).map(str::to_owned))
                        })
                        .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_owned());
                    let refused = ForwardError::Refused {
                        what: kind.what(),
                        count,
                        status: status.as_u16(),
                        message,
                        path: kept_in.to_owned(),
                    };
                    if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408
                    {
                        refused
                    } else {
                        return Err(refused);
                    }
                }
                Err(e) => ForwardError::Unreachable {
                    what: kind.what(),
                    count,
                    reason: e.to_string(),
                    path: kept_in.to_owned(),
                },
            };
            match self.settings.retry_delays.get(attempt) {
                Some(delay) => {
                    attempt += 1;
                    tokio::time::sleep(*delay).await;
                }
                None => return Err(retryable),
            }
        }
    }
}

/// Reads at most [`MAX_ANSWER`] bytes of an answer (the rest is ignored).
async fn read_answer(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_ANSWER.saturating_sub(body.len());
        body.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
        if body.len() >= MAX_ANSWER {
            break;
        }
    }
    Ok(body)
}

/// What a 2xx answer says about a batch.
#[derive(Debug, PartialEq)]
enum Acceptance {
    /// Accepted; the count of events recorded when the answer gives one.
    Recorded(Option<usize>),
    /// `{success: false, error}` under a 2xx status.
    Refused(String),
    /// Not the server's JSON (a preview of what came instead).
    NotJson(String),
}

/// Reads the server's answer: `{success: true, recorded: N}` for plays,
/// `{success: true, message: "N impression(s) recorded"}` for impressions;
/// an empty body counts as accepted without a count.
fn acceptance(body: &[u8]) -> Acceptance {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Acceptance::Recorded(None);
    }
    let Ok(Value::Object(answer)) = serde_json::from_slice::<Value>(body) else {
        let text = String::from_utf8_lossy(body);
        let preview: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        return Acceptance::NotJson(preview.chars().take(80).collect());
    };
    if answer.get("success") == Some(&Value::Bool(false)) {
        let message = ["error", "message"]
            .iter()
            .find_map(|k| answer.get(*k).and_then(Value::as_str))
            .unwrap_or("success: false");
        return Acceptance::Refused(message.to_owned());
    }
    let counted = answer
        .get("recorded")
        .and_then(Value::as_u64)
        .or_else(|| {
            let message = answer.get("message")?.as_str()?;
            let (n, rest) = message.split_once(' ')?;
            rest.contains("recorded")
                .then(|| n.parse::<u64>().ok())
                .flatten()
        })
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    Acceptance::Recorded(counted)
}

/// The log line of a pass that delivered something.
pub fn summary(kind: Kind, delivered: &Delivered) -> String {
    let Delivered {
        sent,
        recorded,
        uncounted,
    } = *delivered;
    let what = kind.what();
    let skipped = delivered.skipped();
    let mut line = format!("{sent} {what} sent to the central server");
    if skipped == 0 && uncounted == 0 {
        line.push_str(", all recorded");
        return line;
    }
    let mut parts = Vec::new();
    if recorded > 0 || skipped > 0 {
        parts.push(format!("{recorded} recorded"));
    }
    if skipped > 0 {
        parts.push(format!(
            "{skipped} skipped by the server ({}), not sent again",
            kind.skip_reason()
        ));
    }
    if uncounted > 0 {
        parts.push(format!(
            "{uncounted} accepted without a count of what it recorded"
        ));
    }
    line.push_str(": ");
    line.push_str(&parts.join(", "));
    line
}

/// One pass over `kind`, logged: what was recorded and skipped, or why
/// the batch is kept.
pub async fn forward_and_log(forwarder: &Forwarder, kind: Kind) {
    match forwarder.forward(kind).await {
        Ok(delivered) if delivered.sent == 0 => {}
        Ok(delivered) if delivered.skipped() > 0 => {
            tracing::warn!("{}", summary(kind, &delivered));
        }
        Ok(delivered) => tracing::info!("{}", summary(kind, &delivered)),
        Err(e @ ForwardError::Refused { status: 401, .. }) if kind == Kind::SponsorImpressions => {
            // Upstream's server wants a user token on this route, which a
            // box does not have: the batch is kept (then moved aside, the
            // newest few kept) for when it accepts site keys.
            tracing::warn!("{e}; the server requires a user token for impressions");
        }
        Err(e) => tracing::warn!("{e}"),
    }
}

/// A refusal the same batch will get again (not 408/429, which are retried).
fn is_final_refusal(status: u16) -> bool {
    (400..500).contains(&status) && status != 408 && status != 429
}

/// Renames `sending` to `<prefix><unix ms>` next to it (a free name), then
/// deletes all but the [`KEEP_REFUSED`] newest such files; the one just
/// moved is never deleted, whatever the clock says.
fn set_aside(sending: &Batch, prefix: &str) -> std::io::Result<PathBuf> {
    let dir = &sending.dir;
    let mut stamp = crate::platform::clock::unix_millis(std::time::SystemTime::now());
    let mut moved_to = format!("{prefix}{stamp}");
    while dir.symlink_metadata(&moved_to).is_ok() {
        stamp = stamp.saturating_add(1);
        moved_to = format!("{prefix}{stamp}");
    }
    dir.rename(&sending.name, dir, &moved_to)?;
    let mut older: Vec<(u128, String)> = dir
        .entries()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_owned();
            let n = name.strip_prefix(prefix)?.parse::<u128>().ok()?;
            Some((n, name))
        })
        .filter(|(_, name)| *name != moved_to)
        .collect();
    older.sort();
    let extra = older.len().saturating_sub(KEEP_REFUSED.saturating_sub(1));
    for (_, name) in older.into_iter().take(extra) {
        if let Err(e) = dir.remove_file(&name) {
            tracing::warn!(
                "cannot delete the old refused batch {}: {e}",
                sending.path.with_file_name(&name).display()
            );
        }
    }
    Ok(sending.path.with_file_name(moved_to))
}

/// [`Forwarder::unreadable`]'s file work (blocking).
fn quarantine_if_idle(sending: &Batch, reason: String, quarantine_after: Duration) -> ForwardError {
    let idle = sending
        .dir
        .symlink_metadata(&sending.name)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.into_std().elapsed().ok());
    if idle.is_some_and(|idle| idle >= quarantine_after) {
        let stamp = crate::platform::clock::unix_millis(std::time::SystemTime::now());
        let mut name = sending.name.as_os_str().to_owned();
        name.push(format!(".bad-{stamp}"));
        let moved = sending.sibling(&name.to_string_lossy());
        if sending
            .dir
            .rename(&sending.name, &moved.dir, &moved.name)
            .is_ok()
        {
            return ForwardError::Quarantined {
                path: sending.path.clone(),
                reason,
                moved_to: moved.path,
            };
        }
    }
    ForwardError::Unreadable {
        path: sending.path.clone(),
        reason,
    }
}

/// Runs blocking file work (renames, reads, deletes of the app's buffers)
/// on a blocking thread: on a slow SD card each can take long enough to
/// delay the pongs and heartbeats the async worker also handles.
async fn on_disk<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(format!("the file task failed: {e}"))))
}

/// The agent's loop: both buffers at start, then every [`INTERVAL`].
pub async fn run(config: SiteConfig) {
    let Some(settings) = Settings::from_config(&config) else {
        return;
    };
    let forwarder = match Forwarder::new(settings) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("analytics forwarding disabled: {e}");
            return;
        }
    };
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for kind in [Kind::VideoPlays, Kind::SponsorImpressions] {
            forward_and_log(&forwarder, kind).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_as_upstream_sends_them() {
        assert_eq!(
            acceptance(br#"{"success":true,"recorded":2}"#),
            Acceptance::Recorded(Some(2))
        );
        assert_eq!(
            acceptance(br#"{"success":true,"message":"5 impression(s) recorded"}"#),
            Acceptance::Recorded(Some(5))
        );
        assert_eq!(
            acceptance(br#"{"success":true}"#),
            Acceptance::Recorded(None)
        );
        assert_eq!(acceptance(b"  \n"), Acceptance::Recorded(None));
        assert_eq!(
            acceptance(br#"{"success":false,"error":"No valid impressions to insert"}"#),
            Acceptance::Refused("No valid impressions to insert".to_owned())
        );
        assert_eq!(
            acceptance(b"<html>\n  <body>Wi-Fi login</body></html>"),
            Acceptance::NotJson("<html> <body>Wi-Fi login</body></html>".to_owned())
        );
    }

    #[test]
    fn the_summary_says_what_was_recorded_and_skipped() {
        let d = |sent, recorded, uncounted| Delivered {
            sent,
            recorded,
            uncounted,
        };
        assert_eq!(
            summary(Kind::VideoPlays, &d(3, 3, 0)),
            "3 video plays sent to the central server, all recorded"
        );
        assert_eq!(
            summary(Kind::VideoPlays, &d(2, 0, 2)),
            "2 video plays sent to the central server: 2 accepted without a count of what it \
             recorded"
        );
        assert_eq!(
            summary(Kind::SponsorImpressions, &d(4, 1, 2)),
            "4 sponsor impressions sent to the central server: 1 recorded, 1 skipped by the \
             server (not valid for it: a site or video id that is not a UUID, or a missing date \
             or duration; it does not say which), not sent again, 2 accepted without a count of \
             what it recorded"
        );
        assert_eq!(d(3, 5, 0).skipped(), 0);
    }
}
