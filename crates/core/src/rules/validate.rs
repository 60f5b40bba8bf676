//! Cinder's limits on what users type: names, descriptions, metadata, sizes,
//! spec keys. Every message is Cinder's wording, so clients that parse them
//! (and tempest, which compares some) see what they expect.

use std::collections::BTreeMap;

use scoria_model::volume::{
    MAX_DESCRIPTION_LEN, MAX_METADATA_KEY_LEN, MAX_METADATA_VALUE_LEN, MAX_NAME_LEN, MAX_VOLUME_GIB,
};

use crate::error::{Error, Result};

/// Longest spec key and value (volume types, group types).
pub const MAX_SPEC_LEN: usize = 255;

/// Check user-supplied text against Cinder's limits.
pub fn validate_text(field: &str, value: &str, max: usize) -> Result<()> {
    if value.chars().count() > max {
        return Err(Error::Invalid(format!(
            "Invalid input for field/attribute {field}. Value: {}... is longer than {max} characters.",
            value.chars().take(16).collect::<String>()
        )));
    }
    Ok(())
}

/// Check what a user names a volume, snapshot or group (its name and
/// description, if given) and the metadata they give it, against Cinder's
/// limits.
pub fn validate_described(
    name: Option<&str>,
    description: Option<&str>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    if let Some(n) = name {
        validate_text("name", n, MAX_NAME_LEN)?;
    }
    if let Some(d) = description {
        validate_text("description", d, MAX_DESCRIPTION_LEN)?;
    }
    validate_metadata(metadata)
}

/// Check metadata keys and values against Cinder's limits.
pub fn validate_metadata(metadata: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in metadata {
        if k.is_empty() {
            return Err(Error::Invalid(
                "Invalid input received: Metadata property key blank.".into(),
            ));
        }
        if k.chars().count() > MAX_METADATA_KEY_LEN {
            return Err(Error::Invalid(format!(
                "Invalid input received: Metadata property key {}... is longer than {MAX_METADATA_KEY_LEN} characters.",
                k.chars().take(16).collect::<String>()
            )));
        }
        if v.chars().count() > MAX_METADATA_VALUE_LEN {
            return Err(Error::Invalid(format!(
                "Invalid input received: Metadata property value for key {k} is longer than {MAX_METADATA_VALUE_LEN} characters."
            )));
        }
    }
    Ok(())
}

pub fn volume_size(size: i64) -> Result<()> {
    if size <= 0 {
        return Err(Error::Invalid(format!(
            "Invalid input received: Volume size '{size}' must be an integer and greater than 0."
        )));
    }
    if size > MAX_VOLUME_GIB {
        return Err(Error::Invalid(format!(
            "Invalid input received: Volume size {size}G is larger than the largest volume Scoria makes ({MAX_VOLUME_GIB}G)."
        )));
    }
    Ok(())
}

/// Check extra specs as Cinder's schemas do: keys of 1–255 characters among
/// letters, digits and `-_:.` (and space and `/` when `spaces` is set, as on
/// type create), values of at most 255 characters.
pub fn validate_specs(what: &str, specs: &BTreeMap<String, String>, spaces: bool) -> Result<()> {
    for (k, v) in specs {
        let ok_char = |c: char| {
            c.is_ascii_alphanumeric()
                || matches!(c, '-' | '_' | ':' | '.')
                || (spaces && matches!(c, ' ' | '/'))
        };
        if k.is_empty() || k.chars().count() > MAX_SPEC_LEN || !k.chars().all(ok_char) {
            return Err(Error::Invalid(format!(
                "Invalid input for field/attribute {what}: key {k:?} must be 1 to {MAX_SPEC_LEN} characters among letters, digits and '-_:.'{}.",
                if spaces { ", space and '/'" } else { "" }
            )));
        }
        if v.chars().count() > MAX_SPEC_LEN {
            return Err(Error::Invalid(format!(
                "Invalid input for field/attribute {what}: the value of {k} is longer than {MAX_SPEC_LEN} characters."
            )));
        }
    }
    Ok(())
}
