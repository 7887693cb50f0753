//! How a run's files are stored: zstd-compressed (the default) and optionally encrypted
//! with age to the recipients of a file, both as streams (bounded memory). The manifest
//! records the sha256 of the stored bytes and of the plain RDB; reading a stored file back
//! checks the stored digest as it goes.
//!
//! Stored files are named `shard-<id>.rdb`, `.rdb.zst`, `.rdb.age` or `.rdb.zst.age`.

use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

pub use crate::ccs::Compression;
use sha2::{Digest, Sha256};

use super::snapshot::hex;

/// zstd's level for runs: fast enough to keep up with a replication stream.
const ZSTD_LEVEL: i32 = 3;
/// The level for data that [`ZSTD_LEVEL`] hardly shrinks: about three times as fast.
const ZSTD_FAST_LEVEL: i32 = 1;
/// Plain bytes per zstd frame.
const FRAME_BYTES: usize = 4 << 20;
/// After a frame that [`ZSTD_LEVEL`] shrank by less than 1/`SMALL_GAIN`, this many frames
/// go at [`ZSTD_FAST_LEVEL`] before the next is tried at [`ZSTD_LEVEL`] again (one that
/// the fast level shrinks by more brings the full level back at once). Where the full
/// level gains less than an eighth, the fast one loses at most a few percent of size.
const FAST_FRAMES: u32 = 15;
const SMALL_GAIN: usize = 8;

/// How a run's files are written: compression, and the age recipients file to encrypt to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Codec {
    pub compress: Compression,
    pub encrypt: Option<PathBuf>,
}

/// Recipients loaded from a recipients file (one `age1...` public key a line; `#`
/// comments and blank lines ignored). An age identity file (`AGE-SECRET-KEY-1...` lines)
/// gives its identities' public keys: what a safety backup is encrypted to, so that the
/// identity that opens the run restored opens the safety backup too.
pub struct Recipients(Vec<age::x25519::Recipient>);

/// Why an age key file the operator named (recipients to encrypt to, identities to
/// decrypt with) cannot be used: missing (`not_found`), refused by the system (`io`), or
/// not what it should hold (`usage`: the operator's input is wrong, as wrong TLS material
/// is). A message names the file, never a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("the age {what} file `{}` does not exist", path.display())]
    Missing { what: &'static str, path: PathBuf },
    #[error("cannot read the age {what} file `{}`: {source}", path.display())]
    Unreadable {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the age {what} file `{}` {why}", path.display())]
    Malformed {
        what: &'static str,
        path: PathBuf,
        why: String,
    },
}

impl crate::error::DomainError for KeyFileError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            KeyFileError::Missing { .. } => ErrorKind::NotFound,
            KeyFileError::Unreadable { .. } => ErrorKind::Io,
            KeyFileError::Malformed { .. } => ErrorKind::Usage,
        }
    }
}

/// Opens an age key file, telling a missing one from one the system refuses.
fn open_key_file(what: &'static str, path: &Path) -> Result<std::fs::File, KeyFileError> {
    std::fs::File::open(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => KeyFileError::Missing {
            what,
            path: path.to_path_buf(),
        },
        _ => KeyFileError::Unreadable {
            what,
            path: path.to_path_buf(),
            source,
        },
    })
}

impl Recipients {
    pub fn load(path: &Path) -> Result<Recipients, KeyFileError> {
        const WHAT: &str = "recipients";
        let malformed = |why: String| KeyFileError::Malformed {
            what: WHAT,
            path: path.to_path_buf(),
            why,
        };
        let mut text = String::new();
        open_key_file(WHAT, path)?
            .read_to_string(&mut text)
            .map_err(|source| match source.kind() {
                io::ErrorKind::InvalidData => malformed("is not a text file".into()),
                _ => KeyFileError::Unreadable {
                    what: WHAT,
                    path: path.to_path_buf(),
                    source,
                },
            })?;
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with("AGE-SECRET-KEY-1") {
                let id = line
                    .parse::<age::x25519::Identity>()
                    .map_err(|_| malformed(format!("line {} is not an age identity", i + 1)))?;
                out.push(id.to_public());
                continue;
            }
            let r = line.parse::<age::x25519::Recipient>().map_err(|_| {
                malformed(format!(
                    "line {} is not an age public key (`age1...`)",
                    i + 1
                ))
            })?;
            out.push(r);
        }
        if out.is_empty() {
            return Err(malformed("names no recipient".into()));
        }
        Ok(Recipients(out))
    }
}

