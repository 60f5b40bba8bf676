//! Volume types, their extra specs, project access and encryption specs.
//!
//! A type is public (every project may use it) or private (only the projects
//! in `volume_type_projects` and admins). Its extra specs are what the
//! scheduler matches against backends; its encryption spec (at most one) says
//! how its volumes must be encrypted; `qos_specs_id` names the QoS specs
//! associated with it (see `qos_specs.rs`).

use std::collections::BTreeMap;

use scoria_model::{EncryptionId, QosSpecsId, VolumeTypeId};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::shared::{KeyValues, NamedTypes};
use crate::{Conn, Result, now, parse};

const TYPES: NamedTypes = NamedTypes {
    table: "volume_types",
    what: "Volume Type",
};
const EXTRA_SPECS: KeyValues = KeyValues {
    table: "volume_type_extra_specs",
    owner: "volume_type_id",
};

/// Id of `__DEFAULT__`, the type every installation starts with (seeded by the
/// first migration).
pub const DEFAULT_TYPE_ID: &str = "7a3d2a5e-1b4c-4f0e-9d8a-0c5e6f7a8b90";
/// Name of the default type, as Cinder names it.
pub const DEFAULT_TYPE_NAME: &str = "__DEFAULT__";

#[derive(Clone, Debug, PartialEq)]
pub struct VolumeType {
    pub id: VolumeTypeId,
    pub name: String,
    pub description: Option<String>,
    pub is_public: bool,
    pub extra_specs: BTreeMap<String, String>,
    pub qos_specs_id: Option<QosSpecsId>,
    pub created_at: String,
    pub updated_at: Option<String>,
}

