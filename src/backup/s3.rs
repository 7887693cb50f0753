//! `s3://bucket/prefix` repositories: S3-compatible object storage through `object_store`.
//!
//! Endpoint, region and credentials come from the environment the way every S3 tool
//! takes them (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_PROFILE` from `~/.aws`); nothing of
//! them is stored or shown. Files go up as multipart uploads with a bounded number of
//! parts in flight and come down as streams: a run is never held whole in memory.
//!
//! The rest of the backup code is synchronous (snapshots stream on their own threads), so
//! every request runs through [`super::block`].

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::Arc;

use super::{block, runtime};

use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::ClientConfigKey;
use object_store::{MultipartId, ObjectStore, PutPayload, PutPayloadMut};

/// The first parts of a multipart upload (S3's minimum is 5 MiB).
const PART_BYTES: usize = 8 << 20;
/// Parts of one size before the size doubles.
const PARTS_PER_SIZE: u32 = 1000;
/// S3's most parts in one upload.
const MAX_PARTS: u32 = 10_000;
/// Parts uploading at once per file.
const PARTS_IN_FLIGHT: usize = 2;
/// Beside a file while its multipart upload runs, `<run>/.uploading.<file>` holds the
/// upload's id: an upload is invisible to listings and kept (and billed) until completed
/// or aborted, so removing a run whose shell died aborts the uploads these name.
const UPLOAD_MARKER: &str = ".uploading.";
/// `<run>/.claim`: the cluster that writes the run, created first and only where absent
/// ([`S3Repo::claim`]).
const RUN_CLAIM: &str = ".claim";

/// The size of part `index` (from 0). A file's size is not known before its snapshot has
/// been compressed, and S3 takes at most 10,000 parts of 5 MiB to 5 GiB each (the last
/// may be smaller), so parts start small and double every 1,000: 8 MiB up to 8 GB, 16 MiB
/// up to 24 GB, ..., 4 GiB for the last thousand; about 8 TiB in all, above S3's 5 TiB
/// object limit. Memory per file is the part being filled plus [`PARTS_IN_FLIGHT`]
/// uploading: 24 MiB for files up to 8 GB, three times the current part size after.
fn part_bytes(index: u32) -> usize {
    PART_BYTES << (index / PARTS_PER_SIZE).min(9)
}

/// One `s3://bucket/prefix`.
#[derive(Clone)]
pub struct S3Repo {
    url: String,
    bucket: String,
    prefix: String,
    store: Arc<AmazonS3>,
    /// The same store sending run files' parts with `UNSIGNED-PAYLOAD`: no SHA-256 of every
    /// part on either side. Their integrity rests where it is checked anyway: the sha256 of
    /// each stored file is in the manifest, which goes up signed (through `store`), and
    /// verify and restore check every byte against it; TLS covers them in transit on
    /// `https://`.
    bulk: Arc<AmazonS3>,
    /// The bucket's HTTP address (path style), for reading the storage's clock.
    bucket_url: String,
}

impl std::fmt::Debug for S3Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

impl PartialEq for S3Repo {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url
    }
}

impl Eq for S3Repo {}

