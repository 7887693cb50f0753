//! Values in one canonical form that does not depend on how a file or a server encoded
//! them: a hash read from a listpack and one read from a hash table are the same
//! [`Value`]. Decoders report a value piece by piece to a [`ValueSink`], so a digest can
//! hash it without building it; [`ValueBuilder`] is the sink that builds it.

use std::fmt;

/// A key's value, independent of its encoding.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    String(Vec<u8>),
    /// Elements in list order.
    List(Vec<Vec<u8>>),
    /// Members in the order the encoding held them (not meaningful).
    Set(Vec<Vec<u8>>),
    /// Members with their scores, in the order the encoding held them.
    SortedSet(Vec<(Vec<u8>, f64)>),
    /// Fields in the order the encoding held them.
    Hash(Vec<HashField>),
    Stream(Box<Stream>),
}

/// One field of a hash; `expire_ms` is a field TTL (Redis 7.4 / Valkey 9 only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashField {
    pub field: Vec<u8>,
    pub value: Vec<u8>,
    pub expire_ms: Option<i64>,
}

/// What kind of value a key holds, as `TYPE` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    String,
    List,
    Set,
    SortedSet,
    Hash,
    Stream,
}

impl Kind {
    /// The name `TYPE` answers.
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::List => "list",
            Kind::Set => "set",
            Kind::SortedSet => "zset",
            Kind::Hash => "hash",
            Kind::Stream => "stream",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Value {
    pub fn kind(&self) -> Kind {
        match self {
            Value::String(_) => Kind::String,
            Value::List(_) => Kind::List,
            Value::Set(_) => Kind::Set,
            Value::SortedSet(_) => Kind::SortedSet,
            Value::Hash(_) => Kind::Hash,
            Value::Stream(_) => Kind::Stream,
        }
    }

    /// Reports this value to a sink, as a decoder would.
    pub fn feed<S: ValueSink>(&self, sink: &mut S) {
        match self {
            Value::String(s) => {
                sink.begin(Kind::String, 1);
                sink.string(s);
            }
            Value::List(items) | Value::Set(items) => {
                sink.begin(self.kind(), items.len() as u64);
                items.iter().for_each(|i| sink.item(i));
            }
            Value::SortedSet(members) => {
                sink.begin(Kind::SortedSet, members.len() as u64);
                members.iter().for_each(|(m, s)| sink.scored(m, *s));
            }
            Value::Hash(fields) => {
                sink.begin(Kind::Hash, fields.len() as u64);
                fields
                    .iter()
                    .for_each(|f| sink.field(&f.field, &f.value, f.expire_ms));
            }
            Value::Stream(s) => {
                sink.begin(Kind::Stream, 1);
                sink.stream(s);
            }
        }
    }
}

/// A stream entry ID (`ms-seq`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    /// The 16-byte big-endian form RDB uses for node keys and pending entries.
    pub fn from_raw(raw: [u8; 16]) -> StreamId {
        let (ms, seq) = raw.split_at(8);
        StreamId {
            ms: u64::from_be_bytes(ms.try_into().unwrap_or_default()),
            seq: u64::from_be_bytes(seq.try_into().unwrap_or_default()),
        }
    }

