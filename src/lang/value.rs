//! Typed values of the command language (integers, sizes, ports, ranges, addresses, node
//! and database references, paths, secrets) and their nom parsers.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use nom::bytes::complete::{tag, tag_no_case, take_while1};
use nom::character::complete::{char, digit1};
use nom::combinator::{all_consuming, map_res, opt};
use nom::sequence::{preceded, separated_pair};
use nom::IResult;

use crate::ccs::{Id, PortRange, SlotRange, SLOT_COUNT};
use crate::secret::Secret;

use super::lexer::quote;

/// What an argument accepts. Drives parsing, usage text and completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// Any word: rack ids.
    Word,
    /// A cluster name ([`crate::ccs::rules::check_cluster_name`]).
    ClusterName,
    /// A database name ([`crate::ccs::rules::check_db_name`]).
    DbName,
    /// A non-negative integer.
    Integer,
    /// Bytes, with an optional unit: `1gb`, `512mb`, `100kb`, `4096`.
    Size,
    /// A TCP port, 1-65535.
    Port,
    /// `lo-hi` ports.
    PortRange,
    /// `lo-hi` hash slots, 0-16383.
    SlotRange,
    /// An IPv4 or IPv6 address.
    Ip,
    /// `host:port` (`[v6]:port` for IPv6).
    HostPort,
    /// `[user@]host[:port]`: a machine reached over SSH.
    SshTarget,
    /// A file or directory; completes from the file system.
    Path,
    /// A backup run: its id, `latest`, or `<repository>/<run|latest>`; completes `latest`
    /// and this cluster's succeeded runs, newest first (a path once a `/` is typed).
    Run,
    /// An existing backup task's name; completes from the CCS.
    BackupTask,
    /// An existing restore task's (or restore task group's) name; completes from the CCS.
    RestoreTask,
    /// `node:2` or `2`; completes from the CCS.
    Node,
    /// `db:3`, `3` or a database name; completes from the CCS.
    Database,
    /// Databases separated by commas (`orders,db:3`), or `all`.
    Databases,
    /// A password: never written to history, never printed back in full.
    Secret,
    /// One of fixed words, such as `enabled|disabled`.
    Choice(&'static [&'static str]),
}

/// A database named by id or by name.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum DbRef {
    Id(Id),
    Name(String),
}

impl fmt::Display for DbRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbRef::Id(id) => write!(f, "db:{id}"),
            DbRef::Name(name) => f.write_str(&quote(name)),
        }
    }
}

/// Several databases named at once: `orders,sessions`, or `all` (what `all` covers is
/// the command's to say).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DbSet {
    All,
    Some(Vec<DbRef>),
}

impl DbSet {
    /// `all`, or references separated by commas: none empty, none twice.
    fn parse(text: &str) -> Result<DbSet, String> {
        if text.eq_ignore_ascii_case("all") {
            return Ok(DbSet::All);
        }
        let mut refs: Vec<DbRef> = Vec::new();
        for part in text.split(',') {
            if part.is_empty() {
                return Err(format!(
                    "`{text}` has an empty database name: separate names with single commas"
                ));
            }
            let Value::Database(r) = ValueKind::Database.parse(part)? else {
                unreachable!("a database parses as a database")
            };
            if refs.contains(&r) {
                return Err(format!("`{text}` names {r} twice"));
            }
            refs.push(r);
        }
        Ok(DbSet::Some(refs))
    }

    /// The one database this names, if it names exactly one.
    pub fn single(&self) -> Option<&DbRef> {
        match self {
            DbSet::Some(refs) if refs.len() == 1 => refs.first(),
            _ => None,
        }
    }
}

impl fmt::Display for DbSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbSet::All => f.write_str("all"),
            DbSet::Some(refs) => {
                for (i, r) in refs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{r}")?;
                }
                Ok(())
            }
        }
    }
}

