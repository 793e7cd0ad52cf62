//! A run's temporary files: unnamed from the start, so that nothing of them
//! is left whatever ends virtrun (SIGKILL included), and private to the user.
//! QEMU gets them as inherited fds (`/dev/fd/N`).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// A new empty file in `dir` that has no name (`O_TMPFILE`), readable and
/// writable by its owner only; it can be given a name with [`link`].
pub fn tmpfile_in(dir: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o600)
        .open(dir)
}

/// Whether `e` says the file system cannot make unnamed files.
pub fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR))
}

/// Gives the file made by [`tmpfile_in`] the name `path`, atomically:
/// whoever opens `path` sees the whole file or none. When `path` exists
/// already (a run in parallel was first) that file is kept.
pub fn link(file: &File, path: &Path) -> io::Result<()> {
    let from = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    let to = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: two valid NUL-terminated paths for the call's duration.
    let linked = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    match linked {
        0 => Ok(()),
        _ => match io::Error::last_os_error() {
            e if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            e => Err(e),
        },
    }
}

/// A new empty file in `$TMPDIR` that has no name, readable and writable by
/// its owner only. Where the file system cannot make unnamed files, a
/// private named one is created and unlinked at once.
pub fn unnamed() -> io::Result<File> {
    let dir = std::env::temp_dir();
    match tmpfile_in(&dir) {
        Ok(file) => Ok(file),
        Err(e) if unsupported(&e) => Ok(tempfile::Builder::new()
            .prefix("virtrun-")
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(&dir)?
            .into_file()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn unnamed_and_private() {
        let mut file = unnamed().unwrap();
        let meta = file.metadata().unwrap();
        assert_eq!(meta.nlink(), 0);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        file.write_all(b"data").unwrap();
        file.rewind().unwrap();
        let mut back = String::new();
        file.read_to_string(&mut back).unwrap();
        assert_eq!(back, "data");
    }

    #[test]
    fn linked_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = tmpfile_in(dir.path()).unwrap();
        file.write_all(b"whole").unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let path = dir.path().join("cached");
        link(&file, &path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"whole");
        // A second run that made the same file keeps the first one.
        let mut other = tmpfile_in(dir.path()).unwrap();
        other.write_all(b"other").unwrap();
        link(&other, &path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"whole");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
