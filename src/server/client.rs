//! Talking to a shard: connections with timeouts, INFO parsing, liveness probes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{ConnectionAddr, ConnectionInfo, ProtocolVersion, RedisConnectionInfo};
use serde::Serialize;

use super::cluster::{parse_nodes, NodeLine};
use super::ServerError;
use crate::endpoint::Endpoint;
use crate::tls::ClientTls;

/// Where a shard listens, how to authenticate, and whether it speaks TLS. `Debug` hides
/// the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ShardAddr {
    pub host: String,
    pub port: u16,
    pub password: Option<String>,
    pub transport: Transport,
}

/// How Lazarus reaches a shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    Plain,
    /// TLS with the cluster's client material.
    Tls(ClientTls),
    /// The database speaks only TLS but the material could not be loaded: every
    /// connection fails with this reason rather than trying plain text.
    TlsUnavailable(String),
}

impl std::fmt::Debug for ShardAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self)
    }
}

impl std::fmt::Display for ShardAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl ShardAddr {
    /// A shard reached in plain text.
    pub fn plain(host: impl Into<String>, port: u16, password: Option<String>) -> ShardAddr {
        ShardAddr {
            host: host.into(),
            port,
            password,
            transport: Transport::Plain,
        }
    }

    /// A shard at `host:port` with `password`: over `tls` when the database speaks TLS
    /// (`speaks_tls`), else in plain text. The CCS makes every shard address of a
    /// database through this (`Cluster::shard_addr`).
    pub fn of_database(
        host: &str,
        port: u16,
        password: Option<String>,
        speaks_tls: bool,
        tls: &Transport,
    ) -> ShardAddr {
        ShardAddr {
            host: host.to_string(),
            port,
            password,
            transport: match speaks_tls {
                true => tls.clone(),
                false => Transport::Plain,
            },
        }
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint::new(self.host.clone(), self.port).with_tls(self.is_tls())
    }

    pub fn is_tls(&self) -> bool {
        !matches!(self.transport, Transport::Plain)
    }

    /// The connection settings; fails only for a TLS shard whose material is missing.
    pub fn connection_info(&self) -> Result<ConnectionInfo, ServerError> {
        let tls = match &self.transport {
            Transport::Plain => None,
            Transport::Tls(t) => Some(t),
            Transport::TlsUnavailable(why) => {
                return Err(self.tls_refused(format!("the database speaks TLS but {why}")))
            }
        };
        Ok(connection_info(
            &self.endpoint(),
            self.password.clone(),
            tls,
        ))
    }

    /// A failed request to this shard over a connection whose TLS session records
    /// `refusal` ([`TlsSession`]): the session's own TLS failure, when it recorded one,
    /// is [`ServerError::TlsRefused`]; anything else is [`ServerError::Redis`].
    fn request_err(&self, e: redis::RedisError, refusal: &Refusal) -> ServerError {
        match refusal.as_ref().and_then(|r| r.get()) {
            Some(tls) => self.tls_refused(format!(
                "TLS session refused (Lazarus's certificate not accepted?): {tls}"
            )),
            None => self.err(e),
        }
    }

    pub(crate) fn err(&self, reason: impl std::fmt::Display) -> ServerError {
        ServerError::Redis {
            addr: self.to_string(),
            reason: reason.to_string(),
        }
    }

