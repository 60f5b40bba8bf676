//! Domains, projects, users, roles, grants and role assignments.

use axum::Json;
use axum::extract::{OriginalUri, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scoria_core::identity::{
    self, AssignmentQuery, ProjectChange, ProjectCreate, ProjectQuery, UserChange, UserCreate,
    UserQuery,
};
use serde_json::{Map, Value, json};

use super::error::{IdAuth, IdError, IdJson, IdPath, IdQuery, IdResult};
use super::{base, self_link, views};
use crate::State;

fn field_error(field: &str, why: &str) -> IdError {
    IdError::bad_request(format!("Invalid input for field '{field}': {why}"))
}

/// The object under `key` (`{"project": {...}}`).
fn entity<'a>(body: &'a Map<String, Value>, key: &str) -> IdResult<&'a Map<String, Value>> {
    match body.get(key) {
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(field_error(key, "must be an object.")),
        None => Err(IdError::bad_request(format!(
            "Invalid input: '{key}' is a required property."
        ))),
    }
}

fn string(m: &Map<String, Value>, key: &str) -> IdResult<Option<String>> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(field_error(key, &format!("{v} is not of type 'string'."))),
    }
}

/// Absent (`None`), `null` (`Some(None)`) or a string.
fn nullable(m: &Map<String, Value>, key: &str) -> IdResult<Option<Option<String>>> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(v) => Err(field_error(
            key,
            &format!("{v} is not of type 'string' or 'null'."),
        )),
    }
}

fn boolean(m: &Map<String, Value>, key: &str) -> IdResult<Option<bool>> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(field_error(key, &format!("{v} is not of type 'boolean'."))),
    }
}

fn required(m: &Map<String, Value>, key: &str) -> IdResult<String> {
    string(m, key)?.ok_or_else(|| field_error(key, "is a required property."))
}

// ---------------------------------------------------------------- domains

pub async fn domain_list(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    q: IdQuery,
    uri: OriginalUri,
) -> IdResult<Json<Value>> {
    let b = base(&state);
    let list = identity::domain_list(&state.app, &ctx, q.get("name").as_deref()).await?;
    let enabled = q.bool("enabled")?;
    Ok(Json(views::list(
        "domains",
        list.iter()
            .filter(|d| enabled.is_none_or(|e| d.enabled == e))
            .map(|d| views::domain(&b, d))
            .collect(),
        self_link(&state, &uri),
    )))
}

pub async fn domain_show(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    IdPath(id): IdPath<String>,
) -> IdResult<Json<Value>> {
    let d = identity::domain_get(&state.app, &ctx, &id).await?;
    Ok(Json(json!({"domain": views::domain(&base(&state), &d)})))
}

// ---------------------------------------------------------------- projects

pub async fn project_list(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    q: IdQuery,
    uri: OriginalUri,
) -> IdResult<Json<Value>> {
    let b = base(&state);
    let query = ProjectQuery {
        name: q.get("name"),
        domain_id: q.get("domain_id"),
        enabled: q.bool("enabled")?,
    };
    let list = identity::project_list(&state.app, &ctx, query).await?;
    Ok(Json(views::list(
        "projects",
        list.iter().map(|p| views::project(&b, p)).collect(),
        self_link(&state, &uri),
    )))
}

pub async fn project_create(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    IdJson(body): IdJson,
) -> IdResult<Response> {
    let p = entity(&body, "project")?;
    if boolean(p, "is_domain")? == Some(true) {
        return Err(field_error(
            "is_domain",
            "Scoria does not support projects acting as domains.",
        ));
    }
    let mut domain_id = string(p, "domain_id")?;
    // Without hierarchies a project's parent is its domain.
    if let Some(parent) = nullable(p, "parent_id")?.flatten() {
        match &domain_id {
            None => domain_id = Some(parent),
            Some(d) if *d == parent => {}
            Some(_) => {
                return Err(field_error(
                    "parent_id",
                    "Scoria has no project hierarchy: the parent must be the project's domain.",
                ));
            }
        }
    }
    let req = ProjectCreate {
        name: required(p, "name")?,
        domain_id,
        description: nullable(p, "description")?.flatten(),
        enabled: boolean(p, "enabled")?,
    };
    let created = identity::project_create(&state.app, &ctx, req).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"project": views::project(&base(&state), &created)})),
    )
        .into_response())
}

pub async fn project_show(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    IdPath(id): IdPath<String>,
) -> IdResult<Json<Value>> {
    let p = identity::project_get(&state.app, &ctx, &id).await?;
    Ok(Json(json!({"project": views::project(&base(&state), &p)})))
}

