//! RESP records of an AOF: `*<argc>` arrays of `$<len>` bulk strings, each line ended by
//! CRLF, and `#...` annotations (`#TS:<unix time>`) between them.

use std::io::Read;

use super::aof_keys::{self, Class};
use super::commands::ArgcRange;
use super::error::ParseError;
use super::source::Source;

/// Longest header line the server's loader reads in one go (fgets into 1024 bytes).
const LINE_MAX: usize = 1023;
/// Longest annotation line accepted.
const ANNOTATION_MAX: usize = 4096;
/// How far ahead of an argument's end the bytes are asked for.
const READ_AHEAD: usize = 1024;
/// Most arguments a command read by the fast path has (a rewrite writes at most 130: 64
/// field-value pairs).
const FAST_ARGS: usize = 1024;
/// Arguments held in memory (command names, keys, numbers); longer ones are only skipped.
pub(crate) const ARG_CAP: usize = 64 << 10;

/// One command: its arguments, those wanted held in memory (`None` when not wanted or too
/// long to hold).
pub(crate) struct Command<'a> {
    pub argc: usize,
    pub class: Class,
    /// The argument counts its name is run with unchecked (see `commands::check`).
    pub fits: ArgcRange,
    arena: &'a [u8],
    spans: &'a [Option<(usize, usize)>],
}

impl<'a> Command<'a> {
    #[inline(always)]
    pub fn arg(&self, i: usize) -> Option<&'a [u8]> {
        let (s, e) = (*self.spans.get(i)?)?;
        Some(&self.arena[s..e])
    }
}

pub(crate) struct RespReader<'a, R> {
    pub src: &'a mut Source<R>,
    line: Vec<u8>,
    arena: Vec<u8>,
    spans: Vec<Option<(usize, usize)>>,
    /// What the fast path found of the name.
    name: NameInfo,
    names: NameCache,
    /// Bytes the server's loader reads past without looking (a header's tail after its
    /// number, the two bytes after a bulk string) that are not what Redis writes: how
    /// many, and the first one's offset and what was there.
    pub lenient: u64,
    pub first_lenient: Option<(u64, &'static str)>,
}

impl<'a, R: Read> RespReader<'a, R> {
    pub fn new(src: &'a mut Source<R>) -> Self {
        RespReader {
            src,
            line: Vec::new(),
            arena: Vec::new(),
            spans: Vec::new(),
            name: NameInfo::UNKNOWN,
            names: NameCache::default(),
            lenient: 0,
            first_lenient: None,
        }
    }

