//! Reading a file an operator or an admin names (a snapshot, a model, a secret, a campaign's
//! list): a regular file only, since opening a FIFO blocks its reader until someone writes,
//! and a device such as `/dev/zero` never ends. The type is checked before the file is opened
//! and again on the open file, so a path swapped in between is caught too.

use std::io::Read as _;
use std::path::Path;

/// Refuses anything but a regular file (a symlink counts as what it points to).
pub fn check_regular(path: &Path) -> std::io::Result<()> {
    let kind = std::fs::metadata(path)?.file_type();
    if kind.is_file() {
        return Ok(());
    }
    Err(not_a_file(kind))
}

/// Reads a regular file whole, refusing one over `limit` bytes.
pub fn read_regular(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    check_regular(path)?;
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(not_a_file(meta.file_type()));
    }
    let mut bytes = Vec::with_capacity(meta.len().min(limit) as usize);
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

/// Runs everything `r` reads through the CRC-32 `h`, a megabyte at a time (a snapshot's
/// version, read through once beside its load).
pub fn crc_feed(h: &mut crc32fast::Hasher, mut r: impl std::io::Read) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match r.read(&mut buf)? {
            0 => return Ok(()),
            n => h.update(&buf[..n]),
        }
    }
}

/// Reads a regular UTF-8 text file whole, refusing one over `limit` bytes.
pub fn read_regular_text(path: &Path, limit: u64) -> std::io::Result<String> {
    String::from_utf8(read_regular(path, limit)?)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

fn not_a_file(kind: std::fs::FileType) -> std::io::Error {
    use std::os::unix::fs::FileTypeExt as _;
    let what = if kind.is_dir() {
        "a folder"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    };
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("not a regular file ({what})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = std::env::temp_dir().join(format!("nb-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f.txt");
        std::fs::write(&file, "hello").unwrap();
        assert_eq!(read_regular(&file, 5).unwrap(), b"hello");
        let e = read_regular(&file, 4).unwrap_err().to_string();
        assert_eq!(e, "larger than 4 bytes");
        let link = dir.join("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        for (path, says) in [
            (link.as_path(), "not a regular file (a device)"),
            (Path::new("/dev/zero"), "not a regular file (a device)"),
            (dir.as_path(), "not a regular file (a folder)"),
        ] {
            assert_eq!(read_regular(path, 1 << 20).unwrap_err().to_string(), says);
        }
        let fifo = dir.join("fifo");
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo (coreutils) failed");
        // Refused before it is opened: opening a FIFO would wait for a writer.
        assert_eq!(
            check_regular(&fifo).unwrap_err().to_string(),
            "not a regular file (a FIFO)"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