impl DbRef {
    /// The database this names in `cluster`: the one place a reference is resolved, so
    /// every command says "no such database" the same way.
    pub fn resolve<'a>(
        &self,
        cluster: &'a crate::ccs::Cluster,
    ) -> Result<&'a crate::ccs::Database, NoSuchDatabase> {
        let found = match self {
            DbRef::Id(id) => cluster.databases.get(id),
            DbRef::Name(name) => cluster.database_by_name(name),
        };
        found.ok_or_else(|| {
            let near = match self {
                DbRef::Name(name) => cluster
                    .databases
                    .values()
                    .map(|d| (strsim::levenshtein(name, &d.config.name), &d.config.name))
                    .filter(|(d, _)| *d <= 2)
                    .min()
                    .map(|(_, n)| n.clone()),
                DbRef::Id(_) => None,
            };
            NoSuchDatabase {
                given: self.clone(),
                near,
                known: cluster
                    .databases
                    .values()
                    .map(|d| (d.id, d.config.name.clone()))
                    .collect(),
            }
        })
    }
}

/// A [`DbRef`] that names no database: the nearest name when one is close (`did you
/// mean`), else the databases there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoSuchDatabase {
    given: DbRef,
    near: Option<String>,
    known: Vec<(Id, String)>,
}

impl fmt::Display for NoSuchDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let given = &self.given;
        match (&self.near, self.known.is_empty()) {
            (Some(near), _) => write!(f, "there is no database `{given}`, did you mean `{near}`?"),
            (None, true) => write!(f, "there is no database `{given}`: the cluster has none"),
            (None, false) => {
                let known: Vec<String> = self
                    .known
                    .iter()
                    .map(|(id, name)| format!("db:{id} `{name}`"))
                    .collect();
                write!(
                    f,
                    "there is no database `{given}` (databases: {})",
                    known.join(", ")
                )
            }
        }
    }
}

impl std::error::Error for NoSuchDatabase {}

impl crate::error::DomainError for NoSuchDatabase {
    fn kind(&self) -> crate::error::ErrorKind {
        crate::error::ErrorKind::NotFound
    }

    fn hints(&self) -> Vec<String> {
        self.near
            .iter()
            .map(|n| format!("did you mean `{n}`?"))
            .collect()
    }
}

/// `host:port`: the one [`crate::endpoint::Endpoint`] type.
pub use crate::endpoint::Endpoint as HostPort;

/// A parsed argument value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Word(String),
    Integer(u64),
    Size(u64),
    Port(u16),
    PortRange(PortRange),
    SlotRange(SlotRange),
    Ip(IpAddr),
    HostPort(HostPort),
    SshTarget(crate::host::SshTarget),
    Path(PathBuf),
    Node(Id),
    Database(DbRef),
    Databases(DbSet),
    Secret(Secret),
    Choice(&'static str),
}

impl ValueKind {
    /// How the kind reads in messages: "a port", "an IP address".
    pub fn describe(self) -> String {
        match self {
            ValueKind::Word => "a word".into(),
            ValueKind::BackupTask => "a backup task".into(),
            ValueKind::RestoreTask => "a restore task".into(),
            ValueKind::Run => "a backup run".into(),
            ValueKind::ClusterName | ValueKind::DbName => "a name".into(),
            ValueKind::Integer => "a number".into(),
            ValueKind::Size => "a size such as `512mb` or `1gb`".into(),
            ValueKind::Port => "a port (1-65535)".into(),
            ValueKind::PortRange => "a port range such as `30000-30999`".into(),
            ValueKind::SlotRange => "a slot range such as `0-8191` (slots 0-16383)".into(),
            ValueKind::Ip => "an IP address".into(),
            ValueKind::HostPort => "`host:port`".into(),
            ValueKind::SshTarget => "`[user@]host[:port]`".into(),
            ValueKind::Path => "a path".into(),
            ValueKind::Node => "a node id such as `node:2` or `2`".into(),
            ValueKind::Database => "a database (`db:3`, `3` or its name)".into(),
            ValueKind::Databases => {
                "databases separated by commas (`orders,db:3`), or `all`".into()
            }
            ValueKind::Secret => "a password".into(),
            ValueKind::Choice(words) => one_of(words),
        }
    }

