//! Reading an image through an NBD export instead of its file: what the
//! backup engine does for an attached volume, whose point-in-time view only
//! its `qemu-storage-daemon` has (a fleecing export, which the file
//! exporter's fleece module sets up).
//!
//! Every function here is one `qemu-img` process opening the export with
//! `--image-opts driver=nbd,…` (and, for a TCP export with TLS, a client
//! `tls-creds-psk` object reading the export's own `keys.psk`): its size
//! ([`size`]), what reads as data ([`data_extents`], NBD `base:allocation`),
//! what a bitmap the export offers marks ([`dirty_extents`],
//! `qemu:dirty-bitmap:NAME`, which qemu reports as `"data": false`), and a
//! byte range copied into a raw file ([`read_range`]).

use std::path::PathBuf;

use serde::Deserialize;

use super::backup::{Extent, MapEntry, escape, merge};
use super::img::QemuImg;
use crate::export::NbdAddress;
use crate::{Result, StorageError};

/// The id of the client TLS object on a `qemu-img` command line.
const TLS_OBJECT: &str = "scoria-tls0";

/// An NBD export to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NbdSource {
    pub address: NbdAddress,
    /// The export's name on the server.
    pub export: String,
    /// TLS with a pre-shared key, when the server requires it.
    pub tls: Option<NbdTls>,
}

/// A client's TLS-PSK credentials: a directory holding `keys.psk` (qemu's
/// `tls-creds-psk` `dir`) and the identity to present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NbdTls {
    pub dir: PathBuf,
    pub identity: String,
}

impl NbdSource {
    /// `key=value` options opening the export, each key prefixed by
    /// `prefix` (`"file."` to put it under a raw node).
    fn opts(&self, prefix: &str) -> Result<String> {
        let mut out = vec![
            format!("{prefix}driver=nbd"),
            format!("{prefix}export={}", escape(&self.export)),
        ];
        match &self.address {
            NbdAddress::Unix { path } => {
                if !path.is_absolute() {
                    return Err(StorageError::InvalidName(path.display().to_string()));
                }
                out.push(format!("{prefix}server.type=unix"));
                out.push(format!(
                    "{prefix}server.path={}",
                    escape(&path.display().to_string())
                ));
            }
            NbdAddress::Tcp { host, port } => {
                out.push(format!("{prefix}server.type=inet"));
                out.push(format!("{prefix}server.host={host}"));
                out.push(format!("{prefix}server.port={port}"));
            }
        }
        if self.tls.is_some() {
            out.push(format!("{prefix}tls-creds={TLS_OBJECT}"));
        }
        Ok(out.join(","))
    }

    /// `qemu-img <subcommand>` with the TLS object, if any.
    fn command(&self, subcommand: &str) -> QemuImg {
        let cmd = QemuImg::new(subcommand);
        match &self.tls {
            Some(t) => cmd.arg("--object").arg(format!(
                "tls-creds-psk,id={TLS_OBJECT},endpoint=client,dir={},username={}",
                escape(&t.dir.display().to_string()),
                escape(&t.identity)
            )),
            None => cmd,
        }
    }

    async fn map(&self, extra: &str) -> Result<Vec<MapEntry>> {
        let cmd = self
            .command("map")
            .arg("--output=json")
            .arg("--image-opts")
            .arg(format!("{}{extra}", self.opts("")?));
        let out = cmd.run().await?;
        cmd.parse(&out)
    }
}

#[derive(Debug, Deserialize)]
struct SizeJson {
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
}

/// The export's size in bytes.
pub async fn size(src: &NbdSource) -> Result<u64> {
    let cmd = src
        .command("info")
        .arg("--output=json")
        .arg("--image-opts")
        .arg(src.opts("")?);
    let out = cmd.run().await?;
    let info: SizeJson = cmd.parse(&out)?;
    Ok(info.virtual_size)
}

/// The ranges of the export that may read as non-zero.
pub async fn data_extents(src: &NbdSource) -> Result<Vec<Extent>> {
    let entries = src.map("").await?;
    Ok(merge(entries.into_iter().filter(|e| !e.zero).map(|e| {
        Extent {
            start: e.start,
            length: e.length,
        }
    })))
}

/// The ranges the bitmap `bitmap`, offered by the export, marks dirty.
pub async fn dirty_extents(src: &NbdSource, bitmap: &str) -> Result<Vec<Extent>> {
    let entries = src
        .map(&format!(
            ",x-dirty-bitmap=qemu:dirty-bitmap:{}",
            escape(bitmap)
        ))
        .await?;
    // With x-dirty-bitmap, qemu reports the dirty areas as "data": false.
    Ok(merge(entries.into_iter().filter(|e| !e.data).map(|e| {
        Extent {
            start: e.start,
            length: e.length,
        }
    })))
}

/// Copy the bytes `[offset, offset + len)` of the export into a new raw
/// file `dest`, which must not exist.
pub async fn read_range(
    src: &NbdSource,
    offset: u64,
    len: u64,
    dest: &std::path::Path,
) -> Result<()> {
    src.command("convert")
        .arg("--image-opts")
        .arg(format!(
            "driver=raw,offset={offset},size={len},{}",
            src.opts("file.")?
        ))
        .arg("-O")
        .arg("raw")
        .image(dest)?
        .run()
        .await
        .map(drop)
}
