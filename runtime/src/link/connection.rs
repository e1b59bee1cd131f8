//! One websocket connection: the bounded opening handshake, then the loop
//! that answers pings, forwards events and writes emits until it ends.

use super::oversized;
use super::packet::{self, EnginePacket, SocketPacket};
use super::{Command, Ended, LinkConfig, LinkEvent};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

pub(super) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A write that takes longer than this means the peer stopped reading.
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// `CENTRAL_SERVER_URL` → the Engine.IO websocket endpoint.
pub fn websocket_url(server_url: &str) -> Result<String, String> {
    let trimmed = server_url.trim();
    let (scheme, rest) = trimmed.split_once("://").ok_or_else(|| {
        format!("CENTRAL_SERVER_URL '{trimmed}' has no scheme (http:// or https://)")
    })?;
    let ws_scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => {
            return Err(format!(
                "CENTRAL_SERVER_URL must start with http://, https://, ws:// or wss://, not {other}://"
            ));
        }
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if host.is_empty() {
        return Err(format!("CENTRAL_SERVER_URL '{trimmed}' has no host"));
    }
    Ok(format!(
        "{ws_scheme}://{host}{path}/socket.io/?EIO=4&transport=websocket"
    ))
}

fn describe(e: &tokio_tungstenite::tungstenite::Error) -> String {
    crate::platform::tls::clock_hint(e).unwrap_or_else(|| e.to_string())
}

/// An open connection, namespace joined.
pub(crate) struct Connection {
    pub(super) ws: Ws,
    /// The handshake's `pingInterval`.
    pub(crate) ping_interval_ms: u64,
    /// The handshake's `maxPayload` (upstream's default when absent): the
    /// largest message the server accepts.
    pub(crate) max_payload: u64,
    dead_after: Duration,
    /// Largest message decoded (`maxPayload` plus a margin).
    max_message: usize,
    pending_acks: HashMap<u64, oneshot::Sender<Vec<Value>>>,
    next_ack: u64,
}

async fn next_text(ws: &mut Ws) -> Result<String, String> {
    loop {
        match ws.next().await {
            None => return Err("connection closed during the handshake".to_owned()),
            Some(Err(e)) => return Err(describe(&e)),
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(_))) => {
                return Err("server closed the connection during the handshake".to_owned());
            }
            Some(Ok(_)) => {}
        }
    }
}

pub(super) async fn write(ws: &mut Ws, text: String) -> Result<(), String> {
    match tokio::time::timeout(WRITE_TIMEOUT, ws.send(Message::text(text))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write failed: {}", describe(&e))),
        Err(_) => Err(format!(
            "the server stopped reading (write blocked for {} s)",
            WRITE_TIMEOUT.as_secs()
        )),
    }
}

/// Connects, reads the Engine.IO open packet and joins the default
/// namespace, all within the connect timeout.
pub(crate) async fn open(
    config: &LinkConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Connection, String> {
    let url = websocket_url(&config.server_url)?;
    let connector = if url.starts_with("wss://") {
        match tls {
            Some(tls) => Connector::Rustls(tls),
            None => return Err("TLS is unavailable on this box".to_owned()),
        }
    } else {
        Connector::Plain
    };
    let attempt = async {
        // The transport never buffers more than this for one message; the
        // handshake's maxPayload is checked on top (see `oversized`).
        let transport = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(oversized::TRANSPORT_LIMIT))
            .max_frame_size(Some(oversized::TRANSPORT_LIMIT));
        let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
            url.as_str(),
            Some(transport),
            false,
            Some(connector),
        )
        .await
        .map_err(|e| describe(&e))?;
        let open = loop {
            match packet::decode_engine(&next_text(&mut ws).await?) {
                Ok(EnginePacket::Open(info)) => break info,
                Ok(_) => {}
                Err(e) => return Err(format!("bad handshake from the server: {e}")),
            }
        };
        write(&mut ws, format!("4{}", packet::encode_connect(None))).await?;
        loop {
            match packet::decode_engine(&next_text(&mut ws).await?) {
                Ok(EnginePacket::Ping) => write(&mut ws, "3".to_owned()).await?,
                Ok(EnginePacket::Message(m)) => match packet::decode_socket(&m) {
                    Ok((ns, SocketPacket::Connect(_))) if ns == "/" => break,
                    Ok((ns, SocketPacket::ConnectError(v))) if ns == "/" => {
                        return Err(format!("the server refused the connection: {v}"));
                    }
                    _ => {}
                },
                Ok(EnginePacket::Close) => {
                    return Err("the server closed the connection".to_owned());
                }
                _ => {}
            }
        }
        Ok(Connection {
            ws,
            ping_interval_ms: open.ping_interval,
            max_payload: open.max_payload.unwrap_or(oversized::DEFAULT_MAX_PAYLOAD),
            dead_after: Duration::from_millis(open.ping_interval.saturating_add(open.ping_timeout)),
            max_message: oversized::message_limit(open.max_payload),
            pending_acks: HashMap::new(),
            next_ack: 0,
        })
    };
    match tokio::time::timeout(config.connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no answer from the server within {} s (connect timeout)",
            config.connect_timeout.as_secs_f64()
        )),
    }
}

fn dropped(reason: impl Into<String>) -> Ended {
    Ended::Dropped {
        reason: reason.into(),
        floor: Duration::ZERO,
    }
}

