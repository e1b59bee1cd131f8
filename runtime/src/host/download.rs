//! `download`: streaming HTTP(S) downloads into a root, verified while they
//! are written, resumable, and never visible under their final name until
//! complete and verified.
//!
//! Disk rule: a download is refused before writing when the bytes still to
//! come plus a reserve of 5 % of the filesystem would not fit in the space
//! available, so a full disk can never take the box's configuration or logs
//! down with it.

use super::bindings::neopro::agent::download::{Host, Outcome, Request};
use super::progress::parse_detail;
use super::roots::{io_error, relative_file};
use super::{HostState, WitError};
use crate::host::grants::Grant;
use crate::manifest::{Access, DownloadGrant, RootName};
use crate::store::chunk_writer::{ChunkWriteError, ChunkWriter};
use cap_std::fs::{Dir, OpenOptions};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

/// The `download` capability's state.
#[derive(Debug)]
pub struct DownloadHost {
    /// MAX_DOWNLOAD_SIZE: no download may be larger, whatever the grant.
    pub max_bytes: u64,
}

impl DownloadHost {
    pub fn from_config(config: &crate::config::SiteConfig) -> Self {
        DownloadHost {
            max_bytes: config.max_download_size,
        }
    }
}

/// Attempts per download (network errors and 5xx answers are retried).
const ATTEMPTS: u32 = 4;
/// First retry delay; doubles each time.
const RETRY_BASE: Duration = Duration::from_millis(500);
/// No byte for this long: the transfer is considered stalled.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Share of the filesystem kept free.
const RESERVE_PERCENT: u64 = 5;

/// How one attempt failed.
enum AttemptError {
    /// Worth another attempt (network error, 5xx, stall).
    Retry(String),
    /// Final.
    Fatal(WitError),
}

impl HostState {
    fn download_limit(&self, asked: Option<u64>) -> Result<u64, WitError> {
        let grant = self.call.manifest.grants.download.as_ref().ok_or_else(|| {
            WitError::NotPermitted(format!(
                "component '{}' lacks the grant download",
                self.call.manifest.name
            ))
        })?;
        let mut limit = grant.max_bytes.min(self.call.services.download.max_bytes);
        if let Some(asked) = asked {
            limit = limit.min(asked);
        }
        Ok(limit)
    }
}

pub(crate) fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, WitError> {
    match tokio::runtime::Handle::try_current() {
        // Host calls run on a blocking thread of the agent's runtime.
        Ok(handle) => Ok(handle.block_on(future)),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(future))
            .map_err(|e| WitError::Failed(format!("cannot start the downloader: {e}"))),
    }
}

/// The HTTP client of one download; redirects are followed only within
/// `grant`'s hosts (any host when `None`) and never from https to http.
fn client(grant: Option<&DownloadGrant>) -> Result<reqwest::Client, WitError> {
    let tls = crate::platform::tls::client_config()
        .map_err(|e| WitError::Failed(format!("TLS unavailable: {e}")))?;
    reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .redirect(super::redirects::policy(grant.cloned()))
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(STALL_TIMEOUT)
        .build()
        .map_err(|e| WitError::Failed(format!("cannot create the HTTP client: {e}")))
}

/// Free bytes for the agent and the filesystem's size, where `dir` lives.
fn disk_space(dir: &Path) -> Option<(u64, u64)> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some((s.f_bavail * s.f_frsize, s.f_blocks * s.f_frsize))
}

/// A progress detail may carry `"progressRange": [low, high]`: the download's
/// fraction is then reported within that range of the command's progress
/// (an update downloads between 5 and 35 %) instead of 0..=99. The key is
/// not sent.
const PROGRESS_RANGE_KEY: &str = "progressRange";

fn progress_range(detail: &serde_json::Map<String, serde_json::Value>) -> (u8, u8) {
    let bound = |i: usize| {
        detail
            .get(PROGRESS_RANGE_KEY)
            .and_then(|r| r.get(i))
            .and_then(serde_json::Value::as_u64)
            .map(|v| v.min(99) as u8)
    };
    match (bound(0), bound(1)) {
        (Some(low), Some(high)) if low <= high => (low, high),
        _ => (0, 99),
    }
}