    /// The next command, skipping annotations; `None` at the end of the file. Only the
    /// arguments its class needs (names, keys, numbers) are held in memory.
    ///
    /// Inlined, so the fast path's command reaches the caller in registers rather than
    /// through a return slot in memory (1-2% of the check of small commands).
    #[inline(always)]
    pub fn next_command(&mut self) -> Result<Option<Command<'_>>, ParseError> {
        if let Some((argc, len)) = self.command_in_buffer() {
            return Ok(Some(Command {
                argc,
                class: self.name.class,
                fits: self.name.fits,
                arena: self.src.behind(len),
                // Sliced by the count in hand: `&self.spans` read the vector's pointer and
                // length in one 16-byte load, of a length just stored by `push`, which the
                // CPU cannot forward (a stall on every command).
                spans: &self.spans[..argc],
            }));
        }
        self.next_command_slow()
    }

    /// The common case in one pass over the buffer: a whole, well-formed command already
    /// buffered. `None` (having consumed nothing) sends anything else down the careful
    /// path, which also finds and places any fault. Its arguments are not copied: the
    /// spans point into the bytes just consumed; returns the count and their length.
    #[inline(always)]
    fn command_in_buffer(&mut self) -> Option<(usize, usize)> {
        let b = self.src.buffered();
        let (mut at, argc) = header_in(b, b'*')?;
        // A command of more arguments goes the careful way, which holds them as they
        // come: the count is the file's word, and must not size anything here.
        if argc == 0 || argc > FAST_ARGS {
            return None;
        }
        if self.spans.len() < argc {
            self.spans.resize(argc, None);
        }
        let mut name = NameInfo::UNKNOWN;
        // Written in place, not pushed: a push kept the vector's length in memory, read and
        // written back argument by argument.
        for (i, span) in self.spans[..argc].iter_mut().enumerate() {
            let (header, len) = header_in(b.get(at..)?, b'$')?;
            let data = at + header;
            let end = data.checked_add(len)?;
            // A mapped file's bytes come from memory, not from a copy just made: asked for
            // well ahead, they are in cache when the parse gets there.
            super::fp_set::prefetch(b, end + READ_AHEAD);
            if b.get(end..end + 2)? != b"\r\n" {
                return None;
            }
            if len <= ARG_CAP && (i <= 1 || aof_keys::wants(name.class, i)) {
                *span = Some((data, end));
                if i == 0 {
                    name = match b.get(data..data + 16) {
                        Some(wide) if len <= 16 => {
                            let wide: &[u8; 16] = wide.try_into().ok()?;
                            self.names.get_wide(wide, len)
                        }
                        _ => self.names.get(&b[data..end]),
                    };
                }
            } else {
                *span = None;
            }
            at = end + 2;
        }
        self.src.consume(at);
        self.name = name;
        Some((argc, at))
    }

    #[inline(never)]
    fn next_command_slow(&mut self) -> Result<Option<Command<'_>>, ParseError> {
        loop {
            if self.src.at_end() {
                return Ok(None);
            }
            let at = self.src.offset();
            match self.src.peek(1)?[0] {
                b'#' => {
                    if !self.src.line(ANNOTATION_MAX, &mut self.line)? {
                        return Err(ParseError::corrupt(
                            at,
                            "an annotation line of at most 4096 bytes",
                        ));
                    }
                }
                b'*' => break,
                b => {
                    return Err(ParseError::corrupt(
                        at,
                        format!("a RESP array `*` or an annotation `#`, not 0x{b:02x}"),
                    ))
                }
            }
        }
        let argc = self.header(b'*')?;
        if argc == 0 {
            return Err(ParseError::corrupt(
                self.src.offset() - 3,
                "a command of at least one argument",
            ));
        }
        // Every argument takes at least 6 bytes (`$0\r\n\r\n`).
        self.src.check_len(argc.saturating_mul(6), "command")?;
        self.arena.clear();
        self.spans.clear();
        let mut name = NameInfo::UNKNOWN;
        for i in 0..argc as usize {
            // Fast path: `$<len>\r\n<data>\r\n` wholly in the buffer.
            let b = self.src.buffered();
            if let Some((header, len)) = header_in(b, b'$') {
                let total = header + len + 2;
                // Anything else (a cut, bytes other than CRLF) goes the careful way.
                if total <= b.len() && &b[header + len..total] == b"\r\n" {
                    if len <= ARG_CAP && (i <= 1 || aof_keys::wants(name.class, i)) {
                        let s = self.arena.len();
                        self.arena.extend_from_slice(&b[header..header + len]);
                        self.spans.push(Some((s, self.arena.len())));
                        if i == 0 {
                            name = self.names.get(&self.arena[s..]);
                        }
                    } else {
                        self.spans.push(None);
                    }
                    self.src.consume(total);
                    continue;
                }
            }
            let len = self.header(b'$')?;
            // The name, and a container's subcommand (or the key): commands::check.
            let hold = len <= ARG_CAP as u64 && (i <= 1 || aof_keys::wants(name.class, i));
            if hold {
                let s = self.arena.len();
                self.src.copy_to(len, &mut self.arena)?;
                self.spans.push(Some((s, self.arena.len())));
                if i == 0 {
                    name = self.names.get(&self.arena[s..]);
                }
            } else {
                self.src.skip(len)?;
                self.spans.push(None);
            }
            let at = self.src.offset();
            if self.src.bytes(2)? != b"\r\n" {
                self.note_lenient(at, "two bytes other than CRLF after a bulk string");
            }
        }
        Ok(Some(Command {
            argc: argc as usize,
            class: name.class,
            fits: name.fits,
            arena: &self.arena,
            spans: &self.spans,
        }))
    }

    /// A `<prefix><digits>\r\n` line; returns the number.
    #[inline]
    fn header(&mut self, prefix: u8) -> Result<u64, ParseError> {
        if let Some((used, n)) = header_in(self.src.buffered(), prefix) {
            self.src.consume(used);
            return Ok(n as u64);
        }
        self.header_slow(prefix)
    }

    /// A header line as the server's loader reads it: up to `\n` (fgets into 1024 bytes),
    /// the prefix, then the number `atoi`/`strtol` find (leading spaces, a sign, digits;
    /// none is 0); anything after it is ignored, and noted here.
    fn header_slow(&mut self, prefix: u8) -> Result<u64, ParseError> {
        let at = self.src.offset();
        let what = if prefix == b'*' {
            "an array header `*<count>`"
        } else {
            "a bulk string header `$<length>`"
        };
        let complete = self.src.line(LINE_MAX, &mut self.line)?;
        let l = &self.line;
        if !complete || l.first() != Some(&prefix) {
            return Err(ParseError::corrupt(at, what));
        }
        let exact = l.len() >= 4
            && l.ends_with(b"\r\n")
            && l[1..l.len() - 2].iter().all(u8::is_ascii_digit);
        let mut rest = &l[1..];
        while let Some((c, tail)) = rest.split_first() {
            if !c.is_ascii_whitespace() && *c != 0x0b {
                break;
            }
            rest = tail;
        }
        let negative = rest.first() == Some(&b'-');
        if matches!(rest.first(), Some(b'-' | b'+')) {
            rest = &rest[1..];
        }
        let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        let n: u64 = match std::str::from_utf8(&rest[..digits])
            .ok()
            .filter(|d| !d.is_empty())
        {
            None => 0,
            Some(d) => d.parse().map_err(|_| ParseError::corrupt(at, what))?,
        };
        // The server refuses `*0` and below; a negative length would make it allocate
        // some 2^64 bytes.
        if negative && n > 0 || (prefix == b'*' && n == 0) {
            return Err(ParseError::corrupt(at, what));
        }
        if !exact {
            self.note_lenient(
                at,
                "a header with bytes the server ignores after its number",
            );
        }
        Ok(n)
    }

    #[cold]
    fn note_lenient(&mut self, at: u64, what: &'static str) {
        self.lenient += 1;
        if self.first_lenient.is_none() {
            self.first_lenient = Some((at, what));
        }
    }
}

