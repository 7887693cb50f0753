//! A run's stored file read back as its plain RDB (age-decrypted, zstd-decompressed as it
//! streams), and checked against its manifest entry once read to its end: the stored
//! bytes' size and sha256, then the plain RDB's. The one way restore and `verify db`
//! read a run's file.

use std::io::{self, Read};
use std::path::Path;

use super::codec::{decoder, hashing_reader, DigestSlot, HashingReader, Identities};
use super::manifest::ShardEntry;
use super::repo::StoredFile;

pub struct PlainRead {
    reader: HashingReader<Box<dyn Read + Send>>,
    plain: DigestSlot,
    stored: DigestSlot,
    shown: String,
    entry: ShardEntry,
}

impl PlainRead {
    /// Opens `file` (manifest entry `e`); `identity` is the age identity file an
    /// encrypted run needs. Blocking.
    pub fn open(
        file: &StoredFile,
        e: &ShardEntry,
        identity: Option<&Path>,
    ) -> Result<PlainRead, String> {
        let ids = match identity {
            Some(p) if e.encrypted => Some(Identities::load(p).map_err(|e| e.to_string())?),
            _ => None,
        };
        let (stored_stream, stored) = hashing_reader(file.open()?);
        let shown = file.to_string();
        let plain_stream = decoder(
            stored_stream,
            e.compression,
            e.encrypted,
            ids.as_ref(),
            &format!("`{shown}`"),
        )?;
        let (reader, plain) = hashing_reader(plain_stream);
        Ok(PlainRead {
            reader,
            plain,
            stored,
            shown,
            entry: e.clone(),
        })
    }

    /// The file as shown in messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The plain RDB's size, as the manifest records it.
    pub fn plain_len(&self) -> u64 {
        self.entry.bytes
    }

    /// Reads what is left (the age tag, zstd's end) and checks the stored bytes, then the
    /// plain RDB, against the manifest. Returns the plain RDB's size.
    pub fn finish(mut self) -> Result<u64, String> {
        io::copy(&mut self.reader, &mut io::sink())
            .map_err(|err| format!("`{}` cannot be decoded: {err}", self.shown))?;
        self.check_stored()?;
        let e = &self.entry;
        match take(&self.plain) {
            Some(p) if p.sha256 == e.sha256 && p.bytes == e.bytes => Ok(p.bytes),
            _ => Err(format!(
                "`{}` decodes to an RDB whose sha256 is not the manifest's",
                self.shown
            )),
        }
    }

    /// Checks the stored bytes against the manifest (the stream read to its end).
    pub fn check_stored(&self) -> Result<(), String> {
        let e = &self.entry;
        match take(&self.stored) {
            Some(s) if s.sha256 == e.stored_digest() && s.bytes == e.stored_size() => Ok(()),
            Some(s) => Err(format!(
                "`{}` has sha256 {} ({} bytes), the manifest says {} ({} bytes): the file was changed or damaged",
                self.shown,
                s.sha256,
                s.bytes,
                e.stored_digest(),
                e.stored_size()
            )),
            None => Err(format!("`{}` was not read to its end", self.shown)),
        }
    }
}

fn take(slot: &DigestSlot) -> Option<super::codec::StoredDigest> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

impl Read for PlainRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}
