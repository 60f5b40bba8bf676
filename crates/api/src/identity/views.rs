//! Identity's JSON shapes, with Keystone's field names.

use scoria_core::identity::{
    AssignmentEntry, CatalogService, Domain, Project, Role, SystemAssignment, TokenInfo, User,
};
use serde_json::{Value, json};

/// Keystone's time format: `2026-11-21T08:50:31.000000Z`.
pub fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Where Identity's links point: `{public_url}/identity/v3`.
#[derive(Clone, Debug)]
pub struct Base(pub String);

impl Base {
    pub fn link(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

/// A collection: `{"<key>": [...], "links": {...}}`.
pub fn list(key: &str, items: Vec<Value>, self_link: String) -> Value {
    json!({
        key: items,
        "links": {"self": self_link, "previous": null, "next": null},
    })
}

pub fn domain(b: &Base, d: &Domain) -> Value {
    json!({
        "id": d.id,
        "name": d.name,
        "description": d.description,
        "enabled": d.enabled,
        "tags": [],
        "options": {},
        "links": {"self": b.link(&format!("/domains/{}", d.id))},
    })
}

pub fn project(b: &Base, p: &Project) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "domain_id": p.domain_id,
        "description": p.description,
        "enabled": p.enabled,
        // Top-level projects have their domain as parent.
        "parent_id": p.domain_id,
        "is_domain": false,
        "tags": [],
        "options": {},
        "links": {"self": b.link(&format!("/projects/{}", p.id))},
    })
}

/// A user; the optional attributes only when set, as Keystone shows them.
pub fn user(b: &Base, u: &User) -> Value {
    let mut v = json!({
        "id": u.id,
        "name": u.name,
        "domain_id": u.domain_id,
        "enabled": u.enabled,
        "password_expires_at": null,
        "options": {},
        "links": {"self": b.link(&format!("/users/{}", u.id))},
    });
    if let Some(p) = &u.default_project_id {
        v["default_project_id"] = json!(p);
    }
    if let Some(e) = &u.email {
        v["email"] = json!(e);
    }
    if let Some(d) = &u.description {
        v["description"] = json!(d);
    }
    v
}

pub fn role(b: &Base, r: &Role) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "domain_id": null,
        "description": null,
        // The built-in roles cannot be changed.
        "options": {"immutable": true},
        "links": {"self": b.link(&format!("/roles/{}", r.id))},
    })
}

fn role_ref(b: &Base, r: &Role) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "description": null,
        "links": {"self": b.link(&format!("/roles/{}", r.id))},
    })
}

pub fn role_inference(b: &Base, prior: &Role, implies: &[Role]) -> Value {
    json!({
        "prior_role": role_ref(b, prior),
        "implies": implies.iter().map(|r| role_ref(b, r)).collect::<Vec<_>>(),
    })
}

/// One row of `GET /role_assignments`.
pub fn assignment(b: &Base, e: &AssignmentEntry, names: bool) -> Value {
    let a = &e.assignment;
    // An implied role's assignment is the one of the role that implies it.
    let granted = e.prior_role.as_ref().unwrap_or(&a.role);
    let mut links = json!({
        "assignment": b.link(&format!(
            "/projects/{}/users/{}/roles/{}",
            a.project_id, a.user_id, granted.id
        )),
    });
    if let Some(p) = &e.prior_role {
        links["prior_role"] = json!(b.link(&format!("/roles/{}", p.id)));
    }
    let (mut role, mut project, mut user) = (
        json!({"id": a.role.id}),
        json!({"id": a.project_id}),
        json!({"id": a.user_id}),
    );
    if names {
        role["name"] = json!(a.role.name);
        project["name"] = json!(a.project.name);
        project["domain"] = json!({"id": a.project.domain_id, "name": a.project.domain_name});
        user["name"] = json!(a.user.name);
        user["domain"] = json!({"id": a.user.domain_id, "name": a.user.domain_name});
    }
    json!({
        "links": links,
        "role": role,
        "scope": {"project": project},
        "user": user,
    })
}

