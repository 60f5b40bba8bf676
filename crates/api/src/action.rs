//! `POST …/{id}/action`: Cinder's actions on one resource, each a body
//! `{"<name>": {arguments}}`, dispatched through a table.
//!
//! A resource lists its actions as [`Action`] rows (name, handler, the
//! microversion it exists from, the operation authorized here if any), as
//! `routes.rs` lists routes, so that an action is added as one row and one
//! handler. Every table answers the same way to what is not in it: a body
//! that is not exactly one action, or arguments that are not an object, is
//! a 400; an unknown action is a 400 (`There is no such action`); an action
//! below its microversion is a 404, as if the route did not exist.

use std::future::Future;
use std::pin::Pin;

use axum::response::Response;
use scoria_core::{App, Context, Op};
use serde_json::{Map, Value};

use crate::fault::{ApiError, ApiResult};
use crate::microversion::{self, Version};

/// What a handler gets: the caller, the resource, the arguments.
pub struct Call<'a, Id> {
    pub app: &'a App,
    pub ctx: &'a Context,
    pub id: Id,
    pub version: Version,
    /// The action's arguments (`null` reads as `{}`).
    pub args: &'a Map<String, Value>,
}

/// The answer of a handler, still to be awaited.
pub type Reply<'a> = Pin<Box<dyn Future<Output = ApiResult<Response>> + Send + 'a>>;

/// One action of a resource.
pub struct Action<Id: 'static> {
    /// Cinder's name of the action, the key of its body.
    pub name: &'static str,
    /// The microversion (`3.x`) from which the action exists, if not all.
    pub since: Option<u32>,
    /// An operation this layer authorizes before the handler runs, for an
    /// action no single core function authorizes. `None` when the core
    /// function the handler calls authorizes, as every one does today.
    pub authorize: Option<Op>,
    pub run: for<'a> fn(Call<'a, Id>) -> Reply<'a>,
}

impl<Id> Action<Id> {
    /// The action `name`, at every microversion, authorized by the core
    /// function its handler calls.
    pub const fn new(name: &'static str, run: for<'a> fn(Call<'a, Id>) -> Reply<'a>) -> Self {
        Action {
            name,
            since: None,
            authorize: None,
            run,
        }
    }

    /// The action exists from microversion `3.minor` on.
    pub const fn since(mut self, minor: u32) -> Self {
        self.since = Some(minor);
        self
    }

    /// This layer authorizes `op` before the handler runs.
    pub const fn authorize(mut self, op: Op) -> Self {
        self.authorize = Some(op);
        self
    }
}

/// The one action of an action body: its name and its arguments.
pub fn one(body: &Map<String, Value>) -> ApiResult<(&str, &Map<String, Value>)> {
    static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
    let (name, args) = match body.iter().next() {
        Some((k, v)) if body.len() == 1 => (k.as_str(), v),
        _ => {
            return Err(ApiError::bad_request(
                "An action body holds exactly one action.",
            ));
        }
    };
    match args {
        Value::Object(m) => Ok((name, m)),
        Value::Null => Ok((name, &EMPTY)),
        _ => Err(ApiError::bad_request(format!(
            "Invalid input for {name}: must be an object."
        ))),
    }
}

/// An action request's body (`{"<name>": {args}}`) for the resource `id`:
/// its one action, run from `table`. Every `…/action` route ends here.
pub async fn dispatch<Id>(
    table: &'static [Action<Id>],
    app: &App,
    ctx: &Context,
    version: Version,
    id: Id,
    body: &Map<String, Value>,
) -> ApiResult<Response> {
    let (name, args) = one(body)?;
    let call = Call {
        app,
        ctx,
        id,
        version,
        args,
    };
    run(table, name, call).await
}

/// Run the action `name` of `table`.
pub async fn run<Id>(
    table: &'static [Action<Id>],
    name: &str,
    call: Call<'_, Id>,
) -> ApiResult<Response> {
    let Some(action) = table.iter().find(|a| a.name == name) else {
        return Err(ApiError::bad_request(format!(
            "There is no such action: {name}"
        )));
    };
    if let Some(minor) = action.since
        && !call.version.at_least(minor)
    {
        return Err(microversion::not_supported(call.version));
    }
    if let Some(op) = action.authorize {
        call.ctx.authorize(op)?;
    }
    (action.run)(call).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_action_with_object_arguments() {
        let body = |v: Value| v.as_object().cloned().unwrap();
        for (ok, want) in [
            (json!({"os-extend": {"new_size": 2}}), ("os-extend", 1)),
            (json!({"os-reserve": null}), ("os-reserve", 0)),
        ] {
            let ok = body(ok);
            let (name, args) = one(&ok).unwrap();
            assert_eq!((name, args.len()), want);
        }
        for (bad, message) in [
            (json!({}), "An action body holds exactly one action."),
            (
                json!({"a": {}, "b": {}}),
                "An action body holds exactly one action.",
            ),
            (json!({"a": 1}), "Invalid input for a: must be an object."),
        ] {
            let e = one(&body(bad)).unwrap_err();
            assert_eq!((e.status.as_u16(), e.message.as_str()), (400, message));
        }
    }
}