    fn tls_refused(&self, reason: impl std::fmt::Display) -> ServerError {
        ServerError::TlsRefused {
            addr: self.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// The one place a Redis connection's settings are built from an [`Endpoint`]: over TLS
/// with `tls`'s material when the endpoint speaks TLS (`rediss://`). A TLS endpoint
/// without material is addressed with TLS and the system's defaults, which a shard
/// asking for client certificates refuses: the error names that.
pub fn connection_info(
    endpoint: &Endpoint,
    password: Option<String>,
    tls: Option<&ClientTls>,
) -> ConnectionInfo {
    let addr = match (endpoint.tls, tls) {
        (true, Some(t)) => t.addr(&endpoint.host, endpoint.port),
        (true, None) => ConnectionAddr::TcpTls {
            host: endpoint.host.clone(),
            port: endpoint.port,
            insecure: false,
            tls_params: None,
        },
        (false, _) => ConnectionAddr::Tcp(endpoint.host.clone(), endpoint.port),
    };
    ConnectionInfo {
        addr,
        redis: RedisConnectionInfo {
            db: 0,
            username: None,
            password,
            protocol: ProtocolVersion::RESP2,
        },
    }
}

/// Opens a connection; connecting and every later reply are bounded by `timeout`. A TLS
/// connection is proved accepted before it is returned (one `PING`): in TLS 1.3 the shard
/// judges Lazarus's certificate only after the handshake, and its refusal is then a
/// typed [`ServerError::TlsRefused`] here rather than a broken pipe at the caller's
/// first request. `status`'s probe, which makes one connection per shard, skips that
/// round trip and reads the refusal from its own first request.
pub async fn connect(
    addr: &ShardAddr,
    timeout: Duration,
) -> Result<MultiplexedConnection, ServerError> {
    let (mut con, refusal) = connect_watched(addr, timeout).await?;
    if refusal.is_some() {
        redis::cmd("PING")
            .query_async::<()>(&mut con)
            .await
            .map_err(|e| addr.request_err(e, &refusal))?;
    }
    Ok(con)
}

/// What a TLS session recorded when it was ended by a TLS failure (see [`TlsSession`]);
/// `None` for a plain connection.
type Refusal = Option<Arc<OnceLock<String>>>;

/// [`connect`] without the proof: the connection, and where its TLS session records a
/// refusal that a later request's error (a closed connection, to redis-rs) stands for.
async fn connect_watched(
    addr: &ShardAddr,
    timeout: Duration,
) -> Result<(MultiplexedConnection, Refusal), ServerError> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout);
    if let Transport::Tls(tls) = &addr.transport {
        return tokio::time::timeout(timeout, connect_tls(addr, tls, config))
            .await
            .map_err(|_| addr.err(format!("no answer within {}ms", timeout.as_millis())))?;
    }
    let client = redis::Client::open(addr.connection_info()?).map_err(|e| addr.err(e))?;
    let con = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| addr.err(e))?;
    Ok((con, None))
}

/// A TLS connection with the cluster's material, parsed once per process (see
/// [`ClientTls::shard_config`]): a full handshake the first time this process talks to
/// the shard, a resumed one after, nothing re-read or re-parsed. No round trip of its
/// own after the handshake (redis-rs' `CLIENT SETINFO` is off, see Cargo.toml).
async fn connect_tls(
    addr: &ShardAddr,
    tls: &ClientTls,
    config: redis::AsyncConnectionConfig,
) -> Result<(MultiplexedConnection, Refusal), ServerError> {
    let stream = match handshake(addr, tls.shard_config(&addr.host, addr.port)).await? {
        Ok(stream) => stream,
        // A server with `tls-session-caching no` refuses any offer to resume ("session
        // id context uninitialized", an internal_error alert), yet issues tickets: once
        // more without resuming, so such a server is not refused every other time.
        Err(e) if resumption_refused(&e) => handshake(addr, tls.fresh_config())
            .await?
            .map_err(|e| addr.tls_refused(format!("TLS handshake: {e}")))?,
        Err(e) => return Err(addr.tls_refused(format!("TLS handshake: {e}"))),
    };
    HANDSHAKES.count(stream.get_ref().1.handshake_kind());
    let info = addr.connection_info()?;
    let refusal: Arc<OnceLock<String>> = Arc::default();
    let session = TlsSession {
        stream,
        refusal: refusal.clone(),
    };
    let refusal = Some(refusal);
    let (con, driver) = MultiplexedConnection::new_with_config(&info.redis, session, config)
        .await
        .map_err(|e| addr.request_err(e, &refusal))?;
    tokio::spawn(driver);
    Ok((con, refusal))
}

/// A new TCP connection to the shard and a TLS handshake over it with `config`: the
/// stream, or the handshake's own error (a failure to connect is the outer error).
async fn handshake(
    addr: &ShardAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>, ServerError> {
    let tcp = tokio::net::TcpStream::connect((addr.host.as_str(), addr.port))
        .await
        .map_err(|e| addr.err(e))?;
    let _ = tcp.set_nodelay(true);
    let name = rustls_pki_types::ServerName::try_from(addr.host.clone())
        .map_err(|e| addr.err(format!("`{}` is not a TLS server name: {e}", addr.host)))?;
    Ok(tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await)
}

/// The shard's answer to a handshake that may have offered to resume: an internal_error
/// alert (OpenSSL's refusal of a session it cannot take back).
pub(super) fn resumption_refused(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .is_some_and(|t| {
            matches!(
                t,
                rustls::Error::AlertReceived(rustls::AlertDescription::InternalError)
            )
        })
}

/// The TLS stream under a shard connection, which records a TLS failure of its session
/// by type. In TLS 1.3 the server judges the client's certificate after the client has
/// finished its handshake: its refusal (an alert, then a close) is the first thing read
/// after the handshake, often before the first request is even written, and redis-rs
/// turns it into a closed connection (its I/O errors keep no inner error).
struct TlsSession {
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    /// The first TLS failure seen on the session (an alert the shard sent, a record that
    /// did not decrypt).
    refusal: Arc<OnceLock<String>>,
}

impl TlsSession {
    fn watch(&self, e: std::io::Error) -> std::io::Error {
        if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            let _ = self.refusal.set(tls.to_string());
        }
        e
    }
}

