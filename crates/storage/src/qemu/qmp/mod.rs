//! A small asynchronous client of the QEMU Machine Protocol (QMP) over a unix
//! socket: how Scoria talks to a running `qemu-storage-daemon` (see [`super::qsd`]).
//!
//! QMP is line-delimited JSON. On connect the server sends a greeting
//! (`{"QMP": {"version": …, "capabilities": […]}}`); the client must send
//! `qmp_capabilities` before anything else. Then each command
//! `{"execute": name, "arguments": {…}, "id": n}` gets exactly one reply that
//! echoes the id: `{"return": value, "id": n}` or
//! `{"error": {"class": …, "desc": …}, "id": n}`. In between, the server sends
//! asynchronous events (`{"event": name, "data": {…}, "timestamp": {…}}`) such as
//! `BLOCK_EXPORT_DELETED` or `JOB_STATUS_CHANGE` whenever they happen.
//!
//! [`Qmp`] owns the connection. A reader task reads every line as it arrives,
//! hands replies to the command waiting for them (matched by id, so commands may
//! be issued concurrently) and keeps events in a bounded buffer from which
//! [`Qmp::next_event`] takes them, so a later block job can wait for its
//! `JOB_STATUS_CHANGE` even if it arrived before anyone asked. When the peer
//! goes away (the daemon died or closed the monitor), every waiting command fails
//! with [`QmpError::Closed`], as does every later one, and [`Qmp::closed`]
//! resolves: that is how a supervisor notices a dead daemon at once.
//!
//! Every wait has a deadline ([`QmpError::Timeout`]); an error qemu reports is
//! [`QmpError::Command`] with qemu's error class and description.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

/// How long a command may take, and how long connecting and the greeting may
/// take, unless the caller says otherwise ([`Qmp::connect_with_timeout`]).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest line accepted from the peer. `query-named-block-nodes` of a long
/// backing chain is the largest reply Scoria asks for, far below this; a longer
/// line means the peer is not speaking QMP.
const MAX_LINE: usize = 16 << 20;

/// How many unclaimed events are kept; older ones are dropped first.
const MAX_EVENTS: usize = 1024;

/// qemu's error classes (`QapiErrorClass` in `qapi/error.json`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    GenericError,
    CommandNotFound,
    DeviceNotActive,
    DeviceNotFound,
    KvmMissingCap,
    /// A class this client does not know, as qemu spelled it.
    Other(String),
}

