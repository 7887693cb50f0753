//! Reading the on-disk layout of shard data, `<root>/redis/db-<id>/shard-<id>/`: one
//! walker for everyone who looks (ids in use, orphan servers, recovery's scans).

use std::fs;
use std::path::{Path, PathBuf};

use super::Id;

/// `db-<n>` / `shard-<n>`: the id in a directory name, if it is one of ours.
pub fn id_in_name(name: &str, prefix: &str) -> Option<Id> {
    let digits = name.strip_prefix(prefix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Sorted subdirectories of `dir` whose names carry an id with `prefix`; an unreadable
/// directory yields nothing (callers that must report it check it themselves).
pub fn id_dirs(dir: &Path, prefix: &str) -> Vec<(Id, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(Id, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| {
            let id = id_in_name(e.file_name().to_str()?, prefix)?;
            Some((id, e.path()))
        })
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_names() {
        assert_eq!(id_in_name("db-12", "db-"), Some(12));
        assert_eq!(id_in_name("db-", "db-"), None);
        assert_eq!(id_in_name("db-1x", "db-"), None);
        assert_eq!(id_in_name("db-+1", "db-"), None);
        assert_eq!(id_in_name("shard-3", "db-"), None);
    }
}
