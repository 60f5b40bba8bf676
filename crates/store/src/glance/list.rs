//! Listing the image service's images: Glance's sort keys, filters and
//! visibility rules, keyset-paged.

use scoria_model::GlanceImageId;
use scoria_model::glance::{MemberStatus, Visibility};

use super::{GlanceImage, attach, from_row, glance_image_get, glance_member_get};
use crate::shared::{Keyset, SortDir, SqlValue};
use crate::{Conn, Result, StoreError};

/// Columns a list may be sorted by (Glance's sort keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Name,
    Status,
    ContainerFormat,
    DiskFormat,
    Size,
    Id,
    CreatedAt,
    UpdatedAt,
}

impl SortKey {
    pub const NAMES: &'static [&'static str] = &[
        "name",
        "status",
        "container_format",
        "disk_format",
        "size",
        "id",
        "created_at",
        "updated_at",
    ];

    pub fn parse(s: &str) -> Option<SortKey> {
        Some(match s {
            "name" => SortKey::Name,
            "status" => SortKey::Status,
            "container_format" => SortKey::ContainerFormat,
            "disk_format" => SortKey::DiskFormat,
            "size" => SortKey::Size,
            "id" => SortKey::Id,
            "created_at" => SortKey::CreatedAt,
            "updated_at" => SortKey::UpdatedAt,
            _ => return None,
        })
    }

    /// The expression sorted on; nullable columns sort as '' or -1 so that
    /// keyset paging can compare them.
    fn expr(self) -> &'static str {
        match self {
            SortKey::Name => "COALESCE(name, '')",
            SortKey::Status => "status",
            SortKey::ContainerFormat => "COALESCE(container_format, '')",
            SortKey::DiskFormat => "COALESCE(disk_format, '')",
            SortKey::Size => "COALESCE(size, -1)",
            SortKey::Id => "id",
            SortKey::CreatedAt => "created_at",
            SortKey::UpdatedAt => "updated_at",
        }
    }

    fn value(self, i: &GlanceImage) -> SqlValue {
        let text = |s: &Option<String>| SqlValue::Text(s.clone().unwrap_or_default());
        match self {
            SortKey::Name => text(&i.name),
            SortKey::Status => SqlValue::Text(i.status.as_str().to_owned()),
            SortKey::ContainerFormat => text(&i.container_format),
            SortKey::DiskFormat => text(&i.disk_format),
            SortKey::Size => SqlValue::Int(i.size.unwrap_or(-1)),
            SortKey::Id => SqlValue::Text(i.id.to_string()),
            SortKey::CreatedAt => SqlValue::Text(i.created_at.clone()),
            SortKey::UpdatedAt => SqlValue::Text(i.updated_at.clone()),
        }
    }
}

/// Which images of other projects a list shows (Glance's `visibility`
/// filter, or its absence).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum VisibilityFilter {
    /// The viewer's own images, public ones and shared ones it is a member
    /// of (with the member status asked for): Glance's default.
    #[default]
    Default,
    /// Only images of this visibility that the viewer may see.
    Only(Visibility),
    /// Everything the viewer may see, community images included.
    All,
}

/// Base columns a list filters on by exact value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaseColumn {
    Id,
    Size,
    VirtualSize,
    Checksum,
    OsHashValue,
    MinDisk,
    MinRam,
}

impl BaseColumn {
    /// The column for a query key, if it names one.
    pub fn parse(s: &str) -> Option<BaseColumn> {
        Some(match s {
            "id" => BaseColumn::Id,
            "size" => BaseColumn::Size,
            "virtual_size" => BaseColumn::VirtualSize,
            "checksum" => BaseColumn::Checksum,
            "os_hash_value" => BaseColumn::OsHashValue,
            "min_disk" => BaseColumn::MinDisk,
            "min_ram" => BaseColumn::MinRam,
            _ => return None,
        })
    }

    /// The column, and whether it holds integers.
    fn column(self) -> (&'static str, bool) {
        match self {
            BaseColumn::Id => ("id", false),
            BaseColumn::Size => ("size", true),
            BaseColumn::VirtualSize => ("virtual_size", true),
            BaseColumn::Checksum => ("checksum", false),
            BaseColumn::OsHashValue => ("os_hash_value", false),
            BaseColumn::MinDisk => ("min_disk", true),
            BaseColumn::MinRam => ("min_ram", true),
        }
    }
}

/// Filters, order and page of an image list.
#[derive(Clone, Debug, Default)]
pub struct GlanceImageQuery {
    /// The project looking; `None` is an admin, who sees every image.
    pub viewer: Option<String>,
    pub visibility: VisibilityFilter,
    /// Shared images are listed for a member whose status is this (`None`:
    /// any status).
    pub member_status: Option<MemberStatus>,
    pub name: Option<String>,
    pub status: Option<String>,
    pub owner: Option<String>,
    /// Every one of these tags.
    pub tags: Vec<String>,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub protected: Option<bool>,
    /// `None`: hidden images are left out (Glance's default).
    pub os_hidden: Option<bool>,
    pub size_min: Option<i64>,
    pub size_max: Option<i64>,
    /// Exact values of base columns (`size`, `checksum`, `min_disk`, …).
    pub columns: Vec<(BaseColumn, String)>,
    /// Custom properties that must have these values.
    pub properties: Vec<(String, String)>,
    /// Sort keys in priority order; empty means `created_at desc`. `id` is
    /// always appended as the tie-breaker.
    pub sort: Vec<(SortKey, SortDir)>,
    pub limit: Option<i64>,
    /// Start after this image (which must be one the viewer may see).
    pub marker: Option<GlanceImageId>,
}