/// The stored name of a run's file.
pub fn stored_name(plain: &str, compress: Compression, encrypted: bool) -> String {
    let mut name = plain.to_string();
    if compress.is_zstd() {
        name.push_str(".zst");
    }
    if encrypted {
        name.push_str(".age");
    }
    name
}

/// What a finished stored file is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDigest {
    pub bytes: u64,
    pub sha256: String,
}

/// The bottom of a writer stack: counts and hashes the stored bytes.
pub struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Hashing<W> {
    pub fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    pub fn finish(self) -> (W, StoredDigest) {
        (
            self.inner,
            StoredDigest {
                bytes: self.bytes,
                sha256: hex(&self.hasher.finalize()),
            },
        )
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// zstd in independent frames of [`FRAME_BYTES`], each at the level its predecessors
/// earned: [`ZSTD_LEVEL`], or [`ZSTD_FAST_LEVEL`] where the data hardly compresses (values
/// the server already stored LZF-compressed, binary or encrypted values), which takes a
/// third of the CPU for about the same size there, on the machine that serves the data.
/// Every zstd decoder reads concatenated frames as one stream.
pub struct Frames<W: Write> {
    inner: W,
    cx: zstd::bulk::Compressor<'static>,
    plain: Vec<u8>,
    out: Vec<u8>,
    level: i32,
    /// Frames left at [`ZSTD_FAST_LEVEL`] before [`ZSTD_LEVEL`] is tried again.
    fast_left: u32,
    frames: u64,
}

impl<W: Write> Frames<W> {
    fn new(inner: W) -> io::Result<Self> {
        Ok(Frames {
            inner,
            cx: zstd::bulk::Compressor::new(ZSTD_LEVEL)?,
            plain: Vec::with_capacity(FRAME_BYTES),
            out: Vec::with_capacity(zstd::zstd_safe::compress_bound(FRAME_BYTES)),
            level: ZSTD_LEVEL,
            fast_left: 0,
            frames: 0,
        })
    }

    /// Compresses and writes the frame filled so far, and picks the next one's level.
    fn frame(&mut self) -> io::Result<()> {
        self.cx.set_compression_level(self.level)?;
        self.out.clear();
        self.cx.compress_to_buffer(&self.plain, &mut self.out)?;
        self.inner.write_all(&self.out)?;
        let small_gain = self.out.len() * SMALL_GAIN > self.plain.len() * (SMALL_GAIN - 1);
        (self.level, self.fast_left) = if !small_gain {
            (ZSTD_LEVEL, 0)
        } else if self.level == ZSTD_LEVEL {
            (ZSTD_FAST_LEVEL, FAST_FRAMES)
        } else if self.fast_left > 1 {
            (ZSTD_FAST_LEVEL, self.fast_left - 1)
        } else {
            // Time to see whether the full level pays again.
            (ZSTD_LEVEL, 0)
        };
        self.plain.clear();
        self.frames += 1;
        Ok(())
    }

    /// Writes the last frame (an empty one for an empty file); the sink.
    fn finish(mut self) -> io::Result<W> {
        if !self.plain.is_empty() || self.frames == 0 {
            self.frame()?;
        }
        Ok(self.inner)
    }
}

impl<W: Write> Write for Frames<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(FRAME_BYTES - self.plain.len());
        self.plain.extend_from_slice(&buf[..n]);
        if self.plain.len() == FRAME_BYTES {
            self.frame()?;
        }
        Ok(n)
    }

    /// Frames are whole only once written: a flush leaves the one being filled.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Plain bytes in, stored bytes out: zstd, then age, then the hashing sink.
pub enum Encoder<W: Write> {
    Plain(Hashing<W>),
    Zstd(Frames<Hashing<W>>),
    Age(age::stream::StreamWriter<Hashing<W>>),
    ZstdAge(Frames<age::stream::StreamWriter<Hashing<W>>>),
}

impl<W: Write> Encoder<W> {
    pub fn new(
        sink: W,
        compress: Compression,
        recipients: Option<&Recipients>,
    ) -> io::Result<Self> {
        let sink = Hashing::new(sink);
        let age = |sink: Hashing<W>, r: &Recipients| -> io::Result<_> {
            let e = age::Encryptor::with_recipients(r.0.iter().map(|r| r as &dyn age::Recipient))
                .map_err(|e| io::Error::other(e.to_string()))?;
            e.wrap_output(sink)
        };
        Ok(match (compress, recipients) {
            (Compression::None, None) => Encoder::Plain(sink),
            (Compression::Zstd, None) => Encoder::Zstd(Frames::new(sink)?),
            (Compression::None, Some(r)) => Encoder::Age(age(sink, r)?),
            (Compression::Zstd, Some(r)) => Encoder::ZstdAge(Frames::new(age(sink, r)?)?),
        })
    }

    /// Ends every layer; the sink and what was stored.
    pub fn finish(self) -> io::Result<(W, StoredDigest)> {
        let hashing = match self {
            Encoder::Plain(h) => h,
            Encoder::Zstd(z) => z.finish()?,
            Encoder::Age(a) => a.finish()?,
            Encoder::ZstdAge(z) => z.finish()?.finish()?,
        };
        Ok(hashing.finish())
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Zstd(w) => w.write(buf),
            Encoder::Age(w) => w.write(buf),
            Encoder::ZstdAge(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Zstd(w) => w.flush(),
            Encoder::Age(w) => w.flush(),
            Encoder::ZstdAge(w) => w.flush(),
        }
    }
}

/// A reader that counts and hashes what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
    sink: std::sync::Arc<std::sync::Mutex<Option<StoredDigest>>>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        if n == 0 && !buf.is_empty() {
            let digest = StoredDigest {
                bytes: self.bytes,
                sha256: hex(&self.hasher.clone().finalize()),
            };
            *self.sink.lock().unwrap_or_else(|p| p.into_inner()) = Some(digest);
        }
        Ok(n)
    }
}

