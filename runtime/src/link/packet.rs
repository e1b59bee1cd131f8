//! Engine.IO v4 and Socket.IO v5 packets as text frames. The decoder takes
//! whatever the network sends and never panics: malformed input is an error.

use serde::Deserialize;
use serde_json::Value;

/// A frame that is not a packet we understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("empty packet")]
    Empty,
    #[error("unknown Engine.IO packet type '{0}'")]
    UnknownEngineType(char),
    #[error("unknown Socket.IO packet type '{0}'")]
    UnknownSocketType(char),
    #[error("binary Socket.IO packets are not supported")]
    Binary,
    #[error("bad ack id")]
    BadAckId,
    #[error("bad JSON in packet: {0}")]
    Json(String),
    #[error("an event needs a name")]
    MissingEventName,
    #[error("bad open packet: {0}")]
    BadOpen(String),
}

/// The server's handshake values (`0{...}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenInfo {
    pub sid: String,
    /// Milliseconds between the server's pings.
    pub ping_interval: u64,
    /// Milliseconds the server waits for a pong (and we allow on top of the
    /// interval before calling the link dead).
    pub ping_timeout: u64,
    #[serde(default)]
    pub max_payload: Option<u64>,
}

/// Engine.IO packets (websocket transport, text frames).
#[derive(Debug, Clone, PartialEq)]
pub enum EnginePacket {
    Open(OpenInfo),
    Close,
    Ping,
    Pong,
    /// A Socket.IO packet, still encoded.
    Message(String),
    Upgrade,
    Noop,
}

/// Socket.IO packets of one namespace.
#[derive(Debug, Clone, PartialEq)]
pub enum SocketPacket {
    Connect(Option<Value>),
    Disconnect,
    Event {
        ack: Option<u64>,
        name: String,
        args: Vec<Value>,
    },
    Ack {
        id: u64,
        args: Vec<Value>,
    },
    ConnectError(Value),
}

/// Decodes an Engine.IO text frame.
pub fn decode_engine(frame: &str) -> Result<EnginePacket, PacketError> {
    let mut chars = frame.chars();
    let kind = chars.next().ok_or(PacketError::Empty)?;
    let rest = chars.as_str();
    Ok(match kind {
        '0' => EnginePacket::Open(
            serde_json::from_str(rest).map_err(|e| PacketError::BadOpen(e.to_string()))?,
        ),
        '1' => EnginePacket::Close,
        '2' => EnginePacket::Ping,
        '3' => EnginePacket::Pong,
        '4' => EnginePacket::Message(rest.to_owned()),
        '5' => EnginePacket::Upgrade,
        '6' => EnginePacket::Noop,
        other => return Err(PacketError::UnknownEngineType(other)),
    })
}