/// The disk-full message, before and while writing.
fn disk_full(still: u64, reserve: u64, avail: u64) -> WitError {
    WitError::TooLarge(format!(
        "not enough disk space: the download needs {} plus a reserve of {} (5 % of the disk), only {} free",
        mib(still),
        mib(reserve),
        mib(avail)
    ))
}

/// How often the free space is checked while a download is written (a
/// server that announces no length, or lies, must not fill the disk).
const SPACE_CHECK_EVERY: u64 = 1 << 20;

/// `bytes */<total>` of a 416 answer.
fn unsatisfied_range_total(header: Option<&reqwest::header::HeaderValue>) -> Option<u64> {
    header?
        .to_str()
        .ok()?
        .strip_prefix("bytes */")?
        .trim()
        .parse()
        .ok()
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// `bytes <start>-<end>/<total>` must start where we asked.
fn content_range_start(header: Option<&reqwest::header::HeaderValue>) -> Option<u64> {
    let text = header?.to_str().ok()?;
    let range = text.strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

/// Free bytes and filesystem size where a download is written; a test
/// swaps in a disk that fills up.
type SpaceProbe = fn(&Path) -> Option<(u64, u64)>;

struct Target<'a> {
    dir: &'a Dir,
    host_dir: &'a Path,
    partial: &'a str,
    /// The agent's own folder (staging, its component downloads): the
    /// partial file is 0600 from its creation, and one it did not make
    /// alone is not resumed.
    private: bool,
    space: SpaceProbe,
}

impl Target<'_> {
    fn partial_len(&self) -> u64 {
        self.dir
            .metadata(self.partial)
            .map(|m| m.len())
            .unwrap_or(0)
    }

    fn source_file(&self) -> String {
        format!("{}.source", self.partial)
    }

    fn discard(&self) {
        let _ = self.dir.remove_file(self.partial);
        let _ = self.dir.remove_file(self.source_file());
    }

    /// A partial file is resumed only for the download that started it:
    /// its URL and expected checksum are kept beside it, and a partial left
    /// by another download of the same name (or by an older agent, with no
    /// record) is discarded instead of having this file's tail glued on.
    fn claim(&self, url: &str, expected: Option<&str>) -> Result<(), WitError> {
        let source = format!("{url}\n{}\n", expected.unwrap_or("-"));
        let mut recorded = self.dir.read_to_string(self.source_file()).ok();
        if self.private && !self.partial_is_private() {
            // Someone else could have written into it: start over.
            recorded = None;
        }
        if self.partial_len() > 0 && recorded.as_deref() != Some(source.as_str()) {
            tracing::info!("discarding a partial download left by another transfer of {url}");
            self.discard();
        }
        if recorded.as_deref() != Some(source.as_str()) {
            self.dir
                .write(self.source_file(), source.as_bytes())
                .map_err(|e| WitError::Io(format!("cannot start the download: {e}")))?;
        }
        Ok(())
    }

    fn partial_is_private(&self) -> bool {
        match self.dir.symlink_metadata(self.partial) {
            Ok(meta) => {
                use cap_std::fs::{MetadataExt, PermissionsExt};
                meta.is_file()
                    && meta.permissions().mode() & 0o022 == 0
                    && (meta.uid() == rustix::process::geteuid().as_raw() || meta.uid() == 0)
            }
            Err(_) => true,
        }
    }

    fn open_partial(&self) -> std::io::Result<cap_std::fs::File> {
        use cap_std::fs::OpenOptionsExt;
        let mut options = OpenOptions::new();
        options.create(true).append(true).read(true);
        if self.private {
            options.mode(crate::store::private_dir::FILE_MODE);
        }
        self.dir.open_with(self.partial, &options)
    }

    /// The disk rule while writing: with `still` bytes to come (0 when the
    /// server did not say) and `queued` received but not written yet, is
    /// the reserve still free?
    fn space_error(&self, still: u64, queued: u64) -> Option<WitError> {
        let (avail, size) = (self.space)(self.host_dir)?;
        let avail = avail.saturating_sub(queued);
        let reserve = size / 100 * RESERVE_PERCENT;
        (still.saturating_add(reserve) > avail).then(|| disk_full(still, reserve, avail))
    }

    /// The partial became the final file: its record goes.
    fn finished(&self) {
        let _ = self.dir.remove_file(self.source_file());
    }
}

