//! A tiny HTTP/1.1 file server on 127.0.0.1 with injectable faults, for
//! download tests. One request per connection; records each Range header.
#![allow(clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

/// How the server misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Honours `Range` with a 206.
    None,
    /// Always answers 200 with the whole body.
    IgnoreRange,
    /// The first response announces the full length, sends `n` bytes and
    /// hangs up; later requests behave.
    CutFirstAfter(usize),
    /// Answers this status, empty body.
    Status(u16),
    /// 200 with no Content-Length, body until close.
    NoLength,
    /// Announces this many bytes, sends none.
    Announce(u64),
    /// Sends the body slowly: `chunk` bytes then a pause of `pause_ms`.
    Slow { chunk: usize, pause_ms: u64 },
}

pub struct FileServer {
    pub addr: SocketAddr,
    ranges: Arc<Mutex<Vec<Option<String>>>>,
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        206 => "Partial Content",
        404 => "Not Found",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

impl FileServer {
    pub fn start(body: Vec<u8>, fault: Fault) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let ranges = Arc::new(Mutex::new(Vec::new()));
        let seen = ranges.clone();
        std::thread::spawn(move || {
            for (served, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut range = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case("range")
                    {
                        range = Some(v.trim().to_owned());
                    }
                }
                seen.lock().expect("lock").push(range.clone());
                let start: usize = range
                    .as_deref()
                    .and_then(|r| r.strip_prefix("bytes="))
                    .and_then(|r| r.trim_end_matches('-').parse().ok())
                    .unwrap_or(0);
                let len = body.len();
                let _ = match fault {
                    Fault::Status(code) => write!(
                        stream,
                        "HTTP/1.1 {code} {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        reason(code)
                    ),
                    Fault::NoLength => write!(stream, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                        .and_then(|()| stream.write_all(&body)),
                    Fault::Announce(n) => write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n"
                    ),
                    Fault::Slow { chunk, pause_ms } => write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
                    )
                    .and_then(|()| {
                        for part in body.chunks(chunk.max(1)) {
                            stream.write_all(part)?;
                            stream.flush()?;
                            std::thread::sleep(std::time::Duration::from_millis(pause_ms));
                        }
                        Ok(())
                    }),
                    Fault::CutFirstAfter(n) if served == 0 => write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
                    )
                    .and_then(|()| stream.write_all(&body[..n.min(len)])),
                    Fault::None | Fault::CutFirstAfter(_) if start > 0 && start < len => write!(
                        stream,
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{len}\r\nConnection: close\r\n\r\n",
                        len - start,
                        len - 1
                    )
                    .and_then(|()| stream.write_all(&body[start..])),
                    _ => write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
                    )
                    .and_then(|()| stream.write_all(&body)),
                };
                let _ = stream.flush();
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        });
        FileServer { addr, ranges }
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }

    /// The Range header of each request so far.
    pub fn ranges(&self) -> Vec<Option<String>> {
        self.ranges.lock().expect("lock").clone()
    }
}
