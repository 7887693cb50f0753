//! RESP records of an AOF: `*<argc>` arrays of `$<len>` bulk strings, each line ended by
//! CRLF, and `#...` annotations (`#TS:<unix time>`) between them.

use std::io::Read;

use super::aof_keys::{self, Class};
use super::error::ParseError;
use super::source::Source;

/// Longest `*N` / `$N` header line accepted (digits of a 64-bit number plus CRLF).
const HEADER_MAX: usize = 32;
/// Longest annotation line accepted.
const ANNOTATION_MAX: usize = 4096;
/// Arguments held in memory (command names, keys, numbers); longer ones are only skipped.
pub(crate) const ARG_CAP: usize = 64 << 10;

/// One command: its arguments, those wanted held in memory (`None` when not wanted or too
/// long to hold).
pub(crate) struct Command<'a> {
    pub argc: usize,
    pub class: Class,
    arena: &'a [u8],
    spans: &'a [Option<(usize, usize)>],
}

impl<'a> Command<'a> {
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
    /// The class found by the fast path.
    class: Class,
}

impl<'a, R: Read> RespReader<'a, R> {
    pub fn new(src: &'a mut Source<R>) -> Self {
        RespReader {
            src,
            line: Vec::new(),
            arena: Vec::new(),
            spans: Vec::new(),
            class: Class::Unknown,
        }
    }

    /// The next command, skipping annotations; `None` at the end of the file. Only the
    /// arguments its class needs (names, keys, numbers) are held in memory.
    pub fn next_command(&mut self) -> Result<Option<Command<'_>>, ParseError> {
        if let Some(argc) = self.command_in_buffer() {
            return Ok(Some(Command {
                argc,
                class: self.class,
                arena: &self.arena,
                spans: &self.spans,
            }));
        }
        self.next_command_slow()
    }

    /// The common case in one pass over the buffer: a whole, well-formed command already
    /// buffered. `None` (having consumed nothing) sends anything else down the careful
    /// path, which also finds and places any fault.
    #[inline]
    fn command_in_buffer(&mut self) -> Option<usize> {
        let b = self.src.buffered();
        let (mut at, argc) = header_in(b, b'*')?;
        if argc == 0 {
            return None;
        }
        self.arena.clear();
        self.spans.clear();
        let mut class = Class::Unknown;
        for i in 0..argc {
            let (header, len) = header_in(b.get(at..)?, b'$')?;
            let data = at + header;
            let end = data.checked_add(len)?;
            if b.get(end..end + 2)? != b"\r\n" {
                return None;
            }
            if len <= ARG_CAP && (i <= 1 || aof_keys::wants(class, i)) {
                let s = self.arena.len();
                self.arena.extend_from_slice(&b[data..end]);
                self.spans.push(Some((s, self.arena.len())));
                if i == 0 {
                    class = classify_name(&b[data..end]);
                }
            } else {
                self.spans.push(None);
            }
            at = end + 2;
        }
        self.src.consume(at);
        self.class = class;
        Some(argc)
    }

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
        let mut class = Class::Unknown;
        for i in 0..argc as usize {
            // Fast path: `$<len>\r\n<data>\r\n` wholly in the buffer.
            let b = self.src.buffered();
            if let Some((header, len)) = header_in(b, b'$') {
                let total = header + len + 2;
                if total <= b.len() {
                    if &b[header + len..total] != b"\r\n" {
                        let at = self.src.offset() + (header + len) as u64;
                        return Err(ParseError::corrupt(at, "CRLF after a bulk string"));
                    }
                    if len <= ARG_CAP && (i <= 1 || aof_keys::wants(class, i)) {
                        let s = self.arena.len();
                        self.arena.extend_from_slice(&b[header..header + len]);
                        self.spans.push(Some((s, self.arena.len())));
                        if i == 0 {
                            class = classify_name(&self.arena[s..]);
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
            let hold = len <= ARG_CAP as u64 && (i <= 1 || aof_keys::wants(class, i));
            if hold {
                let s = self.arena.len();
                self.src.copy_to(len, &mut self.arena)?;
                self.spans.push(Some((s, self.arena.len())));
                if i == 0 {
                    class = classify_name(&self.arena[s..]);
                }
            } else {
                self.src.skip(len)?;
                self.spans.push(None);
            }
            let at = self.src.offset();
            if self.src.bytes(2)? != b"\r\n" {
                return Err(ParseError::corrupt(at, "CRLF after a bulk string"));
            }
        }
        Ok(Some(Command {
            argc: argc as usize,
            class,
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

    fn header_slow(&mut self, prefix: u8) -> Result<u64, ParseError> {
        let at = self.src.offset();
        let what = if prefix == b'*' {
            "an array header `*<count>`"
        } else {
            "a bulk string header `$<length>`"
        };
        let complete = self.src.line(HEADER_MAX, &mut self.line)?;
        let l = &self.line;
        let ok = complete
            && l.len() >= 4
            && l[0] == prefix
            && l.ends_with(b"\r\n")
            && l[1..l.len() - 2].iter().all(u8::is_ascii_digit);
        if !ok {
            return Err(ParseError::corrupt(at, what));
        }
        std::str::from_utf8(&l[1..l.len() - 2])
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| ParseError::corrupt(at, what))
    }
}

/// A `<prefix><digits>\r\n` line at the start of `b`, of at most 18 digits: its length
/// and number; `None` when it is not (wholly) there, for the careful path to judge.
#[inline]
fn header_in(b: &[u8], prefix: u8) -> Option<(usize, usize)> {
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
mod tests {
    use super::*;

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
        let e = all(b"*1\r\n$2\r\nabXY").unwrap_err();
        assert_eq!(e.offset, 10);
        let e = all(b"*1\r\n%2\r\nab\r\n").unwrap_err();
        assert_eq!(e.offset, 4);
    }
}
