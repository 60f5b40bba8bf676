//! An export's directory made ready for a new daemon: private, holding exactly
//! the PSK its TLS needs and the Diffie-Hellman group to go with it, no stale
//! NBD socket; and the key read back when a running daemon is adopted.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{NBD_SOCKET, PSK_DIR, PSK_FILE, io_err, is_not_found, private_dir};
use crate::export::Result;

/// The Diffie-Hellman group qemu's TLS server offers, in the file it looks for
/// next to `keys.psk`: RFC 7919's `ffdhe2048`, a public standard group, as
/// PKCS#3 PEM. Without this file qemu generates fresh 2048-bit parameters each
/// time a daemon starts, which costs 0.15 to 2 s of CPU; the published group is
/// as strong and is what RFC 7919 asks servers to use. (PSK sessions mostly
/// negotiate ECDHE-PSK and need no DH group at all.)
const DH_PARAMS_FILE: &str = "dh-params.pem";
const FFDHE2048_PEM: &str = "\
-----BEGIN DH PARAMETERS-----\n\
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz\n\
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a\n\
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7\n\
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi\n\
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD\n\
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==\n\
-----END DH PARAMETERS-----\n";

/// The content of an export's `keys.psk`, if it has one.
pub(super) async fn read_key_file(dir: &Path) -> Result<Option<String>> {
    let path = dir.join(PSK_DIR).join(PSK_FILE);
    match tokio::fs::read_to_string(&path).await {
        Ok(text) => Ok(Some(text)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(io_err(format!("reading {}", path.display()))(e)),
    }
}

/// Make an export's directory ready for a new daemon: private, with exactly the
/// key it needs (written whole under a temporary name and renamed, so that a
/// TLS handshake never reads half a file), and no stale NBD socket.
pub(super) async fn prepare_dir(dir: &Path, key_line: Option<&str>) -> Result<()> {
    let dir = dir.to_owned();
    let key_line = key_line.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        private_dir(&dir)?;
        let psk_dir = dir.join(PSK_DIR);
        match key_line {
            Some(line) => {
                private_dir(&psk_dir)?;
                let temp = psk_dir.join(format!(".{PSK_FILE}.tmp"));
                let target = psk_dir.join(PSK_FILE);
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .mode(0o600)
                    .open(&temp)
                    .map_err(io_err(format!("creating {}", temp.display())))?;
                file.write_all(line.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(io_err(format!("writing {}", temp.display())))?;
                std::fs::rename(&temp, &target)
                    .map_err(io_err(format!("renaming {}", temp.display())))?;
                let dh = psk_dir.join(DH_PARAMS_FILE);
                std::fs::write(&dh, FFDHE2048_PEM)
                    .map_err(io_err(format!("writing {}", dh.display())))?;
            }
            None => match std::fs::remove_dir_all(&psk_dir) {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(io_err(format!("removing {}", psk_dir.display()))(e)),
            },
        }
        let socket = dir.join(NBD_SOCKET);
        match std::fs::remove_file(&socket) {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(io_err(format!("removing {}", socket.display()))(e)),
        }
    })
    .await
    .map_err(|e| io_err("preparing an export directory")(std::io::Error::other(e)))?
}
