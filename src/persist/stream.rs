//! Stream values (RDB types 15, 19 and 21): node listpacks checked entry by entry, the
//! stream's metadata, consumer groups with their pending-entry lists and consumers.

use std::io::Read;

use super::error::{BlobFault, BlobResult, ParseError};
use super::fp_set::{fingerprint, FpSet};
use super::listpack::Damage;
use super::listpack::{self, LpEntry};
use super::rdb::{blob_fault_at, Rdb};

/// Entries of one group's pending list held to check consumers' lists against it.
const PEL_CHECK_CAP: u64 = 1 << 18;
/// Flag of an entry that reuses the master entry's field names.
const SAME_FIELDS: i64 = 2;

pub(crate) fn check<R: Read>(rdb: &mut Rdb<'_, R>, t: u8) -> Result<bool, ParseError> {
    let nodes = rdb.count(2)?;
    let mut node_id = Vec::with_capacity(16);
    // The server refuses a node ID seen twice in a stream ("Listpack re-added").
    let mut node_ids = FpSet::default();
    for _ in 0..nodes {
        let at = rdb.src.offset();
        rdb.string_into(&mut node_id, 16)?;
        if node_id.len() != 16 {
            return Err(ParseError::corrupt(at, "a 16-byte stream node ID"));
        }
        if node_ids.insert(fingerprint(&node_id)) == Some(false) {
            return Err(ParseError::corrupt(
                at,
                "a stream node ID not already in this stream (the server refuses a repeat)",
            ));
        }
        if let Some(b) = rdb.blob()? {
            // A type 15 stream's first node is walked on load (its first ID is looked up):
            // held to every entry, as before. Type 19+: only the first entry, whole.
            let damage = validate_node(&rdb.blob, t >= 19).map_err(|f| rdb.blob_fault(b, f))?;
            if let Some(d) = damage {
                let e = blob_fault_at(b, &d.fault);
                rdb.damaged_value(e.offset, &e.expected);
            }
        }
    }
    // Length, last ID; then (v2+) first ID, max deleted ID, entries added.
    let meta = if t >= 19 { 8 } else { 3 };
    let at = rdb.src.offset();
    let length = rdb.len()?;
    if length > 0 && nodes == 0 {
        return Err(ParseError::corrupt(
            at,
            format!(
                "a stream length of 0 for a stream without nodes, not {length} (the server \
                 refuses it)"
            ),
        ));
    }
    for _ in 1..meta {
        rdb.len()?;
    }
    let groups = rdb.count(3)?;
    // The group's pending IDs (sorted once read) with where each was, and whether a
    // consumer owns it yet: the server refuses an ID twice in a group's list, an owned ID
    // not in it, and one owned twice (by one consumer or two); the order is free.
    let mut pel: Vec<([u8; 16], u64)> = Vec::new();
    let mut owned_by: Vec<bool> = Vec::new();
    // The server refuses a group name, or a consumer name in a group, seen twice.
    let mut names = FpSet::default();
    let mut consumer_names = FpSet::default();
    for _ in 0..groups {
        unique_name(rdb, &mut names, "consumer group name in this stream")?;
        rdb.len()?;
        rdb.len()?;
        if t >= 19 {
            rdb.len()?; // entries read
        }
        let n = rdb.count(25)?;
        let hold = n <= PEL_CHECK_CAP;
        pel.clear();
        for _ in 0..n {
            let at = rdb.src.offset();
            let id: [u8; 16] = rdb.src.array()?;
            if hold {
                pel.push((id, at));
            }
            rdb.src.skip(8)?; // delivery time
            rdb.len()?; // delivery count
        }
        pel.sort_unstable();
        if let Some(w) = pel.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(ParseError::corrupt(
                w[0].1.max(w[1].1),
                "a pending entry ID not already in its group's pending list (the server \
                 refuses a repeat)",
            ));
        }
        owned_by.clear();
        owned_by.resize(pel.len(), false);
        let consumers = rdb.count(9)?;
        consumer_names.clear_for(consumers);
        for _ in 0..consumers {
            unique_name(rdb, &mut consumer_names, "consumer name in this group")?;
            rdb.src.skip(if t >= 21 { 16 } else { 8 })?; // seen (and active) time
            let owned = rdb.count(16)?;
            for _ in 0..owned {
                let at = rdb.src.offset();
                let id: [u8; 16] = rdb.src.array()?;
                if !hold {
                    continue;
                }
                match pel.binary_search_by(|(p, _)| p.cmp(&id)) {
                    Err(_) => {
                        return Err(ParseError::corrupt(
                            at,
                            "a consumer's pending entry that is in its group's pending list",
                        ))
                    }
                    Ok(i) if owned_by[i] => {
                        return Err(ParseError::corrupt(
                            at,
                            "a pending entry no consumer of the group already owns (the \
                             server refuses an entry owned twice)",
                        ))
                    }
                    Ok(i) => owned_by[i] = true,
                }
            }
        }
    }
    Ok(true)
}

