//! The rules for cluster and database names, in one place: the language checks them when
//! a line is parsed (with a span under the name) and the operations check them again with
//! the same functions before they change anything.

/// At most this many bytes.
pub const MAX_NAME_LEN: usize = 64;

fn name_chars_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Cluster names: 1-64 letters, digits, `-`, `_` or `.`.
pub fn check_cluster_name(name: &str) -> Result<(), String> {
    if name_chars_ok(name) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid name: use 1-64 letters, digits, `-`, `_` or `.`"
        ))
    }
}

/// Database names: as cluster names, and starting with a letter, so a name is never read
/// as an id (`3`, `db:3`).
pub fn check_db_name(name: &str) -> Result<(), String> {
    if name_chars_ok(name) && name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid database name: use 1-64 letters, digits, `-`, `_` or `.`; it must start with a letter"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["prod", "a", "db-1_x.y", &"a".repeat(64)] {
            check_cluster_name(ok).unwrap();
            check_db_name(ok).unwrap();
        }
        for bad in ["", "bad name", "x/y", &"a".repeat(65)] {
            check_cluster_name(bad).unwrap_err();
            check_db_name(bad).unwrap_err();
        }
        check_cluster_name("3abc").unwrap();
        assert_eq!(
            check_db_name("3abc").unwrap_err(),
            "`3abc` is not a valid database name: use 1-64 letters, digits, `-`, `_` or `.`; it must start with a letter"
        );
    }
}
