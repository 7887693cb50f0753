//! Lazarus: an rladmin-style admin and recovery shell for clusters of Redis OSS / Valkey
//! databases.
//!
//! # Layout
//! The layers, each importing only those below it: [`shell`]; [`cmd`]; [`restore`] and
//! [`recovery`]; [`replay`], [`verify`], [`db`] and [`backup`]; [`lang`] and [`ccs`];
//! [`server`]; [`persist`] and [`tls`]; [`host`], [`error`], [`endpoint`], [`secret`],
//! [`progress`]. A `cmd` file parses, resolves, calls one service function and renders
//! (README.md's "Where each operator action lives" names the function of every command).
//!
//! - [`ccs`]: the cluster configuration store: the serde model of a cluster (nodes,
//!   databases, shards, the id allocator) and its atomic, locked storage with per-node
//!   backups; `ccs/wire.rs` makes the server layer's plain values (shard addresses,
//!   transports, identity files, binaries, port picks) from the model.
//! - [`recovery`]: disaster recovery: planning from the old files under recovery paths,
//!   copying them, and bringing databases back (the services `recovery::run::recover` /
//!   `recover_all`, `recovery::from_files`); rebuilding the configuration itself
//!   (`cluster recover`, `recovery::rebuild`).
//! - [`host`]: the host seam: [`host::Host`] (files, processes, system figures of a
//!   node) with [`host::LocalHost`] for this machine; paths on a node are
//!   [`host::NodePath`]s.
//! - [`server`]: real `redis-server` shards, from plain values and never the CCS: the
//!   binary, redis.conf ([`server::ShardConf`]), start/stop ([`server::ShardStart`]), ports,
//!   Redis Cluster formation, replication, INFO probes; [`server::ShardDir`] owns a shard
//!   directory's layout (`redis/db-N/shard-N`, its files, the identity file, recovery's
//!   marker) and the one identity reader; [`server::connection_info`] builds every Redis
//!   connection from an [`endpoint::Endpoint`].
//! - [`db`]: database operations on live shards: the services create, delete, restart
//!   (`db::service`), the one bring-up pipeline create, restart, recovery and restore share
//!   (`db::BringUp`), a shard's start from the model ([`db::start_shard`]), `status`.
//! - [`lang`]: the command language: lexer, typed values, syntax specs, the matcher, parse
//!   errors, completion and hints.
//! - [`cmd`]: the commands, one file per family, the registry, and `apply`.
//! - [`persist`]: the persistence file reader: validates RDB and AOF files byte by byte,
//!   at close to disk speed, in bounded memory.
//! - [`error`]: the error kinds every layer's errors have (`usage`, `not_found`, ...),
//!   which decide the exit status and the JSON `kind`.
//! - [`endpoint`]: [`endpoint::Endpoint`], `host:port` as one type from the parser
//!   through the CCS to the Redis connection.
//! - [`progress`]: [`progress::Progress`], how long work reports without printing (the
//!   binary draws it).
//! - [`secret`]: [`secret::Secret`], a password that prints and serialises as `***`.
//! - [`verify`]: proof of content: the digest of persistence files against the digest of
//!   a live database (SCAN + DUMP decoded by the same reader), naming the keys that differ.
//! - [`backup`]: backups: consistent cuts of a database pulled over the Redis protocol,
//!   checked as they stream, sealed by a manifest; repositories, locks, `due`, `keep`;
//!   the services of the `backup` commands (`backup::service`).
//! - [`restore`]: restore tasks: their services (`restore::Tasks`: create, verify,
//!   start, retry, show, delete, for one database or several); verify a run against its
//!   target, then fence, stage, swap, load, check, re-form, unfence, and roll back on
//!   failure.
//! - [`replay`]: keys decoded from RDB files written into live masters as `RESTORE`
//!   commands, routed by slot, pipelined: files of another shard count (restore), or of
//!   an RDB version the server cannot load (`recover ... replay`).
//! - [`tls`]: TLS material: the check of the CA, certificate and key before anything is
//!   stored, and their installation into each node's persistent path.
//! - [`shell`]: the sessions (REPL, one-shot, script), flags, rendering of replies.

pub mod backup;
pub mod ccs;
pub mod cmd;
pub mod db;
pub mod endpoint;
pub mod error;
pub mod host;
pub mod lang;
pub mod persist;
pub mod progress;
pub mod recovery;
pub mod replay;
pub mod restore;
pub mod secret;
pub mod server;
pub mod shell;
pub mod tls;
pub mod verify;
