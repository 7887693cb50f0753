//! DUMP payloads, both ways: the RDB encoding of one value, then the 2-byte RDB version
//! (little-endian) and a CRC-64 (Jones, little-endian) of everything before it. Decoding
//! goes through the same decoder as RDB files; encoding writes the oldest types that carry
//! the value, so that Redis 7.x and Valkey 8.x `RESTORE` accept it.

use thiserror::Error;

use super::error::{FaultKind, ParseError};
use super::source::crc64;
use super::value::{Kind, Stream, Value, ValueBuilder, ValueSink};
use super::value_decode::{decode, Scratch, SliceInput};

/// Why bytes could not be decoded as a value: where, and what was expected there.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("at byte {offset}: expected {expected}")]
pub struct DecodeError {
    pub offset: u64,
    pub expected: String,
    /// A value Lazarus does not decode (a module's), not damage.
    pub unsupported: bool,
}

impl From<ParseError> for DecodeError {
    fn from(e: ParseError) -> Self {
        let f = e.into_inner();
        DecodeError {
            offset: f.offset,
            expected: f.expected,
            unsupported: f.kind == FaultKind::Unsupported,
        }
    }
}

/// Why a value cannot be written as a DUMP payload.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum EncodeError {
    #[error("hash field `{0}` has its own TTL, which no DUMP format Redis 7.0-7.2 and Valkey 8 accept can carry")]
    FieldTtl(String),
}

/// The RDB version a DUMP payload says it was written with, and its value's type byte.
pub fn dump_header(payload: &[u8]) -> Option<(u8, u16)> {
    let n = payload.len();
    (n >= 11).then(|| {
        (
            payload[0],
            u16::from_le_bytes([payload[n - 10], payload[n - 9]]),
        )
    })
}

/// Decodes a DUMP payload into its value, after checking the CRC-64 trailer.
pub fn decode_dump(payload: &[u8]) -> Result<Value, DecodeError> {
    let mut b = ValueBuilder::default();
    let mut sc = Scratch::default();
    decode_dump_into(payload, &mut b, &mut sc)?;
    b.take().ok_or_else(|| DecodeError {
        offset: 0,
        expected: "a value".into(),
        unsupported: false,
    })
}

/// Decodes a DUMP payload into a sink; `Ok(false)` for an empty collection.
pub(crate) fn decode_dump_into<S: ValueSink>(
    payload: &[u8],
    sink: &mut S,
    sc: &mut Scratch,
) -> Result<bool, DecodeError> {
    let n = payload.len();
    if n < 11 {
        return Err(DecodeError {
            offset: n as u64,
            expected: "a DUMP payload of at least 11 bytes (type, value, version, CRC-64)".into(),
            unsupported: false,
        });
    }
    let body = &payload[..n - 8];
    let stored = u64::from_le_bytes(payload[n - 8..].try_into().unwrap_or_default());
    let computed = crc64(body);
    if stored != 0 && stored != computed {
        return Err(DecodeError {
            offset: (n - 8) as u64,
            expected: format!("CRC-64 {computed:016x}, not {stored:016x}"),
            unsupported: false,
        });
    }
    let version = u16::from_le_bytes([payload[n - 10], payload[n - 9]]);
    // Valkey 9 writes 80 and up; Redis up to 12.
    let valkey = version >= 80;
    let mut input = SliceInput {
        b: &payload[..n - 10],
        at: 1,
    };
    let present = decode(&mut input, payload[0], valkey, sink, sc)?;
    if input.at != n - 10 {
        return Err(DecodeError {
            offset: input.at as u64,
            expected: format!(
                "the RDB version trailer, not {} more byte(s)",
                n - 10 - input.at
            ),
            unsupported: false,
        });
    }
    Ok(present)
}

/// Writes a value as a DUMP payload `RESTORE` accepts on Redis 7.0+ and Valkey 8+.
pub fn encode_dump(value: &Value) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    let version: u16 = match value {
        Value::String(s) => {
            out.push(0);
            put_string(&mut out, s);
            9
        }
        Value::List(items) | Value::Set(items) => {
            out.push(if value.kind() == Kind::List { 1 } else { 2 });
            put_len(&mut out, items.len() as u64);
            items.iter().for_each(|i| put_string(&mut out, i));
            9
        }
        Value::SortedSet(members) => {
            out.push(5);
            put_len(&mut out, members.len() as u64);
            for (m, s) in members {
                put_string(&mut out, m);
                out.extend_from_slice(&s.to_le_bytes());
            }
            9
        }
        Value::Hash(fields) => {
            out.push(4);
            put_len(&mut out, fields.len() as u64);
            for f in fields {
                if f.expire_ms.is_some() {
                    return Err(EncodeError::FieldTtl(
                        String::from_utf8_lossy(&f.field).into_owned(),
                    ));
                }
                put_string(&mut out, &f.field);
                put_string(&mut out, &f.value);
            }
            9
        }
        Value::Stream(s) => {
            out.push(19);
            put_stream(&mut out, s);
            10
        }
    };
    out.extend_from_slice(&version.to_le_bytes());
    let crc = crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