pub async fn project_update(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    IdPath(id): IdPath<String>,
    IdJson(body): IdJson,
) -> IdResult<Json<Value>> {
    let p = entity(&body, "project")?;
    if p.contains_key("domain_id") {
        return Err(field_error(
            "domain_id",
            "Update of `domain_id` is not allowed.",
        ));
    }
    let change = ProjectChange {
        name: string(p, "name")?,
        description: nullable(p, "description")?.map(Option::unwrap_or_default),
        enabled: boolean(p, "enabled")?,
    };
    let p = identity::project_update(&state.app, &ctx, &id, change).await?;
    Ok(Json(json!({"project": views::project(&base(&state), &p)})))
}

pub async fn project_delete(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    IdPath(id): IdPath<String>,
) -> IdResult<StatusCode> {
    identity::project_delete(&state.app, &ctx, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- users

pub async fn user_list(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    q: IdQuery,
    uri: OriginalUri,
) -> IdResult<Json<Value>> {
    let b = base(&state);
    let query = UserQuery {
        name: q.get("name"),
        domain_id: q.get("domain_id"),
        enabled: q.bool("enabled")?,
    };
    let list = identity::user_list(&state.app, &ctx, query).await?;
    Ok(Json(views::list(
        "users",
        list.iter().map(|u| views::user(&b, u)).collect(),
        self_link(&state, &uri),
    )))
}

pub async fn user_create(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    IdJson(body): IdJson,
) -> IdResult<Response> {
    let u = entity(&body, "user")?;
    let req = UserCreate {
        name: required(u, "name")?,
        domain_id: string(u, "domain_id")?,
        password: nullable(u, "password")?.flatten(),
        enabled: boolean(u, "enabled")?,
        default_project_id: nullable(u, "default_project_id")?.flatten(),
        email: nullable(u, "email")?.flatten(),
        description: nullable(u, "description")?.flatten(),
    };
    let created = identity::user_create(&state.app, &ctx, req).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"user": views::user(&base(&state), &created)})),
    )
        .into_response())
}

pub async fn user_show(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    IdPath(id): IdPath<String>,
) -> IdResult<Json<Value>> {
    let u = identity::user_get(&state.app, &ctx, &id).await?;
    Ok(Json(json!({"user": views::user(&base(&state), &u)})))
}

pub async fn user_update(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    IdPath(id): IdPath<String>,
    IdJson(body): IdJson,
) -> IdResult<Json<Value>> {
    let u = entity(&body, "user")?;
    if u.contains_key("domain_id") {
        return Err(field_error(
            "domain_id",
            "Update of `domain_id` is not allowed.",
        ));
    }
    let change = UserChange {
        name: string(u, "name")?,
        password: match nullable(u, "password")? {
            Some(None) => {
                return Err(field_error("password", "a password cannot be removed."));
            }
            other => other.flatten(),
        },
        enabled: boolean(u, "enabled")?,
        default_project_id: nullable(u, "default_project_id")?,
        email: nullable(u, "email")?,
        description: nullable(u, "description")?,
    };
    let u = identity::user_update(&state.app, &ctx, &id, change).await?;
    Ok(Json(json!({"user": views::user(&base(&state), &u)})))
}

