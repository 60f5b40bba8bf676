//! User messages: what a project should learn about an asynchronous operation
//! that failed (Cinder's `/messages`). A message is written by the flow that
//! failed, in the transaction that records the failure, and is kept until it
//! expires; expired messages are never returned and are deleted whenever a new
//! message is written.

use scoria_model::MessageId;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::shared::{Keyset, SqlValue};
use crate::volumes::SortDir;
use crate::{Conn, Result, StoreError, parse};

/// A message as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub id: MessageId,
    pub project_id: String,
    /// The request that started the operation.
    pub request_id: String,
    pub resource_type: Option<String>,
    pub resource_uuid: Option<String>,
    /// Cinder's event id, `VOLUME_<resource>_<action>_<detail>`.
    pub event_id: String,
    pub message_level: String,
    pub user_message: String,
    pub created_at: String,
    pub expires_at: String,
}

fn from_row(r: &SqliteRow) -> Result<Message> {
    Ok(Message {
        id: parse("message id", r.try_get::<&str, _>("id")?)?,
        project_id: r.try_get("project_id")?,
        request_id: r.try_get("request_id")?,
        resource_type: r.try_get("resource_type")?,
        resource_uuid: r.try_get("resource_uuid")?,
        event_id: r.try_get("event_id")?,
        message_level: r.try_get("message_level")?,
        user_message: r.try_get("user_message")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

/// Record a message, and delete the messages that expired before its
/// creation time.
pub async fn message_create(conn: &mut Conn, m: &Message) -> Result<()> {
    sqlx::query("DELETE FROM messages WHERE expires_at <= $1")
        .bind(&m.created_at)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO messages (id, project_id, request_id, resource_type, resource_uuid,
                event_id, message_level, user_message, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(m.id.to_string())
    .bind(&m.project_id)
    .bind(&m.request_id)
    .bind(&m.resource_type)
    .bind(&m.resource_uuid)
    .bind(&m.event_id)
    .bind(&m.message_level)
    .bind(&m.user_message)
    .bind(&m.created_at)
    .bind(&m.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// One message that has not expired at `now`.
pub async fn message_get(conn: &mut Conn, id: MessageId, now: &str) -> Result<Option<Message>> {
    let row = sqlx::query("SELECT * FROM messages WHERE id = $1 AND expires_at > $2")
        .bind(id.to_string())
        .bind(now)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Delete a message; returns whether it existed.
pub async fn message_delete(conn: &mut Conn, id: MessageId) -> Result<bool> {
    let r = sqlx::query("DELETE FROM messages WHERE id = $1")
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Columns a message list may be filtered and sorted by (Cinder's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageField {
    Id,
    EventId,
    CreatedAt,
    ExpiresAt,
    ResourceType,
    ResourceUuid,
    MessageLevel,
    RequestId,
    ProjectId,
}

impl MessageField {
    /// Parse an API key (`guaranteed_until` is how the API shows `expires_at`).
    pub fn parse(s: &str) -> Option<MessageField> {
        Some(match s {
            "id" => MessageField::Id,
            "event_id" => MessageField::EventId,
            "created_at" => MessageField::CreatedAt,
            "expires_at" | "guaranteed_until" => MessageField::ExpiresAt,
            "resource_type" => MessageField::ResourceType,
            "resource_uuid" => MessageField::ResourceUuid,
            "message_level" => MessageField::MessageLevel,
            "request_id" => MessageField::RequestId,
            "project_id" => MessageField::ProjectId,
            _ => return None,
        })
    }

    /// The SQL expression (nullable columns compare as the empty string, so
    /// that keyset pagination works on them).
    fn expr(self) -> &'static str {
        match self {
            MessageField::Id => "id",
            MessageField::EventId => "event_id",
            MessageField::CreatedAt => "created_at",
            MessageField::ExpiresAt => "expires_at",
            MessageField::ResourceType => "COALESCE(resource_type, '')",
            MessageField::ResourceUuid => "COALESCE(resource_uuid, '')",
            MessageField::MessageLevel => "message_level",
            MessageField::RequestId => "request_id",
            MessageField::ProjectId => "project_id",
        }
    }

    fn value(self, m: &Message) -> String {
        match self {
            MessageField::Id => m.id.to_string(),
            MessageField::EventId => m.event_id.clone(),
            MessageField::CreatedAt => m.created_at.clone(),
            MessageField::ExpiresAt => m.expires_at.clone(),
            MessageField::ResourceType => m.resource_type.clone().unwrap_or_default(),
            MessageField::ResourceUuid => m.resource_uuid.clone().unwrap_or_default(),
            MessageField::MessageLevel => m.message_level.clone(),
            MessageField::RequestId => m.request_id.clone(),
            MessageField::ProjectId => m.project_id.clone(),
        }
    }
}

/// Filters, order and page of a message list.
#[derive(Clone, Debug, Default)]
pub struct MessageQuery {
    /// Only this project's messages; `None`: every project's (admins).
    pub project_id: Option<String>,
    /// Every (field, value) must match exactly.
    pub filters: Vec<(MessageField, String)>,
    /// Sort keys in priority order; empty means `created_at desc`. `id` is
    /// always appended as the tie-breaker.
    pub sort: Vec<(MessageField, SortDir)>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    /// Start after this message (which must be visible to the query).
    pub marker: Option<MessageId>,
    /// Messages that expired at or before this time are left out.
    pub now: String,
}

/// A page of messages; `MarkerNotFound` when the marker names no visible
/// message.
pub async fn message_list(conn: &mut Conn, q: &MessageQuery) -> Result<Vec<Message>> {
    let mut sort = if q.sort.is_empty() {
        vec![(MessageField::CreatedAt, SortDir::Desc)]
    } else {
        q.sort.clone()
    };
    if !sort.iter().any(|(k, _)| *k == MessageField::Id) {
        let last = sort.last().map(|s| s.1).unwrap_or(SortDir::Desc);
        sort.push((MessageField::Id, last));
    }
    let mut query = Keyset::new("SELECT * FROM messages WHERE expires_at > ");
    query.bind(SqlValue::Text(q.now.clone()));
    if let Some(p) = &q.project_id {
        query.filter("project_id", SqlValue::Text(p.clone()));
    }
    for (field, value) in &q.filters {
        query.filter(field.expr(), SqlValue::Text(value.clone()));
    }
    if let Some(marker) = q.marker {
        let m = match message_get(conn, marker, &q.now).await? {
            Some(m) if q.project_id.as_ref().is_none_or(|p| *p == m.project_id) => m,
            _ => return Err(StoreError::MarkerNotFound(marker.to_string())),
        };
        let after: Vec<_> = sort
            .iter()
            .map(|(k, d)| (k.expr(), *d, SqlValue::Text(k.value(&m))))
            .collect();
        query.after(&after);
    }
    let order: Vec<_> = sort.iter().map(|(k, d)| (k.expr(), *d)).collect();
    query.order_and_page(&order, q.limit, q.offset);
    let rows = query.fetch_all(conn).await?;
    rows.iter().map(from_row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn msg(project: &str, created: &str, expires: &str, event: &str) -> Message {
        Message {
            id: MessageId::new(),
            project_id: project.into(),
            request_id: format!("req-{created}"),
            resource_type: Some("VOLUME".into()),
            resource_uuid: Some(format!("vol-{event}")),
            event_id: event.into(),
            message_level: "ERROR".into(),
            user_message: "schedule allocate volume:Could not find any available weighted backend."
                .into(),
            created_at: created.into(),
            expires_at: expires.into(),
        }
    }

    #[tokio::test]
    async fn lists_filter_sort_page_and_leave_out_the_expired() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        let a1 = msg("a", "2026-01-01T00:00:01", "2026-02-01T00:00:00", "E1");
        let a2 = msg("a", "2026-01-01T00:00:02", "2026-02-01T00:00:00", "E2");
        let a3 = msg("a", "2026-01-01T00:00:03", "2026-01-02T00:00:00", "E1");
        let b1 = msg("b", "2026-01-01T00:00:04", "2026-02-01T00:00:00", "E1");
        for m in [&a1, &a2, &a3, &b1] {
            message_create(&mut tx, m).await.unwrap();
        }
        let ids = |v: Vec<Message>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
        let base = MessageQuery {
            project_id: Some("a".into()),
            now: "2026-01-01T12:00:00".into(),
            ..Default::default()
        };
        let check = |q: MessageQuery, want: Vec<MessageId>| {
            let s = s.clone();
            async move {
                let mut c = s.read().await.unwrap();
                let got = ids(message_list(&mut c, &q).await.unwrap());
                assert_eq!(got, want, "{q:?}");
            }
        };
        tx.commit().await.unwrap();
        // Newest first by default; another project's messages are not listed.
        check(base.clone(), vec![a3.id, a2.id, a1.id]).await;
        check(
            MessageQuery {
                project_id: None,
                ..base.clone()
            },
            vec![b1.id, a3.id, a2.id, a1.id],
        )
        .await;
        // Once a3 expired it is gone.
        check(
            MessageQuery {
                now: "2026-01-03T00:00:00".into(),
                ..base.clone()
            },
            vec![a2.id, a1.id],
        )
        .await;
        check(
            MessageQuery {
                filters: vec![(MessageField::EventId, "E1".into())],
                ..base.clone()
            },
            vec![a3.id, a1.id],
        )
        .await;
        check(
            MessageQuery {
                sort: vec![(MessageField::CreatedAt, SortDir::Asc)],
                limit: Some(2),
                ..base.clone()
            },
            vec![a1.id, a2.id],
        )
        .await;
        check(
            MessageQuery {
                sort: vec![(MessageField::CreatedAt, SortDir::Asc)],
                marker: Some(a1.id),
                ..base.clone()
            },
            vec![a2.id, a3.id],
        )
        .await;
        check(
            MessageQuery {
                offset: Some(1),
                ..base.clone()
            },
            vec![a2.id, a1.id],
        )
        .await;
        // Another project's message is no marker.
        let mut c = s.read().await.unwrap();
        let r = message_list(
            &mut c,
            &MessageQuery {
                marker: Some(b1.id),
                ..base.clone()
            },
        )
        .await;
        assert!(matches!(r, Err(StoreError::MarkerNotFound(_))));
        drop(c);

        // A new message prunes the expired ones; delete reports existence.
        let mut tx = s.begin().await.unwrap();
        let later = msg("a", "2026-01-05T00:00:00", "2026-02-05T00:00:00", "E3");
        message_create(&mut tx, &later).await.unwrap();
        assert!(
            message_get(&mut tx, a3.id, "2000-01-01T00:00:00")
                .await
                .unwrap()
                .is_none(),
            "pruned"
        );
        assert!(message_delete(&mut tx, later.id).await.unwrap());
        assert!(!message_delete(&mut tx, later.id).await.unwrap());
        tx.commit().await.unwrap();
    }
}
