//! Unpacking a `newc` cpio archive into the running root, as the kernel
//! unpacks an initramfs: how a warm guest gets its run after the restore.
//!
//! Hand-written because it is small and specific: the archive comes from the
//! virtrun host (directories, regular files, symlinks, character devices),
//! streamed from the control channel without being held in memory.

use crate::{ErrorContext, Result};
use std::ffi::OsStr;
use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, BufRead, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use virtrun_protocol::newc::{HEADER_LEN, MAGIC, TRAILER, mode};

/// One header's fields that matter here.
struct Header {
    mode: u32,
    size: u64,
    rdev: (u32, u32),
    name_len: usize,
}

fn hex(field: &[u8]) -> io::Result<u32> {
    std::str::from_utf8(field)
        .ok()
        .and_then(|s| u32::from_str_radix(s, 16).ok())
        .ok_or_else(|| invalid("a header field is not hexadecimal"))
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

fn parse_header(h: &[u8; HEADER_LEN]) -> io::Result<Header> {
    if &h[..6] != MAGIC.as_bytes() {
        return Err(invalid("not a newc cpio archive"));
    }
    let field = |i: usize| hex(&h[6 + 8 * i..14 + 8 * i]);
    Ok(Header {
        mode: field(1)?,
        size: u64::from(field(6)?),
        rdev: (field(9)?, field(10)?),
        name_len: field(11)? as usize,
    })
}

/// Counts what was read, for the 4-byte alignment of newc.
struct Counted<R> {
    inner: R,
    offset: u64,
}

impl<R: BufRead> Counted<R> {
    fn exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_exact(buf)?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn align(&mut self) -> io::Result<()> {
        let pad = ((4 - self.offset % 4) % 4) as usize;
        self.exact(&mut [0u8; 3][..pad])
    }

    /// Copies the next `len` bytes to `to`, straight from the reader's
    /// buffer.
    fn copy(&mut self, len: u64, to: &mut impl Write) -> io::Result<()> {
        let mut left = len;
        while left > 0 {
            let data = self.inner.fill_buf()?;
            if data.is_empty() {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            let n = data.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            to.write_all(&data[..n])?;
            self.inner.consume(n);
            left -= n as u64;
        }
        self.offset += len;
        Ok(())
    }
}

/// Where entry `name` goes under `root`: a relative path without `..`.
fn target(root: &Path, name: &[u8]) -> io::Result<PathBuf> {
    let rel = Path::new(OsStr::from_bytes(name));
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(invalid("an entry name leaves the root"));
    }
    Ok(root.join(rel))
}

/// Unpacks the archive read from `from` under `root` (file contents are
/// written from its buffer, [`crate::disk::ChunkReader`]); returns the
/// paths of its entries. Existing directories are kept, existing files
/// replaced.
///
/// A restored guest's kernel translates every path it takes anew in each
/// run: a file is created without first trying to remove it, and its mode
/// is set again only when the umask took something away.
pub fn unpack(from: impl BufRead, root: &Path) -> Result<Vec<PathBuf>> {
    let mut r = Counted {
        inner: from,
        offset: 0,
    };
    let umask = current_umask();
    let mut paths = Vec::new();
    loop {
        let entries = paths.len();
        let what = || format!("unpack the run (entry {entries})");
        let mut raw = [0u8; HEADER_LEN];
        r.exact(&mut raw).context(what)?;
        let h = parse_header(&raw).context(what)?;
        let mut name = vec![0u8; h.name_len];
        r.exact(&mut name).context(what)?;
        r.align().context(what)?;
        let name = name.strip_suffix(&[0]).unwrap_or(&name);
        if name == TRAILER.as_bytes() {
            return Ok(paths);
        }
        let path = target(root, name).context(what)?;
        let what = || format!("unpack {}", path.display());
        let perm = h.mode & 0o7777;
        match h.mode & mode::TYPE_MASK {
            mode::DIR => match DirBuilder::new().mode(perm).create(&path) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                other => other.context(what)?,
            },
            mode::FILE => {
                let create = || {
                    OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(perm)
                        .open(&path)
                };
                let mut file = match create() {
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        let _ = std::fs::remove_file(&path);
                        create()
                    }
                    other => other,
                }
                .context(what)?;
                r.copy(h.size, &mut file).context(what)?;
                // The mode as packed, whatever the umask took away.
                if perm & umask != 0 {
                    file.set_permissions(std::fs::Permissions::from_mode(perm))
                        .context(what)?;
                }
            }
            mode::SYMLINK => {
                let mut link = Vec::new();
                r.copy(h.size, &mut link).context(what)?;
                let _ = std::fs::remove_file(&path);
                std::os::unix::fs::symlink(OsStr::from_bytes(&link), &path).context(what)?;
            }
            mode::CHAR => {
                let c = crate::sys::cstr(&path).context(what)?;
                let dev = libc::makedev(h.rdev.0, h.rdev.1);
                let _ = std::fs::remove_file(&path);
                // SAFETY: a valid NUL-terminated path; mknod only creates a node.
                crate::sys::check(unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | perm, dev) })
                    .context(what)?;
            }
            _ => return Err(invalid("an entry of an unknown type")).context(what),
        }
        r.align().context(what)?;
        paths.push(path);
    }
}

/// The process's umask, left as it was.
fn current_umask() -> libc::mode_t {
    // SAFETY: umask(2) only swaps the mask; it is put back at once.
    unsafe {
        let mask = libc::umask(0o022);
        libc::umask(mask);
        mask
    }
}
