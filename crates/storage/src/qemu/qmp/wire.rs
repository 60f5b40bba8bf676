//! QMP on the wire: one JSON value per `\n`-terminated line, read with a
//! length limit, and each line classified as the greeting, a reply (to the
//! command with its id) or an event.

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

use super::{ErrorClass, Event, QemuVersion, QmpError, Reply, Result};

/// The longest line accepted from the peer. `query-named-block-nodes` of a long
/// backing chain is the largest reply Scoria asks for, far below this; a longer
/// line means the peer is not speaking QMP.
const MAX_LINE: usize = 16 << 20;

/// Read one `\n`-terminated line into `buf` (without the `\n` or a `\r` before
/// it). Returns false at the end of the stream; a line cut short by the end of
/// the stream, or longer than [`MAX_LINE`], is an error.
pub(super) async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<bool> {
    buf.clear();
    let n = (&mut *reader)
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', buf)
        .await?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() != Some(&b'\n') {
        let detail = if buf.len() > MAX_LINE {
            "a QMP line longer than 16 MiB"
        } else {
            "the QMP stream ended in the middle of a line"
        };
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, detail));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(true)
}

pub(super) fn parse_greeting(line: &[u8]) -> Result<Option<QemuVersion>> {
    let value: Value = serde_json::from_slice(line)
        .map_err(|e| QmpError::Protocol(format!("the greeting is not JSON ({e})")))?;
    let Some(qmp) = value.get("QMP") else {
        return Err(QmpError::Protocol(format!(
            "expected a greeting, got {}",
            abbreviate(&value)
        )));
    };
    let version = &qmp["version"]["qemu"];
    let field = |name: &str| version.get(name).and_then(Value::as_u64);
    Ok(match (field("major"), field("minor"), field("micro")) {
        (Some(major), Some(minor), Some(micro)) => Some(QemuVersion {
            major,
            minor,
            micro,
        }),
        _ => None,
    })
}

/// A message from the peer, classified.
pub(super) enum Message {
    Reply { id: Option<u64>, reply: Reply },
    Event(Event),
}

pub(super) fn parse_message(line: &[u8]) -> Result<Message, String> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| format!("a line is not JSON ({e})"))?;
    if let Some(name) = value.get("event").and_then(Value::as_str) {
        let timestamp = value.get("timestamp").and_then(|t| {
            Some((
                t.get("seconds")?.as_u64()?,
                t.get("microseconds")?.as_u64()?,
            ))
        });
        return Ok(Message::Event(Event {
            name: name.to_owned(),
            data: value.get("data").cloned().unwrap_or(Value::Null),
            timestamp,
        }));
    }
    let id = value.get("id").and_then(Value::as_u64);
    if let Some(ret) = value.get("return") {
        return Ok(Message::Reply {
            id,
            reply: Reply::Return(ret.clone()),
        });
    }
    if let Some(error) = value.get("error") {
        let text = |name: &str| {
            error
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        return Ok(Message::Reply {
            id,
            reply: Reply::Error {
                class: ErrorClass::parse(&text("class")),
                desc: text("desc"),
            },
        });
    }
    Err(format!("unexpected message {}", abbreviate(&value)))
}

fn abbreviate(value: &Value) -> String {
    let mut text = value.to_string();
    if text.len() > 200 {
        let mut end = 200;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}
