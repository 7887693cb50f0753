//! Validation where the files lie: this very Lazarus binary is shipped to a node on
//! another host (once per host and binary, under `<persistent path>/.lazarus/bin/`, named
//! and checked by its SHA-256 there) and runs `check file --json` on each candidate, so
//! the reader parses every byte at that disk's speed and only its report crosses the
//! network. The report maps to the same [`SourceCheck`] the local reader gives.
//!
//! Why not stream the file to the local reader instead: the data would cross the network
//! once for validation and the copy would still be made there; the binary crosses once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;

use super::source::{CheckVerdict, SourceCheck};
use crate::ccs::SlotRange;
use crate::host::{Host, NodeId};

/// Where the reader runs on each remote node.
pub struct RemoteReaders {
    /// Each remote node's persistent path: the binary goes beside its data.
    homes: BTreeMap<NodeId, PathBuf>,
}

/// The binary's path on each host it was shipped to by this process (by host name).
fn shipped() -> &'static tokio::sync::Mutex<BTreeMap<String, PathBuf>> {
    static SHIPPED: OnceLock<tokio::sync::Mutex<BTreeMap<String, PathBuf>>> = OnceLock::new();
    SHIPPED.get_or_init(Default::default)
}

impl RemoteReaders {
    pub fn new(homes: BTreeMap<NodeId, PathBuf>) -> RemoteReaders {
        RemoteReaders { homes }
    }

    /// `check file --json` of `path` on `host`, as planning reads a check.
    pub async fn check(
        &self,
        node: NodeId,
        host: &dyn Host,
        path: &Path,
        slots: Option<SlotRange>,
    ) -> SourceCheck {
        let files = [(path.to_path_buf(), slots)];
        self.check_many(node, host, &files).await.remove(0)
    }

