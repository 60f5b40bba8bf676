//! Unit tests of the daemon configuration: it reads back as its spec, and
//! gives qemu the backing chain layer by layer. (The exporter against real
//! daemons is tested in `export/tests.rs`.)

use serde_json::json;

use super::*;
use crate::export::Psk;
use crate::qemu::qsd::OptionKind;

fn spec(transport: Transport, read_only: bool) -> ExportSpec {
    ExportSpec {
        id: "att-1".into(),
        image: "top.qcow2".into(),
        read_only,
        transport,
    }
}

fn chain() -> Vec<Layer> {
    vec![
        Layer {
            path: "/b/top.qcow2".into(),
            format: Format::Qcow2,
        },
        Layer {
            path: "/b/base.raw".into(),
            format: Format::Raw,
        },
    ]
}

#[test]
fn a_daemon_configuration_reads_back_as_its_spec() {
    let dir = Path::new("/run/att-1");
    let psk = Psk::new("att-1", "00112233445566778899aabbccddeeff").expect("psk");
    let check = |spec: ExportSpec| {
        let config = daemon_config(&spec, &chain(), dir);
        assert_eq!(
            served_by_options(config.options()),
            Some(served_by_spec(&spec, &chain(), dir)),
            "{spec:?}"
        );
    };
    check(spec(Transport::Unix, true));
    check(spec(Transport::Unix, false));
    let tcp = |tls| Transport::Tcp {
        host: "127.0.0.1".parse().expect("ip"),
        port: 10809,
        tls,
    };
    check(spec(tcp(Tls::Psk(psk.clone())), false));
    check(spec(tcp(Tls::Disabled), true));
    check(spec(
        Transport::Tcp {
            host: "::1".parse().expect("ip"),
            port: 1,
            tls: Tls::Disabled,
        },
        true,
    ));
}

#[test]
fn the_chain_is_given_to_qemu_layer_by_layer() {
    let dir = Path::new("/run/att-1");
    let config = daemon_config(&spec(Transport::Unix, false), &chain(), dir);
    let blockdevs: Vec<&Value> = config
        .options()
        .iter()
        .filter(|(k, _)| *k == OptionKind::Blockdev)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        blockdevs,
        [
            &json!({"driver": "file", "node-name": "file1", "filename": "/b/base.raw",
                    "read-only": true, "discard": "ignore"}),
            &json!({"driver": "raw", "node-name": "layer1", "file": "file1",
                    "read-only": true, "discard": "ignore"}),
            &json!({"driver": "file", "node-name": "file0", "filename": "/b/top.qcow2",
                    "read-only": false, "discard": "unmap"}),
            &json!({"driver": "qcow2", "node-name": "layer0", "file": "file0",
                    "read-only": false, "discard": "unmap", "backing": "layer1"}),
        ]
    );
    // A qcow2 base says so: no backing, whatever its header holds.
    let config = daemon_config(&spec(Transport::Unix, true), &chain()[..1], dir);
    let top = config
        .options()
        .iter()
        .find(|(k, v)| *k == OptionKind::Blockdev && v["node-name"] == "layer0")
        .map(|(_, v)| v)
        .expect("top");
    assert_eq!(top["backing"], Value::Null);
    assert!(top.get("backing").is_some());
    // Without TLS there is no credentials object and the server needs none.
    assert!(
        config
            .options()
            .iter()
            .all(|(k, v)| *k != OptionKind::Object && v.get("tls-creds").is_none())
    );
}

#[test]
fn other_daemons_do_not_read_as_exports() {
    assert_eq!(served_by_options(&[]), None);
    let only_nodes = [(
        OptionKind::Blockdev,
        json!({"driver": "file", "node-name": "f", "filename": "/x"}),
    )];
    assert_eq!(served_by_options(&only_nodes), None);
}