fn from_row(r: &SqliteRow) -> Result<VolumeType> {
    let qos: Option<&str> = r.try_get("qos_specs_id")?;
    Ok(VolumeType {
        id: parse("volume type id", r.try_get::<&str, _>("id")?)?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        is_public: r.try_get("is_public")?,
        extra_specs: BTreeMap::new(),
        qos_specs_id: qos.map(|q| parse("qos specs id", q)).transpose()?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

async fn with_specs(conn: &mut Conn, mut t: VolumeType) -> Result<VolumeType> {
    t.extra_specs = volume_type_extra_specs_get(conn, t.id).await?;
    Ok(t)
}

pub async fn volume_type_get(conn: &mut Conn, id: VolumeTypeId) -> Result<Option<VolumeType>> {
    let row = sqlx::query("SELECT * FROM volume_types WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(r) => Ok(Some(with_specs(conn, from_row(&r)?).await?)),
        None => Ok(None),
    }
}

/// The names of the given types (those that exist), in one query.
pub async fn volume_type_names(
    conn: &mut Conn,
    ids: &[VolumeTypeId],
) -> Result<BTreeMap<VolumeTypeId, String>> {
    let mut out = BTreeMap::new();
    let rows = sqlx::query(
        "SELECT id, name FROM volume_types WHERE id IN (SELECT value FROM json_each($1))",
    )
    .bind(crate::shared::id_list(ids))
    .fetch_all(conn)
    .await?;
    for row in rows {
        let id: &str = row.try_get("id")?;
        out.insert(parse("volume type id", id)?, row.try_get("name")?);
    }
    Ok(out)
}

pub async fn volume_type_get_by_name(conn: &mut Conn, name: &str) -> Result<Option<VolumeType>> {
    let row = sqlx::query("SELECT * FROM volume_types WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(r) => Ok(Some(with_specs(conn, from_row(&r)?).await?)),
        None => Ok(None),
    }
}

/// Types by Cinder's list rule. `is_public`: `Some(true)` lists the public
/// types and, when `project` is given, the private ones shared with it;
/// `Some(false)` only the private ones; `None` every type.
pub async fn volume_type_list(
    conn: &mut Conn,
    is_public: Option<bool>,
    project: Option<&str>,
) -> Result<Vec<VolumeType>> {
    let rows = sqlx::query(
        "SELECT * FROM volume_types t
         WHERE $1 IS NULL
            OR t.is_public = $1
            OR ($1 AND $2 IS NOT NULL AND EXISTS (
                   SELECT 1 FROM volume_type_projects p
                   WHERE p.volume_type_id = t.id AND p.project_id = $2))
         ORDER BY t.name",
    )
    .bind(is_public)
    .bind(project)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(with_specs(conn, from_row(r)?).await?);
    }
    Ok(out)
}

/// Create a type. A name already taken is `Duplicate`.
pub async fn volume_type_create(
    conn: &mut Conn,
    id: VolumeTypeId,
    name: &str,
    description: Option<&str>,
    is_public: bool,
    extra_specs: &BTreeMap<String, String>,
) -> Result<()> {
    TYPES
        .create(conn, &id.to_string(), name, description, is_public)
        .await?;
    volume_type_extra_specs_merge(conn, id, extra_specs).await
}

/// Change what is given. Returns whether the type exists; a name taken by
/// another type is `Duplicate`.
pub async fn volume_type_update(
    conn: &mut Conn,
    id: VolumeTypeId,
    name: Option<&str>,
    description: Option<&str>,
    is_public: Option<bool>,
) -> Result<bool> {
    TYPES
        .update(conn, &id.to_string(), name, description, is_public)
        .await
}

/// Delete a type with its extra specs, access list, encryption spec and
/// per-type quota limits, if no volume uses it and no group lists it. Returns
/// `Ok(None)` when it does not exist and `Ok(Some(false))` when volumes or
/// groups still use it.
pub async fn volume_type_delete(conn: &mut Conn, id: VolumeTypeId) -> Result<Option<bool>> {
    let r = sqlx::query(
        "DELETE FROM volume_types WHERE id = $1
         AND NOT EXISTS (SELECT 1 FROM volumes v WHERE v.volume_type_id = $1)
         AND NOT EXISTS (SELECT 1 FROM volume_group_volume_types g WHERE g.volume_type_id = $1)",
    )
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() == 1 {
        crate::quotas::quota_forget_type(conn, id).await?;
        return Ok(Some(true));
    }
    let exists: Option<String> = sqlx::query_scalar("SELECT id FROM volume_types WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(exists.map(|_| false))
}

/// Does any volume (in any status, in any project) have this type?
pub async fn volume_type_in_use(conn: &mut Conn, id: VolumeTypeId) -> Result<bool> {
    let used: Option<String> =
        sqlx::query_scalar("SELECT id FROM volumes WHERE volume_type_id = $1 LIMIT 1")
            .bind(id.to_string())
            .fetch_optional(conn)
            .await?;
    Ok(used.is_some())
}

// ---------------------------------------------------------------------------
// Extra specs

pub async fn volume_type_extra_specs_get(
    conn: &mut Conn,
    id: VolumeTypeId,
) -> Result<BTreeMap<String, String>> {
    EXTRA_SPECS.get(conn, &id.to_string()).await
}

/// Add or overwrite the given specs; the others stay.
pub async fn volume_type_extra_specs_merge(
    conn: &mut Conn,
    id: VolumeTypeId,
    specs: &BTreeMap<String, String>,
) -> Result<()> {
    EXTRA_SPECS.merge(conn, &id.to_string(), specs).await
}

/// Remove one spec; returns whether it was there.
pub async fn volume_type_extra_spec_delete(
    conn: &mut Conn,
    id: VolumeTypeId,
    key: &str,
) -> Result<bool> {
    EXTRA_SPECS.delete(conn, &id.to_string(), key).await
}

// ---------------------------------------------------------------------------
// Project access (private types)

/// Projects a private type is shared with, in order.
pub async fn volume_type_access_list(conn: &mut Conn, id: VolumeTypeId) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT project_id FROM volume_type_projects WHERE volume_type_id = $1
         ORDER BY project_id",
    )
    .bind(id.to_string())
    .fetch_all(conn)
    .await?)
}

/// Is the type shared with the project?
pub async fn volume_type_access_has(
    conn: &mut Conn,
    id: VolumeTypeId,
    project: &str,
) -> Result<bool> {
    let found: Option<String> = sqlx::query_scalar(
        "SELECT project_id FROM volume_type_projects
         WHERE volume_type_id = $1 AND project_id = $2",
    )
    .bind(id.to_string())
    .bind(project)
    .fetch_optional(conn)
    .await?;
    Ok(found.is_some())
}

