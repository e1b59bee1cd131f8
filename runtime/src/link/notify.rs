//! One-shot notifications to the box's web app (`config_updated` and
//! friends): connect, emit one event, leave only once the app has taken it.
//!
//! Why not simply emit then leave: socket.io 4 runs an event's handlers two
//! `process.nextTick`s after reading it, and only if the socket is still
//! connected, while a namespace disconnect read in the same chunk takes
//! effect one tick earlier — the event is then dropped ("ignore packet
//! received after disconnection"; issue 28.1: 2 reloads for 11 changes).
//! A fixed pause only makes that less likely: a busy Node event loop reads
//! whatever arrived meanwhile in one go.
//!
//! So after the event we ask to join a namespace that does not exist. The
//! server answers that while it reads (no tick deferral), and it reads in
//! order, so when its answer reaches us the event has been read and its
//! handler queued; Node drains those ticks before it reads again, so what we
//! send next (the disconnect) can no longer overtake it. A server that never
//! answers (not socket.io) gets upstream's 1 s instead. Everything is
//! bounded by the caller's timeout.

use super::LinkConfig;
use super::backoff::BackoffPolicy;
use super::connection::{self, Connection, write};
use super::packet::{self, EnginePacket, SocketPacket};
use crate::platform::tls;
use futures_util::StreamExt;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// A namespace no web app serves: the server's refusal is the receipt.
const PROBE_NAMESPACE: &str = "/neopro-notify-probe";

/// The longest wait for that receipt, and for the close handshake (the
/// upstream Node agent keeps its socket open 1 s after emitting).
const LINGER: Duration = Duration::from_secs(1);

/// Connects, emits one event and disconnects once the app has read it, all
/// within `timeout`.
pub async fn notify_once(
    url: &str,
    event: &str,
    args: &[Value],
    timeout: Duration,
) -> Result<(), String> {
    let config = LinkConfig {
        server_url: url.to_owned(),
        connect_timeout: timeout,
        backoff: BackoffPolicy::default(),
    };
    let started = Instant::now();
    let tls = tls::client_config().ok();
    let conn = connection::open(&config, tls).await?;
    let left = timeout.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, conn.emit_and_leave(event, args)).await {
        Ok(Ok(receipt)) => {
            match receipt {
                Some(after) => tracing::debug!(
                    "{event} taken by the web app after {:.1} ms",
                    after.as_secs_f64() * 1000.0
                ),
                None => tracing::debug!("{event} sent; the web app gave no receipt"),
            }
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("no answer within {} s", timeout.as_secs_f64())),
    }
}

/// Whether a frame is the server's answer to the probe.
fn is_receipt(text: &str) -> bool {
    let Some(message) = text.strip_prefix('4') else {
        return false;
    };
    matches!(
        packet::decode_socket(message),
        Ok((ns, SocketPacket::ConnectError(_) | SocketPacket::Connect(_))) if ns == PROBE_NAMESPACE
    )
}

impl Connection {
    /// Emits the event, waits for the probe's receipt (at most [`LINGER`]),
    /// then leaves: namespace disconnect and websocket close handshake,
    /// reading until the server's close so nothing is left unread (unread
    /// frames make the kernel reset the connection, issue 18.11). Returns
    /// how long the receipt took, when one came.
    pub(super) async fn emit_and_leave(
        mut self,
        name: &str,
        args: &[Value],
    ) -> Result<Option<Duration>, String> {
        let sent = Instant::now();
        write(
            &mut self.ws,
            format!("4{}", packet::encode_event(name, args, None)),
        )
        .await?;
        write(
            &mut self.ws,
            format!("4{}", packet::encode_connect_to(PROBE_NAMESPACE)),
        )
        .await?;
        let deadline = sent + LINGER;
        let mut receipt = None;
        while receipt.is_none() {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => break,
                // The server closed: it read what we sent before.
                Ok(None | Some(Err(_))) => return Ok(None),
                Ok(Some(Ok(Message::Text(t)))) => match packet::decode_engine(t.as_str()) {
                    Ok(EnginePacket::Ping) => {
                        let _ = write(&mut self.ws, "3".to_owned()).await;
                    }
                    _ if is_receipt(t.as_str()) => receipt = Some(sent.elapsed()),
                    _ => {}
                },
                Ok(Some(Ok(_))) => {}
            }
        }
        // A server with dynamic namespaces may have let us in: leave it too.
        let _ = write(
            &mut self.ws,
            format!("4{}", packet::encode_disconnect_from(PROBE_NAMESPACE)),
        )
        .await;
        let _ = write(&mut self.ws, format!("4{}", packet::encode_disconnect())).await;
        let closing = async {
            let _ = futures_util::SinkExt::close(&mut self.ws).await;
            while let Some(Ok(_)) = self.ws.next().await {}
        };
        let _ = tokio::time::timeout(LINGER, closing).await;
        Ok(receipt)
    }
}

#[cfg(test)]
mod tests {
    use super::is_receipt;

    #[test]
    fn only_the_probe_namespace_answer_is_a_receipt() {
        assert!(is_receipt(
            r#"44/neopro-notify-probe,{"message":"Invalid namespace"}"#
        ));
        assert!(is_receipt(r#"40/neopro-notify-probe,{"sid":"x"}"#));
        assert!(!is_receipt(r#"42["score-update",{}]"#));
        assert!(!is_receipt(r#"44{"message":"x"}"#));
        assert!(!is_receipt("2"));
    }
}
