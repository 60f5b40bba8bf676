//! QoS specs: named sets of limits (`read_iops_sec`, `total_bytes_sec`, …)
//! with a consumer (`front-end`: the hypervisor applies them, `back-end`: the
//! storage does, `both`), associated with volume types. Scoria stores and
//! shows them; nothing enforces them on I/O yet.

use std::collections::BTreeMap;

use scoria_model::{QosSpecsId, VolumeTypeId};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::{Conn, Result, StoreError, now, parse};

#[derive(Clone, Debug, PartialEq)]
pub struct QosSpecs {
    pub id: QosSpecsId,
    pub name: String,
    pub consumer: String,
    pub specs: BTreeMap<String, String>,
    pub created_at: String,
    pub updated_at: Option<String>,
}

fn from_row(r: &SqliteRow) -> Result<QosSpecs> {
    Ok(QosSpecs {
        id: parse("qos specs id", r.try_get::<&str, _>("id")?)?,
        name: r.try_get("name")?,
        consumer: r.try_get("consumer")?,
        specs: BTreeMap::new(),
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

async fn values(conn: &mut Conn, id: QosSpecsId) -> Result<BTreeMap<String, String>> {
    let rows = sqlx::query("SELECT key, value FROM qos_specs_values WHERE qos_specs_id = $1")
        .bind(id.to_string())
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("key")?, r.try_get("value")?)))
        .collect()
}

/// Create QoS specs. A name already taken is `Duplicate`.
pub async fn qos_specs_create(
    conn: &mut Conn,
    id: QosSpecsId,
    name: &str,
    consumer: &str,
    specs: &BTreeMap<String, String>,
) -> Result<()> {
    let r = sqlx::query(
        "INSERT INTO qos_specs (id, name, consumer, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
    )
    .bind(id.to_string())
    .bind(name)
    .bind(consumer)
    .bind(now())
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Duplicate(format!("QoS Specs {name}")));
    }
    qos_specs_update(conn, id, None, specs).await?;
    Ok(())
}

pub async fn qos_specs_get(conn: &mut Conn, id: QosSpecsId) -> Result<Option<QosSpecs>> {
    let row = sqlx::query("SELECT * FROM qos_specs WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(r) => {
            let mut q = from_row(&r)?;
            q.specs = values(conn, id).await?;
            Ok(Some(q))
        }
        None => Ok(None),
    }
}

/// Every QoS spec, oldest first.
pub async fn qos_specs_list(conn: &mut Conn) -> Result<Vec<QosSpecs>> {
    let rows = sqlx::query("SELECT * FROM qos_specs ORDER BY created_at, id")
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let mut q = from_row(r)?;
        q.specs = values(conn, q.id).await?;
        out.push(q);
    }
    Ok(out)
}

/// Set the consumer (when given) and add or overwrite the given specs.
/// Returns whether the QoS specs exist.
pub async fn qos_specs_update(
    conn: &mut Conn,
    id: QosSpecsId,
    consumer: Option<&str>,
    specs: &BTreeMap<String, String>,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE qos_specs SET consumer = COALESCE($2, consumer), updated_at = $3 WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(consumer)
    .bind(now())
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    for (k, v) in specs {
        sqlx::query(
            "INSERT INTO qos_specs_values (qos_specs_id, key, value) VALUES ($1, $2, $3)
             ON CONFLICT (qos_specs_id, key) DO UPDATE SET value = excluded.value",
        )
        .bind(id.to_string())
        .bind(k)
        .bind(v)
        .execute(&mut *conn)
        .await?;
    }
    Ok(true)
}

