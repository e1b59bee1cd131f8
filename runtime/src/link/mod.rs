//! The link to the central server: a small Engine.IO v4 / Socket.IO v5
//! client (websocket transport, default namespace) and the supervisor that
//! keeps it up.
//!
//! Why our own client: rust_socketio 0.6 (last release April 2024) retries
//! ~1,500 times a second after 15 minutes offline, has no connect timeout,
//! never reports a dropped link, stays dead after a server-side disconnect
//! and needs OpenSSL. This one is a few hundred lines with a narrow API:
//! [`spawn`] gives a [`LinkHandle`] to emit with and a stream of
//! [`LinkEvent`]s.
//!
//! Guarantees: a connect attempt (TCP, TLS, websocket, Engine.IO open,
//! namespace join) is bounded by the connect timeout; a link on which the
//! server's pings stop is declared dead after `pingInterval + pingTimeout`;
//! reconnection never stops and never spins (see [`backoff`]).

pub mod backoff;
mod connection;
mod notify;
pub mod oversized;
pub mod packet;
pub mod salvage;
#[cfg(test)]
pub(crate) mod test_peer;

pub use notify::notify_once;

use backoff::{Backoff, BackoffPolicy};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// How the link behaves.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// `CENTRAL_SERVER_URL`: `http(s)://` (mapped to `ws(s)://`) or `ws(s)://`.
    pub server_url: String,
    /// Bound on one whole connect attempt.
    pub connect_timeout: Duration,
    pub backoff: BackoffPolicy,
}

impl LinkConfig {
    pub fn new(server_url: &str) -> Self {
        LinkConfig {
            server_url: server_url.to_owned(),
            connect_timeout: Duration::from_secs(10),
            backoff: BackoffPolicy::default(),
        }
    }
}

/// Whether the link is usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Connected,
    Disconnected(String),
    Closed,
}

/// What the link reports to its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    /// Joined the namespace: ready to authenticate.
    Connected,
    /// The connection ended or an attempt failed; a new attempt follows.
    Disconnected(String),
    /// A Socket.IO event from the server; answer `ack` with [`LinkHandle::ack`].
    Event {
        name: String,
        args: Vec<Value>,
        ack: Option<u64>,
    },
    /// A message over the handshake's `maxPayload` (plus a margin) was
    /// dropped unread; what could be skimmed of it, to answer a command.
    Oversized {
        bytes: usize,
        limit: usize,
        skimmed: Option<oversized::Skimmed>,
    },
    /// The server pinged us. Once two pings arrived after an emit, the server
    /// has received that emit (it pings again only after getting our pong,
    /// and TCP keeps order).
    ServerPing,
    /// An event whose JSON could not be decoded (e.g. a lone UTF-16
    /// surrogate); what could still be read of it.
    Undecodable {
        name: Option<String>,
        /// The first argument's `id` (a command's), when readable.
        id: Option<String>,
        preview: String,
        error: String,
    },
}

/// Why an emit was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("not connected to the central server")]
    NotConnected,
    #[error("the link is closed")]
    Closed,
    #[error("no acknowledgement within {0:?}")]
    AckTimeout(Duration),
    #[error(
        "the message is {bytes} bytes, more than the {limit} bytes the central server accepts (its maxPayload); it was not sent"
    )]
    TooLarge { bytes: usize, limit: usize },
}

#[derive(Debug)]
enum Command {
    Send(String),
    SendWithAck {
        name: String,
        args: Vec<Value>,
        reply: oneshot::Sender<Vec<Value>>,
    },
    Reconnect {
        after: Duration,
        reason: String,
    },
    Close(oneshot::Sender<()>),
}

/// Cheap to clone; every clone talks to the same link.
#[derive(Debug, Clone)]
pub struct LinkHandle {
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<LinkState>,
    /// The last handshake's `pingInterval` in ms (0 before any).
    ping_interval_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The last handshake's `maxPayload` in bytes (0 before any).
    max_payload: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl LinkHandle {
    /// The server's `pingInterval` from the last handshake: delivery of an
    /// emit is proven after two pings, so waits for delivery derive from it.
    pub fn ping_interval(&self) -> Option<Duration> {
        match self
            .ping_interval_ms
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// The largest message the server accepts: the last handshake's
    /// `maxPayload`, or upstream's 1,000,000 bytes before any or when the
    /// handshake has none. The server closes the connection on a bigger
    /// frame, so nothing larger may be emitted.
    pub fn max_payload(&self) -> usize {
        match self.max_payload.load(std::sync::atomic::Ordering::Relaxed) {
            0 => oversized::DEFAULT_MAX_PAYLOAD,
            bytes => bytes,
        }
        .try_into()
        .unwrap_or(usize::MAX)
    }

    /// Current state.
    pub fn state(&self) -> LinkState {
        self.state.borrow().clone()
    }

    pub fn is_connected(&self) -> bool {
        *self.state.borrow() == LinkState::Connected
    }

    /// A receiver that sees every state change.
    pub fn watch_state(&self) -> watch::Receiver<LinkState> {
        self.state.clone()
    }

    fn send(&self, command: Command) -> Result<(), LinkError> {
        self.commands.send(command).map_err(|_| LinkError::Closed)
    }

    /// Emits an event. Fails when not connected, or when the message is
    /// over the server's `maxPayload` (the server would close the
    /// connection, and the agent would send it again after reconnecting);
    /// success means "written to the connection", not "received" (see
    /// [`LinkEvent::ServerPing`]).
    pub fn emit(&self, name: &str, args: &[Value]) -> Result<(), LinkError> {
        if !self.is_connected() {
            return Err(LinkError::NotConnected);
        }
        let packet = packet::encode_event(name, args, None);
        // The Engine.IO `4` prefix counts too.
        let bytes = packet.len() + 1;
        let limit = self.max_payload();
        if bytes > limit {
            return Err(LinkError::TooLarge { bytes, limit });
        }
        self.send(Command::Send(packet))
    }

    /// Emits an event and waits for the server's acknowledgement.
    pub async fn emit_with_ack(
        &self,
        name: &str,
        args: &[Value],
        timeout: Duration,
    ) -> Result<Vec<Value>, LinkError> {
        if !self.is_connected() {
            return Err(LinkError::NotConnected);
        }
        let (reply, answer) = oneshot::channel();
        self.send(Command::SendWithAck {
            name: name.to_owned(),
            args: args.to_vec(),
            reply,
        })?;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(args)) => Ok(args),
            Ok(Err(_)) => Err(LinkError::NotConnected),
            Err(_) => Err(LinkError::AckTimeout(timeout)),
        }
    }