impl Connection {
    /// Runs until the connection ends or the link is closed.
    pub(crate) async fn run(
        mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        events: &mpsc::UnboundedSender<LinkEvent>,
    ) -> Ended {
        let mut deadline = Instant::now() + self.dead_after;
        loop {
            tokio::select! {
                frame = tokio::time::timeout_at(deadline, self.ws.next()) => {
                    let message = match frame {
                        Err(_) => {
                            return dropped(format!(
                                "no ping from the server for {:.1} s: link presumed dead",
                                self.dead_after.as_secs_f64()
                            ))
                        }
                        Ok(None) => return dropped("connection closed"),
                        Ok(Some(Err(e))) => return dropped(format!("connection error: {}", describe(&e))),
                        Ok(Some(Ok(message))) => message,
                    };
                    let text = match message {
                        Message::Text(t) => t,
                        Message::Close(_) => return dropped("the server closed the websocket"),
                        _ => continue,
                    };
                    if text.len() > self.max_message {
                        // Read only its name and command id; never decode it.
                        let _ = events.send(LinkEvent::Oversized {
                            bytes: text.len(),
                            limit: self.max_message,
                            skimmed: oversized::skim(text.as_str()),
                        });
                        continue;
                    }
                    match packet::decode_engine(text.as_str()) {
                        Ok(EnginePacket::Ping) => {
                            deadline = Instant::now() + self.dead_after;
                            if let Err(e) = write(&mut self.ws, "3".to_owned()).await {
                                return dropped(e);
                            }
                            let _ = events.send(LinkEvent::ServerPing);
                        }
                        Ok(EnginePacket::Message(m)) => {
                            if let Some(ended) = self.on_socket_packet(&m, events) {
                                return ended;
                            }
                        }
                        Ok(EnginePacket::Close) => return dropped("the server closed the connection"),
                        Ok(_) => {}
                        Err(e) => tracing::debug!("ignoring a malformed frame: {e}"),
                    }
                }
                command = commands.recv() => {
                    let result = match command {
                        None => return Ended::Closed(None),
                        Some(Command::Send(text)) => write(&mut self.ws, format!("4{text}")).await,
                        Some(Command::SendWithAck { name, args, reply }) => {
                            let id = self.next_ack;
                            self.next_ack = self.next_ack.wrapping_add(1);
                            self.pending_acks.insert(id, reply);
                            write(&mut self.ws, format!("4{}", packet::encode_event(&name, &args, Some(id)))).await
                        }
                        Some(Command::Reconnect { after, reason }) => {
                            self.leave().await;
                            return Ended::Dropped { reason, floor: after };
                        }
                        Some(Command::Close(done)) => {
                            self.leave().await;
                            return Ended::Closed(Some(done));
                        }
                    };
                    if let Err(e) = result {
                        return dropped(e);
                    }
                }
            }
        }
    }

    /// Handles one Socket.IO packet; `Some` when it ends the connection.
    fn on_socket_packet(
        &mut self,
        text: &str,
        events: &mpsc::UnboundedSender<LinkEvent>,
    ) -> Option<Ended> {
        let (namespace, packet) = match packet::decode_socket(text) {
            Ok(decoded) => decoded,
            // An event we cannot decode must not vanish: the session logs
            // it and answers a command whose id is readable.
            Err(e @ packet::PacketError::Json(_)) if text.starts_with('2') => {
                let start = text.find('[').unwrap_or(text.len());
                let salvaged = super::salvage::salvage(&text[start..]);
                let _ = events.send(LinkEvent::Undecodable {
                    name: salvaged.name,
                    id: salvaged.id,
                    preview: salvaged.preview,
                    error: e.to_string(),
                });
                return None;
            }
            Err(e) => {
                tracing::debug!("ignoring a malformed packet: {e}");
                return None;
            }
        };
        if namespace != "/" {
            return None;
        }
        match packet {
            SocketPacket::Event { ack, name, args } => {
                let _ = events.send(LinkEvent::Event { name, args, ack });
            }
            SocketPacket::Ack { id, args } => {
                if let Some(reply) = self.pending_acks.remove(&id) {
                    let _ = reply.send(args);
                }
            }
            SocketPacket::Disconnect => {
                return Some(dropped(
                    "the server ended the session (server-side disconnect)",
                ));
            }
            SocketPacket::ConnectError(v) => {
                return Some(dropped(format!("the server refused the session: {v}")));
            }
            SocketPacket::Connect(_) => {}
        }
        None
    }

    /// Leaves the namespace and closes the websocket, without waiting long.
    async fn leave(&mut self) {
        let _ = write(&mut self.ws, format!("4{}", packet::encode_disconnect())).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::websocket_url;

    #[test]
    fn urls_map_to_the_engine_io_endpoint() {
        assert_eq!(
            websocket_url("https://neopro-central-production.up.railway.app"),
            Ok("wss://neopro-central-production.up.railway.app/socket.io/?EIO=4&transport=websocket".to_owned())
        );
        assert_eq!(
            websocket_url("http://localhost:3001/"),
            Ok("ws://localhost:3001/socket.io/?EIO=4&transport=websocket".to_owned())
        );
        assert_eq!(
            websocket_url("http://127.0.0.1:9/base/"),
            Ok("ws://127.0.0.1:9/base/socket.io/?EIO=4&transport=websocket".to_owned())
        );
        assert!(websocket_url("ftp://x").is_err());
        assert!(websocket_url("localhost:3001").is_err());
    }
}
