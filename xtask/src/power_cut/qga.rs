//! The guest agent (qemu-guest-agent) over its virtio-serial port, which
//! qemu exposes as a unix socket: how the rig runs commands in the box
//! without a network login. JSON requests, one reply each; `guest-exec`
//! starts a process, `guest-exec-status` collects its exit and output.
//!
//! The agent answers nothing until it runs, and a reply meant for an
//! earlier connection can still be queued: `sync` sends
//! `guest-sync-delimited` with a fresh id and drops every reply until that
//! id comes back (qemu's documented handshake; the `0xFF` sentinel is the
//! guest's to send, not ours).

use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A reply larger than this is refused (output is captured by qemu-ga up
/// to 16 MiB, base64 in JSON).
const MAX_REPLY: usize = 48 << 20;

pub struct Qga {
    stream: UnixStream,
    buf: Vec<u8>,
    next_id: u64,
}

/// What a command run in the guest printed and how it ended.
#[derive(Debug)]
pub struct Exec {
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
}

impl Exec {
    /// stdout when it exited 0, else an error with both streams.
    pub fn ok(self, what: &str) -> anyhow::Result<String> {
        if self.code == 0 {
            return Ok(self.stdout);
        }
        bail!(
            "{what} exited {} in the guest: {} {}",
            self.code,
            self.stdout.trim(),
            self.stderr.trim()
        )
    }
}

impl Qga {
    /// Connects to qemu's socket (once qemu made it) and waits until the
    /// guest's agent answers, at most until `deadline`.
    pub fn connect(
        socket: &Path,
        deadline: Instant,
        alive: &dyn Fn() -> bool,
    ) -> anyhow::Result<Qga> {
        let stream = loop {
            if !alive() {
                bail!("the emulator exited while the guest booted");
            }
            match UnixStream::connect(socket) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => bail!("no guest agent socket {}: {e}", socket.display()),
            }
        };
        let mut qga = Qga {
            stream,
            buf: Vec::new(),
            next_id: seed_id(),
        };
        loop {
            if !alive() {
                bail!("the emulator exited while the guest booted");
            }
            if qga.sync(Duration::from_secs(3))? {
                return Ok(qga);
            }
            if Instant::now() >= deadline {
                bail!("the guest agent did not answer before the deadline");
            }
        }
    }

    /// One handshake: true when our id came back within `wait`.
    fn sync(&mut self, wait: Duration) -> anyhow::Result<bool> {
        self.next_id = self.next_id.wrapping_add(1) % (1 << 31);
        let id = self.next_id;
        self.send(&json!({"execute": "guest-sync-delimited", "arguments": {"id": id}}))?;
        let end = Instant::now() + wait;
        while let Some(reply) = self.recv_until(end)? {
            if reply["return"] == json!(id) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn send(&mut self, request: &Value) -> anyhow::Result<()> {
        let mut line = request.to_string().into_bytes();
        line.push(b'\n');
        self.stream
            .write_all(&line)
            .context("writing to the guest agent")
    }

    /// The next JSON reply, or `None` when `end` passed first.
    fn recv_until(&mut self, end: Instant) -> anyhow::Result<Option<Value>> {
        loop {
            // The guest's delimiter (0xFF) and blank lines carry nothing.
            while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).filter(|b| *b != 0xff).collect();
                let text = String::from_utf8_lossy(&line);
                if text.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str(text.trim()) {
                    Ok(value) => return Ok(Some(value)),
                    // A line cut by a reboot of the guest: skip it.
                    Err(_) => continue,
                }
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream.set_read_timeout(Some(left))?;
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => bail!("the guest agent closed its socket"),
                Ok(n) => {
                    if self.buf.len() + n > MAX_REPLY {
                        bail!("a guest agent reply over {MAX_REPLY} bytes");
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e).context("reading from the guest agent"),
            }
        }
    }

    fn call(
        &mut self,
        command: &str,
        arguments: Value,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        self.send(&json!({"execute": command, "arguments": arguments}))?;
        let reply = self
            .recv_until(Instant::now() + timeout)?
            .with_context(|| format!("no answer to {command} within {timeout:?}"))?;
        if let Some(error) = reply.get("error") {
            bail!("{command}: {error}");
        }
        Ok(reply["return"].clone())
    }

    /// Runs `argv` in the guest (an argument vector: no shell unless the
    /// caller names one), `stdin` fed to it, and waits for it.
    pub fn exec(
        &mut self,
        argv: &[&str],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> anyhow::Result<Exec> {
        let (path, args) = argv.split_first().context("empty command")?;
        let mut arguments = json!({"path": path, "arg": args, "capture-output": true});
        if let Some(input) = stdin {
            arguments["input-data"] = json!(base64_encode(input));
        }
        let started = Instant::now();
        let pid = self.call("guest-exec", arguments, Duration::from_secs(60))?["pid"]
            .as_i64()
            .context("guest-exec returned no pid")?;
        let mut pause = Duration::from_millis(20);
        loop {
            let status = self.call(
                "guest-exec-status",
                json!({"pid": pid}),
                Duration::from_secs(60),
            )?;
            if status["exited"] == json!(true) {
                let text = |key: &str| {
                    status[key]
                        .as_str()
                        .map(|b| String::from_utf8_lossy(&base64_decode(b)).into_owned())
                        .unwrap_or_default()
                };
                let code = status["exitcode"]
                    .as_i64()
                    .or_else(|| status["signal"].as_i64().map(|s| -s))
                    .unwrap_or(-1);
                return Ok(Exec {
                    code,
                    stdout: text("out-data"),
                    stderr: text("err-data"),
                });
            }
            if started.elapsed() > timeout {
                bail!(
                    "{} did not finish in the guest within {timeout:?}",
                    argv.join(" ")
                );
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    /// Starts `argv` in the guest and does not wait for it.
    pub fn spawn(&mut self, argv: &[&str]) -> anyhow::Result<()> {
        let (path, args) = argv.split_first().context("empty command")?;
        self.call(
            "guest-exec",
            json!({"path": path, "arg": args}),
            Duration::from_secs(60),
        )?;
        Ok(())
    }
}

/// A handshake id unlikely to repeat one a previous connection left queued.
fn seed_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1)
        % (1 << 30)
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64, skipping padding and whitespace; other bytes
/// end the input (what qemu-ga sends is well formed).
pub fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' | b' ' => continue,
            _ => break,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for text in ["", "f", "fo", "foo", "foob", "fooba", "foobar"] {
            let encoded = base64_encode(text.as_bytes());
            assert_eq!(base64_decode(&encoded), text.as_bytes(), "{encoded}");
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(base64_decode(&base64_encode(&all)), all);
    }
}