    /// Answers an event the server sent with an ack id.
    pub fn ack(&self, id: u64, args: &[Value]) -> Result<(), LinkError> {
        self.send(Command::Send(packet::encode_ack(id, args)))
    }

    /// Drops the current connection and waits at least `after` before the
    /// next attempt (e.g. minutes after an authentication refusal).
    pub fn reconnect_after(&self, after: Duration, reason: &str) -> Result<(), LinkError> {
        self.send(Command::Reconnect {
            after,
            reason: reason.to_owned(),
        })
    }

    /// Leaves the namespace cleanly and stops reconnecting.
    pub async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.send(Command::Close(done)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), wait).await;
        }
    }
}

/// Starts the link; it connects at once and keeps reconnecting until closed.
pub fn spawn(config: LinkConfig) -> (LinkHandle, mpsc::UnboundedReceiver<LinkEvent>) {
    let (command_tx, command_rx) = mpsc::unbounded_channel();
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    let (state_tx, state_rx) = watch::channel(LinkState::Connecting);
    let ping_interval_ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let max_payload = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    tokio::spawn(supervise(
        config,
        command_rx,
        event_tx,
        state_tx,
        (ping_interval_ms.clone(), max_payload.clone()),
    ));
    (
        LinkHandle {
            commands: command_tx,
            state: state_rx,
            ping_interval_ms,
            max_payload,
        },
        event_rx,
    )
}

/// What ended a connection.
pub(crate) enum Ended {
    /// Reconnect after the usual backoff (or at least `floor`).
    Dropped { reason: String, floor: Duration },
    /// `close()` was called.
    Closed(Option<oneshot::Sender<()>>),
}

async fn supervise(
    config: LinkConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<LinkEvent>,
    state: watch::Sender<LinkState>,
    (ping_interval_ms, max_payload): (
        std::sync::Arc<std::sync::atomic::AtomicU64>,
        std::sync::Arc<std::sync::atomic::AtomicU64>,
    ),
) {
    let mut backoff = Backoff::new(config.backoff);
    let tls = match crate::platform::tls::client_config() {
        Ok(tls) => Some(tls),
        Err(e) => {
            tracing::error!("TLS is unavailable ({e}); only http:// servers can be reached");
            None
        }
    };
    loop {
        let _ = state.send(LinkState::Connecting);
        let started = Instant::now();
        let ended = match connection::open(&config, tls.clone()).await {
            Ok(conn) => {
                ping_interval_ms.store(conn.ping_interval_ms, std::sync::atomic::Ordering::Relaxed);
                max_payload.store(conn.max_payload, std::sync::atomic::Ordering::Relaxed);
                let _ = state.send(LinkState::Connected);
                let _ = events.send(LinkEvent::Connected);
                tracing::info!("connected to {}", config.server_url);
                conn.run(&mut commands, &events).await
            }
            Err(e) => Ended::Dropped {
                reason: e,
                floor: Duration::ZERO,
            },
        };
        match ended {
            Ended::Closed(done) => {
                let _ = state.send(LinkState::Closed);
                if let Some(done) = done {
                    let _ = done.send(());
                }
                return;
            }
            Ended::Dropped { reason, floor } => {
                backoff.connection_lasted(started.elapsed());
                let delay = backoff.next_delay().max(floor);
                tracing::warn!(
                    "link to {} down: {reason}; retrying in {:.1} s",
                    config.server_url,
                    delay.as_secs_f64()
                );
                let _ = state.send(LinkState::Disconnected(reason.clone()));
                let _ = events.send(LinkEvent::Disconnected(reason));
                // Wait out the delay, still answering close() and dropping
                // emits that raced with the disconnect.
                let wake = tokio::time::sleep(delay);
                tokio::pin!(wake);
                loop {
                    tokio::select! {
                        () = &mut wake => break,
                        command = commands.recv() => match command {
                            None => return,
                            Some(Command::Close(done)) => {
                                let _ = state.send(LinkState::Closed);
                                let _ = done.send(());
                                return;
                            }
                            // E.g. an auth refusal that arrived after the
                            // server already dropped us: wait longer.
                            Some(Command::Reconnect { after, .. }) => {
                                let later = tokio::time::Instant::now() + after;
                                if later > wake.deadline() {
                                    wake.as_mut().reset(later);
                                }
                            }
                            Some(_) => {}
                        },
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