/// Remove the given keys (the caller checked they exist).
pub async fn qos_specs_delete_keys(conn: &mut Conn, id: QosSpecsId, keys: &[String]) -> Result<()> {
    for k in keys {
        sqlx::query("DELETE FROM qos_specs_values WHERE qos_specs_id = $1 AND key = $2")
            .bind(id.to_string())
            .bind(k)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Delete QoS specs that no type is associated with any more; returns whether
/// a row went.
pub async fn qos_specs_delete(conn: &mut Conn, id: QosSpecsId) -> Result<bool> {
    let r = sqlx::query(
        "DELETE FROM qos_specs WHERE id = $1
         AND NOT EXISTS (SELECT 1 FROM volume_types t WHERE t.qos_specs_id = $1)",
    )
    .bind(id.to_string())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The types associated with the QoS specs: (id, name), by name.
pub async fn qos_specs_associations(
    conn: &mut Conn,
    id: QosSpecsId,
) -> Result<Vec<(VolumeTypeId, String)>> {
    let rows =
        sqlx::query("SELECT id, name FROM volume_types WHERE qos_specs_id = $1 ORDER BY name")
            .bind(id.to_string())
            .fetch_all(conn)
            .await?;
    rows.iter()
        .map(|r| {
            Ok((
                parse("volume type id", r.try_get::<&str, _>("id")?)?,
                r.try_get("name")?,
            ))
        })
        .collect()
}

/// Associate a type with the QoS specs, if it has no association or already
/// this one. Returns whether the type is now associated with `id`.
pub async fn qos_specs_associate(
    conn: &mut Conn,
    id: QosSpecsId,
    type_id: VolumeTypeId,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE volume_types SET qos_specs_id = $1, updated_at = $3
         WHERE id = $2 AND (qos_specs_id IS NULL OR qos_specs_id = $1)",
    )
    .bind(id.to_string())
    .bind(type_id.to_string())
    .bind(now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Remove the association of one type with the QoS specs (none is fine).
pub async fn qos_specs_disassociate(
    conn: &mut Conn,
    id: QosSpecsId,
    type_id: VolumeTypeId,
) -> Result<()> {
    sqlx::query(
        "UPDATE volume_types SET qos_specs_id = NULL, updated_at = $3
         WHERE id = $2 AND qos_specs_id = $1",
    )
    .bind(id.to_string())
    .bind(type_id.to_string())
    .bind(now())
    .execute(conn)
    .await?;
    Ok(())
}

/// Remove every association with the QoS specs.
pub async fn qos_specs_disassociate_all(conn: &mut Conn, id: QosSpecsId) -> Result<()> {
    sqlx::query(
        "UPDATE volume_types SET qos_specs_id = NULL, updated_at = $2 WHERE qos_specs_id = $1",
    )
    .bind(id.to_string())
    .bind(now())
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;
    use crate::volume_types::{volume_type_create, volume_type_delete, volume_type_get};

    #[tokio::test]
    async fn create_update_associate_delete() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        let q = QosSpecsId::new();
        let specs = [("read_iops_sec".to_string(), "2000".to_string())].into();
        qos_specs_create(&mut tx, q, "gold", "front-end", &specs)
            .await
            .unwrap();
        let dup = qos_specs_create(&mut tx, QosSpecsId::new(), "gold", "both", &specs).await;
        assert!(matches!(dup, Err(StoreError::Duplicate(_))));
        let more = [("iops_bytes".to_string(), "500".to_string())].into();
        assert!(
            qos_specs_update(&mut tx, q, Some("both"), &more)
                .await
                .unwrap()
        );
        let got = qos_specs_get(&mut tx, q).await.unwrap().unwrap();
        assert_eq!(got.consumer, "both");
        assert_eq!(got.specs.len(), 2);
        qos_specs_delete_keys(&mut tx, q, &["iops_bytes".into()])
            .await
            .unwrap();
        assert_eq!(
            qos_specs_get(&mut tx, q).await.unwrap().unwrap().specs,
            specs
        );

        let t = VolumeTypeId::new();
        volume_type_create(&mut tx, t, "t", None, true, &BTreeMap::new())
            .await
            .unwrap();
        assert!(qos_specs_associate(&mut tx, q, t).await.unwrap());
        assert!(qos_specs_associate(&mut tx, q, t).await.unwrap(), "again");
        let other = QosSpecsId::new();
        qos_specs_create(&mut tx, other, "silver", "back-end", &BTreeMap::new())
            .await
            .unwrap();
        assert!(
            !qos_specs_associate(&mut tx, other, t).await.unwrap(),
            "a type has one QoS spec"
        );
        assert_eq!(
            volume_type_get(&mut tx, t)
                .await
                .unwrap()
                .unwrap()
                .qos_specs_id,
            Some(q)
        );
        assert_eq!(
            qos_specs_associations(&mut tx, q).await.unwrap(),
            vec![(t, "t".to_string())]
        );
        assert!(!qos_specs_delete(&mut tx, q).await.unwrap(), "in use");
        qos_specs_disassociate(&mut tx, q, t).await.unwrap();
        assert!(qos_specs_associations(&mut tx, q).await.unwrap().is_empty());
        qos_specs_associate(&mut tx, q, t).await.unwrap();
        qos_specs_disassociate_all(&mut tx, q).await.unwrap();
        assert!(qos_specs_delete(&mut tx, q).await.unwrap());
        assert!(qos_specs_get(&mut tx, q).await.unwrap().is_none());
        // A type associated with QoS specs can be deleted.
        qos_specs_associate(&mut tx, other, t).await.unwrap();
        assert_eq!(volume_type_delete(&mut tx, t).await.unwrap(), Some(true));
        assert_eq!(qos_specs_list(&mut tx).await.unwrap().len(), 1);
    }
}