impl tokio::io::AsyncRead for TlsSession {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.stream).poll_read(cx, buf);
        r.map_err(|e| self.watch(e))
    }
}

impl tokio::io::AsyncWrite for TlsSession {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.stream).poll_write(cx, buf);
        r.map_err(|e| self.watch(e))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.stream).poll_flush(cx);
        r.map_err(|e| self.watch(e))
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.stream).poll_shutdown(cx);
        r.map_err(|e| self.watch(e))
    }
}

/// How this process's TLS handshakes with shards went (see [`tls_handshakes`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TlsHandshakes {
    /// Full handshakes: certificates sent, signed and checked on both sides.
    pub full: u64,
    /// Full handshakes that first took a HelloRetryRequest round trip (the shard wanted
    /// another key exchange group than the one offered first).
    pub retried: u64,
    /// Resumed from a session of an earlier connection (no certificate on the wire).
    pub resumed: u64,
}

struct HandshakeCounts([std::sync::atomic::AtomicU64; 3]);

static HANDSHAKES: HandshakeCounts = HandshakeCounts([
    std::sync::atomic::AtomicU64::new(0),
    std::sync::atomic::AtomicU64::new(0),
    std::sync::atomic::AtomicU64::new(0),
]);

impl HandshakeCounts {
    fn count(&self, kind: Option<rustls::HandshakeKind>) {
        let i = match kind {
            Some(rustls::HandshakeKind::Resumed) => 2,
            Some(rustls::HandshakeKind::FullWithHelloRetryRequest) => 1,
            _ => 0,
        };
        self.0[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The TLS handshakes this process has made with shards so far, by kind: what the
/// benchmark reports and the tests check (a second `status` resumes; no key exchange
/// takes a second round trip).
pub fn tls_handshakes() -> TlsHandshakes {
    let n = |i: usize| HANDSHAKES.0[i].load(std::sync::atomic::Ordering::Relaxed);
    TlsHandshakes {
        full: n(0),
        retried: n(1),
        resumed: n(2),
    }
}

/// Runs one command on a fresh connection, all within `timeout`.
pub(crate) async fn query<T: redis::FromRedisValue>(
    addr: &ShardAddr,
    cmd: &redis::Cmd,
    timeout: Duration,
) -> Result<T, ServerError> {
    let run = async {
        let (mut con, refusal) = connect_watched(addr, timeout).await?;
        cmd.query_async::<T>(&mut con)
            .await
            .map_err(|e| addr.request_err(e, &refusal))
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| addr.err(format!("no answer within {}ms", timeout.as_millis())))?
}

/// The `key:value` lines of an INFO reply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Info(pub BTreeMap<String, String>);

impl Info {
    pub fn parse(text: &str) -> Info {
        Info(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.trim_end().split_once(':'))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.parse().ok()
    }

    /// The engine and its own version: `valkey 8.1.8` (Valkey also reports
    /// `redis_version:7.2.4` for compatibility: its own is `valkey_version`), `redis 7.0.15`.
    pub fn engine(&self) -> Option<String> {
        self.engine_version().map(|(e, v)| format!("{e} {v}"))
    }

    /// The engine (`redis` or `valkey`) and its own version, apart.
    pub fn engine_version(&self) -> Option<(&'static str, &str)> {
        if let Some(v) = self.get("valkey_version") {
            return Some(("valkey", v));
        }
        let engine = match self.get("server_name") {
            Some("valkey") => "valkey",
            _ => "redis",
        };
        self.get("redis_version").map(|v| (engine, v))
    }

    /// Keys of db0 (`db0:keys=12,expires=0,avg_ttl=0`).
    pub fn keys(&self) -> u64 {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with("db") && k[2..].bytes().all(|b| b.is_ascii_digit()))
            .filter_map(|(_, v)| v.split(',').find_map(|kv| kv.strip_prefix("keys=")))
            .filter_map(|n| n.parse::<u64>().ok())
            .sum()
    }
}

/// `INFO <section>` (several sections space separated).
pub async fn info(addr: &ShardAddr, section: &str, timeout: Duration) -> Result<Info, ServerError> {
    let mut cmd = redis::cmd("INFO");
    for s in section.split_whitespace() {
        cmd.arg(s);
    }
    let text: String = query(addr, &cmd, timeout).await?;
    Ok(Info::parse(&text))
}

/// What a shard answered, or why it did not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShardProbe {
    pub up: bool,
    /// The INFO figures (server, memory, persistence, replication, keyspace, cluster).
    pub info: Info,
    /// `cluster_state` from CLUSTER INFO, for cluster shards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_state: Option<String>,
    /// The slot map as the shard sees it (CLUSTER NODES), when asked
    /// ([`ClusterAsk::SlotMap`]).
    #[serde(skip)]
    pub cluster_nodes: Option<Vec<NodeLine>>,
    /// The certificate file a TLS shard serves (`CONFIG GET tls-cert-file`): which
    /// material it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<String>,
    /// The shard would not hold a TLS conversation ([`ServerError::TlsRefused`]): it is
    /// there, but refuses (or is refused) rather than not answering.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_refused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a probe asks a shard about the Redis Cluster it belongs to, in the same round
/// trip as its INFO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterAsk {
    /// A standalone shard: nothing.
    Nothing,
    /// Its `cluster_state` (CLUSTER INFO).
    State,
    /// Its `cluster_state` and the slot map it sees (CLUSTER NODES): a master's, whose
    /// slots `status` checks it serves.
    SlotMap,
}

/// What a shard's probe reads: its INFO figures, its `cluster_state`, its slot map, the
/// certificate file it serves.
type Answer = (Info, Option<String>, Option<Vec<NodeLine>>, Option<String>);

/// Asks a shard for its figures in one round trip (INFO, then what `cluster` asks of a
/// cluster shard and the served certificate for a TLS one, pipelined) on a new
/// connection; a shard that does not answer within `timeout` is down.
pub async fn probe(addr: &ShardAddr, cluster: ClusterAsk, timeout: Duration) -> ShardProbe {
    probe_with(addr, cluster, timeout, None).await
}

/// [`probe`] over the connection `kept` holds to the shard while it still answers, else
/// over a new one, which `kept` then holds: a shell's second `status` makes no
/// connection (and no TLS handshake) to a shard that stayed up.
pub async fn probe_kept(
    addr: &ShardAddr,
    cluster: ClusterAsk,
    timeout: Duration,
    kept: &KeptConnections,
) -> ShardProbe {
    probe_with(addr, cluster, timeout, Some(kept)).await
}

async fn probe_with(
    addr: &ShardAddr,
    cluster: ClusterAsk,
    timeout: Duration,
    kept: Option<&KeptConnections>,
) -> ShardProbe {
    let run = async {
        if let Some(kept) = kept {
            if let Some((mut con, refusal)) = kept.get(addr) {
                match ask(addr, &mut con, &refusal, cluster).await {
                    Ok(answer) => return Ok(answer),
                    // Closed since it was kept (the shard restarted, its `timeout` for
                    // idle clients passed, a restore's fence): a new connection says
                    // what the shard is now.
                    Err(_) => kept.forget(addr),
                }
            }
        }
        let (mut con, refusal) = connect_watched(addr, timeout).await?;
        let answer = ask(addr, &mut con, &refusal, cluster).await?;
        if let Some(kept) = kept {
            kept.keep(addr, con, refusal);
        }
        Ok::<_, ServerError>(answer)
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok((info, cluster_state, cluster_nodes, tls_cert_file))) => ShardProbe {
            up: true,
            info,
            cluster_state,
            cluster_nodes,
            tls_cert_file,
            tls_refused: false,
            error: None,
        },
        Ok(Err(e)) => down(e.to_string(), matches!(e, ServerError::TlsRefused { .. })),
        Err(_) => {
            if let Some(kept) = kept {
                kept.forget(addr);
            }
            down(format!("no answer within {}ms", timeout.as_millis()), false)
        }
    }
}