/// Where the digest of a stream appears once it has been read to its end.
pub type DigestSlot = std::sync::Arc<std::sync::Mutex<Option<StoredDigest>>>;

pub fn hashing_reader<R: Read>(inner: R) -> (HashingReader<R>, DigestSlot) {
    let slot: DigestSlot = Default::default();
    (
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
            sink: slot.clone(),
        },
        slot,
    )
}

/// Identities loaded from an age identity file (`AGE-SECRET-KEY-1...` lines). The file's
/// contents are never shown in any message.
pub struct Identities {
    path: PathBuf,
    keys: Vec<Box<dyn age::Identity>>,
}

impl Identities {
    pub fn load(path: &Path) -> Result<Identities, KeyFileError> {
        const WHAT: &str = "identity";
        let malformed = |why: String| KeyFileError::Malformed {
            what: WHAT,
            path: path.to_path_buf(),
            why,
        };
        let file = age::IdentityFile::from_buffer(BufReader::new(open_key_file(WHAT, path)?))
            .map_err(|e| match e.kind() {
                io::ErrorKind::InvalidData => {
                    malformed(format!("is not an age identity file: {e}"))
                }
                _ => KeyFileError::Unreadable {
                    what: WHAT,
                    path: path.to_path_buf(),
                    source: e,
                },
            })?;
        let keys = file
            .into_identities()
            .map_err(|_| malformed("holds no usable identity".into()))?;
        if keys.is_empty() {
            return Err(malformed("holds no identity".into()));
        }
        Ok(Identities {
            path: path.to_path_buf(),
            keys,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The plain RDB of a stored stream: age-decrypted (with `identities`) and
/// zstd-decompressed as it is read.
pub fn decoder<'a, R: Read + Send + 'a>(
    stored: R,
    compress: Compression,
    encrypted: bool,
    identities: Option<&Identities>,
    what: &str,
) -> Result<Box<dyn Read + Send + 'a>, String> {
    let decrypted: Box<dyn Read + Send + 'a> = if encrypted {
        let Some(ids) = identities else {
            return Err(format!(
                "{what} is encrypted: the restore needs `identity <file>`"
            ));
        };
        let d = age::Decryptor::new(BufReader::new(stored))
            .map_err(|e| format!("{what} is not an age file: {e}"))?;
        let r = d
            .decrypt(ids.keys.iter().map(|k| k.as_ref() as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => format!(
                    "the identity file `{}` does not open {what} (wrong identity: no key matches its recipients)",
                    ids.path.display()
                ),
                e => format!("{what} cannot be decrypted: {e}"),
            })?;
        Box::new(r)
    } else {
        Box::new(stored)
    };
    Ok(match compress {
        Compression::None => decrypted,
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(decrypted)
                .map_err(|e| format!("{what}: cannot start zstd: {e}"))?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips_and_hashes_what_it_stores() {
        let key = age::x25519::Identity::generate();
        let dir = tempfile::tempdir().unwrap();
        let rfile = dir.path().join("r.txt");
        std::fs::write(&rfile, format!("# team\n{}\n", key.to_public())).unwrap();
        let ifile = dir.path().join("i.txt");
        use age::secrecy::ExposeSecret;
        std::fs::write(&ifile, format!("{}\n", key.to_string().expose_secret())).unwrap();
        let recipients = Recipients::load(&rfile).unwrap();
        let ids = Identities::load(&ifile).unwrap();
        let plain: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for compress in [Compression::None, Compression::Zstd] {
            for enc in [false, true] {
                let mut e = Encoder::new(Vec::new(), compress, enc.then_some(&recipients)).unwrap();
                e.write_all(&plain).unwrap();
                let (stored, digest) = e.finish().unwrap();
                assert_eq!(digest.bytes, stored.len() as u64);
                assert_eq!(digest.sha256, hex(&Sha256::digest(&stored)));
                let (r, slot) = hashing_reader(&stored[..]);
                let mut d = decoder(r, compress, enc, Some(&ids), "x").unwrap();
                let mut back = Vec::new();
                d.read_to_end(&mut back).unwrap();
                assert_eq!(back, plain, "{compress} {enc}");
                drop(d);
                assert_eq!(slot.lock().unwrap().clone(), Some(digest));
            }
        }
        let other = age::x25519::Identity::generate();
        std::fs::write(&ifile, format!("{}\n", other.to_string().expose_secret())).unwrap();
        let wrong = Identities::load(&ifile).unwrap();
        let mut e = Encoder::new(Vec::new(), Compression::Zstd, Some(&recipients)).unwrap();
        e.write_all(b"x").unwrap();
        let (stored, _) = e.finish().unwrap();
        let err = decoder(&stored[..], Compression::Zstd, true, Some(&wrong), "`f`")
            .err()
            .unwrap();
        assert!(err.contains("wrong identity"), "{err}");
        assert!(err.contains("i.txt"), "{err}");
    }

    #[test]
    fn frames_take_the_fast_level_where_data_hardly_compresses_and_read_back_as_one() {
        use rand::RngCore;
        let mut noise = vec![0u8; 3 * FRAME_BYTES];
        rand::thread_rng().fill_bytes(&mut noise);
        let line = b"user:1234 {\"name\": \"x\"}";
        let text: Vec<u8> = line.iter().copied().cycle().take(2 * FRAME_BYTES).collect();
        // Noise, text, noise again and a short tail.
        let plain = [&noise[..], &text, &noise[..FRAME_BYTES + 100]].concat();
        let mut f = Frames::new(Vec::new()).unwrap();
        let mut levels = Vec::new();
        for chunk in plain.chunks(1 << 20) {
            f.write_all(chunk).unwrap();
            levels.push(f.level);
        }
        assert_eq!(f.frames, 6);
        let stored = f.finish().unwrap();
        // Frame by frame (four chunks each): the first noise frame goes at the full level,
        // the next ones fast; the first text frame (fast) shrinks, so the full level comes
        // back at once, and stays until noise again.
        let (full, fast) = (ZSTD_LEVEL, ZSTD_FAST_LEVEL);
        let per_frame: Vec<i32> = levels.iter().step_by(4).copied().collect();
        assert_eq!(
            per_frame,
            [full, fast, fast, fast, full, full, fast],
            "{levels:?}"
        );
        let mut back = Vec::new();
        zstd::stream::read::Decoder::new(&stored[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert!(
            back == plain,
            "{} bytes back of {}",
            back.len(),
            plain.len()
        );
        // An empty file is one empty frame.
        let empty = Frames::new(Vec::new()).unwrap().finish().unwrap();
        assert_eq!(zstd::decode_all(&empty[..]).unwrap(), b"");
    }
}