pub async fn user_delete(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    IdPath(id): IdPath<String>,
) -> IdResult<StatusCode> {
    identity::user_delete(&state.app, &ctx, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v3/users/{id}/password`: `{"user": {"password", "original_password"}}`.
pub async fn user_change_password(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    IdPath(id): IdPath<String>,
    IdJson(body): IdJson,
) -> IdResult<StatusCode> {
    let u = entity(&body, "user")?;
    let original = required(u, "original_password")?;
    let new = required(u, "password")?;
    identity::user_change_password(&state.app, &ctx, &id, original, new).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn user_projects(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    IdPath(id): IdPath<String>,
    uri: OriginalUri,
) -> IdResult<Json<Value>> {
    let b = base(&state);
    let list = identity::user_projects(&state.app, &ctx, &id).await?;
    Ok(Json(views::list(
        "projects",
        list.iter().map(|p| views::project(&b, p)).collect(),
        self_link(&state, &uri),
    )))
}

// ---------------------------------------------------------------- roles

pub async fn role_list(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    q: IdQuery,
    uri: OriginalUri,
) -> IdResult<Json<Value>> {
    let b = base(&state);
    let list = identity::role_list(&state.app, &ctx, q.get("name").as_deref()).await?;
    Ok(Json(views::list(
        "roles",
        list.iter().map(|r| views::role(&b, r)).collect(),
        self_link(&state, &uri),
    )))
}

pub async fn role_show(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    IdPath(id): IdPath<String>,
) -> IdResult<Json<Value>> {
    let r = identity::role_get(&state.app, &ctx, &id).await?;
    Ok(Json(json!({"role": views::role(&base(&state), &r)})))
}

pub async fn role_inferences(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    uri: OriginalUri,
) -> IdResult<Json<Value>> {
    let b = base(&state);
    let rules = identity::role_inferences(&state.app, &ctx).await?;
    Ok(Json(json!({
        "role_inferences": rules
            .iter()
            .map(|(prior, implies)| views::role_inference(&b, prior, implies))
            .collect::<Vec<_>>(),
        "links": {"self": self_link(&state, &uri)},
    })))
}

// ---------------------------------------------------------------- catalog

/// `GET /v3/services` (`?type=`).
pub async fn service_list(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    q: IdQuery,
    uri: OriginalUri,
) -> IdResult<Json<Value>> {
    let b = base(&state);
    let services =
        identity::catalog_template(&state.app, &ctx, scoria_core::Op::IdentityServiceList)?;
    let want = q.get("type");
    Ok(Json(views::list(
        "services",
        services
            .iter()
            .filter(|s| want.as_deref().is_none_or(|t| t == s.service_type))
            .map(|s| views::service(&b, s))
            .collect(),
        self_link(&state, &uri),
    )))
}

/// `GET /v3/endpoints` (`?interface=`, `?service_id=`, `?region_id=`).
pub async fn endpoint_list(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    q: IdQuery,
    uri: OriginalUri,
) -> IdResult<Json<Value>> {
    let b = base(&state);
    let services =
        identity::catalog_template(&state.app, &ctx, scoria_core::Op::IdentityEndpointList)?;
    let matches = |e: &Value, key: &str| {
        q.get(key)
            .is_none_or(|want| e[key].as_str() == Some(want.as_str()))
    };
    Ok(Json(views::list(
        "endpoints",
        services
            .iter()
            .flat_map(|s| views::endpoints(&b, s))
            .filter(|e| {
                matches(e, "interface") && matches(e, "service_id") && matches(e, "region_id")
            })
            .collect(),
        self_link(&state, &uri),
    )))
}

// ---------------------------------------------------------------- grants

type GrantPath = IdPath<(String, String, String)>;

pub async fn grant_create(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    IdPath((project, user, role)): GrantPath,
) -> IdResult<StatusCode> {
    identity::grant_create(&state.app, &ctx, &project, &user, &role).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn grant_check(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    IdPath((project, user, role)): GrantPath,
) -> IdResult<StatusCode> {
    identity::grant_check(&state.app, &ctx, &project, &user, &role).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn grant_revoke(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    IdPath((project, user, role)): GrantPath,
) -> IdResult<StatusCode> {
    identity::grant_revoke(&state.app, &ctx, &project, &user, &role).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn grant_list(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    IdPath((project, user)): IdPath<(String, String)>,
    uri: OriginalUri,
) -> IdResult<Json<Value>> {
    let b = base(&state);
    let roles = identity::grant_list(&state.app, &ctx, &project, &user).await?;
    Ok(Json(views::list(
        "roles",
        roles.iter().map(|r| views::role(&b, r)).collect(),
        self_link(&state, &uri),
    )))
}

/// `GET /v3/role_assignments` with `user.id`, `scope.project.id`,
/// `scope.system`, `role.id`, `effective` and `include_names`: the project
/// rows, then the system rows (only these with `scope.system`, only project
/// rows with `scope.project.id`). Filters on what Scoria does not have
/// (groups, domain scope, inheritance) match nothing.
pub async fn assignment_list(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    q: IdQuery,
    uri: OriginalUri,
) -> IdResult<Json<Value>> {
    let b = base(&state);
    let query = AssignmentQuery {
        user_id: q.get("user.id"),
        project_id: q.get("scope.project.id"),
        role_id: q.get("role.id"),
        effective: q.flag("effective"),
    };
    let system_only = q.0.get("scope.system").is_some();
    let (user, role, effective) = (
        query.user_id.clone(),
        query.role_id.clone(),
        query.effective,
    );
    let project_only = query.project_id.is_some();
    let mut list = identity::assignment_list(&state.app, &ctx, query).await?;
    let mut system = if project_only {
        vec![]
    } else {
        identity::system_assignment_list(
            &state.app,
            &ctx,
            user.as_deref(),
            role.as_deref(),
            effective,
        )
        .await?
    };
    if system_only {
        list.clear();
    }
    let elsewhere = ["group.id", "scope.domain.id"]
        .iter()
        .any(|k| q.0.get(k).is_some())
        || q.0.0.iter().any(|(k, _)| k.starts_with("scope.OS-INHERIT"));
    if elsewhere {
        list.clear();
        system.clear();
    }
    let names = q.flag("include_names");
    Ok(Json(views::list(
        "role_assignments",
        list.iter()
            .map(|e| views::assignment(&b, e, names))
            .chain(
                system
                    .iter()
                    .map(|e| views::system_assignment(&b, e, names)),
            )
            .collect(),
        self_link(&state, &uri),
    )))
}