fn put_len(out: &mut Vec<u8>, n: u64) {
    if n < 1 << 6 {
        out.push(n as u8);
    } else if n < 1 << 14 {
        out.push(0x40 | (n >> 8) as u8);
        out.push(n as u8);
    } else if n <= u64::from(u32::MAX) {
        out.push(0x80);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_len(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// Entries per stream node written (Redis' default `stream-node-max-entries`).
const NODE_ENTRIES: usize = 100;

/// A stream as RDB type 19: listpack nodes, metadata, groups with their PELs.
fn put_stream(out: &mut Vec<u8>, s: &Stream) {
    let chunks: Vec<_> = s.entries.chunks(NODE_ENTRIES).collect();
    put_len(out, chunks.len() as u64);
    for chunk in &chunks {
        let master = chunk[0].id;
        put_string(out, &master.raw());
        put_string(out, &stream_node(chunk, master));
    }
    put_len(out, s.length);
    let id = |out: &mut Vec<u8>, id: super::value::StreamId| {
        put_len(out, id.ms);
        put_len(out, id.seq);
    };
    id(out, s.last_id);
    let first = s
        .first_id
        .or_else(|| s.entries.first().map(|e| e.id))
        .unwrap_or_default();
    id(out, first);
    id(out, s.max_deleted_id.unwrap_or_default());
    put_len(out, s.entries_added.unwrap_or(s.length));
    put_len(out, s.groups.len() as u64);
    for g in &s.groups {
        put_string(out, &g.name);
        id(out, g.last_id);
        // -1: "not known", which Redis then works out itself.
        put_len(out, g.entries_read.unwrap_or(u64::MAX));
        put_len(out, g.pending.len() as u64);
        for p in &g.pending {
            out.extend_from_slice(&p.id.raw());
            out.extend_from_slice(&p.delivery_time_ms.to_le_bytes());
            put_len(out, p.delivery_count);
        }
        put_len(out, g.consumers.len() as u64);
        for c in &g.consumers {
            put_string(out, &c.name);
            out.extend_from_slice(&c.seen_time_ms.to_le_bytes());
            put_len(out, c.pending.len() as u64);
            for p in &c.pending {
                out.extend_from_slice(&p.raw());
            }
        }
    }
}

/// One stream node: the master entry (the first entry's field names), then each entry,
/// flagged SAME_FIELDS when its field names are the master's.
fn stream_node(entries: &[super::value::StreamEntry], master: super::value::StreamId) -> Vec<u8> {
    let mut lp = Listpack::default();
    let master_fields: Vec<&[u8]> = entries[0].fields.iter().map(|(f, _)| &f[..]).collect();
    lp.int(entries.len() as i64);
    lp.int(0);
    lp.int(master_fields.len() as i64);
    master_fields.iter().for_each(|f| lp.str(f));
    lp.int(0);
    for e in entries {
        let same = e.fields.len() == master_fields.len()
            && e.fields
                .iter()
                .zip(&master_fields)
                .all(|((f, _), m)| f == m);
        lp.int(if same { 2 } else { 0 });
        lp.int(e.id.ms.wrapping_sub(master.ms) as i64);
        lp.int(e.id.seq.wrapping_sub(master.seq) as i64);
        if same {
            e.fields.iter().for_each(|(_, v)| lp.str(v));
            lp.int(master_fields.len() as i64 + 3);
        } else {
            lp.int(e.fields.len() as i64);
            for (f, v) in &e.fields {
                lp.str(f);
                lp.str(v);
            }
            lp.int(e.fields.len() as i64 * 2 + 4);
        }
    }
    lp.finish()
}

/// Builds a listpack entry by entry.
#[derive(Default)]
struct Listpack {
    body: Vec<u8>,
    count: usize,
}

impl Listpack {
    fn int(&mut self, v: i64) {
        let start = self.body.len();
        let b = &mut self.body;
        match v {
            0..=127 => b.push(v as u8),
            -4096..=4095 => {
                let u = (v as u16) & 0x1fff;
                b.push(0xc0 | (u >> 8) as u8);
                b.push(u as u8);
            }
            -32768..=32767 => {
                b.push(0xf1);
                b.extend_from_slice(&(v as i16).to_le_bytes());
            }
            -8388608..=8388607 => {
                b.push(0xf2);
                b.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
            }
            -2147483648..=2147483647 => {
                b.push(0xf3);
                b.extend_from_slice(&(v as i32).to_le_bytes());
            }
            _ => {
                b.push(0xf4);
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        self.backlen(start);
    }

    fn str(&mut self, s: &[u8]) {
        let start = self.body.len();
        let b = &mut self.body;
        let n = s.len();
        if n < 64 {
            b.push(0x80 | n as u8);
        } else if n < 4096 {
            b.push(0xe0 | (n >> 8) as u8);
            b.push(n as u8);
        } else {
            b.push(0xf0);
            b.extend_from_slice(&(n as u32).to_le_bytes());
        }
        b.extend_from_slice(s);
        self.backlen(start);
    }

    /// The entry's length after it, read right to left: 7 bits a byte, every byte but the
    /// leftmost flagged.
    fn backlen(&mut self, start: usize) {
        let len = (self.body.len() - start) as u64;
        let mut groups = vec![(len & 0x7f) as u8];
        let mut rest = len >> 7;
        while rest > 0 {
            groups.push((rest & 0x7f) as u8);
            rest >>= 7;
        }
        let last = groups.len() - 1;
        for (i, g) in groups.iter().enumerate().rev() {
            // Leftmost (highest) group unflagged.
            self.body.push(if i == last { *g } else { g | 0x80 });
        }
        self.count += 1;
    }

    fn finish(self) -> Vec<u8> {
        let total = 6 + self.body.len() + 1;
        let mut lp = Vec::with_capacity(total);
        lp.extend_from_slice(&(total as u32).to_le_bytes());
        lp.extend_from_slice(&(self.count.min(65535) as u16).to_le_bytes());
        lp.extend_from_slice(&self.body);
        lp.push(0xff);
        lp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::value::{
        Consumer, ConsumerGroup, HashField, PendingEntry, StreamEntry, StreamId,
    };

    fn round_trip(v: Value) {
        let payload = encode_dump(&v).unwrap();
        assert_eq!(decode_dump(&payload).unwrap(), v);
    }

    #[test]
    fn every_kind_round_trips_through_a_payload() {
        round_trip(Value::String(b"hello".to_vec()));
        round_trip(Value::String(vec![b'x'; 20000]));
        round_trip(Value::List(vec![b"a".to_vec(), b"".to_vec(), vec![7; 300]]));
        round_trip(Value::Set(vec![b"1".to_vec(), b"two".to_vec()]));
        round_trip(Value::SortedSet(vec![
            (b"a".to_vec(), 1.5),
            (b"b".to_vec(), f64::INFINITY),
        ]));
        round_trip(Value::Hash(vec![HashField {
            field: b"f".to_vec(),
            value: b"v".to_vec(),
            expire_ms: None,
        }]));
        let entries: Vec<StreamEntry> = (0..250u64)
            .map(|i| StreamEntry {
                id: StreamId {
                    ms: 1000 + i,
                    seq: i % 3,
                },
                fields: if i % 7 == 0 {
                    vec![(b"other".to_vec(), i.to_string().into_bytes())]
                } else {
                    vec![
                        (b"f".to_vec(), vec![b'z'; i as usize]),
                        (b"n".to_vec(), (i * 100000).to_string().into_bytes()),
                    ]
                },
            })
            .collect();
        let id = StreamId { ms: 1001, seq: 1 };
        round_trip(Value::Stream(Box::new(Stream {
            length: entries.len() as u64,
            last_id: entries.last().unwrap().id,
            first_id: Some(entries[0].id),
            max_deleted_id: Some(StreamId::default()),
            entries_added: Some(250),
            entries,
            groups: vec![ConsumerGroup {
                name: b"g".to_vec(),
                last_id: id,
                entries_read: Some(2),
                pending: vec![PendingEntry {
                    id,
                    delivery_time_ms: 1_700_000_000_000,
                    delivery_count: 2,
                }],
                consumers: vec![Consumer {
                    name: b"c".to_vec(),
                    seen_time_ms: 1_700_000_000_001,
                    active_time_ms: None,
                    pending: vec![id],
                }],
            }],
        })));
    }

    #[test]
    fn a_damaged_payload_says_where() {
        let mut p = encode_dump(&Value::String(b"hello".to_vec())).unwrap();
        p[2] ^= 1;
        let e = decode_dump(&p).unwrap_err();
        assert!(e.expected.contains("CRC-64"), "{e}");
        assert!(decode_dump(&p[..5]).is_err());
    }

    #[test]
    fn listpack_integers_of_every_width_decode_back() {
        for v in [
            0i64,
            127,
            128,
            -1,
            4095,
            -4096,
            4096,
            40000,
            -40000,
            1 << 30,
            1 << 40,
        ] {
            let mut lp = Listpack::default();
            lp.int(v);
            lp.str(&vec![b'q'; 5000]);
            let b = lp.finish();
            let mut it = crate::persist::listpack::entries(&b).unwrap();
            assert_eq!(it.next_entry().unwrap().unwrap().int(), Some(v));
            assert!(it.next_entry().unwrap().is_some());
            assert!(it.next_entry().unwrap().is_none());
        }
    }
}