/// A `<prefix><digits>\r\n` line at the start of `b`, of at most 18 digits: its length
/// and number; `None` when it is not (wholly) there, for the careful path to judge.
#[inline(always)]
fn header_in(b: &[u8], prefix: u8) -> Option<(usize, usize)> {
    // One to three digits, nearly every header of an AOF (of small commands, and the
    // values of 100-999 bytes a real one holds many of): six bytes looked at once, where
    // the loop below branched digit by digit.
    if let Some(&[p, d0, x, y, z, w]) = b.get(..6) {
        if p != prefix || !d0.is_ascii_digit() {
            return None;
        }
        let d0 = usize::from(d0 - b'0');
        if x == b'\r' && y == b'\n' {
            return Some((4, d0));
        }
        if x.is_ascii_digit() {
            let n = d0 * 10 + usize::from(x - b'0');
            if y == b'\r' && z == b'\n' {
                return Some((5, n));
            }
            if y.is_ascii_digit() && z == b'\r' && w == b'\n' {
                return Some((6, n * 10 + usize::from(y - b'0')));
            }
        }
    }
    if b.len() < 4 || b[0] != prefix {
        return None;
    }
    let mut n = 0usize;
    let mut i = 1;
    while i < b.len() && i <= 18 && b[i].is_ascii_digit() {
        n = n * 10 + usize::from(b[i] - b'0');
        i += 1;
    }
    (i > 1 && i + 1 < b.len() && b[i] == b'\r' && b[i + 1] == b'\n').then_some((i + 2, n))
}

/// What the reader needs of a command name.
#[derive(Clone, Copy)]
struct NameInfo {
    class: Class,
    fits: ArgcRange,
}

impl NameInfo {
    const UNKNOWN: NameInfo = NameInfo {
        class: Class::Unknown,
        fits: ArgcRange::NONE,
    };

    fn of(name: &[u8]) -> NameInfo {
        NameInfo {
            class: classify_name(name),
            fits: ArgcRange::of(name),
        }
    }
}

/// The names met lately, by their exact bytes (names of up to 16): an AOF repeats a
/// handful of names, each always in the same case, so a hit skips the lowercasing and
/// the match against every name the two tables hold (a tenth of the parse of small
/// commands). Two places a name may sit; a clash only costs a lookup.
struct NameCache {
    /// The name's bytes as two zero-padded words and its length (`u8::MAX`: empty).
    slots: Box<[(u64, u64, u8, NameInfo); NAME_SLOTS]>,
}

const NAME_SLOTS: usize = 256;

