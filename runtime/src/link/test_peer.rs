//! A [`LinkHandle`] on no connection, for the unit tests of what the agent
//! says: it reads as connected, and what is emitted through it (or asked of
//! it) lands in a [`TestPeer`] that decodes it with the link's own packet
//! codec, as the frames the server would receive.

use super::packet::{self, SocketPacket};
use super::{Command, LinkHandle, LinkState};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The far end of a [`connected`] handle.
pub(crate) struct TestPeer {
    commands: mpsc::UnboundedReceiver<Command>,
    state: watch::Sender<LinkState>,
    /// Reconnects asked since the last [`TestPeer::reconnects`].
    asked: Vec<(Duration, String)>,
    /// Events emitted since the last [`TestPeer::emitted`].
    events: Vec<(String, Vec<Value>)>,
}

/// A handle that reads as connected, with the handshake's `pingInterval`
/// and `maxPayload` as given (0: none), and its peer.
pub(crate) fn connected(ping_interval_ms: u64, max_payload: u64) -> (LinkHandle, TestPeer) {
    let (commands_tx, commands) = mpsc::unbounded_channel();
    let (state, state_rx) = watch::channel(LinkState::Connected);
    let handle = LinkHandle {
        commands: commands_tx,
        state: state_rx,
        ping_interval_ms: Arc::new(AtomicU64::new(ping_interval_ms)),
        max_payload: Arc::new(AtomicU64::new(max_payload)),
    };
    let peer = TestPeer {
        commands,
        state,
        asked: Vec::new(),
        events: Vec::new(),
    };
    (handle, peer)
}

impl TestPeer {
    /// Reads every command the handle was given so far.
    fn drain(&mut self) {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Send(text) => {
                    if let Ok((_, SocketPacket::Event { name, args, .. })) =
                        packet::decode_socket(&text)
                    {
                        self.events.push((name, args));
                    }
                }
                Command::Reconnect { after, reason } => self.asked.push((after, reason)),
                Command::SendWithAck { .. } | Command::Close(_) => {}
            }
        }
    }

    /// The events emitted since the last call, in order: (name, arguments).
    pub(crate) fn emitted(&mut self) -> Vec<(String, Vec<Value>)> {
        self.drain();
        std::mem::take(&mut self.events)
    }

    /// The reconnects asked since the last call: (wait, reason).
    pub(crate) fn reconnects(&mut self) -> Vec<(Duration, String)> {
        self.drain();
        std::mem::take(&mut self.asked)
    }

    /// The link goes down (`false`: emits fail) or comes back up.
    pub(crate) fn set_connected(&self, up: bool) {
        let state = if up {
            LinkState::Connected
        } else {
            LinkState::Disconnected("test".to_owned())
        };
        let _ = self.state.send(state);
    }
}
