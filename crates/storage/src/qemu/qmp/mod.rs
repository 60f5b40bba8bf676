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
//!
//! The wire format (reading a line, classifying what it says) is in `wire.rs`;
//! the tests, against a fake peer, in `tests.rs`.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

mod wire;

#[cfg(test)]
mod tests;

use wire::{Message, parse_greeting, parse_message, read_line};

/// How long a command may take, and how long connecting and the greeting may
/// take, unless the caller says otherwise ([`Qmp::connect_with_timeout`]).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

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