/// Receives (bytes so far, bytes announced) while a download runs.
type Report<'a> = &'a mut (dyn FnMut(u64, u64) + Send);

async fn attempt(
    client: &reqwest::Client,
    url: &str,
    target: &Target<'_>,
    limit: u64,
    expected: Option<&str>,
    report: Report<'_>,
) -> Result<(u64, String), AttemptError> {
    let fatal = |e: WitError| AttemptError::Fatal(e);
    let mut have = target.partial_len();
    let mut get = client.get(url);
    if have > 0 {
        get = get.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let mut response = get
        .send()
        .await
        .map_err(|e| match super::redirects::refused(&e) {
            Some(why) => AttemptError::Fatal(WitError::NotPermitted(format!(
                "download of {url} refused: {why}"
            ))),
            None => AttemptError::Retry(format!("cannot reach the server: {e}")),
        })?;
    let status = response.status();
    if status.as_u16() == 206 && have > 0 {
        if content_range_start(response.headers().get(reqwest::header::CONTENT_RANGE)) != Some(have)
        {
            // The server answered another range: start over.
            target.discard();
            return Err(AttemptError::Retry(
                "the server resumed at the wrong offset; restarting from zero".to_owned(),
            ));
        }
    } else if status.is_success() {
        if have > 0 {
            tracing::info!("server ignored the Range request: downloading {url} from zero");
            target.discard();
            have = 0;
        }
    } else if status.is_server_error() || status.as_u16() == 429 {
        return Err(AttemptError::Retry(format!(
            "the server answered HTTP {status}"
        )));
    } else {
        if status.as_u16() == 416 && have > 0 {
            // The partial is already whole (a cut after the last byte, or a
            // restart before the rename): the server has nothing more to send.
            // That is a finished download when its size is the file's and
            // its sha256 the expected one.
            let total =
                unsatisfied_range_total(response.headers().get(reqwest::header::CONTENT_RANGE));
            if total.is_none_or(|t| t == have) {
                let sha = hash_partial(target).map_err(fatal)?;
                if expected.is_some_and(|e| e == sha) || (expected.is_none() && total == Some(have))
                {
                    tracing::info!("{url}: the partial download was already complete");
                    return Ok((have, sha));
                }
            }
        }
        if status.as_u16() == 416 {
            target.discard();
        }
        return Err(fatal(WitError::Failed(format!(
            "download of {url} failed: the server answered HTTP {status}"
        ))));
    }
    let announced = response.content_length().map(|n| n.saturating_add(have));
    if let Some(total) = announced
        && total > limit
    {
        target.discard();
        return Err(fatal(WitError::TooLarge(format!(
            "the file is {total} bytes, more than the {limit} bytes allowed"
        ))));
    }
    if let Some(error) = target.space_error(announced.map_or(0, |t| t.saturating_sub(have)), 0) {
        return Err(fatal(error));
    }
    let file = target
        .open_partial()
        .map_err(|e| fatal(WitError::Io(format!("cannot write the download: {e}"))))?;
    let mut hasher = Sha256::new();
    if have > 0 {
        // Hash what is already there, then continue the same hash.
        hash_into(target, &mut hasher).map_err(fatal)?;
    }
    // Network reads and hashing here, disk writes on the writer's thread.
    let synced = file
        .try_clone()
        .map_err(|e| fatal(WitError::Io(format!("cannot write the download: {e}"))))?;
    let mut writer = ChunkWriter::start(file)
        .map_err(|e| fatal(WitError::Io(format!("cannot write the download: {e}"))))?;
    let write_failed = |error: ChunkWriteError, received: u64| {
        if error.kind() == std::io::ErrorKind::StorageFull {
            target.discard();
            let avail = (target.space)(target.host_dir).map_or(0, |(a, _)| a);
            return fatal(disk_full(
                announced.map_or(0, |t| t.saturating_sub(received)),
                0,
                avail,
            ));
        }
        fatal(WitError::Io(format!("cannot write the download: {error}")))
    };
    let mut received = have;
    let mut next_space_check = have.saturating_add(SPACE_CHECK_EVERY);
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                // What arrived is kept for the next attempt to resume.
                if let Err(error) = writer.finish() {
                    return Err(write_failed(error, received));
                }
                let _ = synced.sync_all();
                return Err(AttemptError::Retry(format!(
                    "the transfer broke after {received} bytes: {e}"
                )));
            }
        };
        received += chunk.len() as u64;
        if received > limit {
            drop(writer);
            target.discard();
            return Err(fatal(WitError::TooLarge(format!(
                "the server sent more than the {limit} bytes allowed"
            ))));
        }
        hasher.update(&chunk);
        if !writer.push(chunk) {
            return Err(match writer.finish() {
                Err(error) => write_failed(error, received),
                Ok(()) => fatal(WitError::Io(
                    "cannot write the download: the writer stopped".to_owned(),
                )),
            });
        }
        if received >= next_space_check {
            next_space_check = received.saturating_add(SPACE_CHECK_EVERY);
            // The announced length was checked up front; what is checked
            // here is that the reserve is still free while bytes arrive (a
            // chunked answer announces nothing; other writers share the disk).
            // Bytes still queued for the writer are not on the disk yet.
            let still = announced.map_or(0, |t| t.saturating_sub(received));
            if let Some(error) = target.space_error(still, writer.queued()) {
                drop(writer);
                target.discard();
                return Err(fatal(error));
            }
        }
        if let Some(total) = announced {
            report(received, total);
        }
    }
    if let Err(error) = writer.finish() {
        return Err(write_failed(error, received));
    }
    if let Some(total) = announced
        && received < total
    {
        let _ = synced.sync_all();
        return Err(AttemptError::Retry(format!(
            "the transfer ended after {received} of {total} bytes"
        )));
    }
    crate::store::atomic::count_fsync();
    synced
        .sync_all()
        .map_err(|e| fatal(WitError::Io(format!("cannot flush the download: {e}"))))?;
    Ok((received, hex::encode(hasher.finalize())))
}