/// `s3://bucket/prefix` split: `(bucket, prefix)`, the prefix without its slashes.
pub fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("`{url}` is not an `s3://bucket/prefix` URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if bucket.len() < 3 || bucket.len() > 63 || !bucket.chars().all(ok) {
        return Err(format!(
            "`{bucket}` in `{url}` is not a bucket name (3 to 63 of a-z 0-9 . -)"
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
        return Err(format!(
            "`{url}` has an empty, `.` or `..` part in its prefix"
        ));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

/// The profile's keys from `~/.aws/credentials` and its region from `~/.aws/config`
/// (only what the environment does not give).
fn profile_settings(b: AmazonS3Builder) -> AmazonS3Builder {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let Some(home) = env("HOME") else { return b };
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
    let section = |file: &str, name: &str| -> BTreeMap<String, String> {
        let path = env(file).unwrap_or_else(|| format!("{home}/.aws/{}", file_name(file)));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut inside = false;
        let mut out = BTreeMap::new();
        for line in text.lines().map(str::trim) {
            if let Some(h) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                let h = h.trim();
                inside = h == name || h.strip_prefix("profile ").map(str::trim) == Some(name);
            } else if let (true, Some((k, v))) = (inside, line.split_once('=')) {
                out.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        out
    };
    fn file_name(var: &str) -> &'static str {
        if var == "AWS_SHARED_CREDENTIALS_FILE" {
            "credentials"
        } else {
            "config"
        }
    }
    let mut b = b;
    if env("AWS_ACCESS_KEY_ID").is_none() {
        let creds = section("AWS_SHARED_CREDENTIALS_FILE", &profile);
        if let (Some(k), Some(s)) = (
            creds.get("aws_access_key_id"),
            creds.get("aws_secret_access_key"),
        ) {
            b = b.with_access_key_id(k).with_secret_access_key(s);
            if let Some(t) = creds.get("aws_session_token") {
                b = b.with_token(t);
            }
        }
    }
    let config = section("AWS_CONFIG_FILE", &profile);
    if env("AWS_REGION").is_none() && env("AWS_DEFAULT_REGION").is_none() {
        if let Some(r) = config.get("region") {
            b = b.with_region(r);
        }
    }
    if env("AWS_ENDPOINT_URL").is_none() && env("AWS_ENDPOINT").is_none() {
        if let Some(e) = config.get("endpoint_url") {
            b = b.with_endpoint(e);
        }
    }
    b
}

/// How long one request may take, the completion of a large multipart upload included.
const REQUEST_TIMEOUT: &str = "15m";

fn io_err(e: object_store::Error) -> io::Error {
    io::Error::other(e.to_string())
}

impl S3Repo {
    pub fn open(url: &str) -> Result<S3Repo, String> {
        let (bucket, prefix) = parse_url(url)?;
        let mut b = profile_settings(AmazonS3Builder::from_env())
            .with_bucket_name(&bucket)
            // The default 30 s per request is too short for completing a multipart upload
            // of a large run: the store assembles the parts before it answers. Timed out,
            // the client aborts an upload the store may already have completed, and
            // reports only the abort's `NoSuchUpload`.
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                REQUEST_TIMEOUT,
            );
        let endpoint = std::env::var("AWS_ENDPOINT_URL")
            .or_else(|_| std::env::var("AWS_ENDPOINT"))
            .unwrap_or_default();
        if endpoint.starts_with("http://") {
            b = b.with_allow_http(true);
        }
        let bucket_url = match b.get_config_value(&AmazonS3ConfigKey::Endpoint) {
            Some(e) => format!("{}/{bucket}", e.trim_end_matches('/')),
            None => {
                let region = b
                    .get_config_value(&AmazonS3ConfigKey::Region)
                    .unwrap_or_else(|| "us-east-1".into());
                format!("https://s3.{region}.amazonaws.com/{bucket}")
            }
        };
        let bulk = b.clone().with_unsigned_payload(true).build();
        let store = b.build().map_err(|e| format!("cannot open `{url}`: {e}"))?;
        let bulk = bulk.map_err(|e| format!("cannot open `{url}`: {e}"))?;
        let url = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        Ok(S3Repo {
            url,
            bucket,
            prefix,
            store: Arc::new(store),
            bulk: Arc::new(bulk),
            bucket_url,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn key(&self, parts: &[&str]) -> ObjectPath {
        let mut all: Vec<&str> = self.prefix.split('/').filter(|p| !p.is_empty()).collect();
        all.extend(parts.iter().copied());
        ObjectPath::from_iter(all)
    }

    /// `s3://bucket/prefix/<run>/<name>`, as shown.
    pub fn shown(&self, run: &str, name: &str) -> String {
        format!("{}/{run}/{name}", self.url)
    }

    /// Writes and removes a probe object: the bucket exists and the credentials may
    /// write. Returns the storage's clock minus this machine's, in milliseconds (from the
    /// probe's `Last-Modified`, whole seconds).
    pub fn prepare(&self) -> Result<i64, String> {
        let probe = self.key(&[&format!(".lazarus-probe.{}", std::process::id())]);
        let store = self.store.clone();
        let res = block(async move {
            let before = super::now_ms();
            store.put(&probe, PutPayload::from_static(b"probe")).await?;
            let meta = store.head(&probe).await;
            let after = super::now_ms();
            let _ = store.delete(&probe).await;
            let meta = meta?;
            // Last-Modified has whole seconds.
            let theirs = meta.last_modified.timestamp_millis();
            Ok::<i64, object_store::Error>(super::skew(theirs, 999, before, after))
        });
        res.map_err(|e| format!("`{}` is not writable: {e}", self.url))
    }

    /// The storage's clock minus this machine's, in milliseconds, without writing: the
    /// `Date` header (whole seconds) of an unsigned `HEAD` of the bucket, which every S3
    /// server answers (mostly `403`) with its own time.
    pub fn clock_skew(&self) -> Result<i64, String> {
        let url = self.bucket_url.clone();
        let res = block(async move {
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?;
            let before = super::now_ms();
            let resp = client.head(&url).send().await?;
            let after = super::now_ms();
            Ok::<_, reqwest::Error>((resp.headers().get("date").cloned(), before, after))
        });
        let (date, before, after) =
            res.map_err(|e| format!("`{}` does not answer: {e}", self.url))?;
        let theirs = date
            .as_ref()
            .and_then(|d| d.to_str().ok())
            .and_then(super::http_date_ms)
            .ok_or_else(|| format!("`{}` sent no readable `Date` header", self.url))?;
        Ok(super::skew(theirs, 999, before, after))
    }

    /// The run's objects and their sizes (names inside the run).
    pub fn objects(&self, run: &str) -> Result<BTreeMap<String, u64>, String> {
        let dir = self.key(&[run]);
        let store = self.store.clone();
        let found = block(async move {
            let mut out = BTreeMap::new();
            let mut s = store.list(Some(&dir));
            while let Some(m) = s.next().await {
                let m = m?;
                if let Some(name) = m.location.filename() {
                    out.insert(name.to_string(), m.size);
                }
            }
            Ok::<_, object_store::Error>(out)
        });
        found.map_err(|e| format!("cannot list `{}/{run}`: {e}", self.url))
    }

    /// Whether nothing at all is stored under the prefix (a wrong bucket or prefix, or
    /// one emptied): `Ok(false)` when anything is.
    pub fn is_empty(&self) -> Result<bool, String> {
        let prefix = (!self.prefix.is_empty()).then(|| self.key(&[]));
        let store = self.store.clone();
        let first = block(async move { store.list(prefix.as_ref()).next().await.transpose() });
        first
            .map(|f| f.is_none())
            .map_err(|e| format!("cannot list `{}`: {e}", self.url))
    }

    /// The run "directories" under the prefix.
    pub fn runs(&self) -> Result<Vec<String>, String> {
        let prefix = (!self.prefix.is_empty()).then(|| self.key(&[]));
        let store = self.store.clone();
        let listed = block(async move { store.list_with_delimiter(prefix.as_ref()).await });
        let listed = listed.map_err(|e| format!("cannot list `{}`: {e}", self.url))?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .filter(|n| !n.starts_with('.'))
            .collect())
    }

    /// An object's bytes (small ones: manifests); `Ok(None)` when it is not there.
    pub fn get_small(&self, run: &str, name: &str) -> Result<Option<Vec<u8>>, String> {
        let key = self.key(&[run, name]);
        let store = self.store.clone();
        let got = block(async move {
            match store.get(&key).await {
                Ok(r) => r.bytes().await.map(|b| Some(b.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        got.map_err(|e| format!("cannot read `{}`: {e}", self.shown(run, name)))
    }

    /// Claims run id `run` for the cluster `cluster_id` before anything of the run is
    /// written: `<run>/.claim` is created only where no object of that name is
    /// (`If-None-Match: *`, which S3, MinIO, R2 and moto honour), then read back (a store
    /// that ignores the condition lets the last writer win: the one that reads another's
    /// claim lost). Two clusters sharing a prefix may form the same run id (their ids
    /// come from their own allocators and clocks); the one that claims second fails
    /// here, having written nothing, and the other's run stays whole. A run id that
    /// already holds objects (a run of a Lazarus before claims) is refused too.
    pub fn claim(&self, run: &str, cluster_id: u64) -> Result<(), String> {
        let key = self.key(&[run, RUN_CLAIM]);
        let token = format!(
            "cluster {cluster_id} {:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        let shown = self.shown(run, RUN_CLAIM);
        let taken = |by: Option<Vec<u8>>| {
            let by = by
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|t| t.split_whitespace().nth(1).map(str::to_string));
            format!(
                "run id `{run}` is taken in `{}`{}: the run is not written there, and nothing of the run there was changed (run the backup again: it takes a new run id)",
                self.url,
                match by {
                    Some(c) if c != cluster_id.to_string() => format!(" by cluster {c}, which shares the repository"),
                    _ => " by another run".to_string(),
                }
            )
        };
        let store = self.store.clone();
        let (k, body) = (key.clone(), token.clone().into_bytes());
        let put = block(async move {
            let create = object_store::PutOptions::from(object_store::PutMode::Create);
            match store
                .put_opts(&k, PutPayload::from(body.clone()), create)
                .await
            {
                Err(object_store::Error::NotImplemented) => {
                    store.put(&k, PutPayload::from(body)).await.map(|_| ())
                }
                other => other.map(|_| ()),
            }
        });
        match put {
            Ok(()) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(taken(self.get_small(run, RUN_CLAIM).ok().flatten()))
            }
            Err(e) => return Err(format!("cannot write `{shown}`: {e}")),
        }
        match self.get_small(run, RUN_CLAIM)? {
            Some(b) if b == token.as_bytes() => {}
            other => return Err(taken(other)),
        }
        let others = self.objects(run)?;
        if others.keys().any(|name| name != RUN_CLAIM) {
            let store = self.store.clone();
            let _ = block(async move { store.delete(&key).await });
            return Err(format!("`{}/{run}` already holds objects", self.url));
        }
        Ok(())
    }

    /// The cluster whose claim `<run>/.claim` holds, when it holds one.
    pub fn claimed_by(&self, run: &str) -> Option<u64> {
        let claim = self.get_small(run, RUN_CLAIM).ok()??;
        let text = String::from_utf8(claim).ok()?;
        text.split_whitespace().nth(1)?.parse().ok()
    }

    pub fn put_small(&self, run: &str, name: &str, bytes: Vec<u8>) -> Result<(), String> {
        let key = self.key(&[run, name]);
        let store = self.store.clone();
        block(async move { store.put(&key, PutPayload::from(bytes)).await })
            .map(|_| ())
            .map_err(|e| format!("cannot write `{}`: {e}", self.shown(run, name)))
    }

    /// Removes every object of a run, and aborts the uploads of its files left
    /// unfinished (a shell that died mid-run leaves them, named by their markers).
    pub fn remove(&self, run: &str) -> io::Result<()> {
        let dir = self.key(&[run]);
        let (store, bulk) = (self.store.clone(), self.bulk.clone());
        block(async move {
            let mut found = Vec::new();
            let mut s = store.list(Some(&dir));
            while let Some(m) = s.next().await {
                found.push(m?.location);
            }
            drop(s);
            for location in found {
                let file = location
                    .filename()
                    .and_then(|n| n.strip_prefix(UPLOAD_MARKER))
                    .map(|f| dir.child(f));
                if let Some(file) = file {
                    let id = store.get(&location).await?.bytes().await?;
                    let id = String::from_utf8_lossy(&id).trim().to_string();
                    // An upload completed or aborted since is no longer there: no error.
                    let _ = bulk.abort_multipart(&file, &id).await;
                }
                store.delete(&location).await?;
            }
            Ok::<(), object_store::Error>(())
        })
        .map_err(io_err)
    }

    /// A file of a run as a stream.
    pub fn open_file(&self, run: &str, name: &str) -> Result<S3Reader, String> {
        let key = self.key(&[run, name]);
        let store = self.store.clone();
        let got = block(async move { store.get(&key).await });
        match got {
            Ok(r) => Ok(S3Reader::ahead(r.into_stream())),
            Err(object_store::Error::NotFound { .. }) => {
                Err(format!("`{}` is missing", self.shown(run, name)))
            }
            Err(e) => Err(format!("cannot read `{}`: {e}", self.shown(run, name))),
        }
    }

    /// A multipart upload of a run's file (its parts unsigned: see `bulk`), its id
    /// written down beside it ([`UPLOAD_MARKER`]) before any part goes up.
    pub fn create_file(&self, run: &str, name: &str) -> Result<S3Writer, String> {
        let key = self.key(&[run, name]);
        let marker = self.key(&[run, &format!("{UPLOAD_MARKER}{name}")]);
        let (bulk, store) = (self.bulk.clone(), self.store.clone());
        let (k, m) = (key.clone(), marker.clone());
        let id = block(async move {
            let id = bulk.create_multipart(&k).await?;
            if let Err(e) = store
                .put(&m, PutPayload::from(id.clone().into_bytes()))
                .await
            {
                let _ = bulk.abort_multipart(&k, &id).await;
                return Err(e);
            }
            Ok::<MultipartId, object_store::Error>(id)
        })
        .map_err(|e| format!("cannot start `{}`: {e}", self.shown(run, name)))?;
        Ok(S3Writer {
            up: Some(GrowingParts {
                bulk: self.bulk.clone(),
                store: self.store.clone(),
                key,
                id,
                marker,
                part: PutPayloadMut::new(),
                parts: 0,
                uploading: tokio::task::JoinSet::new(),
                done: BTreeMap::new(),
            }),
            name: self.shown(run, name),
        })
    }
}

/// Chunks of a GET's body received ahead of the reader (hyper's chunks are at most a few
/// hundred KiB, so this bounds the memory ahead to a few MiB).
const CHUNKS_AHEAD: usize = 32;

/// The body of a GET, received ahead of its reader by a thread of its own (bounded by
/// [`CHUNKS_AHEAD`]), so the download overlaps the work on what came before it (decoding,
/// hashing, validating, writing) instead of waiting on each chunk in turn.
pub struct S3Reader {
    chunks: std::sync::mpsc::Receiver<object_store::Result<bytes::Bytes>>,
    buf: bytes::Bytes,
    /// The receiving thread, joined when its channel closes: a panic there is an error
    /// here, never a body that seems to end early.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl S3Reader {
    fn ahead(
        mut stream: futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
    ) -> S3Reader {
        let (tx, chunks) = std::sync::mpsc::sync_channel(CHUNKS_AHEAD);
        // Not a worker of the runtime: it may block on a full channel. It ends when the
        // body does, or when the reader is dropped (the send fails).
        let thread = std::thread::spawn(move || {
            runtime().block_on(async move {
                while let Some(chunk) = stream.next().await {
                    if tx.send(chunk).is_err() {
                        break;
                    }
                }
            })
        });
        S3Reader {
            chunks,
            buf: bytes::Bytes::new(),
            thread: Some(thread),
        }
    }
}

impl Read for S3Reader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            match self.chunks.recv() {
                // The sender is gone: the body ended, unless its thread panicked.
                Err(_) => {
                    return match self.thread.take().map(|t| t.join()) {
                        Some(Err(_)) => Err(io::Error::other(
                            "the thread receiving an S3 object panicked",
                        )),
                        _ => Ok(0),
                    }
                }
                Ok(Ok(b)) => self.buf = b,
                Ok(Err(e)) => return Err(io_err(e)),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        let _ = self.buf.split_to(n);
        Ok(n)
    }
}

/// A multipart upload whose parts grow with the file ([`part_bytes`]).
struct GrowingParts {
    /// The store the parts go up through (`S3Repo::bulk`), and the one the marker does.
    bulk: Arc<AmazonS3>,
    store: Arc<AmazonS3>,
    key: ObjectPath,
    id: MultipartId,
    /// The object naming the upload while it runs ([`UPLOAD_MARKER`]).
    marker: ObjectPath,
    /// The part being filled.
    part: PutPayloadMut,
    /// Parts handed to S3 so far.
    parts: u32,
    uploading: tokio::task::JoinSet<object_store::Result<(usize, PartId)>>,
    /// The parts S3 took, by index.
    done: BTreeMap<usize, PartId>,
}

impl GrowingParts {
    /// Waits until fewer than `max` parts are uploading; the first failure ends the upload.
    async fn wait_below(&mut self, max: usize) -> object_store::Result<()> {
        while !self.uploading.is_empty() && self.uploading.len() >= max {
            if let Some(done) = self.uploading.join_next().await {
                let (index, part) = done.map_err(|e| object_store::Error::Generic {
                    store: "S3",
                    source: Box::new(e),
                })??;
                self.done.insert(index, part);
            }
        }
        Ok(())
    }

    /// Hands the filled part to S3 (on the repositories' runtime).
    fn send(&mut self) {
        let part = std::mem::take(&mut self.part).freeze();
        let (bulk, key, id) = (self.bulk.clone(), self.key.clone(), self.id.clone());
        let index = self.parts as usize;
        let _rt = runtime().enter();
        self.uploading.spawn(async move {
            let part = bulk.put_part(&key, &id, index, part).await?;
            Ok((index, part))
        });
        self.parts += 1;
    }

    /// The upload completed from its parts, in order; aborted when that fails. The marker
    /// goes either way.
    async fn complete(mut self) -> object_store::Result<()> {
        self.wait_below(1).await?;
        let parts = std::mem::take(&mut self.done).into_values().collect();
        let res = self
            .bulk
            .complete_multipart(&self.key, &self.id, parts)
            .await;
        if res.is_err() {
            let _ = self.bulk.abort_multipart(&self.key, &self.id).await;
        }
        let _ = self.store.delete(&self.marker).await;
        res.map(|_| ())
    }

    /// The upload aborted (its parts dropped by S3) and its marker removed.
    async fn abort(mut self) -> object_store::Result<()> {
        self.uploading.shutdown().await;
        let res = self.bulk.abort_multipart(&self.key, &self.id).await;
        if res.is_ok() {
            let _ = self.store.delete(&self.marker).await;
        }
        res
    }
}

/// A multipart upload as a writer; dropped before [`S3Writer::finish`], it is aborted.
pub struct S3Writer {
    up: Option<GrowingParts>,
    /// The object, as the operator names it, for errors.
    name: String,
}

impl S3Writer {
    /// Completes the upload: only now is the object there.
    pub fn finish(mut self) -> io::Result<()> {
        let mut up = self.up.take().expect("an upload finishes once");
        if !up.part.is_empty() || up.parts == 0 {
            up.send();
        }
        block(up.complete()).map_err(io_err)
    }
}

impl Write for S3Writer {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let written = buf.len();
        let up = self
            .up
            .as_mut()
            .expect("an upload is written before it finishes");
        while !buf.is_empty() {
            if up.parts == MAX_PARTS {
                return Err(io::Error::other(format!(
                    "`{}` is too large for one S3 object: it fills {MAX_PARTS} parts (the most \
                     S3 takes) of up to {} MiB",
                    self.name,
                    part_bytes(MAX_PARTS - 1) >> 20
                )));
            }
            let room = part_bytes(up.parts) - up.part.content_length();
            let (now, later) = buf.split_at(buf.len().min(room));
            up.part.extend_from_slice(now);
            buf = later;
            if up.part.content_length() == part_bytes(up.parts) {
                // At most PARTS_IN_FLIGHT parts uploading: the writer waits, memory stays
                // bounded.
                block(up.wait_below(PARTS_IN_FLIGHT)).map_err(io_err)?;
                up.send();
            }
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        if let Some(up) = self.up.take() {
            let _ = block(up.abort());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_url, part_bytes, MAX_PARTS, PART_BYTES};

    #[test]
    fn parts_grow_to_hold_more_than_s3_takes_in_one_object() {
        assert_eq!(part_bytes(0), PART_BYTES);
        assert_eq!(part_bytes(999), PART_BYTES);
        assert_eq!(part_bytes(1000), 2 * PART_BYTES);
        let last = part_bytes(MAX_PARTS - 1);
        assert_eq!(last, 4 << 30, "S3 takes parts of up to 5 GiB");
        let total: u64 = (0..MAX_PARTS).map(|i| part_bytes(i) as u64).sum();
        assert!(total > 5 << 40, "S3's largest object is 5 TiB: {total}");
        // Memory stays small for ordinary files: 8 GB in 8 MiB parts.
        let first_size: u64 = (0..1000).map(|i| part_bytes(i) as u64).sum();
        assert_eq!(first_size, 1000 * (8 << 20));
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("s3://my-bucket/a/b/").unwrap(),
            ("my-bucket".into(), "a/b".into())
        );
        assert_eq!(
            parse_url("s3://bkt").unwrap(),
            ("bkt".into(), String::new())
        );
        assert!(parse_url("s3://B/x").unwrap_err().contains("bucket name"));
        assert!(parse_url("s3://bkt/a/../b").is_err());
        assert!(parse_url("/x").is_err());
    }
}
