//! Results that fit the server's `maxPayload`.
//!
//! Why: the central server keeps socket.io's default 1,000,000-byte limit
//! and closes the websocket on a larger frame; a result re-sent after every
//! reconnection then took the box offline for good (issue 28.2). So a
//! result is made to fit before it is sent: `get_logs` keeps its newest
//! lines and says so, anything else becomes an error result under the same
//! id naming the size and the limit. Applied on every send, so the stored
//! outcome stays whole and a re-send is fitted the same way.

use crate::journal::Outcome;
use serde_json::{Value, json};

/// The event results go out as.
const EVENT: &str = "command_result";

/// Bytes of the websocket message emitting `payload` as `event`:
/// `42["<event>",<payload>]` (Engine.IO `4`, Socket.IO `2`).
pub fn frame_len(event: &str, payload: &Value) -> usize {
    let name = Value::String(event.to_owned()).to_string();
    // `4` `2` `[` name `,` payload `]`
    5 + name.len() + payload.to_string().len()
}

/// `outcome` as it may be sent under `id` within `limit` bytes, with a log
/// line when it had to change; `None` when it fits as it is.
pub fn fit(id: &str, outcome: &Outcome, limit: usize) -> Option<(Outcome, String)> {
    let bytes = frame_len(EVENT, &outcome.to_result_payload(id));
    if bytes <= limit {
        return None;
    }
    if let Outcome::Success { result } = outcome
        && let Some((trimmed, kept)) = newest_logs_that_fit(id, result, limit)
    {
        return Some((
            Outcome::Success { result: trimmed },
            format!(
                "the result of command {id} ({bytes} bytes) is over the central server's limit of {limit} bytes; sending its newest {kept} log lines (truncated: true)"
            ),
        ));
    }
    let error = format!(
        "The result is {bytes} bytes, more than the {limit} bytes the central server accepts (its maxPayload); it was not sent. Ask for less (e.g. fewer log lines)."
    );
    Some((
        Outcome::Error {
            error: error.clone(),
        },
        format!("command {id}: {error}"),
    ))
}

/// A `get_logs`-shaped result (`logs` a string) cut to its newest lines so
/// that the whole message fits; with `truncated: true` and `lines` (lines
/// kept). `None` when it has no `logs` text or not even the rest fits.
fn newest_logs_that_fit(id: &str, result: &Value, limit: usize) -> Option<(Value, usize)> {
    let logs = result.get("logs")?.as_str()?;
    let mut shell = result.clone();
    shell["logs"] = json!("");
    shell["truncated"] = json!(true);
    // Room for any count of lines.
    shell["lines"] = json!(u64::MAX);
    let overhead = frame_len(
        EVENT,
        &Outcome::Success {
            result: shell.clone(),
        }
        .to_result_payload(id),
    );
    let budget = limit.checked_sub(overhead)?;
    let mut used = 0usize;
    let mut kept: Vec<&str> = Vec::new();
    for line in logs.rsplit('\n') {
        // The line as JSON string content, plus the `\n` joining it.
        let cost = Value::String(line.to_owned()).to_string().len() - 2 + 2;
        if used + cost > budget {
            break;
        }
        used += cost;
        kept.push(line);
    }
    kept.reverse();
    let count = kept.iter().filter(|l| !l.is_empty()).count();
    shell["logs"] = json!(kept.join("\n"));
    shell["lines"] = json!(count);
    Some((shell, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(id: &str, outcome: &Outcome) -> usize {
        frame_len(EVENT, &outcome.to_result_payload(id))
    }

    #[test]
    fn frame_len_matches_the_encoded_packet() {
        let payload = json!({"a": "é\"\n", "b": [1, 2]});
        let packet = crate::link::packet::encode_event(EVENT, std::slice::from_ref(&payload), None);
        assert_eq!(frame_len(EVENT, &payload), packet.len() + 1);
    }

    #[test]
    fn a_small_result_is_left_alone() {
        let outcome = Outcome::Success {
            result: json!({"ok": true}),
        };
        assert_eq!(fit("c", &outcome, 1_000_000), None);
    }

    #[test]
    fn logs_keep_their_newest_lines_and_fit() {
        let logs: Vec<String> = (0..50_000)
            .map(|i| format!("line {i} \"quoted\" é"))
            .collect();
        let outcome = Outcome::Success {
            result: json!({"success": true, "logs": logs.join("\n")}),
        };
        let (fitted, log) = fit("c-1", &outcome, 100_000).expect("changed");
        let bytes = size("c-1", &fitted);
        assert!(bytes <= 100_000, "{log}");
        let Outcome::Success { result } = fitted else {
            panic!("still a success")
        };
        assert_eq!(result["truncated"], json!(true));
        let text = result["logs"].as_str().expect("logs");
        assert!(text.ends_with("line 49999 \"quoted\" é"));
        let kept = result["lines"].as_u64().expect("lines");
        assert_eq!(kept as usize, text.split('\n').count());
        assert!(bytes > 90_000, "uses the room it has: {bytes}");
    }

    #[test]
    fn other_results_become_an_error_naming_size_and_limit() {
        let outcome = Outcome::Success {
            result: json!({"configuration": "x".repeat(2_000)}),
        };
        let (fitted, _) = fit("c-2", &outcome, 1_000).expect("changed");
        let Outcome::Error { error } = &fitted else {
            panic!("an error")
        };
        assert!(error.starts_with("The result is 2"), "{error}");
        assert!(error.contains("more than the 1000 bytes"), "{error}");
        assert!(size("c-2", &fitted) <= 1_000);
    }
}
