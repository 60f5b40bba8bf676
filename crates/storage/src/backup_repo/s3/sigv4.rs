//! AWS Signature Version 4, header form, for S3 requests.
//!
//! Written here rather than taken from an SDK: Scoria needs five S3 calls,
//! and the signature is three pages of a published algorithm that the unit
//! tests check against AWS's own worked example. The payload is always
//! hashed (`x-amz-content-sha256` is the body's sha256, never
//! `UNSIGNED-PAYLOAD`): the server then refuses a body damaged on the way.

use sha2::{Digest, Sha256};

pub(super) const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// HMAC-SHA256 (RFC 2104), over sha2's block of 64 bytes.
pub(super) fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut ipad = [0x36u8; BLOCK];
    let mut opad = [0x5cu8; BLOCK];
    for i in 0..BLOCK {
        ipad[i] ^= k[i];
        opad[i] ^= k[i];
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(data)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// sha256 of `data`, lower-case hex.
pub(super) fn sha256_hex(data: &[u8]) -> String {
    scoria_digest::sha256_hex(data)
}

/// SigV4's URI encoding: every byte but the unreserved ones (letters,
/// digits, `-._~`) as `%XX` (upper case); `/` kept when `keep_slash` (an
/// object key in a path).
pub(super) fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The canonical query string: names and values encoded, sorted by name
/// then value. Also what the request's URL carries, so the two agree.
pub(super) fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// One request to sign. `path` is already encoded (as sent); `headers` are
/// every header that is signed (at least `host`, `x-amz-content-sha256`,
/// `x-amz-date`).
pub(super) struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(&'a str, &'a str)],
    pub headers: &'a [(&'a str, &'a str)],
    pub payload_sha256: &'a str,
}

/// The canonical request, and the signed header names (`a;b;c`).
pub(super) fn canonical_request(r: &Request<'_>) -> (String, String) {
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(k, v)| {
            let value = v.split_whitespace().collect::<Vec<_>>().join(" ");
            (k.to_ascii_lowercase(), value)
        })
        .collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let creq = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        r.method,
        r.path,
        canonical_query(r.query),
        canonical_headers,
        signed,
        r.payload_sha256
    );
    (creq, signed)
}

/// `<date>/<region>/s3/aws4_request`.
pub(super) fn scope(amz_date: &str, region: &str) -> String {
    format!("{}/{region}/s3/aws4_request", &amz_date[..8])
}

pub(super) fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// The signature of `string_to_sign` with the key derived from the secret
/// for the day, region and service `s3`.
pub(super) fn signature(
    secret: &str,
    amz_date: &str,
    region: &str,
    string_to_sign: &str,
) -> String {
    let k_date = hmac_sha256(
        format!("AWS4{secret}").as_bytes(),
        &amz_date.as_bytes()[..8],
    );
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, b"s3");
    let k_signing = hmac_sha256(&k_service, b"aws4_request");
    hex(&hmac_sha256(&k_signing, string_to_sign.as_bytes()))
}

/// The `Authorization` header's value for `r`, sent at `amz_date`
/// (`YYYYMMDDTHHMMSSZ`, the request's `x-amz-date`).
pub(super) fn authorization(
    access_key: &str,
    secret: &str,
    region: &str,
    amz_date: &str,
    r: &Request<'_>,
) -> String {
    let (creq, signed) = canonical_request(r);
    let scope = scope(amz_date, region);
    let sts = string_to_sign(amz_date, &scope, &creq);
    let sig = signature(secret, amz_date, region, &sts);
    format!("{ALGORITHM} Credential={access_key}/{scope},SignedHeaders={signed},Signature={sig}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// AWS's worked example "GET Object" (Signature Calculations for the
    /// Authorization Header, S3 API reference): the documented canonical
    /// request, string to sign and signature.
    #[test]
    fn aws_get_object_example() {
        let date = "20130524T000000Z";
        let headers = [
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("Range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY),
            ("x-amz-date", date),
        ];
        let r = Request {
            method: "GET",
            path: "/test.txt",
            query: &[],
            headers: &headers,
            payload_sha256: EMPTY,
        };
        let (creq, signed) = canonical_request(&r);
        assert_eq!(
            creq,
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n\
             x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(signed, "host;range;x-amz-content-sha256;x-amz-date");
        let sts = string_to_sign(date, &scope(date, "us-east-1"), &creq);
        assert_eq!(
            sts,
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n\
             7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        assert_eq!(
            signature(secret, date, "us-east-1", &sts),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        assert_eq!(
            authorization("AKIAIOSFODNN7EXAMPLE", secret, "us-east-1", date, &r),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    /// RFC 4231 test case 2 (a key shorter than the block) and 6 (longer).
    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn query_and_paths_are_encoded_once_and_sorted() {
        assert_eq!(uri_encode("a b/c+d~", true), "a%20b/c%2Bd~");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
        assert_eq!(
            canonical_query(&[
                ("prefix", "p/chunks/"),
                ("list-type", "2"),
                ("continuation-token", "x=y")
            ]),
            "continuation-token=x%3Dy&list-type=2&prefix=p%2Fchunks%2F"
        );
    }
}
