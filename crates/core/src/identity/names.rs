//! What makes two Identity names the same (issue 15, item 7).
//!
//! Keystone stores names in MySQL with a case-insensitive collation that
//! ignores trailing spaces, so in practice `admin`, `Admin` and `admin ` are
//! one name there (the second is a 409). Scoria applies that rule itself,
//! whatever the database: within a domain, a user or project name may not
//! equal another's once both are lower-cased (Unicode) and stripped of
//! trailing spaces ([`fold`]). Names that only look alike because of
//! invisible characters are refused outright: control characters and the
//! zero-width and direction-formatting characters ([`refuse_invisible`]).
//! Role names are fixed by Scoria (no role API creates or renames one), and
//! the rule holds for them by construction.

use scoria_model::DomainId;
use scoria_store::Conn;
use scoria_store::identity::{self as store, ProjectFilter, UserFilter};

use crate::error::{Error, Result};

/// The form two names are compared in.
pub fn fold(name: &str) -> String {
    name.trim_end_matches(' ').to_lowercase()
}

/// Characters that change nothing a reader sees (or hide what follows).
fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}'                // soft hyphen
            | '\u{180E}'              // Mongolian vowel separator
            | '\u{200B}'..='\u{200F}' // zero-width space, joiners, marks
            | '\u{202A}'..='\u{202E}' // direction embedding and overrides
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}' // direction isolates
            | '\u{FEFF}'              // zero-width no-break space
        )
}

/// Refuse a name holding a control or an invisible formatting character.
pub fn refuse_invisible(what: &str, name: &str) -> Result<()> {
    match name.chars().find(|c| invisible(*c)) {
        Some(c) => Err(Error::Invalid(format!(
            "Invalid input for field 'name': the {what} name contains the character U+{:04X}, which is not allowed.",
            c as u32
        ))),
        None => Ok(()),
    }
}

fn taken(what: &str, name: &str, domain: &DomainId) -> Error {
    Error::Conflict(format!(
        "Conflict occurred attempting to store {what} - Duplicate entry found with name {name} at domain ID {domain}."
    ))
}

/// Refuse a user name that folds to another user's in `domain` (`except`:
/// the user being renamed).
pub async fn refuse_taken_user(
    conn: &mut Conn,
    domain: &DomainId,
    name: &str,
    except: Option<&str>,
) -> Result<()> {
    let f = UserFilter {
        domain_id: Some(domain.clone()),
        ..Default::default()
    };
    let folded = fold(name);
    let clash = store::user_list(conn, &f)
        .await?
        .into_iter()
        .any(|u| Some(u.id.as_str()) != except && fold(&u.name) == folded);
    if clash {
        return Err(taken("user", name, domain));
    }
    Ok(())
}

/// Refuse a project name that folds to another project's in `domain`.
pub async fn refuse_taken_project(
    conn: &mut Conn,
    domain: &DomainId,
    name: &str,
    except: Option<&str>,
) -> Result<()> {
    let f = ProjectFilter {
        domain_id: Some(domain.clone()),
        ..Default::default()
    };
    let folded = fold(name);
    let clash = store::project_list(conn, &f)
        .await?
        .into_iter()
        .any(|p| Some(p.id.as_str()) != except && fold(&p.name) == folded);
    if clash {
        return Err(taken("project", name, domain));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alike_names_fold_together() {
        for n in ["admin", "Admin", "ADMIN", "admin ", "Admin  "] {
            assert_eq!(fold(n), "admin", "{n:?}");
        }
        assert_ne!(fold(" admin"), "admin");
        assert_eq!(fold("ÉCOLE"), fold("école"));
    }

    #[test]
    fn invisible_characters_are_refused() {
        for n in [
            "admin\u{200b}",
            "ad\u{200d}min",
            "admin\n",
            "\u{feff}admin",
            "a\u{202e}b",
        ] {
            assert!(refuse_invisible("user", n).is_err(), "{n:?}");
        }
        for n in ["admin", "Jürgen Müller", "日本", "a-b_c.d@e"] {
            assert!(refuse_invisible("user", n).is_ok(), "{n:?}");
        }
    }
}
