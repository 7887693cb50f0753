//! Opening a file the reader will read: only a regular file. A FIFO would block the open
//! (and the read) forever, a device never ends; both are refused by what they are.

use std::fs::File;
use std::io;
use std::path::Path;

/// Opens `path` for reading when it is a regular file (symlinks followed), else fails with
/// `not a regular file: a FIFO` (a directory, a socket, a character device, ...).
pub fn open_regular(path: &Path) -> io::Result<File> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "not a regular file: {}",
                crate::host::local::describe_type(&meta.file_type())
            ),
        ));
    }
    File::open(path)
}

/// [`open_regular`], and the length of the file it opened.
pub fn open_regular_len(path: &Path) -> io::Result<(File, u64)> {
    let file = open_regular(path)?;
    let len = file.metadata()?.len();
    Ok((file, len))
}
