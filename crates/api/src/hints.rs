//! `OS-SCH-HNT:scheduler_hints` on a volume create (and on the placement dry
//! run), validated as Cinder's schema does: an object (or null) whose
//! `same_host` and `different_host` are a volume UUID or an array of distinct
//! ones. Other hints are accepted and ignored, as Cinder's schema allows
//! them; `local_to_instance` needs a compute service Scoria does not have.

use scoria_core::rules::affinity::Hints;
use scoria_model::VolumeId;
use serde_json::{Map, Value};

use crate::fault::ApiError;

/// The body's top-level key.
pub const KEY: &str = "OS-SCH-HNT:scheduler_hints";

/// The affinity hints in `body` (none when the key is absent or null).
pub fn parse(body: &Map<String, Value>) -> Result<Hints, ApiError> {
    let hints = match body.get(KEY) {
        None | Some(Value::Null) => return Ok(Hints::default()),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid input for field/attribute {KEY}. Value: {other}. {other} is not of type 'object', 'null'"
            )));
        }
    };
    Ok(Hints {
        same_host: volumes(hints, "same_host")?,
        different_host: volumes(hints, "different_host")?,
    })
}

fn volumes(hints: &Map<String, Value>, key: &str) -> Result<Option<Vec<VolumeId>>, ApiError> {
    let Some(v) = hints.get(key) else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::bad_request(format!(
            "Invalid input for field/attribute {key}. Value: {v}. {v} is not valid under any of the given schemas: give a volume UUID or an array of distinct volume UUIDs."
        ))
    };
    let one = |s: &Value| s.as_str().and_then(|s| s.parse::<VolumeId>().ok());
    let ids = match v {
        Value::String(_) => vec![one(v).ok_or_else(invalid)?],
        Value::Array(items) => {
            let mut ids = Vec::with_capacity(items.len());
            for item in items {
                let id = one(item).ok_or_else(invalid)?;
                if ids.contains(&id) {
                    return Err(invalid());
                }
                ids.push(id);
            }
            ids
        }
        _ => return Err(invalid()),
    };
    Ok(Some(ids))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hints(v: Value) -> Result<Hints, ApiError> {
        parse(v.as_object().unwrap())
    }

    #[test]
    fn hints_as_cinder_accepts_and_refuses_them() {
        let a = "6ed2e33c-4f5e-4d5f-9d61-6f8a1d0b7c11";
        let b = "0b1f2d4e-8c3a-4e6b-a1f0-2d3c4b5a6978";
        let id = |s: &str| s.parse::<VolumeId>().unwrap();
        assert_eq!(hints(json!({})).unwrap(), Hints::default());
        assert_eq!(hints(json!({KEY: null})).unwrap(), Hints::default());
        assert_eq!(
            hints(json!({KEY: {"same_host": a, "query": "x"}})).unwrap(),
            Hints {
                same_host: Some(vec![id(a)]),
                different_host: None
            }
        );
        assert_eq!(
            hints(json!({KEY: {"different_host": [a, b]}})).unwrap(),
            Hints {
                same_host: None,
                different_host: Some(vec![id(a), id(b)])
            }
        );
        assert_eq!(
            hints(json!({KEY: {"different_host": []}})).unwrap(),
            Hints {
                same_host: None,
                different_host: Some(vec![])
            }
        );
        for bad in [
            json!({KEY: "same_host"}),
            json!({KEY: {"same_host": "not-a-uuid"}}),
            json!({KEY: {"same_host": 7}}),
            json!({KEY: {"different_host": [a, a]}}),
            json!({KEY: {"different_host": [a, 3]}}),
        ] {
            assert!(hints(bad.clone()).is_err(), "{bad} was accepted");
        }
    }
}