impl Default for NameCache {
    fn default() -> Self {
        NameCache {
            slots: Box::new([(0, 0, u8::MAX, NameInfo::UNKNOWN); NAME_SLOTS]),
        }
    }
}

/// For a name of `n` bytes (up to 16), the masks that keep its bytes of the two
/// little-endian words the first 16 bytes make.
const NAME_MASKS: [(u64, u64); 17] = {
    const fn mask(n: usize) -> u64 {
        if n >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * n)) - 1
        }
    }
    let mut masks = [(0, 0); 17];
    let mut n = 0;
    while n <= 16 {
        masks[n] = (mask(n), mask(n.saturating_sub(8)));
        n += 1;
    }
    masks
};

impl NameCache {
    #[inline]
    fn get(&mut self, name: &[u8]) -> NameInfo {
        if name.len() > 16 {
            return NameInfo::of(name);
        }
        // The one way a name becomes its key: the bytes after it are masked off.
        let mut wide = [0u8; 16];
        wide[..name.len()].copy_from_slice(name);
        self.get_wide(&wide, name.len())
    }

    /// [`get`](Self::get) for a name of at most 16 bytes at the start of `wide`: two
    /// loads and masks, where working a word out of the name's own bytes branched on its
    /// length (names of an AOF vary in length command by command, and the branches missed).
    #[inline(always)]
    fn get_wide(&mut self, wide: &[u8; 16], len: usize) -> NameInfo {
        let len = len.min(16);
        // Looked up, where working the masks out took some fifteen instructions a command.
        let (m0, m1) = NAME_MASKS[len];
        let [a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7] = *wide;
        let w0 = u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]) & m0;
        let w1 = u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]) & m1;
        self.lookup(w0, w1, &wide[..len])
    }

    #[inline(always)]
    fn lookup(&mut self, w0: u64, w1: u64, name: &[u8]) -> NameInfo {
        let len = name.len() as u8;
        let h = (w0 ^ w1.rotate_left(29) ^ u64::from(len)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let i = (h >> 56) as usize % NAME_SLOTS;
        let j = (i + 1) % NAME_SLOTS;
        for k in [i, j] {
            let slot = &self.slots[k];
            if slot.0 == w0 && slot.1 == w1 && slot.2 == len {
                return slot.3;
            }
        }
        self.miss(i, j, w0, w1, name)
    }

    #[cold]
    #[inline(never)]
    fn miss(&mut self, i: usize, j: usize, w0: u64, w1: u64, name: &[u8]) -> NameInfo {
        let info = NameInfo::of(name);
        // The first place unless taken, then the second (whatever it held).
        let k = if self.slots[i].2 == u8::MAX { i } else { j };
        self.slots[k] = (w0, w1, name.len() as u8, info);
        info
    }
}

