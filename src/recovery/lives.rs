//! A node's lives on one disk: its persistent path (`data`) and the directories recovery
//! made beside it for its data each time it was recovered (`data-recovered`,
//! `data-recovered-2`, ...). The one owner of those names: a new life is always named from
//! the family's base, so two recoveries never make `data-recovered-recovered`.

use std::path::{Path, PathBuf};

/// The suffix of a directory recovery made beside an old persistent path.
const RECOVERED: &str = "-recovered";

/// How many lives a family may have before recovery stops looking for a free name.
const MAX_LIVES: u32 = 99;

/// `name` with every `-recovered` / `-recovered-<n>` taken off (earlier releases named a
/// second life `data-recovered-recovered`: it is of `data`'s family too).
pub fn family_base(name: &str) -> &str {
    let mut base = name;
    loop {
        let stripped = base.strip_suffix(RECOVERED).or_else(|| {
            let (head, n) = base.rsplit_once("-recovered-")?;
            n.parse::<u32>().ok().map(|_| head)
        });
        match stripped {
            Some(head) if !head.is_empty() => base = head,
            _ => return base,
        }
    }
}

/// Whether `name` is `base` followed by one or more `-recovered` / `-recovered-N`.
pub fn is_recovered_of(name: &str, base: &str) -> bool {
    name.len() > base.len() && name.starts_with(base) && family_base(name) == base
}

/// The names a new life of the node at `path` may take, in order: `<base>-recovered`,
/// then `<base>-recovered-2`, `-3`, ... where `<base>` is `path`'s family base, so
/// recovering a node that already lives in `data-recovered` gives `data-recovered-2`.
pub fn new_life_names(path: &Path) -> Vec<PathBuf> {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let base = family_base(&name);
    (1..=MAX_LIVES)
        .map(|n| match n {
            1 => path.with_file_name(format!("{base}{RECOVERED}")),
            n => path.with_file_name(format!("{base}{RECOVERED}-{n}")),
        })
        .collect()
}

/// The paths of one node's lives on this machine: `path`'s family base and every
/// sibling of its family that is a directory, the base first.
pub fn family(path: &Path) -> Vec<PathBuf> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let base = family_base(&name.to_string_lossy()).to_string();
    let names = std::fs::read_dir(parent)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    family_among(parent, names, &base)
        .into_iter()
        .filter(|p| p.is_dir())
        .collect()
}

/// Of `names` (the entries of `parent`), the paths of `base`'s family: the base first,
/// then its lives in name order; at most 64.
pub fn family_among(parent: &Path, names: Vec<String>, base: &str) -> Vec<PathBuf> {
    let mut lives: Vec<String> = names
        .into_iter()
        .filter(|n| n == base || is_recovered_of(n, base))
        .collect();
    lives.sort_by(|a, b| (a != base, a).cmp(&(b != base, b)));
    lives.dedup();
    lives.truncate(64);
    lives.into_iter().map(|n| parent.join(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovered_siblings_are_named_by_their_base() {
        assert_eq!(family_base("data-recovered-2-recovered"), "data");
        assert_eq!(family_base("data"), "data");
        assert!(is_recovered_of("data-recovered", "data"));
        assert!(is_recovered_of("data-recovered-3", "data"));
        assert!(!is_recovered_of("data2-recovered", "data"));
        assert!(!is_recovered_of("data", "data"));
    }

    /// A new life is named from the family's base: never `-recovered-recovered`.
    #[test]
    fn new_lives_do_not_grow_their_name() {
        let names = |p: &str| -> Vec<String> {
            new_life_names(Path::new(p))
                .iter()
                .take(3)
                .map(|p| p.display().to_string())
                .collect()
        };
        let expected = ["/d/n1-recovered", "/d/n1-recovered-2", "/d/n1-recovered-3"];
        assert_eq!(names("/d/n1"), expected);
        assert_eq!(names("/d/n1-recovered"), expected);
        assert_eq!(names("/d/n1-recovered-7"), expected);
        assert_eq!(names("/d/n1-recovered-recovered"), expected);
        assert_eq!(new_life_names(Path::new("/d/n1")).len(), MAX_LIVES as usize);
    }

    #[test]
    fn a_family_is_its_base_then_its_lives() {
        let names = ["n1-recovered-2", "n10", "n1-recovered", "n1", "x"].map(String::from);
        assert_eq!(
            family_among(Path::new("/d"), names.to_vec(), "n1"),
            ["/d/n1", "/d/n1-recovered", "/d/n1-recovered-2"].map(PathBuf::from)
        );
    }
}
