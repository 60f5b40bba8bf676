//! How a volume row is read: as stored columns ([`from_row`]) or as one
//! JSON value per volume ([`JSON_ROW`], [`JSON_PAGE_ROW`] for lists), both
//! parsed by one function into a [`Volume`].

use std::collections::BTreeMap;
use std::str::FromStr;

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::Volume;
use crate::{Result, StoreError, parse};

/// The columns and the metadata of a volume, as the start of a JSON array.
macro_rules! columns {
    () => {
        "json_array(id, project_id, user_id, name, description, size, status,
    attach_status, migration_status, bootable, read_only, multiattach, availability_zone,
    volume_type_id, snapshot_id, source_volid, backend, image_id, glance_image_id,
    reservation_id, last_flow_id, created_at, updated_at, launched_at, group_id,
    json((SELECT json_group_object(m.key, m.value) FROM volume_metadata m
          WHERE m.volume_id = volumes.id))"
    };
}

/// A volume's columns, its metadata and its type's name as one JSON array:
/// a volume is read as one value (`SELECT {JSON_ROW} …`) instead of 25 plus
/// a row per metadata pair and a query for the type's name, because each
/// value and each row crossing from SQLite's thread costs more than
/// SQLite's work on it (most of what reading a page of 1000 cost).
/// [`Packed`] names the same columns in the same order.
pub(super) const JSON_ROW: &str = concat!(
    columns!(),
    ",\n    (SELECT t.name FROM volume_types t WHERE t.id = volumes.volume_type_id))"
);

/// [`JSON_ROW`] without the type's name, for pages: one query for the
/// names of a page's few types costs less than a lookup per row.
pub(super) const JSON_PAGE_ROW: &str = concat!(columns!(), ")");

/// The stored columns of a volume, in [`JSON_ROW`]'s order (booleans as
/// SQLite keeps them, 0 or 1), before their parsing into a [`Volume`].
#[derive(serde::Deserialize)]
struct Packed(
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    String,
    String,
    Option<String>,
    i64,
    Option<i64>,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    /// The metadata (absent when read from a plain row).
    #[serde(default)]
    BTreeMap<String, String>,
    /// The type's name (absent when read from a plain row).
    #[serde(default)]
    Option<String>,
);

pub(super) fn from_row(r: &SqliteRow) -> Result<Volume> {
    let flag = |c: &str| -> Result<i64> { Ok(i64::from(r.try_get::<bool, _>(c)?)) };
    from_packed(Packed(
        r.try_get("id")?,
        r.try_get("project_id")?,
        r.try_get("user_id")?,
        r.try_get("name")?,
        r.try_get("description")?,
        r.try_get("size")?,
        r.try_get("status")?,
        r.try_get("attach_status")?,
        r.try_get("migration_status")?,
        flag("bootable")?,
        r.try_get::<Option<bool>, _>("read_only")?.map(i64::from),
        flag("multiattach")?,
        r.try_get("availability_zone")?,
        r.try_get("volume_type_id")?,
        r.try_get("snapshot_id")?,
        r.try_get("source_volid")?,
        r.try_get("backend")?,
        r.try_get("image_id")?,
        r.try_get("glance_image_id")?,
        r.try_get("reservation_id")?,
        r.try_get("last_flow_id")?,
        r.try_get("created_at")?,
        r.try_get("updated_at")?,
        r.try_get("launched_at")?,
        r.try_get("group_id")?,
        BTreeMap::new(),
        None,
    ))
}

/// Parse one [`JSON_ROW`] value.
pub(super) fn from_json(j: &str) -> Result<Volume> {
    let p: Packed =
        serde_json::from_str(j).map_err(|e| StoreError::Corrupt(format!("volume row: {e}")))?;
    from_packed(p)
}

fn from_packed(p: Packed) -> Result<Volume> {
    fn opt<T: FromStr>(what: &str, s: Option<String>) -> Result<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        s.map(|s| parse(what, &s)).transpose()
    }
    Ok(Volume {
        id: parse("volume id", &p.0)?,
        project_id: p.1,
        user_id: p.2,
        name: p.3,
        description: p.4,
        size: p.5,
        status: parse("volume status", &p.6)?,
        attach_status: parse("attach status", &p.7)?,
        migration_status: p.8,
        bootable: p.9 != 0,
        read_only: p.10.map(|b| b != 0),
        multiattach: p.11 != 0,
        availability_zone: p.12,
        volume_type_id: parse("volume type id", &p.13)?,
        snapshot_id: p.14,
        source_volid: p.15,
        backend: p.16,
        image_id: opt("image id", p.17)?,
        glance_image_id: opt("image id", p.18)?,
        reservation_id: opt("reservation id", p.19)?,
        last_flow_id: p.20,
        created_at: p.21,
        updated_at: p.22,
        launched_at: p.23,
        metadata: p.25,
        group_id: opt("group id", p.24)?,
        volume_type_name: p.26,
    })
}
