//! `cluster tls set cacert <path> cert <path> key <path> [tls_verify on|off]`: the
//! cluster's TLS material, checked, copied into every node's persistent path, recorded
//! in the CCS by path and fingerprint.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use super::super::{
    Command, CommandError, CommandSyntax, Context, Element, Match, Opt, ParseError, Render, Reply,
    Text, ValueKind,
};
use super::ClusterCommand;
use crate::ccs::{rules, Id};
use crate::lang::quote;
use crate::tls::{self, MaterialPaths};

const ON_OFF: &[&str] = &["on", "off"];

/// `cluster tls set ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSet {
    pub paths: MaterialPaths,
    /// `Some(false)` only when `tls_verify off` is written.
    pub verify: Option<bool>,
}

pub(super) const SET: CommandSyntax = CommandSyntax {
    elements: &[
        Element::Keyword("cluster"),
        Element::Keyword("tls"),
        Element::Keyword("set"),
        Element::Options(&[
            Opt::required("cacert", "path", ValueKind::Path),
            Opt::required("cert", "path", ValueKind::Path),
            Opt::required("key", "path", ValueKind::Path),
            Opt::optional("tls_verify", "mode", ValueKind::Choice(ON_OFF)),
        ]),
    ],
    summary: "set or rotate the cluster's TLS material (CA certificate, certificate, key)",
    examples: &[
        "cluster tls set cacert /etc/lazarus/ca.crt cert /etc/lazarus/redis.crt key /etc/lazarus/redis.key",
        "cluster tls set cacert ca.crt cert redis.crt key redis.key tls_verify off",
    ],
    build: build_set,
};

fn build_set(m: &Match) -> Result<Command, ParseError> {
    Ok(Command::Cluster(ClusterCommand::TlsSet(TlsSet {
        paths: MaterialPaths {
            cacert: m.req("cacert")?,
            cert: m.req("cert")?,
            key: m.req("key")?,
        },
        verify: m.opt::<&str>("tls_verify").map(|v| v == "on"),
    })))
}

pub(super) fn apply(ctx: &Context, req: TlsSet) -> Result<Reply, CommandError> {
    let lock = ctx.store.lock()?;
    let Some(mut cluster) = lock.load()? else {
        return Err(CommandError::no_cluster());
    };
    let paths = MaterialPaths {
        cacert: rules::absolute("cacert", &req.paths.cacert)?,
        cert: rules::absolute("cert", &req.paths.cert)?,
        key: rules::absolute("key", &req.paths.key)?,
    };
    let mut material = tls::check(&paths, unix_now())?;
    material.record.verify = req.verify.unwrap_or(true);
    let rotated = cluster.tls.is_some();

    // Every node gets the files before the CCS names them; a node that cannot take them
    // undoes the others' new directories, and nothing is recorded.
    let mut installed: Vec<(Id, PathBuf)> = Vec::new();
    for node in cluster.nodes.values() {
        let fresh = !tls::installed_dir(&node.persistent_path, &material.record).exists();
        match tls::install(&node.persistent_path, &material) {
            Ok(dir) => installed.push((node.id, if fresh { dir } else { PathBuf::new() })),
            Err(e) => {
                for (_, dir) in &installed {
                    if !dir.as_os_str().is_empty() {
                        let _ = std::fs::remove_dir_all(dir);
                    }
                }
                return Err(CommandError::from(e).context(format!("node:{}", node.id)));
            }
        }
    }
    cluster.tls = Some(material.record.clone());
    lock.save(&mut cluster)?;
    Reply::of(&TlsSetDone {
        rotated,
        material_id: material.record.material_id(),
        cert_not_after: tls::utc(material.record.cert_not_after),
        cacert_sha256: material.record.cacert.sha256.clone(),
        cert_sha256: material.record.cert.sha256.clone(),
        verify: material.record.verify,
        nodes: installed.into_iter().map(|(id, _)| id).collect(),
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `cluster tls set`: what was installed where.
#[derive(Serialize)]
pub struct TlsSetDone {
    /// Material replaced the cluster's previous material.
    pub rotated: bool,
    pub material_id: String,
    pub cert_not_after: String,
    pub cacert_sha256: String,
    pub cert_sha256: String,
    pub verify: bool,
    /// Nodes whose persistent path holds the files.
    pub nodes: Vec<Id>,
}

impl Render for TlsSetDone {
    fn render(&self, text: &mut Text) {
        let nodes: Vec<String> = self.nodes.iter().map(|n| format!("node:{n}")).collect();
        text.line(format!(
            "{} TLS material {}: certificate valid until {}, installed on {}.",
            if self.rotated { "Rotated to" } else { "Set" },
            self.material_id,
            self.cert_not_after,
            nodes.join(", ")
        ));
        text.line(format!("CA sha256 {}", self.cacert_sha256));
        text.line(format!("certificate sha256 {}", self.cert_sha256));
        if !self.verify {
            text.line("tls_verify off: Lazarus does not check the shards' certificates.");
        }
    }
}

pub(super) fn fmt(req: &TlsSet, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(
        f,
        "cluster tls set cacert {} cert {} key {}",
        quote(&req.paths.cacert.to_string_lossy()),
        quote(&req.paths.cert.to_string_lossy()),
        quote(&req.paths.key.to_string_lossy())
    )?;
    if let Some(verify) = req.verify {
        write!(f, " tls_verify {}", if verify { "on" } else { "off" })?;
    }
    Ok(())
}
