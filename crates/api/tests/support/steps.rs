//! Tests as scripts of requests. Each [`Step`] names the caller, the
//! microversion (if any), the request and the status, and says what it
//! expects of the answer: the whole body ([`Step::is`], times redacted),
//! values at JSON pointers ([`Step::has`]), pointers it must not have
//! ([`Step::lacks`]), a fragment of the fault message ([`Step::says`]).
//! Values can be remembered ([`Step::save`]) and put back anywhere as
//! `{name}`; `{p}` is the caller's project.
//!
//! Every step is checked and every mismatch collected, so that one run
//! reports all that is wrong. Some checks hold for every step, because strict
//! clients (tempest) rely on them: a fault is Cinder's one-key body with the
//! status as its code and a message (for the image service, `/image/…`:
//! Glance's `{"message", "code": "404 Not Found", "title"}`, asked for with
//! `Accept: application/json` as tempest does), and a 202 or 204 that the step expects
//! nothing of carries no body unless it answers a create (a `POST` that is
//! not an action: a volume, a snapshot, a group, a transfer or its accept).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Personas, Reply, TestApp};

/// The callers of a script (see [`Personas`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    Admin,
    /// Member of project A.
    Member,
    /// Reader of project A.
    Reader,
    /// Member of project B.
    Other,
}

/// The id of the default volume type (`__DEFAULT__`), `{default}` in steps.
pub const DEFAULT_TYPE: &str = "7a3d2a5e-1b4c-4f0e-9d8a-0c5e6f7a8b90";
/// An id no resource has, `{nothing}` in steps.
pub const NOTHING: &str = "3f1c2b9e-8d4a-4e6f-9b7c-1a2b3c4d5e6f";

/// One request and what its answer must be.
pub struct Call {
    who: Who,
    /// The `3.x` microversion sent, if any.
    version: Option<&'static str>,
    method: &'static str,
    path: String,
    body: Option<Value>,
    status: u16,
    /// The whole body (placeholders substituted, times redacted).
    body_is: Option<Value>,
    /// A fragment of the fault message.
    says: Option<&'static str>,
    /// Values to remember: (name, JSON pointer into the body).
    save: Vec<(&'static str, &'static str)>,
    /// Values expected: (JSON pointer, value), both with placeholders.
    has: Vec<(String, Value)>,
    /// Values expected, any of several: (JSON pointer, the values).
    one_of: Vec<(String, Vec<Value>)>,
    /// JSON pointers (with placeholders) the body must not have.
    lacks: Vec<String>,
    /// Headers sent (a `content-type` here replaces the JSON one).
    headers: Vec<(&'static str, String)>,
    /// A body sent as these bytes instead of `body`.
    bytes: Option<Vec<u8>>,
}

pub enum Step {
    Call(Box<Call>),
    /// Wait until the saved volume has this status (`gone`: 404), as seen by
    /// the caller.
    Volume(Who, &'static str, &'static str),
    /// Wait until the saved snapshot has this status (`gone`: 404), as seen
    /// by the caller.
    Snapshot(Who, &'static str, &'static str),
    /// Wait until the saved group (in project A) has this status (`gone`:
    /// 404), as seen by the admin.
    Group(&'static str, &'static str),
}

/// A request by `who`, sent without a microversion.
pub fn call(who: Who, method: &'static str, path: &str, body: Option<Value>, status: u16) -> Step {
    Step::Call(Box::new(Call {
        who,
        version: None,
        method,
        path: path.to_owned(),
        body,
        status,
        body_is: None,
        says: None,
        save: vec![],
        has: vec![],
        one_of: vec![],
        lacks: vec![],
        headers: vec![],
        bytes: None,
    }))
}

impl Step {
    fn call_mut(&mut self) -> &mut Call {
        match self {
            Step::Call(c) => c,
            _ => panic!("only a request takes expectations"),
        }
    }

    /// The whole body must be `expected`.
    pub fn is(mut self, expected: Value) -> Step {
        self.call_mut().body_is = Some(expected);
        self
    }

    /// The fault message must contain `fragment`.
    pub fn says(mut self, fragment: &'static str) -> Step {
        self.call_mut().says = Some(fragment);
        self
    }

    /// Remember the string at `pointer` as `{name}`.
    pub fn save(mut self, name: &'static str, pointer: &'static str) -> Step {
        self.call_mut().save.push((name, pointer));
        self
    }

    /// The body must hold `value` at `pointer`.
    pub fn has(mut self, pointer: &str, value: Value) -> Step {
        self.call_mut().has.push((pointer.to_owned(), value));
        self
    }

    /// The body must have one of `values` at `pointer` (a state that may
    /// already have moved on when the answer is built).
    pub fn has_one_of(mut self, pointer: &str, values: &[Value]) -> Step {
        self.call_mut()
            .one_of
            .push((pointer.to_owned(), values.to_vec()));
        self
    }

