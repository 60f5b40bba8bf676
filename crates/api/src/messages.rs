//! `/messages` (microversion 3.3 and later): user messages, with Cinder's
//! shapes. Filters, sorting and paging come with 3.5; from 3.33 on, an unknown
//! filter is refused, as Cinder refuses it.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Extension, State as AxState};
use axum::http::StatusCode;
use scoria_core::messages::{self, ListRequest, Message, MessageField};
use serde_json::{Map, Value, json};

use crate::State;
use crate::auth::Auth;
use crate::fault::{ApiError, ApiResult};
use crate::microversion::Version;
use crate::path::{PathParams, links_base, seg};
use crate::query::{self, Paging, Params, SortKeys};

/// Messages exist from 3.3 on; before, the routes do not (404, as Cinder).
fn gate(v: Version) -> ApiResult<()> {
    if v.at_least(3) {
        Ok(())
    } else {
        Err(ApiError::not_found(
            "User messages need microversion 3.3 or later.",
        ))
    }
}

fn view(m: &Message, links: &(String, String)) -> Value {
    let id = m.id;
    let mut o = json!({
        "id": id.to_string(),
        "event_id": m.event_id,
        "user_message": m.user_message,
        "message_level": m.message_level,
        "created_at": m.created_at,
        "guaranteed_until": m.expires_at,
        "request_id": m.request_id,
        "links": [
            {"rel": "self", "href": format!("{}/messages/{id}", links.0)},
            {"rel": "bookmark", "href": format!("{}/messages/{id}", links.1)},
        ],
    });
    if let Some(t) = &m.resource_type {
        o["resource_type"] = json!(t);
    }
    if let Some(u) = &m.resource_uuid {
        o["resource_uuid"] = json!(u);
    }
    o
}

/// The keys a message list sorts by.
const SORT_KEYS: SortKeys<MessageField> = SortKeys {
    parse: MessageField::parse,
    default: MessageField::CreatedAt,
};

fn list_request(q: &Params, v: Version) -> ApiResult<ListRequest> {
    if !v.at_least(5) {
        // Before 3.5 the list takes no parameters.
        return Ok(ListRequest::default());
    }
    crate::filters::MESSAGE.check(q, v)?;
    let mut filters = Vec::new();
    for f in crate::filters::MESSAGE.filters {
        if let Some(value) = q.get(f) {
            let field = MessageField::parse(f).expect("every filter is a field");
            filters.push((field, value.to_owned()));
        }
    }
    let page = Paging::parse(q)?;
    Ok(ListRequest {
        filters,
        sort: query::sort(q, &SORT_KEYS)?,
        limit: Some(page.size()),
        offset: q.uint("offset")?,
        marker: page.marker,
    })
}

/// `GET /messages`.
pub async fn list(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(v): Extension<Version>,
    path: PathParams,
    q: Params,
) -> ApiResult<Json<Value>> {
    gate(v)?;
    let req = list_request(&q, v)?;
    let limit = req.limit;
    let list = messages::list(&state.app, &ctx, req).await?;
    let links = links_base(&state, &ctx, &path);
    let mut out = Map::new();
    out.insert(
        "messages".into(),
        Value::Array(list.iter().map(|m| view(m, &links)).collect()),
    );
    if let (true, Some(size), Some(last)) = (v.at_least(5), limit, list.last())
        && list.len() as i64 == size
    {
        let url = format!("{}/messages", links.0);
        out.insert(
            "messages_links".into(),
            query::next_link(&q, &url, &["offset"], size, last.id),
        );
    }
    Ok(Json(Value::Object(out)))
}

fn path_id(p: &BTreeMap<String, String>) -> ApiResult<scoria_model::MessageId> {
    Ok(messages::parse_id(seg(p, "id"))?)
}

/// `GET /messages/{id}`.
pub async fn show(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(v): Extension<Version>,
    path: PathParams,
) -> ApiResult<Json<Value>> {
    gate(v)?;
    let m = messages::get(&state.app, &ctx, path_id(&path)?).await?;
    let links = links_base(&state, &ctx, &path);
    Ok(Json(json!({"message": view(&m, &links)})))
}

/// `DELETE /messages/{id}`: 204, no body.
pub async fn delete(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(v): Extension<Version>,
    path: PathParams,
) -> ApiResult<StatusCode> {
    gate(v)?;
    messages::delete(&state.app, &ctx, path_id(&path)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