fn hash_into(target: &Target<'_>, hasher: &mut Sha256) -> Result<(), WitError> {
    let mut existing = target
        .dir
        .open(target.partial)
        .map_err(|e| WitError::Io(e.to_string()))?;
    existing
        .seek(SeekFrom::Start(0))
        .map_err(|e| WitError::Io(e.to_string()))?;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = existing
            .read(&mut buf)
            .map_err(|e| WitError::Io(e.to_string()))?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
    }
}

fn hash_partial(target: &Target<'_>) -> Result<String, WitError> {
    let mut hasher = Sha256::new();
    hash_into(target, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

pub(crate) fn normalise_sha256(text: &str) -> Result<String, WitError> {
    let hex = text
        .trim()
        .trim_start_matches("sha256:")
        .trim_start_matches("sha256-")
        .to_ascii_lowercase();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(WitError::InvalidInput(format!(
            "'{text}' is not a sha256 checksum (64 hex digits)"
        )))
    }
}

impl Host for HostState {
    fn fetch(&mut self, request: Request) -> Result<Outcome, WitError> {
        let limit = self.download_limit(request.max_bytes)?;
        let root = RootName::from(request.root);
        self.call.check(Grant::Root(root, Access::ReadWrite))?;
        let scheme_ok = request.url.starts_with("http://") || request.url.starts_with("https://");
        if !scheme_ok {
            return Err(WitError::InvalidInput(format!(
                "only http:// and https:// downloads are allowed, not '{}'",
                request.url
            )));
        }
        let host = reqwest::Url::parse(&request.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .ok_or_else(|| {
                WitError::InvalidInput(format!("'{}' is not a URL with a host name", request.url))
            })?;
        self.call.check(Grant::Download { host: &host })?;
        let expected = request
            .sha256
            .as_deref()
            .map(normalise_sha256)
            .transpose()?;
        let progress = match &request.progress_detail {
            Some(detail) => Some((self.progress_event()?, parse_detail(detail)?)),
            None => None,
        };
        let rel = relative_file(&request.path)?;
        let root_dir = self.call.services.roots.open(root, true)?;
        let (parent_rel, name) = match (rel.parent(), rel.file_name()) {
            (Some(p), Some(n)) => (p.to_path_buf(), n.to_string_lossy().into_owned()),
            _ => {
                return Err(WitError::InvalidInput(format!(
                    "bad path '{}'",
                    request.path
                )));
            }
        };
        let dir = if parent_rel.as_os_str().is_empty() {
            root_dir
        } else {
            root_dir
                .open_dir(&parent_rel)
                .map_err(|e| io_error(root, &parent_rel.display().to_string(), &e))?
        };
        if dir.symlink_metadata(&name).is_ok_and(|m| m.is_dir()) {
            return Err(WitError::InvalidInput(format!(
                "{root}/{} is a directory",
                request.path
            )));
        }
        let host_dir = self.call.services.roots.path(root).join(&parent_rel);
        let partial = format!(".{name}.partial");
        let target = Target {
            dir: &dir,
            host_dir: &host_dir,
            partial: &partial,
            private: root.is_private(),
            space: disk_space,
        };
        let deadline = self.call.deadline;
        // Every redirect is checked against the same grant as the URL.
        let grant = self.call.manifest.grants.download.clone();
        // Called for every network read: only a new percentage builds a
        // report (the detail is cloned for it).
        let mut last_percent = None;
        let mut report = |received: u64, total: u64| {
            if let Some((event, detail)) = &progress {
                let (low, high) = progress_range(detail);
                let span = u64::from(high - low);
                let percent = low + (received.saturating_mul(span) / total.max(1)).min(span) as u8;
                if last_percent == Some(percent) {
                    return;
                }
                last_percent = Some(percent);
                let mut detail = detail.clone();
                detail.remove(PROGRESS_RANGE_KEY);
                self.emit_progress(event, percent, detail);
            }
        };
        let (bytes, sha256) = fetch_into(
            &request.url,
            grant.as_ref(),
            &target,
            limit,
            expected.as_deref(),
            deadline,
            &mut report,
        )?;
        dir.rename(&partial, &dir, &name)
            .map_err(|e| io_error(root, &request.path, &e))?;
        if let Ok(d) = dir.open(".") {
            let _ = d.sync_all();
        }
        Ok(Outcome { bytes, sha256 })
    }
}

/// Downloads `url` into `target`'s partial file with retries, resume and the
/// size and disk rules, and checks the sha256. Blocking. On success the
/// partial file holds exactly the verified bytes; the caller renames it.
fn fetch_into(
    url: &str,
    grant: Option<&DownloadGrant>,
    target: &Target<'_>,
    limit: u64,
    expected: Option<&str>,
    deadline: Instant,
    report: Report<'_>,
) -> Result<(u64, String), WitError> {
    let client = client(grant)?;
    target.claim(url, expected)?;
    let budget = deadline.saturating_duration_since(Instant::now());
    let transfer = async {
        let mut last = String::new();
        for attempt_no in 0..ATTEMPTS {
            if attempt_no > 0 {
                tokio::time::sleep(RETRY_BASE * (1 << (attempt_no - 1))).await;
            }
            match attempt(&client, url, target, limit, expected, &mut *report).await {
                Ok(done) => return Ok(done),
                Err(AttemptError::Fatal(e)) => return Err(e),
                Err(AttemptError::Retry(why)) => {
                    tracing::warn!("download of {url} (attempt {}): {why}", attempt_no + 1);
                    last = why;
                }
            }
        }
        Err(WitError::Failed(format!(
            "download of {url} failed after {ATTEMPTS} attempts: {last}"
        )))
    };
    // Reads time out on their own (a stall), but a server dripping a byte
    // now and then would not: the whole transfer gets the command's time.
    let result: Result<(u64, String), WitError> =
        block_on(async { tokio::time::timeout(budget, transfer).await })?.unwrap_or_else(|_| {
            Err(WitError::Timeout(format!(
                "the download of {url} did not finish within the {} s it had; it will resume from where it stopped",
                budget.as_secs()
            )))
        });
    if result.is_err() && target.partial_len() == 0 {
        // Nothing to resume: leave no record behind either.
        target.discard();
    }
    let (bytes, sha256) = result?;
    if let Some(expected) = expected
        && expected != sha256
    {
        target.discard();
        return Err(WitError::ChecksumMismatch(format!(
            "Checksum mismatch: expected {expected}, got {sha256}"
        )));
    }
    target.finished();
    Ok((bytes, sha256))
}

/// A download made by the agent itself (not on behalf of a component), into
/// one of its own folders: `dir/name`, never visible there before it is
/// complete and matches `sha256`. Blocking.
pub fn download_file(
    url: &str,
    dir: &Path,
    name: &str,
    limit: u64,
    sha256: &str,
    budget: Duration,
) -> Result<Outcome, WitError> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(WitError::InvalidInput(format!(
            "only http:// and https:// downloads are allowed, not '{url}'"
        )));
    }
    let expected = normalise_sha256(sha256)?;
    let handle = Dir::open_ambient_dir(dir, cap_std::ambient_authority())
        .map_err(|e| WitError::Io(format!("cannot open {}: {e}", dir.display())))?;
    let partial = format!(".{name}.partial");
    let target = Target {
        dir: &handle,
        host_dir: dir,
        partial: &partial,
        private: true,
        space: disk_space,
    };
    // The agent's own download (the server's URL): any host, no downgrade.
    let (bytes, sha256) = fetch_into(
        url,
        None,
        &target,
        limit,
        Some(&expected),
        Instant::now() + budget,
        &mut |_, _| {},
    )?;
    handle.rename(&partial, &handle, name).map_err(|e| {
        WitError::Io(format!(
            "cannot keep the download in {}: {e}",
            dir.display()
        ))
    })?;
    Ok(Outcome { bytes, sha256 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    /// Serves every request with `answer(range header)` (head, body).
    fn serve(answer: fn(Option<&str>) -> (String, Vec<u8>)) -> String {
        let Ok(listener) = TcpListener::bind("127.0.0.1:0") else {
            return String::new();
        };
        let url = listener
            .local_addr()
            .map(|a| format!("http://{a}/file"))
            .unwrap_or_default();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Ok(clone) = stream.try_clone() else {
                    continue;
                };
                let mut reader = BufReader::new(clone);
                let mut range = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line
                        .strip_prefix("range: ")
                        .or(line.strip_prefix("Range: "))
                    {
                        range = Some(v.trim().to_owned());
                    }
                }
                let (head, body) = answer(range.as_deref());
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        });
        url
    }

    fn body() -> Vec<u8> {
        (0..3u32 << 20).map(|i| (i % 251) as u8).collect()
    }

    /// A 2.5 MiB disk of 20 MiB (reserve 1 MiB) holding only this folder.
    fn small_disk(dir: &Path) -> Option<(u64, u64)> {
        let used: u64 = std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        Some((((5u64 << 20) / 2).saturating_sub(used), 20 << 20))
    }

    fn target<'a>(dir: &'a Dir, host: &'a Path, space: SpaceProbe) -> Target<'a> {
        Target {
            dir,
            host_dir: host,
            partial: ".file.partial",
            private: false,
            space,
        }
    }

    #[test]
    fn a_chunked_download_stops_at_the_reserve_and_leaves_no_partial()
    -> Result<(), Box<dyn std::error::Error>> {
        // No Content-Length: nothing to check up front.
        let url = serve(|_| {
            (
                "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_owned(),
                body(),
            )
        });
        let tmp = tempfile::tempdir()?;
        let dir = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority())?;
        let target = target(&dir, tmp.path(), small_disk);
        let result = fetch_into(
            &url,
            None,
            &target,
            u64::MAX,
            None,
            Instant::now() + Duration::from_secs(30),
            &mut |_, _| {},
        );
        let Err(WitError::TooLarge(message)) = result else {
            panic!("disk full expected, got {result:?}");
        };
        assert!(
            message.starts_with("not enough disk space: the download needs 0.0 MiB plus a reserve of 1.0 MiB (5 % of the disk), only "),
            "{message}"
        );
        assert_eq!(
            std::fs::read_dir(tmp.path())?.count(),
            0,
            "the partial and its record are removed"
        );
        Ok(())
    }

    fn complete_partial(dir: &Dir, url: &str, bytes: &[u8]) -> std::io::Result<String> {
        let sha = hex::encode(Sha256::digest(bytes));
        dir.write(".file.partial", bytes)?;
        dir.write(".file.partial.source", format!("{url}\n{sha}\n"))?;
        Ok(sha)
    }

    fn whole_range(range: Option<&str>) -> (String, Vec<u8>) {
        match range {
            Some(_) => (
                format!(
                    "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    3u32 << 20
                ),
                Vec::new(),
            ),
            None => (
                "HTTP/1.1 500 Unexpected\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned(),
                Vec::new(),
            ),
        }
    }

    #[test]
    fn a_416_for_a_complete_matching_partial_is_a_finished_download()
    -> Result<(), Box<dyn std::error::Error>> {
        let url = serve(whole_range);
        let tmp = tempfile::tempdir()?;
        let dir = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority())?;
        let sha = complete_partial(&dir, &url, &body())?;
        let target = target(&dir, tmp.path(), disk_space);
        let (bytes, got) = fetch_into(
            &url,
            None,
            &target,
            u64::MAX,
            Some(&sha),
            Instant::now() + Duration::from_secs(30),
            &mut |_, _| {},
        )?;
        assert_eq!((bytes, got), (3 << 20, sha));
        assert_eq!(std::fs::read(tmp.path().join(".file.partial"))?, body());
        Ok(())
    }

    #[test]
    fn a_416_for_a_partial_of_other_bytes_fails_and_removes_it()
    -> Result<(), Box<dyn std::error::Error>> {
        let url = serve(whole_range);
        let tmp = tempfile::tempdir()?;
        let dir = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority())?;
        let mut other = body();
        other[10] ^= 1;
        let _ = complete_partial(&dir, &url, &other)?;
        let expected = hex::encode(Sha256::digest(body()));
        dir.write(".file.partial.source", format!("{url}\n{expected}\n"))?;
        let target = target(&dir, tmp.path(), disk_space);
        let result = fetch_into(
            &url,
            None,
            &target,
            u64::MAX,
            Some(&expected),
            Instant::now() + Duration::from_secs(30),
            &mut |_, _| {},
        );
        let Err(WitError::Failed(message)) = result else {
            panic!("failure expected, got {result:?}");
        };
        assert!(
            message.ends_with("the server answered HTTP 416 Range Not Satisfiable"),
            "{message}"
        );
        assert!(!tmp.path().join(".file.partial").exists());
        Ok(())
    }

    /// A server on 127.0.0.1 that answers every request with a redirect to
    /// `to`, and counts the requests it got.
    fn redirector(
        to: String,
    ) -> std::io::Result<(String, std::sync::Arc<std::sync::atomic::AtomicUsize>)> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}/file", listener.local_addr()?);
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Ok(clone) = stream.try_clone() else {
                    continue;
                };
                let mut reader = BufReader::new(clone);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = stream.write_all(
                    format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                );
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        });
        Ok((url, hits))
    }

    #[test]
    fn a_redirect_to_a_host_outside_the_grant_is_not_followed()
    -> Result<(), Box<dyn std::error::Error>> {
        // The second server, on the same machine but named "localhost": a
        // host the grant (127.0.0.1 only) does not name.
        let (lan, lan_hits) = redirector("http://127.0.0.1:9/never".to_owned())?;
        let lan_port = reqwest::Url::parse(&lan)?.port().ok_or("port")?;
        let (first, first_hits) = redirector(format!("http://localhost:{lan_port}/file"))?;
        let grant = DownloadGrant {
            max_bytes: 1 << 20,
            hosts: vec!["127.0.0.1".to_owned()],
        };
        let tmp = tempfile::tempdir()?;
        let dir = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority())?;
        let target = target(&dir, tmp.path(), disk_space);
        let result = fetch_into(
            &first,
            Some(&grant),
            &target,
            1 << 20,
            None,
            Instant::now() + Duration::from_secs(30),
            &mut |_, _| {},
        );
        let Err(WitError::NotPermitted(message)) = result else {
            return Err(format!("refusal expected, got {result:?}").into());
        };
        assert_eq!(
            message,
            format!(
                "download of {first} refused: a redirect to http://localhost:{lan_port}/file leaves the hosts the component may download from ('localhost' is not in grants.download.hosts)"
            )
        );
        // One request to the first server (no retries), none to the other.
        assert_eq!(first_hits.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(lan_hits.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert!(
            std::fs::read_dir(tmp.path())?.next().is_none(),
            "nothing left on disk"
        );
        Ok(())
    }
}
