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