/// A page of images; `MarkerNotFound` when the marker names no image the
/// viewer may see.
pub async fn glance_image_list(conn: &mut Conn, q: &GlanceImageQuery) -> Result<Vec<GlanceImage>> {
    let mut sort = if q.sort.is_empty() {
        vec![(SortKey::CreatedAt, SortDir::Desc)]
    } else {
        q.sort.clone()
    };
    if !sort.iter().any(|(k, _)| *k == SortKey::Id) {
        let last = sort.last().map(|s| s.1).unwrap_or(SortDir::Desc);
        sort.push((SortKey::Id, last));
    }
    let mut k = Keyset::new("SELECT * FROM glance_images WHERE 1 = 1");
    if let Some(marker) = q.marker {
        let m = match glance_image_get(conn, marker).await? {
            Some(m) if may_see(conn, q.viewer.as_deref(), &m).await? => m,
            _ => return Err(StoreError::MarkerNotFound(marker.to_string())),
        };
        filters(&mut k, q);
        let after: Vec<_> = sort
            .iter()
            .map(|(key, d)| (key.expr(), *d, key.value(&m)))
            .collect();
        k.after(&after);
    } else {
        filters(&mut k, q);
    }
    let order: Vec<_> = sort.iter().map(|(key, d)| (key.expr(), *d)).collect();
    k.order_and_page(&order, q.limit, None);
    let rows = k.fetch_all(&mut *conn).await?;
    let mut images = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    attach(conn, &mut images).await?;
    Ok(images)
}

/// Whether `viewer` (`None`: an admin) may see `i` at all: its owner, an
/// admin, anyone for public and community images, a member of a shared one
/// (whatever its status).
async fn may_see(conn: &mut Conn, viewer: Option<&str>, i: &GlanceImage) -> Result<bool> {
    let Some(p) = viewer else { return Ok(true) };
    Ok(i.owner == p
        || matches!(i.visibility, Visibility::Public | Visibility::Community)
        || (i.visibility == Visibility::Shared
            && glance_member_get(conn, i.id, p).await?.is_some()))
}

fn filters(k: &mut Keyset, q: &GlanceImageQuery) {
    let member = |k: &mut Keyset, p: &str, status: Option<MemberStatus>| {
        k.push(
            "EXISTS (SELECT 1 FROM glance_image_members m WHERE m.image_id = glance_images.id AND m.member = ",
        );
        k.bind(SqlValue::Text(p.to_owned()));
        if let Some(s) = status {
            k.push(" AND m.status = ");
            k.bind(SqlValue::Text(s.as_str().to_owned()));
        }
        k.push(")");
    };
    let text = |s: &str| SqlValue::Text(s.to_owned());
    match (&q.viewer, q.visibility) {
        (None, VisibilityFilter::Default | VisibilityFilter::All) => {}
        (None, VisibilityFilter::Only(v)) => k.filter("visibility", text(v.as_str())),
        (Some(p), VisibilityFilter::Default) => {
            k.push(" AND (owner = ");
            k.bind(text(p));
            k.push(" OR visibility = 'public' OR (visibility = 'shared' AND ");
            member(k, p, q.member_status);
            k.push("))");
        }
        (Some(p), VisibilityFilter::All) => {
            k.push(" AND (owner = ");
            k.bind(text(p));
            k.push(" OR visibility IN ('public', 'community') OR (visibility = 'shared' AND ");
            member(k, p, q.member_status);
            k.push("))");
        }
        (Some(p), VisibilityFilter::Only(v)) => {
            k.filter("visibility", text(v.as_str()));
            match v {
                Visibility::Public | Visibility::Community => {}
                Visibility::Private => k.filter("owner", text(p)),
                Visibility::Shared => {
                    k.push(" AND (owner = ");
                    k.bind(text(p));
                    k.push(" OR ");
                    member(k, p, q.member_status);
                    k.push(")");
                }
            }
        }
    }
    if let Some(n) = &q.name {
        k.filter("name", text(n));
    }
    if let Some(s) = &q.status {
        k.filter("status", text(s));
    }
    if let Some(o) = &q.owner {
        k.filter("owner", text(o));
    }
    if let Some(f) = &q.disk_format {
        k.filter("disk_format", text(f));
    }
    if let Some(f) = &q.container_format {
        k.filter("container_format", text(f));
    }
    if let Some(p) = q.protected {
        k.filter(
            "CASE WHEN protected THEN 1 ELSE 0 END",
            SqlValue::Int(i64::from(p)),
        );
    }
    k.filter(
        "CASE WHEN os_hidden THEN 1 ELSE 0 END",
        SqlValue::Int(i64::from(q.os_hidden.unwrap_or(false))),
    );
    if let Some(min) = q.size_min {
        k.push(" AND size >= ");
        k.bind(SqlValue::Int(min));
    }
    if let Some(max) = q.size_max {
        k.push(" AND size <= ");
        k.bind(SqlValue::Int(max));
    }
    for (c, value) in &q.columns {
        let (column, integer) = c.column();
        match (integer, value.parse::<i64>()) {
            (true, Ok(n)) => k.filter(column, SqlValue::Int(n)),
            // No integer column equals a value that is not an integer.
            (true, Err(_)) => k.push(" AND 1 = 0"),
            (false, _) => k.filter(column, text(value)),
        }
    }
    for t in &q.tags {
        k.push(" AND EXISTS (SELECT 1 FROM glance_image_tags t WHERE t.image_id = glance_images.id AND t.tag = ");
        k.bind(text(t));
        k.push(")");
    }
    for (key, value) in &q.properties {
        k.push(" AND EXISTS (SELECT 1 FROM glance_image_properties p WHERE p.image_id = glance_images.id AND p.key = ");
        k.bind(text(key));
        k.push(" AND p.value = ");
        k.bind(text(value));
        k.push(")");
    }
}