/// The probe's pipeline on an open connection.
async fn ask(
    addr: &ShardAddr,
    con: &mut MultiplexedConnection,
    refusal: &Refusal,
    cluster: ClusterAsk,
) -> Result<Answer, ServerError> {
    let mut pipe = redis::pipe();
    pipe.cmd("INFO")
        .arg("server")
        .arg("memory")
        .arg("persistence")
        .arg("replication")
        .arg("keyspace");
    if cluster != ClusterAsk::Nothing {
        pipe.cmd("CLUSTER").arg("INFO");
    }
    if cluster == ClusterAsk::SlotMap {
        pipe.cmd("CLUSTER").arg("NODES");
    }
    if addr.is_tls() {
        pipe.cmd("CONFIG").arg("GET").arg("tls-cert-file");
    }
    let mut replies = pipe
        .query_async::<Vec<redis::Value>>(con)
        .await
        .map_err(|e| addr.request_err(e, refusal))?
        .into_iter();
    let mut next = || replies.next().unwrap_or(redis::Value::Nil);
    let parse = |e: redis::RedisError| addr.err(e);
    let text: String = redis::from_redis_value(&next()).map_err(parse)?;
    let state = if cluster != ClusterAsk::Nothing {
        let ci: String = redis::from_redis_value(&next()).map_err(parse)?;
        Info::parse(&ci).get("cluster_state").map(str::to_string)
    } else {
        None
    };
    let nodes = if cluster == ClusterAsk::SlotMap {
        let text: String = redis::from_redis_value(&next()).map_err(parse)?;
        Some(parse_nodes(&text))
    } else {
        None
    };
    let cert_file = if addr.is_tls() {
        let kv: Vec<String> = redis::from_redis_value(&next()).map_err(parse)?;
        kv.into_iter().nth(1)
    } else {
        None
    };
    Ok((Info::parse(&text), state, nodes, cert_file))
}