    /// Parses one token's text as this kind; the error says what was expected.
    pub fn parse(self, text: &str) -> Result<Value, String> {
        let bad = || format!("`{text}` is not {}", self.describe());
        if text.is_empty() {
            return Err(format!(
                "expected {}, found an empty string",
                self.describe()
            ));
        }
        let value = match self {
            ValueKind::Word | ValueKind::Run | ValueKind::BackupTask | ValueKind::RestoreTask => {
                Value::Word(text.to_string())
            }
            ValueKind::ClusterName => {
                crate::ccs::rules::check_cluster_name(text)?;
                Value::Word(text.to_string())
            }
            ValueKind::DbName => {
                crate::ccs::rules::check_db_name(text)?;
                Value::Word(text.to_string())
            }
            // `***` is how a password reads in history and output: recalled from
            // history, it must not become the password.
            ValueKind::Secret if text.chars().all(|c| c == '*') => {
                return Err("the password was hidden in history: type it again".into())
            }
            ValueKind::Secret => Value::Secret(Secret::new(text)),
            ValueKind::Path => Value::Path(PathBuf::from(text)),
            ValueKind::Integer => Value::Integer(whole(integer, text).ok_or_else(bad)?),
            ValueKind::Size => Value::Size(whole(size, text).ok_or_else(bad)?),
            ValueKind::Port => {
                let p = whole(port, text).ok_or_else(bad)?;
                // A shard's port: the bus port is checked where the shard count is known.
                if let Some(why) = crate::server::unusable_port(p, crate::server::PortNeed::Plain) {
                    return Err(why);
                }
                Value::Port(p)
            }
            ValueKind::PortRange => {
                let (lo, hi) =
                    whole(|i| separated_pair(port, char('-'), port)(i), text).ok_or_else(bad)?;
                let range = crate::ccs::rules::port_range(lo, hi)?;
                // A node's range: its ports go to any database's shards, bus ports too.
                if let Some(why) = crate::server::unusable_range(lo, hi) {
                    return Err(why);
                }
                Value::PortRange(range)
            }
            ValueKind::SlotRange => {
                let (start, end) =
                    whole(|i| separated_pair(slot, char('-'), slot)(i), text).ok_or_else(bad)?;
                if start > end {
                    return Err(format!("slot range `{text}` ends before it starts"));
                }
                Value::SlotRange(SlotRange { start, end })
            }
            ValueKind::Ip => Value::Ip(text.parse().map_err(|_| bad())?),
            ValueKind::HostPort => Value::HostPort(whole(host_port, text).ok_or_else(bad)?),
            ValueKind::SshTarget => Value::SshTarget(text.parse()?),
            ValueKind::Node => Value::Node(
                whole(|i| preceded(opt(tag_no_case("node:")), integer)(i), text).ok_or_else(bad)?,
            ),
            ValueKind::Database => Value::Database(
                match whole(|i| preceded(opt(tag_no_case("db:")), integer)(i), text) {
                    Some(id) => DbRef::Id(id),
                    None if text.to_ascii_lowercase().starts_with("db:") => return Err(bad()),
                    None => DbRef::Name(text.to_string()),
                },
            ),
            ValueKind::Databases => Value::Databases(DbSet::parse(text)?),
            ValueKind::Choice(words) => Value::Choice(
                words
                    .iter()
                    .find(|w| w.eq_ignore_ascii_case(text))
                    .copied()
                    .ok_or_else(|| format!("`{text}` is not {}", one_of(words)))?,
            ),
        };
        Ok(value)
    }
}

