//! An export spec as a daemon's command line, and back: what a running daemon
//! serves is read from its options and compared with what a spec asks for, so
//! that only a difference replaces it (see the parent module's doc).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::chain::Layer;
use super::{NBD_SOCKET, PSK_DIR};
use crate::Format;
use crate::export::{ExportSpec, NbdAddress, Tls, Transport};
use crate::qemu::qsd::{DaemonConfig, OptionKind};

/// Ids inside a daemon. Each daemon serves one export, so fixed names do.
const TLS_ID: &str = "tls0";
pub(super) const EXPORT_ID: &str = "export0";

/// What a daemon serves, as far as a client can tell: compared between a spec
/// and a running daemon's command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Served {
    /// The top image's path.
    pub(super) image: PathBuf,
    pub(super) read_only: bool,
    pub(super) export_name: String,
    pub(super) address: NbdAddress,
    pub(super) tls: bool,
}

pub(super) fn path_str(path: &Path) -> &str {
    // Both directories were checked to be UTF-8 when the exporter was made, and
    // ids and image names are ASCII.
    path.to_str().unwrap_or_default()
}

/// The daemon configuration serving `spec` from `layers` (top first) in `dir`.
pub(super) fn daemon_config(spec: &ExportSpec, layers: &[Layer], dir: &Path) -> DaemonConfig {
    let mut config = DaemonConfig::new();
    let tls = matches!(
        spec.transport,
        Transport::Tcp {
            tls: Tls::Psk(_),
            ..
        }
    );
    if tls {
        config = config.option(
            OptionKind::Object,
            json!({
                "qom-type": "tls-creds-psk",
                "id": TLS_ID,
                "endpoint": "server",
                "dir": path_str(&dir.join(PSK_DIR)),
            }),
        );
    }
    // Base first: a node can only refer to nodes defined before it.
    for (depth, layer) in layers.iter().enumerate().rev() {
        let read_only = depth > 0 || spec.read_only;
        let discard = if read_only { "ignore" } else { "unmap" };
        config = config.option(
            OptionKind::Blockdev,
            json!({
                "driver": "file",
                "node-name": format!("file{depth}"),
                "filename": path_str(&layer.path),
                "read-only": read_only,
                "discard": discard,
            }),
        );
        let mut node = json!({
            "driver": layer.format.as_str(),
            "node-name": format!("layer{depth}"),
            "file": format!("file{depth}"),
            "read-only": read_only,
            "discard": discard,
        });
        if layer.format == Format::Qcow2 {
            node["backing"] = if depth + 1 < layers.len() {
                json!(format!("layer{}", depth + 1))
            } else {
                Value::Null
            };
        }
        config = config.option(OptionKind::Blockdev, node);
    }
    let addr = match &spec.transport {
        Transport::Unix => json!({"type": "unix", "path": path_str(&dir.join(NBD_SOCKET))}),
        Transport::Tcp { host, port, .. } => {
            json!({"type": "inet", "host": host.to_string(), "port": port.to_string()})
        }
    };
    let mut server = json!({ "addr": addr });
    if tls {
        server["tls-creds"] = json!(TLS_ID);
    }
    config = config.option(OptionKind::NbdServer, server);
    config.option(
        OptionKind::Export,
        json!({
            "type": "nbd",
            "id": EXPORT_ID,
            "node-name": "layer0",
            "name": spec.id,
            "writable": !spec.read_only,
        }),
    )
}

/// What `spec` asks to be served.
pub(super) fn served_by_spec(spec: &ExportSpec, layers: &[Layer], dir: &Path) -> Served {
    let (address, tls) = match &spec.transport {
        Transport::Unix => (
            NbdAddress::Unix {
                path: dir.join(NBD_SOCKET),
            },
            false,
        ),
        Transport::Tcp { host, port, tls } => (
            NbdAddress::Tcp {
                host: *host,
                port: *port,
            },
            matches!(tls, Tls::Psk(_)),
        ),
    };
    Served {
        image: layers.first().map(|l| l.path.clone()).unwrap_or_default(),
        read_only: spec.read_only,
        export_name: spec.id.clone(),
        address,
        tls,
    }
}

/// What a daemon with these options serves, read from its NBD export, the node
/// it exports, that node's file and the NBD server. `None` if they do not
/// describe one NBD export of a file.
pub(super) fn served_by_options(options: &[(OptionKind, Value)]) -> Option<Served> {
    let of_kind = |kind: OptionKind| {
        options
            .iter()
            .filter(move |(k, _)| *k == kind)
            .map(|(_, v)| v)
    };
    let node =
        |name: &str| of_kind(OptionKind::Blockdev).find(|v| v["node-name"].as_str() == Some(name));
    let export = of_kind(OptionKind::Export).find(|v| v["type"] == "nbd")?;
    let top = node(export["node-name"].as_str()?)?;
    let file = node(top["file"].as_str()?)?;
    if file["driver"] != "file" {
        return None;
    }
    let server = of_kind(OptionKind::NbdServer).next()?;
    let addr = &server["addr"];
    let address = match addr["type"].as_str()? {
        "unix" => NbdAddress::Unix {
            path: PathBuf::from(addr["path"].as_str()?),
        },
        "inet" => NbdAddress::Tcp {
            host: addr["host"].as_str()?.parse().ok()?,
            port: addr["port"].as_str()?.parse().ok()?,
        },
        _ => return None,
    };
    Some(Served {
        image: PathBuf::from(file["filename"].as_str()?),
        read_only: !export["writable"].as_bool().unwrap_or(false),
        export_name: export["name"].as_str()?.to_owned(),
        address,
        tls: server.get("tls-creds").is_some_and(|c| !c.is_null()),
    })
}
