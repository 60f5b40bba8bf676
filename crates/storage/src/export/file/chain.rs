//! An image's backing chain, read from the qcow2 headers by the exporter
//! itself, layer by layer, refusing what could make qemu open a file outside
//! the backend (see the parent module's doc).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{io_err, is_not_found};
use crate::Format;
use crate::export::{ExportError, Result};

/// The most layers a backing chain may have.
const MAX_CHAIN: usize = 64;

/// One layer of a backing chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Layer {
    pub(super) path: PathBuf,
    pub(super) format: Format,
}

/// Read the backing chain of `image` in `backend`, top first, refusing anything
/// that would make qemu read a file outside the backend (see the parent module's doc).
pub(super) fn read_chain(backend: &Path, image: &str) -> Result<Vec<Layer>> {
    let bad = |name: &str, detail: String| ExportError::BadImage {
        name: name.to_owned(),
        detail,
    };
    let mut layers = Vec::new();
    let mut seen = HashSet::new();
    let mut name = image.to_owned();
    loop {
        let format = crate::format_of_name(&name).map_err(|_| {
            bad(
                image,
                format!("its backing file {name:?} is not an image name of this backend"),
            )
        })?;
        if !seen.insert(name.clone()) {
            return Err(bad(image, format!("its backing chain loops at {name}")));
        }
        if layers.len() == MAX_CHAIN {
            return Err(bad(
                image,
                format!("its backing chain has more than {MAX_CHAIN} layers"),
            ));
        }
        let path = backend.join(&name);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(bad(&name, "not a regular file".into())),
            Err(e) if is_not_found(&e) && layers.is_empty() => {
                return Err(ExportError::ImageNotFound(name));
            }
            Err(e) if is_not_found(&e) => {
                return Err(bad(image, format!("its backing file {name} is missing")));
            }
            Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
        }
        let backing = match format {
            Format::Raw => None,
            Format::Qcow2 => {
                let header = crate::qcow2::read_header(&path).map_err(|e| match e {
                    crate::qcow2::HeaderError::Io(source) => ExportError::Io {
                        op: format!("reading the header of {}", path.display()),
                        source,
                    },
                    crate::qcow2::HeaderError::Invalid(detail) => bad(&name, detail),
                })?;
                if header.data_file.is_some() {
                    return Err(bad(&name, "it has an external data file".into()));
                }
                if let (Some(backing), Some(backing_format)) =
                    (&header.backing_file, &header.backing_format)
                    && crate::format_of_name(backing)
                        .is_ok_and(|f| f.as_str() != backing_format.as_str())
                {
                    return Err(bad(
                        &name,
                        format!("its header says backing file {backing} is {backing_format}"),
                    ));
                }
                header.backing_file
            }
        };
        layers.push(Layer { path, format });
        match backing {
            Some(next) => name = next,
            None => return Ok(layers),
        }
    }
}
