//! The hashes the image service records of an image's bytes: Glance's
//! `checksum` (md5) and `os_hash_value` (sha512), computed together in one
//! pass; and the names of backup chunks (sha256).
//!
//! Why a crate of its own: the hash functions are generic, so their code is
//! generated in the crate that calls them. Called from `scoria-core`, a test
//! build (opt-level 0) hashed a GiB in about a minute; here, behind
//! non-generic functions and built at opt-level 3 in every profile (the
//! workspace `Cargo.toml`), it takes about three seconds.

use md5::Md5;
use sha2::{Digest, Sha512};

/// Both hashes, fed chunk by chunk.
#[derive(Clone, Default)]
pub struct ImageHasher {
    md5: Md5,
    sha512: Sha512,
    len: u64,
}

/// What [`ImageHasher::finish`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageDigest {
    /// Bytes hashed.
    pub len: u64,
    /// Lower-case hex.
    pub md5: String,
    /// Lower-case hex.
    pub sha512: String,
}

impl ImageHasher {
    pub fn new() -> ImageHasher {
        ImageHasher::default()
    }

    #[inline(never)]
    pub fn update(&mut self, bytes: &[u8]) {
        self.md5.update(bytes);
        self.sha512.update(bytes);
        self.len += bytes.len() as u64;
    }

    #[inline(never)]
    pub fn finish(self) -> ImageDigest {
        ImageDigest {
            len: self.len,
            md5: hex::encode(self.md5.finalize()),
            sha512: hex::encode(self.sha512.finalize()),
        }
    }
}

/// A backup chunk's name: the sha256 of `data` (lower-case hex), or `None`
/// when `data` is all zeroes (a chunk a backup does not store). Here for the
/// same reason as [`ImageHasher`]: every byte of a backed-up volume passes
/// through it.
#[inline(never)]
pub fn chunk_digest(data: &[u8]) -> Option<String> {
    if data.iter().all(|b| *b == 0) {
        return None;
    }
    Some(sha256_hex(data))
}

/// sha256 of `data`, lower-case hex.
#[inline(never)]
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        let mut h = ImageHasher::new();
        h.update(b"a");
        h.update(b"bc");
        let d = h.finish();
        assert_eq!(d.len, 3);
        assert_eq!(d.md5, "900150983cd24fb0d6963f7d28e17f72");
        assert!(d.sha512.starts_with("ddaf35a193617aba"), "{}", d.sha512);
    }

    #[test]
    fn chunk_digests() {
        assert_eq!(chunk_digest(&[0; 4096]), None);
        assert_eq!(
            chunk_digest(b"abc").as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
    }
}
