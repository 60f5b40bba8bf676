//! The administrative state of volume services (enabled or disabled, and why).
//!
//! The services themselves come from the configuration (the scheduler and one
//! volume service per backend); a row exists only once an administrator
//! changed one. No row means enabled.

use sqlx::Row;

use crate::{Conn, Result, now};

/// What is recorded about one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceState {
    pub host: String,
    pub binary: String,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    pub frozen: bool,
    pub updated_at: String,
}

fn from_row(r: &sqlx::sqlite::SqliteRow) -> Result<ServiceState> {
    Ok(ServiceState {
        host: r.try_get("host")?,
        binary: r.try_get("binary_name")?,
        disabled: r.try_get("disabled")?,
        disabled_reason: r.try_get("disabled_reason")?,
        frozen: r.try_get("frozen")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// Every recorded service state.
pub async fn service_list(conn: &mut Conn) -> Result<Vec<ServiceState>> {
    let rows = sqlx::query(
        "SELECT host, binary_name, disabled, disabled_reason, frozen, updated_at FROM services
         ORDER BY host, binary_name",
    )
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// The recorded state of one service, if any.
pub async fn service_get(
    conn: &mut Conn,
    host: &str,
    binary: &str,
) -> Result<Option<ServiceState>> {
    let row = sqlx::query(
        "SELECT host, binary_name, disabled, disabled_reason, frozen, updated_at FROM services
         WHERE host = $1 AND binary_name = $2",
    )
    .bind(host)
    .bind(binary)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Enable or disable a service. `reason`: `None` keeps the recorded reason,
/// `Some(r)` replaces it (`Some(None)` clears it).
pub async fn service_set_disabled(
    conn: &mut Conn,
    host: &str,
    binary: &str,
    disabled: bool,
    reason: Option<Option<&str>>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO services (host, binary_name, disabled, disabled_reason, updated_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (host, binary_name) DO UPDATE SET
             disabled = excluded.disabled,
             disabled_reason = CASE WHEN $6 THEN excluded.disabled_reason
                                    ELSE services.disabled_reason END,
             updated_at = excluded.updated_at",
    )
    .bind(host)
    .bind(binary)
    .bind(disabled)
    .bind(reason.flatten())
    .bind(now())
    .bind(reason.is_some())
    .execute(conn)
    .await?;
    Ok(())
}

/// Freeze (`true`) or thaw a service, only if it is not already so. Returns
/// whether it changed.
pub async fn service_set_frozen(
    conn: &mut Conn,
    host: &str,
    binary: &str,
    frozen: bool,
) -> Result<bool> {
    let r = if frozen {
        sqlx::query(
            "INSERT INTO services (host, binary_name, disabled, frozen, updated_at)
             VALUES ($1, $2, FALSE, TRUE, $3)
             ON CONFLICT (host, binary_name) DO UPDATE SET
                 frozen = TRUE, updated_at = excluded.updated_at
             WHERE services.frozen = FALSE",
        )
    } else {
        sqlx::query(
            "UPDATE services SET frozen = FALSE, updated_at = $3
             WHERE host = $1 AND binary_name = $2 AND frozen = TRUE",
        )
    }
    .bind(host)
    .bind(binary)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[tokio::test]
    async fn states_are_upserted_and_reasons_kept_unless_replaced() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        assert!(service_list(&mut tx).await.unwrap().is_empty());
        // (disabled, reason change, expected state)
        type Step<'a> = (bool, Option<Option<&'a str>>, (bool, Option<&'a str>));
        let steps: &[Step] = &[
            (true, Some(Some("maintenance")), (true, Some("maintenance"))),
            (true, None, (true, Some("maintenance"))),
            (false, Some(None), (false, None)),
            (true, None, (true, None)),
        ];
        for (disabled, reason, (want_d, want_r)) in steps {
            service_set_disabled(&mut tx, "scoria@file", "cinder-volume", *disabled, *reason)
                .await
                .unwrap();
            let st = service_get(&mut tx, "scoria@file", "cinder-volume")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                (st.disabled, st.disabled_reason),
                (*want_d, want_r.map(str::to_owned)),
                "after {disabled} {reason:?}"
            );
        }
        assert_eq!(service_list(&mut tx).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn freezing_and_thawing_apply_once() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        let (h, b) = ("scoria@file", "cinder-volume");
        // (freeze?, applies?)
        for (frozen, applies) in [
            (false, false),
            (true, true),
            (true, false),
            (false, true),
            (false, false),
            (true, true),
        ] {
            assert_eq!(
                service_set_frozen(&mut tx, h, b, frozen).await.unwrap(),
                applies,
                "{frozen}"
            );
            let st = service_get(&mut tx, h, b).await.unwrap();
            assert_eq!(st.is_some_and(|s| s.frozen), frozen);
        }
        // Disabling keeps the freeze.
        service_set_disabled(&mut tx, h, b, true, None)
            .await
            .unwrap();
        let st = service_get(&mut tx, h, b).await.unwrap().unwrap();
        assert!(st.frozen && st.disabled);
    }
}
