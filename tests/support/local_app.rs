//! A stand-in for the box's own web app server (upstream
//! `raspberry/server/server.js`, socket.io 4 on port 3000), written at the
//! Engine.IO frame level so the test sees what the real one does: it emits
//! `score-update` and `phase-change` to every socket as soon as it joins,
//! acknowledges nothing, and reads its socket only a moment later (a busy
//! Node event loop). It records the events it hears and how each connection
//! ended: a reset there loses what the client sent (issue 18.11).
//!
//! It also serves as a raw Socket.IO server for tests that must send frames
//! a `serde_json::Value` cannot hold (see [`RawServer`]).
#![allow(clippy::expect_used)]

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message;

/// How a connection to the stand-in ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Close handshake then end of stream.
    Clean,
    /// The TCP connection was reset or broke (the client closed with
    /// unread data, or without a close frame).
    Broken(String),
}

#[derive(Default)]
struct Log {
    events: Vec<(String, Value)>,
    ended: Vec<Ended>,
}

/// The running stand-in.
pub struct LocalApp {
    pub addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    changed: Arc<Notify>,
}

const OPEN: &str = r#"0{"sid":"standin","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;

impl LocalApp {
    pub async fn start() -> LocalApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(Log::default()));
        let changed = Arc::new(Notify::new());
        let (log2, changed2) = (log.clone(), changed.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (log, changed) = (log2.clone(), changed2.clone());
                tokio::spawn(async move {
                    let ended = serve(tcp, &log, &changed).await;
                    log.lock().expect("lock").ended.push(ended);
                    changed.notify_waiters();
                });
            }
        });
        LocalApp { addr, log, changed }
    }

    /// `http://127.0.0.1:<port>`, for LOCAL_APP_URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until `n` connections ended; returns the events heard and how
    /// each ended.
    pub async fn after_connections(
        &self,
        n: usize,
        timeout: Duration,
    ) -> (Vec<(String, Value)>, Vec<Ended>) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            {
                let log = self.log.lock().expect("lock");
                if log.ended.len() >= n {
                    return (log.events.clone(), log.ended.clone());
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("fewer than {n} connections to the local app ended within {timeout:?}");
            }
        }
    }
}

async fn serve(tcp: tokio::net::TcpStream, log: &Mutex<Log>, changed: &Notify) -> Ended {
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return Ended::Broken("websocket handshake failed".to_owned());
    };
    if ws.send(Message::text(OPEN)).await.is_err() {
        return Ended::Broken("could not send the open packet".to_owned());
    }
    let mut joined = false;
    loop {
        let frame = match ws.next().await {
            None => return Ended::Broken("end of stream without a close frame".to_owned()),
            Some(Err(e)) => return Ended::Broken(e.to_string()),
            Some(Ok(frame)) => frame,
        };
        let text = match frame {
            Message::Text(t) => t.as_str().to_owned(),
            Message::Close(_) => {
                // tungstenite answers the close; then the stream must end.
                return match ws.next().await {
                    None => Ended::Clean,
                    Some(Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed)) => {
                        Ended::Clean
                    }
                    Some(Err(e)) => Ended::Broken(e.to_string()),
                    Some(Ok(_)) => Ended::Broken("data after the close frame".to_owned()),
                };
            }
            _ => continue,
        };
        if text == "40" && !joined {
            joined = true;
            let greeting = [
                r#"40{"sid":"ns-standin"}"#,
                r#"42["score-update",{"home":0,"away":0}]"#,
                r#"42["phase-change",{"phase":"neutral"}]"#,
            ];
            for frame in greeting {
                if ws.send(Message::text(frame)).await.is_err() {
                    return Ended::Broken("could not greet".to_owned());
                }
            }
            // A busy event loop: the client's frames pile up unread.
            tokio::time::sleep(Duration::from_millis(200)).await;
        } else if let Some(json) = text.strip_prefix("42")
            && let Ok(Value::Array(mut items)) = serde_json::from_str::<Value>(json)
            && let Some(Value::String(name)) = items.first().cloned()
        {
            items.remove(0);
            let data = items.into_iter().next().unwrap_or(Value::Null);
            log.lock().expect("lock").events.push((name, data));
            changed.notify_waiters();
        }
        // "41" (namespace disconnect): like socket.io, nothing is sent back.
    }
}

/// A bare Socket.IO server for one agent: answers `authenticate`, lets the
/// test write raw event frames and read what the agent emits.
pub struct RawServer {
    pub addr: SocketAddr,
    to_agent: mpsc::UnboundedSender<String>,
    from_agent: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
}

impl RawServer {
    pub async fn start() -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (to_agent, mut outgoing) = mpsc::unbounded_channel::<String>();
        let (incoming, from_agent) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            let open = r#"0{"sid":"raw","upgrades":[],"pingInterval":300,"pingTimeout":300,"maxPayload":1000000}"#;
            if ws.send(Message::text(open)).await.is_err() {
                return;
            }
            let mut ping = tokio::time::interval(Duration::from_millis(300));
            loop {
                tokio::select! {
                    _ = ping.tick() => {
                        if ws.send(Message::text("2")).await.is_err() { return; }
                    }
                    Some(frame) = outgoing.recv() => {
                        if ws.send(Message::text(frame)).await.is_err() { return; }
                    }
                    frame = ws.next() => {
                        let Some(Ok(Message::Text(text))) = frame else { return };
                        let text = text.as_str().to_owned();
                        if text == "40" {
                            let _ = ws.send(Message::text(r#"40{"sid":"ns-raw"}"#)).await;
                        } else if text.starts_with(r#"42["authenticate""#) {
                            let _ = ws
                                .send(Message::text(r#"42["authenticated",{"message":"Authentification réussie"}]"#))
                                .await;
                        }
                        if text.starts_with("42") {
                            let _ = incoming.send(text);
                        }
                    }
                }
            }
        });
        RawServer {
            addr,
            to_agent,
            from_agent: tokio::sync::Mutex::new(from_agent),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes `frame` (an Engine.IO text frame, e.g. `42["command",…]`).
    pub fn send_raw(&self, frame: &str) {
        let _ = self.to_agent.send(frame.to_owned());
    }

    /// The next event named `event` the agent emitted, as (name, first arg).
    pub async fn next(&self, event: &str, timeout: Duration) -> Value {
        let mut rx = self.from_agent.lock().await;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let Ok(Some(text)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
                panic!("no '{event}' from the agent within {timeout:?}");
            };
            let Ok(Value::Array(items)) = serde_json::from_str::<Value>(&text[2..]) else {
                continue;
            };
            if items.first().and_then(Value::as_str) == Some(event) {
                return items.get(1).cloned().unwrap_or(Value::Null);
            }
        }
    }
}
