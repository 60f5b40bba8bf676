//! The repository check's memo of clean `qemu-img check`s (migration
//! 0027): each image's file fingerprint when it was last found clean.

use scoria_model::ImageId;
use sqlx::Row;

use crate::{Conn, Result, now, parse};

/// The fingerprints of the images of `backend` as their last clean
/// `qemu-img check` saw them (migration 0027), by image.
pub async fn image_check_memo(
    conn: &mut Conn,
    backend: &str,
) -> Result<std::collections::HashMap<ImageId, String>> {
    let rows = sqlx::query(
        "SELECT c.image_id, c.fingerprint FROM image_checks c
           JOIN images i ON i.id = c.image_id WHERE i.backend = $1",
    )
    .bind(backend)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                parse("image id", r.try_get::<&str, _>("image_id")?)?,
                r.try_get("fingerprint")?,
            ))
        })
        .collect()
}

/// Record what checks saw: `Some(fingerprint)` for an image `qemu-img
/// check` found clean, `None` to forget an image found wrong. Images gone
/// meanwhile are skipped.
pub async fn image_check_record(conn: &mut Conn, seen: &[(ImageId, Option<String>)]) -> Result<()> {
    let at = now();
    for (id, fingerprint) in seen {
        match fingerprint {
            Some(f) => {
                sqlx::query(
                    "INSERT INTO image_checks (image_id, fingerprint, checked_at)
                     SELECT id, $2, $3 FROM images WHERE id = $1
                     ON CONFLICT (image_id) DO UPDATE SET
                         fingerprint = excluded.fingerprint, checked_at = excluded.checked_at",
                )
                .bind(id.to_string())
                .bind(f)
                .bind(&at)
                .execute(&mut *conn)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM image_checks WHERE image_id = $1")
                    .bind(id.to_string())
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    Ok(())
}
