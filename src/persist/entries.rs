//! A whole RDB file, key by key: database, key, expiry and the value decoded into a
//! [`ValueSink`]. The opcode loop mirrors the validator's; every value is decoded, none
//! skipped, and the CRC-64 trailer is still checked.

use std::path::Path;

use super::dump::DecodeError;
use super::rdb::Rdb;
use super::source::Source;
use super::value::{Value, ValueBuilder, ValueSink};
use super::value_decode::{decode, Scratch};

/// Told about every key of a file; it is also the sink its value is decoded into.
pub trait EntryVisitor: ValueSink {
    /// A key starts; its value follows through the [`ValueSink`] calls.
    fn start_key(&mut self, db: u32, key: &[u8], expire_ms: Option<i64>);
    /// The key's value is complete; `present` is false for an empty collection, which
    /// Redis drops when loading.
    fn end_key(&mut self, present: bool);
}

/// What an RDB said about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RdbHeader {
    pub version: u32,
    pub valkey: bool,
}

/// Reads every key of the RDB at `path` into `visitor`. Stops at the first fault, whose
/// offset is the file's.
pub fn read_rdb<V: EntryVisitor>(path: &Path, visitor: &mut V) -> Result<RdbHeader, RdbReadError> {
    let file = super::open::open_regular(path).map_err(|e| RdbReadError::Io(e.to_string()))?;
    let len = file
        .metadata()
        .map_err(|e| RdbReadError::Io(e.to_string()))?
        .len();
    let mut src = Source::open_file(file, len);
    let mut rdb = Rdb::new(&mut src, None, 0);
    let walked = walk(&mut rdb, visitor);
    let header = RdbHeader {
        version: rdb.out.version,
        valkey: rdb.out.valkey,
    };
    // A read that failed (or was stopped) is that, not a file cut short; a mapped file
    // that shrank while it was read may even have parsed (zeros from there on).
    if let Some(io) = src.io_error() {
        return Err(RdbReadError::Io(io.to_string()));
    }
    walked.map_err(|e| RdbReadError::Format(e.into()))?;
    Ok(header)
}

/// Reads every key of an RDB arriving as a stream (a backup run's file, decompressed and
/// decrypted as it is read) into `visitor`; `len` when the stream's length is known.
pub fn read_rdb_stream<R: std::io::Read, V: EntryVisitor>(
    reader: R,
    len: Option<u64>,
    visitor: &mut V,
) -> Result<RdbHeader, RdbReadError> {
    let mut src = Source::new(reader, 0, len.unwrap_or(u64::MAX));
    let mut rdb = Rdb::new(&mut src, None, 0);
    let walked = walk(&mut rdb, visitor);
    let header = RdbHeader {
        version: rdb.out.version,
        valkey: rdb.out.valkey,
    };
    if let (Err(_), Some(io)) = (&walked, src.io_error()) {
        return Err(RdbReadError::Io(io.to_string()));
    }
    walked.map_err(|e| RdbReadError::Format(e.into()))?;
    Ok(header)
}

/// Why a file could not be read key by key.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum RdbReadError {
    #[error("cannot read it: {0}")]
    Io(String),
    #[error("{0}")]
    Format(DecodeError),
}

/// One key of an RDB with its value built.
#[derive(Clone, Debug, PartialEq)]
pub struct RdbEntry {
    pub db: u32,
    pub key: Vec<u8>,
    pub value: Value,
    pub expire_ms: Option<i64>,
}

/// Every key of an RDB with its value, in file order (whole values in memory: for small
/// files, tests and replays of a few keys; digests use [`read_rdb`]).
pub fn rdb_entries(path: &Path) -> Result<Vec<RdbEntry>, RdbReadError> {
    let mut out = Vec::new();
    read_rdb(path, &mut WholeEntries::new(|e| out.push(e)))?;
    Ok(out)
}

/// An [`EntryVisitor`] that builds each key's whole value and hands `f` the entry (an
/// empty collection, which Redis drops when loading, is not handed over).
pub(crate) struct WholeEntries<F: FnMut(RdbEntry)> {
    b: ValueBuilder,
    head: Option<(u32, Vec<u8>, Option<i64>)>,
    f: F,
}

impl<F: FnMut(RdbEntry)> WholeEntries<F> {
    pub fn new(f: F) -> Self {
        WholeEntries {
            b: ValueBuilder::default(),
            head: None,
            f,
        }
    }
}

impl<F: FnMut(RdbEntry)> ValueSink for WholeEntries<F> {
    fn begin(&mut self, kind: super::value::Kind, n: u64) {
        self.b.begin(kind, n)
    }
    fn string(&mut self, s: &[u8]) {
        self.b.string(s)
    }
    fn item(&mut self, s: &[u8]) {
        self.b.item(s)
    }
    fn scored(&mut self, m: &[u8], s: f64) {
        self.b.scored(m, s)
    }
    fn field(&mut self, f: &[u8], v: &[u8], e: Option<i64>) {
        self.b.field(f, v, e)
    }
    fn stream(&mut self, s: &super::value::Stream) {
        self.b.stream(s)
    }
}

impl<F: FnMut(RdbEntry)> EntryVisitor for WholeEntries<F> {
    fn start_key(&mut self, db: u32, key: &[u8], expire_ms: Option<i64>) {
        self.head = Some((db, key.to_vec(), expire_ms));
    }
    fn end_key(&mut self, present: bool) {
        let value = self.b.take();
        if let (true, Some((db, key, expire_ms)), Some(value)) = (present, self.head.take(), value)
        {
            (self.f)(RdbEntry {
                db,
                key,
                value,
                expire_ms,
            });
        }
    }
}

pub(super) fn walk<R: std::io::Read, V: EntryVisitor>(
    rdb: &mut Rdb<'_, R>,
    v: &mut V,
) -> Result<(), super::error::ParseError> {
    rdb.src.start_crc();
    rdb.header()?;
    let valkey = rdb.out.valkey;
    let mut sc = Scratch::default();
    let mut key = Vec::new();
    let mut db = 0u32;
    let mut expire: Option<i64> = None;
    loop {
        let record = rdb.src.offset();
        let t = rdb.src.u8()?;
        match t {
            0xff => return rdb.trailer(),
            0xfe => {
                let n = rdb.len()?;
                db = u32::try_from(n).map_err(|_| {
                    super::error::ParseError::corrupt(
                        record + 1,
                        format!("a database number, not {n}"),
                    )
                })?;
            }
            0xfd => expire = Some(i64::from(i32::from_le_bytes(rdb.src.array()?)) * 1000),
            0xfc => expire = Some(i64::from_le_bytes(rdb.src.array()?)),
            0xfb => {
                rdb.len()?;
                rdb.len()?;
            }
            0xfa => rdb.aux()?,
            0xf9 => {
                rdb.src.u8()?;
            }
            0xf8 => {
                rdb.len()?;
            }
            0xf7 => rdb.module_aux()?,
            0xf6 => rdb.function_pre_ga(record)?,
            0xf5 => {
                rdb.skip_string()?;
            }
            0xf4 => rdb.slot_info(record)?,
            _ => {
                rdb.string_into(&mut key, usize::MAX)?;
                v.start_key(db, &key, expire.take());
                let present = decode(rdb, t, valkey, v, &mut sc)
                    .map_err(|e| e.within(format_args!("in the record at offset {record}")))?;
                v.end_key(present);
            }
        }
    }
}
