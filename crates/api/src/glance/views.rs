//! What the image API shows: images, members and the JSON schemas that
//! describe them (`/v2/schemas/…`), with Glance's field names. Links are
//! relative to the API's root (`/v2/images/{id}`), as Glance writes them.

use scoria_core::image_service::{GlanceImage, GlanceMember};
use scoria_model::glance::{ContainerFormat, DiskFormat, GlanceImageStatus, MemberStatus};
use serde_json::{Map, Value, json};

/// Glance's time format: seconds, UTC, `Z`.
pub fn time(stored: &str) -> String {
    let seconds = stored.split('.').next().unwrap_or(stored);
    format!("{seconds}Z")
}

/// An image as Glance shows it: its custom properties at the top level,
/// then every base attribute (a property never hides one).
pub fn image(i: &GlanceImage) -> Value {
    let mut m: Map<String, Value> = i
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let id = i.id.to_string();
    let base = json!({
        "id": id,
        "name": i.name,
        "status": i.status.as_str(),
        "visibility": i.visibility.as_str(),
        "protected": i.protected,
        "os_hidden": i.os_hidden,
        "checksum": i.checksum,
        "os_hash_algo": i.os_hash_algo,
        "os_hash_value": i.os_hash_value,
        "owner": i.owner,
        "size": i.size,
        "virtual_size": i.virtual_size,
        "min_ram": i.min_ram,
        "min_disk": i.min_disk,
        "disk_format": i.disk_format,
        "container_format": i.container_format,
        "created_at": time(&i.created_at),
        "updated_at": time(&i.updated_at),
        "tags": i.tags.iter().collect::<Vec<_>>(),
        "self": format!("/v2/images/{id}"),
        "file": format!("/v2/images/{id}/file"),
        "schema": "/v2/schemas/image",
    });
    if let Value::Object(b) = base {
        m.extend(b);
    }
    Value::Object(m)
}

pub fn member(m: &GlanceMember) -> Value {
    json!({
        "image_id": m.image_id.to_string(),
        "member_id": m.member,
        "status": m.status.as_str(),
        "created_at": time(&m.created_at),
        "updated_at": time(&m.updated_at),
        "schema": "/v2/schemas/member",
    })
}

fn names<T: Copy>(all: &[T], f: fn(T) -> &'static str) -> Vec<Value> {
    all.iter().map(|x| json!(f(*x))).collect()
}

/// `/v2/schemas/image`: the image's attributes; any other attribute is a
/// custom property, a string.
pub fn image_schema() -> Value {
    let mut disk = vec![Value::Null];
    disk.extend(names(DiskFormat::ALL, DiskFormat::as_str));
    let mut container = vec![Value::Null];
    container.extend(names(ContainerFormat::ALL, ContainerFormat::as_str));
    let ro = |ty: Value, description: &str| json!({"type": ty, "readOnly": true, "description": description});
    json!({
        "name": "image",
        "properties": {
            "id": {"type": "string", "description": "An identifier for the image",
                   "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"},
            "name": {"type": ["null", "string"], "description": "Descriptive name for the image", "maxLength": 255},
            "status": {"type": "string", "readOnly": true, "description": "Status of the image",
                       "enum": names(GlanceImageStatus::ALL, GlanceImageStatus::as_str)},
            "visibility": {"type": "string", "description": "Scope of image accessibility",
                           "enum": ["community", "public", "private", "shared"]},
            "protected": {"type": "boolean", "description": "If true, image will not be deletable."},
            "os_hidden": {"type": "boolean", "description": "If true, image will not appear in default image list response."},
            "checksum": ro(json!(["null", "string"]), "md5 hash of image contents."),
            "os_hash_algo": ro(json!(["null", "string"]), "Algorithm to calculate the os_hash_value"),
            "os_hash_value": ro(json!(["null", "string"]), "Hexdigest of the image contents using the algorithm specified by the os_hash_algo"),
            "owner": {"type": ["null", "string"], "description": "Owner of the image", "maxLength": 255},
            "size": ro(json!(["null", "integer"]), "Size of image file in bytes"),
            "virtual_size": ro(json!(["null", "integer"]), "Virtual size of image in bytes"),
            "container_format": {"type": ["null", "string"], "description": "Format of the container", "enum": container},
            "disk_format": {"type": ["null", "string"], "description": "Format of the disk", "enum": disk},
            "created_at": ro(json!("string"), "Date and time of image registration"),
            "updated_at": ro(json!("string"), "Date and time of the last image modification"),
            "tags": {"type": "array", "description": "List of strings related to the image",
                     "items": {"type": "string", "maxLength": 255}},
            "direct_url": ro(json!("string"), "URL to access the image file kept in external store"),
            "min_ram": {"type": "integer", "description": "Amount of ram (in MB) required to boot image."},
            "min_disk": {"type": "integer", "description": "Amount of disk space (in GB) required to boot image."},
            "self": ro(json!("string"), "An image self url"),
            "file": ro(json!("string"), "An image file url"),
            "schema": ro(json!("string"), "An image schema url"),
            "locations": {"type": "array", "description": "A set of URLs to access the image file kept in external store",
                          "items": {"type": "object", "required": ["url", "metadata"],
                                    "properties": {"url": {"type": "string", "maxLength": 255}, "metadata": {"type": "object"}}}},
        },
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    })
}

/// `/v2/schemas/images`.
pub fn images_schema() -> Value {
    json!({
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": image_schema()},
            "schema": {"type": "string"},
            "first": {"type": "string"},
            "next": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    })
}

/// `/v2/schemas/member`.
pub fn member_schema() -> Value {
    json!({
        "name": "member",
        "properties": {
            "created_at": {"type": "string", "description": "Date and time of image member creation"},
            "image_id": {"type": "string", "description": "An identifier for the image",
                         "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"},
            "member_id": {"type": "string", "description": "An identifier for the image member (tenantId)"},
            "schema": {"type": "string", "readOnly": true},
            "status": {"type": "string", "description": "The status of this image member",
                       "enum": names(MemberStatus::ALL, MemberStatus::as_str)},
            "updated_at": {"type": "string", "description": "Date and time of last modification of image member"},
        },
    })
}

/// `/v2/schemas/members`.
pub fn members_schema() -> Value {
    json!({
        "name": "members",
        "properties": {
            "members": {"type": "array", "items": member_schema()},
            "schema": {"type": "string"},
        },
        "links": [{"rel": "describedby", "href": "{schema}"}],
    })
}