    pub fn raw(self) -> [u8; 16] {
        let mut r = [0u8; 16];
        r[..8].copy_from_slice(&self.ms.to_be_bytes());
        r[8..].copy_from_slice(&self.seq.to_be_bytes());
        r
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A stream with its consumer groups. The fields only newer RDB versions carry
/// (`first_id`, `max_deleted_id`, `entries_added`, a group's `entries_read`, a consumer's
/// `active_time_ms`) are `None` when the encoding did not hold them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stream {
    pub entries: Vec<StreamEntry>,
    pub length: u64,
    pub last_id: StreamId,
    pub first_id: Option<StreamId>,
    pub max_deleted_id: Option<StreamId>,
    pub entries_added: Option<u64>,
    pub groups: Vec<ConsumerGroup>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEntry {
    pub id: StreamId,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerGroup {
    pub name: Vec<u8>,
    pub last_id: StreamId,
    pub entries_read: Option<u64>,
    /// The group's pending entries list, in ID order.
    pub pending: Vec<PendingEntry>,
    pub consumers: Vec<Consumer>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingEntry {
    pub id: StreamId,
    pub delivery_time_ms: i64,
    pub delivery_count: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumer {
    pub name: Vec<u8>,
    pub seen_time_ms: i64,
    pub active_time_ms: Option<i64>,
    /// IDs of the group's pending entries this consumer owns.
    pub pending: Vec<StreamId>,
}

/// Told a value piece by piece: `begin` once, then the calls its kind takes (`string`
/// for a string, `item` for list elements and set members, `scored` for sorted-set
/// members, `field` for hash fields, `stream` once for a stream).
pub trait ValueSink {
    fn begin(&mut self, kind: Kind, len_hint: u64);
    fn string(&mut self, s: &[u8]);
    fn item(&mut self, s: &[u8]);
    fn scored(&mut self, member: &[u8], score: f64);
    fn field(&mut self, field: &[u8], value: &[u8], expire_ms: Option<i64>);
    fn stream(&mut self, s: &Stream);
}

/// The sink that builds a [`Value`].
#[derive(Default)]
pub struct ValueBuilder {
    value: Option<Value>,
}

impl ValueBuilder {
    pub fn take(&mut self) -> Option<Value> {
        self.value.take()
    }
}

/// Reserves at most this many elements up front: a hint read from a damaged file must not
/// allocate gigabytes.
const RESERVE_CAP: u64 = 1 << 16;

impl ValueSink for ValueBuilder {
    fn begin(&mut self, kind: Kind, len_hint: u64) {
        let n = len_hint.min(RESERVE_CAP) as usize;
        self.value = Some(match kind {
            Kind::String => Value::String(Vec::new()),
            Kind::List => Value::List(Vec::with_capacity(n)),
            Kind::Set => Value::Set(Vec::with_capacity(n)),
            Kind::SortedSet => Value::SortedSet(Vec::with_capacity(n)),
            Kind::Hash => Value::Hash(Vec::with_capacity(n)),
            Kind::Stream => Value::Stream(Box::default()),
        });
    }

    fn string(&mut self, s: &[u8]) {
        if let Some(Value::String(v)) = &mut self.value {
            v.extend_from_slice(s);
        }
    }

    fn item(&mut self, s: &[u8]) {
        if let Some(Value::List(v) | Value::Set(v)) = &mut self.value {
            v.push(s.to_vec());
        }
    }

    fn scored(&mut self, member: &[u8], score: f64) {
        if let Some(Value::SortedSet(v)) = &mut self.value {
            v.push((member.to_vec(), score));
        }
    }

    fn field(&mut self, field: &[u8], value: &[u8], expire_ms: Option<i64>) {
        if let Some(Value::Hash(v)) = &mut self.value {
            v.push(HashField {
                field: field.to_vec(),
                value: value.to_vec(),
                expire_ms,
            });
        }
    }

    fn stream(&mut self, s: &Stream) {
        self.value = Some(Value::Stream(Box::new(s.clone())));
    }
}

/// The name of the module that wrote a module value, from its 64-bit type ID: nine
/// characters of six bits each above a 10-bit encoding version.
pub fn module_name(id: u64) -> String {
    const CHARSET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut name = [0u8; 9];
    let mut rest = id >> 10;
    for c in name.iter_mut().rev() {
        *c = CHARSET[(rest & 63) as usize];
        rest >>= 6;
    }
    String::from_utf8_lossy(&name).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_module_from_its_type_id() {
        // "ReJSON-RL" version 3, as RedisJSON registers it.
        let cs = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut id = 0u64;
        for c in b"ReJSON-RL" {
            id = (id << 6) | cs.iter().position(|x| x == c).unwrap() as u64;
        }
        id = (id << 10) | 3;
        assert_eq!(module_name(id), "ReJSON-RL");
    }

    #[test]
    fn stream_ids_round_trip_their_raw_form() {
        let id = StreamId { ms: 1700, seq: 5 };
        assert_eq!(StreamId::from_raw(id.raw()), id);
        assert_eq!(id.to_string(), "1700-5");
    }
}
