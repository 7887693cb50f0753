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
    pub seq: u64,
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

/// Parses a manifest's text; faults carry the offending line's offset.
pub(crate) fn parse(text: &[u8]) -> Result<Manifest, ParseError> {
    let mut m = Manifest::default();
    let mut offset = 0u64;
    let mut max_incr_seq = 0u64;
    let mut any = false;
    for (i, raw) in text.split_inclusive(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let at = offset;
        offset += raw.len() as u64;
        let bad = |what: String| ParseError::corrupt(at, format!("line {line_no}: {what}"));
        if raw.first() == Some(&b'#') {
            continue;
        }
        if raw.len() > LINE_MAX || !raw.ends_with(b"\n") {
            return Err(bad(if raw.len() > LINE_MAX {
                format!("a line of at most {LINE_MAX} bytes")
            } else {
                "a line ended by a newline".into()
            }));
        }
        let line = std::str::from_utf8(raw)
            .map_err(|_| bad("UTF-8 text".into()))?
            .trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
        // The server stops at a blank line: "Invalid AOF manifest file format".
        if line.is_empty() {
            return Err(bad(
                "a `file ...` line, not a blank one (the server refuses the manifest)".into(),
            ));
        }
        let args = split_args(line).ok_or_else(|| bad("balanced quotes".into()))?;
        if args.len() < 6 || args.len() % 2 != 0 {
            return Err(bad(format!(
                "`file <name> seq <n> type <b|h|i>`, not `{line}`"
            )));
        }
        let (mut name, mut seq, mut kind) = (None, None, None);
        for pair in args.chunks(2) {
            // The server compares keys with strcasecmp.
            match pair[0].to_ascii_lowercase().as_str() {
                "file" => name = Some(pair[1].clone()),
                "seq" => seq = pair[1].parse::<u64>().ok().filter(|&n| n > 0), // the server refuses 0
                "type" => kind = Some(pair[1].clone()),
                _ => {} // Newer Redis may add keys; it ignores unknown ones too.
            }
        }
        let (Some(name), Some(seq), Some(kind)) = (name, seq, kind) else {
            return Err(bad(format!(
                "`file`, a numeric `seq` and `type` on the line, not `{line}`"
            )));
        };
        if name.contains('/') {
            return Err(bad(format!("a file name, not the path `{name}`")));
        }
        let kind = match kind.as_str() {
            "b" => PartType::Base,
            "h" => PartType::History,
            "i" => PartType::Incr,
            other => return Err(bad(format!("type `b`, `h` or `i`, not `{other}`"))),
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

/// Splits a line like Redis' `sdssplitargs`: spaces separate, `"..."` takes C escapes,
/// `'...'` takes only `\'`; a closing quote must be followed by a space or the end.
fn split_args(line: &str) -> Option<Vec<String>> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == b.len() {
            return Some(out);
        }
        let mut cur = Vec::new();
        match b[i] {
            b'"' => {
                i += 1;
                loop {
                    let c = *b.get(i)?;
                    i += 1;
                    match c {
                        b'"' => break,
                        b'\\' => {
                            let e = *b.get(i)?;
                            i += 1;
                            match e {
                                b'n' => cur.push(b'\n'),
                                b'r' => cur.push(b'\r'),
                                b't' => cur.push(b'\t'),
                                b'b' => cur.push(8),
                                b'a' => cur.push(7),
                                b'x' => {
                                    let hex = std::str::from_utf8(b.get(i..i + 2)?).ok()?;
                                    cur.push(u8::from_str_radix(hex, 16).ok()?);
                                    i += 2;
                                }
                                other => cur.push(other),
                            }
                        }
                        _ => cur.push(c),
                    }
                }
                if i < b.len() && !b[i].is_ascii_whitespace() {
                    return None;
                }
            }
            b'\'' => {
                i += 1;
                loop {
                    let c = *b.get(i)?;
                    i += 1;
                    match c {
                        b'\'' => break,
                        b'\\' if b.get(i) == Some(&b'\'') => {
                            cur.push(b'\'');
                            i += 1;
                        }
                        _ => cur.push(c),
                    }
                }
                if i < b.len() && !b[i].is_ascii_whitespace() {
                    return None;
                }
            }
            _ => {
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    cur.push(b[i]);
                    i += 1;
                }
            }
        }
        out.push(String::from_utf8(cur).ok()?);
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