/// One system row of `GET /role_assignments`.
pub fn system_assignment(b: &Base, e: &SystemAssignment, names: bool) -> Value {
    let g = &e.grant;
    let granted = e.prior_role.as_ref().unwrap_or(&g.role);
    let mut links = json!({
        "assignment": b.link(&format!("/system/users/{}/roles/{}", g.user_id, granted.id)),
    });
    if let Some(p) = &e.prior_role {
        links["prior_role"] = json!(b.link(&format!("/roles/{}", p.id)));
    }
    let (mut role, mut user) = (json!({"id": g.role.id}), json!({"id": g.user_id}));
    if names {
        role["name"] = json!(g.role.name);
        user["name"] = json!(g.user.name);
        user["domain"] = json!({"id": g.user.domain_id, "name": g.user.domain_name});
    }
    json!({
        "links": links,
        "role": role,
        "scope": {"system": {"all": true}},
        "user": user,
    })
}

pub fn catalog(services: &[CatalogService]) -> Value {
    Value::Array(
        services
            .iter()
            .map(|s| {
                json!({
                    "endpoints": s.endpoints.iter().map(|e| json!({
                        "id": e.id,
                        "interface": e.interface,
                        "region_id": e.region,
                        "url": e.url,
                        "region": e.region,
                    })).collect::<Vec<_>>(),
                    "id": s.id,
                    "type": s.service_type,
                    "name": s.name,
                })
            })
            .collect(),
    )
}

/// A service of `GET /services`.
pub fn service(b: &Base, s: &CatalogService) -> Value {
    json!({
        "id": s.id,
        "type": s.service_type,
        "name": s.name,
        "description": "",
        "enabled": true,
        "links": {"self": b.link(&format!("/services/{}", s.id))},
    })
}

/// The endpoints of a service, as `GET /endpoints` lists them.
pub fn endpoints(b: &Base, s: &CatalogService) -> Vec<Value> {
    s.endpoints
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "interface": e.interface,
                "region": e.region,
                "region_id": e.region,
                "service_id": s.id,
                "url": e.url,
                "enabled": true,
                "links": {"self": b.link(&format!("/endpoints/{}", e.id))},
            })
        })
        .collect()
}

/// `{"token": {...}}`; `catalog` only for a scoped token (project or
/// system: then `"system": {"all": true}` and no `project`).
pub fn token(info: &TokenInfo, catalog: Option<&[CatalogService]>) -> Value {
    let mut t = json!({
        "methods": info.methods,
        "user": {
            "domain": {"id": info.user.domain_id, "name": info.user.domain_name},
            "id": info.user.id,
            "name": info.user.name,
            "password_expires_at": null,
        },
        "audit_ids": info.audit_ids,
        "expires_at": time(&info.expires_at),
        "issued_at": time(&info.issued_at),
    });
    if let Some(p) = &info.project {
        t["project"] = json!({
            "domain": {"id": p.domain_id, "name": p.domain_name},
            "id": p.id,
            "name": p.name,
        });
        t["is_domain"] = json!(false);
        t["roles"] = json!(
            info.roles
                .iter()
                .map(|r| json!({"id": r.id, "name": r.name}))
                .collect::<Vec<_>>()
        );
        if let Some(c) = catalog {
            t["catalog"] = self::catalog(c);
        }
    } else if info.system {
        t["system"] = json!({"all": true});
        t["roles"] = json!(
            info.roles
                .iter()
                .map(|r| json!({"id": r.id, "name": r.name}))
                .collect::<Vec<_>>()
        );
        if let Some(c) = catalog {
            t["catalog"] = self::catalog(c);
        }
    }
    json!({ "token": t })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_look_like_keystones() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-21T08:50:31Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(time(&t), "2026-11-21T08:50:31.000000Z");
    }
}
