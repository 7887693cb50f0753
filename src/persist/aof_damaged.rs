//! Keys an AOF's RDB preamble holds damaged where the load does not look (see
//! `Rdb::damaged_value`), followed through the commands after it: the server loads such a
//! key, but a command that reads it while the AOF loads walks the damaged value and stops
//! the server when it reaches the damage (the third campaign's false ok: `HSET hash x y`
//! in an incr file after a base whose `hash` was damaged), or else writes into a broken
//! value; either way the file is not `ok`. Commands that only drop, rename, move, copy or expire
//! a key do not read its value and carry the damage along.

use std::collections::HashMap;

use super::aof_keys::{self, Class, Effect};
use super::fp_set::fingerprint;
use super::resp::Command;

/// The damaged keys by (database, fingerprint), with where each is damaged in the
/// preamble, and the database the commands are in.
#[derive(Default)]
pub(crate) struct DamagedKeys {
    keys: HashMap<(u32, u64), u64>,
    db: u32,
    effects: Vec<Effect>,
}

impl DamagedKeys {
    /// Adds a preamble's damaged keys.
    pub fn extend(&mut self, keys: &HashMap<(u32, u64), u64>) {
        self.keys.extend(keys.iter().map(|(k, v)| (*k, *v)));
    }

    /// A file starts: the server loads each from database 0.
    pub fn file_start(&mut self) {
        self.db = 0;
    }

    /// The fault when `cmd` reads a damaged key; otherwise follows what it does to them.
    #[inline]
    pub fn command(&mut self, class: Class, cmd: &Command<'_>, now_ms: i64) -> Option<String> {
        // Keys come only from a preamble, before any command of its file: nearly always
        // none, decided here in the walk's loop.
        if self.keys.is_empty() {
            return None;
        }
        self.command_on_damaged(class, cmd, now_ms)
    }

    #[inline(never)]
    fn command_on_damaged(
        &mut self,
        class: Class,
        cmd: &Command<'_>,
        now_ms: i64,
    ) -> Option<String> {
        use Class::*;
        let reads = !matches!(
            class,
            Keyless
                | Multi
                | Exec
                | Select
                | FlushDb
                | FlushAll
                | SwapDb
                | Set
                | SetNx
                | SetEx { .. }
                | GetSet
                | GetEx
                | Expire { .. }
                | Persist
                | Restore
                | Mset
                | MsetNx
                | RemoveAll
                | Remove1
                | Rename { .. }
                | Move
                | Copy
        );
        if reads {
            // Every argument that names a damaged key (a value that happens to be one
            // too: rare, and the stricter side).
            for i in 1..cmd.argc {
                let Some(key) = cmd.arg(i) else { continue };
                if let Some(at) = self.keys.get(&(self.db, fingerprint(key))) {
                    let name = cmd.arg(0).map(String::from_utf8_lossy).unwrap_or_default();
                    return Some(format!(
                        "a command that does not read a damaged value, not `{}` on key `{}` \
                         in database {}, which the RDB preamble holds damaged at offset {at} \
                         (redis-server 7.0 and valkey-server 8.1 load the preamble, then run \
                         this command on the damaged value: when its walk reaches the damage \
                         the server stops; when it does not, the server loads the file with \
                         the value still broken, the command written into it; the reader \
                         takes the stricter answer)",
                        name.to_ascii_uppercase(),
                        String::from_utf8_lossy(&key[..key.len().min(64)]),
                        self.db
                    ));
                }
            }
        }
        let mut effects = std::mem::take(&mut self.effects);
        effects.clear();
        aof_keys::effects(class, cmd, now_ms, &mut effects);
        for e in &effects {
            self.apply(e);
        }
        self.effects = effects;
        None
    }

    fn apply(&mut self, e: &Effect) {
        let db = self.db;
        match *e {
            Effect::Select(n) => self.db = n,
            Effect::FlushDb => self.keys.retain(|(d, _), _| *d != db),
            Effect::FlushAll => self.keys.clear(),
            Effect::SwapDb(a, b) => {
                self.keys = self
                    .keys
                    .drain()
                    .map(|((d, k), at)| {
                        let d = if d == a {
                            b
                        } else if d == b {
                            a
                        } else {
                            d
                        };
                        ((d, k), at)
                    })
                    .collect();
            }
            Effect::Key(k, change) if change.replaces => {
                self.keys.remove(&(db, k));
            }
            Effect::Rename(from, to, _) => {
                if let Some(at) = self.keys.remove(&(db, from)) {
                    self.keys.insert((db, to), at);
                } else {
                    self.keys.remove(&(db, to));
                }
            }
            Effect::Move(k, to) => {
                if let Some(at) = self.keys.remove(&(db, k)) {
                    self.keys.insert((to, k), at);
                }
            }
            Effect::Copy(from, to, into, _) => {
                if let Some(&at) = self.keys.get(&(db, from)) {
                    self.keys.insert((into.unwrap_or(db), to), at);
                }
            }
            _ => {}
        }
    }
}