/// A name (at most 64 KiB held; a longer one only skipped) not seen before in `seen`.
fn unique_name<R: Read>(
    rdb: &mut Rdb<'_, R>,
    seen: &mut FpSet,
    what: &str,
) -> Result<(), ParseError> {
    let at = rdb.src.offset();
    let mut name = std::mem::take(&mut rdb.member);
    let kept = rdb.string_into(&mut name, 64 << 10);
    let fp = fingerprint(&name);
    rdb.member = name;
    if kept? && seen.insert(fp) == Some(false) {
        return Err(ParseError::corrupt(
            at,
            format!("a {what} not already there (the server refuses a repeat)"),
        ));
    }
    Ok(())
}

fn take<'a>(it: &mut listpack::Entries<'a>, what: &str) -> BlobResult<(usize, LpEntry<'a>)> {
    let at = it.offset();
    match it.next_entry()? {
        Some(e) => Ok((at, e)),
        None => Err(BlobFault::new(
            at,
            format!("stream {what}, not the end of the node"),
        )),
    }
}

fn int((at, e): (usize, LpEntry<'_>), what: &str) -> BlobResult<i64> {
    e.int()
        .ok_or_else(|| BlobFault::new(at, format!("an integer stream {what}")))
}

/// One stream node: a master entry (count, deleted, field names, 0), then entries of
/// flags, ID deltas, fields or values, and their own element count. The load checks the
/// listpack's total bytes and terminator and its first entry whole (`lpFirst`): a fault
/// there is the `Err`. With `shallow`, what the load does not look at (the rest) is
/// returned as damage, the first found; without, only a wrong back-length is.
pub fn validate_node(lp: &[u8], shallow: bool) -> BlobResult<Option<Damage>> {
    let mut it = listpack::entries(lp)?;
    let count = take(&mut it, "entry count")?;
    let mut rest = || -> BlobResult<()> {
        let count = int(count, "entry count")?;
        let mut next = |what: &str| take(&mut it, what);
        let deleted = int(next("deleted count")?, "deleted count")?;
        let master_fields = int(next("master field count")?, "master field count")?;
        if master_fields < 0 || master_fields as u64 > lp.len() as u64 {
            return Err(BlobFault::new(6, "a plausible stream master field count"));
        }
        for _ in 0..master_fields {
            next("master field")?;
        }
        let term = next("master terminator")?;
        if int(term, "master terminator")? != 0 {
            return Err(BlobFault::new(
                term.0,
                "the stream master entry terminator 0",
            ));
        }
        let mut seen = 0i64;
        loop {
            let at = it.offset();
            let Some(flags) = it.next_entry()? else { break };
            let flags = int((at, flags), "entry flags")?;
            let mut next = |what: &str| take(&mut it, what);
            int(next("entry ID")?, "entry ID")?;
            int(next("entry ID")?, "entry ID")?;
            let expect = if flags & SAME_FIELDS != 0 {
                for _ in 0..master_fields {
                    next("value")?;
                }
                master_fields + 3
            } else {
                let fields = int(next("field count")?, "field count")?;
                if fields < 0 || fields as u64 > lp.len() as u64 {
                    return Err(BlobFault::new(at, "a plausible stream entry field count"));
                }
                for _ in 0..fields * 2 {
                    next("field or value")?;
                }
                fields * 2 + 4
            };
            let lp_count = next("entry element count")?;
            if int(lp_count, "entry element count")? != expect {
                return Err(BlobFault::new(
                    lp_count.0,
                    format!("stream entry element count {expect}"),
                ));
            }
            seen += 1;
        }
        if let Some(declared) = it.bad_count() {
            return Err(BlobFault::new(
                4,
                format!("listpack element count {declared} to match its entries"),
            ));
        }
        if seen == 0 || seen != count.saturating_add(deleted) {
            return Err(BlobFault::new(
                6,
                format!("a stream node of {count} live and {deleted} deleted entries, not {seen}"),
            ));
        }
        Ok(())
    };
    let walked = rest();
    // A wrong back-length comes before any later fault (the walk goes on past it).
    let bad_back = it.bad_back().map(|at| Damage {
        fault: BlobFault::new(
            at,
            "a listpack entry back-length that is its entry's length",
        ),
        odd: false,
    });
    match walked {
        Err(fault) if bad_back.is_none() => {
            if shallow {
                Ok(Some(Damage { fault, odd: false }))
            } else {
                Err(fault)
            }
        }
        Err(fault) if !shallow => Err(fault),
        _ => Ok(bad_back),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::listpack::tests::build;
    use LpEntry::{Int, Str};

    #[test]
    fn accepts_a_node_and_finds_a_bad_count() {
        let node = [
            Int(2),
            Int(0),
            Int(1),
            Str(b"f"),
            Int(0),
            // Same fields as the master: flags, ms, seq, value, lp-count.
            Int(2),
            Int(0),
            Int(0),
            Str(b"v"),
            Int(4),
            // Own fields: flags, ms, seq, n, field, value, lp-count.
            Int(0),
            Int(1),
            Int(0),
            Int(1),
            Str(b"g"),
            Str(b"w"),
            Int(6),
        ];
        validate_node(&build(&node), false).unwrap();
        let mut bad = node;
        bad[0] = Int(3);
        assert!(validate_node(&build(&bad), false).is_err());
        let mut bad = node;
        bad[9] = Int(5);
        assert!(validate_node(&build(&bad), false).is_err());
    }
}