impl fmt::Display for Value {
    /// Canonical command text for the value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Word(w) => f.write_str(&quote(w)),
            Value::Secret(s) => write!(f, "{s}"),
            Value::Integer(n) => write!(f, "{n}"),
            Value::Size(n) => f.write_str(&format_size(*n)),
            Value::Port(p) => write!(f, "{p}"),
            Value::PortRange(r) => write!(f, "{r}"),
            Value::SlotRange(r) => write!(f, "{r}"),
            Value::Ip(ip) => write!(f, "{ip}"),
            Value::HostPort(hp) => write!(f, "{hp}"),
            Value::SshTarget(t) => f.write_str(&quote(&t.to_string())),
            Value::Path(p) => f.write_str(&quote(&p.to_string_lossy())),
            Value::Node(id) => write!(f, "node:{id}"),
            Value::Database(db) => write!(f, "{db}"),
            Value::Databases(set) => write!(f, "{set}"),
            Value::Choice(c) => f.write_str(c),
        }
    }
}

/// The largest unit that divides `bytes` exactly: `1073741824` → `1gb`.
pub fn format_size(bytes: u64) -> String {
    for (unit, scale) in [
        ("tb", 1u64 << 40),
        ("gb", 1 << 30),
        ("mb", 1 << 20),
        ("kb", 1 << 10),
    ] {
        if bytes != 0 && bytes.is_multiple_of(scale) {
            return format!("{}{unit}", bytes / scale);
        }
    }
    bytes.to_string()
}

