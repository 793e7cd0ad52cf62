//! Loading kernel modules.

use crate::sys::{check, cstr};
use crate::{ErrorContext, Result};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// `finit_module` flag: the file is compressed, the kernel decompresses it.
const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;

/// Whether the kernel must be told the module file is compressed.
fn is_compressed(path: &Path) -> bool {
    virtrun_protocol::is_compressed_module(&path.to_string_lossy())
}

/// Loads one module file with `finit_module`. A module that is already loaded
/// (or built in) is not an error.
pub fn load(path: &Path) -> Result<()> {
    let what = || format!("load module {}", path.display());
    let file = File::open(path).context(what)?;
    let params = cstr("").context(what)?;
    let flags = if is_compressed(path) {
        MODULE_INIT_COMPRESSED_FILE
    } else {
        0
    };
    // SAFETY: the fd is open for the duration of the call and `params` is a
    // valid NUL-terminated string.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            params.as_ptr(),
            flags,
        )
    };
    match check(ret as libc::c_int) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other.map(drop).context(what),
    }
}

/// The module files in `dir` in lexical order (the host numbers them).
pub fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    let what = || format!("read {}", dir.display());
    let mut files = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        other => other.context(what)?,
    };
    for entry in entries {
        let entry = entry.context(what)?;
        if entry.file_type().context(what)?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Loads every module file in `dir` in lexical order; stops at the first failure.
pub fn load_dir(dir: &Path) -> Result<usize> {
    let files = list(dir)?;
    files.iter().try_for_each(|f| load(f))?;
    Ok(files.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_told_by_extension() {
        assert!(is_compressed(Path::new("/lib/modules/0001-virtio.ko.xz")));
        assert!(is_compressed(Path::new("a.ko.zst")));
        assert!(is_compressed(Path::new("a.ko.gz")));
        assert!(!is_compressed(Path::new("a.ko")));
        assert!(!is_compressed(Path::new("a.xz")));
    }
}
