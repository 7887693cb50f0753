//! The manifest of a Redis 7 multi-part AOF (`appendonlydir/<name>.manifest`): one line
//! per file, `file <name> seq <n> type <b|h|i>`, quoted like Redis' `sdssplitargs`.

use super::error::ParseError;

/// Redis refuses manifest lines longer than this.
const LINE_MAX: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PartType {
    Base,
    History,
    Incr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub name: String,
    /// As the server's `atoll` reads it (`2(7` is 2; a negative base seq is accepted).
    pub seq: i64,
    pub kind: PartType,
    /// Line number (from 1) and byte offset of the line, for faults.
    pub line: usize,
    pub offset: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Manifest {
    pub base: Option<Entry>,
    pub incrs: Vec<Entry>,
}

/// Parses a manifest's bytes as the server's `aofLoadManifestFromFile` reads them: lines
/// as `fgets` hands them out (at most [`LINE_MAX`] bytes), words as `sdssplitargs` splits
/// them, each value as the C string it becomes (up to a NUL). Faults carry the offending
/// line's offset.
pub(crate) fn parse(text: &[u8]) -> Result<Manifest, ParseError> {
    let mut m = Manifest::default();
    let mut offset = 0u64;
    let mut max_incr_seq = 0i64;
    let mut any = false;
    let mut rest = text;
    let mut line_no = 0;
    while !rest.is_empty() {
        // One `fgets` into a buffer of LINE_MAX + 1: up to and with the first newline, at
        // most LINE_MAX bytes (a longer line is read in pieces, each judged on its own).
        let len = rest
            .iter()
            .take(LINE_MAX)
            .position(|&b| b == b'\n')
            .map_or(rest.len().min(LINE_MAX), |i| i + 1);
        let (raw, tail) = rest.split_at(len);
        rest = tail;
        line_no += 1;
        let at = offset;
        offset += raw.len() as u64;
        let bad = |what: String| ParseError::corrupt(at, format!("line {line_no}: {what}"));
        if raw.first() == Some(&b'#') {
            continue;
        }
        // The server looks for the newline with strchr, which stops at a NUL.
        let c_line = raw.split(|&b| b == 0).next().unwrap_or_default();
        if !c_line.ends_with(b"\n") {
            return Err(bad(if raw.len() >= LINE_MAX {
                format!("a line of at most {LINE_MAX} bytes")
            } else if c_line.len() < raw.len() {
                "a line without a NUL byte (the server refuses the manifest)".into()
            } else {
                "a line ended by a newline".into()
            }));
        }
        let line = trim(c_line);
        let shown = String::from_utf8_lossy(line);
        // The server stops at a blank line: "Invalid AOF manifest file format".
        if line.is_empty() {
            return Err(bad(
                "a `file ...` line, not a blank one (the server refuses the manifest)".into(),
            ));
        }
        let args = split_args(line).ok_or_else(|| bad("balanced quotes".into()))?;
        if args.len() < 6 || args.len() % 2 != 0 {
            return Err(bad(format!(
                "`file <name> seq <n> type <b|h|i>`, not `{shown}`"
            )));
        }
        let (mut name, mut seq, mut kind) = (None, 0i64, 0u8);
        for pair in args.chunks(2) {
            // Each word is a C string to the server: it ends at a NUL.
            let key = c_str(&pair[0]);
            let value = c_str(&pair[1]);
            // The server compares keys with strcasecmp; a later key wins.
            if key.eq_ignore_ascii_case(b"file") {
                if value.contains(&b'/') || value.contains(&b'\\') {
                    return Err(bad(format!(
                        "a file name, not the path `{}`",
                        String::from_utf8_lossy(value)
                    )));
                }
                name = Some(String::from_utf8_lossy(value).into_owned());
            } else if key.eq_ignore_ascii_case(b"seq") {
                seq = atoll(value);
            } else if key.eq_ignore_ascii_case(b"type") {
                kind = value.first().copied().unwrap_or(0);
            }
            // Newer servers may add keys; the server ignores unknown ones too.
        }
        // The server refuses a missing name, a seq of 0 (`atoll` of no digits) and an
        // empty type.
        let (Some(name), true, true) = (name, seq != 0, kind != 0) else {
            return Err(bad(format!(
                "`file`, a numeric `seq` and `type` on the line, not `{shown}`"
            )));
        };
        let kind = match kind {
            b'b' => PartType::Base,
            b'h' => PartType::History,
            b'i' => PartType::Incr,
            other => {
                return Err(bad(format!(
                    "type `b`, `h` or `i`, not `{}`",
                    (other as char).escape_default()
                )))
            }
        };
        let entry = Entry {
            name,
            seq,
            kind,
            line: line_no,
            offset: at,
        };
        any = true;
        match kind {
            PartType::Base => {
                if m.base.is_some() {
                    return Err(bad("one base file, not a second one".into()));
                }
                m.base = Some(entry);
            }
            PartType::Incr => {
                if seq <= max_incr_seq {
                    return Err(bad(format!(
                        "incr sequence numbers that increase, not {seq} after {max_incr_seq}"
                    )));
                }
                max_incr_seq = seq;
                m.incrs.push(entry);
            }
            PartType::History => {}
        }
    }
    if !any || (m.base.is_none() && m.incrs.is_empty()) {
        return Err(ParseError::corrupt(
            0,
            "a manifest naming a base or incr file",
        ));
    }
    Ok(m)
}

/// C's `isspace`.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `sdstrim(line, " \t\r\n")`.
fn trim(mut b: &[u8]) -> &[u8] {
    let cut = |c: &u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    while b.first().is_some_and(cut) {
        b = &b[1..];
    }
    while b.last().is_some_and(cut) {
        b = &b[..b.len() - 1];
    }
    b
}

/// The bytes of `b` up to its first NUL, as C reads a string.
fn c_str(b: &[u8]) -> &[u8] {
    b.split(|&c| c == 0).next().unwrap_or_default()
}

/// C's `atoll` (glibc `strtoll` base 10): leading `isspace`, a sign, digits up to the first
/// other byte, saturating on overflow; 0 when there are no digits.
fn atoll(b: &[u8]) -> i64 {
    let mut i = 0;
    while b.get(i).copied().is_some_and(is_c_space) {
        i += 1;
    }
    let negative = b.get(i) == Some(&b'-');
    if matches!(b.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    let mut n: i64 = 0;
    for &d in b[i.min(b.len())..]
        .iter()
        .take_while(|d| d.is_ascii_digit())
    {
        let d = i64::from(d - b'0');
        n = match n.checked_mul(10).and_then(|n| {
            if negative {
                n.checked_sub(d)
            } else {
                n.checked_add(d)
            }
        }) {
            Some(n) => n,
            None => return if negative { i64::MIN } else { i64::MAX },
        };
    }
    n
}

/// Splits a line as Redis' `sdssplitargs` does: `isspace` between words; a word ends at a
/// space, tab, CR or LF; a quote inside a word opens a quoted part; `"..."` takes C
/// escapes (`\xHH` with two hex digits), `'...'` only `\'`; a closing quote must be
/// followed by `isspace` or the end. `None` for an unbalanced quote.
fn split_args(b: &[u8]) -> Option<Vec<Vec<u8>>> {
    let hex = |c: Option<&u8>| c.is_some_and(u8::is_ascii_hexdigit);
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && is_c_space(b[i]) {
            i += 1;
        }
        if i == b.len() {
            return Some(out);
        }
        let (mut inq, mut insq, mut done) = (false, false, false);
        let mut cur = Vec::new();
        while !done {
            let c = b.get(i).copied();
            if inq {
                match c {
                    None => return None,
                    Some(b'\\')
                        if b.get(i + 1) == Some(&b'x')
                            && hex(b.get(i + 2))
                            && hex(b.get(i + 3)) =>
                    {
                        let h = std::str::from_utf8(&b[i + 2..i + 4]).ok()?;
                        cur.push(u8::from_str_radix(h, 16).ok()?);
                        i += 3;
                    }
                    Some(b'\\') if i + 1 < b.len() => {
                        i += 1;
                        cur.push(match b[i] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 8,
                            b'a' => 7,
                            other => other,
                        });
                    }
                    Some(b'"') => {
                        if b.get(i + 1).is_some_and(|&n| !is_c_space(n)) {
                            return None;
                        }
                        done = true;
                    }
                    Some(c) => cur.push(c),
                }
            } else if insq {
                match c {
                    None => return None,
                    Some(b'\\') if b.get(i + 1) == Some(&b'\'') => {
                        i += 1;
                        cur.push(b'\'');
                    }
                    Some(b'\'') => {
                        if b.get(i + 1).is_some_and(|&n| !is_c_space(n)) {
                            return None;
                        }
                        done = true;
                    }
                    Some(c) => cur.push(c),
                }
            } else {
                match c {
                    None | Some(b' ' | b'\n' | b'\r' | b'\t') => done = true,
                    Some(b'"') => inq = true,
                    Some(b'\'') => insq = true,
                    Some(c) => cur.push(c),
                }
            }
            if i < b.len() {
                i += 1;
            }
        }
        out.push(cur);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_manifest_redis_writes() {
        let text = b"file appendonly.aof.1.base.rdb seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\nfile \"odd name.aof\" seq 2 type i\n";
        let m = parse(text).unwrap();
        assert_eq!(m.base.unwrap().name, "appendonly.aof.1.base.rdb");
        assert_eq!(m.incrs.len(), 2);
        assert_eq!(m.incrs[1].name, "odd name.aof");
        assert_eq!(m.incrs[1].line, 3);
        // Keys in any case, as the server's strcasecmp reads them.
        let m = parse(b"File a.rdb SEQ 1 tYPe b\nfile b.aof seQ 1 Type i\n").unwrap();
        assert_eq!(m.base.unwrap().name, "a.rdb");
        assert_eq!(m.incrs.len(), 1);
    }

    /// Each case was loaded by redis-server 7.0.15 and valkey-server 8.1.8 (a base and an
    /// incr AOF of one key each); the reader agrees with both. The first five were the
    /// campaign's manifest false alarms.
    #[test]
    fn reads_lines_as_the_server_does() {
        let b = "file a.aof seq 1 type b\n";
        for (line, loads) in [
            (&b"file b.aof seq 1\xab\xcd type i\n"[..], true), // atoll("1\xab\xcd") = 1
            (b"file b.aof seq 2(7 type i\n", true),
            (b"file b.aof seq 1 type ix\n", true), // the type is its first byte
            (b"file b.aof seq 1 type i\x0bzz\n", true), // \v does not end a word
            (b"file \xff\xfe.aof seq 1 type i\n", true), // any bytes in a name
            (b"fi\"le\" b.aof seq 1 type i\n", true), // a quote inside a word
            (b"file \"b.aof\\x00zz\" seq 1 type i\n", true), // a name ends at a NUL
            (b"file b.aof seq 1 type i\x00\n", false), // strchr stops at the NUL
            (b"file a\\b.aof seq 1 type i\n", false), // pathIsBaseName
            (b"file b.aof seq -1 type i\n", false), // incr seqs start above 0
        ] {
            let text = [b.as_bytes(), line].concat();
            assert_eq!(
                parse(&text).is_ok(),
                loads,
                "{}",
                String::from_utf8_lossy(line).escape_debug()
            );
        }
        let m = parse(b"file a.aof seq -3 type b\nfile \"b.aof\\x00zz\" seq 1 type i\n").unwrap();
        assert_eq!(m.base.unwrap().seq, -3);
        assert_eq!(m.incrs[0].name, "b.aof");
        // A comment longer than a line is read in pieces: the rest is judged as a line.
        let long = format!("#{}\n{b}", "0".repeat(1100));
        let e = parse(long.as_bytes()).unwrap_err();
        assert_eq!(e.offset, 1024, "{}", e.expected);
        assert_eq!(atoll(b" -12x"), -12);
        assert_eq!(atoll(b"99999999999999999999"), i64::MAX);
        assert_eq!(atoll(b"x1"), 0);
    }

    #[test]
    fn faults_name_the_line() {
        let good = "file a seq 1 type b\n";
        for (bad, line) in [
            ("file b seq 2 type x\n", 2),
            ("file b seq two type i\n", 2),
            ("file b seq 2\n", 2),
            ("file \"b seq 2 type i\n", 2),
            ("file c seq 1 type b\n", 2),
            ("file ../c seq 1 type i\n", 2),
            ("\n", 2),
            ("file b seq 0 type i\n", 2),
        ] {
            let text = format!("{good}{bad}");
            let e = parse(text.as_bytes()).unwrap_err();
            assert_eq!(e.offset, good.len() as u64, "{bad}");
            assert!(
                e.expected.starts_with(&format!("line {line}:")),
                "{}",
                e.expected
            );
        }
        assert!(parse(b"").is_err());
        assert!(parse(b"file a seq 1 type b").is_err());
        let e = parse(b"file a seq 2 type i\nfile b seq 1 type i\n").unwrap_err();
        assert!(e.expected.contains("increase"));
    }
}