impl ErrorClass {
    fn parse(class: &str) -> Self {
        match class {
            "GenericError" => Self::GenericError,
            "CommandNotFound" => Self::CommandNotFound,
            "DeviceNotActive" => Self::DeviceNotActive,
            "DeviceNotFound" => Self::DeviceNotFound,
            "KVMMissingCap" => Self::KvmMissingCap,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The class as qemu spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::GenericError => "GenericError",
            Self::CommandNotFound => "CommandNotFound",
            Self::DeviceNotActive => "DeviceNotActive",
            Self::DeviceNotFound => "DeviceNotFound",
            Self::KvmMissingCap => "KVMMissingCap",
            Self::Other(other) => other,
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a QMP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("cannot connect to the QMP socket {path}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("QMP {op} failed")]
    Io {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The peer sent something that is not QMP.
    #[error("the QMP peer broke the protocol: {0}")]
    Protocol(String),
    /// qemu refused or failed the command.
    #[error("QMP command {command} failed ({class}): {desc}")]
    Command {
        command: String,
        class: ErrorClass,
        desc: String,
    },
    #[error("QMP {what} got no answer within {after:?}")]
    Timeout { what: String, after: Duration },
    /// The connection is closed: the daemon exited, or closed the monitor.
    #[error("the QMP peer is gone")]
    Closed,
}

pub type Result<T, E = QmpError> = std::result::Result<T, E>;

/// An asynchronous event, as qemu sent it.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// `BLOCK_EXPORT_DELETED`, `JOB_STATUS_CHANGE`, …
    pub name: String,
    /// The event's `data` member (`Value::Null` when it has none).
    pub data: Value,
    /// When qemu emitted it: seconds and microseconds since the epoch.
    pub timestamp: Option<(u64, u64)>,
}

/// qemu's version, from the greeting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct QemuVersion {
    pub major: u64,
    pub minor: u64,
    pub micro: u64,
}

/// What the reader task hands to a waiting command.
enum Reply {
    Return(Value),
    Error { class: ErrorClass, desc: String },
}

#[derive(Default)]
struct State {
    /// Commands sent and not yet answered, by id. Dropping a sender (when the
    /// connection closes) fails its command with [`QmpError::Closed`].
    pending: HashMap<u64, oneshot::Sender<Reply>>,
    events: VecDeque<Event>,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Woken when an event arrives or the connection closes.
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a few collections changed in short critical sections that
        // cannot panic half-way; a poisoned lock still holds consistent data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.pending.clear();
        drop(state);
        self.changed.notify_waiters();
    }
}

/// A QMP connection whose capabilities have been negotiated.
pub struct Qmp {
    shared: Arc<Shared>,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    next_id: AtomicU64,
    timeout: Duration,
    version: Option<QemuVersion>,
    reader: JoinHandle<()>,
}

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qmp")
            .field("version", &self.version)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Drop for Qmp {
    fn drop(&mut self) {
        // The write half closes with `self`; the reader must not outlive it.
        self.reader.abort();
    }
}

impl Qmp {
    /// Connect to the QMP socket at `path`, read the greeting and negotiate
    /// capabilities, with [`DEFAULT_TIMEOUT`] for every wait.
    pub async fn connect(path: &Path) -> Result<Self> {
        Self::connect_with_timeout(path, DEFAULT_TIMEOUT).await
    }

    /// As [`Qmp::connect`], with `timeout` for connecting, for the greeting and
    /// for every later command.
    pub async fn connect_with_timeout(path: &Path, timeout: Duration) -> Result<Self> {
        let stream = within(timeout, "connect", UnixStream::connect(path))
            .await?
            .map_err(|source| QmpError::Connect {
                path: path.to_owned(),
                source,
            })?;
        let (read, writer) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut line = Vec::new();
        let got = within(timeout, "greeting", read_line(&mut reader, &mut line)).await?;
        if !got.map_err(|source| QmpError::Io {
            op: "reading the greeting",
            source,
        })? {
            return Err(QmpError::Closed);
        }
        let version = parse_greeting(&line)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        });
        let reader = tokio::spawn(read_loop(reader, Arc::clone(&shared)));
        let qmp = Self {
            shared,
            writer: tokio::sync::Mutex::new(writer),
            next_id: AtomicU64::new(1),
            timeout,
            version,
            reader,
        };
        qmp.execute("qmp_capabilities", Value::Null).await?;
        Ok(qmp)
    }

    /// qemu's version as the greeting announced it, if it did.
    pub fn version(&self) -> Option<QemuVersion> {
        self.version
    }

    /// Run `command` with `arguments` (a JSON object, or `Value::Null` for none)
    /// and return what qemu returned (`{}` for commands that return nothing).
    pub async fn execute(&self, command: &str, arguments: Value) -> Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message = json!({ "execute": command, "id": id });
        if !arguments.is_null() {
            message["arguments"] = arguments;
        }
        let mut line = message.to_string().into_bytes();
        line.push(b'\n');

        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.shared.lock();
            if state.closed {
                return Err(QmpError::Closed);
            }
            state.pending.insert(id, tx);
        }
        let forget = || {
            self.shared.lock().pending.remove(&id);
        };
        let written = {
            let mut writer = self.writer.lock().await;
            writer.write_all(&line).await
        };
        if let Err(source) = written {
            forget();
            return Err(if is_disconnect(&source) {
                QmpError::Closed
            } else {
                QmpError::Io {
                    op: "sending a command",
                    source,
                }
            });
        }
        let reply = match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => return Err(QmpError::Closed),
            Err(_) => {
                forget();
                return Err(QmpError::Timeout {
                    what: format!("command {command}"),
                    after: self.timeout,
                });
            }
        };
        match reply {
            Reply::Return(value) => Ok(value),
            Reply::Error { class, desc } => Err(QmpError::Command {
                command: command.to_owned(),
                class,
                desc,
            }),
        }
    }

    /// Take the oldest buffered event for which `matches` is true, waiting up to
    /// `timeout` for one to arrive. Events that do not match stay buffered.
    pub async fn next_event(
        &self,
        matches: impl Fn(&Event) -> bool,
        timeout: Duration,
    ) -> Result<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register for a wake-up before looking, so that an event arriving
            // between the look and the wait is not missed.
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.shared.lock();
                if let Some(at) = state.events.iter().position(&matches)
                    && let Some(event) = state.events.remove(at)
                {
                    return Ok(event);
                }
                if state.closed {
                    return Err(QmpError::Closed);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(QmpError::Timeout {
                    what: "wait for an event".into(),
                    after: timeout,
                });
            }
        }
    }

    /// Take every buffered event, oldest first.
    pub fn take_events(&self) -> Vec<Event> {
        self.shared.lock().events.drain(..).collect()
    }

    /// True once the peer is gone.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }

    /// Resolve when the peer is gone (at once if it already is).
    pub async fn closed(&self) {
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

/// `future`, or a [`QmpError::Timeout`] naming `what`.
async fn within<T>(
    timeout: Duration,
    what: &str,
    future: impl std::future::Future<Output = T>,
) -> Result<T> {
    tokio::time::timeout(timeout, future)
        .await
        .map_err(|_| QmpError::Timeout {
            what: what.into(),
            after: timeout,
        })
}

fn is_disconnect(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        BrokenPipe | ConnectionReset | ConnectionAborted | NotConnected | UnexpectedEof
    )
}