    /// The body must have nothing at `pointer`.
    pub fn lacks(mut self, pointer: &str) -> Step {
        self.call_mut().lacks.push(pointer.to_owned());
        self
    }

    /// Send the header `name: value` (placeholders filled in).
    pub fn header(mut self, name: &'static str, value: &str) -> Step {
        self.call_mut().headers.push((name, value.to_owned()));
        self
    }

    /// Send `bytes` as the body (give `None` as the JSON body).
    pub fn bytes(mut self, bytes: Vec<u8>) -> Step {
        self.call_mut().bytes = Some(bytes);
        self
    }

    /// Send microversion `v` (`3.x`).
    pub fn at(mut self, v: &'static str) -> Step {
        self.call_mut().version = Some(v);
        self
    }
}

/// A test app with the [`Personas`] logged in, and the values steps saved.
pub struct World {
    pub t: TestApp,
    tokens: BTreeMap<&'static str, (String, String)>,
    /// Placeholders: `a`, `b` (the projects), `admin_p`, `default`,
    /// `nothing`, and whatever steps saved.
    pub vars: BTreeMap<String, String>,
}

impl World {
    pub async fn new() -> World {
        Self::with_config(|_| {}).await
    }

    /// A world whose configuration `change` adjusts first (limits…).
    pub async fn with_config(change: impl FnOnce(&mut scoria_core::Config)) -> World {
        let t = TestApp::with_config(change).await;
        let Personas {
            a,
            b,
            admin,
            member,
            reader,
            other,
        } = t.personas().await;
        let admin_p = admin.1.clone();
        let tokens: BTreeMap<&'static str, (String, String)> = [
            ("admin", admin),
            ("member", member),
            ("reader", reader),
            ("other", other),
        ]
        .into();
        let vars = [
            ("a", a),
            ("b", b),
            ("admin_p", admin_p),
            ("default", DEFAULT_TYPE.to_owned()),
            ("nothing", NOTHING.to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .into();
        World { t, tokens, vars }
    }

    /// `(token, project id)` of a caller.
    pub fn token(&self, who: Who) -> (String, String) {
        let k = match who {
            Who::Admin => "admin",
            Who::Member => "member",
            Who::Reader => "reader",
            Who::Other => "other",
        };
        self.tokens[k].clone()
    }

    /// `s` with `{p}` as `project` and every `{name}` as its value.
    pub fn fill(&self, s: &str, project: &str) -> String {
        let mut s = s.replace("{p}", project);
        for (k, v) in &self.vars {
            s = s.replace(&format!("{{{k}}}"), v);
        }
        s
    }

    /// `value` with its placeholders filled in.
    fn fill_value(&self, value: &Value, project: &str) -> Value {
        serde_json::from_str(&self.fill(&value.to_string(), project)).expect("expected value")
    }

    /// `GET path` as the admin, at 3.20 (groups exist).
    pub async fn get(&self, path: &str) -> Reply {
        let (token, _) = self.token(Who::Admin);
        self.t
            .raw(
                "GET",
                path,
                Some(&token),
                &[("OpenStack-API-Version", "volume 3.20")],
                None,
            )
            .await
    }

    /// Run the steps in order; collect every mismatch, then fail with all.
    pub async fn run(&mut self, steps: Vec<Step>) {
        let mut failures = Vec::new();
        for (i, step) in steps.into_iter().enumerate() {
            match step {
                Step::Volume(who, var, status) => {
                    if !self.wait_for(who, "volumes", "volume", var, status).await {
                        failures.push(format!("step {i}: volume {var} never became {status}"));
                    }
                }
                Step::Snapshot(who, var, status) => {
                    if !self
                        .wait_for(who, "snapshots", "snapshot", var, status)
                        .await
                    {
                        failures.push(format!("step {i}: snapshot {var} never became {status}"));
                    }
                }
                Step::Group(var, want) => {
                    if !self.wait_group(var, want).await {
                        failures.push(format!("step {i}: group {var} never became {want}"));
                    }
                }
                Step::Call(c) => self.check(i, *c, &mut failures).await,
            }
        }
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    /// Wait until the saved resource `var` of the collection has the status
    /// `want` (`gone`: 404), as `who` sees it.
    async fn wait_for(&self, who: Who, collection: &str, key: &str, var: &str, want: &str) -> bool {
        let (token, project) = self.token(who);
        let id = self.vars[var].clone();
        let path = format!("/v3/{project}/{collection}/{id}");
        for _ in 0..2000 {
            let r = self.t.call("GET", &path, Some(&token), None).await;
            if (want == "gone" && r.status == 404) || r.body[key]["status"] == want {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        false
    }

    async fn wait_group(&self, var: &str, want: &str) -> bool {
        // The admin asks under its own project (the URL's project is the
        // token's); it sees every project's groups.
        let own = self.vars["admin_p"].clone();
        let id = self.vars[var].clone();
        for _ in 0..2000 {
            let r = self.get(&format!("/v3/{own}/groups/{id}")).await;
            if (want == "gone" && r.status == 404) || r.body["group"]["status"] == want {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        false
    }

    /// Send one request and check its answer.
    async fn check(&mut self, i: usize, c: Call, failures: &mut Vec<String>) {
        let Call {
            who,
            version,
            method,
            path,
            body,
            status,
            body_is,
            says,
            save,
            has,
            one_of,
            lacks,
            headers: extra,
            bytes,
        } = c;
        let (token, project) = self.token(who);
        let path = self.fill(&path, &project);
        let body = body
            .map(|b| self.fill(&b.to_string(), &project).into_bytes())
            .or(bytes);
        let header = version.map(|v| format!("volume {v}"));
        let glance = path.starts_with("/image");
        let extra: Vec<(&str, String)> = extra
            .into_iter()
            .map(|(k, v)| (k, self.fill(&v, &project)))
            .chain(glance.then(|| ("accept", "application/json".to_owned())))
            .collect();
        let headers: Vec<(&str, &str)> = header
            .iter()
            .map(|h| ("OpenStack-API-Version", h.as_str()))
            .chain(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .collect();
        let r = self
            .t
            .raw(method, &path, Some(&token), &headers, body)
            .await;
        let at = version.map(|v| format!(" at {v}")).unwrap_or_default();
        let what = format!("step {i}: {method} {path}{at} as {who:?}");
        if r.status != status {
            failures.push(format!(
                "{what}: got {}, expected {status}: {}",
                r.status, r.body
            ));
            return;
        }
        let expects_body =
            body_is.is_some() || !has.is_empty() || !one_of.is_empty() || !save.is_empty();
        let creates = method == "POST" && !path.ends_with("/action");
        for (pointer, want) in has {
            let pointer = self.fill(&pointer, &project);
            let want = self.fill_value(&want, &project);
            match r.body.pointer(&pointer) {
                Some(got) if *got == want => {}
                got => failures.push(format!("{what}: {pointer} is {got:?}, expected {want}")),
            }
        }
        for (pointer, wants) in one_of {
            let pointer = self.fill(&pointer, &project);
            match r.body.pointer(&pointer) {
                Some(got) if wants.contains(got) => {}
                got => failures.push(format!(
                    "{what}: {pointer} is {got:?}, expected one of {wants:?}"
                )),
            }
        }
        for pointer in lacks {
            let pointer = self.fill(&pointer, &project);
            if let Some(got) = r.body.pointer(&pointer) {
                failures.push(format!("{what}: has {pointer} = {got}"));
            }
        }
        for (name, pointer) in save {
            match r.body.pointer(pointer).and_then(Value::as_str) {
                Some(v) => {
                    self.vars.insert(name.to_owned(), v.to_owned());
                }
                None => failures.push(format!("{what}: nothing at {pointer}")),
            }
        }
        if status >= 400 {
            let fault = if glance && status != 401 {
                is_glance_fault(&r.body, status, says)
            } else {
                is_fault(&r.body, status, says)
            };
            if !fault {
                failures.push(format!(
                    "{what}: fault body {} (wanted message with {says:?})",
                    r.body
                ));
            }
        } else if let Some(fragment) = says {
            failures.push(format!("{what}: a success has no message {fragment:?}"));
        } else if matches!(status, 202 | 204) && !expects_body && !creates && r.body != Value::Null
        {
            failures.push(format!("{what}: a body where none belongs: {}", r.body));
        }
        if let Some(want) = body_is {
            let want = self.fill_value(&want, &project);
            let got = redact(r.body.clone());
            if got != want {
                failures.push(format!("{what}: body\n  got      {got}\n  expected {want}"));
            }
        }
    }
}

/// Whether `body` is a Cinder fault of `status` whose message is not empty
/// and contains `fragment`.
fn is_fault(body: &Value, status: u16, fragment: Option<&str>) -> bool {
    let fault = body
        .as_object()
        .and_then(|o| (o.len() == 1).then(|| o.values().next()).flatten());
    fault.is_some_and(|f| {
        f["code"] == status
            && f["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty() && fragment.is_none_or(|frag| m.contains(frag)))
    })
}

/// Whether `body` is Glance's JSON error of `status` (WebOb's shape: the
/// status line as `code`, its reason as `title`) whose message contains
/// `fragment`.
fn is_glance_fault(body: &Value, status: u16, fragment: Option<&str>) -> bool {
    let code_ok = body["code"]
        .as_str()
        .is_some_and(|c| c.starts_with(&format!("{status} ")));
    let keys_ok = body.as_object().is_some_and(|o| o.len() == 3) && body["title"].is_string();
    code_ok
        && keys_ok
        && body["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty() && fragment.is_none_or(|f| m.contains(f)))
}

/// Times vary: replace them with `<time>`.
pub fn redact(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let v = if matches!(k.as_str(), "created_at" | "updated_at") && v.is_string() {
                        json!("<time>")
                    } else {
                        redact(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(redact).collect()),
        other => other,
    }
}