/// Decodes a Socket.IO packet; returns its namespace (`/` by default).
pub fn decode_socket(text: &str) -> Result<(String, SocketPacket), PacketError> {
    let mut chars = text.chars();
    let kind = chars.next().ok_or(PacketError::Empty)?;
    let mut rest = chars.as_str();
    if matches!(kind, '5' | '6') {
        return Err(PacketError::Binary);
    }
    if !matches!(kind, '0'..='4') {
        return Err(PacketError::UnknownSocketType(kind));
    }
    let mut namespace = "/".to_owned();
    if rest.starts_with('/') {
        match rest.find(',') {
            Some(comma) => {
                namespace = rest[..comma].to_owned();
                rest = &rest[comma + 1..];
            }
            None => {
                namespace = rest.to_owned();
                rest = "";
            }
        }
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let ack = if digits > 0 {
        let id = rest[..digits]
            .parse::<u64>()
            .map_err(|_| PacketError::BadAckId)?;
        rest = &rest[digits..];
        Some(id)
    } else {
        None
    };
    let json = |s: &str| -> Result<Value, PacketError> {
        serde_json::from_str(s).map_err(|e| PacketError::Json(e.to_string()))
    };
    let packet = match kind {
        '0' => SocketPacket::Connect(if rest.is_empty() {
            None
        } else {
            Some(json(rest)?)
        }),
        '1' => SocketPacket::Disconnect,
        '2' => {
            let Value::Array(mut items) = json(rest)? else {
                return Err(PacketError::Json(
                    "an event payload must be an array".to_owned(),
                ));
            };
            if items.is_empty() {
                return Err(PacketError::MissingEventName);
            }
            let Value::String(name) = items.remove(0) else {
                return Err(PacketError::MissingEventName);
            };
            SocketPacket::Event {
                ack,
                name,
                args: items,
            }
        }
        '3' => {
            let id = ack.ok_or(PacketError::BadAckId)?;
            let Value::Array(args) = json(rest)? else {
                return Err(PacketError::Json(
                    "an ack payload must be an array".to_owned(),
                ));
            };
            SocketPacket::Ack { id, args }
        }
        _ => SocketPacket::ConnectError(if rest.is_empty() {
            Value::Null
        } else {
            json(rest)?
        }),
    };
    Ok((namespace, packet))
}

// Encoders return Socket.IO packets; the connection wraps them in an
// Engine.IO message (`4` prefix).

/// `0` / `0{auth}`: join the default namespace.
pub fn encode_connect(auth: Option<&Value>) -> String {
    match auth {
        Some(a) => format!("0{a}"),
        None => "0".to_owned(),
    }
}

/// `0/<namespace>,`: join another namespace.
pub fn encode_connect_to(namespace: &str) -> String {
    format!("0{namespace},")
}

/// `1/<namespace>,`: leave another namespace.
pub fn encode_disconnect_from(namespace: &str) -> String {
    format!("1{namespace},")
}

/// `1`: leave the default namespace.
pub fn encode_disconnect() -> String {
    "1".to_owned()
}

/// `2[name, ...args]`, or `2<id>[...]` when an ack is wanted.
pub fn encode_event(name: &str, args: &[Value], ack: Option<u64>) -> String {
    let mut items = Vec::with_capacity(args.len() + 1);
    items.push(Value::String(name.to_owned()));
    items.extend(args.iter().cloned());
    let payload = Value::Array(items);
    match ack {
        Some(id) => format!("2{id}{payload}"),
        None => format!("2{payload}"),
    }
}

/// `3<id>[...args]`: answer the server's ack request.
pub fn encode_ack(id: u64, args: &[Value]) -> String {
    format!("3{id}{}", Value::Array(args.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn engine_packets() {
        assert_eq!(
            decode_engine(
                r#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
            ),
            Ok(EnginePacket::Open(OpenInfo {
                sid: "abc".to_owned(),
                ping_interval: 25000,
                ping_timeout: 20000,
                max_payload: Some(1_000_000),
            }))
        );
        assert_eq!(decode_engine("2"), Ok(EnginePacket::Ping));
        assert_eq!(decode_engine("3probe"), Ok(EnginePacket::Pong));
        assert_eq!(
            decode_engine("42[\"x\"]"),
            Ok(EnginePacket::Message("2[\"x\"]".to_owned()))
        );
        assert_eq!(decode_engine(""), Err(PacketError::Empty));
        assert_eq!(decode_engine("9"), Err(PacketError::UnknownEngineType('9')));
    }

    #[test]
    fn socket_packets() {
        assert_eq!(
            decode_socket(r#"2["command",{"id":"1","type":"get_config","data":{}}]"#),
            Ok((
                "/".to_owned(),
                SocketPacket::Event {
                    ack: None,
                    name: "command".to_owned(),
                    args: vec![json!({"id":"1","type":"get_config","data":{}})],
                }
            ))
        );
        assert_eq!(
            decode_socket(r#"212["ask",1]"#),
            Ok((
                "/".to_owned(),
                SocketPacket::Event {
                    ack: Some(12),
                    name: "ask".to_owned(),
                    args: vec![json!(1)]
                }
            ))
        );
        assert_eq!(
            decode_socket(r#"3/admin,7[true]"#),
            Ok((
                "/admin".to_owned(),
                SocketPacket::Ack {
                    id: 7,
                    args: vec![json!(true)]
                }
            ))
        );
        assert_eq!(
            decode_socket(r#"0{"sid":"x"}"#),
            Ok((
                "/".to_owned(),
                SocketPacket::Connect(Some(json!({"sid":"x"})))
            ))
        );
        assert_eq!(
            decode_socket(r#"4{"message":"Not authorized"}"#),
            Ok((
                "/".to_owned(),
                SocketPacket::ConnectError(json!({"message":"Not authorized"}))
            ))
        );
        assert_eq!(
            decode_socket("1"),
            Ok(("/".to_owned(), SocketPacket::Disconnect))
        );
        assert_eq!(decode_socket("51-[\"x\",{}]"), Err(PacketError::Binary));
        assert_eq!(decode_socket("2[]"), Err(PacketError::MissingEventName));
        assert_eq!(decode_socket("2[1]"), Err(PacketError::MissingEventName));
        assert_eq!(
            decode_socket("399999999999999999999999[]"),
            Err(PacketError::BadAckId)
        );
    }

    #[test]
    fn encoding_round_trips() {
        let text = encode_event("heartbeat", &[json!({"a": 1})], None);
        assert_eq!(text, r#"2["heartbeat",{"a":1}]"#);
        assert_eq!(
            decode_socket(&text),
            Ok((
                "/".to_owned(),
                SocketPacket::Event {
                    ack: None,
                    name: "heartbeat".to_owned(),
                    args: vec![json!({"a":1})]
                }
            ))
        );
        assert_eq!(
            encode_event("pong_check", &[], Some(3)),
            r#"23["pong_check"]"#
        );
        assert_eq!(encode_ack(5, &[json!("ok")]), r#"35["ok"]"#);
        assert_eq!(encode_connect(None), "0");
    }

    proptest! {
        #[test]
        fn decoders_never_panic(input in ".{0,200}") {
            let _ = decode_engine(&input);
            let _ = decode_socket(&input);
        }

        #[test]
        fn decoders_never_panic_on_packet_like_input(
            kind in "[0-9]", ns in "(/[a-z]{0,5},?)?", id in "[0-9]{0,25}", body in "[\\[\\]{}\",:a-z0-9 ]{0,60}"
        ) {
            let text = format!("{kind}{ns}{id}{body}");
            let _ = decode_engine(&text);
            let _ = decode_socket(&text);
            let _ = decode_engine(&format!("4{text}"));
        }
    }
}