/// Read one `\n`-terminated line into `buf` (without the `\n` or a `\r` before
/// it). Returns false at the end of the stream; a line cut short by the end of
/// the stream, or longer than [`MAX_LINE`], is an error.
async fn read_line<R: AsyncBufRead + Unpin>(
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

fn parse_greeting(line: &[u8]) -> Result<Option<QemuVersion>> {
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
enum Message {
    Reply { id: Option<u64>, reply: Reply },
    Event(Event),
}

fn parse_message(line: &[u8]) -> Result<Message, String> {
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

/// The reader task: read lines until the stream ends, dispatching replies and
/// buffering events; then mark the connection closed.
async fn read_loop(mut reader: BufReader<OwnedReadHalf>, shared: Arc<Shared>) {
    let mut line = Vec::new();
    loop {
        match read_line(&mut reader, &mut line).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                tracing::warn!(error = %e, "reading from the QMP peer failed; closing");
                break;
            }
        }
        match parse_message(&line) {
            Ok(Message::Reply { id, reply }) => {
                let mut state = shared.lock();
                // Scoria only sends valid JSON with an id, so a reply without
                // one answers the oldest command still waiting.
                let id = id.or_else(|| state.pending.keys().min().copied());
                match id.and_then(|id| state.pending.remove(&id)) {
                    // A command that timed out no longer waits: drop its reply.
                    None => tracing::debug!(?id, "QMP reply nobody waits for"),
                    Some(tx) => {
                        let _ = tx.send(reply);
                    }
                }
            }
            Ok(Message::Event(event)) => {
                tracing::debug!(event = %event.name, "QMP event");
                let mut state = shared.lock();
                if state.events.len() == MAX_EVENTS {
                    state.events.pop_front();
                    tracing::debug!("too many unclaimed QMP events; dropping the oldest");
                }
                state.events.push_back(event);
                drop(state);
                shared.changed.notify_waiters();
            }
            Err(detail) => {
                tracing::warn!(%detail, "the QMP peer sent something unexpected; closing");
                break;
            }
        }
    }
    shared.close();
}

#[cfg(test)]
mod tests {
    //! The framing against a fake peer: a unix listener in the test that speaks
    //! QMP lines as the test script says. The client against a real daemon is
    //! tested in [`super::super::qsd`].

    use tokio::io::AsyncWriteExt;
    use tokio::net::UnixListener;

    use super::*;

    const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "test"}, "capabilities": ["oob"]}}"#;

    /// The peer's side of a connection.
    struct Peer {
        reader: BufReader<OwnedReadHalf>,
        writer: OwnedWriteHalf,
    }

    impl Peer {
        async fn send(&mut self, text: &str) {
            self.writer
                .write_all(text.as_bytes())
                .await
                .expect("peer write");
        }

        /// Read the next command; returns its name, arguments and id.
        async fn command(&mut self) -> (String, Value, Value) {
            let mut line = Vec::new();
            assert!(
                read_line(&mut self.reader, &mut line)
                    .await
                    .expect("peer read"),
                "client closed"
            );
            let v: Value = serde_json::from_slice(&line).expect("command is JSON");
            let name = v["execute"].as_str().expect("execute").to_owned();
            (name, v["arguments"].clone(), v["id"].clone())
        }

        /// Greet, and accept `qmp_capabilities`.
        async fn handshake(&mut self) {
            self.send(&format!("{GREETING}\r\n")).await;
            let (name, _, id) = self.command().await;
            assert_eq!(name, "qmp_capabilities");
            self.send(&format!("{{\"return\": {{}}, \"id\": {id}}}\r\n"))
                .await;
        }
    }

    /// A listening socket in a temporary directory; `accept` gives the peer.
    struct Fake {
        _dir: tempfile::TempDir,
        path: PathBuf,
        listener: UnixListener,
    }

    impl Fake {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("qmp.sock");
            let listener = UnixListener::bind(&path).expect("bind");
            Self {
                _dir: dir,
                path,
                listener,
            }
        }

        async fn accept(&self) -> Peer {
            let (stream, _) = self.listener.accept().await.expect("accept");
            let (read, writer) = stream.into_split();
            Peer {
                reader: BufReader::new(read),
                writer,
            }
        }
    }

    async fn connected(fake: &Fake, timeout: Duration) -> (Qmp, Peer) {
        let (qmp, peer) = tokio::join!(Qmp::connect_with_timeout(&fake.path, timeout), async {
            let mut peer = fake.accept().await;
            peer.handshake().await;
            peer
        });
        (qmp.expect("connect"), peer)
    }

    #[tokio::test]
    async fn handshake_then_commands_and_errors() {
        let fake = Fake::new();
        let (qmp, mut peer) = connected(&fake, Duration::from_secs(5)).await;
        assert_eq!(
            qmp.version(),
            Some(QemuVersion {
                major: 10,
                minor: 0,
                micro: 2
            })
        );

        let server = async {
            let (name, args, id) = peer.command().await;
            assert_eq!(name, "query-block-exports");
            assert_eq!(args, Value::Null, "no arguments member when there are none");
            // The reply arrives in two pieces, split inside the JSON.
            peer.send("{\"return\": [{\"id\": \"e\"").await;
            peer.send(&format!("}}], \"id\": {id}}}\r\n")).await;

            let (name, args, id) = peer.command().await;
            assert_eq!(name, "block-export-del");
            assert_eq!(args, json!({"id": "zz"}));
            peer.send(&format!(
                "{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"Export 'zz' is not found\"}}, \"id\": {id}}}\n"
            ))
            .await;

            let (_, _, id) = peer.command().await;
            peer.send(&format!(
                "{{\"error\": {{\"class\": \"SomethingNew\", \"desc\": \"d\"}}, \"id\": {id}}}\n"
            ))
            .await;
            peer
        };
        let client = async {
            let exports = qmp
                .execute("query-block-exports", Value::Null)
                .await
                .expect("query");
            assert_eq!(exports, json!([{"id": "e"}]));
            match qmp.execute("block-export-del", json!({"id": "zz"})).await {
                Err(QmpError::Command {
                    command,
                    class,
                    desc,
                }) => {
                    assert_eq!(command, "block-export-del");
                    assert_eq!(class, ErrorClass::GenericError);
                    assert_eq!(desc, "Export 'zz' is not found");
                }
                other => panic!("expected a command error, got {other:?}"),
            }
            match qmp.execute("x", Value::Null).await {
                Err(QmpError::Command { class, .. }) => {
                    assert_eq!(class, ErrorClass::Other("SomethingNew".into()));
                }
                other => panic!("expected a command error, got {other:?}"),
            }
        };
        let (_peer, ()) = tokio::join!(server, client);
    }

    #[tokio::test]
    async fn replies_are_matched_by_id_and_events_are_kept() {
        let fake = Fake::new();
        let (qmp, mut peer) = connected(&fake, Duration::from_secs(5)).await;
        let server = async {
            let (a, _, id_a) = peer.command().await;
            let (b, _, id_b) = peer.command().await;
            // Events before, between and after the replies, which come in the
            // opposite order of the commands.
            peer.send(concat!(
                r#"{"timestamp": {"seconds": 1700000000, "microseconds": 5}, "event": "JOB_STATUS_CHANGE", "data": {"status": "running", "id": "j1"}}"#,
                "\r\n"
            ))
            .await;
            peer.send(&format!("{{\"return\": \"{b}\", \"id\": {id_b}}}\r\n"))
                .await;
            peer.send("{\"event\": \"BLOCK_EXPORT_DELETED\", \"data\": {\"id\": \"e1\"}}\r\n")
                .await;
            peer.send(&format!("{{\"return\": \"{a}\", \"id\": {id_a}}}\r\n"))
                .await;
            peer.send(concat!(
                r#"{"event": "JOB_STATUS_CHANGE", "data": {"status": "concluded", "id": "j1"}}"#,
                "\r\n"
            ))
            .await;
            peer
        };
        let client = async {
            let (a, b) = tokio::join!(qmp.execute("a", Value::Null), qmp.execute("b", Value::Null));
            assert_eq!((a.expect("a"), b.expect("b")), (json!("a"), json!("b")));
        };
        let (_peer, ()) = tokio::join!(server, client);

        // Waiting for a particular event skips the others, which stay.
        let concluded = qmp
            .next_event(
                |e| e.name == "JOB_STATUS_CHANGE" && e.data["status"] == "concluded",
                Duration::from_secs(5),
            )
            .await
            .expect("concluded");
        assert_eq!(concluded.data["id"], "j1");
        let deleted = qmp
            .next_event(|e| e.name == "BLOCK_EXPORT_DELETED", Duration::from_secs(5))
            .await
            .expect("deleted");
        assert_eq!(deleted.data, json!({"id": "e1"}));
        let rest = qmp.take_events();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].data["status"], "running");
        assert_eq!(rest[0].timestamp, Some((1_700_000_000, 5)));

        // No such event comes: a timeout, not a hang.
        let err = qmp
            .next_event(|e| e.name == "NEVER", Duration::from_millis(50))
            .await;
        assert!(matches!(err, Err(QmpError::Timeout { .. })), "{err:?}");
    }

    #[tokio::test]
    async fn an_event_waited_for_before_it_arrives_is_delivered() {
        let fake = Fake::new();
        let (qmp, mut peer) = connected(&fake, Duration::from_secs(5)).await;
        let waiter = qmp.next_event(|e| e.name == "LATE", Duration::from_secs(5));
        let sender = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            peer.send("{\"event\": \"LATE\"}\n").await;
        };
        let (event, ()) = tokio::join!(waiter, sender);
        let event = event.expect("event");
        assert_eq!((event.name.as_str(), &event.data), ("LATE", &Value::Null));
    }

    #[tokio::test]
    async fn a_silent_peer_times_out_and_a_late_reply_is_dropped() {
        let fake = Fake::new();
        let (qmp, mut peer) = connected(&fake, Duration::from_millis(100)).await;
        let err = qmp.execute("slow", Value::Null).await;
        assert!(
            matches!(&err, Err(QmpError::Timeout { what, .. }) if what == "command slow"),
            "{err:?}"
        );
        // The late reply is ignored; the next command gets its own.
        let (_, _, late) = peer.command().await;
        peer.send(&format!("{{\"return\": \"late\", \"id\": {late}}}\n"))
            .await;
        let (ok, ()) = tokio::join!(qmp.execute("fast", Value::Null), async {
            let (_, _, id) = peer.command().await;
            peer.send(&format!("{{\"return\": \"fast\", \"id\": {id}}}\n"))
                .await;
        });
        assert_eq!(ok.expect("fast"), json!("fast"));
    }

    #[tokio::test]
    async fn a_peer_that_goes_away_fails_waiting_and_later_commands() {
        let fake = Fake::new();
        let (qmp, mut peer) = connected(&fake, Duration::from_secs(5)).await;
        let (result, ()) = tokio::join!(qmp.execute("quit", Value::Null), async {
            let _ = peer.command().await;
            drop(peer);
        });
        assert!(matches!(result, Err(QmpError::Closed)), "{result:?}");
        tokio::time::timeout(Duration::from_secs(5), qmp.closed())
            .await
            .expect("closed resolves");
        assert!(qmp.is_closed());
        let later = qmp.execute("query-version", Value::Null).await;
        assert!(matches!(later, Err(QmpError::Closed)), "{later:?}");
        let event = qmp.next_event(|_| true, Duration::from_secs(5)).await;
        assert!(matches!(event, Err(QmpError::Closed)), "{event:?}");
    }

    #[tokio::test]
    async fn a_peer_that_is_not_qmp_is_refused() {
        // Not a greeting.
        let fake = Fake::new();
        let (qmp, _peer) = tokio::join!(
            Qmp::connect_with_timeout(&fake.path, Duration::from_secs(5)),
            async {
                let mut peer = fake.accept().await;
                peer.send("{\"return\": {}}\n").await;
                peer
            }
        );
        assert!(matches!(qmp, Err(QmpError::Protocol(_))), "{qmp:?}");

        // Garbage after the handshake closes the connection.
        let (qmp, mut peer) = connected(&fake, Duration::from_secs(5)).await;
        let (result, ()) = tokio::join!(qmp.execute("x", Value::Null), async {
            let _ = peer.command().await;
            peer.send("this is not json\n").await;
        });
        assert!(matches!(result, Err(QmpError::Closed)), "{result:?}");

        // A peer that accepts but never greets.
        let (qmp, _peer) = tokio::join!(
            Qmp::connect_with_timeout(&fake.path, Duration::from_millis(100)),
            fake.accept()
        );
        assert!(
            matches!(&qmp, Err(QmpError::Timeout { what, .. }) if what == "greeting"),
            "{qmp:?}"
        );

        // Nobody listens.
        let missing = fake.path.with_file_name("missing.sock");
        let qmp = Qmp::connect(&missing).await;
        assert!(matches!(qmp, Err(QmpError::Connect { .. })), "{qmp:?}");
    }

    #[tokio::test]
    async fn lines_are_read_whole_and_bounded() {
        let check = async |input: &[u8], expected: &[&str], then_error: bool| {
            let mut reader = BufReader::with_capacity(7, input);
            let mut line = Vec::new();
            for want in expected {
                assert!(read_line(&mut reader, &mut line).await.expect("line"));
                assert_eq!(String::from_utf8_lossy(&line), *want);
            }
            let end = read_line(&mut reader, &mut line).await;
            if then_error {
                assert!(end.is_err(), "{input:?}: {end:?}");
            } else {
                assert!(!end.expect("end"), "{input:?}");
            }
        };
        check(
            b"{\"a\": 1}\r\n{\"b\": 2}\n",
            &["{\"a\": 1}", "{\"b\": 2}"],
            false,
        )
        .await;
        check(b"\n\r\n", &["", ""], false).await;
        check(b"{\"a\": 1}\n{\"cut", &["{\"a\": 1}"], true).await;
    }
}