/// The connections one shell keeps open to its shards between commands, for the
/// probes of `status` ([`probe_kept`]): a shell that runs `status` again (an operator
/// watching a restart, a runbook waiting for a state) neither connects nor, over TLS,
/// costs each shard another handshake (about 1.4 ms of its CPU with redis-server 7.0's
/// OpenSSL 3.0, against 25 µs for a plain connection). One per shard, made with the
/// shard's password and TLS material: an address that differs in either gets a new
/// one. Only probes use them; every other conversation makes its own connection. The
/// connections live on the runtime that made them and close with it, or when the
/// shard closes them.
#[derive(Clone, Default)]
pub struct KeptConnections(Arc<std::sync::Mutex<HashMap<(String, u16), Kept>>>);

struct Kept {
    addr: ShardAddr,
    con: MultiplexedConnection,
    refusal: Refusal,
}

impl KeptConnections {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u16), Kept>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, addr: &ShardAddr) -> Option<(MultiplexedConnection, Refusal)> {
        let map = self.map();
        let kept = map.get(&(addr.host.clone(), addr.port))?;
        (kept.addr == *addr).then(|| (kept.con.clone(), kept.refusal.clone()))
    }

    fn keep(&self, addr: &ShardAddr, con: MultiplexedConnection, refusal: Refusal) {
        let kept = Kept {
            addr: addr.clone(),
            con,
            refusal,
        };
        self.map().insert((addr.host.clone(), addr.port), kept);
    }

    fn forget(&self, addr: &ShardAddr) {
        self.map().remove(&(addr.host.clone(), addr.port));
    }

    /// Closes the connections to every shard but `shards` (`host`, `port`): those of
    /// databases deleted or moved since.
    pub fn keep_only(&self, shards: &std::collections::HashSet<(String, u16)>) {
        self.map().retain(|at, _| shards.contains(at));
    }

    /// How many connections are kept.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn down(error: String, tls_refused: bool) -> ShardProbe {
    ShardProbe {
        up: false,
        info: Info::default(),
        cluster_state: None,
        cluster_nodes: None,
        tls_cert_file: None,
        tls_refused,
        error: Some(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_info() {
        let i = Info::parse(
            "# Server\r\nredis_version:7.0.15\r\n\r\n# Keyspace\r\ndb0:keys=12,expires=1,avg_ttl=0\r\ndb3:keys=2,expires=0,avg_ttl=0\r\n",
        );
        assert_eq!(i.get("redis_version"), Some("7.0.15"));
        assert_eq!(i.engine().as_deref(), Some("redis 7.0.15"));
        let valkey = Info::parse(
            "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.1.8\r\n",
        );
        assert_eq!(valkey.engine().as_deref(), Some("valkey 8.1.8"));
        assert_eq!(i.keys(), 14);
        assert_eq!(i.get_u64("nope"), None);
    }

    #[test]
    fn debug_hides_the_password() {
        let a = ShardAddr::plain("127.0.0.1", 1, Some("s3cret".into()));
        assert!(!format!("{a:?}").contains("s3cret"));
    }
}