    /// `check file --json` of every file in `files` on `host`, in their order: split into
    /// at most [`crate::host::max_concurrency`] batches run at once, each batch one
    /// session there that runs the reader on its files in turn, so a node's candidates
    /// cost a round trip, not one each.
    pub async fn check_many(
        &self,
        node: NodeId,
        host: &dyn Host,
        files: &[(PathBuf, Option<SlotRange>)],
    ) -> Vec<SourceCheck> {
        if files.is_empty() {
            return Vec::new();
        }
        let binary = match self.binary(node, host).await {
            Ok(b) => b,
            Err(why) => return files.iter().map(|(p, _)| cant(host, p, &why)).collect(),
        };
        let batches = crate::host::max_concurrency().clamp(1, files.len());
        let runs = files
            .chunks(files.len().div_ceil(batches))
            .map(|chunk| run_batch(host, &binary, chunk));
        futures::future::join_all(runs)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The path of this binary on `host`, shipped there if it is not yet.
    async fn binary(&self, node: NodeId, host: &dyn Host) -> Result<PathBuf, String> {
        // One shipment per host at a time; planning's threads wait for it.
        let mut shipped = shipped().lock().await;
        if let Some(done) = shipped.get(&host.name()) {
            return Ok(done.clone());
        }
        let home = self
            .homes
            .get(&node)
            .ok_or_else(|| format!("node:{node} has no persistent path"))?;
        let path = ship(host, home).await?;
        shipped.insert(host.name(), path.clone());
        Ok(path)
    }
}

/// A candidate the reader could not check on `host`: refused as corrupt, saying why.
fn cant(host: &dyn Host, path: &Path, why: &str) -> SourceCheck {
    SourceCheck {
        verdict: CheckVerdict::Corrupt,
        fault: Some((
            path.to_path_buf(),
            0,
            format!("a file Lazarus could check on {} ({why})", host.name()),
        )),
        ..SourceCheck::default()
    }
}

/// Runs the reader (`$1`) on each (file, slots) pair after it, a NUL after each report.
const BATCH: &str = r#"b=$1; shift
while [ $# -ge 2 ]; do
  if [ -n "$2" ]; then "$b" --json check file "$1" slots "$2"; else "$b" --json check file "$1"; fi
  printf '\0'
  shift 2
done"#;

/// One session on `host` checking `files` in turn with the shipped `binary`.
async fn run_batch(
    host: &dyn Host,
    binary: &Path,
    files: &[(PathBuf, Option<SlotRange>)],
) -> Vec<SourceCheck> {
    let mut args = vec![
        "-c".to_string(),
        BATCH.to_string(),
        "sh".into(),
        binary.to_string_lossy().into_owned(),
    ];
    for (path, slots) in files {
        args.push(path.to_string_lossy().into_owned());
        args.push(slots.map(|s| s.to_string()).unwrap_or_default());
    }
    let out = match host.run(Path::new("sh"), &args).await {
        Ok(out) => out,
        Err(e) => {
            let why = e.to_string();
            return files.iter().map(|(p, _)| cant(host, p, &why)).collect();
        }
    };
    let mut reports = out.stdout.split('\0');
    files
        .iter()
        .map(|(path, _)| match reports.next().map(parse_report) {
            Some(Ok(check)) => check,
            Some(Err(why)) => cant(
                host,
                path,
                &format!("{why}; it said: {}", out.stderr.trim()),
            ),
            None => cant(
                host,
                path,
                &format!("no report; it said: {}", out.stderr.trim()),
            ),
        })
        .collect()
}

/// This process's binary and its SHA-256 (hex), read once.
fn own_binary() -> Result<&'static (Vec<u8>, String), String> {
    static OWN: OnceLock<Result<(Vec<u8>, String), String>> = OnceLock::new();
    OWN.get_or_init(|| {
        use sha2::Digest;
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
        let bytes =
            std::fs::read(&exe).map_err(|e| format!("cannot read `{}`: {e}", exe.display()))?;
        let hex: String = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok((bytes, hex))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Proves the file at `$1` on a host is this binary (its SHA-256 is `$2`) and runs there;
/// makes it executable (owner only) on the way.
const PROVE: &str = r#"p=$1
chmod 700 -- "$p" 2>/dev/null || exit 4
h=$(sha256sum -- "$p" | cut -d' ' -f1)
[ "$h" = "$2" ] || { echo "its SHA-256 there is $h" >&2; exit 4; }
exec "$p" --version"#;

async fn prove(host: &dyn Host, path: &Path, hex: &str) -> Result<(), String> {
    let args = [
        "-c".to_string(),
        PROVE.to_string(),
        "sh".into(),
        path.to_string_lossy().into_owned(),
        hex.to_string(),
    ];
    match host.run(Path::new("sh"), &args).await {
        Ok(out) if out.success => Ok(()),
        Ok(out) => Err(out.stderr.trim().to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Puts this binary at `<home>/.lazarus/bin/lazarus-<sha256 prefix>` on `host` unless a
/// file with its exact hash is there, and proves it runs there: one round trip when it
/// was shipped before.
async fn ship(host: &dyn Host, home: &Path) -> Result<PathBuf, String> {
    let (bytes, hex) = tokio::task::spawn_blocking(own_binary)
        .await
        .map_err(|e| e.to_string())?
        .map(|o| (&o.0, &o.1))?;
    let dir = home.join(".lazarus").join("bin");
    let path = dir.join(format!("lazarus-{}", &hex[..16]));
    if prove(host, &path, hex).await.is_ok() {
        return Ok(path);
    }
    host.create_private_dir(&dir)
        .await
        .map_err(|e| format!("cannot make `{}`: {e}", dir.display()))?;
    host.write_private(&path, bytes)
        .await
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    prove(host, &path, hex).await.map_err(|why| {
        format!(
            "this binary, copied to `{}`, is not proved there (SHA-256 {hex}, and it must run there: same CPU and C library): {why}",
            path.display()
        )
    })?;
    Ok(path)
}

#[derive(Deserialize)]
struct Document {
    result: Option<Report>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Report {
    verdict: String,
    fault: Option<Fault>,
    rdb_version: Option<u32>,
    created: Option<i64>,
    #[serde(default)]
    keys_per_db: BTreeMap<u32, u64>,
    keys: u64,
    keys_exact: bool,
    keys_estimate_why: Option<String>,
    expires: u64,
    expired: u64,
    #[serde(default)]
    expires_per_db: BTreeMap<u32, u64>,
    #[serde(default)]
    expired_per_db: BTreeMap<u32, u64>,
    keys_outside_slots: u64,
    #[serde(default)]
    outside_examples: Vec<String>,
    bytes: u64,
    #[serde(default)]
    damaged_values: Vec<String>,
}

#[derive(Deserialize)]
struct Fault {
    file: PathBuf,
    offset: u64,
    expected: String,
}

/// The JSON `check file --json` printed, as a [`SourceCheck`].
fn parse_report(stdout: &str) -> Result<SourceCheck, String> {
    let doc: Document =
        serde_json::from_str(stdout.trim()).map_err(|e| format!("no report ({e})"))?;
    let Some(r) = doc.result else {
        return Err(doc.error.unwrap_or_else(|| "no report".into()));
    };
    let verdict = match r.verdict.as_str() {
        "ok" | "keys_outside_slots" => CheckVerdict::Ok,
        "truncated" => CheckVerdict::Truncated,
        "unsupported_version" => CheckVerdict::UnsupportedVersion,
        // As the local reader's: permissions were looked at first.
        _ => CheckVerdict::Corrupt,
    };
    Ok(SourceCheck {
        verdict,
        fault: r.fault.map(|f| (f.file, f.offset, f.expected)),
        rdb_version: r.rdb_version,
        created: r.created,
        keys_per_db: r.keys_per_db,
        keys: r.keys,
        keys_exact: r.keys_exact,
        keys_estimate_why: r.keys_estimate_why,
        expires: r.expires,
        expired: r.expired,
        expires_per_db: r.expires_per_db,
        expired_per_db: r.expired_per_db,
        keys_outside_slots: r.keys_outside_slots,
        outside_examples: r.outside_examples,
        bytes: r.bytes,
        damaged_values: r.damaged_values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_report_reads_as_the_local_one() {
        let json = r#"{"command":"check file x","error":"`x` is truncated","ok":false,"result":{"bytes":10,"created":17,"expired":0,"expired_per_db":{},"expires":0,"expires_per_db":{},"fault":{"expected":"8 more byte(s)","file":"x","offset":10},"from_cache":false,"keys":0,"keys_estimate_why":null,"keys_exact":true,"keys_outside_slots":0,"keys_per_db":{"0":3},"kind":"rdb","outside_examples":[],"path":"x","rdb_version":9,"server_version":null,"valid_len":null,"verdict":"truncated","warnings":[]}}"#;
        let c = parse_report(json).unwrap();
        assert_eq!(c.verdict, CheckVerdict::Truncated);
        assert_eq!(c.fault.unwrap().1, 10);
        assert_eq!(c.keys_per_db[&0], 3);
        assert!(parse_report("not json").is_err());
        assert!(parse_report(r#"{"error":"no such file","ok":false}"#).is_err());
    }
}