/// The class of a command name, case-insensitively.
fn classify_name(name: &[u8]) -> Class {
    let mut lower = [0u8; 24];
    if name.len() > lower.len() {
        return Class::Unknown;
    }
    for (d, s) in lower.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    aof_keys::classify(&lower[..name.len()])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A command as RESP, as a client sends it and an AOF holds it (the crate's tests'
    /// files).
    pub(crate) fn encode<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            let a = a.as_ref();
            out.extend(format!("${}\r\n", a.len()).bytes());
            out.extend_from_slice(a);
            out.extend(b"\r\n");
        }
        out
    }

    #[test]
    fn a_count_of_arguments_sizes_nothing_before_they_are_read() {
        // A damaged count, far more arguments than the file holds: refused, nothing
        // allocated for them (a vector sized to it would take terabytes).
        // After a first command, so that the buffer is filled and the fast path looks.
        let first = "*1\r\n$5\r\nMULTI\r\n";
        for count in ["1000000000000", "1025", "99999"] {
            let data = format!("{first}*{count}\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n");
            assert!(all(data.as_bytes()).is_err(), "{count}");
        }
        // Many arguments that are there: read, past the fast path's limit too.
        for n in [1024usize, 1025, 3000] {
            let mut data = format!("{first}*{n}\r\n$4\r\nMSET\r\n");
            for i in 1..n {
                let a = format!("k{i}");
                data.push_str(&format!("${}\r\n{a}\r\n", a.len()));
            }
            let cmds = all(data.as_bytes()).unwrap();
            assert_eq!(cmds.len(), 2);
            assert_eq!(cmds[1].len(), n);
        }
    }

    fn all(data: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ParseError> {
        let mut src = Source::new(data, 0, data.len() as u64);
        let mut r = RespReader::new(&mut src);
        let mut out = Vec::new();
        while let Some(c) = r.next_command()? {
            out.push(
                (0..c.argc)
                    .map(|i| c.arg(i).map_or(b"?".to_vec(), <[u8]>::to_vec))
                    .collect(),
            );
        }
        Ok(out)
    }

    #[test]
    fn reads_commands_and_annotations() {
        let aof = b"#TS:1700000000\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n*3\r\n$3\r\nset\r\n$1\r\nk\r\n$0\r\n\r\n";
        let cmds = all(aof).unwrap();
        assert_eq!(cmds.len(), 2);
        assert_eq!(cmds[1][0], b"set");
        assert_eq!(cmds[1][1], b"k");
        // Values are only skipped.
        assert_eq!(cmds[1][2], b"?");
    }

    #[test]
    fn a_header_of_any_digit_count_reads_whole_or_not_at_all() {
        for n in (0..1200).chain([9_999, 10_000, 123_456_789]) {
            let line = format!("${n}\r\n");
            // With the bytes that follow it, and cut at every place.
            let mut b = line.clone().into_bytes();
            b.extend_from_slice(b"abcdefgh");
            assert_eq!(header_in(&b, b'$'), Some((line.len(), n)), "{line:?}");
            assert_eq!(header_in(&b, b'*'), None, "{line:?}");
            for cut in 0..line.len() {
                assert_eq!(header_in(&b[..cut], b'$'), None, "{line:?} cut at {cut}");
            }
        }
        for bad in [
            &b"$1\r\r\n"[..],
            b"$12\n\r",
            b"$1a\r\n",
            b"$\r\n\r\n",
            b"$-1\r\n",
        ] {
            assert_eq!(header_in(bad, b'$'), None, "{bad:?}");
        }
    }

    #[test]
    fn names_are_known_however_they_are_read() {
        let mut c = NameCache::default();
        let mut wide = [b'x'; 16];
        for name in [
            &b"SET"[..],
            b"set",
            b"PEXPIREAT",
            b"s",
            b"",
            b"GEORADIUSBYMEMBE",
            b"SeT",
        ] {
            wide[..name.len()].copy_from_slice(name);
            for _ in 0..2 {
                let (a, b) = (c.get(name), c.get_wide(&wide, name.len()));
                assert_eq!(a.class, b.class, "{name:?}");
                assert_eq!(a.class, classify_name(name), "{name:?}");
                assert_eq!(a.fits, b.fits, "{name:?}");
                assert_eq!(a.fits, ArgcRange::of(name), "{name:?}");
            }
        }
        // Every length, the bytes after the name not its own.
        for len in 0..=16 {
            let name = &b"ZREMRANGEBYSCORE"[..len];
            wide[..len].copy_from_slice(name);
            wide[len..].fill(b'x');
            let (a, b) = (c.get(name), c.get_wide(&wide, len));
            assert_eq!((a.class, a.fits), (b.class, b.fits), "{name:?}");
        }
        assert_eq!(
            c.get_wide(b"ZREMRANGEBYSCORE", 16).class,
            c.get(b"zremrangebyscore").class
        );
        assert_eq!(c.get(b"SET").class, Class::Set);
        assert_eq!(c.get(b"SETX").class, Class::Unknown);
    }

    #[test]
    fn tells_truncation_from_corruption() {
        let aof = b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n";
        for cut in 1..aof.len() {
            let e = all(&aof[..cut]).unwrap_err();
            assert_eq!(
                e.kind,
                super::super::error::FaultKind::Truncated,
                "cut {cut}"
            );
        }
        let e = all(b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\nX").unwrap_err();
        assert_eq!(
            (e.kind, e.offset),
            (super::super::error::FaultKind::Corrupt, 23)
        );
        // The server reads the two bytes after a bulk string without looking at them.
        assert_eq!(all(b"*1\r\n$2\r\nabXY").unwrap(), [[b"ab".to_vec()]]);
        // And a header's number as atoi does.
        assert_eq!(
            all(b"*1 x\r\n$2junk\r\nab\r\n").unwrap(),
            [[b"ab".to_vec()]]
        );
        assert!(all(b"*0\r\n").is_err());
        assert!(all(b"*1\r\n$-2\r\nab\r\n").is_err());
        let e = all(b"*1\r\n%2\r\nab\r\n").unwrap_err();
        assert_eq!(e.offset, 4);
    }
}