/// `` `a`, `b` or `c` ``.
pub fn one_of(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
    match quoted.split_last() {
        None => "nothing".into(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

fn whole<T>(parser: impl FnMut(&str) -> IResult<&str, T>, text: &str) -> Option<T> {
    all_consuming(parser)(text).ok().map(|(_, v)| v)
}

fn integer(input: &str) -> IResult<&str, u64> {
    map_res(digit1, str::parse)(input)
}

fn port(input: &str) -> IResult<&str, u16> {
    map_res(integer, |n| match u16::try_from(n) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err("port out of range"),
    })(input)
}

fn slot(input: &str) -> IResult<&str, u16> {
    map_res(integer, |n| match u16::try_from(n) {
        Ok(s) if s < SLOT_COUNT => Ok(s),
        _ => Err("slot out of range"),
    })(input)
}

fn size(input: &str) -> IResult<&str, u64> {
    let (rest, n) = integer(input)?;
    let (rest, unit) = opt(nom::branch::alt((
        tag_no_case("kb"),
        tag_no_case("mb"),
        tag_no_case("gb"),
        tag_no_case("tb"),
        tag_no_case("k"),
        tag_no_case("m"),
        tag_no_case("g"),
        tag_no_case("t"),
        tag_no_case("b"),
    )))(rest)?;
    let shift = match unit.map(|u| u.as_bytes()[0].to_ascii_lowercase()) {
        Some(b'k') => 10,
        Some(b'm') => 20,
        Some(b'g') => 30,
        Some(b't') => 40,
        _ => 0,
    };
    match n.checked_mul(1u64 << shift) {
        Some(bytes) => Ok((rest, bytes)),
        None => Err(nom::Err::Error(nom::error::Error::new(
            input,
            nom::error::ErrorKind::TooLarge,
        ))),
    }
}

fn host_port(input: &str) -> IResult<&str, HostPort> {
    let (input, tls) = match input.strip_prefix(crate::endpoint::TLS_SCHEME) {
        Some(rest) => (rest, true),
        None => (input.strip_prefix("redis://").unwrap_or(input), false),
    };
    let v6 = nom::sequence::delimited(
        tag("["),
        take_while1(|c: char| c.is_ascii_hexdigit() || c == ':' || c == '.'),
        tag("]"),
    );
    let name = take_while1(|c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
    let (rest, (host, port)) =
        separated_pair(nom::branch::alt((v6, name)), char(':'), port)(input)?;
    Ok((rest, HostPort::new(host, port).with_tls(tls)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_and_print_canonically() {
        let cases: &[(ValueKind, &str, &str)] = &[
            (ValueKind::Integer, "42", "42"),
            (ValueKind::Size, "1gb", "1gb"),
            (ValueKind::Size, "512MB", "512mb"),
            (ValueKind::Size, "1024", "1kb"),
            (ValueKind::Size, "1000", "1000"),
            (ValueKind::Port, "6380", "6380"),
            (ValueKind::PortRange, "30000-30999", "30000-30999"),
            (ValueKind::SlotRange, "0-16383", "0-16383"),
            (ValueKind::Ip, "127.0.0.1", "127.0.0.1"),
            (ValueKind::Ip, "::1", "::1"),
            (ValueKind::HostPort, "10.0.0.1:6379", "10.0.0.1:6379"),
            (ValueKind::HostPort, "[::1]:6379", "[::1]:6379"),
            (
                ValueKind::HostPort,
                "rediss://10.0.0.1:6380",
                "rediss://10.0.0.1:6380",
            ),
            (
                ValueKind::HostPort,
                "redis-a.local:7000",
                "redis-a.local:7000",
            ),
            (ValueKind::Node, "node:2", "node:2"),
            (ValueKind::Node, "2", "node:2"),
            (ValueKind::Database, "db:3", "db:3"),
            (ValueKind::Database, "3", "db:3"),
            (ValueKind::Database, "orders", "orders"),
            (ValueKind::Databases, "orders", "orders"),
            (ValueKind::Databases, "orders,3,DB:4", "orders,db:3,db:4"),
            (ValueKind::Databases, "ALL", "all"),
            (ValueKind::Path, "/a b/c", "\"/a b/c\""),
            (
                ValueKind::Choice(&["enabled", "disabled"]),
                "Enabled",
                "enabled",
            ),
        ];
        for (kind, text, canonical) in cases {
            let value = kind.parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(value.to_string(), *canonical, "{text}");
        }
    }

    #[test]
    fn bad_values_say_what_was_expected() {
        let cases: &[(ValueKind, &str, &str)] = &[
            (ValueKind::Port, "70000", "`70000` is not a port (1-65535)"),
            (ValueKind::Port, "0", "`0` is not a port (1-65535)"),
            (
                ValueKind::Port,
                "1",
                "port `1` is privileged (below 1024: system services' ports, which only root may bind): give a port of 1024-65535",
            ),
            (
                ValueKind::PortRange,
                "31000-30000",
                "port range `31000-30000` ends before it starts",
            ),
            (
                ValueKind::SlotRange,
                "0-16384",
                "`0-16384` is not a slot range such as `0-8191` (slots 0-16383)",
            ),
            (ValueKind::Ip, "1.2.3", "`1.2.3` is not an IP address"),
            (
                ValueKind::Size,
                "12xb",
                "`12xb` is not a size such as `512mb` or `1gb`",
            ),
            (
                ValueKind::Size,
                "99999999999999tb",
                "`99999999999999tb` is not a size such as `512mb` or `1gb`",
            ),
            (
                ValueKind::Node,
                "node:x",
                "`node:x` is not a node id such as `node:2` or `2`",
            ),
            (
                ValueKind::Database,
                "db:x",
                "`db:x` is not a database (`db:3`, `3` or its name)",
            ),
            (
                ValueKind::Databases,
                "orders,,x",
                "`orders,,x` has an empty database name: separate names with single commas",
            ),
            (
                ValueKind::Databases,
                "a,3,db:3",
                "`a,3,db:3` names db:3 twice",
            ),
            (
                ValueKind::Databases,
                "a,db:x",
                "`db:x` is not a database (`db:3`, `3` or its name)",
            ),
            (ValueKind::HostPort, "host", "`host` is not `host:port`"),
            (
                ValueKind::Choice(&["aof", "snapshot", "disabled"]),
                "rdb",
                "`rdb` is not `aof`, `snapshot` or `disabled`",
            ),
        ];
        for (kind, text, message) in cases {
            assert_eq!(kind.parse(text).unwrap_err(), *message);
        }
    }
}
