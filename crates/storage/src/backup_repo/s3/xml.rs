//! The two XML bodies Scoria reads from S3: a ListObjectsV2 page and an
//! error. Parsed with a pull parser, not by searching strings, because keys
//! come entity-escaped (`&amp;`, `&#x26;`) and a key can hold anything that
//! looks like markup once unescaped.

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;

/// One object of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub size: u64,
}

/// One page of ListObjectsV2.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Listing {
    pub objects: Vec<Object>,
    /// The token of the next page, when the listing is truncated.
    pub next: Option<String>,
}

/// Calls `on_end(path, text)` at the end of every element, with the element
/// names from the root down to it and its text content, unescaped (empty
/// for an element holding only elements).
fn walk(xml: &str, mut on_end: impl FnMut(&[String], &str)) -> Result<(), String> {
    let mut reader = Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) => {
                path.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                text.clear();
            }
            Event::Empty(e) => {
                path.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                on_end(&path, "");
                path.pop();
                text.clear();
            }
            Event::Text(t) => text.push_str(&t.xml_content().map_err(|e| e.to_string())?),
            Event::CData(t) => text.push_str(&t.decode().map_err(|e| e.to_string())?),
            Event::GeneralRef(r) => {
                if let Some(c) = r.resolve_char_ref().map_err(|e| e.to_string())? {
                    text.push(c);
                } else {
                    let name = r.decode().map_err(|e| e.to_string())?;
                    let resolved = resolve_predefined_entity(&name)
                        .ok_or_else(|| format!("unknown entity &{name};"))?;
                    text.push_str(resolved);
                }
            }
            Event::End(_) => {
                on_end(&path, &text);
                path.pop();
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !path.is_empty() {
        return Err(format!("the document ends inside <{}>", path.join("/")));
    }
    Ok(())
}

fn ends_with(path: &[String], tail: &[&str]) -> bool {
    path.len() >= tail.len()
        && path[path.len() - tail.len()..]
            .iter()
            .zip(tail)
            .all(|(a, b)| a == b)
}

/// A `ListBucketResult` page.
pub(super) fn parse_listing(xml: &str) -> Result<Listing, String> {
    let mut listing = Listing::default();
    let (mut key, mut size) = (None::<String>, None::<u64>);
    let mut truncated = false;
    let mut token = None;
    let mut bad = None;
    let mut root = None;
    walk(xml, |path, text| {
        if path.len() == 1 {
            root = Some(path[0].clone());
        }
        if ends_with(path, &["Contents", "Key"]) {
            key = Some(text.to_owned());
        } else if ends_with(path, &["Contents", "Size"]) {
            match text.trim().parse() {
                Ok(n) => size = Some(n),
                Err(_) => bad = Some(format!("object size {text:?}")),
            }
        } else if ends_with(path, &["Contents"]) {
            match (key.take(), size.take()) {
                (Some(key), Some(size)) => listing.objects.push(Object { key, size }),
                _ => bad = Some("an object without Key or Size".into()),
            }
        } else if path.len() == 2 && path[1] == "IsTruncated" {
            truncated = text.trim() == "true";
        } else if path.len() == 2 && path[1] == "NextContinuationToken" {
            token = Some(text.to_owned());
        }
    })?;
    if root.as_deref() != Some("ListBucketResult") {
        return Err(format!("expected ListBucketResult, found {root:?}"));
    }
    if let Some(bad) = bad {
        return Err(bad);
    }
    if truncated {
        listing.next = Some(token.ok_or("a truncated listing without NextContinuationToken")?);
    }
    Ok(listing)
}

/// An `<Error>` body's `Code` and `Message`.
pub(super) fn parse_error(xml: &str) -> Option<(String, String)> {
    let (mut code, mut message) = (None, String::new());
    walk(xml, |path, text| match path {
        [root, leaf] if root == "Error" && leaf == "Code" => code = Some(text.to_owned()),
        [root, leaf] if root == "Error" && leaf == "Message" => message = text.to_owned(),
        _ => {}
    })
    .ok()?;
    code.map(|c| (c, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_page_with_escaped_keys_and_a_token() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>b</Name><Prefix>p/</Prefix><KeyCount>3</KeyCount><MaxKeys>2</MaxKeys>
  <IsTruncated>true</IsTruncated>
  <Contents><Key>p/a&amp;b&lt;c&gt;</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified>
    <ETag>&quot;d41d8cd98f00b204e9800998ecf8427e&quot;</ETag><Size>0</Size><StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>p/&#x263A; &#65;</Key><Size>12345678901</Size></Contents>
  <Contents><Key><![CDATA[p/<raw>]]></Key><Size>7</Size></Contents>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
</ListBucketResult>"#;
        let l = parse_listing(xml).unwrap();
        let got: Vec<(&str, u64)> = l.objects.iter().map(|o| (o.key.as_str(), o.size)).collect();
        assert_eq!(
            got,
            vec![
                ("p/a&b<c>", 0),
                ("p/\u{263a} A", 12345678901),
                ("p/<raw>", 7)
            ]
        );
        assert_eq!(
            l.next.as_deref(),
            Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        );
    }

    #[test]
    fn the_last_page_and_an_empty_one() {
        let xml = "<ListBucketResult><IsTruncated>false</IsTruncated>\
                   <Contents><Key>k</Key><Size>1</Size></Contents></ListBucketResult>";
        assert_eq!(
            parse_listing(xml).unwrap(),
            Listing {
                objects: vec![Object {
                    key: "k".into(),
                    size: 1
                }],
                next: None
            }
        );
        let empty = "<ListBucketResult><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>";
        assert_eq!(parse_listing(empty).unwrap(), Listing::default());
    }

    #[test]
    fn malformed_listings_are_errors() {
        for bad in [
            "<ListBucketResult><Contents><Key>k</Key></Contents></ListBucketResult>",
            "<ListBucketResult><Contents><Key>k</Key><Size>x</Size></Contents></ListBucketResult>",
            "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
            "<ListBucketResult><Contents><Key>k",
            "<Error><Code>AccessDenied</Code></Error>",
            "<ListBucketResult><Contents><Key>&bogus;</Key><Size>1</Size></Contents></ListBucketResult>",
        ] {
            assert!(parse_listing(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_bodies() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided.</Message><RequestId>1</RequestId></Error>"#;
        let (code, msg) = parse_error(xml).unwrap();
        assert_eq!(code, "SignatureDoesNotMatch");
        assert!(msg.starts_with("The request signature"));
        assert_eq!(parse_error("<html>Bad Gateway</html>"), None);
        assert_eq!(parse_error("not xml <"), None);
    }
}