/// Share the type with a project; `false` when it already was.
pub async fn volume_type_access_add(
    conn: &mut Conn,
    id: VolumeTypeId,
    project: &str,
) -> Result<bool> {
    let r = sqlx::query(
        "INSERT INTO volume_type_projects (volume_type_id, project_id) VALUES ($1, $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(id.to_string())
    .bind(project)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Stop sharing the type with a project; `false` when it was not shared.
pub async fn volume_type_access_remove(
    conn: &mut Conn,
    id: VolumeTypeId,
    project: &str,
) -> Result<bool> {
    let r = sqlx::query(
        "DELETE FROM volume_type_projects WHERE volume_type_id = $1 AND project_id = $2",
    )
    .bind(id.to_string())
    .bind(project)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

// ---------------------------------------------------------------------------
// Encryption specs

/// How the volumes of a type are to be encrypted.
#[derive(Clone, Debug, PartialEq)]
pub struct Encryption {
    pub volume_type_id: VolumeTypeId,
    pub encryption_id: EncryptionId,
    pub provider: String,
    pub cipher: Option<String>,
    pub key_size: Option<i64>,
    pub control_location: String,
    pub created_at: String,
    pub updated_at: Option<String>,
}

/// Changes to an encryption spec; `None` keeps a field.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EncryptionChange {
    pub provider: Option<String>,
    pub cipher: Option<Option<String>>,
    pub key_size: Option<Option<i64>>,
    pub control_location: Option<String>,
}

/// Whether a type exists and, if so, whether it has an encryption spec, in
/// one query (a create's check inside its transaction).
pub async fn volume_type_exists_encrypted(
    conn: &mut Conn,
    id: VolumeTypeId,
) -> Result<Option<bool>> {
    let row: Option<bool> = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM volume_type_encryption e WHERE e.volume_type_id = t.id)
         FROM volume_types t WHERE t.id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

pub async fn volume_type_encryption_get(
    conn: &mut Conn,
    id: VolumeTypeId,
) -> Result<Option<Encryption>> {
    let row = sqlx::query("SELECT * FROM volume_type_encryption WHERE volume_type_id = $1")
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.map(|r| {
        Ok(Encryption {
            volume_type_id: parse("volume type id", r.try_get::<&str, _>("volume_type_id")?)?,
            encryption_id: parse("encryption id", r.try_get::<&str, _>("encryption_id")?)?,
            provider: r.try_get("provider")?,
            cipher: r.try_get("cipher")?,
            key_size: r.try_get("key_size")?,
            control_location: r.try_get("control_location")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    })
    .transpose()
}

/// Record the encryption spec of a type; `false` when it already has one.
pub async fn volume_type_encryption_create(conn: &mut Conn, e: &Encryption) -> Result<bool> {
    let r = sqlx::query(
        "INSERT INTO volume_type_encryption
            (volume_type_id, encryption_id, provider, cipher, key_size, control_location, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(e.volume_type_id.to_string())
    .bind(e.encryption_id.to_string())
    .bind(&e.provider)
    .bind(&e.cipher)
    .bind(e.key_size)
    .bind(&e.control_location)
    .bind(&e.created_at)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Change the encryption spec of a type; `false` when it has none.
pub async fn volume_type_encryption_update(
    conn: &mut Conn,
    id: VolumeTypeId,
    c: &EncryptionChange,
) -> Result<bool> {
    // Nullable fields: a flag says whether to set them (to a value or NULL).
    let r = sqlx::query(
        "UPDATE volume_type_encryption SET
            provider = COALESCE($2, provider),
            cipher = CASE WHEN $3 THEN $4 ELSE cipher END,
            key_size = CASE WHEN $5 THEN $6 ELSE key_size END,
            control_location = COALESCE($7, control_location),
            updated_at = $8
         WHERE volume_type_id = $1",
    )
    .bind(id.to_string())
    .bind(&c.provider)
    .bind(c.cipher.is_some())
    .bind(c.cipher.clone().flatten())
    .bind(c.key_size.is_some())
    .bind(c.key_size.flatten())
    .bind(&c.control_location)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Remove the encryption spec of a type; `false` when it had none.
pub async fn volume_type_encryption_delete(conn: &mut Conn, id: VolumeTypeId) -> Result<bool> {
    let r = sqlx::query("DELETE FROM volume_type_encryption WHERE volume_type_id = $1")
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreError;
    use crate::testing;

    #[tokio::test]
    async fn the_default_type_exists_and_names_are_unique() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        let d = volume_type_get_by_name(&mut tx, DEFAULT_TYPE_NAME)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.id.to_string(), DEFAULT_TYPE_ID);
        let id = VolumeTypeId::new();
        let specs = [("volume_backend_name".to_string(), "file".to_string())].into();
        volume_type_create(&mut tx, id, "private", None, false, &specs)
            .await
            .unwrap();
        let again =
            volume_type_create(&mut tx, VolumeTypeId::new(), "private", None, true, &specs).await;
        assert!(matches!(again, Err(StoreError::Duplicate(_))));
        assert_eq!(
            volume_type_get(&mut tx, id)
                .await
                .unwrap()
                .unwrap()
                .extra_specs,
            specs
        );
        // Renaming to a taken name is a duplicate; to a free one works.
        let clash = volume_type_update(&mut tx, id, Some(DEFAULT_TYPE_NAME), None, None).await;
        assert!(matches!(clash, Err(StoreError::Duplicate(_))));
        assert!(
            volume_type_update(&mut tx, id, Some("renamed"), Some("d"), Some(false))
                .await
                .unwrap()
        );
        let t = volume_type_get(&mut tx, id).await.unwrap().unwrap();
        assert_eq!(
            (t.name.as_str(), t.description.as_deref()),
            ("renamed", Some("d"))
        );
        assert!(
            !volume_type_update(&mut tx, VolumeTypeId::new(), Some("x"), None, None)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn listing_follows_cinders_visibility_rule() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        let private = VolumeTypeId::new();
        let shared = VolumeTypeId::new();
        let none = BTreeMap::new();
        volume_type_create(&mut tx, private, "a-private", None, false, &none)
            .await
            .unwrap();
        volume_type_create(&mut tx, shared, "b-shared", None, false, &none)
            .await
            .unwrap();
        assert!(volume_type_access_add(&mut tx, shared, "p").await.unwrap());
        assert!(!volume_type_access_add(&mut tx, shared, "p").await.unwrap());
        let names = |v: Vec<VolumeType>| v.into_iter().map(|t| t.name).collect::<Vec<_>>();
        // (is_public, project) -> names
        let cases: &[(Option<bool>, Option<&str>, &[&str])] = &[
            (Some(true), Some("p"), &["__DEFAULT__", "b-shared"]),
            (Some(true), Some("q"), &["__DEFAULT__"]),
            (Some(true), None, &["__DEFAULT__"]),
            (Some(false), None, &["a-private", "b-shared"]),
            (None, None, &["__DEFAULT__", "a-private", "b-shared"]),
        ];
        for (public, project, want) in cases {
            let got = names(volume_type_list(&mut tx, *public, *project).await.unwrap());
            assert_eq!(&got, want, "{public:?} {project:?}");
        }
        assert!(volume_type_access_has(&mut tx, shared, "p").await.unwrap());
        assert_eq!(
            volume_type_access_list(&mut tx, shared).await.unwrap(),
            vec!["p".to_string()]
        );
        assert!(
            volume_type_access_remove(&mut tx, shared, "p")
                .await
                .unwrap()
        );
        assert!(
            !volume_type_access_remove(&mut tx, shared, "p")
                .await
                .unwrap()
        );
        // Deleting takes the access list and the specs along.
        assert_eq!(
            volume_type_delete(&mut tx, private).await.unwrap(),
            Some(true)
        );
        assert_eq!(volume_type_delete(&mut tx, private).await.unwrap(), None);
    }

    #[tokio::test]
    async fn encryption_specs_round_trip() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        let t = VolumeTypeId::new();
        volume_type_create(&mut tx, t, "enc", None, true, &BTreeMap::new())
            .await
            .unwrap();
        let e = Encryption {
            volume_type_id: t,
            encryption_id: EncryptionId::new(),
            provider: "luks".into(),
            cipher: Some("aes-xts-plain64".into()),
            key_size: Some(256),
            control_location: "front-end".into(),
            created_at: now(),
            updated_at: None,
        };
        assert!(volume_type_encryption_create(&mut tx, &e).await.unwrap());
        assert!(!volume_type_encryption_create(&mut tx, &e).await.unwrap());
        let change = EncryptionChange {
            cipher: Some(None),
            key_size: Some(Some(128)),
            ..Default::default()
        };
        assert!(
            volume_type_encryption_update(&mut tx, t, &change)
                .await
                .unwrap()
        );
        let got = volume_type_encryption_get(&mut tx, t)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (got.provider.as_str(), got.cipher, got.key_size),
            ("luks", None, Some(128))
        );
        assert!(volume_type_encryption_delete(&mut tx, t).await.unwrap());
        assert!(!volume_type_encryption_delete(&mut tx, t).await.unwrap());
        assert!(
            !volume_type_encryption_update(&mut tx, t, &change)
                .await
                .unwrap()
        );
    }
}
