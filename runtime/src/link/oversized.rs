//! Messages larger than the server's `maxPayload`: bounded, and still
//! answered when they are commands.
//!
//! Why: tungstenite accepts 64 MiB messages by default, and building a
//! `serde_json::Value` costs ~80 bytes per element, so one huge command (or
//! a queued one the server re-sends at every reconnect) could crash-loop a
//! box. The transport refuses anything over [`TRANSPORT_LIMIT`]; between the
//! handshake's `maxPayload` (plus [`MARGIN`]) and that, the message is
//! skimmed — event name, command id and type, nothing else is kept — so the
//! server gets a clear error result under the command's id.

use serde::Deserialize;
use serde::de::{self, IgnoredAny, SeqAccess, Visitor};

/// What the websocket layer buffers at most for one message; beyond it the
/// connection is dropped (the id cannot be read without buffering it).
pub const TRANSPORT_LIMIT: usize = 16 << 20;
/// Allowed on top of `maxPayload` (packet framing, a server counting
/// slightly differently).
pub const MARGIN: usize = 64 << 10;
/// `maxPayload` when the handshake does not give one (upstream's 1 MB).
pub const DEFAULT_MAX_PAYLOAD: u64 = 1_000_000;

/// The largest message decoded in full, for a handshake's `maxPayload`.
pub fn message_limit(max_payload: Option<u64>) -> usize {
    let payload = usize::try_from(max_payload.unwrap_or(DEFAULT_MAX_PAYLOAD)).unwrap_or(usize::MAX);
    payload.saturating_add(MARGIN).min(TRANSPORT_LIMIT)
}

/// What can be read of an oversized Socket.IO event without keeping it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skimmed {
    pub event: String,
    pub id: Option<String>,
    pub command_type: Option<String>,
}

#[derive(Deserialize)]
struct CommandHead {
    #[serde(default)]
    id: Option<String>,
    #[serde(default, rename = "type")]
    command_type: Option<String>,
}

struct EventHead(Skimmed);

impl<'de> Deserialize<'de> for EventHead {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(HeadVisitor)
    }
}

struct HeadVisitor;

impl<'de> Visitor<'de> for HeadVisitor {
    type Value = EventHead;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a Socket.IO event array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EventHead, A::Error> {
        let event: String = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let head: Option<CommandHead> = seq.next_element().unwrap_or(None);
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        let (id, command_type) = head.map_or((None, None), |h| (h.id, h.command_type));
        Ok(EventHead(Skimmed {
            event,
            id,
            command_type,
        }))
    }
}

/// Reads the event name and the first argument's `id` / `type` of an
/// Engine.IO message frame (`42["command",{"id":…}]`), allocating only
/// those strings. `None` when the frame is not a default-namespace event.
pub fn skim(frame: &str) -> Option<Skimmed> {
    let socket = frame.strip_prefix('4')?;
    let rest = socket.strip_prefix('2')?;
    // An ack id may precede the payload; a namespace is not ours.
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    if !rest.starts_with('[') {
        return None;
    }
    let mut de = serde_json::Deserializer::from_str(rest);
    EventHead::deserialize(&mut de).ok().map(|h| h.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_of_a_huge_command_is_read_without_its_data() {
        let data = "x".repeat(3 << 20);
        let frame = format!(
            r#"42["command",{{"data":{{"blob":"{data}","list":[1,2,3]}},"id":"c-9","type":"deploy_video"}}]"#
        );
        assert_eq!(
            skim(&frame),
            Some(Skimmed {
                event: "command".to_owned(),
                id: Some("c-9".to_owned()),
                command_type: Some("deploy_video".to_owned()),
            })
        );
        assert_eq!(
            skim(r#"42["heartbeat"]"#),
            Some(Skimmed {
                event: "heartbeat".to_owned(),
                id: None,
                command_type: None,
            })
        );
        assert_eq!(skim("42/admin,[\"command\",{}]"), None);
        assert_eq!(skim("2"), None);
        assert_eq!(skim("42[\"command\",{\"id\":"), None);
    }

    #[test]
    fn limits_follow_max_payload_with_a_margin() {
        assert_eq!(message_limit(Some(1_000_000)), 1_000_000 + MARGIN);
        assert_eq!(message_limit(None), 1_000_000 + MARGIN);
        assert_eq!(message_limit(Some(u64::MAX)), TRANSPORT_LIMIT);
    }
}
